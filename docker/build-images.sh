#!/usr/bin/env bash
# `make images`: build the archives, then the serving images (GPU and CPU), the proxy image (the
# nginx front in the serving pod) and the bot image.
#   REGISTRY=registry.example.com/pix2pix TAG=1.0.0 PUSH=1 make images
# Needs Docker (or any `docker`-compatible CLI, e.g. podman: DOCKER=podman).
set -euo pipefail
cd "$(dirname "$0")/.."

DOCKER=${DOCKER:-docker}
REGISTRY=${REGISTRY:-pix2pix-sr}
TAG=${TAG:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
PY=${PY:-.venv/bin/python}

if ! command -v "$DOCKER" >/dev/null 2>&1; then
    echo "build-images: '$DOCKER' not found; install Docker or set DOCKER=podman" >&2
    exit 1
fi
if [[ $TAG == latest ]]; then
    echo "build-images: refusing TAG=latest; the manifests pin images by version" >&2
    exit 1
fi

# The serving images bake the archives in: build them from weights/ (or *_WEIGHTS).
"$PY" -m serving.archive

"$DOCKER" build -f docker/Dockerfile.serve -t "$REGISTRY/torchserve:$TAG-gpu" .
"$DOCKER" build -f docker/Dockerfile.serve-cpu -t "$REGISTRY/torchserve:$TAG-cpu" .
"$DOCKER" build -f docker/Dockerfile.proxy -t "$REGISTRY/proxy:$TAG" .
"$DOCKER" build -f docker/Dockerfile.bot -t "$REGISTRY/bot:$TAG" .

if [[ ${PUSH:-0} == 1 ]]; then
    for image in "torchserve:$TAG-gpu" "torchserve:$TAG-cpu" "proxy:$TAG" "bot:$TAG"; do
        "$DOCKER" push "$REGISTRY/$image"
    done
fi
echo "built $REGISTRY/torchserve:$TAG-gpu, $REGISTRY/torchserve:$TAG-cpu, $REGISTRY/proxy:$TAG, $REGISTRY/bot:$TAG"
echo "set them in k8s/overlays/*/kustomization.yaml (images:) or with 'kustomize edit set image'"

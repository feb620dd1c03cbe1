#!/usr/bin/env bash
# Set-up shared by `make run` and `make test`: a virtual environment with the pinned
# dependencies, Java for TorchServe, nginx with its njs module (the front of the inference API),
# and Prometheus (server + promtool) for the tests.
# Idempotent: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.requirements.sha256

want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [[ ! -x $VENV/bin/python ]]; then
    echo "setup: creating $VENV"
    "$PY" -m venv "$VENV"
fi
if [[ ! -f $STAMP || "$(cat "$STAMP")" != "$want" ]]; then
    echo "setup: installing pinned dependencies (requirements.txt)"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -r requirements.txt
    echo "$want" > "$STAMP"
fi

if ! command -v java >/dev/null 2>&1; then
    echo "setup: TorchServe needs Java 17 (install openjdk-17-jre-headless)" >&2
    exit 1
fi

need_apt=()
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
# redis-server: the bot's Redis state storage is tested against a real one (BOT_REDIS_URL)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
# nginx: the front of the inference API (serving/nginx/), in `make run` and in the tests
if ! command -v nginx >/dev/null 2>&1 && [[ ! -x /usr/sbin/nginx ]]; then need_apt+=(nginx); fi
[[ -f /usr/lib/nginx/modules/ngx_http_js_module.so ]] || need_apt+=(libnginx-mod-http-js)
if (( ${#need_apt[@]} )); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing ${need_apt[*]} (Debian packages)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq -o DPkg::Lock::Timeout=300
        # policy-rc.d keeps the packages from starting their own services (Prometheus on :9090,
        # Redis on :6379, nginx on :80); the tests start their own on free ports.
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
        apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends "${need_apt[@]}" >/dev/null
        rm -f /usr/sbin/policy-rc.d
    else
        echo "setup: ${need_apt[*]} missing and cannot be installed here; the tests that need it will be skipped" >&2
    fi
fi
echo "setup: ok"

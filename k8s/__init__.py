"""Kubernetes deployment of the service (kustomize base and overlays) and its config renderer."""

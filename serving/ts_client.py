"""TorchServe's management API as this project uses it, shared by the local process manager
(serving/server.py) and the cluster sidecar (docker/ts_sidecar.py). Standard library only: the
sidecar runs in the serving image beside TorchServe, where this file is copied next to it.

Keys come from TorchServe's ``key_file.json`` when token authorization is on (read on every call:
TorchServe rewrites it when keys are rotated).
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path


def read_keys(workdir: Path) -> dict[str, str]:
    """``{"management": ..., "inference": ...}`` from key_file.json; empty when auth is off."""
    try:
        data = json.loads((Path(workdir) / "key_file.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    return {kind: entry["key"] for kind, entry in data.items() if isinstance(entry, dict) and "key" in entry}


def call(method: str, url: str, key: str | None = None, timeout: float = 10.0,
         body: bytes | None = None, headers: dict[str, str] | None = None,
         context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    """One HTTP request; returns (status, body), status 0 when nothing answered."""
    # urllib also opens file: and ftp: URLs; these URLs come from settings, but only HTTP is meant
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{url!r}: only http:// and https:// URLs are called")
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as reply:  # noqa: S310  # nosec B310
            return reply.status, reply.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


class Management:
    """The calls: is a model ready, is the workflow registered, register it, is inference healthy."""

    def __init__(self, management_url: str, inference_url: str, workdir: Path) -> None:
        self.management_url = management_url.rstrip("/")
        self.inference_url = inference_url.rstrip("/")
        self.workdir = Path(workdir)

    def key(self, kind: str) -> str | None:
        return read_keys(self.workdir).get(kind)

    def model_ready(self, model: str) -> bool:
        """True when ``model`` has a READY worker."""
        status, body = call("GET", f"{self.management_url}/models/{model}", self.key("management"))
        if status != 200:
            return False
        try:
            workers = json.loads(body)[0].get("workers", [])
        except (ValueError, IndexError, AttributeError, KeyError):
            return False
        return any(w.get("status") == "READY" for w in workers)

    def models_ready(self, models: tuple[str, ...]) -> bool:
        return all(self.model_ready(m) for m in models)

    def workflow_registered(self, workflow: str) -> bool:
        status, _ = call("GET", f"{self.management_url}/workflows/{workflow}", self.key("management"))
        return status == 200

    def register_workflow(self, workflow: str, timeout: float = 600.0) -> tuple[int, bytes]:
        """POST ``<workflow>.war`` from the model store; (status, body) of TorchServe's answer."""
        return call("POST", f"{self.management_url}/workflows?url={workflow}.war", self.key("management"),
                    timeout=timeout)

    def healthy(self) -> bool:
        """True when the inference API's /ping says Healthy (with the inference key when auth is on)."""
        status, body = call("GET", f"{self.inference_url}/ping", self.key("inference"))
        return status == 200 and b"Healthy" in body

"""TorchServe's companion inside the serving pod: probes, workflow registration, key publishing.

TorchServe cannot load workflows at start-up, answers 400 on ``/ping`` when token authorization is
on and no key is sent, and generates its own random keys on every start (``key_file.json`` in its
working directory). This script bridges those facts to Kubernetes; it uses only the standard
library so it runs in the serving image without extra packages.

    python ts_sidecar.py ready     # readiness probe: exit 0 only when the workflow is registered
    python ts_sidecar.py live      # liveness/startup probe: inference /ping answers "Healthy"
    python ts_sidecar.py run       # sidecar: register the workflow, publish the inference key

Settings (environment): ``TS_WORKDIR`` (where key_file.json is), ``TS_INFERENCE_URL``,
``TS_MANAGEMENT_URL``, ``TS_WORKFLOW`` (name; the archive is ``<name>.war``), ``TS_MODELS``
(comma-separated models that must be READY before the workflow is registered); the defaults of
the models, the workflow and the ports come from ``restoration/names.py``, the names every part
of the service shares (copied beside this file in the serving image),
``KEY_SECRET`` (a Secret in the pod's namespace that receives the inference key; unset: do not
publish), ``KEY_SECRET_FIELD`` (its data key, default ``inference-key``), ``RESTART_DEPLOYMENT``
(a Deployment whose pods read that Secret; its pod template is annotated with a digest of the
new key so it restarts with it), ``SIDECAR_INTERVAL`` (seconds between checks in ``run``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import ssl
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

# The management client and the shared names: copied beside this file in the serving image
# (ts_client.py, restoration/); serving/ and restoration/ at the top of the repository.
HERE = Path(__file__).resolve().parent
if (HERE / "ts_client.py").exists():
    from ts_client import Management, call, read_keys
else:
    sys.path.insert(0, str(HERE.parent))
    from serving.ts_client import Management, call, read_keys
from restoration import names  # noqa: E402 (after the path set-up above)

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
KEY_ANNOTATION = "pix2pix.restore/inference-key-sha256"


@dataclass(frozen=True)
class SidecarConfig:
    """Where TorchServe is and what to do with its keys; read from the environment."""

    workdir: Path
    inference_url: str
    management_url: str
    workflow: str
    models: tuple[str, ...]
    key_secret: str | None
    key_field: str
    restart_deployment: str | None
    interval: float

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> SidecarConfig:
        """Read the settings (see the module docstring); defaults match the serving image."""
        env = dict(os.environ if env is None else env)
        return cls(
            workdir=Path(env.get("TS_WORKDIR", "/home/model-server/run")),
            inference_url=env.get("TS_INFERENCE_URL", f"http://127.0.0.1:{names.INFERENCE_PORT}").rstrip("/"),
            management_url=env.get("TS_MANAGEMENT_URL", f"http://127.0.0.1:{names.MANAGEMENT_PORT}").rstrip("/"),
            workflow=env.get("TS_WORKFLOW", "").strip() or names.WORKFLOW_RESTORE,
            models=tuple(m.strip() for m in env.get("TS_MODELS", "").split(",") if m.strip()) or names.MODELS,
            key_secret=env.get("KEY_SECRET") or None,
            key_field=env.get("KEY_SECRET_FIELD", "inference-key"),
            restart_deployment=env.get("RESTART_DEPLOYMENT") or None,
            interval=float(env.get("SIDECAR_INTERVAL", "5")),
        )


def _api(cfg: SidecarConfig) -> Management:
    return Management(cfg.management_url, cfg.inference_url, cfg.workdir)


def workflow_registered(cfg: SidecarConfig) -> bool:
    """True when the management API lists the workflow (needs the management key with auth on)."""
    return _api(cfg).workflow_registered(cfg.workflow)


def healthy(cfg: SidecarConfig) -> bool:
    """True when the inference API's /ping says Healthy (with the inference key when auth is on)."""
    return _api(cfg).healthy()


def models_ready(cfg: SidecarConfig) -> bool:
    """True when every model the workflow needs has a READY worker."""
    return _api(cfg).models_ready(cfg.models)


def register_workflow(cfg: SidecarConfig) -> bool:
    """Register ``<workflow>.war`` from the model store if it is not registered yet."""
    if workflow_registered(cfg):
        return True
    if not models_ready(cfg):
        return False
    status, body = _api(cfg).register_workflow(cfg.workflow)
    if status != 200:
        log(f"registering {cfg.workflow}.war answered {status}: {body[:300].decode(errors='replace')}")
    return workflow_registered(cfg)


class KubeClient:
    """The few Kubernetes API calls the sidecar makes, with the pod's service-account token."""

    def __init__(self, base: str | None = None, token: str | None = None, namespace: str | None = None,
                 context: ssl.SSLContext | None = None) -> None:
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        self.base = base or f"https://{host}:{port}"
        self.token = token if token is not None else (SERVICE_ACCOUNT / "token").read_text().strip()
        self.namespace = namespace or (SERVICE_ACCOUNT / "namespace").read_text().strip()
        if context is None and self.base.startswith("https://"):
            context = ssl.create_default_context(cafile=str(SERVICE_ACCOUNT / "ca.crt"))
        self.context = context

    def patch(self, path: str, patch: dict) -> int:
        """A strategic-merge PATCH; returns the status code."""
        status, body = call("PATCH", f"{self.base}{path}", self.token, body=json.dumps(patch).encode(),
                            headers={"Content-Type": "application/strategic-merge-patch+json"},
                            context=self.context)
        if status != 200:
            log(f"PATCH {path} answered {status}: {body[:300].decode(errors='replace')}")
        return status

    def publish_key(self, secret: str, field: str, key: str) -> int:
        """Write the inference key into the Secret (which the manifests create, without data)."""
        value = base64.b64encode(key.encode()).decode()
        return self.patch(f"/api/v1/namespaces/{self.namespace}/secrets/{secret}", {"data": {field: value}})

    def restart(self, deployment: str, digest: str) -> int:
        """Roll a Deployment by changing a pod-template annotation (what `kubectl rollout restart` does)."""
        patch = {"spec": {"template": {"metadata": {"annotations": {KEY_ANNOTATION: digest}}}}}
        return self.patch(f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{deployment}", patch)


def key_digest(key: str) -> str:
    """A short digest that names a key without revealing it (for annotations and logs)."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def publish_once(cfg: SidecarConfig, kube: KubeClient, published: str | None) -> str | None:
    """Publish the current inference key if it changed; return the key now published."""
    key = read_keys(cfg.workdir).get("inference")
    if not key or key == published or not cfg.key_secret:
        return published
    if kube.publish_key(cfg.key_secret, cfg.key_field, key) != 200:
        return published
    digest = key_digest(key)
    log(f"published inference key {digest} to Secret {cfg.key_secret}")
    if cfg.restart_deployment and kube.restart(cfg.restart_deployment, digest) == 200:
        log(f"restarted Deployment {cfg.restart_deployment} so it reads the new key")
    return key


def run(cfg: SidecarConfig, kube: KubeClient | None = None, rounds: int | None = None,
        stop: threading.Event | None = None) -> None:
    """Sidecar loop: keep the workflow registered (TorchServe may restart) and the key published.

    Runs forever in the pod; ``rounds`` or ``stop`` end it (tests)."""
    if cfg.key_secret and kube is None:
        kube = KubeClient()
    published: str | None = None
    registered = False
    done = 0
    stop = stop or threading.Event()
    while (rounds is None or done < rounds) and not stop.is_set():
        now_registered = register_workflow(cfg)
        if now_registered != registered:
            log(f"workflow {cfg.workflow} {'registered' if now_registered else 'not registered'}")
            registered = now_registered
        # Publish only a key that can serve requests: once the workflow is there, the pod is
        # about to be Ready, and restarting the bot earlier would only make it wait with a key.
        if kube is not None and registered:
            published = publish_once(cfg, kube, published)
        done += 1
        if rounds is None or done < rounds:
            stop.wait(cfg.interval)


def log(message: str) -> None:
    print(f"ts_sidecar: {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``ready``, ``live`` or ``run`` (see the module docstring)."""
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else ""
    cfg = SidecarConfig.from_env()
    if command == "ready":
        return 0 if workflow_registered(cfg) and healthy(cfg) else 1
    if command == "live":
        return 0 if healthy(cfg) else 1
    if command == "run":
        run(cfg)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())

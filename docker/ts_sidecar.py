"""TorchServe's companion inside the serving pod: probes and workflow registration.

TorchServe cannot load workflows at start-up, and in the pod it listens on loopback only (the
nginx front in the same pod takes the inference port and checks the inference keys), so the
kubelet cannot probe it over HTTP. This script bridges those facts to Kubernetes; it uses only the
standard library so it runs in the serving image without extra packages.

    python ts_sidecar.py ready     # readiness probe: exit 0 only when the workflow is registered
    python ts_sidecar.py live      # liveness/startup probe: inference /ping answers "Healthy"
    python ts_sidecar.py run       # sidecar: register the workflow, again after a TorchServe restart

Settings (environment): ``TS_WORKDIR`` (TorchServe's working directory: key_file.json when its own
token authorization is on), ``TS_INFERENCE_URL``, ``TS_MANAGEMENT_URL``, ``TS_WORKFLOW`` (name;
the archive is ``<name>.war``), ``TS_MODELS`` (comma-separated models that must be READY before the
workflow is registered), ``SIDECAR_INTERVAL`` (seconds between checks in ``run``); the defaults of
the models, the workflow and the ports come from ``restoration/names.py``, the names every part
of the service shares (copied beside this file in the serving image).
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

# The management client and the shared names: copied beside this file in the serving image
# (ts_client.py, restoration/); serving/ and restoration/ at the top of the repository.
HERE = Path(__file__).resolve().parent
if (HERE / "ts_client.py").exists():
    from ts_client import Management
else:
    sys.path.insert(0, str(HERE.parent))
    from serving.ts_client import Management
from restoration import names  # noqa: E402 (after the path set-up above)


@dataclass(frozen=True)
class SidecarConfig:
    """Where TorchServe is and what to keep registered; read from the environment."""

    workdir: Path
    inference_url: str
    management_url: str
    workflow: str
    models: tuple[str, ...]
    interval: float

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> SidecarConfig:
        """Read the settings (see the module docstring); defaults match the serving image."""
        env = dict(os.environ if env is None else env)
        return cls(
            workdir=Path(env.get("TS_WORKDIR", "/home/model-server/run")),
            inference_url=env.get("TS_INFERENCE_URL", f"http://127.0.0.1:{names.TORCHSERVE_INFERENCE_PORT}").rstrip("/"),
            management_url=env.get("TS_MANAGEMENT_URL", f"http://127.0.0.1:{names.MANAGEMENT_PORT}").rstrip("/"),
            workflow=env.get("TS_WORKFLOW", "").strip() or names.WORKFLOW_RESTORE,
            models=tuple(m.strip() for m in env.get("TS_MODELS", "").split(",") if m.strip()) or names.MODELS,
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


def run(cfg: SidecarConfig, rounds: int | None = None, stop: threading.Event | None = None) -> None:
    """Sidecar loop: keep the workflow registered (TorchServe may restart and forget it).

    Runs forever in the pod; ``rounds`` or ``stop`` end it (tests)."""
    registered = False
    done = 0
    stop = stop or threading.Event()
    while (rounds is None or done < rounds) and not stop.is_set():
        now_registered = register_workflow(cfg)
        if now_registered != registered:
            log(f"workflow {cfg.workflow} {'registered' if now_registered else 'not registered'}")
            registered = now_registered
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

"""Start, watch and stop a TorchServe process; register the `restore` workflow after start.

Used by ``python -m serving.run`` and by the integration tests, so both run TorchServe the same
way: the repository's ``config.properties`` with the ports, paths and options overridden.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from restoration.names import MANAGEMENT_PORT, METRICS_PORT, MODELS, TORCHSERVE_INFERENCE_PORT, WORKFLOW_RESTORE
from serving.ts_client import Management, read_keys

ROOT = Path(__file__).resolve().parent.parent


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def peak_rss_bytes(pid: int) -> int:
    """A process's peak resident set size so far (VmHWM from /proc), in bytes."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise ValueError(f"no VmHWM for process {pid}")


def read_properties(path: Path) -> dict[str, str]:
    """``key=value`` lines of a Java properties file (comments and blanks skipped)."""
    props: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "!")) or "=" not in line:
            continue
        key, value = line.split("=", 1)
        props[key.strip()] = value.strip()
    return props


def render_properties(props: dict[str, str]) -> str:
    return "".join(f"{k}={v}\n" for k, v in props.items())


@dataclass
class TorchServe:
    """One TorchServe process with its own ports, working directory and configuration.

    Its inference port is the loopback one behind the nginx front (serving/proxy.py); tests also
    talk to it directly."""

    model_store: Path
    workdir: Path
    host: str = "127.0.0.1"
    inference_port: int = TORCHSERVE_INFERENCE_PORT
    management_port: int = MANAGEMENT_PORT
    metrics_port: int = METRICS_PORT
    overrides: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    base_config: Path = ROOT / "config.properties"
    log_config: Path = ROOT / "serving" / "log4j2.xml"
    proc: subprocess.Popen | None = None
    grpc_ports: tuple[int, int] = (7070, 7071)

    def __post_init__(self) -> None:
        if self.inference_port != TORCHSERVE_INFERENCE_PORT:  # a test or side instance: keep clear of the defaults
            self.grpc_ports = (free_port(), free_port())

    @property
    def inference_url(self) -> str:
        return f"http://{self.host}:{self.inference_port}"

    @property
    def management_url(self) -> str:
        return f"http://{self.host}:{self.management_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "torchserve.log"

    def config_path(self) -> Path:
        props = read_properties(self.base_config)
        props.update({
            "inference_address": self.inference_url,
            "management_address": self.management_url,
            "metrics_address": self.metrics_url,
            # gRPC servers start too; give them free ports so instances don't collide.
            "grpc_inference_port": str(self.grpc_ports[0]),
            "grpc_management_port": str(self.grpc_ports[1]),
            "model_store": str(self.model_store),
            "workflow_store": str(self.model_store),
            "metrics_config": str(ROOT / "serving" / "metrics.yaml"),
            "allowed_urls": f"file://{self.model_store}/.*",
        })
        # The frontend puts worker sockets (.ts.sock.<port>) and unpacked archives under
        # java.io.tmpdir; one directory per instance keeps side-by-side instances apart.
        tmp = self.workdir / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        vmargs = props.get("vmargs", "")
        props["vmargs"] = f"{vmargs} -Djava.io.tmpdir={tmp}".strip()
        props.update(self.overrides)
        path = self.workdir / "config.properties"
        path.write_text(render_properties(props), encoding="utf-8")
        return path

    def start(self, timeout: float = 180.0, models: tuple[str, ...] = MODELS, workflow: bool = True) -> None:
        """Start TorchServe, wait for every model to answer, then register the workflow."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = self.config_path()
        # TorchServe keeps its PID file in the temp directory and refuses to start when it finds
        # one of another instance; a temp directory per instance lets several run side by side.
        tmp = self.workdir / "tmp"
        tmp.mkdir(exist_ok=True)
        env = {**os.environ, "LOG_LOCATION": str(self.workdir / "logs"), "TMPDIR": str(tmp),
               "METRICS_LOCATION": str(self.workdir / "logs"), **self.env}
        bindir = str(Path(sys.executable).parent)
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
        cmd = ["torchserve", "--start", "--foreground", "--ts-config", str(cfg),
               "--model-store", str(self.model_store), "--ncs", "--log-config", str(self.log_config)]
        # Its own process group (stopped as a whole, and a terminal's Ctrl-C reaches only the
        # caller, which stops it in order), but the caller's session: Linux schedules CPU time
        # per session (autogroup), so TorchServe competes with its caller as one process would,
        # and in-process and served benchmarks run on equal terms.
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         process_group=0)
        deadline = time.monotonic() + timeout
        time.sleep(1.0)
        self._check_alive()
        self.wait_models(models, deadline)
        if workflow:
            self.register_workflow(deadline=deadline)

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""
            raise RuntimeError(f"TorchServe exited with {self.proc.returncode}; log tail:\n{tail}")

    def management(self) -> Management:
        return Management(self.management_url, self.inference_url, self.workdir)

    def wait_models(self, models: tuple[str, ...], deadline: float) -> None:
        """Block until every model has a READY worker."""
        api = self.management()
        pending = list(models)
        while pending:
            self._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"models not ready in time: {pending}; see {self.log_path}")
            if api.model_ready(pending[0]):
                pending.pop(0)
                continue
            time.sleep(0.5)

    def register_workflow(self, name: str = WORKFLOW_RESTORE, deadline: float | None = None) -> None:
        """Register ``name.war`` (TorchServe cannot load workflows at start-up)."""
        deadline = deadline or time.monotonic() + 180
        api = self.management()
        if api.workflow_registered(name):
            return
        while True:
            status, body = api.register_workflow(name, timeout=300)
            if status == 200:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"registering workflow {name} failed: {status} {body[:500].decode(errors='replace')}")
            time.sleep(1)

    def auth(self, kind: str) -> dict[str, str]:
        """Bearer header from TorchServe's key file when token authorization is on."""
        key = read_keys(self.workdir).get(kind)
        return {"Authorization": f"Bearer {key}"} if key else {}

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the whole process group (frontend and workers), SIGKILL what is left."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        self.proc = None

    def worker_pids(self, model: str) -> list[int]:
        """PIDs of a model's Python workers (for fault tests and memory readings)."""
        r = requests.get(f"{self.management_url}/models/{model}", timeout=10, headers=self.auth("management"))
        r.raise_for_status()
        return [int(w["pid"]) for w in r.json()[0].get("workers", []) if w.get("pid")]

    def workers_peak_rss_mib(self, model: str) -> float:
        """The largest peak RSS among a model's workers, in MiB."""
        return max(peak_rss_bytes(pid) for pid in self.worker_pids(model)) / 2**20

"""The nginx front of the inference API: render its configuration, start, watch and stop it.

nginx (Debian's package, with its njs module for the two pieces of logic in
``serving/nginx/front.js``) takes the inference port clients use; TorchServe listens behind it on
loopback. ``serving/nginx/nginx.conf`` is a template; :func:`render` fills it in for a local run
and the tests (:class:`Proxy`) and for the cluster (``python -m k8s.render_config`` writes the
proxy container's copy), so the two cannot drift apart.
"""

from __future__ import annotations

import getpass
import grp
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from restoration.image_io import MB, Limits
from restoration.names import INFERENCE_PORT, TORCHSERVE_INFERENCE_PORT
from serving.server import ROOT, read_properties

TEMPLATE = ROOT / "serving" / "nginx" / "nginx.conf"
JS_DIR = ROOT / "serving" / "nginx"
# Where Debian's libnginx-mod-http-js puts the module (the same in the proxy image).
JS_MODULE = Path("/usr/lib/nginx/modules/ngx_http_js_module.so")
# Workflow requests in flight per front (per pod): each holds its whole reply in memory, so this
# times twice the largest reply is what the front may need (docs/deploy.md, "The front"). Also far
# below the ~14 concurrent requests past which TorchServe workflows are reported to hang.
WORKFLOW_LIMIT = 4
BUSY_RETRY_AFTER_S = 5
# Environment of `make run`: a directory of accepted keys (one per file); unset, no key is needed.
ENV_KEYS_DIR = "PIX2PIX_INFERENCE_KEYS_DIR"


def max_body_bytes(limits: Limits | None = None) -> int:
    """The largest body the front takes: the largest image the limits accept, plus 1 MB for a
    multipart envelope and form fields. Larger bodies get a 413 before reaching TorchServe."""
    return (limits or Limits()).max_bytes + MB


def workflow_reply_bytes(config: Path = ROOT / "config.properties") -> int:
    """The largest workflow reply: TorchServe's ``max_response_size``, which bounds every node's
    output and hence the final reply (the front holds that much per workflow request)."""
    return int(read_properties(config)["max_response_size"])


def read_timeout_s(config: Path = ROOT / "config.properties") -> int:
    """How long the front waits for TorchServe's reply: TorchServe's own longest timeout."""
    return int(read_properties(config)["default_response_timeout"])


@dataclass(frozen=True)
class FrontSettings:
    """Everything the template needs; the defaults are those of a local run."""

    listen: str = f"127.0.0.1:{INFERENCE_PORT}"
    upstream: str = f"127.0.0.1:{TORCHSERVE_INFERENCE_PORT}"
    run_dir: Path = ROOT / "logs" / "nginx"
    keys_dir: Path | None = None
    js_dir: Path = JS_DIR
    js_module: Path = JS_MODULE
    workers: int = 2
    workflow_limit: int = WORKFLOW_LIMIT
    workflow_reply_max: int = field(default_factory=workflow_reply_bytes)
    max_body: int = field(default_factory=max_body_bytes)
    read_timeout: int = field(default_factory=read_timeout_s)
    access_log: str | None = None  # default: access.log in run_dir
    error_log: str | None = None  # default: error.log in run_dir
    user: str | None = None  # "user group" for nginx's workers when started as root


AUTH = "if ($inference_key_ok != 1) { return 401; }"
PING_CHECK = ("if ($inference_keys_usable != 1) { return 503 '{\"code\": 503, \"type\": \"NoInferenceKey\", "
              "\"message\": \"no usable inference key is configured; every request would be refused\"}'; }")


def render(s: FrontSettings) -> str:
    """The nginx configuration for ``s`` (the template with every @NAME@ filled in)."""
    values = {
        "JS_MODULE": str(s.js_module),
        "USER": f"user {s.user};" if s.user else "",
        "WORKERS": str(s.workers),
        "RUN_DIR": str(s.run_dir),
        "ERROR_LOG": s.error_log or str(s.run_dir / "error.log"),
        "ACCESS_LOG": s.access_log or str(s.run_dir / "access.log"),
        "JS_DIR": str(s.js_dir),
        "KEYS_DIR": str(s.keys_dir) if s.keys_dir else "none",
        "READ_TIMEOUT": f"{s.read_timeout}s",
        "MAX_BODY": str(s.max_body),
        "UPSTREAM": s.upstream,
        "LISTEN": s.listen,
        "WORKFLOW_LIMIT": str(s.workflow_limit),
        "WORKFLOW_REPLY_MAX": str(s.workflow_reply_max),
        "BUSY_RETRY_AFTER": str(BUSY_RETRY_AFTER_S),
        "AUTH": AUTH if s.keys_dir else "# no inference keys configured: open (local loopback run)",
        "PING_CHECK": PING_CHECK if s.keys_dir else "",
        "TOO_LARGE_MESSAGE": (f"the body is larger than {s.max_body / MB:.0f} MB, the most this API takes "
                              f"(images up to {(s.max_body - MB) / MB:.0f} MB); send a smaller image"),
    }
    text = TEMPLATE.read_text(encoding="utf-8")

    def fill(m: re.Match) -> str:
        if m.group(1) not in values:
            raise KeyError(f"{TEMPLATE.name}: no value for @{m.group(1)}@")
        return values[m.group(1)]

    return re.sub(r"@([A-Z_]+)@", fill, text)


def nginx_binary() -> str | None:
    """The nginx executable (Debian installs it in /usr/sbin, which a user's PATH may lack)."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def missing() -> str | None:
    """Why the front cannot run on this machine, or None."""
    if nginx_binary() is None:
        return "nginx is not installed (Debian: apt-get install nginx libnginx-mod-http-js; `make setup` does it)"
    if not JS_MODULE.exists():
        return f"nginx's njs module is missing ({JS_MODULE}; Debian package libnginx-mod-http-js)"
    return None


def _root_user() -> str | None:
    """Run the workers as the invoking user: nginx started as root would otherwise switch to
    ``nobody``, which cannot read a private keys directory or write the run directory."""
    if os.geteuid() != 0:
        return None
    return f"{getpass.getuser()} {grp.getgrgid(os.getegid()).gr_name}"


@dataclass
class Proxy:
    """One nginx front process (master and workers) with its own run directory."""

    settings: FrontSettings
    proc: subprocess.Popen | None = None

    @classmethod
    def local(cls, run_dir: Path, listen_port: int = INFERENCE_PORT, upstream_port: int = TORCHSERVE_INFERENCE_PORT,
              keys_dir: Path | None = None, **kw) -> Proxy:
        """A front on loopback ``listen_port`` in front of TorchServe on loopback ``upstream_port``."""
        return cls(FrontSettings(listen=f"127.0.0.1:{listen_port}", upstream=f"127.0.0.1:{upstream_port}",
                                 run_dir=Path(run_dir), keys_dir=keys_dir, user=_root_user(), **kw))

    @property
    def url(self) -> str:
        return f"http://{self.settings.listen}"

    @property
    def config_path(self) -> Path:
        return self.settings.run_dir / "nginx.conf"

    @property
    def access_log(self) -> Path:
        return Path(self.settings.access_log or self.settings.run_dir / "access.log")

    @property
    def error_log(self) -> Path:
        return Path(self.settings.error_log or self.settings.run_dir / "error.log")

    def with_settings(self, **changes) -> Proxy:
        return Proxy(replace(self.settings, **changes))

    def write_config(self) -> Path:
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(render(self.settings), encoding="utf-8")
        return self.config_path

    def check(self) -> None:
        """``nginx -t`` on the rendered configuration; raises with nginx's message."""
        out = subprocess.run(self._cmd("-t"), capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise RuntimeError(f"nginx refused {self.config_path}:\n{out.stderr}")

    def _cmd(self, *extra: str) -> list[str]:
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError(missing())
        return [binary, "-e", str(self.error_log), "-p", str(self.settings.run_dir), "-c", str(self.config_path), *extra]

    def start(self, timeout: float = 30.0) -> None:
        """Write the configuration, check it, start nginx in the foreground, wait for its port."""
        if reason := missing():
            raise RuntimeError(reason)
        self.write_config()
        self.check()
        with open(self.settings.run_dir / "nginx.out", "ab") as out:
            # its own process group, like TorchServe's: the caller stops it in order
            self.proc = subprocess.Popen(self._cmd(), stdout=out, stderr=subprocess.STDOUT, process_group=0)
        host, port = self.settings.listen.rsplit(":", 1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.error_log.read_text(errors="replace")[-2000:] if self.error_log.exists() else ""
                raise RuntimeError(f"nginx exited with {self.proc.returncode}:\n{tail}")
            try:
                with socket.create_connection((host, int(port)), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"nginx did not listen on {self.settings.listen} within {timeout:.0f} s")

    def worker_pids(self) -> list[int]:
        """PIDs of nginx's worker processes (for memory readings)."""
        if self.proc is None:
            return []
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [int(p) for p in children.read_text().split()] if children.exists() else []

    def stop(self, timeout: float = 30.0) -> None:
        """SIGQUIT (finish the requests in flight, then exit), SIGKILL what is left after ``timeout``."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGQUIT)
                self.proc.wait(timeout)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        self.proc = None

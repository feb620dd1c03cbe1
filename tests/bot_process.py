"""Run the real bot (``python -m bot``) as a subprocess for the integration tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from serving.server import free_port

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class BotProcess:
    """One bot process with its own state directory, metrics port and log file."""

    api_base: str
    token: str
    torchserve_url: str
    state_dir: Path
    log_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    metrics_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "TELEGRAM_", "TORCHSERVE_"))}
        env.update({
            "TELEGRAM_BOT_TOKEN": self.token,
            "TELEGRAM_API_BASE": self.api_base,
            "TORCHSERVE_URL": self.torchserve_url,
            "BOT_METRICS_PORT": str(self.metrics_port),
            "BOT_METRICS_HOST": "127.0.0.1",
            "BOT_STATE_DIR": str(self.state_dir),
            "BOT_ALBUM_WAIT": "0.5",
            "BOT_TORCHSERVE_BACKOFF": "0.3",
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        })
        return env

    def start(self) -> BotProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "bot"], cwd=ROOT, env=self.env(), stdout=log,
                                         stderr=subprocess.STDOUT)
        return self

    def wait_metrics(self, timeout: float = 30.0) -> None:
        """Block until the bot serves /metrics (it does so before it takes updates)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the bot exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                if requests.get(self.metrics_url, timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"the bot's metrics did not come up:\n{self.log()[-3000:]}")

    @property
    def db_path(self) -> Path:
        return self.state_dir / "jobs.sqlite3"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample on the bot's /metrics (0 when absent)."""
        text = requests.get(self.metrics_url, timeout=5).text
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait for the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, like a node losing power."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        """Always called by fixtures: SIGTERM, then SIGKILL if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

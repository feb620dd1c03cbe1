"""A real Prometheus, configured from monitoring/prometheus.yml, scrapes a real TorchServe and the real bot.

The scrape configuration is the project's own (same jobs, same rule file); only the targets are
rewritten to this test's loopback ports and the intervals shortened. After a few predictions and a
bot job, the test reads the counters back through Prometheus' HTTP query API, and runs every
expression of the alert rules and the Grafana dashboard against the live data.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from serving.server import free_port
from tests.bot_process import BotProcess
from tests.conftest import encode, photo
from tests.telegram_stub import TelegramStub, User

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "monitoring"
DASHBOARD = ROOT / "k8s" / "components" / "monitoring" / "dashboards" / "pix2pix-sr.json"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("prometheus") is None,
                       reason="the Prometheus server is missing: install Debian's `prometheus` package (make test's set-up does)"),
]


def test_config(targets: dict[str, str], rule_file: Path) -> dict:
    """monitoring/prometheus.yml with its static targets replaced by ``targets`` (job -> host:port)."""
    cfg = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    cfg["global"].update({"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"})
    cfg["rule_files"] = [str(rule_file)]
    jobs = {job["job_name"] for job in cfg["scrape_configs"]}
    assert jobs == set(targets), f"the project scrapes {jobs}; the test provides {set(targets)}"
    for job in cfg["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    return cfg


test_config.__test__ = False  # not a test itself


class Prometheus:
    """One Prometheus server on a free loopback port with its own data directory."""

    def __init__(self, config: dict, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "prometheus.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        cmd = ["prometheus", f"--config.file={self.config_path}", f"--storage.tsdb.path={self.workdir / 'data'}",
               f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log_path.read_text()[-2000:]}")
            try:
                if requests.get(f"{self.url}/-/ready", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise TimeoutError("prometheus did not become ready")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def query(self, expr: str) -> list[dict]:
        r = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = r.json()
        assert r.ok and body["status"] == "success", f"{expr}: {body}"
        return body["data"]["result"]

    def value(self, expr: str) -> float:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else 0.0

    def wait_value(self, expr: str, at_least: float, timeout: float = 30.0) -> float:
        deadline = time.monotonic() + timeout
        while True:
            value = self.value(expr)
            if value >= at_least or time.monotonic() > deadline:
                return value
            time.sleep(0.5)


def direct(url: str, name: str, **labels: str) -> float:
    """A counter read straight from a /metrics page (the truth Prometheus must reproduce)."""
    total = 0.0
    for family in text_string_to_metric_families(requests.get(url, timeout=10).text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


@pytest.fixture(scope="module")
def stub():
    with TelegramStub() as server:
        yield server


@pytest.fixture(scope="module")
def bot(stub, torchserve, tmp_path_factory):
    work = tmp_path_factory.mktemp("prom_bot")
    process = BotProcess(stub.base_url, stub.token, torchserve.inference_url, work / "state", work / "bot.log")
    process.start()
    try:
        process.wait_metrics()
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def prometheus(torchserve, bot, tmp_path_factory):
    targets = {"torchserve": f"127.0.0.1:{torchserve.metrics_port}", "pix2pix-bot": f"127.0.0.1:{bot.metrics_port}"}
    server = Prometheus(test_config(targets, MONITORING / "alerts.yml"), tmp_path_factory.mktemp("prometheus"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


def test_both_targets_are_up(prometheus):
    assert prometheus.wait_value('up{job="torchserve"}', 1) == 1
    assert prometheus.wait_value('up{job="pix2pix-bot"}', 1) == 1
    targets = requests.get(f"{prometheus.url}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
    assert {t["labels"]["job"]: t["health"] for t in targets} == {"torchserve": "up", "pix2pix-bot": "up"}


def test_prediction_counters_reach_prometheus(prometheus, torchserve):
    metrics = f"{torchserve.metrics_url}/metrics"
    before = direct(metrics, "ts_inference_requests_total", model_name="sr_x2")
    body = encode(photo(64, 48, seed=7), "PNG")
    for _ in range(3):
        r = requests.post(f"{torchserve.inference_url}/predictions/sr_x2", data=body, timeout=120)
        assert r.status_code == 200
    after = direct(metrics, "ts_inference_requests_total", model_name="sr_x2")
    assert after >= before + 3
    expr = 'sum(ts_inference_requests_total{job="torchserve",model_name="sr_x2"})'
    assert prometheus.wait_value(expr, after) == after
    # the handlers' own histograms are there too, per model
    assert prometheus.wait_value('sum(InferenceSeconds_count{job="torchserve",ModelName="sr_x2"})', 3) >= 3
    assert prometheus.value('sum(Requests2XX{job="torchserve"})') > 0


def test_bot_job_counters_reach_prometheus(prometheus, stub, bot):
    user = User(4242)
    stub.user_document(user, encode(photo(64, 48, seed=8).convert("L"), "PNG"), "old.png", "image/png")
    stub.wait_for(lambda: stub.calls_of("sendDocument", user.id), 90, "the restored image")
    # the job is counted once it is finished (after its last Telegram call), so wait for it
    stub.wait_for(lambda: bot.metric("bot_jobs_total", outcome="ok") >= 1, 30, "the job counted as ok")
    ok = bot.metric("bot_jobs_total", outcome="ok")
    assert prometheus.wait_value('sum(bot_jobs_total{job="pix2pix-bot",outcome="ok"})', ok) == ok
    assert prometheus.wait_value('sum(bot_torchserve_request_seconds_count{job="pix2pix-bot"})', 1) >= 1


def test_alert_rules_are_loaded_and_evaluate_without_errors(prometheus):
    want = {g["name"]: [r["alert"] for r in g["rules"]]
            for g in yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"]}
    deadline = time.monotonic() + 20
    while True:
        groups = requests.get(f"{prometheus.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        if rules and all(r.get("health") == "ok" for r in rules) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert {g["name"]: [r["name"] for r in g["rules"]] for g in groups} == want
    assert [(r["name"], r.get("lastError")) for r in rules if r.get("health") != "ok"] == []
    # a healthy service fires nothing
    firing = requests.get(f"{prometheus.url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    assert [a["labels"]["alertname"] for a in firing if a["state"] == "firing"] == []


def test_every_dashboard_query_runs_and_the_main_ones_have_data(prometheus):
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 15
    # series that exist only after errors, restarts, on GPUs, or after Telegram failures may be empty here
    optional = ("Requests5XX", "GPU", "bot_telegram", "bot_torchserve_errors", "Rejections", "Requests4XX")
    pending = list(exprs)
    deadline = time.monotonic() + 20
    while True:
        # every query must parse and run; a rate() needs two samples of a new series, so wait a little
        pending = [e for e in pending if not prometheus.query(e.replace("$__rate_interval", "1m"))]
        missing = [e for e in pending if not any(word in e for word in optional)]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert missing == []

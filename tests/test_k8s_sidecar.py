"""The serving pod as the cluster runs it: TorchServe from the cluster's config.properties (its
inference API on loopback, its own authorization off), the nginx front from the cluster's
nginx.conf (k8s/base/proxy/, paths pointed at this machine) and the sidecar (docker/ts_sidecar.py)
with its probes and loop, all against each other here as in the pod. The workflow must be
registered after start; the front holds the keys of a mounted Secret (a directory here).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from k8s import render_config
from serving.proxy import Proxy, _root_user
from serving.server import TorchServe, free_port
from tests.conftest import encode, photo

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
SIDECAR = ROOT / "docker" / "ts_sidecar.py"
sys.path.insert(0, str(SIDECAR.parent))
import ts_sidecar  # noqa: E402

KEY = "cluster-key-0123456789abcdef"


@pytest.fixture(scope="module")
def pod_torchserve(model_store, tmp_path_factory):
    """TorchServe started from the cluster's own config.properties (k8s/base/torchserve/, addresses and
    paths pointed at this machine); the workflow is NOT registered."""
    ts = TorchServe(model_store=model_store, workdir=tmp_path_factory.mktemp("ts_auth"),
                    inference_port=free_port(), management_port=free_port(), metrics_port=free_port(),
                    base_config=render_config.TARGET, env={"PIX2PIX_TORCH_THREADS": "1"})
    try:
        ts.start(timeout=240, workflow=False)
        yield ts
    finally:
        ts.stop()


def sidecar_env(ts: TorchServe) -> dict[str, str]:
    return {**os.environ, "TS_WORKDIR": str(ts.workdir), "TS_INFERENCE_URL": ts.inference_url,
            "TS_MANAGEMENT_URL": ts.management_url}




@pytest.fixture(scope="module")
def front(pod_torchserve, tmp_path_factory):
    """The proxy container's configuration, with this machine's paths and ports."""
    run = tmp_path_factory.mktemp("proxy")
    (run / "keys").mkdir()
    (run / "keys" / "inference-key").write_text(KEY + "\n")
    settings = render_config.proxy_settings(
        listen=f"127.0.0.1:{free_port()}", upstream=f"127.0.0.1:{pod_torchserve.inference_port}", run_dir=run,
        js_dir=ROOT / "serving" / "nginx", keys_dir=run / "keys", access_log=str(run / "access.log"),
        error_log=str(run / "error.log"), user=_root_user())
    proxy = Proxy(settings)
    proxy.start()
    yield proxy
    proxy.stop()


def probe(ts: TorchServe, command: str) -> int:
    """Run the sidecar as the kubelet runs an exec probe; return its exit code."""
    return subprocess.run([sys.executable, str(SIDECAR), command], env=sidecar_env(ts), timeout=30,
                          capture_output=True).returncode


def bearer(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_only_the_front_asks_for_a_key(pod_torchserve, front):
    ts = pod_torchserve
    # TorchServe's own authorization is off: no key file, /ping open on its loopback port
    assert not (ts.workdir / "key_file.json").exists()
    assert requests.get(f"{ts.inference_url}/ping", timeout=10).status_code == 200
    # the front: /ping open, everything else needs the Secret's key
    assert requests.get(f"{front.url}/ping", timeout=10).status_code == 200
    body = encode(photo(48, 32, seed=4), "PNG")
    assert requests.post(f"{front.url}/predictions/sr_x2", data=body, timeout=60).status_code == 401
    r = requests.post(f"{front.url}/predictions/sr_x2", data=body, timeout=120, headers=bearer())
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/png"


def test_metrics_need_no_key_so_prometheus_can_scrape(pod_torchserve):
    r = requests.get(f"{pod_torchserve.metrics_url}/metrics", timeout=10)
    assert r.status_code == 200 and "# TYPE" in r.text


def test_probes_and_sidecar_register_the_workflow(pod_torchserve, front):
    ts = pod_torchserve
    assert probe(ts, "live") == 0
    # readiness fails while the workflow is missing, although /ping is healthy
    assert probe(ts, "ready") == 1
    body = encode(photo(64, 48, seed=3).convert("L"), "PNG")
    assert requests.post(f"{front.url}/wfpredict/restore", data=body, timeout=60, headers=bearer()).status_code == 404
    cfg = ts_sidecar.SidecarConfig.from_env({**sidecar_env(ts), "SIDECAR_INTERVAL": "0.5"})
    ts_sidecar.run(cfg, rounds=2)
    assert probe(ts, "ready") == 0
    good = requests.post(f"{front.url}/wfpredict/restore", data=body, timeout=120, headers=bearer())
    assert good.status_code == 200 and good.headers["Content-Type"] == "image/png" and len(good.content) > 100


def test_a_restart_loses_the_workflow_and_the_sidecar_registers_it_again(pod_torchserve, front):
    """TorchServe restarts (as its container would) and forgets the workflow; the running sidecar
    registers it again. The front and the key are untouched by it."""
    ts = pod_torchserve
    stop = threading.Event()
    cfg = ts_sidecar.SidecarConfig.from_env({**sidecar_env(ts), "SIDECAR_INTERVAL": "0.5"})
    sidecar = threading.Thread(target=ts_sidecar.run, args=(cfg,), kwargs={"stop": stop}, daemon=True)
    sidecar.start()
    try:
        wait(lambda: probe(ts, "ready") == 0, 60, "the workflow registered")
        ts.stop()
        # TorchServe away: the front says so, with a retry hint
        r = requests.post(f"{front.url}/wfpredict/restore", data=b"x", timeout=30, headers=bearer())
        assert r.status_code == 503 and r.headers["Retry-After"] == "5"
        ts.start(timeout=240, workflow=False)
        wait(lambda: probe(ts, "ready") == 0, 120, "the workflow registered again")
    finally:
        stop.set()
        sidecar.join(30)
    body = encode(photo(48, 32, seed=4), "PNG")
    r = requests.post(f"{front.url}/wfpredict/restore", data=body, timeout=120, headers=bearer())
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/png"


def wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_missing_server_fails_the_probes(tmp_path):
    env = {**os.environ, "TS_WORKDIR": str(tmp_path), "TS_INFERENCE_URL": f"http://127.0.0.1:{free_port()}",
           "TS_MANAGEMENT_URL": f"http://127.0.0.1:{free_port()}"}
    for command in ("live", "ready"):
        assert subprocess.run([sys.executable, str(SIDECAR), command], env=env, timeout=30).returncode == 1
    assert subprocess.run([sys.executable, str(SIDECAR), "bogus"], env=env, timeout=30,
                          capture_output=True).returncode == 2

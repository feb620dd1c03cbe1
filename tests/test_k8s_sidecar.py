"""The serving pod's sidecar (docker/ts_sidecar.py) against a real TorchServe with token authorization ON.

This is the cluster's configuration for authorization: TorchServe writes random keys to
key_file.json, ``/ping`` refuses callers without the key, the workflow must be registered after
start. The sidecar's probes and sidecar loop are run here as in the pod; the Kubernetes API it
publishes the inference key to is a small loopback stand-in (no cluster can run here).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from k8s import render_config
from serving.server import TorchServe, free_port
from tests.conftest import encode, photo

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
SIDECAR = ROOT / "docker" / "ts_sidecar.py"
sys.path.insert(0, str(SIDECAR.parent))
import ts_sidecar  # noqa: E402


class KubeStandIn(ThreadingHTTPServer):
    """Records the PATCH requests the sidecar sends to the Kubernetes API."""

    def __init__(self) -> None:
        self.patches: list[tuple[str, str, dict]] = []
        super().__init__(("127.0.0.1", free_port()), _KubeHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _KubeHandler(BaseHTTPRequestHandler):
    def do_PATCH(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.patches.append((self.path, self.headers.get("Authorization", ""), body))
        reply = json.dumps({"kind": "Status", "status": "Success"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def authed_torchserve(model_store, tmp_path_factory):
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


def probe(ts: TorchServe, command: str) -> int:
    """Run the sidecar as the kubelet runs an exec probe; return its exit code."""
    return subprocess.run([sys.executable, str(SIDECAR), command], env=sidecar_env(ts), timeout=30,
                          capture_output=True).returncode


def test_authorization_is_on_and_ping_needs_the_key(authed_torchserve):
    ts = authed_torchserve
    keys = ts_sidecar.read_keys(ts.workdir)
    assert {"management", "inference"} <= set(keys) and keys["management"] != keys["inference"]
    # keys live as long as the process (rotated by a restart), not TorchServe's default hour
    data = json.loads((ts.workdir / "key_file.json").read_text())
    expires = datetime.fromisoformat(data["inference"]["expiration time"].replace("Z", "+00:00"))
    assert expires - datetime.now(UTC) > timedelta(days=300)
    assert requests.get(f"{ts.inference_url}/ping", timeout=10).status_code == 400
    ok = requests.get(f"{ts.inference_url}/ping", timeout=10, headers={"Authorization": f"Bearer {keys['inference']}"})
    assert ok.status_code == 200 and "Healthy" in ok.text
    # the management key does not open the inference API, and vice versa
    wrong = requests.get(f"{ts.management_url}/models", timeout=10,
                         headers={"Authorization": f"Bearer {keys['inference']}"})
    assert wrong.status_code == 400


def test_metrics_need_no_key_so_prometheus_can_scrape(authed_torchserve):
    r = requests.get(f"{authed_torchserve.metrics_url}/metrics", timeout=10)
    assert r.status_code == 200 and "# TYPE" in r.text


def test_probes_and_sidecar_register_the_workflow_and_publish_the_key(authed_torchserve, tmp_path):
    ts = authed_torchserve
    assert probe(ts, "live") == 0
    # readiness fails while the workflow is missing, although /ping is healthy
    assert probe(ts, "ready") == 1

    kube = KubeStandIn()
    thread = threading.Thread(target=kube.serve_forever, daemon=True)
    thread.start()
    try:
        cfg = ts_sidecar.SidecarConfig.from_env({**sidecar_env(ts), "KEY_SECRET": "pix2pix-torchserve-key",
                                              "RESTART_DEPLOYMENT": "pix2pix-bot", "SIDECAR_INTERVAL": "0.5"})
        client = ts_sidecar.KubeClient(base=kube.url, token="service-account-token", namespace="pix2pix")
        ts_sidecar.run(cfg, kube=client, rounds=2)
    finally:
        kube.shutdown()
        kube.server_close()

    assert probe(ts, "ready") == 0
    key = ts_sidecar.read_keys(ts.workdir)["inference"]
    # exactly one publication (the second round saw the same key) and one bot restart
    assert [p[0] for p in kube.patches] == ["/api/v1/namespaces/pix2pix/secrets/pix2pix-torchserve-key",
                                            "/apis/apps/v1/namespaces/pix2pix/deployments/pix2pix-bot"]
    assert all(p[1] == "Bearer service-account-token" for p in kube.patches)
    assert base64.b64decode(kube.patches[0][2]["data"]["inference-key"]).decode() == key
    annotations = kube.patches[1][2]["spec"]["template"]["metadata"]["annotations"]
    assert annotations[ts_sidecar.KEY_ANNOTATION] == ts_sidecar.key_digest(key) and key not in json.dumps(annotations)

    # what the bot does with the published key: the workflow answers with it, refuses without
    body = encode(photo(64, 48, seed=3).convert("L"), "PNG")
    good = requests.post(f"{ts.inference_url}/wfpredict/restore", data=body, timeout=120,
                         headers={"Authorization": f"Bearer {key}"})
    assert good.status_code == 200 and len(good.content) > 100
    assert requests.post(f"{ts.inference_url}/wfpredict/restore", data=body, timeout=60).status_code == 400


def test_a_restart_rotates_the_key_and_the_sidecar_follows(authed_torchserve):
    """TorchServe restarts (as its container would): new keys, no workflow. The running sidecar
    registers the workflow again and publishes the new key; requests with the old key are refused."""
    ts = authed_torchserve
    old_key = ts_sidecar.read_keys(ts.workdir)["inference"]
    kube = KubeStandIn()
    threading.Thread(target=kube.serve_forever, daemon=True).start()
    stop = threading.Event()
    cfg = ts_sidecar.SidecarConfig.from_env({**sidecar_env(ts), "KEY_SECRET": "pix2pix-torchserve-key",
                                          "RESTART_DEPLOYMENT": "pix2pix-bot", "SIDECAR_INTERVAL": "0.5"})
    client = ts_sidecar.KubeClient(base=kube.url, token="t", namespace="pix2pix")
    sidecar = threading.Thread(target=ts_sidecar.run, args=(cfg, client), kwargs={"stop": stop}, daemon=True)
    sidecar.start()
    try:
        wait(lambda: len(kube.patches) >= 2, 60, "the first publication")
        # key_file.json stays, as in the pod's emptyDir across a container restart: TorchServe rewrites it
        ts.stop()
        ts.start(timeout=240, workflow=False)
        new_key = ts_sidecar.read_keys(ts.workdir)["inference"]
        assert new_key != old_key
        wait(lambda: len(kube.patches) >= 4, 120, "the new key published")
    finally:
        stop.set()
        sidecar.join(30)
        kube.shutdown()
        kube.server_close()
    published = [base64.b64decode(p[2]["data"]["inference-key"]).decode() for p in kube.patches if "/secrets/" in p[0]]
    assert published == [old_key, new_key]
    assert probe(ts, "ready") == 0
    body = encode(photo(48, 32, seed=4), "PNG")
    assert requests.post(f"{ts.inference_url}/predictions/sr_x2", data=body, timeout=60,
                         headers={"Authorization": f"Bearer {old_key}"}).status_code == 400
    assert requests.post(f"{ts.inference_url}/predictions/sr_x2", data=body, timeout=120,
                         headers={"Authorization": f"Bearer {new_key}"}).status_code == 200


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

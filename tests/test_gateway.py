"""The authenticating gateway (docker/ts_gateway.py) in front of a real TorchServe.

In the scaled cluster set-up (k8s/components/gateway) TorchServe's own authorization is off and
listens on the pod's loopback; the gateway is the only way in and holds the shared keys. Here it
runs as the pod runs it, a separate process, in front of the suite's TorchServe (tiny weights).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from serving.server import free_port
from tests.conftest import encode, photo

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
GATEWAY = ROOT / "docker" / "ts_gateway.py"
KEY_A = "k" * 8 + "-first-key-0123456789"
KEY_B = "second-key-abcdefghijklmnop"


class Gateway:
    def __init__(self, upstream: str, keys_dir: Path, reload_s: float = 0.2) -> None:
        self.port = free_port()
        env = {**os.environ, "GATEWAY_LISTEN": f"127.0.0.1:{self.port}", "GATEWAY_UPSTREAM": upstream,
               "GATEWAY_KEYS_DIR": str(keys_dir), "GATEWAY_KEYS_RELOAD": str(reload_s)}
        self.proc = subprocess.Popen([sys.executable, str(GATEWAY)], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited: {self.proc.stdout.read()}")
            try:
                requests.get(self.url + "/nothing", timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.1)
        raise AssertionError("gateway did not start")

    def stop(self) -> str:
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=30)
        return out


def write_keys(keys_dir: Path, **keys: str) -> None:
    keys_dir.mkdir(exist_ok=True)
    for old in keys_dir.iterdir():
        old.unlink()
    for name, key in keys.items():
        (keys_dir / name).write_text(key + "\n")


@pytest.fixture()
def gateway(torchserve, tmp_path):
    keys = tmp_path / "keys"
    write_keys(keys, **{"inference-key": KEY_A, "previous-key": KEY_B})
    gw = Gateway(torchserve.inference_url, keys)
    yield gw, keys
    gw.stop()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.post(url, data=body, timeout=120, headers={"Content-Type": "application/octet-stream",
                                                               **(headers or {})})


def test_requests_without_a_valid_key_are_refused_with_json(gateway):
    gw, _ = gateway
    body = encode(photo(64, 48))
    for headers in ({}, bearer("wrong-key-0123456789"), {"Authorization": f"Basic {KEY_A}"},
                    {"Authorization": "Bearer "}, bearer(KEY_A + "x"), bearer(KEY_A[:-1])):
        r = post(f"{gw.url}/predictions/colorize", body, headers)
        assert r.status_code == 401, headers
        assert r.json()["code"] == 401 and "Authorization: Bearer" in r.json()["message"]
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    # health needs no key (probes, load balancers): it says nothing about models or data
    ping = requests.get(f"{gw.url}/ping", timeout=10)
    assert ping.status_code == 200 and "Healthy" in ping.text


def test_a_valid_key_gets_exactly_what_torchserve_answers(gateway, torchserve):
    gw, _ = gateway
    for endpoint, img in (("predictions/colorize", photo(96, 64)), ("predictions/sr_x2", photo(300, 200, seed=3)),
                          ("wfpredict/restore", photo(80, 60, seed=5))):
        body = encode(img)
        direct = post(f"{torchserve.inference_url}/{endpoint}", body)
        for key in (KEY_A, KEY_B):  # both keys of the Secret open the API (rotation without downtime)
            via = post(f"{gw.url}/{endpoint}", body, {"Authorization": f"bearer {key}"})
            assert via.status_code == direct.status_code == 200, via.text[:200]
            assert via.headers["Content-Type"] == direct.headers["Content-Type"]
            assert via.content == direct.content and len(via.content) > 1000


def test_errors_pass_through_with_their_status_and_json(gateway, torchserve):
    gw, _ = gateway
    for endpoint, body in (("predictions/colorize", b"this is not an image"),
                           ("predictions/sr_x4", encode(photo(64, 48))[:200]),
                           ("predictions/no_such_model", encode(photo(32, 32)))):
        direct = post(f"{torchserve.inference_url}/{endpoint}", body)
        via = post(f"{gw.url}/{endpoint}", body, bearer(KEY_A))
        assert 400 <= via.status_code < 500 and via.status_code == direct.status_code, endpoint
        assert via.json() == direct.json()
    # the management API is not behind the gateway: only inference paths exist upstream
    r = requests.get(f"{gw.url}/models", timeout=10, headers=bearer(KEY_A))
    assert r.status_code in (400, 404, 405) and "colorize" not in r.text


def test_rotated_keys_are_picked_up_without_a_restart(gateway):
    gw, keys = gateway
    body = encode(photo(48, 48))
    write_keys(keys, **{"inference-key": "third-key-zyxwvutsrqponm"})
    time.sleep(0.6)
    assert post(f"{gw.url}/predictions/colorize", body, bearer("third-key-zyxwvutsrqponm")).status_code == 200
    assert post(f"{gw.url}/predictions/colorize", body, bearer(KEY_A)).status_code == 401
    # a broken update (a key too short) keeps the last good keys rather than opening or closing the API
    write_keys(keys, **{"inference-key": "short"})
    time.sleep(0.6)
    assert post(f"{gw.url}/predictions/colorize", body, bearer("third-key-zyxwvutsrqponm")).status_code == 200
    assert post(f"{gw.url}/predictions/colorize", body, bearer("short")).status_code == 401


def test_unreachable_torchserve_is_a_503_with_retry_after(tmp_path):
    keys = tmp_path / "keys"
    write_keys(keys, key=KEY_A)
    gw = Gateway(f"http://127.0.0.1:{free_port()}", keys)
    try:
        r = post(f"{gw.url}/predictions/colorize", encode(photo(32, 32)), bearer(KEY_A))
        assert r.status_code == 503 and r.headers["Retry-After"] == "5"
        assert r.json()["code"] == 503 and "not reachable" in r.json()["message"]
    finally:
        gw.stop()


@pytest.mark.parametrize("keys", [{}, {"key": "short"}, {"key": "   "}])
def test_no_usable_key_is_a_clear_start_up_error(tmp_path, keys):
    kdir = tmp_path / "keys"
    write_keys(kdir, **keys)
    env = {**os.environ, "GATEWAY_LISTEN": f"127.0.0.1:{free_port()}", "GATEWAY_KEYS_DIR": str(kdir)}
    out = subprocess.run([sys.executable, str(GATEWAY)], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert "GATEWAY_KEYS_DIR" in out.stderr or "shorter than" in out.stderr

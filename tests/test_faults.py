"""Faults in the serving path: a worker killed mid-request gives that request a clean error,
the worker comes back, and later requests succeed."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import requests

from tests.conftest import encode, photo

pytestmark = pytest.mark.integration


def wait_ready(ts, model: str, old_pids: list[int], timeout: float = 120) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = requests.get(f"{ts.management_url}/models/{model}", timeout=10).json()[0]
        ready = [int(w["pid"]) for w in info["workers"] if w["status"] == "READY" and w.get("pid")]
        if ready and not set(ready) & set(old_pids):
            return ready
        time.sleep(0.5)
    raise AssertionError(f"{model} worker did not come back within {timeout}s")


def test_worker_killed_mid_request(torchserve):
    model = "sr_x4"
    pids = torchserve.worker_pids(model)
    big = encode(photo(1200, 900, seed=3), "PNG")  # seconds of ×4 work with the tiny test model
    result: dict = {}

    def call():
        t0 = time.perf_counter()
        try:
            r = requests.post(f"{torchserve.inference_url}/predictions/{model}", data=big,
                              headers={"Content-Type": "image/png"}, timeout=120)
            result.update(status=r.status_code, body=r.content[:300], seconds=time.perf_counter() - t0)
        except requests.RequestException as exc:  # a dropped connection would also be a clean failure
            result.update(status=None, error=str(exc), seconds=time.perf_counter() - t0)

    th = threading.Thread(target=call)
    th.start()
    time.sleep(1.5)  # the request is inside the worker now
    assert th.is_alive(), f"request finished before the kill: {result}"
    os.kill(pids[0], signal.SIGKILL)
    th.join(120)
    assert not th.is_alive(), "the request hung after its worker died"
    assert result["status"] is not None and 500 <= result["status"] < 600, result
    new = wait_ready(torchserve, model, pids)
    assert new and new != pids
    r = requests.post(f"{torchserve.inference_url}/predictions/{model}", data=encode(photo(40, 30)),
                      headers={"Content-Type": "image/png"}, timeout=60)
    assert r.status_code == 200 and r.content.startswith(b"\x89PNG")

"""A short load test in the default run (`make loadtest` is the long one): every request gets a
correct image or a clear 503, none hangs, no worker dies."""

from __future__ import annotations

import pytest

from benchmarks.loadtest import run_load

pytestmark = pytest.mark.integration


def test_mixed_load_all_endpoints(torchserve):
    before = {m: torchserve.worker_pids(m) for m in ("colorize", "sr_x2", "sr_x4")}
    res = run_load(torchserve.inference_url, total=64, concurrency=16, timeout=120)
    assert not res.failures, res.failures[:5]
    assert res.ok + res.busy_503 == res.requests
    assert res.busy_without_retry_after == 0
    assert {m: torchserve.worker_pids(m) for m in before} == before


def test_workflow_beyond_fourteen_concurrent(torchserve):
    """An upstream report says workflows hang past ~14 concurrent requests; 24 at once must all finish."""
    res = run_load(torchserve.inference_url, total=24, concurrency=24, timeout=120,
                   endpoints=("/wfpredict/restore",))
    assert not res.failures, res.failures[:5]
    assert res.ok == res.requests

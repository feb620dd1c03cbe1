"""`make bench`'s serving benchmark runs end to end (tiny weights, one repeat): the real
TorchServe, the in-process pipeline, and the echo handler that measures TorchServe's floor."""

from __future__ import annotations

import json

import pytest

from tests.conftest import _java_missing


def test_serving_benchmark_runs_and_reports_the_floor(tiny_weights, tmp_path):
    if _java_missing():
        pytest.skip("TorchServe needs Java 17")
    from benchmarks.serving import main

    root = tiny_weights["colorize"].parent
    out = tmp_path / "results"
    assert main(["--weights-root", str(root), "--repeats", "1", "--endpoints", "repair,colorize,sr_x2,restore",
                 "--sizes", "48x40", "--out", str(out)]) == 0
    rows = {r["endpoint"]: r for r in json.loads((out / "bench_serving.json").read_text())["rows"]}
    assert set(rows) == {"repair", "colorize", "sr_x2", "restore"}
    for name in ("repair", "colorize", "sr_x2"):
        r = rows[name]
        assert r["size"] == "48x40"
        assert r["floor_s"] > 0 and r["http_s"] > 0
        assert r["floor_ratio"] == pytest.approx((r["pipeline_s"] + r["floor_s"]) / r["pipeline_s"])
    assert rows["restore"]["floor_s"] is None
    table = (out / "bench_serving.md").read_text()
    assert "| colorize | 48x40 |" in table and "(pipeline + floor) / pipeline" in table


def test_front_benchmark_runs_and_reads_the_fronts_own_time(tiny_weights, tmp_path):
    """benchmarks.front: direct and through the nginx front, paired; the front's own time from
    its access log; throughput rounds on both sides."""
    from benchmarks.front import main

    root = tiny_weights["colorize"].parent
    out = tmp_path / "results"
    assert main(["--weights-root", str(root), "--repeats", "2", "--floor-repeats", "3", "--rounds", "1",
                 "--concurrency", "2", "--requests-scale", "0", "--out", str(out)]) == 0
    report = json.loads((out / "bench_front.json").read_text())
    assert [(r["endpoint"], r["size"]) for r in report["latency"]] == [("colorize", "256x256"), ("sr_x2", "512x512")]
    for r in report["latency"]:
        assert r["own_requests"] == 2 + 1 + 3 + 1, r  # each side's warm-up, then the timed pairs
        assert 0 <= r["own_mean_s"] <= r["own_max_s"] < 1
    for r in report["throughput"]:
        assert r["requests_per_round"] == 2 and len(r["direct_per_s"]) == len(r["front_per_s"]) == 1
    assert "in the front" in (out / "bench_front.md").read_text()

"""`make reliability-report`: load, faults and hostile input against a real TorchServe serving
the default weights, plus the bot's fault tests; writes ``results/reliability.md``.

- load: N requests at concurrency C over every endpoint and the `restore` workflow;
- hostile input: the generated corpus (tests/hostile.py) sent to every endpoint;
- a worker killed (SIGKILL) in the middle of a request;
- worker memory: peak RSS (VmHWM) of every worker after all of it;
- the bot: its fault tests (SIGTERM, SIGKILL + restart, TorchServe stopped, Telegram errors),
  run with pytest and reported as passed/failed.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
from PIL import Image, ImageOps

from benchmarks.loadtest import run_load
from benchmarks.serving import test_photo
from restoration.names import MODELS
from serving.archive import build_all
from serving.server import ROOT, TorchServe, free_port

ENDPOINTS = {"/predictions/colorize": 1, "/predictions/sr_x2": 2, "/predictions/sr_x4": 4, "/wfpredict/restore": 2}


def hostile(ts: TorchServe) -> dict:
    sys.path.insert(0, str(ROOT))
    from tests.hostile import corpus

    tally = {"cases": 0, "correct_image": 0, "clear_error": 0, "wrong": []}
    for case in corpus():
        for ep, scale in ENDPOINTS.items():
            tally["cases"] += 1
            r = requests.post(ts.inference_url + ep, data=case.data, headers={"Content-Type": case.content_type},
                              timeout=300)
            if r.content.startswith(b"\x89PNG"):
                w, h = ImageOps.exif_transpose(Image.open(io.BytesIO(case.data))).size  # served upright
                ok = Image.open(io.BytesIO(r.content)).size == (w * scale, h * scale) and case.expect != "error"
                tally["correct_image" if ok else "wrong"] += 1 if ok else 0
                if not ok:
                    tally["wrong"].append(f"{case.name} {ep}: image where {case.expect} was expected")
                continue
            try:
                body = r.json()
                status = body["code"] if ep.startswith("/wfpredict") else r.status_code
                ok = 400 <= status < 500 and body.get("message") and case.expect != "image"
            except (ValueError, KeyError):
                ok = False
            if ok:
                tally["clear_error"] += 1
            else:
                tally["wrong"].append(f"{case.name} {ep}: {r.status_code} {r.content[:100]!r}")
    return tally


def kill_mid_request(ts: TorchServe) -> dict:
    pids = ts.worker_pids("sr_x4")
    data = test_photo(1000, 750)
    res: dict = {}

    def call():
        t0 = time.perf_counter()
        try:
            r = requests.post(ts.inference_url + "/predictions/sr_x4", data=data,
                              headers={"Content-Type": "image/jpeg"}, timeout=300)
            res.update(status=r.status_code, seconds=time.perf_counter() - t0)
        except requests.RequestException as exc:
            res.update(status=str(exc), seconds=time.perf_counter() - t0)

    th = threading.Thread(target=call)
    th.start()
    time.sleep(1.0)
    os.kill(pids[0], signal.SIGKILL)
    th.join(300)
    deadline = time.time() + 180
    back = False
    while time.time() < deadline and not back:
        info = requests.get(f"{ts.management_url}/models/sr_x4", timeout=10).json()[0]
        back = any(w["status"] == "READY" and int(w.get("pid") or 0) not in pids for w in info["workers"])
        time.sleep(0.5)
    after = requests.post(ts.inference_url + "/predictions/sr_x4", data=test_photo(64, 48),
                          headers={"Content-Type": "image/jpeg"}, timeout=120)
    return {"killed_request_status": res.get("status"), "killed_request_seconds": res.get("seconds"),
            "worker_back": back, "next_request_status": after.status_code}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--weights", default=str(ROOT / "weights"))
    p.add_argument("--out", default=str(ROOT / "results"))
    p.add_argument("--skip-bot", action="store_true")
    a = p.parse_args(argv)
    w = Path(a.weights)
    report: dict = {}
    with tempfile.TemporaryDirectory(prefix="pix2pix-sr-rel-") as t:
        store = Path(t) / "store"
        build_all(store, {m: str(w / m) for m in MODELS})
        ts = TorchServe(model_store=store, workdir=Path(t) / "ts", inference_port=free_port(),
                        management_port=free_port(), metrics_port=free_port())
        ts.start(timeout=300)
        try:
            pids = {m: ts.worker_pids(m) for m in MODELS}
            res = run_load(ts.inference_url, a.requests, a.concurrency)
            report["load"] = res.summary()
            report["load"]["workers_restarted"] = pids != {m: ts.worker_pids(m) for m in MODELS}
            report["hostile"] = hostile(ts)
            report["hostile"]["workers_restarted"] = pids != {m: ts.worker_pids(m) for m in MODELS}
            report["peak_rss_mib"] = {m: ts.workers_peak_rss_mib(m) for m in MODELS}
            report["kill"] = kill_mid_request(ts)
        finally:
            ts.stop()
    if not a.skip_bot:
        bot_tests = sorted(str(x) for x in (ROOT / "tests").glob("test_bot_faults*.py"))
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", *bot_tests], cwd=ROOT,
                              capture_output=True, text=True)
        report["bot"] = {"exit": proc.returncode,
                         "results": [ln for ln in proc.stdout.splitlines() if ln.startswith(("PASSED", "FAILED"))]}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "reliability.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "reliability.md").write_text(markdown(report))
    print((out / "reliability.md").read_text())
    return 0


def markdown(r: dict) -> str:
    load, host, kill = r["load"], r["hostile"], r["kill"]
    lines = [
        "# Reliability report",
        "",
        f"## Load: {load['requests']} requests at concurrency {load['concurrency']} over every endpoint and `restore`",
        "",
        f"- correct images: {load['ok']}, clear 503s: {load['busy_503']} (without Retry-After: "
        f"{load['busy_without_retry_after']}), failures: {len(load['failures'])}",
        f"- wall time {load['wall_s']:.1f} s; workers restarted: {load['workers_restarted']}",
        "",
        "| endpoint | n | p50 s | p95 s |",
        "| --- | ---: | ---: | ---: |",
    ]
    for ep, v in load["latency"].items():
        lines.append(f"| {ep} | {v['n']} | {v['p50_s']:.2f} | {v['p95_s']:.2f} |")
    lines += [
        "",
        "## Hostile input (generated corpus × every endpoint)",
        "",
        f"- {host['cases']} requests: {host['correct_image']} correct images, {host['clear_error']} clear 4xx errors, "
        f"{len(host['wrong'])} wrong; workers restarted: {host['workers_restarted']}",
        *[f"  - {w}" for w in host["wrong"][:20]],
        "",
        "## Faults",
        "",
        f"- worker SIGKILLed mid-request: that request got {kill['killed_request_status']} after "
        f"{kill['killed_request_seconds']:.1f} s; worker back: {kill['worker_back']}; next request: "
        f"{kill['next_request_status']}",
        "",
        "## Worker memory (peak RSS after all of the above)",
        "",
        *[f"- {m}: {v:.0f} MiB" for m, v in r["peak_rss_mib"].items()],
    ]
    if "bot" in r:
        lines += ["", "## Bot fault tests", "", f"pytest exit {r['bot']['exit']}", "",
                  *[f"- {x}" for x in r["bot"]["results"]]]
    lost = len(load["failures"]) + len(host["wrong"])
    lines += ["", f"**Lost or wrongly answered requests: {lost}.**"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

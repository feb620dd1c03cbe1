"""Bounded load test on loopback: N requests at concurrency C over every endpoint and `restore`.

Every request must end in a correct image (right size) or a clear 503 with Retry-After; none
may hang past its timeout; no worker may die; worker memory must stay bounded.

    python -m benchmarks.loadtest [--requests 300] [--concurrency 32]   (make loadtest)

Without ``--url`` it builds archives from ``weights/`` and starts its own TorchServe on free
loopback ports; the tests call :func:`run_load` against their own server.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import requests
from PIL import Image

ENDPOINTS = {
    "/predictions/repair": 1,
    "/predictions/colorize": 1,
    "/predictions/sr_x2": 2,
    "/predictions/sr_x4": 4,
    "/wfpredict/restore": 2,
}


def _image(width: int, height: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    arr = (rng.random((height, width, 3)) * 64 + np.linspace(0, 190, width)[None, :, None]).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@dataclass
class LoadResult:
    requests: int
    concurrency: int
    wall_s: float
    ok: int = 0
    busy_503: int = 0
    busy_without_retry_after: int = 0
    failures: list[str] = field(default_factory=list)
    latencies_s: dict[str, list[float]] = field(default_factory=dict)

    def summary(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k != "latencies_s"}
        out["failures"] = self.failures[:20]
        out["latency"] = {
            ep: {"n": len(v), "p50_s": statistics.median(v), "p95_s": float(np.percentile(v, 95))}
            for ep, v in self.latencies_s.items() if v
        }
        return out


def run_load(base_url: str, total: int = 300, concurrency: int = 32, sizes=((96, 64), (160, 120)),
             timeout: float = 300.0, headers: dict[str, str] | None = None,
             endpoints: tuple[str, ...] = tuple(ENDPOINTS)) -> LoadResult:
    """Send ``total`` requests round-robin over ``endpoints`` with ``concurrency`` threads."""
    images = [(_image(w, h, i), (w, h)) for i, (w, h) in enumerate(sizes)]
    plan = [(endpoints[i % len(endpoints)], images[i % len(images)]) for i in range(total)]
    result = LoadResult(requests=total, concurrency=concurrency, wall_s=0.0)
    session_headers = {"Content-Type": "image/jpeg", **(headers or {})}

    def one(item):
        endpoint, (data, (w, h)) = item
        t0 = time.perf_counter()
        try:
            r = requests.post(base_url + endpoint, data=data, headers=session_headers, timeout=timeout)
        except requests.RequestException as exc:
            return endpoint, time.perf_counter() - t0, f"{endpoint}: {type(exc).__name__}: {exc}"
        dt = time.perf_counter() - t0
        if r.status_code == 503:
            return endpoint, dt, "503" if r.headers.get("Retry-After") else "503-no-retry-after"
        if r.status_code != 200 or not r.content.startswith(b"\x89PNG"):
            return endpoint, dt, f"{endpoint}: {r.status_code} {r.content[:120]!r}"
        s = ENDPOINTS[endpoint]
        size = Image.open(io.BytesIO(r.content)).size
        if size != (w * s, h * s):
            return endpoint, dt, f"{endpoint}: size {size}, expected {(w * s, h * s)}"
        return endpoint, dt, None

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for endpoint, dt, problem in pool.map(one, plan):
            if problem is None:
                result.ok += 1
                result.latencies_s.setdefault(endpoint, []).append(dt)
            elif problem == "503":
                result.busy_503 += 1
            elif problem == "503-no-retry-after":
                result.busy_503 += 1
                result.busy_without_retry_after += 1
            else:
                result.failures.append(problem)
    result.wall_s = time.perf_counter() - t0
    return result


def main(argv: list[str] | None = None) -> int:
    from restoration.names import MODELS
    from serving.archive import build_all
    from serving.server import ROOT, TorchServe, free_port

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--url", help="an already running TorchServe inference URL")
    parser.add_argument("--weights-root", default=str(ROOT / "weights"))
    parser.add_argument("--out", default=str(ROOT / "results"))
    args = parser.parse_args(argv)
    ts = None
    with tempfile.TemporaryDirectory(prefix="pix2pix-sr-load-") as tmp:
        url = args.url
        if not url:
            store = Path(tmp) / "store"
            w = Path(args.weights_root)
            build_all(store, {name: str(w / name) for name in MODELS})
            ts = TorchServe(model_store=store, workdir=Path(tmp) / "ts", inference_port=free_port(),
                            management_port=free_port(), metrics_port=free_port())
            ts.start(timeout=300)
            url = ts.inference_url
        try:
            pids_before = {m: ts.worker_pids(m) for m in MODELS} if ts else {}
            res = run_load(url, args.requests, args.concurrency)
            summary = res.summary()
            if ts:
                summary["workers_restarted"] = pids_before != {m: ts.worker_pids(m) for m in pids_before}
        finally:
            if ts:
                ts.stop()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "loadtest.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0 if not res.failures and res.ok + res.busy_503 == res.requests else 1


if __name__ == "__main__":
    sys.exit(main())

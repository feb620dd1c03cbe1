"""`make bench`: what the nginx front adds to a request, and whether it changes throughput.

The same TorchServe is called directly (its loopback port) and through the front (serving/proxy.py,
with the inference key checked as in the cluster), alternately, so both see the same machine:

  * latency at concurrency 1 for ``colorize`` 256² and ``sr_x2`` 512² (the figures the target is
    set for: at most 1 ms added per request), as the median of paired differences (front − direct,
    each pair back to back);
  * the same on TorchServe's floor (benchmarks/echo_handler.py: a handler that computes nothing,
    asked for a reply of the endpoint's size), where the model's own time cannot hide the front's;
  * the front's own time per request from its access log: total time minus TorchServe's
    (``rt - ut``), which the machine's other load disturbs far less than an A/B difference;
  * throughput at concurrency 16 for the same endpoints, direct and through the front in
    alternating rounds: unchanged within the rounds' spread is the target.

Results go to ``results/bench_front.md`` and ``results/bench_front.json``.

    python -m benchmarks.front [--repeats 15] [--rounds 3] [--weights-root weights]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import struct
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.client import Client
from benchmarks.serving import build_echo, test_photo
from restoration.names import COLORIZE, SR_X2
from serving.archive import build_model
from serving.proxy import Proxy
from serving.server import ROOT, TorchServe, free_port, read_properties

CASES = ((COLORIZE, (256, 256)), (SR_X2, (512, 512)))
# requests per throughput round: a round of each should take about the same time
ROUND_REQUESTS = {COLORIZE: 64, SR_X2: 16}
TARGET_MS = 1.0
KEY = "bench-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}


def paired(direct, front, repeats: int) -> tuple[float, float, float]:
    """Median direct time, median front time, median of the per-pair differences (seconds)."""
    direct()
    front()  # warm-up (connections open, caches warm)
    td, tf, diff = [], [], []
    for i in range(repeats):
        order = (direct, front) if i % 2 == 0 else (front, direct)  # neither always goes first
        times = {}
        for fn in order:
            time.sleep(0.05)
            t0 = time.perf_counter()
            fn()
            times[fn] = time.perf_counter() - t0
        td.append(times[direct])
        tf.append(times[front])
        diff.append(times[front] - times[direct])
    return statistics.median(td), statistics.median(tf), statistics.median(diff)


def front_times(log: Path, start: int) -> list[float]:
    """``rt - ut`` (seconds) of the access-log lines after line ``start`` that reached TorchServe."""
    # a worker writes its line once the request is finalized, just after the reply: wait until
    # the log stops growing
    lines, deadline = log_lines(log), time.monotonic() + 5
    while time.monotonic() < deadline:
        time.sleep(0.3)
        if log_lines(log) == lines:
            break
        lines = log_lines(log)
    out = []
    for line in log.read_text().splitlines()[start:]:
        m = re.search(r" rt=([\d.]+) ut=([\d.]+) ", line)
        if m:
            # both in whole ms, each rounded on its own: rt can read 1 ms less than ut. A negative
            # difference is that rounding, counted as 0 (which only overstates the front's time).
            out.append(max(0.0, round(float(m.group(1)) - float(m.group(2)), 3)))
    return out


def log_lines(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def throughput(client: Client, path: str, data: bytes, headers: dict, concurrency: int, total: int) -> float:
    """Replies per second for ``total`` POSTs from ``concurrency`` threads (kept-alive connections)."""
    def one(_):
        r = client.post(path, data, extra_headers=headers)
        r.raise_for_status()

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(total)))
    return total / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15, help="pairs per latency figure on the models")
    parser.add_argument("--floor-repeats", type=int, default=200, help="pairs per latency figure on the floor")
    parser.add_argument("--rounds", type=int, default=3, help="alternating throughput rounds per side")
    parser.add_argument("--requests-scale", type=float, default=1.0, help="scales the requests per round")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--weights-root", default=str(ROOT / "weights"))
    parser.add_argument("--out", default=str(ROOT / "results"))
    args = parser.parse_args(argv)
    wroot = Path(args.weights_root)
    for name, _ in CASES:
        if not (wroot / name).is_dir():
            print(f"no weights for {name} in {wroot / name}", file=sys.stderr)
            return 2

    rows, rates = [], []
    with tempfile.TemporaryDirectory(prefix="pix2pix-sr-front-") as tmp:
        tmp_path = Path(tmp)
        store = tmp_path / "store"
        store.mkdir()
        names = [name for name, _ in CASES]
        for name in names:
            build_model(name, wroot / name, store, tmp_path / "stage")
        props = read_properties(ROOT / "config.properties")
        served = {k: v for k, v in json.loads(props["models"]).items() if k in names}
        echo_models, echo_for = build_echo(store, served)
        served.update({name: {"1.0": cfg} for name, cfg in echo_models.items()})
        ts = TorchServe(model_store=store, workdir=tmp_path / "ts", inference_port=free_port(),
                        management_port=free_port(), metrics_port=free_port(), overrides={
                            "load_models": ",".join(f"{n}.mar" for n in served), "models": json.dumps(served)})
        keys = tmp_path / "keys"
        keys.mkdir()
        (keys / "inference-key").write_text(KEY)
        front = Proxy.local(tmp_path / "nginx", listen_port=free_port(), upstream_port=ts.inference_port,
                            keys_dir=keys)
        ts.start(timeout=300, models=tuple(served), workflow=False)
        front.start()
        try:
            direct, via = Client(ts.inference_url), Client(front.url)
            for name, size in CASES:
                data = test_photo(*size)
                path = f"/predictions/{name}"
                reply = direct.post(path, data)
                reply.raise_for_status()
                start = log_lines(front.access_log)
                t_direct, t_front, added = paired(lambda p=path, d=data: direct.post(p, d).raise_for_status(),
                                                  lambda p=path, d=data: via.post(p, d, extra_headers=AUTH).raise_for_status(),
                                                  args.repeats)
                own = front_times(front.access_log, start)
                floor = struct.pack(">Q", len(reply.content)) + data[8:]
                start = log_lines(front.access_log)
                echo = f"/predictions/{echo_for[name]}"
                f_direct, f_front, f_added = paired(lambda p=echo, d=floor: direct.post(p, d).raise_for_status(),
                                                    lambda p=echo, d=floor: via.post(p, d, extra_headers=AUTH).raise_for_status(),
                                                    args.floor_repeats)
                own_floor = front_times(front.access_log, start)
                rows.append({"endpoint": name, "size": f"{size[0]}x{size[1]}", "reply_bytes": len(reply.content),
                             "direct_s": t_direct, "front_s": t_front, "added_s": added,
                             "floor_direct_s": f_direct, "floor_front_s": f_front, "floor_added_s": f_added,
                             "own_mean_s": statistics.mean(own + own_floor), "own_max_s": max(own + own_floor),
                             "own_requests": len(own + own_floor)})
                r = rows[-1]
                print(f"{name:8s} {r['size']:>7s}  direct {t_direct * 1000:7.1f} ms  front {t_front * 1000:7.1f} ms  "
                      f"added {added * 1000:+.2f} ms  | floor: direct {f_direct * 1000:.2f} ms  front "
                      f"{f_front * 1000:.2f} ms  added {f_added * 1000:+.2f} ms  | in the front (rt-ut): mean "
                      f"{r['own_mean_s'] * 1000:.2f} ms, max {r['own_max_s'] * 1000:.0f} ms over {r['own_requests']}"
                      f"  (target ≤ {TARGET_MS} ms)", flush=True)
            for name, size in CASES:
                data, path = test_photo(*size), f"/predictions/{name}"
                d_rates, f_rates = [], []
                n = max(args.concurrency, round(ROUND_REQUESTS[name] * args.requests_scale))
                for _ in range(args.rounds):
                    d_rates.append(throughput(direct, path, data, {}, args.concurrency, n))
                    f_rates.append(throughput(via, path, data, AUTH, args.concurrency, n))
                rates.append({"endpoint": name, "size": f"{size[0]}x{size[1]}", "concurrency": args.concurrency,
                              "requests_per_round": n,
                              "direct_per_s": d_rates, "front_per_s": f_rates})
                dm, fm = statistics.median(d_rates), statistics.median(f_rates)
                print(f"{name:8s} c{args.concurrency}: direct {dm:.2f}/s (rounds {min(d_rates):.2f}-{max(d_rates):.2f}), "
                      f"front {fm:.2f}/s (rounds {min(f_rates):.2f}-{max(f_rates):.2f}), front/direct {fm / dm:.3f}",
                      flush=True)
            access_lines = front.access_log.read_text().count("\n")
        finally:
            front.stop()
            ts.stop()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_front.json").write_text(json.dumps({"latency": rows, "throughput": rates}, indent=2))
    md = [f"# The nginx front: added latency and throughput (median of {args.repeats} pairs on the models, "
          f"{args.floor_repeats} on the floor; {args.rounds} alternating rounds per side)", "",
          "Added = median over back-to-back pairs of (through the front − direct to TorchServe), the key",
          "checked as in the cluster. Floor: the same request and reply sizes to a handler that computes",
          "nothing (benchmarks/echo_handler.py). In the front: its access log's total time minus",
          "TorchServe's (`rt - ut`, millisecond resolution) over every timed request through it.",
          f"Target: ≤ {TARGET_MS} ms added. The front wrote {access_lines} access-log lines.", "",
          "| endpoint | input | reply KB | direct ms | front ms | added ms | floor direct ms | floor front ms | "
          "floor added ms | in the front: mean ms (max) |",
          "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        md.append(f"| {r['endpoint']} | {r['size']} | {r['reply_bytes'] / 1000:.0f} | {r['direct_s'] * 1000:.1f} | "
                  f"{r['front_s'] * 1000:.1f} | {r['added_s'] * 1000:+.2f} | {r['floor_direct_s'] * 1000:.2f} | "
                  f"{r['floor_front_s'] * 1000:.2f} | {r['floor_added_s'] * 1000:+.2f} | "
                  f"{r['own_mean_s'] * 1000:.2f} ({r['own_max_s'] * 1000:.0f}) |")
    md += ["", "| endpoint | input | concurrency | requests per round | direct replies/s (rounds) | "
           "front replies/s (rounds) | front / direct |",
           "| --- | --- | ---: | ---: | --- | --- | ---: |"]
    for r in rates:
        dm, fm = statistics.median(r["direct_per_s"]), statistics.median(r["front_per_s"])
        md.append(f"| {r['endpoint']} | {r['size']} | {r['concurrency']} | {r['requests_per_round']} | {dm:.2f} ({min(r['direct_per_s']):.2f}–"
                  f"{max(r['direct_per_s']):.2f}) | {fm:.2f} ({min(r['front_per_s']):.2f}–{max(r['front_per_s']):.2f}) | "
                  f"{fm / dm:.3f} |")
    (out / "bench_front.md").write_text("\n".join(md) + "\n")
    print(f"wrote {out / 'bench_front.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

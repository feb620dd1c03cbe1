"""The repair model's speed and memory figures on a real TorchServe, in a few minutes.

1. `repair` of a 3840×2160 photo end to end, with the worker's peak RSS (target ≤ 3 GiB);
2. the three-node `restore` workflow against a client that calls repair, colorize and sr_x2 in
   turn on the same server, alternating so that both see the same machine (target ≤ 1.10×);
3. the in-process repair time at 1024×768, tiled as served, against the untiled network.

The same sections run inside ``make bench`` (benchmarks.suite); this module is for measuring a new
repair model without the suite's 35 minutes.

    python -m benchmarks.repair [--weights weights] [--repair runs/repair/model] [--pairs 10]

Results: ``results/bench_repair.md`` and ``results/bench_repair.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.client import Client
from benchmarks.serving import median_time, test_photo
from benchmarks.suite import large_request, start_ts, workers_peak
from restoration.image_io import decode_image
from restoration.names import COLORIZE, MODELS, REPAIR, SR_X2, WORKFLOW_RESTORE, prediction_path
from restoration.repair import load_repairer, luma, residual
from serving.archive import build_all
from serving.server import ROOT


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=str(ROOT / "weights"))
    p.add_argument("--repair", help="repair weights (default: <weights>/repair)")
    p.add_argument("--pairs", type=int, default=10, help="alternating workflow / client-chain pairs")
    p.add_argument("--out", default=str(ROOT / "results"))
    a = p.parse_args(argv)
    weights = Path(a.weights)
    dirs = {name: str(weights / name) for name in MODELS}
    if a.repair:
        dirs[REPAIR] = a.repair
    report: dict = {"threads": torch.get_num_threads(), "repair_weights": dirs[REPAIR]}
    md = ["# Repair: speed and memory", "", f"Repair weights: `{dirs[REPAIR]}`; {torch.get_num_threads()} torch threads.", ""]

    # 3. in-process, tiled vs untiled
    net, cfg = load_repairer(dirs[REPAIR])
    y = torch.from_numpy(luma(np.asarray(decode_image(test_photo(1024, 768)).image)))[None, None]
    t_tiled = median_time(lambda: residual(net, y, cfg.tile, cfg.overlap, cfg.multiple), 3)
    t_whole = median_time(lambda: residual(net, y, 4096, 0, cfg.multiple), 3)
    report["in_process_1024x768"] = {"tiled_s": t_tiled, "untiled_s": t_whole, "tile": cfg.tile, "overlap": cfg.overlap}
    md += ["## In-process at 1024×768", "",
           f"tiled (tile {cfg.tile}, overlap {cfg.overlap}) {t_tiled * 1e3:.0f} ms, untiled {t_whole * 1e3:.0f} ms "
           f"({t_tiled / t_whole:.2f}×).", ""]
    print(md[-2], flush=True)

    with tempfile.TemporaryDirectory(prefix="pix2pix-sr-bench-repair-") as t:
        tmp = Path(t)
        store = tmp / "store"
        build_all(store, dirs)
        ts = start_ts(store, tmp, "default")
        try:
            # 1. a 4K photo
            big = large_request(ts, REPAIR, 3840, 2160)
            report["large"] = big
            md += ["## repair 3840×2160 end to end", "",
                   f"{'ok' if big['ok'] else 'FAILED'}: output {big['output']}, {big['seconds']:.1f} s, worker peak RSS "
                   f"{big['peak_rss_mib']:.0f} MiB (target ≤ 3072 MiB).", ""]
            print(md[-2], flush=True)

            # 2. workflow vs client chain, alternating
            s = Client(ts.inference_url, timeout=600)
            data = test_photo(256, 256)

            def chained() -> bytes:
                fixed = s.post(prediction_path(REPAIR), data).content
                c = s.post(prediction_path(COLORIZE), fixed, "image/png").content
                return s.post(prediction_path(SR_X2), c, "image/png").content

            def workflow() -> bytes:
                return s.post(prediction_path(WORKFLOW_RESTORE), data).content

            same = chained() == workflow()  # warm both paths; the workflow gives the chain's bytes
            tw, tc = [], []
            for _ in range(a.pairs):
                for fn, acc in ((workflow, tw), (chained, tc)):
                    t0 = time.perf_counter()
                    fn()
                    acc.append(time.perf_counter() - t0)
            w, c = statistics.median(tw), statistics.median(tc)
            report["workflow_vs_chain"] = {"workflow_s": w, "chain_s": c, "ratio": w / c, "pairs": a.pairs,
                                           "same_bytes": same}
            md += ["## `restore` (repair → colorize → sr_x2) vs a client calling the three models (256×256)", "",
                   f"workflow {w * 1e3:.1f} ms, client chain {c * 1e3:.1f} ms (medians of {a.pairs} alternating "
                   f"pairs): ratio **{w / c:.3f}** (target ≤ 1.10); same bytes: {same}.", ""]
            print(md[-2], flush=True)
            report["peak_rss_mib"] = workers_peak(ts)
        finally:
            ts.stop()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_repair.md").write_text("\n".join(md) + "\n")
    (out / "bench_repair.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {out / 'bench_repair.md'}")
    return report


if __name__ == "__main__":
    main()

"""`make bench`: every speed figure of the service, measured side by side in one run.

1. the hardware's ceiling: fp32 matrix-multiply FLOP/s, measured now;
2. in-process PyTorch per model and input size, run as the handlers run it (channels_last on the
   CPU; the lower bound for serving), with the model's FLOPs (torch's FlopCounterMode) and
   achieved FLOP/s as a fraction of the ceiling; the same work in plain eager PyTorch (NCHW), with
   channels_last and with ONNX Runtime (same weights), and how far their images are from eager's;
3. the project's SR path against the `super-image` library's own inference code on the same
   weights and image: same output (within 1/255) and the time of each;
4. TorchServe per endpoint at concurrency 1, 4 and 16: p50/p95 latency, images/s, throughput as
   a fraction of the in-process rate, peak RSS of the workers; the same with the workers on
   ONNX Runtime (PIX2PIX_BACKEND=onnxruntime);
5. batching on and off, and workers × threads settings, for `colorize` at concurrency 16;
6. the `restore` workflow against a client that calls `colorize` then `sr_x2` itself;
7. a 3840×2160 photo ×2 and the largest ×4 the output limit allows, end to end, with the
   workers' peak RSS.

Results: ``results/bench.md`` (tables), ``results/bench.json`` and ``results/bench.png``.

    python -m benchmarks.suite            # everything (about 15 minutes on 2 cores)
    python -m benchmarks.suite --quick    # fewer repeats, no 4K
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import requests
import torch
from PIL import Image

from benchmarks.client import Client
from benchmarks.serving import Models, median_time, test_photo
from restoration.backends import ONNX_FILE, ChannelsLast, OnnxModule
from restoration.colorizer import colorize_images, load_generator
from restoration.image_io import Limits, decode_image
from restoration.names import COLORIZE, MODELS, REPAIR, SR_X2, SR_X4, WORKFLOW_RESTORE, prediction_path
from restoration.upscaler import load_sr_model, upscale_image
from serving.archive import build_all, export_onnx_graph
from serving.server import ROOT, TorchServe, free_port

ENDPOINTS = (REPAIR, COLORIZE, SR_X2, SR_X4, WORKFLOW_RESTORE)


def matmul_flops(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    t = median_time(lambda: a @ b, repeats)
    return 2 * n**3 / t


def model_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        fn()
    return counter.get_total_flops()


def library_inference(model_dir: Path, scale: int, img: Image.Image) -> tuple[np.ndarray, float]:
    """super-image's documented usage: from_pretrained, ImageLoader.load_image, model(inputs),
    then its own tensor → image conversion (as ImageLoader.save_image does, without the file)."""
    from super_image import EdsrModel, ImageLoader

    model = EdsrModel.from_pretrained(str(model_dir), scale=scale)
    inputs = ImageLoader.load_image(img)
    model(inputs)  # warm-up
    t0 = time.perf_counter()
    preds = model(inputs)
    pred = preds.data.cpu().numpy()[0].transpose((1, 2, 0)) * 255.0
    elapsed = time.perf_counter() - t0
    return np.clip(pred, 0, 255).round().astype(np.uint8), elapsed


def start_ts(store: Path, tmp: Path, name: str, models_json: dict | None = None, env: dict | None = None) -> TorchServe:
    overrides = {"models": json.dumps(models_json)} if models_json else {}
    ts = TorchServe(model_store=store, workdir=tmp / name, inference_port=free_port(), management_port=free_port(),
                    metrics_port=free_port(), overrides=overrides, env=env or {})
    ts.start(timeout=300)
    return ts


def concurrent_run(url: str, data: bytes, concurrency: int, total: int) -> dict:
    """``total`` POSTs of ``data`` to ``url`` from ``concurrency`` threads (kept-alive connections)."""
    parts = urlsplit(url)
    client = Client(f"{parts.scheme}://{parts.netloc}", timeout=900)
    lat: list[float] = []

    def one(_):
        t0 = time.perf_counter()
        r = client.post(parts.path, data)
        dt = time.perf_counter() - t0
        ok = r.status == 200 and r.content.startswith(b"\x89PNG")
        return dt, ok

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(total)))
    wall = time.perf_counter() - t0
    lat = [d for d, ok in results if ok]
    return {"concurrency": concurrency, "requests": total, "ok": len(lat), "p50_s": statistics.median(lat),
            "p95_s": float(np.percentile(lat, 95)), "images_per_s": len(lat) / wall}


def workers_peak(ts: TorchServe, models=MODELS) -> dict:
    out = {}
    for m in models:
        try:
            out[m] = ts.workers_peak_rss_mib(m)
        except (requests.RequestException, ValueError, OSError):
            out[m] = float("nan")
    return out


def large_request(ts: TorchServe, target: str, w: int, h: int) -> dict:
    """One w×h photo through ``target`` end to end: time, output size and the worker's peak RSS."""
    t0 = time.perf_counter()
    r = requests.post(ts.inference_url + prediction_path(target), data=test_photo(w, h),
                      headers={"Content-Type": "image/jpeg"}, timeout=1800)
    dt = time.perf_counter() - t0
    ok = r.status_code == 200 and r.content.startswith(b"\x89PNG")
    out_size = Image.open(io.BytesIO(r.content)).size if ok else r.text[:200]
    return {"target": target, "input": f"{w}x{h}", "ok": ok, "output": str(out_size), "seconds": dt,
            "peak_rss_mib": workers_peak(ts, (target,))[target], "bytes": len(r.content)}


def models_setting(batch: int, workers: int) -> dict:
    def one(name: str, b: int) -> dict:
        return {"1.0": {"defaultVersion": True, "marName": f"{name}.mar", "minWorkers": workers,
                        "maxWorkers": workers, "batchSize": b, "maxBatchDelay": 1,
                        "responseTimeout": 900}}

    return {COLORIZE: one(COLORIZE, batch), SR_X2: one(SR_X2, 1), SR_X4: one(SR_X4, 1)}


TILES = (128, 192, 256, 384, 512, 0)  # SR tile cores to compare; 0 = one untiled pass


def tile_sweep(models: Models, repeats: int, size: tuple[int, int] = (1024, 768)) -> tuple[list[dict], list[str]]:
    """In-process SR time per tile core (overlap as served), same image; outputs compared with
    the untiled pass. The served default is PIX2PIX_SR_TILE (256)."""
    img = decode_image(test_photo(*size)).image
    rows, md = [], ["", f"## SR tile size (in-process, {size[0]}×{size[1]}, overlap 24)", "",
                    "| model | tile | ms | vs tile 256 | max diff vs untiled (of 255) |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, scale in ((SR_X2, 2), (SR_X4, 4)):
        ref = np.asarray(upscale_image(models.sr[name], img, scale, tile=0), dtype=np.int16)
        net = models.sr[name]
        times = {t: median_time(lambda t=t, net=net, scale=scale: upscale_image(net, img, scale, tile=t), repeats)
                 for t in TILES}
        for t in TILES:
            diff = int(np.abs(np.asarray(upscale_image(models.sr[name], img, scale, tile=t), dtype=np.int16) - ref).max())
            rows.append({"model": name, "tile": t, "seconds": times[t], "max_diff": diff})
            md.append(f"| {name} | {t or 'untiled'} | {times[t] * 1e3:.0f} | {times[t] / times[256]:.2f} | {diff} |")
    return rows, md


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=str(ROOT / "weights"))
    p.add_argument("--out", default=str(ROOT / "results"))
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    repeats = 3 if a.quick else 5
    weights = Path(a.weights)
    models = Models(weights)
    report: dict = {"threads": torch.get_num_threads(), "device": "cpu"}
    md: list[str] = [f"# Benchmarks (CPU, {torch.get_num_threads()} torch threads, median of {repeats})", ""]

    # 1. ceiling
    ceiling = matmul_flops(repeats=repeats)
    report["matmul_gflops"] = ceiling / 1e9
    md += [f"Matrix-multiply ceiling (fp32 2048²): **{ceiling / 1e9:.1f} GFLOP/s**.", ""]

    # 2. in-process per model and size
    sizes = [(256, 256), (1024, 768)] + ([] if a.quick else [(3840, 2160)])
    md += ["## In-process PyTorch as the handlers run it (channels_last on the CPU)", "",
           "| model | input | model ms | pipeline ms | GFLOP | achieved GFLOP/s | of ceiling |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    inproc = {}
    for target in ENDPOINTS:
        for w, h in sizes:
            if (w, h) == (3840, 2160) and target not in (REPAIR, SR_X2):
                continue
            data = test_photo(w, h)
            img = decode_image(data).image
            call = models.model_call(target, img)
            flops = model_flops(call)
            t_model = median_time(call, 1 if w > 2000 else repeats)
            t_pipe = median_time(lambda target=target, data=data: models.pipeline(target, data),
                                 1 if w > 2000 else repeats)
            inproc[(target, w, h)] = {"model_s": t_model, "pipeline_s": t_pipe, "gflop": flops / 1e9,
                                      "gflops": flops / t_model / 1e9}
            r = inproc[(target, w, h)]
            md.append(f"| {target} | {w}×{h} | {t_model * 1e3:.1f} | {t_pipe * 1e3:.1f} | {r['gflop']:.2f} | "
                      f"{r['gflops']:.1f} | {r['gflops'] * 1e9 / ceiling:.0%} |")
            print(md[-1], flush=True)
    report["in_process"] = {f"{k[0]}@{k[1]}x{k[2]}": v for k, v in inproc.items()}

    # 2b. other ways to run the same networks in-process
    onnx_dir = Path(tempfile.mkdtemp(prefix="pix2pix-sr-onnx-"))
    runners: dict[str, dict] = {}
    for name in (COLORIZE, SR_X2, SR_X4):
        (onnx_dir / name).mkdir()
        export_onnx_graph(name, onnx_dir / name, weights / name)
        # plain NCHW modules, loaded afresh (the served ones run channels_last)
        eager = load_generator(str(weights / name))[0] if name == COLORIZE else load_sr_model(str(weights / name))[0]
        runners[name] = {
            "eager": eager,
            "channels_last": ChannelsLast(copy.deepcopy(eager)),
            "onnxruntime": OnnxModule(onnx_dir / name / ONNX_FILE),
        }
    md += ["", "## In-process: eager vs channels_last vs ONNX Runtime (whole pipeline, same weights)", "",
           "| model | input | eager ms | channels_last ms | ONNX Runtime ms | ORT / eager | max diff vs eager (of 255) |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    report["backends_in_process"] = []
    for name in (COLORIZE, SR_X2, SR_X4):
        for w, h in [(256, 256), (1024, 768)]:
            img = decode_image(test_photo(w, h)).image

            def run(runner, name=name, img=img):
                if name == COLORIZE:
                    return colorize_images(runner, models.gcfg, [img])[0]
                return upscale_image(runner, img, 2 if name == SR_X2 else 4)

            times = {k: median_time(lambda r=r: run(r), repeats) for k, r in runners[name].items()}
            ref = np.asarray(run(runners[name]["eager"]), dtype=np.int16)
            diff = max(int(np.abs(np.asarray(run(r), dtype=np.int16) - ref).max())
                       for k, r in runners[name].items() if k != "eager")
            row = {"model": name, "size": f"{w}x{h}", **{f"{k}_s": v for k, v in times.items()}, "max_diff": diff}
            report["backends_in_process"].append(row)
            md.append(f"| {name} | {w}×{h} | {times['eager'] * 1e3:.1f} | {times['channels_last'] * 1e3:.1f} | "
                      f"{times['onnxruntime'] * 1e3:.1f} | {times['onnxruntime'] / times['eager']:.2f} | {diff} |")
            print(md[-1], flush=True)

    # 3. our SR path vs the library's own inference
    md += ["", "## SR: this project's path vs super-image's own inference (same weights)", "",
           "| input | scale | library ms | ours ms | ours / library | max abs diff (of 255) |",
           "| --- | --- | ---: | ---: | ---: | ---: |"]
    report["vs_library"] = []
    for (w, h) in [(256, 256), (1024, 768)]:
        img = decode_image(test_photo(w, h)).image
        for name, scale in ((SR_X2, 2), (SR_X4, 4)):
            lib_out, t_lib = library_inference(weights / name, scale, img)
            ours_t = median_time(lambda img=img, name=name, scale=scale: upscale_image(models.sr[name], img, scale),
                                 repeats)
            ours = np.asarray(upscale_image(models.sr[name], img, scale))
            # The library's save path converts with cv2's BGR swap; compare in RGB order.
            diff = int(np.abs(ours.astype(int) - lib_out.astype(int)).max())
            report["vs_library"].append({"size": f"{w}x{h}", "scale": scale, "library_s": t_lib, "ours_s": ours_t,
                                         "max_diff": diff})
            md.append(f"| {w}×{h} | ×{scale} | {t_lib * 1e3:.1f} | {ours_t * 1e3:.1f} | {ours_t / t_lib:.2f} | {diff} |")
            print(md[-1], flush=True)

    # 3b. SR tile size
    report["tiles"], lines = tile_sweep(models, repeats)
    md += lines
    print("\n".join(lines), flush=True)

    with tempfile.TemporaryDirectory(prefix="pix2pix-sr-suite-") as t:
        tmp = Path(t)
        store = tmp / "store"
        build_all(store, {name: str(weights / name) for name in MODELS},
                  onnx=True)  # workers run eager PyTorch unless PIX2PIX_BACKEND=onnxruntime

        # 4 + 6 + 7: the default configuration
        ts = start_ts(store, tmp, "default")
        try:
            data = test_photo(256, 256)
            md += ["", "## TorchServe per endpoint (256×256 input)", "",
                   "In-process rate: 1 ÷ the in-process pipeline time, measured just before each row.", "",
                   "| endpoint | concurrency | p50 ms | p95 ms | images/s | in-process rate | of in-process |",
                   "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
            report["endpoints"] = []
            for target in ENDPOINTS:
                url = ts.inference_url + prediction_path(target)
                for conc in (1, 4, 16):
                    # The in-process rate is measured again just before each row: other tenants of a
                    # shared machine change its speed within minutes, and a rate from the start of the
                    # run would compare two different machines.
                    rate = 1 / median_time(lambda target=target: models.pipeline(target, data), 3)
                    r = concurrent_run(url, data, conc, max(repeats * 2, conc * 2))
                    r.update({"endpoint": target, "in_process_rate": rate, "fraction": r["images_per_s"] / rate})
                    report["endpoints"].append(r)
                    md.append(f"| {target} | {conc} | {r['p50_s'] * 1e3:.1f} | {r['p95_s'] * 1e3:.1f} | "
                              f"{r['images_per_s']:.2f} | {rate:.2f} | {r['fraction']:.0%} |")
                    print(md[-1], flush=True)
            # 6. workflow vs client chaining
            s = Client(ts.inference_url)

            def chained(data=data):
                fixed = s.post(prediction_path(REPAIR), data).content
                c = s.post(prediction_path(COLORIZE), fixed, "image/png").content
                return s.post(prediction_path(SR_X2), c, "image/png").content

            def workflow(data=data):
                return s.post(prediction_path(WORKFLOW_RESTORE), data).content

            t_chain, t_wf = median_time(chained, repeats * 2), median_time(workflow, repeats * 2)
            report["workflow_vs_chain"] = {"workflow_s": t_wf, "chain_s": t_chain, "ratio": t_wf / t_chain}
            md += ["", "## `restore` workflow vs a client chaining repair → colorize → sr_x2 (256×256)", "",
                   f"workflow {t_wf * 1e3:.1f} ms, client chain {t_chain * 1e3:.1f} ms: ratio **{t_wf / t_chain:.3f}** "
                   "(target ≤ 1.10)."]
            print(md[-1], flush=True)
            # 7. large images
            md += ["", "## Large images end to end", "", "| request | output | seconds | worker peak RSS MiB |",
                   "| --- | --- | ---: | ---: |"]
            report["large"] = []
            lim = Limits()
            big = [] if a.quick else [(REPAIR, 3840, 2160), (SR_X2, 3840, 2160)]
            side = int((lim.max_output_pixels / 16) ** 0.5)
            big.append((SR_X4, side * 4 // 3 // 4 * 4, side * 3 // 4 // 4 * 4))  # 4:3, ×4 output just under 64 MP
            for target, w, h in big:
                r = large_request(ts, target, w, h)
                report["large"].append(r)
                md.append(f"| {target} {w}×{h} | {r['output']} ({r['bytes'] / 1e6:.1f} MB) | {r['seconds']:.1f} | "
                          f"{r['peak_rss_mib']:.0f} |")
                print(md[-1], flush=True)
            report["peak_rss_mib"] = workers_peak(ts)
        finally:
            ts.stop()

        # 4b. the same endpoints with the workers on ONNX Runtime
        ts = start_ts(store, tmp, "onnxruntime", env={"PIX2PIX_BACKEND": "onnxruntime"})
        try:
            data = test_photo(256, 256)
            md += ["", "## TorchServe with PIX2PIX_BACKEND=onnxruntime (256×256 input)", "",
                   "| endpoint | concurrency | p50 ms | p95 ms | images/s | eager-served images/s | ORT / eager |",
                   "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
            report["endpoints_onnxruntime"] = []
            eager_rates = {(r["endpoint"], r["concurrency"]): r["images_per_s"] for r in report["endpoints"]}
            for target in ENDPOINTS:
                url = ts.inference_url + prediction_path(target)
                for conc in (1, 16):
                    r = concurrent_run(url, data, conc, max(repeats * 2, conc * 2))
                    base = eager_rates[(target, conc)]
                    r.update({"endpoint": target, "eager_images_per_s": base, "speedup": r["images_per_s"] / base})
                    report["endpoints_onnxruntime"].append(r)
                    md.append(f"| {target} | {conc} | {r['p50_s'] * 1e3:.1f} | {r['p95_s'] * 1e3:.1f} | "
                              f"{r['images_per_s']:.2f} | {base:.2f} | {r['speedup']:.2f} |")
                    print(md[-1], flush=True)
            report["peak_rss_mib_onnxruntime"] = workers_peak(ts)
        finally:
            ts.stop()

        # 5. batching and workers × threads for colorize at concurrency 16
        md += ["", "## colorize at concurrency 16: batching and workers × threads", "",
               "| setting | p50 ms | p95 ms | images/s |", "| --- | ---: | ---: | ---: |"]
        report["settings"] = []
        data = test_photo(256, 256)
        for label, batch, workers, threads in (("batch 1, 1 worker × 2 threads", 1, 1, 2),
                                               ("batch 4, 1 worker × 2 threads", 4, 1, 2),
                                               ("batch 1, 2 workers × 1 thread", 1, 2, 1)):
            ts = start_ts(store, tmp, f"s{batch}{workers}", models_setting(batch, workers),
                          env={"PIX2PIX_TORCH_THREADS": str(threads)})
            try:
                r = concurrent_run(ts.inference_url + prediction_path(COLORIZE), data, 16, 48)
            finally:
                ts.stop()
            r["setting"] = label
            report["settings"].append(r)
            md.append(f"| {label} | {r['p50_s'] * 1e3:.1f} | {r['p95_s'] * 1e3:.1f} | {r['images_per_s']:.2f} |")
            print(md[-1], flush=True)

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.md").write_text("\n".join(md) + "\n")
    (out / "bench.json").write_text(json.dumps(report, indent=2, default=str))
    plot(report, out / "bench.png")
    print(f"wrote {out / 'bench.md'}, {out / 'bench.png'}")
    return 0


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for target in ENDPOINTS:
        rows = [r for r in report.get("endpoints", []) if r["endpoint"] == target]
        ax[0].plot([r["concurrency"] for r in rows], [r["images_per_s"] for r in rows], marker="o", label=target)
    ax[0].set_xlabel("concurrency")
    ax[0].set_ylabel("images/s (256×256)")
    ax[0].set_xscale("log", base=2)
    ax[0].legend()
    labels = [r["setting"] for r in report.get("settings", [])]
    ax[1].barh(labels, [r["images_per_s"] for r in report.get("settings", [])])
    ax[1].set_xlabel("colorize images/s at concurrency 16")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())

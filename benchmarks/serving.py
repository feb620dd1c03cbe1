"""`make bench`: in-process time vs end-to-end HTTP time through TorchServe, side by side.

For each endpoint and input size it measures, in one run on one machine:
  * model   — the network alone (forward passes, tiling included);
  * pipeline — the handler's whole work in-process: decode, model, encode (what a worker does);
  * http    — a client's POST to the running TorchServe, reply read in full (a lean kept-alive
    HTTP/1.1 client, benchmarks.client, so the client's own Python cost stays out of the figure);
pipeline and HTTP calls alternate, so both see the same machine conditions; the script
prints the ratio http / pipeline (TorchServe's overhead). Results go to
``results/bench_serving.md`` and ``results/bench_serving.json``.

    python -m benchmarks.serving [--repeats 5] [--weights-root weights]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.client import Client
from restoration.backends import torch_runner
from restoration.colorizer import colorize_images, load_generator, predict_ab
from restoration.image_io import decode_image, encode_image
from restoration.names import COLORIZE, REPAIR, SR_X2, SR_X4, WORKFLOW_RESTORE, prediction_path
from restoration.repair import load_repairer, luma, repair_image, residual
from restoration.tiling import upscale_tiled
from restoration.upscaler import image_to_tensor, load_sr_model, upscale_image
from serving.archive import build_all, tool_path
from serving.server import MODELS, ROOT, TorchServe, free_port, read_properties

SIZES = [(256, 256), (512, 512), (1024, 768)]
PAUSE_S = 0.3  # idle time before each timed call of interleaved_medians
ENDPOINTS = (REPAIR, COLORIZE, SR_X2, SR_X4, WORKFLOW_RESTORE)
TARGETS = {(COLORIZE, (256, 256)): 1.15, (SR_X2, (512, 512)): 1.05}


def test_photo(width: int, height: int) -> bytes:
    """A deterministic photo-like JPEG (smooth gradients, edges, texture)."""
    rng = np.random.default_rng(width * 7 + height)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    arr = np.stack([0.5 + 0.5 * np.sin(x / 37.0), 0.5 + 0.5 * np.cos(y / 23.0), (x + y) / (width + height)], -1)
    arr[(x // 64 + y // 64) % 2 == 0] *= 0.7
    arr += rng.normal(0, 0.03, arr.shape)
    buf = io.BytesIO()
    Image.fromarray((np.clip(arr, 0, 1) * 255).astype(np.uint8)).save(buf, "JPEG", quality=92)
    return buf.getvalue()


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved_medians(a, b, repeats: int) -> tuple[float, float]:
    """Median times of ``a`` and ``b`` called alternately (a, b, a, b, ...).

    Alternating keeps slow drifts of the machine's speed (shared hosts, thermal limits) out of
    the ratio: both sides see the same conditions, where two blocks one after the other do not.
    Each call starts after a pause, so neither side runs while the other's compute threads
    still spin after its call (the TorchServe worker's would otherwise slow the in-process run).
    """
    a()
    b()  # warm-up
    ta, tb = [], []
    for _ in range(repeats):
        for fn, times in ((a, ta), (b, tb)):
            time.sleep(PAUSE_S)
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb)


class Models:
    """The served models loaded in-process, and the work a request costs without TorchServe."""

    def __init__(self, weights: Path) -> None:
        # run as the handlers run them (backends.torch_runner: channels_last on the CPU)
        cpu = torch.device("cpu")
        g, self.gcfg = load_generator(str(weights / COLORIZE))
        self.g = torch_runner(g, cpu)[0]
        self.sr = {name: torch_runner(load_sr_model(str(weights / name))[0], cpu)[0] for name in (SR_X2, SR_X4)}
        self.repair, self.rcfg = load_repairer(str(weights / REPAIR))  # served as the module itself
        self.weights = weights

    def model_call(self, target: str, img: Image.Image):
        """The network alone (the lower bound)."""
        if target == COLORIZE:
            return lambda: predict_ab(self.g, self.gcfg, [img])
        if target == REPAIR:
            y = torch.from_numpy(luma(np.asarray(img)))[None, None]
            return lambda: residual(self.repair, y, self.rcfg.tile, self.rcfg.overlap, self.rcfg.multiple)
        if target == WORKFLOW_RESTORE:
            x2 = image_to_tensor(img)
            y = torch.from_numpy(luma(np.asarray(img)))[None, None]
            return lambda: (residual(self.repair, y, self.rcfg.tile, self.rcfg.overlap, self.rcfg.multiple),
                            predict_ab(self.g, self.gcfg, [img]), upscale_tiled(self.sr[SR_X2], x2, 2))
        x, scale = image_to_tensor(img), 2 if target == SR_X2 else 4
        # Tiled as the handler serves it (an untiled pass is slower on large inputs here).
        return lambda: upscale_tiled(self.sr[target], x, scale)

    def pipeline(self, target: str, data: bytes) -> bytes:
        """The handler's whole work in-process: decode, model, encode."""
        img = decode_image(data).image
        if target == COLORIZE:
            return encode_image(colorize_images(self.g, self.gcfg, [img])[0])
        if target == REPAIR:
            return encode_image(repair_image(self.repair, self.rcfg, img))
        if target == WORKFLOW_RESTORE:
            fixed = decode_image(encode_image(repair_image(self.repair, self.rcfg, img))).image
            colour = decode_image(encode_image(colorize_images(self.g, self.gcfg, [fixed])[0])).image
            return encode_image(upscale_image(self.sr[SR_X2], colour, 2))
        scale = 2 if target == SR_X2 else 4
        return encode_image(upscale_image(self.sr[target], img, scale))


def build_echo(store: Path, served: dict) -> tuple[dict, dict[str, str]]:
    """Archive the echo handler (benchmarks/echo_handler.py: computes nothing) once per batching
    setting the served models use. Returns the echo models' TorchServe settings, and per endpoint
    the echo model with the same batchSize and maxBatchDelay."""
    echo_models, echo_for = {}, {}
    for name, versions in served.items():
        cfg = versions["1.0"]
        echo = f"echo_b{cfg['batchSize']}_d{cfg['maxBatchDelay']}"
        echo_models[echo] = {"defaultVersion": True, "marName": f"{echo}.mar", "minWorkers": 1, "maxWorkers": 1,
                             "batchSize": cfg["batchSize"], "maxBatchDelay": cfg["maxBatchDelay"],
                             "responseTimeout": 60}
        echo_for[name] = echo
    for echo in echo_models:
        subprocess.run([tool_path("torch-model-archiver"), "--model-name", echo, "--version", "1.0",
                        "--handler", str(ROOT / "benchmarks" / "echo_handler.py"),
                        "--export-path", str(store), "--force"], check=True)
    return echo_models, echo_for


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--weights-root", default=str(ROOT / "weights"))
    parser.add_argument("--out", default=str(ROOT / "results"))
    parser.add_argument("--endpoints", default=",".join(ENDPOINTS),
                        help="comma-separated subset of " + ",".join(ENDPOINTS))
    parser.add_argument("--sizes", default=",".join(f"{w}x{h}" for w, h in SIZES),
                        help="comma-separated WxH input sizes")
    args = parser.parse_args(argv)
    endpoints = [e for e in args.endpoints.split(",") if e]
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",") if s]
    if unknown := set(endpoints) - set(ENDPOINTS):
        parser.error(f"unknown endpoints: {sorted(unknown)}")
    wroot = Path(args.weights_root)
    sources = {name: str(wroot / name) for name in MODELS}
    for name, path in sources.items():
        if not Path(path).is_dir():
            print(f"no weights for {name} in {path}", file=sys.stderr)
            return 2

    models = Models(wroot)
    threads = torch.get_num_threads()

    rows = []
    with tempfile.TemporaryDirectory(prefix="pix2pix-sr-bench-") as tmp:
        store = Path(tmp) / "store"
        build_all(store, sources)
        props = read_properties(ROOT / "config.properties")
        served = json.loads(props["models"])
        echo_models, echo_for = build_echo(store, served)
        served.update({name: {"1.0": cfg} for name, cfg in echo_models.items()})
        ts = TorchServe(model_store=store, workdir=Path(tmp) / "ts", inference_port=free_port(),
                        management_port=free_port(), metrics_port=free_port(), overrides={
                            "load_models": props["load_models"] + "," + ",".join(f"{n}.mar" for n in echo_models),
                            "models": json.dumps(served)})
        ts.start(timeout=300, models=MODELS + tuple(echo_models))
        try:
            client = Client(ts.inference_url)
            for target in endpoints:
                for size in sizes:
                    data = test_photo(*size)
                    img = decode_image(data).image
                    path = prediction_path(target)

                    reply_bytes: list[int] = []

                    def http(path=path, data=data, reply_bytes=reply_bytes):
                        r = client.post(path, data)
                        r.raise_for_status()
                        reply_bytes.append(len(r.content))
                        return r.content

                    t_model = median_time(models.model_call(target, img), args.repeats)
                    t_pipe, t_http = interleaved_medians(
                        lambda target=target, data=data: models.pipeline(target, data), http, args.repeats)
                    # TorchServe's floor: a handler that computes nothing, same batching, same sizes
                    t_floor = None
                    if target in echo_for:
                        body = struct.pack(">Q", reply_bytes[-1]) + data[8:]
                        echo_path = f"/predictions/{echo_for[target]}"
                        t_floor = median_time(lambda body=body, p=echo_path: client.post(p, body).raise_for_status(),
                                              args.repeats)
                    target_ratio = TARGETS.get((target, size))
                    rows.append({
                        "endpoint": target, "size": f"{size[0]}x{size[1]}", "model_s": t_model,
                        "pipeline_s": t_pipe, "http_s": t_http, "http_over_pipeline": t_http / t_pipe,
                        "http_over_model": t_http / t_model, "target": target_ratio, "floor_s": t_floor,
                        "floor_ratio": (t_pipe + t_floor) / t_pipe if t_floor is not None else None,
                    })
                    r = rows[-1]
                    print(f"{target:8s} {r['size']:>9s}  model {t_model * 1000:8.1f} ms  pipeline {t_pipe * 1000:8.1f} ms"
                          f"  http {t_http * 1000:8.1f} ms  http/pipeline {r['http_over_pipeline']:.3f}"
                          f"  http/model {r['http_over_model']:.3f}"
                          + (f"  floor {t_floor * 1000:.1f} ms (pipeline+floor {r['floor_ratio']:.3f})"
                             if t_floor is not None else "")
                          + (f"  (target ≤ {target_ratio})" if target_ratio else ""), flush=True)
        finally:
            ts.stop()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_serving.json").write_text(json.dumps({"torch_threads": threads, "rows": rows}, indent=2))
    lines = [
        f"# Serving benchmark (torch threads: {threads}, repeats: {args.repeats}, median)",
        "",
        "Floor: the same request and reply sizes through TorchServe to a handler that computes nothing",
        "(benchmarks/echo_handler.py, the endpoint's batching); (pipeline + floor) / pipeline is the",
        "best ratio TorchServe allows on this machine. The workflow has no single floor (two hops).",
        "",
        "| endpoint | input | model ms | pipeline ms | HTTP ms | HTTP / pipeline | HTTP / model | floor ms | "
        "(pipeline + floor) / pipeline | target |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        tgt = f"≤ {r['target']}" if r["target"] else ""
        floor = (f"{r['floor_s'] * 1000:.1f} | {r['floor_ratio']:.3f}" if r["floor_s"] is not None else "— | —")
        lines.append(f"| {r['endpoint']} | {r['size']} | {r['model_s'] * 1000:.1f} | {r['pipeline_s'] * 1000:.1f} | "
                     f"{r['http_s'] * 1000:.1f} | {r['http_over_pipeline']:.3f} | {r['http_over_model']:.3f} | "
                     f"{floor} | {tgt} |")
    (out / "bench_serving.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'bench_serving.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Handlers in-process: batching, per-request errors, colourisation and tiled super-resolution."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from handlers.colorize import ColorizeHandler
from handlers.super_resolution import SuperResolutionHandler
from restoration.color import rgb_to_lab
from restoration.colorizer import colorize_images, load_generator
from restoration.tiling import tile_grid, upscale_tiled
from restoration.upscaler import load_sr_model, upscale_image
from tests.conftest import encode, photo


class FakeContext:
    """The parts of TorchServe's Context the handlers use."""

    def __init__(self, model_dir: str, model_name: str, headers: list[dict] | None = None) -> None:
        self.system_properties = {"model_dir": model_dir, "gpu_id": None}
        self.model_name = model_name
        self.metrics = None
        self.headers = headers or []
        self.status: dict[int, tuple[int, str]] = {}
        self.types: dict[int, str] = {}

    def get_request_header(self, idx: int, key: str):
        return self.headers[idx].get(key) if idx < len(self.headers) else None

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        self.status[idx] = (code, phrase)

    def set_response_content_type(self, idx: int, value: str) -> None:
        self.types[idx] = value


def test_batch_with_one_bad_request(tiny_weights):
    ctx = FakeContext(str(tiny_weights["colorize"]), "colorize", headers=[{}, {}, {"Accept": "image/jpeg"}])
    h = ColorizeHandler()
    h.initialize(ctx)
    good = encode(photo(50, 40), "PNG")
    out = h.handle([{"body": good}, {"body": b"garbage"}, {"body": good}], ctx)
    assert len(out) == 3
    assert Image.open(io.BytesIO(out[0])).size == (50, 40) and ctx.types[0] == "image/png"
    assert ctx.status[1][0] == 415 and json.loads(out[1])["type"] == "UnsupportedMediaType"
    assert out[2].startswith(b"\xff\xd8") and ctx.types[2] == "image/jpeg"
    assert 0 not in ctx.status and 2 not in ctx.status


def test_multipart_fields_and_form_encoded_body(tiny_weights):
    ctx = FakeContext(str(tiny_weights["sr_x2"]), "sr_x2")
    h = SuperResolutionHandler()
    h.initialize(ctx)
    out = h.handle([{"data": bytearray(encode(photo(20, 10))), "format": bytearray(b"jpeg")},
                    {"a b": b"c"}], ctx)
    assert Image.open(io.BytesIO(out[0])).size == (40, 20) and out[0].startswith(b"\xff\xd8")
    assert ctx.status[1][0] == 415 and "Content-Type" in json.loads(out[1])["message"]


def test_workflow_node_forwards_upstream_error(tiny_weights):
    ctx = FakeContext(str(tiny_weights["sr_x2"]), "restore__sr_x2")
    h = SuperResolutionHandler()
    h.initialize(ctx)
    upstream = json.dumps({"code": 413, "type": "TooManyPixels", "message": "too big"}).encode()
    out = h.handle([{"body": upstream}], ctx)
    assert json.loads(out[0]) == {"code": 413, "type": "TooManyPixels", "message": "too big"}
    assert ctx.status[0][0] == 413


def test_sr_handler_refuses_output_over_limit_before_compute(tiny_weights, monkeypatch):
    monkeypatch.setenv("PIX2PIX_MAX_OUTPUT_MP", "0.01")  # 10 000 pixels out
    ctx = FakeContext(str(tiny_weights["sr_x4"]), "sr_x4")
    h = SuperResolutionHandler()
    h.initialize(ctx)
    called = []
    h.restore = lambda img: called.append(img)  # would record any compute
    out = h.handle([{"body": encode(photo(30, 30))}], ctx)
    assert ctx.status[0][0] == 413 and not called
    assert "output limit" in json.loads(out[0])["message"]


@pytest.mark.parametrize("size", [(64, 64), (300, 97), (17, 250)])
def test_colorize_keeps_size_and_luminance(tiny_weights, size):
    net, cfg = load_generator(str(tiny_weights["colorize"]))
    img = photo(*size).convert("L").convert("RGB")
    out = colorize_images(net, cfg, [img])[0]
    assert out.size == img.size and out.mode == "RGB"
    to_t = lambda im: torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float() / 255  # noqa: E731
    l_in, l_out = rgb_to_lab(to_t(img))[0], rgb_to_lab(to_t(out))[0]
    # Luminance is the input's own (up to gamut clipping and 8-bit rounding).
    assert (l_in - l_out).abs().mean() < 2.0


def test_colorize_batch_equals_single(tiny_weights):
    net, cfg = load_generator(str(tiny_weights["colorize"]))
    a, b = photo(80, 60, seed=1), photo(33, 90, seed=2)
    both = colorize_images(net, cfg, [a, b])
    single = colorize_images(net, cfg, [b])[0]
    assert np.array_equal(np.asarray(both[1]), np.asarray(single))


def test_tile_grid_covers_image_once():
    cover = np.zeros((70, 130), int)
    for t, left, b, r in tile_grid(70, 130, 32):
        cover[t:b, left:r] += 1
    assert (cover == 1).all()


def test_tiled_sr_matches_untiled(tmp_path):
    from tests.tiny_models import make_sr

    d = make_sr(tmp_path, 2, n_resblocks=6, n_feats=16)
    model, scale = load_sr_model(str(d))
    img = photo(203, 151, seed=3)
    x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)[None].float() / 255
    full = upscale_tiled(model, x, scale, tile=0)
    tiled = upscale_tiled(model, x, scale, tile=64, overlap=24)
    assert tiled.shape == full.shape == (3, 302, 406)
    assert (tiled.int() - full.int()).abs().max().item() <= 1


def test_upscale_image_sizes(tiny_weights):
    model, scale = load_sr_model(str(tiny_weights["sr_x4"]))
    out = upscale_image(model, photo(31, 17), scale, tile=16, overlap=8)
    assert scale == 4 and out.size == (124, 68)


def test_sr_loader_rejects_mismatched_weights(tmp_path, tiny_weights):
    import shutil

    d = tmp_path / "bad"
    shutil.copytree(tiny_weights["sr_x2"], d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["n_feats"] = 32
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises((ValueError, RuntimeError)):
        load_sr_model(str(d))


def test_fast_recombine_matches_lab_round_trip(tiny_weights):
    from restoration.colorizer import predict_ab, recombine, recombine_reference

    net, cfg = load_generator(str(tiny_weights["colorize"]))
    img = photo(333, 211, seed=9)
    ab = predict_ab(net, cfg, [img])[0] * 4  # strong chroma reaches the gamut edges too
    fast, ref = np.asarray(recombine(img, ab)).astype(int), np.asarray(recombine_reference(img, ab)).astype(int)
    assert np.abs(fast - ref).max() <= 1


def test_workflow_node_replies_are_held_back_past_torchserves_promise_race(tiny_weights):
    """TorchServe 0.12 attaches a workflow node's reply promise after queueing its job; an instant
    reply can be lost (the workflow request then hangs). Node replies, refusals and small images
    alike, take at least WORKFLOW_MIN_REPLY_S; requests outside a workflow are not delayed."""
    import time

    from handlers.base import WORKFLOW_MIN_REPLY_S

    def timed(name: str, body: bytes) -> tuple[float, bytes]:
        ctx = FakeContext(str(tiny_weights["colorize"]), name)
        h = ColorizeHandler()
        h.initialize(ctx)
        h.handle([{"body": encode(photo(16, 16))}], ctx)  # warm
        t0 = time.perf_counter()
        out = h.handle([{"body": body}], ctx)[0]
        return time.perf_counter() - t0, out

    took, out = timed("restore__colorize", b"")
    assert out.startswith(b"{") and took >= WORKFLOW_MIN_REPLY_S
    took, out = timed("colorize", b"")
    assert out.startswith(b"{") and took < WORKFLOW_MIN_REPLY_S
    took, out = timed("restore__colorize", encode(photo(16, 16)))
    assert out.startswith(b"\x89PNG") and took >= WORKFLOW_MIN_REPLY_S
    took, out = timed("colorize", encode(photo(16, 16)))
    assert out.startswith(b"\x89PNG") and took < WORKFLOW_MIN_REPLY_S


def test_compute_threads_per_model():
    from handlers.base import compute_threads

    # default: the restore workflow's colourise node gets one thread, everything else the default
    assert compute_threads("restore__colorize", {}) == 1
    assert compute_threads("restore__sr_x2", {}) is None
    assert compute_threads("colorize", {"PIX2PIX_TORCH_THREADS": "3"}) == 3
    assert compute_threads("restore__colorize", {"PIX2PIX_TORCH_THREADS": "3"}) == 1
    env = {"PIX2PIX_TORCH_THREADS": "2", "PIX2PIX_MODEL_THREADS": " sr_x4 = 4 , restore__sr_x2=1"}
    assert compute_threads("sr_x4", env) == 4
    assert compute_threads("restore__sr_x2", env) == 1
    assert compute_threads("restore__colorize", env) == 2  # an explicit list replaces the default
    assert compute_threads("restore__colorize", {"PIX2PIX_MODEL_THREADS": ""}) is None
    for bad in ("colorize=0", "colorize=two"):
        with pytest.raises(ValueError, match="colorize"):
            compute_threads("colorize", {"PIX2PIX_MODEL_THREADS": bad})


def test_recombine_in_parallel_row_ranges_equals_one_range(tiny_weights):
    """recombine splits the rows over the torch threads; the picture must not depend on it."""
    g, cfg = load_generator(str(tiny_weights["colorize"]))
    from restoration.colorizer import predict_ab, recombine

    img = photo(333, 517, seed=4)
    ab = predict_ab(g, cfg, [img])[0]
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = np.asarray(recombine(img, ab))
        torch.set_num_threads(3)
        three = np.asarray(recombine(img, ab))
        assert torch.get_num_threads() == 3  # restored after the parallel section
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(one, three)

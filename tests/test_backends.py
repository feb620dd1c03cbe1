"""ONNX Runtime backend: archives export the same network as ONNX, and handlers running it give
the images eager PyTorch gives (within 1/255), batched colourisation and tiled SR included."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from PIL import Image

from handlers.colorize import ColorizeHandler
from handlers.super_resolution import SuperResolutionHandler
from restoration.backends import BACKEND_ENV, CHANNELS_LAST_ENV, ONNX_FILE, channels_last_setting
from serving.archive import export_onnx_graph
from tests.conftest import encode, photo
from tests.test_handlers import FakeContext

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def onnx_dirs(tiny_weights, tmp_path_factory):
    """Model directories as an archive built with --onnx unpacks them: weights, config, model.onnx."""
    dirs = {}
    for name in ("colorize", "sr_x2"):
        d = tmp_path_factory.mktemp(f"{name}_onnx")
        shutil.copytree(tiny_weights[name], d, dirs_exist_ok=True)
        export_onnx_graph(name, d, d)
        assert (d / ONNX_FILE).stat().st_size > 0
        dirs[name] = d
    return dirs


def serve(handler_cls, model_dir, name, bodies, backend, monkeypatch):
    monkeypatch.setenv(BACKEND_ENV, backend)
    monkeypatch.setenv("PIX2PIX_SR_TILE", "32")  # several tiles, edge tiles of other sizes
    ctx = FakeContext(str(model_dir), name)
    h = handler_cls()
    h.initialize(ctx)
    out = h.handle([{"body": b} for b in bodies], ctx)
    assert not ctx.status, ctx.status
    return h.backend, [np.asarray(Image.open(io.BytesIO(o)).convert("RGB"), dtype=np.int16) for o in out]


@pytest.mark.parametrize("handler_cls,name,sizes", [
    (ColorizeHandler, "colorize", [(90, 50), (40, 70), (33, 33)]),  # one batch, three aspects
    (SuperResolutionHandler, "sr_x2", [(75, 41)]),  # 3×2 tiles of 32 px, ragged edges
])
def test_onnxruntime_gives_the_eager_images(onnx_dirs, monkeypatch, handler_cls, name, sizes):
    bodies = [encode(photo(w, h, seed=w), "PNG") for w, h in sizes]
    eager_backend, eager = serve(handler_cls, onnx_dirs[name], name, bodies, "torch", monkeypatch)
    ort_backend, ort = serve(handler_cls, onnx_dirs[name], name, bodies, "onnxruntime", monkeypatch)
    assert eager_backend.startswith("torch") and ort_backend == "onnxruntime"
    for a, b, (w, h) in zip(eager, ort, sizes, strict=True):
        scale = 2 if name == "sr_x2" else 1
        assert a.shape == b.shape == (h * scale, w * scale, 3)
        assert np.abs(a - b).max() <= 1


def test_onnxruntime_without_a_graph_falls_back_to_eager(tiny_weights, monkeypatch, caplog):
    _, out = serve(SuperResolutionHandler, tiny_weights["sr_x2"], "sr_x2", [encode(photo(20, 10))], "onnxruntime",
                   monkeypatch)
    assert out[0].shape == (20, 40, 3)
    assert "has no model.onnx" in caplog.text


def test_unknown_backend_is_refused(tiny_weights, monkeypatch):
    monkeypatch.setenv(BACKEND_ENV, "tensorrt")
    h = SuperResolutionHandler()
    with pytest.raises(ValueError, match="use one of torch, onnxruntime"):
        h.initialize(FakeContext(str(tiny_weights["sr_x2"]), "sr_x2"))


@pytest.mark.parametrize("handler_cls,name,sizes", [
    (ColorizeHandler, "colorize", [(90, 50), (40, 70)]),
    (SuperResolutionHandler, "sr_x2", [(75, 41)]),
])
def test_channels_last_is_the_cpu_default_and_gives_the_plain_images(tiny_weights, monkeypatch, handler_cls, name,
                                                                      sizes):
    bodies = [encode(photo(w, h, seed=w + 1), "PNG") for w, h in sizes]
    monkeypatch.setenv(CHANNELS_LAST_ENV, "0")
    plain_backend, plain = serve(handler_cls, tiny_weights[name], name, bodies, "torch", monkeypatch)
    monkeypatch.delenv(CHANNELS_LAST_ENV)
    cl_backend, cl = serve(handler_cls, tiny_weights[name], name, bodies, "torch", monkeypatch)
    assert (plain_backend, cl_backend) == ("torch", "torch (channels_last)")
    for a, b in zip(plain, cl, strict=True):
        assert a.shape == b.shape and np.abs(a - b).max() <= 1


def test_a_bad_channels_last_setting_is_refused(monkeypatch):
    monkeypatch.setenv(CHANNELS_LAST_ENV, "maybe")
    with pytest.raises(ValueError, match=CHANNELS_LAST_ENV):
        channels_last_setting()

"""Shared fixtures: tiny weights made here, their archives, and one real TorchServe for the session.

The `torchserve` fixture starts TorchServe (Java) on free loopback ports with the repository's
config.properties (ports, paths and the model store overridden) and registers the `restore`
workflow. It is shared by the serving, bot and monitoring tests and always stopped at the end.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from serving.server import TorchServe, free_port  # noqa: E402
from tests.tiny_models import make_all  # noqa: E402


def photo(width: int = 160, height: int = 120, seed: int = 0) -> Image.Image:
    """A smooth, photo-like RGB test image (gradients + a few shapes), deterministic per seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 0.5 + 0.5 * np.sin(x / max(width, 1) * 6.28 * rng.uniform(0.5, 2) + rng.uniform(0, 6))
    g = 0.5 + 0.5 * np.cos(y / max(height, 1) * 6.28 * rng.uniform(0.5, 2) + rng.uniform(0, 6))
    b = (x + y) / (width + height)
    arr = np.stack([r, g, b], -1)
    cx, cy, rad = rng.uniform(0, width), rng.uniform(0, height), min(width, height) / 4
    arr[((x - cx) ** 2 + (y - cy) ** 2) < rad**2] *= 0.5
    arr += rng.normal(0, 0.02, arr.shape)
    return Image.fromarray((np.clip(arr, 0, 1) * 255).astype(np.uint8), "RGB")


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **kw)
    return out.getvalue()


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> dict[str, Path]:
    """Randomly initialised small weights for colorize, sr_x2, sr_x4 (made, never downloaded)."""
    return make_all(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="session")
def model_store(tiny_weights, tmp_path_factory) -> Path:
    """repair.mar, colorize.mar, sr_x2.mar, sr_x4.mar and restore.war built from the tiny weights."""
    from restoration.names import MODELS
    from serving.archive import build_all

    store = tmp_path_factory.mktemp("model_store")
    build_all(store, {k: str(v) for k, v in tiny_weights.items() if k in MODELS})
    return store


def _java_missing() -> bool:
    return shutil.which("java") is None


@pytest.fixture(scope="session")
def torchserve(model_store, tmp_path_factory):
    """A real TorchServe serving the tiny models and the restore workflow on free loopback ports."""
    if _java_missing():
        pytest.skip("TorchServe needs Java 17; `make test` set-up checks for it")
    ts = TorchServe(
        model_store=model_store,
        workdir=tmp_path_factory.mktemp("torchserve"),
        inference_port=free_port(),
        management_port=free_port(),
        metrics_port=free_port(),
        env={"PIX2PIX_TORCH_THREADS": os.environ.get("PIX2PIX_TORCH_THREADS", "1")},
    )
    try:
        ts.start(timeout=240)
    except Exception:
        ts.stop()
        raise
    yield ts
    ts.stop()

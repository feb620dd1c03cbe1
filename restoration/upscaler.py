"""Super-resolution with a `super-image` model: load it from a weights directory, upscale a photo.

The model directory is laid out as the library saves it: ``config.json`` (with ``model_type``
and ``scale``) and ``pytorch_model_{scale}x.pt``, or ``model_{scale}x.safetensors``. Weights
are read from the archive only; nothing is fetched at serve time.  Large inputs are upscaled
in overlapping tiles (see :mod:`restoration.tiling`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from restoration.tiling import upscale_tiled
from restoration.weights import first_existing, load_tensors, sr_files

# An optional second set of ×2 weights for JPEG-compressed / degraded inputs, in this subfolder of
# a weights directory; requests choose between the two by the kind of LR they send.
COMPRESSED_DIR = "compressed"
SR_INPUTS = ("clean", "compressed")

# super-image model types this service can load, by the `model_type` in config.json.
MODEL_TYPES = ("EDSR", "MSRN", "A2N", "CARN", "PAN", "MDSR", "AWSRN", "DRLN", "HAN", "RCAN")


def build_sr_model(model_type: str = "EDSR", **config):
    """A new super-image model of ``model_type`` with the given config fields."""
    model_cls, config_cls = model_classes(model_type)
    return model_cls(config_cls(**config))


def model_classes(model_type: str):
    import super_image

    key = model_type.upper()
    names = {
        "EDSR": "Edsr", "MSRN": "Msrn", "A2N": "A2n", "CARN": "Carn", "PAN": "Pan", "MDSR": "Mdsr",
        "AWSRN": "Awsrn", "DRLN": "Drln", "HAN": "Han", "RCAN": "Rcan",
    }
    if key not in names:
        raise ValueError(f"model_type {model_type!r} is not supported; use one of {', '.join(MODEL_TYPES)}")
    stem = names[key]
    return getattr(super_image, f"{stem}Model"), getattr(super_image, f"{stem}Config")


def load_sr_model(model_dir: str, scale: int | None = None, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, int]:
    """Load a super-image model from a directory; returns the model (eval, on device) and its scale."""
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        raw = json.load(f)
    model_cls, config_cls = model_classes(raw.get("model_type", "EDSR"))
    scale = int(scale or raw.get("scale") or 2)
    # Built from the JSON directly: the library's from_pretrained would look up a hub name
    # when the directory is incomplete, and nothing may be fetched at serve time.
    config = config_cls(**{k: v for k, v in raw.items() if k != "model_type"})
    config.scale = scale
    model = model_cls(config)
    try:
        state = load_tensors(first_existing(model_dir, sr_files(scale)))
    except FileNotFoundError:
        raise FileNotFoundError(f"no weights for ×{scale} in {model_dir} ({' or '.join(sr_files(scale))})") from None
    missing, unexpected = _load_strict(model, state)
    if missing or unexpected:
        raise ValueError(f"weights in {model_dir} do not fit {raw.get('model_type')}: "
                         f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.eval().to(device)
    return model, scale


def _load_strict(model: torch.nn.Module, state: dict) -> tuple[list[str], list[str]]:
    # Some super-image models override load_state_dict with a lenient copy; check keys ourselves.
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if not missing and not unexpected:
        torch.nn.Module.load_state_dict(model, state, strict=True)
    return missing, unexpected


def image_to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image → 1×3×H×W float in [0, 1] (the library's input convention)."""
    arr = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def tensor_to_image(x: torch.Tensor) -> Image.Image:
    """3×H×W uint8 → RGB PIL image."""
    return Image.fromarray(x.permute(1, 2, 0).contiguous().numpy(), "RGB")


def upscale_image(model: Callable[[torch.Tensor], torch.Tensor], img: Image.Image, scale: int, tile: int = 256, overlap: int = 24,
                  device: torch.device | str = "cpu") -> Image.Image:
    """Upscale one image with tiling (``tile=0`` for a single untiled pass)."""
    x = image_to_tensor(img).to(device)
    out = upscale_tiled(model, x, scale, tile=tile, overlap=overlap)
    return tensor_to_image(out)

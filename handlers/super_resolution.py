"""TorchServe handler `sr_x2` / `sr_x4`: the TorchServe side of :mod:`restoration.upscaler`.

The archive's directory is a weights directory (``config.json`` with ``model_type`` and
``scale``, and the tensors); nothing is fetched at serve time. Large inputs are upscaled in
overlapping tiles (tile and margin from the worker settings).

An archive may also carry a second set of weights in ``compressed/``, trained on LR that was
blurred, noised and JPEG-compressed; a request picks it with ``X-SR-Input: compressed`` (form
field ``sr_input``). Without that setting, or where no such weights exist (×4), the default
(clean-LR) model serves.
"""

from __future__ import annotations

import os

import torch
from PIL import Image

from handlers.base import ImageHandler
from restoration.backends import torch_runner
from restoration.image_io import ImageError
from restoration.settings import WorkerSettings
from restoration.upscaler import COMPRESSED_DIR, SR_INPUTS, load_sr_model, upscale_image

SR_INPUT_FIELD = "sr_input"


def parse_sr_input(value: str | None) -> str | None:
    """The LR kind a client says it sends (None when absent)."""
    if value is None or not str(value).strip():
        return None
    v = str(value).strip().lower()
    if v not in SR_INPUTS:
        raise ImageError(400, "BadSrInput", f"sr_input must be one of {', '.join(SR_INPUTS)}, got {value!r}")
    return v


class SuperResolutionHandler(ImageHandler):
    """Upscale ×scale (2 or 4, from the archive's config) in bounded memory."""

    task = "super_resolution"

    def load_model(self, model_dir: str) -> torch.nn.Module:
        model, self.scale = load_sr_model(model_dir, device=self.device)
        settings = WorkerSettings.from_env()
        self.tile, self.overlap = settings.sr_tile, settings.sr_overlap
        self.compressed = None
        variant = os.path.join(model_dir, COMPRESSED_DIR)
        if os.path.isdir(variant):
            self.compressed = torch_runner(load_sr_model(variant, self.scale, self.device)[0], self.device)[0]
        return model

    def request_options(self, settings: dict[str, str]) -> dict:
        return {"sr_input": parse_sr_input(settings.get(SR_INPUT_FIELD))}

    def restore(self, image: Image.Image) -> Image.Image:
        return upscale_image(self.net, image, self.scale, self.tile, self.overlap, self.device)

    def restore_batch(self, images: list[Image.Image], options: list[dict] | None = None) -> list[Image.Image]:
        out = []
        for i, image in enumerate(images):
            wanted = (options[i] if options else {}).get("sr_input")
            runner = self.compressed if wanted == "compressed" and self.compressed is not None else self.net
            out.append(upscale_image(runner, image, self.scale, self.tile, self.overlap, self.device))
        return out

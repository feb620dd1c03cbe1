"""TorchServe handler `sr_x2` / `sr_x4`: the TorchServe side of :mod:`restoration.upscaler`.

The archive's directory is a weights directory (``config.json`` with ``model_type`` and
``scale``, and the tensors); nothing is fetched at serve time. Large inputs are upscaled in
overlapping tiles (tile and margin from the worker settings).
"""

from __future__ import annotations

import torch
from PIL import Image

from handlers.base import ImageHandler
from restoration.settings import WorkerSettings
from restoration.upscaler import load_sr_model, upscale_image


class SuperResolutionHandler(ImageHandler):
    """Upscale ×scale (2 or 4, from the archive's config) in bounded memory."""

    task = "super_resolution"

    def load_model(self, model_dir: str) -> torch.nn.Module:
        model, self.scale = load_sr_model(model_dir, device=self.device)
        settings = WorkerSettings.from_env()
        self.tile, self.overlap = settings.sr_tile, settings.sr_overlap
        return model

    def restore(self, image: Image.Image) -> Image.Image:
        return upscale_image(self.net, image, self.scale, self.tile, self.overlap, self.device)

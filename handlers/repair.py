"""TorchServe handler `repair`: the TorchServe side of :mod:`restoration.repair`.

Per request it reads the strength (``X-Repair-Strength`` header or ``strength`` form field,
0 = off … 1 = full, default 1); a value that is not a number in [0, 1] gets a 400 JSON error
and the rest of the batch is served. Same size out; a colour photo keeps its colours.
"""

from __future__ import annotations

import torch
from PIL import Image

from handlers.base import SETTINGS, ImageHandler
from restoration.image_io import ImageError
from restoration.repair import load_repairer, repair_images

STRENGTH_FIELD = "strength"
STRENGTH_HEADER = SETTINGS[STRENGTH_FIELD]


def parse_strength(value: str | None) -> float | None:
    """A repair strength from a header or form field (None when absent)."""
    if value is None or not str(value).strip():
        return None
    try:
        v = float(str(value).strip())
    except ValueError:
        v = float("nan")
    if not 0.0 <= v <= 1.0:
        raise ImageError(400, "BadStrength", f"repair strength must be a number from 0 (off) to 1 (full), got {value!r}")
    return v


class RepairHandler(ImageHandler):
    """Repair grain, dust, scratches, fading, blur and JPEG damage on the luminance."""

    scale = 1
    task = "repair"

    def load_model(self, model_dir: str) -> torch.nn.Module:
        net, self.cfg = load_repairer(model_dir, self.device)
        return net

    def request_options(self, settings: dict[str, str]) -> dict:
        return {"strength": parse_strength(settings.get(STRENGTH_FIELD))}

    def restore_batch(self, images: list[Image.Image], options: list[dict] | None = None) -> list[Image.Image]:
        strengths = [o.get("strength") for o in options] if options else None
        # the module itself, under any backend: its tiles share one whole-photo context, which
        # a single-input graph cannot take (restoration.repair)
        return repair_images(self.model, self.cfg, images, self.device, strengths)

"""TorchServe handler `colorize`: the TorchServe side of :mod:`restoration.colorizer`.

Per request it reads the vividness setting (``X-Vividness`` header or ``vividness`` form field,
0 = most faithful … 1 = most vivid; absent: the weights' validated default); a value that is not
a number in [0, 1] gets a 400 JSON error and the rest of the batch is served.
"""

from __future__ import annotations

import torch
from PIL import Image

from handlers.base import SETTINGS, ImageHandler
from restoration.colorizer import colorize_images, load_generator
from restoration.image_io import ImageError

VIVIDNESS_FIELD = "vividness"
VIVIDNESS_HEADER = SETTINGS[VIVIDNESS_FIELD]


def parse_vividness(value: str | None) -> float | None:
    """A vividness setting from a header or form field (None when absent)."""
    if value is None or not str(value).strip():
        return None
    try:
        v = float(str(value).strip())
    except ValueError:
        v = float("nan")
    if not 0.0 <= v <= 1.0:
        raise ImageError(400, "BadVividness", f"vividness must be a number from 0 (faithful) to 1 (vivid), got {value!r}")
    return v


class ColorizeHandler(ImageHandler):
    """Colourise: any size and aspect in, the same size out, in sRGB."""

    scale = 1
    task = "colorize"

    def load_model(self, model_dir: str) -> torch.nn.Module:
        net, self.cfg = load_generator(model_dir, self.device)
        self.centres = getattr(net, "centres", None)
        self.log_weight = getattr(net, "log_weight", None)
        return net

    def request_options(self, settings: dict[str, str]) -> dict:
        return {"vividness": parse_vividness(settings.get(VIVIDNESS_FIELD))}

    def restore_batch(self, images: list[Image.Image], options: list[dict] | None = None) -> list[Image.Image]:
        vividness = [o.get("vividness") for o in options] if options else None
        return colorize_images(self.net, self.cfg, images, self.device, vividness, self.centres,
                               self.log_weight)

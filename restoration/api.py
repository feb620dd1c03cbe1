"""Restore photos without a server: the same models, weights directories and encoders as the
served endpoints, so the same input gives byte-identical images.

    from restoration.api import Restorer

    r = Restorer("weights")                       # weights/repair, weights/colorize, weights/sr_x2, ...
    png = r.process("colorize", open("old.jpg", "rb").read(), vividness=0.7)
    png = r.process("restore", open("old.jpg", "rb").read(), strength=0.5)   # repair, colour, ×2
    clean = r.repair(Image.open("scan.png"), strength=1.0)
    img = r.colorize(Image.open("old.jpg"))       # PIL in, PIL out
    big = r.upscale(img, scale=4)
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from restoration import backends
from restoration.backends import torch_runner
from restoration.colorizer import colorize_images, load_generator
from restoration.image_io import Limits, decode_image, encode_image
from restoration.names import COLORIZE, REPAIR, SR_X2, SR_X4, WORKFLOW_NODES, WORKFLOW_RESTORE
from restoration.repair import load_repairer, repair_image
from restoration.settings import WorkerSettings
from restoration.upscaler import COMPRESSED_DIR, load_sr_model, upscale_image

#: what each command runs, in order (the workflow ``restore`` chains its nodes the same way)
TASKS = {REPAIR: (REPAIR,), COLORIZE: (COLORIZE,), SR_X2: (SR_X2,), SR_X4: (SR_X4,), WORKFLOW_RESTORE: WORKFLOW_NODES}


class Restorer:
    """Loads each model on first use from ``weights/<model>`` (or the directories given)."""

    def __init__(self, weights: str | Path = "weights", device: str | torch.device = "cpu",
                 dirs: dict[str, str | Path] | None = None, settings: WorkerSettings | None = None) -> None:
        self.weights = Path(weights)
        self.dirs = {k: Path(v) for k, v in (dirs or {}).items()}
        self.device = torch.device(device)
        self.settings = settings or WorkerSettings.from_env()
        self.limits: Limits = self.settings.limits
        self._models: dict[str, tuple] = {}

    def _dir(self, name: str) -> Path:
        return self.dirs.get(name, self.weights / name)

    def _model(self, name: str) -> tuple:
        if name not in self._models:
            d = self._dir(name)
            if name == REPAIR:
                # run as the module: its tiles share one whole-photo context (restoration.repair)
                self._models[name] = load_repairer(str(d), self.device)
            elif name == COLORIZE:
                net, cfg = load_generator(str(d), self.device)
                runner, _ = backends.select(net, str(d), self.device)
                self._models[name] = (runner, cfg, getattr(net, "centres", None), getattr(net, "log_weight", None))
            else:
                net, scale = load_sr_model(str(d), device=self.device)
                runner, _ = backends.select(net, str(d), self.device)
                compressed = None
                if (d / COMPRESSED_DIR).is_dir():
                    compressed = torch_runner(load_sr_model(str(d / COMPRESSED_DIR), scale, self.device)[0],
                                              self.device)[0]
                self._models[name] = (runner, scale, compressed)
        return self._models[name]

    # -- PIL images ------------------------------------------------------------------------
    def repair(self, image: Image.Image, strength: float | None = None) -> Image.Image:
        runner, cfg = self._model(REPAIR)
        return repair_image(runner, cfg, image.convert("RGB"), strength, self.device)

    def colorize(self, image: Image.Image, vividness: float | None = None) -> Image.Image:
        runner, cfg, centres, log_weight = self._model(COLORIZE)
        return colorize_images(runner, cfg, [image.convert("RGB")], self.device, vividness, centres, log_weight)[0]

    def upscale(self, image: Image.Image, scale: int = 2, sr_input: str | None = None) -> Image.Image:
        """``sr_input="compressed"``: the weights trained on degraded LR, where the model has them."""
        runner, s, compressed = self._model(SR_X2 if scale == 2 else SR_X4)
        if sr_input == "compressed" and compressed is not None:
            runner = compressed
        return upscale_image(runner, image.convert("RGB"), s, self.settings.sr_tile, self.settings.sr_overlap,
                             self.device)

    def run(self, task: str, image: Image.Image, vividness: float | None = None,
            strength: float | None = None, sr_input: str | None = None) -> Image.Image:
        for name in TASKS[task]:
            if name == REPAIR:
                image = self.repair(image, strength)
            elif name == COLORIZE:
                image = self.colorize(image, vividness)
            else:
                image = self.upscale(image, 2 if name == SR_X2 else 4, sr_input)
        return image

    # -- bytes, as the API takes and answers them ------------------------------------------
    def process(self, task: str, data: bytes, vividness: float | None = None, fmt: str = "png",
                strength: float | None = None, sr_input: str | None = None) -> bytes:
        """Image bytes in, encoded image out; bad input raises ImageError with the API's message."""
        scale = {"sr_x2": 2, "sr_x4": 4, "restore": 2}.get(task, 1)
        image = decode_image(data, self.limits, scale=scale).image
        return encode_image(self.run(task, image, vividness, strength, sr_input), fmt)

"""Make the README's before/after picture with the default weights (`make demo-picture`).

Panels: a damaged black-and-white print (the held-out photo's grey version, damaged by
dataset_gen's damage model with a fixed seed never used in training), the old restore without
the repair step (colourised, then ×2), today's `restore` (repaired, colourised, then ×2; shown
at the panel height), and the original colour photo. The same functions the handlers run are used.

    python -m serving.demo --photo held_out.jpg --out docs/before_after.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from dataset_gen.degrade import damage
from restoration.colorizer import colorize_images, load_generator
from restoration.image_io import decode_image
from restoration.repair import load_repairer, repair_image
from restoration.upscaler import load_sr_model, upscale_image
from serving.server import ROOT

DEMO_SEED = 20_261_202_7


def before_after(photo: Path, weights: Path, height: int = 320) -> Image.Image:
    """Damaged input | colourise + ×2 | repair + colourise + ×2 | original, with captions."""
    original = decode_image(photo.read_bytes()).image
    scale = height / original.height
    original = original.resize((round(original.width * scale), height), Image.Resampling.LANCZOS)
    damaged, _, _ = damage(original, np.random.default_rng(DEMO_SEED))
    g, cfg = load_generator(str(weights / "colorize"))
    sr, s = load_sr_model(str(weights / "sr_x2"))
    net, rcfg = load_repairer(str(weights / "repair"))
    without = upscale_image(sr, colorize_images(g, cfg, [damaged])[0], s)
    restored = upscale_image(sr, colorize_images(g, cfg, [repair_image(net, rcfg, damaged)])[0], s)
    panels = ((damaged, "input: a damaged black-and-white print"),
              (without.resize(original.size, Image.Resampling.LANCZOS), f"without repair: colourised, x{s}"),
              (restored.resize(original.size, Image.Resampling.LANCZOS),
               f"restore: repaired, colourised, x{s} ({restored.width}x{restored.height})"),
              (original, "original"))
    pad, caption = 8, 24
    w, h = original.size
    canvas = Image.new("RGB", (len(panels) * (w + pad) + pad, h + caption + 2 * pad), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (img, text) in enumerate(panels):
        x = pad + i * (w + pad)
        canvas.paste(img, (x, pad + caption))
        draw.text((x, pad), text, fill="black")
    return canvas


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photo", required=True, help="a colour photo that was not used in training")
    parser.add_argument("--weights", default=str(ROOT / "weights"))
    parser.add_argument("--out", default=str(ROOT / "docs" / "before_after.png"))
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    before_after(Path(args.photo), Path(args.weights)).save(out, optimize=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

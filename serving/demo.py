"""Make the README's before/after picture with the default weights (`make demo-picture`).

Panels: the grey input, the `restore` result (colourised, then ×2; shown at the panel height),
and the original colour photo. The same functions the handlers run are used here.

    python -m serving.demo --photo held_out.jpg --out docs/before_after.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

from restoration.colorizer import colorize_images, load_generator
from restoration.image_io import decode_image
from restoration.upscaler import load_sr_model, upscale_image
from serving.server import ROOT


def before_after(photo: Path, weights: Path, height: int = 320) -> Image.Image:
    """Grey input | restored | original, side by side with captions."""
    original = decode_image(photo.read_bytes()).image
    scale = height / original.height
    original = original.resize((round(original.width * scale), height), Image.Resampling.LANCZOS)
    grey = original.convert("L").convert("RGB")
    g, cfg = load_generator(str(weights / "colorize"))
    sr, s = load_sr_model(str(weights / "sr_x2"))
    colour = colorize_images(g, cfg, [grey])[0]
    restored = upscale_image(sr, colour, s)
    shown = restored.resize(original.size, Image.Resampling.LANCZOS)
    pad, caption = 8, 24
    w, h = original.size
    canvas = Image.new("RGB", (3 * w + 4 * pad, h + caption + 2 * pad), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (img, text) in enumerate(((grey, "input (grey)"), (shown, f"restore: colourised, x{s} "
                                                                      f"({restored.width}x{restored.height})"),
                                     (original, "original"))):
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

"""Evaluate the serving weights on held-out photographs: a Markdown table and side-by-side PNGs.

    python -m training.evaluate --photos data/heldout --weights weights --out results/eval

- colourise: PSNR, SSIM and colourfulness of the output (from the grey photo) vs the original,
  against the baseline of returning the grey input;
- SR ×2/×4: PSNR on the Y channel (border shaved by the scale) and SSIM of the upscaled
  bicubic-downscaled photo vs the photo, against bicubic and Lanczos upscaling.
The same functions as the serving handlers are used (restoration.colorizer, restoration.upscaler).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from restoration.colorizer import colorize_images, load_generator
from restoration.image_io import decode_image
from restoration.upscaler import load_sr_model, upscale_image
from training.data import to_tensor
from training.metrics import colourfulness, psnr, psnr_y, ssim

SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff"}


def load_photo(path: Path, max_side: int, multiple: int = 4) -> Image.Image:
    img = decode_image(path.read_bytes()).image
    s = min(1.0, max_side / max(img.size))
    w, h = int(img.width * s) // multiple * multiple, int(img.height * s) // multiple * multiple
    return img.resize((w, h), Image.Resampling.LANCZOS) if (w, h) != img.size else img


def side_by_side(images: list[Image.Image], height: int = 256) -> Image.Image:
    scaled = [im.resize((round(im.width * height / im.height), height), Image.Resampling.LANCZOS) for im in images]
    out = Image.new("RGB", (sum(i.width for i in scaled) + 4 * (len(scaled) - 1), height), "white")
    x = 0
    for im in scaled:
        out.paste(im, (x, 0))
        x += im.width + 4
    return out


def evaluate(photos: list[Path], weights: Path, out: Path, max_side: int = 512) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    g, gcfg = load_generator(str(weights / "colorize"))
    sr = {s: load_sr_model(str(weights / f"sr_x{s}"))[0] for s in (2, 4)}
    rows: dict[str, list[dict]] = {"colorize": [], "sr_x2": [], "sr_x4": []}
    for path in photos:
        hr = load_photo(path, max_side)
        t_hr = to_tensor(hr)
        grey = hr.convert("L").convert("RGB")
        colour = colorize_images(g, gcfg, [grey])[0]
        t_col, t_grey = to_tensor(colour), to_tensor(grey)
        rows["colorize"].append({
            "photo": path.name, "psnr": psnr(t_col, t_hr), "ssim": ssim(t_col, t_hr),
            "colourfulness": colourfulness(t_col), "original_colourfulness": colourfulness(t_hr),
            "grey_psnr": psnr(t_grey, t_hr), "grey_ssim": ssim(t_grey, t_hr),
        })
        side_by_side([grey, colour, hr]).save(out / f"colorize_{path.stem}.png")
        for s, model in sr.items():
            lr = hr.resize((hr.width // s, hr.height // s), Image.Resampling.BICUBIC)
            ours = upscale_image(model, lr, s)
            bic = lr.resize(hr.size, Image.Resampling.BICUBIC)
            lan = lr.resize(hr.size, Image.Resampling.LANCZOS)
            t = {k: to_tensor(v) for k, v in (("ours", ours), ("bicubic", bic), ("lanczos", lan))}
            rows[f"sr_x{s}"].append({
                "photo": path.name,
                **{f"{k}_psnr_y": psnr_y(v, t_hr, s) for k, v in t.items()},
                **{f"{k}_ssim": ssim(v, t_hr) for k, v in t.items()},
            })
            crop = (hr.width // 2 - 64, hr.height // 2 - 64, hr.width // 2 + 64, hr.height // 2 + 64)
            side_by_side([bic.crop(crop), ours.crop(crop), hr.crop(crop)]).save(out / f"sr_x{s}_{path.stem}.png")
    summary = {task: {k: float(np.mean([r[k] for r in rs])) for k in rs[0] if k != "photo"} for task, rs in rows.items()
               if rs}
    (out / "results.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=2))
    (out / "README.md").write_text(markdown(summary, len(photos), max_side))
    return summary


def markdown(summary: dict, n: int, max_side: int) -> str:
    c = summary["colorize"]
    lines = [
        f"# Held-out evaluation ({n} real photographs, long side ≤ {max_side} px)",
        "",
        "## Colourise (input: the photo's grey version)",
        "",
        "| method | PSNR dB | SSIM | colourfulness |",
        "| --- | ---: | ---: | ---: |",
        f"| grey input (baseline) | {c['grey_psnr']:.2f} | {c['grey_ssim']:.4f} | 0.0 |",
        f"| colorize (ours) | {c['psnr']:.2f} | {c['ssim']:.4f} | {c['colourfulness']:.1f} |",
        f"| originals | — | — | {c['original_colourfulness']:.1f} |",
        "",
        "## Super-resolution (input: the photo downscaled bicubically; PSNR on Y, border shaved by the scale)",
        "",
        "| scale | bicubic PSNR-Y / SSIM | Lanczos PSNR-Y / SSIM | ours PSNR-Y / SSIM | gain over bicubic |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for s in (2, 4):
        r = summary[f"sr_x{s}"]
        lines.append(f"| ×{s} | {r['bicubic_psnr_y']:.2f} / {r['bicubic_ssim']:.4f} | {r['lanczos_psnr_y']:.2f} / "
                     f"{r['lanczos_ssim']:.4f} | {r['ours_psnr_y']:.2f} / {r['ours_ssim']:.4f} | "
                     f"{r['ours_psnr_y'] - r['bicubic_psnr_y']:+.2f} dB |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", default="data/heldout", help="folder of photos not used in training")
    p.add_argument("--weights", default="weights")
    p.add_argument("--out", default="results/eval")
    p.add_argument("--max-side", type=int, default=512)
    a = p.parse_args(argv)
    photos = sorted(x for x in Path(a.photos).iterdir() if x.suffix.lower() in SUFFIXES)
    if not photos:
        raise SystemExit(f"{a.photos}: no photos (build it with `python -m training.heldout`)")
    evaluate(photos, Path(a.weights), Path(a.out), a.max_side)
    print((Path(a.out) / "README.md").read_text())


if __name__ == "__main__":
    main()

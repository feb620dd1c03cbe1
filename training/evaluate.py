"""Evaluate weights on held-out photographs: Markdown tables, results.json and side-by-side PNGs.

    python -m training.evaluate --photos data/heldout --weights weights --out results/eval
    python -m training.evaluate --tasks sr --sr-x2 runs/sr_x2_long/model   # one run against bicubic

- colourise (input: the photo's grey version), at several vividness settings: PSNR and SSIM
  of the output vs the original, colourfulness as a share of the original's, and *spurious
  colour*: the share of pixels whose hue is more than 90° from the original's where both have
  chroma above 15, plus pixels given chroma above 15 where the original is near-neutral
  (chroma below 5); the baseline is returning the grey input.
- SR ×2/×4 on LR made as in training (PIL bicubic, antialiased), clean and JPEG-compressed at
  quality 90 and 75 (what phones and messengers send): PSNR on Y with the border shaved by the
  scale, and SSIM, against bicubic upscaling of the same LR; crops bicubic | ours | original.
- repair: the photo's grey version damaged by dataset_gen's damage model with a seed never used
  in training (all damages drawn as in training, and each main damage alone): PSNR and SSIM on L
  of the damaged input and of the repaired output against the clean photo, with a 3×3 median
  filter as a classical baseline; and the clean photo passed through repair against itself (it
  must stay ≥ 40 dB). Side by side: damaged | repaired | original.
The same functions as the served endpoints are used (restoration.colorizer, restoration.upscaler,
restoration.repair).
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from restoration.chroma import ChromaConfig
from restoration.color import rgb_to_lab
from restoration.colorizer import colorize_images, load_generator
from restoration.image_io import decode_image
from restoration.repair import load_repairer, repair_image
from restoration.upscaler import load_sr_model, upscale_image
from training.data import to_tensor
from training.metrics import colourfulness, psnr, psnr_y, rgb_to_y, ssim

SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff"}
SR_CONDITIONS = (("clean", 0), ("jpeg90", 90), ("jpeg75", 75))
# Damage seeds of the held-out repair table: training draws each pair's generator from a hash of
# (seed, task, source, crop), never from these.
REPAIR_SEED = 2_026_120_2
REPAIR_SINGLE = ("grain", "dust", "scratches", "fade", "jpeg", "blur")


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


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def spurious_colour(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Share of pixels with a wrong hue (> 90° off where both have chroma > 15) or colour where
    the original is near-neutral (its chroma < 5, ours > 15); RGB tensors in [0, 1]."""
    lo, lr = rgb_to_lab(out), rgb_to_lab(ref)
    co, cr = lo[1:].norm(dim=0), lr[1:].norm(dim=0)
    cos = (lo[1:] * lr[1:]).sum(0) / (co * cr).clamp_min(1e-6)
    wrong_hue = (co > 15) & (cr > 15) & (cos < 0.0)
    false_colour = (cr < 5) & (co > 15)
    return float((wrong_hue | false_colour).double().mean())


def colorize_rows(weights: Path, photos: list[Path], out: Path, max_side: int,
                  vividness: list[float | None]) -> dict[str, list[dict]]:
    g, gcfg = load_generator(str(weights))
    chroma = isinstance(gcfg, ChromaConfig)
    settings = vividness if chroma else [None]
    rows: dict[str, list[dict]] = {}
    for path in photos:
        hr = load_photo(path, max_side)
        t_hr, grey = to_tensor(hr), hr.convert("L").convert("RGB")
        t_grey = to_tensor(grey)
        cf = max(1e-6, colourfulness(t_hr))
        rows.setdefault("grey", []).append({"photo": path.name, "psnr": psnr(t_grey, t_hr), "ssim": ssim(t_grey, t_hr),
                                            "colour_ratio": 0.0, "spurious": spurious_colour(t_grey, t_hr)})
        shown = [grey]
        for v in settings:
            colour = colorize_images(g, gcfg, [grey], vividness=v)[0]
            t = to_tensor(colour)
            key = "ours" if v is None else f"vividness {v:g}"
            if v is None and chroma:
                key = f"ours (default, vividness {gcfg.vividness:g})"
            rows.setdefault(key, []).append({"photo": path.name, "psnr": psnr(t, t_hr), "ssim": ssim(t, t_hr),
                                             "colour_ratio": colourfulness(t) / cf, "spurious": spurious_colour(t, t_hr)})
            shown.append(colour)
        side_by_side([*shown, hr]).save(out / f"colorize_{path.stem}.png")
    return rows


def sr_rows(weights: Path, scale: int, photos: list[Path], out: Path, max_side: int) -> dict[str, list[dict]]:
    model, _ = load_sr_model(str(weights), scale=scale)
    rows: dict[str, list[dict]] = {}
    for path in photos:
        hr = load_photo(path, max_side, multiple=scale)
        t_hr = to_tensor(hr)
        lr_clean = hr.resize((hr.width // scale, hr.height // scale), Image.Resampling.BICUBIC)
        for cond, q in SR_CONDITIONS:
            lr = jpeg(lr_clean, q) if q else lr_clean
            ours = upscale_image(model, lr, scale)
            bic = lr.resize(hr.size, Image.Resampling.BICUBIC)
            t_o, t_b = to_tensor(ours), to_tensor(bic)
            rows.setdefault(cond, []).append({
                "photo": path.name,
                "bicubic_psnr_y": psnr_y(t_b, t_hr, scale), "ours_psnr_y": psnr_y(t_o, t_hr, scale),
                "bicubic_ssim": ssim(rgb_to_y(t_b), rgb_to_y(t_hr)), "ours_ssim": ssim(rgb_to_y(t_o), rgb_to_y(t_hr)),
            })
            if cond in ("clean", "jpeg75"):
                c = 96 if scale == 2 else 128
                box = (hr.width // 2 - c, hr.height // 2 - c, hr.width // 2 + c, hr.height // 2 + c)
                side_by_side([bic.crop(box), ours.crop(box), hr.crop(box)], height=2 * c).save(
                    out / f"sr_x{scale}_{cond}_{path.stem}.png")
    return rows


def repair_rows(weights: Path, photos: list[Path], out: Path, max_side: int) -> dict[str, list[dict]]:
    from PIL import ImageFilter

    from dataset_gen.degrade import _apply, damage

    net, cfg = load_repairer(str(weights))
    ungated = cfg.ungated()
    rows: dict[str, list[dict]] = {}

    def grey_t(img: Image.Image) -> torch.Tensor:
        return rgb_to_y(to_tensor(img.convert("RGB")))

    def add(key: str, photo: str, before: Image.Image, after: Image.Image, ref: torch.Tensor, extra=None) -> None:
        tb, ta = grey_t(before), grey_t(after)
        # identical images: 99 dB (so that a mean over photos stays a number)
        row = {"photo": photo, "damaged_psnr": min(99.0, psnr(tb, ref)), "damaged_ssim": ssim(tb, ref),
               "repaired_psnr": min(99.0, psnr(ta, ref)), "repaired_ssim": ssim(ta, ref)}
        row.update(extra or {})
        rows.setdefault(key, []).append(row)

    for i, path in enumerate(photos):
        clean = load_photo(path, max_side).convert("L").convert("RGB")
        ref = grey_t(clean)
        rng = np.random.default_rng([REPAIR_SEED, i])
        damaged, _, _ = damage(clean, rng)
        fixed = repair_image(net, cfg, damaged)
        median = damaged.filter(ImageFilter.MedianFilter(3))
        add("all damages (as in training)", path.name, damaged, fixed, ref,
            {"median_psnr": psnr(grey_t(median), ref), "ungated_psnr": psnr(grey_t(repair_image(net, ungated, damaged)), ref)})
        for op in REPAIR_SINGLE:
            y, _ = _apply(op, np.asarray(clean.convert("L"), np.float32), np.random.default_rng([REPAIR_SEED, i, len(op)]))
            one = Image.fromarray(np.clip(y + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB")
            add(f"{op} alone", path.name, one, repair_image(net, cfg, one), ref)
        through = repair_image(net, cfg, clean)
        add("clean photo (must stay ≥ 40 dB; 99 = unchanged)", path.name, clean, through, ref)
        side_by_side([damaged, fixed, clean]).save(out / f"repair_{path.stem}.png")
    return rows


def summarise(rows: dict[str, list[dict]]) -> dict[str, dict[str, float]]:
    out = {k: {m: float(np.mean([r[m] for r in rs])) for m in rs[0] if m != "photo"} for k, rs in rows.items() if rs}
    for k, rs in rows.items():
        if rs and "repaired_psnr" in rs[0]:  # a mean over photos hides the one photo the model harms
            vals = [r["repaired_psnr"] for r in rs]
            out[k]["repaired_psnr_min"] = float(np.min(vals))
            out[k]["repaired_share_40db"] = float(np.mean([v >= 40.0 for v in vals]))
    return out


def markdown(summary: dict, n: int, max_side: int) -> str:
    lines = [f"# Held-out evaluation ({n} real photographs, long side ≤ {max_side} px)", ""]
    if "colorize" in summary:
        c = summary["colorize"]
        grey = c["grey"]["psnr"]
        lines += ["## Colourise (input: the photo's grey version)", "",
                  "| setting | PSNR dB | vs grey | SSIM | colourfulness / original | spurious colour |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for k, r in c.items():
            lines.append(f"| {'grey input (baseline)' if k == 'grey' else k} | {r['psnr']:.2f} | {r['psnr'] - grey:+.2f} | "
                         f"{r['ssim']:.4f} | {r['colour_ratio']:.2f} | {100 * r['spurious']:.1f} % |")
        lines.append("")
    if "repair" in summary:
        lines += ["## Repair (the grey photo damaged with held-out seeds; PSNR and SSIM on L against the clean photo)",
                  "", "| input | damaged PSNR / SSIM | repaired PSNR / SSIM | gain |", "| --- | ---: | ---: | ---: |"]
        for k, r in summary["repair"].items():
            if r["damaged_psnr"] >= 99.0:  # the clean photo: nothing to repair (99 dB: identical)
                worst = (f" (worst photo {r['repaired_psnr_min']:.2f}; {100 * r['repaired_share_40db']:.0f} % of photos "
                         "≥ 40 dB)") if "repaired_psnr_min" in r else ""
                lines.append(f"| {k} | (the original) | {r['repaired_psnr']:.2f} / {r['repaired_ssim']:.4f}{worst} | |")
                continue
            lines.append(f"| {k} | {r['damaged_psnr']:.2f} / {r['damaged_ssim']:.4f} | {r['repaired_psnr']:.2f} / "
                         f"{r['repaired_ssim']:.4f} | {r['repaired_psnr'] - r['damaged_psnr']:+.2f} dB |")
        mixed = summary["repair"].get("all damages (as in training)")
        if mixed:
            lines += ["", f"All damages: a 3×3 median filter gives {mixed['median_psnr']:.2f} dB "
                          f"({mixed['median_psnr'] - mixed['damaged_psnr']:+.2f}); the model without its gate "
                          f"{mixed['ungated_psnr']:.2f} dB."]
        lines.append("")
    for s in (2, 4):
        key = f"sr_x{s}"
        if key not in summary:
            continue
        lines += [f"## Super-resolution ×{s} (PSNR on Y, border shaved by {s}; SSIM on Y)", "",
                  "| LR | bicubic PSNR-Y / SSIM | ours PSNR-Y / SSIM | gain over bicubic |", "| --- | ---: | ---: | ---: |"]
        for cond, r in summary[key].items():
            lines.append(f"| {cond} | {r['bicubic_psnr_y']:.2f} / {r['bicubic_ssim']:.4f} | {r['ours_psnr_y']:.2f} / "
                         f"{r['ours_ssim']:.4f} | {r['ours_psnr_y'] - r['bicubic_psnr_y']:+.2f} dB |")
        lines.append("")
    return "\n".join(lines)


def evaluate(photos: list[Path], dirs: dict[str, Path], out: Path, max_side: int = 512,
             vividness: list[float | None] | None = None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict[str, list[dict]]] = {}
    if "repair" in dirs:
        rows["repair"] = repair_rows(dirs["repair"], photos, out, max_side)
    if "colorize" in dirs:
        rows["colorize"] = colorize_rows(dirs["colorize"], photos, out, max_side, vividness or [None, 0.0, 1.0])
    for s in (2, 4):
        if f"sr_x{s}" in dirs:
            rows[f"sr_x{s}"] = sr_rows(dirs[f"sr_x{s}"], s, photos, out, max_side)
    summary = {task: summarise(r) for task, r in rows.items()}
    (out / "results.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=2))
    (out / "README.md").write_text(markdown(summary, len(photos), max_side))
    return summary


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", default="data/heldout", help="folder of photos not used in training")
    p.add_argument("--weights", default="weights", help="folder with repair/, colorize/, sr_x2/, sr_x4/")
    p.add_argument("--repair", help="repair weights directory (over --weights)")
    p.add_argument("--colorize", help="colouriser weights directory (over --weights)")
    p.add_argument("--sr-x2", help="×2 weights directory (over --weights)")
    p.add_argument("--sr-x4", help="×4 weights directory (over --weights)")
    p.add_argument("--tasks", default="repair,colorize,sr_x2,sr_x4")
    p.add_argument("--vividness", default="default,0,1", help="settings to measure (classification colouriser)")
    p.add_argument("--out", default="results/eval")
    p.add_argument("--max-side", type=int, default=512)
    a = p.parse_args(argv)
    photos = sorted(x for x in Path(a.photos).iterdir() if x.suffix.lower() in SUFFIXES)
    if not photos:
        raise SystemExit(f"{a.photos}: no photos (build it with `python -m training.heldout`)")
    tasks = {t.strip() for t in a.tasks.split(",")}
    if "sr" in tasks:
        tasks |= {"sr_x2", "sr_x4"}
    chosen = {"repair": a.repair, "colorize": a.colorize, "sr_x2": a.sr_x2, "sr_x4": a.sr_x4}
    dirs = {t: Path(chosen[t] or Path(a.weights) / t) for t in chosen if t in tasks}
    vivid = [None if v.strip() == "default" else float(v) for v in a.vividness.split(",")]
    evaluate(photos, dirs, Path(a.out), a.max_side, vivid)
    print((Path(a.out) / "README.md").read_text())


if __name__ == "__main__":
    main()

"""Degradations that turn clean photos into training inputs: old black-and-white photos
(sepia, fading, grain, blur, JPEG artefacts, scratches, dust) and low-resolution copies."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps


def to_grey(img: Image.Image) -> Image.Image:
    """Luminance as an RGB image (what a black-and-white photo of the scene looks like)."""
    return ImageOps.grayscale(img).convert("RGB")


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=int(quality))
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def old_photo(img: Image.Image, rng: np.random.Generator, strength: float = 1.0) -> tuple[Image.Image, dict]:
    """A grey copy aged like an old print; returns it with the parameters drawn (for the manifest)."""
    p = {
        "sepia": float(rng.uniform(0, 0.8) * strength) if rng.random() < 0.5 else 0.0,
        "fade": float(rng.uniform(0, 0.35) * strength),
        "grain": float(rng.uniform(0, 8) * strength),
        "blur": float(rng.uniform(0, 1.2) * strength) if rng.random() < 0.5 else 0.0,
        "jpeg": int(rng.uniform(30, 90)) if rng.random() < 0.5 else 0,
        "scratches": int(rng.integers(0, 6 * strength + 1)),
        "dust": int(rng.integers(0, 60 * strength + 1)),
    }
    grey = np.asarray(ImageOps.grayscale(img), np.float32)
    grey = grey * (1 - p["fade"]) + 128 * p["fade"]  # faded contrast
    grey = grey + rng.normal(0, p["grain"] + 1e-6, grey.shape)
    out = Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8), "L")
    if p["blur"] > 0:
        out = out.filter(ImageFilter.GaussianBlur(p["blur"]))
    draw = ImageDraw.Draw(out)
    w, h = out.size
    for _ in range(p["scratches"]):
        x = int(rng.uniform(0, w))
        draw.line([(x, 0), (x + int(rng.normal(0, w * 0.05)), h)], fill=int(rng.uniform(170, 255)), width=1)
    for _ in range(p["dust"]):
        x, y, r = int(rng.uniform(0, w)), int(rng.uniform(0, h)), rng.uniform(0.5, 2.0)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=int(rng.choice([20, 240])))
    rgb = out.convert("RGB")
    if p["sepia"] > 0:
        tone = np.array([1.07, 0.74, 0.43], np.float32)
        arr = np.asarray(rgb, np.float32)
        sep = arr * (1 - p["sepia"]) + np.clip(arr * tone, 0, 255) * p["sepia"]
        rgb = Image.fromarray(np.clip(sep, 0, 255).astype(np.uint8), "RGB")
    if p["jpeg"]:
        rgb = jpeg(rgb, p["jpeg"])
    return rgb, p


def low_res(hr: Image.Image, scale: int, rng: np.random.Generator | None = None, degrade: bool = False
            ) -> tuple[Image.Image, dict]:
    """Bicubic ×1/scale copy (PIL, antialiased). With ``degrade``, mild real-world damage as in
    the BSRGAN / Real-ESRGAN degradation models: Gaussian blur (on the HR before downscaling, or on
    the LR), Gaussian noise and JPEG at quality 60-95, each with a probability, applied in a random
    order; the order and parameters go into the manifest."""
    w, h = hr.size
    p: dict = {"scale": scale, "blur": 0.0, "noise": 0.0, "jpeg": 0, "order": []}
    if not (degrade and rng is not None):
        return hr.resize((w // scale, h // scale), Image.Resampling.BICUBIC), p
    ops = ["blur", "noise", "jpeg"]
    ops = [ops[i] for i in rng.permutation(3)]
    blur_first = bool(rng.random() < 0.5)
    p["blur"] = float(rng.uniform(0.2, 1.2)) if rng.random() < 0.5 else 0.0
    p["noise"] = float(rng.uniform(0.5, 5.0)) if rng.random() < 0.4 else 0.0
    p["jpeg"] = int(rng.integers(60, 96)) if rng.random() < 0.7 else 0
    img = hr
    if p["blur"] and blur_first:
        img = img.filter(ImageFilter.GaussianBlur(p["blur"]))
        p["order"].append("blur_hr")
    lr = img.resize((w // scale, h // scale), Image.Resampling.BICUBIC)
    for op in ops:
        if op == "blur" and p["blur"] and not blur_first:
            lr = lr.filter(ImageFilter.GaussianBlur(p["blur"] / scale))
        elif op == "noise" and p["noise"]:
            arr = np.asarray(lr, np.float32) + rng.normal(0, p["noise"], (lr.height, lr.width, 3))
            lr = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
        elif op == "jpeg" and p["jpeg"]:
            lr = jpeg(lr, p["jpeg"])
        else:
            continue
        p["order"].append(op)
    return lr, p


def edges(img: Image.Image) -> Image.Image:
    """A line drawing of the photo (dark edges on white), the edges2photo input."""
    grey = ImageOps.grayscale(img).filter(ImageFilter.GaussianBlur(1.0))
    e = np.asarray(grey.filter(ImageFilter.FIND_EDGES), np.float32)
    thr = np.percentile(e, 88)
    lines = np.where(e > thr, 0, 255).astype(np.uint8)
    return Image.fromarray(lines, "L").convert("RGB")

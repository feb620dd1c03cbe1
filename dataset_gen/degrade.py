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


# -- old-print damage for the repair model -----------------------------------------------------

DAMAGE_OPS = ("fade", "uneven", "sepia_grey", "blur", "downup", "grain", "speckle", "dust", "hairs", "scratches",
              "cracks", "jpeg")
# Probability of each damage being drawn for one photo.
# The whole-photo tone damages (fade, uneven, sepia_grey) are kept rarer than the local ones: at
# 0.5/0.3/0.25 three photos in four had one, and a model trained on that learned to lift the
# contrast of every photo (held-out: fading alone +5.0 dB, but grain, dust, JPEG alone -2 to -5 dB).
DAMAGE_P = {"fade": 0.25, "uneven": 0.15, "sepia_grey": 0.12, "blur": 0.3, "downup": 0.2, "grain": 0.6,
            "speckle": 0.2, "dust": 0.55, "hairs": 0.3, "scratches": 0.45, "cracks": 0.2, "jpeg": 0.5}


def _smooth_field(shape: tuple[int, int], rng: np.random.Generator, cells: int) -> np.ndarray:
    """A smooth random field in [-1, 1]: a coarse grid of random values, bicubically enlarged."""
    grid = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
    img = Image.fromarray(((grid + 1) * 127.5).astype(np.uint8), "L").resize((shape[1], shape[0]),
                                                                          Image.Resampling.BICUBIC)
    return np.asarray(img, np.float32) / 127.5 - 1


def _curve(rng: np.random.Generator, start: tuple[float, float], steps: int, step_len: float, turn: float,
           heading: float | None = None) -> list[tuple[float, float]]:
    """A random walk that bends smoothly: a hair, a crack's branch."""
    x, y = start
    a = float(rng.uniform(0, 2 * np.pi)) if heading is None else heading
    pts = [(x, y)]
    for _ in range(steps):
        a += float(rng.normal(0, turn))
        x, y = x + step_len * np.cos(a), y + step_len * np.sin(a)
        pts.append((x, y))
    return pts


def _blend_marks(y: np.ndarray, draw_fn, rng: np.random.Generator, soften: float = 0.6) -> np.ndarray:
    """Draw marks into a mask (with their grey values) and blend them into ``y``."""
    h, w = y.shape
    mask = Image.new("L", (w, h), 0)
    value = Image.new("L", (w, h), 0)
    draw_fn(ImageDraw.Draw(mask), ImageDraw.Draw(value))
    if soften > 0:
        mask = mask.filter(ImageFilter.GaussianBlur(soften))
    m = np.asarray(mask, np.float32) / 255.0
    v = np.asarray(value.filter(ImageFilter.MaxFilter(3)), np.float32)
    return y * (1 - m) + v * m


def _apply(op: str, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    h, w = y.shape
    side = min(h, w)
    if op == "fade":
        p = {"contrast": float(rng.uniform(0.5, 0.9)), "lift": float(rng.uniform(5, 60))}
        return p["lift"] + y * p["contrast"], p
    if op == "uneven":
        p = {"amount": float(rng.uniform(0.05, 0.3)), "cells": int(rng.integers(2, 5))}
        return y * (1 + p["amount"] * _smooth_field((h, w), rng, p["cells"])), p
    if op == "sepia_grey":
        # a toned print scanned in grey: the tone's luminance response, slightly compressed
        p = {"tone": float(rng.uniform(0.3, 1.0))}
        gain = 1 - 0.2 * p["tone"]
        return 255 * (np.clip(y, 0, 255) / 255) ** (1 + 0.3 * p["tone"]) * gain + 12 * p["tone"], p
    if op == "blur":
        p = {"sigma": float(rng.uniform(0.4, 1.6))}
        img = Image.fromarray(np.clip(y, 0, 255).astype(np.uint8), "L").filter(ImageFilter.GaussianBlur(p["sigma"]))
        return np.asarray(img, np.float32), p
    if op == "downup":
        p = {"factor": float(rng.uniform(1.5, 3.0))}
        img = Image.fromarray(np.clip(y, 0, 255).astype(np.uint8), "L")
        small = img.resize((max(8, round(w / p["factor"])), max(8, round(h / p["factor"]))), Image.Resampling.BICUBIC)
        return np.asarray(small.resize((w, h), Image.Resampling.BICUBIC), np.float32), p
    if op == "grain":
        # film grain: noise a little larger than a pixel, strongest in the mid-tones
        p = {"sigma": float(rng.uniform(2, 14)), "size": float(rng.uniform(0, 0.9))}
        n = rng.normal(0, 1, (h, w)).astype(np.float32)
        if p["size"] > 0.05:
            ni = Image.fromarray(np.clip(n * 40 + 128, 0, 255).astype(np.uint8), "L").filter(
                ImageFilter.GaussianBlur(p["size"]))
            n = (np.asarray(ni, np.float32) - 128) / 40
            n /= max(1e-3, float(n.std()))
        mid = 0.4 + 0.6 * (1 - np.abs(np.clip(y, 0, 255) / 127.5 - 1))
        return y + p["sigma"] * n * mid, p
    if op == "speckle":
        p = {"sigma": float(rng.uniform(0.02, 0.1))}
        return y * (1 + rng.normal(0, p["sigma"], (h, w)).astype(np.float32)), p
    if op == "dust":
        p = {"count": int(rng.integers(5, 8 + int(side * side / 1000))), "bright": float(rng.uniform(0.3, 1.0))}

        def specks(m, v):
            for _ in range(p["count"]):
                x, yy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.5, 2.5)
                tone = int(rng.uniform(200, 255)) if rng.random() < p["bright"] else int(rng.uniform(0, 50))
                m.ellipse([x - r, yy - r, x + r, yy + r], fill=int(rng.uniform(160, 255)))
                v.ellipse([x - r, yy - r, x + r, yy + r], fill=tone)
        return _blend_marks(y, specks, rng, soften=0.5), p
    if op == "hairs":
        p = {"count": int(rng.integers(1, 5))}

        def hairs(m, v):
            for _ in range(p["count"]):
                pts = _curve(rng, (rng.uniform(0, w), rng.uniform(0, h)), int(rng.integers(8, 30)),
                             float(rng.uniform(1.5, 3.0)), 0.25)
                tone = int(rng.uniform(0, 40)) if rng.random() < 0.5 else int(rng.uniform(215, 255))
                m.line(pts, fill=int(rng.uniform(150, 255)), width=1)
                v.line(pts, fill=tone, width=1)
        return _blend_marks(y, hairs, rng, soften=0.4), p
    if op == "scratches":
        p = {"count": int(rng.integers(1, 7)), "vertical": bool(rng.random() < 0.6)}

        def scratches(m, v):
            for _ in range(p["count"]):
                if p["vertical"]:
                    x = rng.uniform(0, w)
                    a, b = (x, rng.uniform(-0.2, 0.5) * h), (x + rng.normal(0, w * 0.03), rng.uniform(0.5, 1.2) * h)
                else:
                    a, b = (rng.uniform(0, w), rng.uniform(0, h)), (rng.uniform(0, w), rng.uniform(0, h))
                tone = int(rng.uniform(200, 255)) if rng.random() < 0.7 else int(rng.uniform(0, 50))
                width = 1 if rng.random() < 0.7 else 2
                m.line([a, b], fill=int(rng.uniform(120, 255)), width=width)
                v.line([a, b], fill=tone, width=width)
        return _blend_marks(y, scratches, rng, soften=0.5), p
    if op == "cracks":
        p = {"count": int(rng.integers(1, 4))}

        def cracks(m, v):
            for _ in range(p["count"]):
                trunk = _curve(rng, (rng.uniform(0, w), rng.uniform(0, h)), int(rng.integers(15, 50)), 3.0, 0.35)
                branches = [trunk] + [
                    _curve(rng, trunk[int(rng.integers(0, len(trunk)))], int(rng.integers(4, 15)), 2.5, 0.5)
                    for _ in range(int(rng.integers(0, 4)))
                ]
                tone = int(rng.uniform(210, 255))
                for pts in branches:
                    m.line(pts, fill=int(rng.uniform(170, 255)), width=1)
                    v.line(pts, fill=tone, width=1)
        return _blend_marks(y, cracks, rng, soften=0.4), p
    if op == "jpeg":
        p = {"quality": int(rng.integers(40, 96))}
        img = jpeg(Image.fromarray(np.clip(y, 0, 255).astype(np.uint8), "L").convert("RGB"), p["quality"])
        return np.asarray(ImageOps.grayscale(img), np.float32), p
    raise ValueError(f"unknown damage {op!r}")


# The damages that add noise: what a denoising stage removes (damage(..., without=NOISE_OPS)).
NOISE_OPS = ("grain", "speckle")


def damage(img: Image.Image, rng: np.random.Generator, clean: float = 0.0, single: float = 0.0,
           without: tuple[str, ...] = ()):
    """(damaged, clean) grey copies of ``img`` as an old print's scan, and what was done.

    Each damage of :data:`DAMAGE_OPS` is drawn with its probability (:data:`DAMAGE_P`) and the
    drawn ones are applied in a random order; with probability ``clean`` nothing is done (the
    model must learn to leave an undamaged photo alone); with probability ``single`` a damaged
    photo gets one damage, drawn uniformly, instead of the mix (a mildly damaged print must not be
    corrected like a ruined one). Deterministic for the generator's seed; ``single`` = 0 draws
    exactly what earlier versions drew.

    ``without``: also return, before the clean copy, the same photo with every drawn damage but
    these (the same draws: each other damage's random state is replayed on the second copy), e.g.
    :data:`NOISE_OPS` for the target of a stage that only removes noise. The damaged copy is the
    one ``without=()`` gives for the same seed.
    """
    target = ImageOps.grayscale(img)
    y = np.asarray(target, np.float32)
    replay = False  # a second copy is only worth computing when a left-out damage was drawn
    rest = y
    record: dict = {"order": [], "params": {}}
    if rng.random() >= clean:
        if single > 0 and rng.random() < single:
            drawn = [DAMAGE_OPS[int(rng.integers(0, len(DAMAGE_OPS)))]]
        else:
            drawn = [op for op in DAMAGE_OPS if rng.random() < DAMAGE_P[op]]
        if not drawn:
            drawn = [DAMAGE_OPS[int(rng.integers(0, len(DAMAGE_OPS)))]]
        replay = bool(set(drawn) & set(without))
        for i in rng.permutation(len(drawn)):
            op = drawn[int(i)]
            state = rng.bit_generator.state
            y, p = _apply(op, y, rng)
            y = np.clip(y, 0, 255)
            if replay and op not in without:
                after = rng.bit_generator.state
                rng.bit_generator.state = state
                rest = np.clip(_apply(op, rest, rng)[0], 0, 255)
                rng.bit_generator.state = after
            record["order"].append(op)
            record["params"][op] = p

    def image(a: np.ndarray) -> Image.Image:
        return Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB")

    out = image(y)
    if not without:
        return out, target.convert("RGB"), record
    return out, image(rest) if replay else out.copy(), target.convert("RGB"), record

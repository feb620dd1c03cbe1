"""Procedural outdoor scenes: sky, clouds, sun, mountains, water, foliage, buildings, lighting.

Colourful and varied, deterministic per seed, needing nothing but numpy and Pillow: data for
offline demos and tests, and a supplement to real photographs in training.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SKY_PALETTES = [
    ((40, 90, 180), (150, 200, 240)),  # clear day
    ((20, 40, 110), (250, 150, 80)),  # sunset
    ((90, 110, 140), (190, 195, 205)),  # overcast
    ((60, 30, 100), (255, 120, 90)),  # dusk
    ((70, 140, 220), (220, 235, 250)),  # bright haze
]
GROUND_PALETTES = [
    ((60, 110, 40), (120, 160, 60)),  # meadow
    ((150, 120, 70), (200, 170, 110)),  # dry grass / sand
    ((80, 80, 70), (140, 130, 110)),  # rock
    ((40, 80, 50), (90, 130, 80)),  # forest floor
]
BUILDING_COLOURS = [(180, 70, 60), (220, 200, 160), (120, 130, 150), (230, 230, 220), (200, 150, 60),
                    (90, 60, 50), (160, 190, 200)]


def smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Value noise in [0, 1]: a coarse random grid upsampled smoothly."""
    grid = rng.random((max(2, cells * h // max(h, w) + 2), max(2, cells * w // max(h, w) + 2))).astype(np.float32)
    img = Image.fromarray(grid, "F").resize((w, h), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(img), 0.0, 1.0)


def fractal_line(rng: np.random.Generator, w: int, octaves: int = 5) -> np.ndarray:
    """A 1-D ridge profile in [0, 1] (sum of octaves of smooth noise)."""
    out = np.zeros(w, np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        n = 2 ** (o + 2)
        pts = rng.random(n + 1).astype(np.float32)
        out += amp * np.interp(np.linspace(0, n, w), np.arange(n + 1), pts)
        total += amp
        amp *= 0.5
    return out / total


def _lerp(c0, c1, t: np.ndarray) -> np.ndarray:
    c0, c1 = np.asarray(c0, np.float32), np.asarray(c1, np.float32)
    return c0 + (c1 - c0) * t[..., None]


def scene(seed: int, width: int = 256, height: int = 256) -> Image.Image:
    """One deterministic outdoor scene for ``seed``."""
    rng = np.random.default_rng(seed)
    h, w = height, width
    yy = np.linspace(0, 1, h, dtype=np.float32)[:, None].repeat(w, 1)
    horizon = rng.uniform(0.35, 0.65)

    top, bottom = SKY_PALETTES[rng.integers(len(SKY_PALETTES))]
    img = _lerp(top, bottom, np.clip(yy / horizon, 0, 1))
    clouds = smooth_noise(rng, h, w, int(rng.integers(4, 12)))
    cover = rng.uniform(0.3, 0.8)
    cloud_mask = np.clip((clouds - cover) * 4, 0, 1) * (yy < horizon)
    img = img * (1 - cloud_mask[..., None]) + np.float32(rng.uniform(200, 255)) * cloud_mask[..., None]
    if rng.random() < 0.6:  # sun glow
        sx, sy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.05, 0.6) * horizon * h
        xx = np.arange(w, dtype=np.float32)[None, :]
        d = np.sqrt((xx - sx) ** 2 + (yy * h - sy) ** 2) / max(h, w)
        glow = np.exp(-d * rng.uniform(6, 14))[..., None]
        img = img + glow * np.array([255, 220, 150], np.float32) * rng.uniform(0.4, 0.9)

    # Mountain ranges, far (hazy, bluish) to near.
    n_ranges = int(rng.integers(1, 4))
    for r in range(n_ranges):
        depth = (r + 1) / (n_ranges + 1)
        ridge = horizon - (0.05 + 0.3 * (1 - depth)) * fractal_line(rng, w) * rng.uniform(0.5, 1.0)
        mask = yy > ridge[None, :]
        rock = np.array(GROUND_PALETTES[rng.integers(len(GROUND_PALETTES))][0], np.float32)
        haze = np.array(bottom, np.float32)
        colour = rock * depth + haze * (1 - depth)
        shade = 0.8 + 0.4 * smooth_noise(rng, h, w, 16)[..., None]
        img = np.where(mask[..., None], colour * shade, img)

    # Ground or water below the horizon.
    ground_top = horizon + rng.uniform(0.0, 0.05)
    below = yy > ground_top
    if rng.random() < 0.4:  # water reflecting the sky
        ripples = 0.85 + 0.15 * np.sin(yy * h * rng.uniform(0.5, 1.5) + smooth_noise(rng, h, w, 30) * 6)
        water = _lerp(bottom, top, np.clip((yy - ground_top) / (1 - ground_top + 1e-6), 0, 1)) * 0.8
        img = np.where(below[..., None], water * ripples[..., None], img)
    else:
        g0, g1 = GROUND_PALETTES[rng.integers(len(GROUND_PALETTES))]
        tex = smooth_noise(rng, h, w, 40)
        ground = _lerp(g0, g1, tex) * (0.7 + 0.5 * np.clip((yy - ground_top) * 2, 0, 1))[..., None]
        img = np.where(below[..., None], ground, img)

    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(canvas)
    base = int(ground_top * h)
    # Buildings with windows.
    for _ in range(int(rng.integers(0, 5))):
        bw, bh = int(rng.uniform(0.06, 0.2) * w), int(rng.uniform(0.1, 0.4) * h)
        x0 = int(rng.uniform(0, w - bw))
        y1 = base + int(rng.uniform(0, 0.1) * h)
        col = tuple(int(c * rng.uniform(0.7, 1.1)) for c in BUILDING_COLOURS[rng.integers(len(BUILDING_COLOURS))])
        draw.rectangle([x0, y1 - bh, x0 + bw, y1], fill=col)
        roof = tuple(int(c * 0.6) for c in BUILDING_COLOURS[rng.integers(len(BUILDING_COLOURS))])
        draw.polygon([(x0 - 2, y1 - bh), (x0 + bw // 2, y1 - bh - bw // 3), (x0 + bw + 2, y1 - bh)], fill=roof)
        win = (250, 230, 150) if rng.random() < 0.4 else (60, 80, 110)
        step = max(4, bw // 4)
        for wx in range(x0 + 3, x0 + bw - 4, step):
            for wy in range(y1 - bh + 4, y1 - 6, step):
                draw.rectangle([wx, wy, wx + step // 2, wy + step // 2], fill=win)
    # Trees: trunks and layered leafy crowns.
    for _ in range(int(rng.integers(0, 12))):
        tx = int(rng.uniform(0, w))
        ty = base + int(rng.uniform(0, (1 - ground_top) * h * 0.9))
        size = int(rng.uniform(0.03, 0.12) * h * (0.5 + (ty - base) / max(1, h - base)))
        draw.rectangle([tx - size // 8, ty - size, tx + size // 8, ty], fill=(80, 55, 35))
        green = np.array([rng.uniform(20, 90), rng.uniform(90, 170), rng.uniform(20, 70)])
        if rng.random() < 0.2:  # autumn
            green = np.array([rng.uniform(170, 230), rng.uniform(80, 150), rng.uniform(10, 40)])
        for k in range(4):
            r = int(size * (0.6 - 0.1 * k))
            cx, cy = tx + int(rng.normal(0, size * 0.15)), ty - size - int(k * size * 0.25)
            col = tuple(int(np.clip(c * (0.8 + 0.1 * k), 0, 255)) for c in green)
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=col)
    # Flowers in the foreground.
    if rng.random() < 0.4:
        fc = [(230, 40, 60), (250, 220, 40), (240, 240, 250), (170, 80, 200)][rng.integers(4)]
        for _ in range(int(rng.integers(20, 120))):
            fx, fy = int(rng.uniform(0, w)), int(rng.uniform(0.8, 1.0) * h)
            draw.ellipse([fx - 2, fy - 2, fx + 2, fy + 2], fill=fc)

    canvas = canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.9)))
    arr = np.asarray(canvas).astype(np.float32)
    # Lighting: a global tint and a vignette.
    light = np.array([rng.uniform(0.9, 1.1), rng.uniform(0.9, 1.05), rng.uniform(0.85, 1.1)], np.float32)
    xx = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    vignette = 1 - rng.uniform(0.1, 0.35) * ((yy * 2 - 1) ** 2 + xx**2) / 2
    arr = arr * light * vignette[..., None] + rng.normal(0, 2.0, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")

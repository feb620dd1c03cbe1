"""Build a paired dataset from sources: colorize, repair, edges2photo (aligned A|B, as the
reference Pix2Pix implementation reads them) and sr (HR/LR folders at ×2/×3/×4), plus a manifest.

Deterministic for a seed (each item draws from its own seeded generator), parallel across
cores, resumable (existing outputs are kept), with a progress bar.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from dataset_gen.degrade import damage, edges, low_res, old_photo, to_grey
from dataset_gen.sources import Source, is_heldout

TASKS = ("colorize", "repair", "edges2photo", "sr")


@dataclass
class BuildConfig:
    task: str
    out: Path
    size: int = 256
    crops: int = 4
    seed: int = 0
    val: float = 0.05
    test: float = 0.05
    old_photo: float = 0.5  # share of colorize inputs aged like old prints (the rest: clean grey)
    scales: tuple[int, ...] = (2, 4)
    sr_degrade: bool = False
    clean: float = 0.1  # share of repair pairs left undamaged (input = target)
    whole: bool = False  # whole images (resized to `size` on the long side) instead of random crops
    include_heldout: bool = False  # keep the held-out photos (dataset_gen.sources.HELDOUT); by default left out
    workers: int = field(default_factory=lambda: max(1, (os.cpu_count() or 1)))


def _seed_for(*parts) -> int:
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:8], "little")


def split_of(uid: str, seed: int, val: float, test: float) -> str:
    """Split by source, never by crop: every crop of one photo lands in the same split."""
    u = (_seed_for("split", seed, uid) % 10_000) / 10_000
    return "test" if u < test else "val" if u < test + val else "train"


def _crop(img: Image.Image, size: int, rng: np.random.Generator, whole: bool) -> tuple[Image.Image, list[int]]:
    w, h = img.size
    if whole:
        s = size / max(w, h)
        nw, nh = max(8, round(w * s) // 4 * 4), max(8, round(h * s) // 4 * 4)
        return img.resize((nw, nh), Image.Resampling.LANCZOS), [0, 0, w, h]
    short = min(w, h)
    target_short = int(rng.uniform(size, max(size, min(short, size * 2.5))))
    s = target_short / short
    img = img.resize((max(size, round(w * s)), max(size, round(h * s))), Image.Resampling.LANCZOS)
    x0 = int(rng.integers(0, img.width - size + 1))
    y0 = int(rng.integers(0, img.height - size + 1))
    return img.crop((x0, y0, x0 + size, y0 + size)), [x0, y0, size, size]


def _aligned(a: Image.Image, b: Image.Image) -> Image.Image:
    out = Image.new("RGB", (a.width + b.width, a.height))
    out.paste(a, (0, 0))
    out.paste(b, (a.width, 0))
    return out


def make_item(args: tuple[BuildConfig, Source, int]) -> dict:
    """Produce one output (or find it already there) and return its manifest record."""
    cfg, src, k = args
    split = split_of(src.uid, cfg.seed, cfg.val, cfg.test)
    item_seed = _seed_for(cfg.seed, cfg.task, src.uid, k)
    rng = np.random.default_rng(item_seed)
    name = f"{src.uid}_{k:03d}.png"
    rec = {"file": name, "split": split, "source": src.uid, "origin": src.origin, "path": src.path,
           "seed": item_seed, "task": cfg.task}
    if cfg.task == "sr":
        targets = [cfg.out / split / "hr" / name] + [cfg.out / split / f"lr_x{s}" / name for s in cfg.scales]
    else:
        targets = [cfg.out / split / name]
    img = src.load((cfg.size, cfg.size))
    crop, box = _crop(img, cfg.size, rng, cfg.whole)
    rec["crop"] = box
    if cfg.task == "colorize":
        if rng.random() < cfg.old_photo:
            a, params = old_photo(crop, rng)
            rec["transform"] = {"old_photo": params}
        else:
            a, rec["transform"] = to_grey(crop), {"grey": {}}
        outputs = [_aligned(a, crop)]
    elif cfg.task == "repair":
        damaged, clean, record = damage(crop, rng, cfg.clean)
        outputs, rec["transform"] = [_aligned(damaged, clean)], {"damage": record}
    elif cfg.task == "edges2photo":
        outputs = [_aligned(edges(crop), crop)]
        rec["transform"] = {"edges": {}}
    else:
        outputs, rec["transform"] = [crop], {}
        for s in cfg.scales:
            lr, p = low_res(crop, s, rng, cfg.sr_degrade)
            outputs.append(lr)
            rec["transform"][f"x{s}"] = p
    if all(t.exists() for t in targets):
        rec["resumed"] = True
        return rec
    for t, im in zip(targets, outputs, strict=True):
        t.parent.mkdir(parents=True, exist_ok=True)
        tmp = t.with_suffix(".tmp.png")
        im.save(tmp, compress_level=1)
        tmp.replace(t)  # never leave a half-written file that a resumed run would keep
    return rec


def build(cfg: BuildConfig, sources: list[Source]) -> dict:
    """Build the dataset; returns counts per split. Writes ``manifest.jsonl`` and ``dataset.json``.
    The held-out photos (``dataset_gen.sources.HELDOUT``) are left out unless ``cfg.include_heldout``."""
    if cfg.task not in TASKS:
        raise SystemExit(f"unknown task {cfg.task!r}; use one of {', '.join(TASKS)}")
    given = len(sources)
    if not cfg.include_heldout:
        sources = [s for s in sources if not is_heldout(s)]
    if not sources:
        raise SystemExit("no usable source image: give at least one --source"
                         + (f" ({given} given, all held out)" if given else ""))
    if cfg.task == "sr":
        m = int(np.lcm.reduce(list(cfg.scales)))
        if cfg.size % m:
            raise SystemExit(f"--size {cfg.size} must be a multiple of {m} for scales {cfg.scales}")
    cfg.out.mkdir(parents=True, exist_ok=True)
    # whole images: one each, except colourisation pairs, where each copy ages the grey input afresh
    copies = cfg.crops if not cfg.whole or cfg.task == "colorize" else 1
    jobs = [(cfg, src, k) for src in sources for k in range(copies)]
    records = []
    with Pool(cfg.workers) if cfg.workers > 1 else _Serial() as pool:
        for rec in tqdm(pool.imap(make_item, jobs, chunksize=4), total=len(jobs), desc=f"dataset {cfg.task}"):
            records.append(rec)
    records.sort(key=lambda r: (r["split"], r["file"]))
    with open(cfg.out / "manifest.jsonl", "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec) + "\n")
    counts = {s: sum(r["split"] == s for r in records) for s in ("train", "val", "test")}
    meta = {"task": cfg.task, "size": cfg.size, "crops": cfg.crops, "seed": cfg.seed, "scales": list(cfg.scales),
            "sources": sorted({r["origin"] for r in records}), "counts": counts,
            "heldout_left_out": given - len(sources),
            "resumed": sum(bool(r.get("resumed")) for r in records)}
    (cfg.out / "dataset.json").write_text(json.dumps(meta, indent=2))
    return meta


class _Serial:
    """Pool stand-in for one worker (no processes)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def imap(self, fn, items, chunksize=1):  # noqa: ARG002
        return map(fn, items)

"""Where source photos come from: the user's folders, photos shipped in installed packages,
and the procedural scene generator."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff"}
# Colour photographs that scikit-image ships inside its wheel (no download needed).
SKIMAGE_PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "hubble_deep_field",
                  "retina", "ihc", "color"]
# Debian's mate-backgrounds package (GPL-2+): the photographs among its wallpapers.
MATE_NATURE = Path("/usr/share/backgrounds/mate/nature")
# Debian's plasma-workspace-wallpapers package: wallpapers, several of them photographs.
PLASMA_WALLPAPERS = Path("/usr/share/wallpapers")
# Debian's lomiri-wallpapers-16.04 and -20.04 packages: credited photographs ("<title>_by_<author>")
# directly in /usr/share/backgrounds.
LOMIRI_BACKGROUNDS = Path("/usr/share/backgrounds")


@dataclass
class Source:
    """One source photo: a stable id, where it came from, and a loader."""

    uid: str
    origin: str
    path: str | None = None
    seed: int | None = None

    def load(self, size: tuple[int, int] = (256, 256)) -> Image.Image:
        if self.seed is not None:
            from dataset_gen.procedural import scene

            return scene(self.seed, *size)
        with Image.open(self.path) as img:
            img.draft("RGB", (size[0] * 2, size[1] * 2))  # JPEG: decode at a reduced scale when possible
            return img.convert("RGB")


@dataclass
class ScanReport:
    found: int = 0
    unreadable: int = 0
    duplicates: int = 0


def scan_folder(root: Path, report: ScanReport | None = None, min_side: int = 64) -> list[Source]:
    """Every readable photo below ``root`` (recursive), duplicates (same bytes) removed."""
    report = report or ScanReport()
    seen: set[str] = set()
    out = []
    for path in sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file()):
        report.found += 1
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest in seen:
            report.duplicates += 1
            continue
        try:
            with Image.open(path) as img:
                img.verify()
            with Image.open(path) as img:
                if min(img.size) < min_side:
                    raise ValueError("too small")
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            report.unreadable += 1
            continue
        seen.add(digest)
        out.append(Source(uid=digest[:16], origin=f"folder:{root}", path=str(path)))
    return out


def skimage_photos(names: list[str] | None = None) -> list[Source]:
    """scikit-image's bundled colour photographs (read from its package data, offline)."""
    import skimage

    data_dir = Path(skimage.__file__).parent / "data"
    out = []
    for name in names or SKIMAGE_PHOTOS:
        matches = sorted(data_dir.glob(f"{name}.*"))
        if matches:
            out.append(Source(uid=f"skimage-{name}", origin="skimage", path=str(matches[0])))
    return out


def plasma_wallpapers(root: Path = PLASMA_WALLPAPERS) -> list[Source]:
    """One image per wallpaper (the largest of its resolutions), named after the wallpaper."""
    out = []
    for folder in sorted(p for p in root.glob("*") if p.is_dir()):
        images = [p for p in folder.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES]
        if images:
            best = max(images, key=lambda p: p.stat().st_size)
            out.append(Source(uid=f"plasma-{folder.name}", origin="plasma", path=str(best)))
    return out


def lomiri_wallpapers(root: Path = LOMIRI_BACKGROUNDS) -> list[Source]:
    """The credited wallpapers of the lomiri-wallpapers packages, named after their file."""
    return [Source(uid=f"lomiri-{p.stem}", origin="lomiri", path=str(p))
            for p in sorted(root.glob("*_by_*")) if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file()]


def procedural(count: int, seed: int) -> list[Source]:
    return [Source(uid=f"scene-{seed}-{i}", origin="procedural", seed=seed * 1_000_003 + i) for i in range(count)]


def parse_source(spec: str, seed: int) -> Iterator[Source]:
    """``procedural:N``, ``skimage``, ``skimage:astronaut,coffee``, ``mate``, ``plasma``, ``lomiri``,
    ``folder:PATH`` or a PATH."""
    kind, _, arg = spec.partition(":")
    if kind == "procedural":
        yield from procedural(int(arg or 100), seed)
    elif kind == "skimage":
        yield from skimage_photos(arg.split(",") if arg else None)
    elif kind == "mate":
        yield from scan_folder(MATE_NATURE)
    elif kind == "plasma":
        yield from plasma_wallpapers()
    elif kind == "lomiri":
        yield from lomiri_wallpapers()
    else:
        root = Path(arg if kind == "folder" else spec)
        report = ScanReport()
        found = scan_folder(root, report)
        if not found:
            raise SystemExit(f"{root}: no usable image (found {report.found} files, {report.unreadable} unreadable, "
                             f"{report.duplicates} duplicates); supported: {', '.join(sorted(PHOTO_SUFFIXES))}")
        yield from found

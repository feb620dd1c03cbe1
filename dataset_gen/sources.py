"""Where source photos come from: the user's folders, photos shipped in installed packages,
and the procedural scene generator.

Package sources read the photographs that Debian packages install (dataset_gen/photo_packages.txt
lists them; scripts/install-photos.sh installs them; docs/photo_sources.md tells what each holds).
Only photographs: where a package mixes them with drawings, renders or screenshots, an allow-list
or deny-list of file stems below keeps the photographs. ``HELDOUT`` is the one list of photos kept
out of every dataset (evaluation only).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import re
import struct
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
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
# Where scripts/install-photos.sh unpacks the photo folders of packages it does not install (their
# applications would pull in hundreds of MB): the package's own path below this root.
EXTRACTED = Path("/usr/local/share/debian-photos")

# For `all-photos`, the photographs among plasma-workspace-wallpapers (GPL-2+, its copyright file)
# and lomiri-wallpapers (CC-BY-4.0 / CC-BY-SA-4.0 per file); the others are rendered or drawn.
PLASMA_PHOTOS = ["BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey",
                 "Kite", "OneStandsOut", "Path", "summer_1am"]
LOMIRI_NOT_PHOTOS = ["Fossa_by_Jasper_Roks", "Infinite-Sea_by_Aury88", "Painting-Colors_by__herobrine7gamer",
                     "analogpattern_by_Peter_Nerlich", "free_by_Peter_Nerlich", "greentock_by_Peter_Nerlich",
                     "umang_by_Abhishek_Mudgal"]

# opencv-doc (Apache-2.0 / BSD-3-Clause, /usr/share/doc/opencv-doc/copyright): the colour photographs
# among the sample data and the tutorials' figures (no overlays, no grey, no renders, paintings or
# near-duplicate stereo/viewpoint pairs; Lena left out on purpose).
OPENCV_DOC = Path("/usr/share/doc/opencv-doc")
OPENCV_PHOTOS = [
    *(f"examples/data/{n}" for n in (
        "aero1.jpg", "aero3.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "board.jpg", "building.jpg", "butterfly.jpg",
        "chicky_512.png", "ela_original.jpg", "fruits.jpg", "graf1.png", "home.jpg", "left.jpg", "leuvenA.jpg",
        "messi5.jpg", "orange.jpg", "rubberwhale1.png", "squirrel_cls.jpg", "stuff.jpg")),
    "examples/alphamat/input_images/plant.jpg",
    "examples/hfs/data/000.jpg", "examples/hfs/data/001.jpg", "examples/hfs/data/002.jpg",
    "examples/reg/home.png",
    *(f"examples/text/scenetext0{i}.jpg" for i in range(1, 7)),
    *(f"examples/text/scenetext_segmented_word0{i}.jpg" for i in range(1, 6)),
    *(f"opencv4/html/{n}" for n in (
        "227943776_1.jpg", "230501201_1.jpg", "Background_Subtraction_Tutorial_frame.jpg", "astra_color.jpg",
        "fusion_mertens.jpg", "handSrc.jpg", "pexels_double_decker_bus.jpg", "retina_TreeHdr_small.jpg",
        "space_shuttle.jpg", "studentsSample_input.jpg")),
]
# gcompris-qt-data (DFSG-free; per-file GPL-3+, CC-BY-SA, CC-BY, GFDL or public domain, listed in
# /usr/share/doc/gcompris-qt-data/copyright): photographs inside the activities' Qt resource files.
GCOMPRIS_RCC = Path("/usr/share/gcompris-qt/rcc")
GCOMPRIS_PHOTOS = {  # activity: pattern of its photographs inside <activity>.rcc
    "erase": "resource/*.webp",
    "explore_world_animals": "resource/animals/*.webp",
    "explore_farm_animals": "resource/animals/*.webp",
    "explore_world_music": "resource/music/*.webp",
    "explore_monuments": "resource/*/*.webp",
    "details": "resource/image/*_background.webp",
    "clickgame": "resource/sea*.webp",
}
GCOMPRIS_NOT_PHOTOS = [  # paintings (Van Gogh), a grey archive photo, near-duplicates of explore_monuments
    "Eglise_dAuvers-sur-Oise_background", "Gogh4_background", "PortraitOfPereTanguy_background",
    "Van_Gogh_The_Night_Cafe_background", "VincentVanGogh0012_background", "VincentVanGogh0013_background",
    "VincentVanGogh0019_background", "VincentVanGoghBridge_background", "castleClinton",
    "Neuschwanstein_background",
]
# lxqt-themes (CC-BY-SA-3.0, /usr/share/lxqt/wallpapers/License): its photographic wallpapers.
LXQT_WALLPAPERS = Path("/usr/share/lxqt/wallpapers")
LXQT_PHOTOS = ["Butterfly-Kenneth-Wimer", "Valendas", "after-the-rain", "appleflower", "beam", "butterfly", "cloud",
               "drop", "flowers", "fog", "this-is-not-windows"]
# jigzo-data (GPL-2+/GPL-2 per /usr/share/doc/jigzo-data/copyright): the photographs of its puzzles,
# stored as a texture atlas inside each .pzl; the penguin is CC-BY-NC-SA (non-commercial): left out.
JIGZO_PUZZLES = Path("/usr/share/games/jigzo/puzzles/00_default")
JIGZO_NOT_PHOTOS = ["penguin"]
# palapeli-data (GPL-2+): the photographs of its puzzle collection (its backgrounds are textures).
PALAPELI_COLLECTION = Path("/usr/share/palapeli/collection")
# kalzium-data (GPL-2+): photographs of laboratory equipment; only those at least this big.
KALZIUM_TOOLPICS = Path("/usr/share/kalzium/data/toolpics")
KALZIUM_MIN_SIDE = 256
# digikam-data (GPL-2+): the landscape behind its welcome page.
DIGIKAM_PHOTOS = [Path("/usr/share/digikam/about/images/body-background.jpg")]
# kphotoalbum (GPL-2+): its demo album, many of people; index.xml says how each is turned upright.
KPHOTOALBUM_DEMO = Path("/usr/share/kphotoalbum/demo")
# tuxpaint-data (GPL-2+): the photographs Tux Paint offers as templates.
TUXPAINT_TEMPLATES = Path("/usr/share/tuxpaint/templates")
# tuxpaint-stamps-default (GPL-2): Tux Paint's stamps, photographed objects cut out on transparency
# among drawings; not photographs to crop, but objects in their true colours that the colouriser's
# training pastes onto its photographs (stamp_cutouts).
TUXPAINT_STAMPS = Path("/usr/share/tuxpaint/stamps")
# Stamp folders of drawings, renders and symbols (a folder of this name anywhere in the path).
STAMP_SKIP = {"cartoon", "toys", "easter", "halloween", "newyears", "christmas", "space", "roadsigns", "flags",
              "lowercase", "uppercase", "asl", "math", "operators", "chess", "faces", "symbols", "00_symbols",
              "shapes", "hanukkah", "japanese"}
# python3-sklearn (china.jpg and flower.jpg: CC-BY-2.0, README.txt beside them).
SKLEARN_IMAGES = Path("/usr/lib/python3/dist-packages/sklearn/datasets/images")
# puzzle-jigsaw (samples: CC0-1.0, photos from Pexels).
PUZZLE_JIGSAW_SAMPLES = Path("/usr/share/puzzle-jigsaw/samples")
# tuxtype-data (GPL-2): Tux Typing's twelve landscape photographs, 1280x1024 (glaciers and icebergs, a
# granite beach, a mountain lake, a volcano, rice terraces, a hot spring, a cave, rocky coasts) and
# hidden.jpg (a person in an orange jacket holding a seal pup). The themes' 300x200 photos are too small.
TUXTYPE_IMAGES = Path("/usr/share/tuxtype/images")
TUXTYPE_PHOTOS = [f"kcas{i}" for i in range(12)] + ["hidden"]
# sddm-theme-maldives (CC-BY-SA-3.0): the login background, a jetty under palms (maldives.jpg beside it is
# the same photograph with the login box drawn on).
MALDIVES_THEME = Path("/usr/share/sddm/themes/maldives")
# extremetuxracer-data (GPL-2+): its photographic ground textures, 256x256 (rock, grass, pebbles, sand,
# mud, dirt, paving); the snow and ice ones are painted overlays, the sky boxes rendered.
ETR_TERRAINS = Path("/usr/share/games/etr/terrains")
ETR_PHOTOS = ["dirt01", "floor01", "floor02", "grass01", "grass02", "grass03", "mud01", "pave01", "pave02",
              "pebbles01", "pebbles04", "rock", "rock01", "rock02", "rock03", "rock04", "rock05", "rock06", "rock07",
              "sand01"]
# matplotlib's sample data (a pinned dependency, so always here; Debian: python-matplotlib-data):
# the portrait of Grace Hopper (U.S. Navy photograph, public domain).
MATPLOTLIB_SAMPLE_DATA = Path("/usr/share/matplotlib/mpl-data/sample_data")

# Held-out photographs: never in a dataset unless asked for (--include-heldout), copied by
# `python -m training.heldout` for evaluation. Source ids; for mate-backgrounds (whose ids are content
# hashes) the file name. docs/photo_sources.md says why each was chosen.
HELDOUT = (
    # mate-backgrounds
    "Dune.jpg", "LadyBird.jpg", "YellowFlower.jpg", "Storm.jpg",
    # scikit-image, plasma-workspace-wallpapers
    "skimage-chelsea", "skimage-coffee", "plasma-Autumn", "plasma-ColorfulCups", "plasma-Path", "plasma-Altai",
    # people (faces, skin, hair; the portraits that colourisation gets wrong first)
    "opencv-227943776_1", "kphotoalbum-anne_helene", "kphotoalbum-jesper", "kphotoalbum-qt-logo",
    "gcompris-explore_world_music-australia", "matplotlib-grace_hopper",
    # animals, food, buildings, streets, landscapes, plants, a colour chart
    "gcompris-erase-red_panda", "palapeli-citrus-fruits", "gcompris-explore_monuments-hawaMahal",
    "opencv-pexels_double_decker_bus", "tuxpaint-lighthouse", "jigzo-windmill", "lxqt-flowers", "kalzium-phpapier",
)

# Uids (and so dataset file names) of procedural scenes start with this.
PROCEDURAL_PREFIX = "scene-"


@dataclass
class Source:
    """One source photo: a stable id, where it came from, and a loader."""

    uid: str
    origin: str
    path: str | None = None
    seed: int | None = None
    member: str | None = None  # an image inside the file at `path` (a Qt .rcc resource file)
    rotate: int = 0  # degrees clockwise that turn the image upright

    @property
    def plain(self) -> bool:
        """The photo is the file at ``path`` as it is (it can be copied)."""
        return self.seed is None and self.member is None and not self.rotate and _is_plain(self.path)

    def load(self, size: tuple[int, int] | None = (256, 256)) -> Image.Image:
        """RGB image; with ``size``, JPEGs may be decoded at a reduced scale (at least twice ``size``)."""
        if self.seed is not None:
            from dataset_gen.procedural import scene

            return scene(self.seed, *(size or (256, 256)))
        with _open_image(self.path, self.member) as img:
            if size:
                img.draft("RGB", (size[0] * 2, size[1] * 2))  # JPEG: decode at a reduced scale when possible
            out = img.convert("RGB")
        if self.rotate:
            out = out.rotate(-self.rotate, expand=True)
        return out


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


def package_path(path: Path) -> Path:
    """``path`` as its Debian package installs it or, where scripts/install-photos.sh only unpacked the
    photographs, the same path below ``EXTRACTED`` (``path`` itself when neither exists)."""
    path = Path(path)
    if path.exists() or not path.is_absolute():
        return path
    unpacked = EXTRACTED / path.relative_to("/")
    return unpacked if unpacked.exists() else path


def _is_plain(path: str | None) -> bool:
    return path is not None and Path(path).suffix.lower() in PHOTO_SUFFIXES


# --- images inside other files -------------------------------------------------------------------

@functools.lru_cache(maxsize=64)
def rcc_index(path: str) -> dict[str, tuple[int, int, int]]:
    """The files of a Qt binary resource file (``rcc`` format 1-3): name -> (flags, offset, size)."""
    data = Path(path).read_bytes()
    if data[:4] != b"qres":
        raise ValueError(f"{path}: not a Qt resource file")
    version, tree, payload, names = struct.unpack(">IIII", data[4:20])
    node = 22 if version >= 2 else 14
    out: dict[str, tuple[int, int, int]] = {}

    def name(offset: int) -> str:
        (n,) = struct.unpack(">H", data[names + offset:names + offset + 2])
        return data[names + offset + 6:names + offset + 6 + 2 * n].decode("utf-16-be")

    def walk(i: int, prefix: str) -> None:
        at = tree + i * node
        name_offset, flags = struct.unpack(">IH", data[at:at + 6])
        here = prefix + name(name_offset) if i else ""
        if flags & 2:  # directory
            count, first = struct.unpack(">II", data[at + 6:at + 14])
            for child in range(first, first + count):
                walk(child, here + "/")
        else:
            (offset,) = struct.unpack(">I", data[at + 10:at + 14])
            (size,) = struct.unpack(">I", data[payload + offset:payload + offset + 4])
            out[here] = (flags, payload + offset + 4, size)

    walk(0, "")
    return out


def rcc_read(path: str, member: str) -> bytes:
    flags, offset, size = rcc_index(path)[member]
    with open(path, "rb") as f:
        f.seek(offset)
        raw = f.read(size)
    if flags & 1:  # qCompress: 4-byte length, then zlib
        return zlib.decompress(raw[4:])
    if flags & 4:
        raise ValueError(f"{path}:{member}: zstd-compressed resource, not supported")
    return raw


def pzl_entries(path: str) -> dict[str, bytes]:
    """The files in a jigzo puzzle: ``PzlF``, version, title and URL lines, then ``name``, ``size``
    lines each followed by that many bytes."""
    data = Path(path).read_bytes()
    lines = data.split(b"\n", 4)
    if len(lines) < 5 or lines[0] != b"PzlF":
        raise ValueError(f"{path}: not a jigzo puzzle")
    rest, out = lines[4], {"": lines[2]}  # "": the puzzle's name, which its files are named after
    while rest:
        name, size, rest = rest.split(b"\n", 2)
        out[name.decode()], rest = rest[:int(size)], rest[int(size):]
    return out


def pzl_photo(path: str) -> Image.Image:
    """The photograph of a jigzo puzzle: the ``image x y w h`` box (from ``<name>.map``) of its
    ``<name>.jpg`` texture."""
    files = pzl_entries(path)
    stem = files[""].decode()
    box = re.search(rb"^image (\d+) (\d+) (\d+) (\d+)", files[f"{stem}.map"], re.M)
    if not box:
        raise ValueError(f"{path}: no image box in {stem}.map")
    x, y, w, h = map(int, box.groups())
    with Image.open(io.BytesIO(files[f"{stem}.jpg"])) as atlas:
        return atlas.crop((x, y, x + w, y + h))


def _open_image(path: str, member: str | None) -> Image.Image:
    if member is not None:
        return Image.open(io.BytesIO(rcc_read(path, member)))
    if path.endswith(".pzl"):
        return pzl_photo(path)
    return Image.open(path)


# --- package sources ------------------------------------------------------------------------------

def _files(folder: Path, names: list[str] | None = None, min_side: int = 0) -> list[Path]:
    """Photo files directly in ``folder`` (after ``package_path``): all, or those whose stem is in
    ``names``; at least ``min_side`` pixels on the short side."""
    folder = package_path(folder)
    if not folder.is_dir():
        return []
    out = []
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in PHOTO_SUFFIXES or not p.is_file():
            continue
        if names is not None and p.stem not in names:
            continue
        if min_side:
            with Image.open(p) as img:
                if min(img.size) < min_side:
                    continue
        out.append(p)
    return out


def stamp_cutouts(root: Path = TUXPAINT_STAMPS, min_opaque: int = 2000, min_unique: float = 0.15) -> list[Path]:
    """The photographic cut-outs among Tux Paint's stamps (PNGs with transparency): outside the
    ``STAMP_SKIP`` folders, with at least ``min_opaque`` opaque pixels, of which at least
    ``min_unique`` have a colour of their own (a drawing's flat fills repeat a few colours; a
    photograph's texture rarely repeats one). Sorted paths; empty when the package is absent."""
    root = package_path(root)
    out = []
    for p in sorted(root.rglob("*.png")) if root.is_dir() else []:
        if STAMP_SKIP & set(p.relative_to(root).parts[:-1]):
            continue
        with Image.open(p) as img:
            rgba = np.asarray(img.convert("RGBA"))
        opaque = rgba[..., 3] > 200
        n = int(opaque.sum())
        if n < min_opaque:
            continue
        px = rgba[..., :3][opaque].astype(np.int32)
        if len(np.unique(px[:, 0] * 65536 + px[:, 1] * 256 + px[:, 2])) >= min_unique * n:
            out.append(p)
    return out


def _named(prefix: str, paths: list[Path]) -> list[Source]:
    return [Source(uid=f"{prefix}-{p.stem}", origin=prefix, path=str(p)) for p in paths]


def opencv_photos(root: Path | None = None) -> list[Source]:
    root = package_path(root or OPENCV_DOC)
    out, seen = [], set()
    for rel in OPENCV_PHOTOS:
        stem = Path(rel).stem
        name = f"{Path(rel).parent.name}_{stem}" if stem in seen else stem  # examples/reg/home.png: "reg_home"
        seen.add(stem)
        if (root / rel).is_file():
            out.append(Source(uid=f"opencv-{name}", origin="opencv", path=str(root / rel)))
    return out


def gcompris_photos(root: Path | None = None) -> list[Source]:
    """The photographs inside gcompris-qt-data's activity resources, named ``gcompris-<activity>-<stem>``."""
    root = package_path(root or GCOMPRIS_RCC)
    out = []
    for activity, pattern in GCOMPRIS_PHOTOS.items():
        rcc = root / f"{activity}.rcc"
        if not rcc.is_file():
            continue
        for member in sorted(rcc_index(str(rcc))):
            inner = member.split(f"/activities/{activity}/", 1)[-1]
            stem = Path(member).stem
            if Path(inner).match(pattern) and stem not in GCOMPRIS_NOT_PHOTOS:
                out.append(Source(uid=f"gcompris-{activity}-{stem}", origin="gcompris", path=str(rcc), member=member))
    return out


def jigzo_photos(root: Path | None = None) -> list[Source]:
    root = package_path(root or JIGZO_PUZZLES)
    puzzles = sorted(root.glob("*.pzl")) if root.is_dir() else []
    out = []
    for p in puzzles:
        name = p.stem.rsplit("-", 1)[0]  # "bike-3x4" -> "bike"
        if name not in JIGZO_NOT_PHOTOS:
            out.append(Source(uid=f"jigzo-{name}", origin="jigzo", path=str(p)))
    return out


def kphotoalbum_photos(root: Path | None = None) -> list[Source]:
    """KPhotoAlbum's demo album, each photo turned upright as its index.xml says."""
    root = package_path(root or KPHOTOALBUM_DEMO)
    angles: dict[str, int] = {}
    if (root / "index.xml").is_file():
        for img in ET.parse(root / "index.xml").getroot().iter("image"):
            angles[img.get("file", "")] = int(img.get("angle") or 0)
    return [Source(uid=f"kphotoalbum-{p.stem}", origin="kphotoalbum", path=str(p), rotate=angles.get(p.name, 0) % 360)
            for p in _files(root)]


def matplotlib_photos() -> list[Source]:
    spec = importlib.util.find_spec("matplotlib")
    folders = [Path(spec.origin).parent / "mpl-data" / "sample_data"] if spec and spec.origin else []
    for folder in folders + [MATPLOTLIB_SAMPLE_DATA]:
        found = _files(folder, ["grace_hopper"])
        if found:
            return _named("matplotlib", found)
    return []


PACKAGE_KINDS = {  # kind: photographs of its Debian package(s) present on this machine
    "opencv": opencv_photos,
    "gcompris": gcompris_photos,
    "lxqt": lambda: _named("lxqt", _files(LXQT_WALLPAPERS, LXQT_PHOTOS)),
    "jigzo": jigzo_photos,
    "palapeli": lambda: _named("palapeli", _files(PALAPELI_COLLECTION)),
    "kalzium": lambda: _named("kalzium", _files(KALZIUM_TOOLPICS, min_side=KALZIUM_MIN_SIDE)),
    "digikam": lambda: _named("digikam", [package_path(p) for p in DIGIKAM_PHOTOS if package_path(p).is_file()]),
    "kphotoalbum": kphotoalbum_photos,
    "tuxpaint": lambda: _named("tuxpaint", _files(TUXPAINT_TEMPLATES)),
    "sklearn": lambda: _named("sklearn", _files(SKLEARN_IMAGES)),
    "puzzle-jigsaw": lambda: _named("puzzle-jigsaw", _files(PUZZLE_JIGSAW_SAMPLES)),
    "tuxtype": lambda: _named("tuxtype", _files(TUXTYPE_IMAGES, TUXTYPE_PHOTOS)),
    "maldives": lambda: _named("maldives", _files(MALDIVES_THEME, ["background"])),
    "etr": lambda: _named("etr", _files(ETR_TERRAINS, ETR_PHOTOS)),
    "matplotlib": matplotlib_photos,
}


def mate_photos() -> list[Source]:
    return [Source(uid=s.uid, origin="mate", path=s.path) for s in scan_folder(MATE_NATURE)] \
        if MATE_NATURE.is_dir() else []


def all_photos() -> list[Source]:
    """Every photograph source present on this machine (no procedural scenes, no user folders):
    scikit-image, mate, the photographs among plasma and lomiri, and every package kind."""
    out = skimage_photos() + mate_photos()
    out += [s for s in plasma_wallpapers() if s.uid.removeprefix("plasma-") in PLASMA_PHOTOS]
    out += [s for s in lomiri_wallpapers() if s.uid.removeprefix("lomiri-") not in LOMIRI_NOT_PHOTOS]
    for kind in PACKAGE_KINDS.values():
        out += kind()
    return out


# --- held-out -------------------------------------------------------------------------------------

def is_heldout(src: Source, heldout: tuple[str, ...] | set[str] | None = None) -> bool:
    """Held out (by ``HELDOUT`` or the ids given) by source id or by file name, as ``--exclude`` matches."""
    heldout = HELDOUT if heldout is None else heldout
    return src.uid in heldout or (src.path is not None and src.member is None and Path(src.path).name in heldout)


def missing_heldout(found: list[Source]) -> list[str]:
    """The ``HELDOUT`` entries that none of ``found`` matches (their package is not installed)."""
    return [h for h in HELDOUT if not any(is_heldout(s, {h}) for s in found)]


def heldout_sources() -> list[Source]:
    """Every held-out photo present on this machine (a missing package is skipped)."""
    found = {}
    for s in all_photos() + plasma_wallpapers():  # plasma: some held-out wallpapers are not photographs
        if is_heldout(s) and s.uid not in found:
            found[s.uid] = s
    return list(found.values())


def heldout_name(src: Source) -> str:
    """The held-out copy's name: the source id (for mate, whose ids are hashes: ``mate-<stem>``)."""
    return f"mate-{Path(src.path).stem}" if src.origin == "mate" else src.uid


def procedural(count: int, seed: int) -> list[Source]:
    return [Source(uid=f"{PROCEDURAL_PREFIX}{seed}-{i}", origin="procedural", seed=seed * 1_000_003 + i)
            for i in range(count)]


def parse_source(spec: str, seed: int) -> Iterator[Source]:
    """``procedural:N``, ``skimage``, ``skimage:astronaut,coffee``, ``mate``, ``plasma``, ``lomiri``,
    a package kind (``opencv``, ``gcompris``, ``lxqt``, ``jigzo``, ``palapeli``, ``kalzium``, ``digikam``,
    ``kphotoalbum``, ``tuxpaint``, ``sklearn``, ``puzzle-jigsaw``, ``matplotlib``), ``all-photos`` (every
    photograph source present), ``folder:PATH`` or a PATH."""
    kind, _, arg = spec.partition(":")
    if kind == "procedural":
        yield from procedural(int(arg or 100), seed)
    elif kind == "skimage":
        yield from skimage_photos(arg.split(",") if arg else None)
    elif kind == "mate":
        yield from mate_photos()
    elif kind == "plasma":
        yield from plasma_wallpapers()
    elif kind == "lomiri":
        yield from lomiri_wallpapers()
    elif kind in PACKAGE_KINDS or kind == "all-photos":
        found = all_photos() if kind == "all-photos" else PACKAGE_KINDS[kind]()
        if not found:
            raise SystemExit(f"{spec}: no photograph found; install its package: bash scripts/install-photos.sh")
        yield from found
    else:
        root = Path(arg if kind == "folder" else spec)
        report = ScanReport()
        found = scan_folder(root, report)
        if not found:
            raise SystemExit(f"{root}: no usable image (found {report.found} files, {report.unreadable} unreadable, "
                             f"{report.duplicates} duplicates); supported: {', '.join(sorted(PHOTO_SUFFIXES))}")
        yield from found

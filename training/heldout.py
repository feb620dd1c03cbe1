"""Copy the held-out real photographs (never used in training) into one folder for evaluation.

    python -m training.heldout --out data/heldout
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from dataset_gen.sources import MATE_NATURE, plasma_wallpapers, skimage_photos

HELDOUT_MATE = ["Dune.jpg", "LadyBird.jpg", "YellowFlower.jpg", "Storm.jpg"]
HELDOUT_SKIMAGE = ["chelsea", "coffee"]
HELDOUT_PLASMA = ["plasma-Autumn", "plasma-ColorfulCups", "plasma-Path", "plasma-Altai"]


def heldout_paths() -> list[tuple[str, Path]]:
    """(name, path) of every held-out photo present on this machine."""
    out = [(f"skimage-{s.uid.split('-', 1)[1]}", Path(s.path)) for s in skimage_photos(HELDOUT_SKIMAGE)]
    out += [(f"mate-{n}", MATE_NATURE / n) for n in HELDOUT_MATE if (MATE_NATURE / n).exists()]
    out += [(s.uid, Path(s.path)) for s in plasma_wallpapers() if s.uid in HELDOUT_PLASMA]
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="data/heldout")
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, path in heldout_paths():
        shutil.copy2(path, out / f"{Path(name).stem}{path.suffix.lower()}")
    print(f"{len(list(out.iterdir()))} held-out photos in {out}")


if __name__ == "__main__":
    main()

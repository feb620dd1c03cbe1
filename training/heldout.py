"""Copy the held-out real photographs (never used in training) into one folder for evaluation.

    python -m training.heldout --out data/heldout

The list is dataset_gen.sources.HELDOUT (dataset_gen leaves these photos out of every dataset by
default). Each photo present on this machine is copied as ``<source id><suffix>`` (mate:
``mate-<name>``); one stored inside another file (a Qt resource, a jigzo puzzle) or one that must be
turned upright is written as PNG. Photos whose package is not installed are skipped and named.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from dataset_gen.sources import Source, heldout_name, heldout_sources, missing_heldout


def heldout_paths() -> list[tuple[str, Source]]:
    """(file name, source) of every held-out photo present on this machine."""
    out = []
    for src in heldout_sources():
        suffix = Path(src.path).suffix.lower() if src.plain else ".png"
        out.append((heldout_name(src) + suffix, src))
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="data/heldout")
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    found = heldout_paths()
    for name, src in found:
        target = out / name
        if src.plain:
            shutil.copy2(src.path, target)
        elif not target.exists():
            tmp = target.with_suffix(".tmp.png")
            src.load(None).save(tmp)
            tmp.replace(target)
    absent = missing_heldout([s for _, s in found])
    print(f"{len(found)} held-out photos in {out}"
          + (f"; not on this machine ({len(absent)}): {', '.join(absent)}" if absent else ""))


if __name__ == "__main__":
    main()

"""`python -m dataset_gen`: build a paired dataset.

Examples:
    python -m dataset_gen --task colorize --source procedural:400 --source skimage --source mate --out data/colorize
    python -m dataset_gen --task colorize --source all-photos --size 256 --crops 12 --out data/colorize
    python -m dataset_gen --task repair --source all-photos --size 256 --crops 12 --out data/repair
    python -m dataset_gen --task sr --scales 2,4 --size 192 --source ~/Pictures --out data/sr
    python -m dataset_gen --task edges2photo --source procedural:200 --out data/edges2photo

Sources: ``procedural:N`` (built-in scenes), ``skimage[:name,...]`` (scikit-image's bundled
photographs), ``mate`` / ``plasma`` / ``lomiri`` (Debian's mate-backgrounds,
plasma-workspace-wallpapers and lomiri-wallpapers packages), the photographs of other Debian
packages (``opencv``, ``gcompris``, ``kphotoalbum``, ``lxqt``, ``jigzo``, ``palapeli``, ``kalzium``,
``digikam``, ``tuxpaint``, ``sklearn``, ``puzzle-jigsaw``, ``tuxtype``, ``maldives``, ``etr``; install them with
scripts/install-photos.sh), ``matplotlib`` (its sample portrait), ``all-photos`` (every photograph
source present on this machine), ``folder:PATH`` or a plain PATH.

The held-out photos (dataset_gen.sources.HELDOUT, copied by `python -m training.heldout`) are
left out of every dataset unless --include-heldout is given.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dataset_gen.build import TASKS, BuildConfig, build
from dataset_gen.sources import parse_source


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m dataset_gen", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=TASKS, required=True)
    p.add_argument("--source", action="append", required=True, help="repeatable; see above")
    p.add_argument("--exclude", action="append", default=[], help="more source ids or file names to leave out")
    p.add_argument("--include-heldout", action="store_true",
                   help="keep the held-out photos (dataset_gen.sources.HELDOUT), left out by default")
    p.add_argument("--out", required=True)
    p.add_argument("--size", type=int, default=256, help="crop side (HR side for sr)")
    p.add_argument("--crops", type=int, default=4, help="random crops per source image (with --whole: colorize copies, each aged afresh)")
    p.add_argument("--whole", action="store_true", help="whole images, long side = --size, instead of crops")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val", type=float, default=0.05)
    p.add_argument("--test", type=float, default=0.05)
    p.add_argument("--old-photo", type=float, default=0.5, help="colorize: share of inputs aged like old prints")
    p.add_argument("--clean", type=float, default=0.1, help="repair: share of pairs left undamaged")
    p.add_argument("--scales", default="2,4", help="sr: comma-separated scales (2,3,4)")
    p.add_argument("--sr-degrade", action="store_true", help="sr: blur/noise/JPEG on the LR images")
    p.add_argument("--workers", type=int, default=0, help="processes (0: one per core)")
    a = p.parse_args(argv)
    sources = []
    for spec in a.source:
        sources.extend(parse_source(spec, a.seed))
    excluded = set(a.exclude)
    sources = [s for s in sources if s.uid not in excluded and (s.path is None or Path(s.path).name not in excluded)]
    cfg = BuildConfig(task=a.task, out=Path(a.out), size=a.size, crops=a.crops, seed=a.seed, val=a.val, test=a.test,
                      old_photo=a.old_photo, scales=tuple(int(s) for s in a.scales.split(",")),
                      sr_degrade=a.sr_degrade, clean=a.clean, whole=a.whole, include_heldout=a.include_heldout)
    if a.workers:
        cfg.workers = a.workers
    meta = build(cfg, sources)
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()

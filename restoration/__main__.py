"""Restore photos on this machine, no server needed:

    python -m restoration repair|colorize|sr|restore IN... --out DIR [--scale 2|4] [--vividness V]
                          [--strength S] [--sr-input clean|compressed] [--format png|jpeg] [--weights DIR] [--force]

restore = repair, then colorize, then ×2 (as the served workflow).

IN is any mix of image files and folders (searched recursively). Results keep the folders'
layout under DIR; an existing result is never overwritten without --force. Unreadable or refused
files are skipped and counted, with the same messages as the API. Exit status: 0 when every
input was restored (or skipped as already there), 1 when any was refused, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from restoration.api import Restorer
from restoration.image_io import ImageError

SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif"}


def inputs(paths: list[str]) -> list[tuple[Path, Path]]:
    """(file, path relative to where it was named) for every file named or found below a folder."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += [(f, f.relative_to(p)) for f in sorted(p.rglob("*")) if f.is_file() and f.suffix.lower() in SUFFIXES]
        elif p.is_file():
            out.append((p, Path(p.name)))
        else:
            raise SystemExit(f"{p}: no such file or folder")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m restoration", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", choices=["repair", "colorize", "sr", "restore"])
    p.add_argument("inputs", nargs="+", metavar="IN")
    p.add_argument("--out", required=True, help="folder for the results")
    p.add_argument("--scale", type=int, choices=[2, 4], default=2, help="sr: the upscale factor")
    p.add_argument("--vividness", type=float, help="colour: 0 (faithful) … 1 (vivid); default: the model's")
    p.add_argument("--strength", type=float, help="repair: 0 (off) … 1 (full, the default)")
    p.add_argument("--sr-input", choices=["clean", "compressed"],
                   help="×2: the model for clean scans (default) or for JPEG-compressed photos")
    p.add_argument("--format", choices=["png", "jpeg"], default="png")
    p.add_argument("--weights", default="weights", help="folder with repair/, colorize/, sr_x2/, sr_x4/")
    p.add_argument("--force", action="store_true", help="overwrite existing results")
    a = p.parse_args(argv)
    if a.vividness is not None and not 0.0 <= a.vividness <= 1.0:
        p.error("--vividness must be from 0 to 1")
    if a.strength is not None and not 0.0 <= a.strength <= 1.0:
        p.error("--strength must be from 0 to 1")
    task = f"sr_x{a.scale}" if a.task == "sr" else a.task
    files = inputs(a.inputs)
    out_dir = Path(a.out)
    restorer = Restorer(a.weights)
    suffix = ".png" if a.format == "png" else ".jpg"
    done = exists = refused = 0
    for src, rel in tqdm(files, desc=a.task, unit="photo", file=sys.stderr):
        dst = out_dir / rel.with_suffix(suffix)
        if dst.exists() and not a.force:
            exists += 1
            tqdm.write(f"{dst}: exists, kept (--force overwrites)", file=sys.stderr)
            continue
        try:
            data = restorer.process(task, src.read_bytes(), a.vividness, a.format, a.strength, a.sr_input)
        except ImageError as err:
            refused += 1
            tqdm.write(f"{src}: skipped: {err.message} ({err.kind})", file=sys.stderr)
            continue
        except OSError as err:
            refused += 1
            tqdm.write(f"{src}: skipped: {err}", file=sys.stderr)
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(dst.name + ".part")
        tmp.write_bytes(data)
        tmp.replace(dst)
        done += 1
    print(f"{done} restored, {exists} already there, {refused} skipped, of {len(files)} files in {out_dir}",
          file=sys.stderr)
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())

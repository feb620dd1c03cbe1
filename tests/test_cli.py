"""The library API and command line (python -m restoration) on files and folders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from restoration.api import Restorer
from restoration.image_io import ImageError
from tests.conftest import encode, photo

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def weights_dir(tiny_weights) -> Path:
    return tiny_weights["colorize"].parent


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "restoration", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_folder_recursive_skips_bad_files_and_never_overwrites(tmp_path, weights_dir):
    src = tmp_path / "scans"
    (src / "album").mkdir(parents=True)
    photo(60, 40, seed=1).convert("L").save(src / "a.jpg", quality=90)
    photo(50, 30, seed=2).save(src / "album" / "b.png")
    (src / "album" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (src / "notes.txt").write_text("not an image, not even looked at")
    out = tmp_path / "out"
    r = run_cli("colorize", str(src), "--out", str(out), "--weights", str(weights_dir))
    assert r.returncode == 1, r.stderr  # one file refused
    assert "broken.jpg: skipped:" in r.stderr and "2 restored, 0 already there, 1 skipped, of 3 files" in r.stderr
    assert Image.open(out / "a.png").size == (60, 40)
    assert Image.open(out / "album" / "b.png").size == (50, 30)
    before = (out / "a.png").read_bytes()
    (out / "a.png").write_bytes(b"mine")
    r = run_cli("colorize", str(src / "a.jpg"), "--out", str(out), "--weights", str(weights_dir))
    assert r.returncode == 0 and "exists, kept" in r.stderr and (out / "a.png").read_bytes() == b"mine"
    r = run_cli("colorize", str(src / "a.jpg"), "--out", str(out), "--weights", str(weights_dir), "--force")
    assert r.returncode == 0 and (out / "a.png").read_bytes() == before


def test_sr_and_restore_sizes_and_jpeg(tmp_path, weights_dir):
    photo(30, 20, seed=3).save(tmp_path / "p.png")
    r = run_cli("sr", str(tmp_path / "p.png"), "--scale", "4", "--out", str(tmp_path / "x4"), "--weights",
                str(weights_dir))
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "x4" / "p.png").size == (120, 80)
    r = run_cli("restore", str(tmp_path / "p.png"), "--format", "jpeg", "--out", str(tmp_path / "r"), "--weights",
                str(weights_dir))
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "r" / "p.jpg").size == (60, 40)


def test_usage_errors(tmp_path, weights_dir):
    assert run_cli("colorize", str(tmp_path / "missing"), "--out", str(tmp_path)).returncode != 0
    r = run_cli("colorize", str(tmp_path), "--out", str(tmp_path / "o"), "--vividness", "3")
    assert r.returncode == 2 and "vividness" in r.stderr


def test_api_vividness_changes_colour_not_luminance(weights_dir):
    r = Restorer(weights_dir)
    grey = photo(64, 48, seed=4).convert("L").convert("RGB")
    faithful, vivid = r.colorize(grey, 0.0), r.colorize(grey, 1.0)
    assert faithful.size == vivid.size == grey.size
    assert not np.array_equal(np.asarray(faithful), np.asarray(vivid))
    from restoration.color import rgb_to_lab
    from training.data import to_tensor

    L = rgb_to_lab(to_tensor(grey))[0]
    for img in (faithful, vivid):  # the photo's own CIE lightness is kept (within rounding and gamut clipping)
        assert (rgb_to_lab(to_tensor(img))[0] - L).abs().median() < 0.5


def test_api_refuses_bad_bytes_with_the_api_error(weights_dir):
    with pytest.raises(ImageError) as err:
        Restorer(weights_dir).process("colorize", b"nope")
    assert err.value.status == 415
    png = Restorer(weights_dir).process("sr_x2", encode(photo(20, 10), "PNG"))
    assert png.startswith(b"\x89PNG")


def test_phone_photo_files(tmp_path, weights_dir):
    """HEIC, HEIF and AVIF files in a folder: found, restored upright, the library's bytes."""
    import tests.hostile  # noqa: F401 - registers pillow-heif's encoder for Image.save

    src = tmp_path / "phone"
    src.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # held upright
    files = {"IMG_0001.HEIC": "HEIF", "IMG_0002.heif": "HEIF", "PXL_0003.avif": "AVIF"}
    for i, (name, fmt) in enumerate(files.items()):
        photo(50, 30, seed=20 + i).save(src / name, fmt, quality=90, exif=exif.tobytes())
    (src / "IMG_0004.heic").write_bytes((src / "IMG_0001.HEIC").read_bytes()[:300])  # cut off in transfer
    out = tmp_path / "out"
    r = run_cli("colorize", str(src), "--out", str(out), "--weights", str(weights_dir))
    assert r.returncode == 1, r.stderr
    assert "IMG_0004.heic: skipped:" in r.stderr and "(CorruptImage)" in r.stderr
    assert "3 restored, 0 already there, 1 skipped, of 4 files" in r.stderr
    lib = Restorer(weights_dir)
    for name in files:
        result = out / (name.rsplit(".", 1)[0] + ".png")
        assert Image.open(result).size == (30, 50)
        assert result.read_bytes() == lib.process("colorize", (src / name).read_bytes())

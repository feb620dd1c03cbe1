"""Dataset generation: deterministic for a seed, resumable, the reference A|B layout, clear refusals."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dataset_gen.__main__ import main as dataset_main
from dataset_gen.procedural import scene
from dataset_gen.sources import ScanReport, scan_folder


def digest_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.png"))}


def test_scene_deterministic_and_varied():
    a, b, c = scene(1, 96, 64), scene(1, 96, 64), scene(2, 96, 64)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))
    hsv = np.asarray(a.convert("HSV"))
    assert hsv[..., 1].mean() > 20  # colourful, not grey


@pytest.mark.parametrize("task", ["colorize", "edges2photo"])
def test_pairs_are_deterministic_and_aligned(tmp_path, task):
    args = ["--task", task, "--source", "procedural:6", "--size", "64", "--crops", "2", "--workers", "2",
            "--val", "0.3", "--test", "0.0", "--seed", "7"]
    dataset_main(args + ["--out", str(tmp_path / "a")])
    dataset_main(args + ["--out", str(tmp_path / "b"), "--workers", "1"])
    da, db = digest_tree(tmp_path / "a"), digest_tree(tmp_path / "b")
    assert da == db and len(da) == 12
    img = Image.open(next((tmp_path / "a").rglob("*.png")))
    assert img.size == (128, 64)  # A|B side by side
    manifest = [json.loads(x) for x in (tmp_path / "a" / "manifest.jsonl").read_text().splitlines()]
    assert len(manifest) == 12 and all("seed" in r and "transform" in r for r in manifest)
    if task == "colorize":
        a = np.asarray(img)[:, :64]
        assert (np.abs(a[..., 0].astype(int) - a[..., 2]) < 60).all()  # A is grey or sepia-toned


def test_sr_pairs_and_resume(tmp_path):
    args = ["--task", "sr", "--source", "procedural:3", "--size", "48", "--crops", "2", "--scales", "2,4",
            "--workers", "1", "--out", str(tmp_path)]
    dataset_main(args)
    hr = sorted((tmp_path / "train").glob("hr/*.png")) + sorted((tmp_path / "val").glob("hr/*.png"))
    assert hr and Image.open(hr[0]).size == (48, 48)
    lr4 = hr[0].parent.parent / "lr_x4" / hr[0].name
    assert Image.open(lr4).size == (12, 12)
    before = digest_tree(tmp_path)
    dataset_main(args)  # resume: nothing rewritten, same content
    meta = json.loads((tmp_path / "dataset.json").read_text())
    assert meta["resumed"] == 6 and digest_tree(tmp_path) == before


def test_folder_source_skips_unreadable_and_duplicates(tmp_path):
    photos = tmp_path / "photos" / "sub"
    photos.mkdir(parents=True)
    scene(3, 80, 80).save(photos / "a.png")
    scene(3, 80, 80).save(photos / "copy.png")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    report = ScanReport()
    found = scan_folder(tmp_path / "photos", report)
    assert len(found) == 1 and report.duplicates == 1 and report.unreadable == 1


def test_folder_without_images_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hello")
    with pytest.raises(SystemExit, match="no usable image"):
        dataset_main(["--task", "colorize", "--source", f"folder:{tmp_path / 'empty'}", "--out", str(tmp_path / "o")])


def test_lomiri_source_takes_the_credited_wallpapers(tmp_path):
    """``lomiri``: the ``<title>_by_<author>`` photographs in the folder, nothing else, no subfolders."""
    from dataset_gen.sources import lomiri_wallpapers

    Image.new("RGB", (80, 60), (10, 120, 200)).save(tmp_path / "Bridge_by_Someone.jpg")
    Image.new("RGB", (80, 60), (200, 120, 10)).save(tmp_path / "default.png")
    (tmp_path / "mate").mkdir()
    Image.new("RGB", (80, 60)).save(tmp_path / "mate" / "Dune_by_Else.jpg")
    (tmp_path / "notes_by_me.txt").write_text("not a photo")
    found = lomiri_wallpapers(tmp_path)
    assert [s.uid for s in found] == ["lomiri-Bridge_by_Someone"]
    assert found[0].load((80, 60)).size == (80, 60)

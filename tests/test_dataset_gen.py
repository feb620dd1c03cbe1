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


def test_whole_colour_photos_come_in_copies_aged_afresh(tmp_path):
    """--whole with --crops k: colourisation gets k copies of each whole photo (the same colour
    target, each grey input aged by its own draw); other tasks keep one whole image per source."""
    dataset_main(["--task", "colorize", "--source", "procedural:2", "--whole", "--size", "64", "--crops", "3",
                  "--old-photo", "1.0", "--workers", "1", "--val", "0", "--test", "0", "--out", str(tmp_path / "c")])
    files = sorted((tmp_path / "c" / "train").glob("*.png"))
    assert len(files) == 6
    pairs = [np.asarray(Image.open(f).convert("RGB")) for f in files[:3]]
    w = pairs[0].shape[1] // 2
    assert max(pairs[0].shape[0], w) == 64  # long side of the whole photo
    assert all(np.array_equal(p[:, w:], pairs[0][:, w:]) for p in pairs)
    assert not np.array_equal(pairs[0][:, :w], pairs[1][:, :w])
    dataset_main(["--task", "sr", "--source", "procedural:2", "--whole", "--size", "64", "--crops", "3",
                  "--scales", "2", "--workers", "1", "--val", "0", "--test", "0", "--out", str(tmp_path / "s")])
    assert len(list((tmp_path / "s" / "train" / "hr").glob("*.png"))) == 2


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


def _manifest_sources(out: Path) -> set[str]:
    return {json.loads(x)["source"] for x in (out / "manifest.jsonl").read_text().splitlines()}


def test_heldout_photos_are_left_out_by_default(tmp_path, monkeypatch):
    """A held-out id (palapeli-citrus-fruits) or file name (mate's Dune.jpg) never reaches a dataset
    unless --include-heldout is given; nothing here needs the packages installed."""
    import dataset_gen.sources as sources

    collection = tmp_path / "collection"
    collection.mkdir()
    scene(4, 80, 80).save(collection / "citrus-fruits.jpg")
    scene(5, 80, 80).save(collection / "castle-maintenon.jpg")
    monkeypatch.setattr(sources, "PALAPELI_COLLECTION", collection)
    folder = tmp_path / "mine"
    folder.mkdir()
    scene(6, 80, 80).save(folder / "Dune.jpg")
    scene(7, 80, 80).save(folder / "mine.png")
    assert "palapeli-citrus-fruits" in sources.HELDOUT and "Dune.jpg" in sources.HELDOUT

    args = ["--task", "colorize", "--source", "palapeli", "--source", f"folder:{folder}", "--size", "64",
            "--crops", "1", "--workers", "1"]
    dataset_main(args + ["--out", str(tmp_path / "default")])
    kept = _manifest_sources(tmp_path / "default")
    assert "palapeli-castle-maintenon" in kept and "palapeli-citrus-fruits" not in kept and len(kept) == 2
    assert json.loads((tmp_path / "default" / "dataset.json").read_text())["heldout_left_out"] == 2

    dataset_main(args + ["--out", str(tmp_path / "all"), "--include-heldout"])
    assert len(_manifest_sources(tmp_path / "all")) == 4

    with pytest.raises(SystemExit, match="all held out"):
        dataset_main(["--task", "colorize", "--source", "palapeli", "--exclude", "palapeli-castle-maintenon",
                      "--size", "64", "--out", str(tmp_path / "none")])


def _write_rcc(path: Path, files: dict[str, bytes], compressed: set[str] = frozenset()) -> None:
    """A minimal Qt resource file (format 1): a tree of 14-byte nodes, names, payloads."""
    import struct
    import zlib

    tree: dict = {}
    for name, data in files.items():
        *dirs, leaf = name.strip("/").split("/")
        node = tree
        for d in dirs:
            node = node.setdefault(d, {})
        node[leaf] = (name, data)
    names, payload, nodes = bytearray(), bytearray(), []
    queue = [("", tree)]
    while queue:  # breadth first, so that each directory's children are contiguous
        label, item = queue.pop(0)
        name_off = len(names)
        names += struct.pack(">HI", len(label), 0) + label.encode("utf-16-be")
        if isinstance(item, dict):
            first = len(nodes) + len(queue) + 1
            nodes.append(struct.pack(">IHII", name_off, 2, len(item), first))
            queue.extend(sorted(item.items()))
        else:
            full, data = item
            flags = 1 if full in compressed else 0
            blob = struct.pack(">I", len(data)) + zlib.compress(data) if flags else data
            nodes.append(struct.pack(">IHHHI", name_off, flags, 0, 0, len(payload)))
            payload += struct.pack(">I", len(blob)) + blob
    tree_off = 20
    names_off = tree_off + 14 * len(nodes)
    data_off = names_off + len(names)
    path.write_bytes(b"qres" + struct.pack(">IIII", 1, tree_off, data_off, names_off) + b"".join(nodes)
                     + bytes(names) + bytes(payload))


def _encoded(img: Image.Image, fmt: str) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def test_photos_inside_other_files(tmp_path, monkeypatch):
    """gcompris (Qt .rcc), jigzo (.pzl texture atlas) and kphotoalbum (turned upright by index.xml),
    and the held-out copy: named by source id, PNG where the photo is not a plain file."""
    import dataset_gen.sources as sources
    from training import heldout

    rcc_dir = tmp_path / "rcc"
    rcc_dir.mkdir()
    panda, alpaca = scene(8, 96, 64), scene(9, 64, 48)
    base = "/gcompris/src/activities/erase/resource/"
    _write_rcc(rcc_dir / "erase.rcc", {base + "red_panda.webp": _encoded(panda, "WEBP"),
                                       base + "alpaca.webp": _encoded(alpaca, "PNG"),
                                       base + "notes.txt": b"not a photo"}, compressed={base + "alpaca.webp"})
    monkeypatch.setattr(sources, "GCOMPRIS_RCC", rcc_dir)
    found = {s.uid: s for s in sources.gcompris_photos()}
    assert sorted(found) == ["gcompris-erase-alpaca", "gcompris-erase-red_panda"]
    assert found["gcompris-erase-alpaca"].load(None).size == (64, 48)
    assert np.array_equal(np.asarray(found["gcompris-erase-alpaca"].load(None)), np.asarray(alpaca))

    puzzles = tmp_path / "puzzles"
    puzzles.mkdir()
    atlas = Image.new("RGB", (128, 128), (255, 255, 255))
    atlas.paste(scene(10, 40, 30), (0, 0))
    files = {"W1.map": b"#texture map data\ncrop000 0 0 10 10\nimage 0 0 40 30 1 1\n",
             "W1-t.jpg": _encoded(scene(10, 20, 15), "JPEG"), "W1.jpg": _encoded(atlas, "JPEG")}
    body = b"".join(n.encode() + b"\n" + str(len(d)).encode() + b"\n" + d for n, d in files.items())
    (puzzles / "windmill-4x4.pzl").write_bytes(b"PzlF\n0.1\nW1\nhttp://example.invalid/\n" + body)
    monkeypatch.setattr(sources, "JIGZO_PUZZLES", puzzles)
    (jig,) = sources.jigzo_photos()
    assert jig.uid == "jigzo-windmill" and jig.load(None).size == (40, 30)

    demo = tmp_path / "demo"
    demo.mkdir()
    scene(11, 60, 40).save(demo / "jesper.jpg")
    scene(12, 60, 40).save(demo / "wayne.jpg")
    (demo / "index.xml").write_text('<KPhotoAlbum><images><image file="wayne.jpg" angle="90"/>'
                                    '<image file="jesper.jpg"/></images></KPhotoAlbum>')
    monkeypatch.setattr(sources, "KPHOTOALBUM_DEMO", demo)
    kpa = {s.uid: s for s in sources.kphotoalbum_photos()}
    assert kpa["kphotoalbum-wayne"].load(None).size == (40, 60) and kpa["kphotoalbum-jesper"].plain

    monkeypatch.setattr(sources, "all_photos", lambda: list(found.values()) + [jig] + list(kpa.values()))
    monkeypatch.setattr(sources, "plasma_wallpapers", lambda: [])
    monkeypatch.setattr(sources, "HELDOUT", ("gcompris-erase-red_panda", "jigzo-windmill", "kphotoalbum-jesper",
                                             "kphotoalbum-wayne", "opencv-missing"))
    heldout.main(["--out", str(tmp_path / "heldout")])
    names = sorted(p.name for p in (tmp_path / "heldout").iterdir())
    assert names == ["gcompris-erase-red_panda.png", "jigzo-windmill.png", "kphotoalbum-jesper.jpg",
                     "kphotoalbum-wayne.png"]
    assert Image.open(tmp_path / "heldout" / "kphotoalbum-wayne.png").size == (40, 60)
    assert sources.missing_heldout(sources.heldout_sources()) == ["opencv-missing"]


def test_allow_listed_package_photos(tmp_path, monkeypatch):
    """tuxtype, maldives and etr take only the photographs their allow-lists name (the game art,
    the login box copy and the painted snow textures beside them are left out), from the installed
    path or, unpacked only, from below EXTRACTED."""
    from dataset_gen import sources

    def put(folder: Path, *names: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for n in names:
            Image.new("RGB", (32, 24), (90, 140, 60)).save(folder / n)

    put(tmp_path / "tuxtype", "kcas0.jpg", "kcas11.jpg", "hidden.jpg", "main_bkg.png", "fishy0.png")
    put(tmp_path / "sddm", "background.jpg", "maldives.jpg")
    extracted = tmp_path / "extracted"
    put(extracted / "usr/share/games/etr/terrains", "rock01.png", "grass02.png", "snowy_rock.png", "ice.png")
    monkeypatch.setattr(sources, "TUXTYPE_IMAGES", tmp_path / "tuxtype")
    monkeypatch.setattr(sources, "MALDIVES_THEME", tmp_path / "sddm")
    monkeypatch.setattr(sources, "EXTRACTED", extracted)
    uids = {k: sorted(s.uid for s in sources.PACKAGE_KINDS[k]()) for k in ("tuxtype", "maldives", "etr")}
    assert uids == {"tuxtype": ["tuxtype-hidden", "tuxtype-kcas0", "tuxtype-kcas11"],
                    "maldives": ["maldives-background"], "etr": ["etr-grass02", "etr-rock01"]}
    monkeypatch.setattr(sources, "EXTRACTED", tmp_path / "nothing")
    assert sources.PACKAGE_KINDS["etr"]() == []  # not installed: nothing, no error

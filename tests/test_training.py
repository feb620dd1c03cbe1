"""Training pipelines on tiny data: the loss goes down, a resumed run reaches the same state,
and export produces weights the serving handlers load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dataset_gen.__main__ import main as dataset_main
from training import train_pix2pix, train_sr


@pytest.fixture(scope="module")
def colour_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("colour_data")
    dataset_main(["--task", "colorize", "--source", "procedural:8", "--size", "64", "--crops", "1", "--workers", "1",
                  "--val", "0.25", "--test", "0", "--out", str(out)])
    return out


@pytest.fixture(scope="module")
def sr_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sr_data")
    dataset_main(["--task", "sr", "--source", "procedural:6", "--size", "64", "--crops", "2", "--workers", "1",
                  "--val", "0.2", "--test", "0", "--scales", "2", "--out", str(out)])
    return out


def pix2pix_args(data: Path, out: Path, steps: int, **extra) -> list[str]:
    cfg = {"data": data, "out": out, "num_downs": 5, "ngf": 8, "ndf": 8, "crop_size": 32, "load_size": 36,
           "batch_size": 4, "steps": steps, "eval_every": 1000, "ckpt_every": 1000, "threads": 1, **extra}
    return [f"{k}={v}" for k, v in cfg.items()]


def l1_curve(run: Path, key: str) -> list[float]:
    return [json.loads(x)[key] for x in (run / "log.jsonl").read_text().splitlines() if f'"{key}"' in x]


def test_pix2pix_loss_goes_down(colour_data, tmp_path):
    train_pix2pix.main(pix2pix_args(colour_data, tmp_path, 100, lr=0.001, decay=0.0))
    curve = l1_curve(tmp_path, "loss_G_l1")
    assert sum(curve[-2:]) / 2 < curve[0] * 0.8


def test_pix2pix_resume_is_exact(colour_data, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train_pix2pix.main(pix2pix_args(colour_data, straight, 6))
    train_pix2pix.main(pix2pix_args(colour_data, resumed, 6, stop_at=3))  # interrupted at step 3
    train_pix2pix.main(pix2pix_args(colour_data, resumed, 6, resume=True))
    assert torch.load(resumed / "checkpoint.pt", weights_only=False)["step"] == 6
    a = torch.load(straight / "checkpoint.pt", weights_only=False)
    b = torch.load(resumed / "checkpoint.pt", weights_only=False)
    assert a["step"] == b["step"] == 6
    for key in a["G"]:
        assert torch.equal(a["G"][key], b["G"][key]), key
    for key in a["D"]:
        assert torch.equal(a["D"][key], b["D"][key]), key


def test_pix2pix_resumes_and_fine_tunes_checkpoints_of_earlier_versions(colour_data, tmp_path):
    """Checkpoints written before the shared loop hold NumPy scalars (learning rates in the
    optimiser state): they still resume exactly and still initialise a fine-tune."""
    import numpy as np

    straight, old = tmp_path / "straight", tmp_path / "old"
    train_pix2pix.main(pix2pix_args(colour_data, straight, 6))
    train_pix2pix.main(pix2pix_args(colour_data, old, 6, stop_at=3))
    ck = torch.load(old / "checkpoint.pt", weights_only=False)
    for opt in ("opt_G", "opt_D"):
        for group in ck[opt]["param_groups"]:
            group["lr"] = np.float64(group["lr"])
    torch.save(ck, old / "checkpoint.pt")
    with pytest.raises(Exception, match="weights_only"):
        torch.load(old / "checkpoint.pt", weights_only=True)  # what a plain safe load makes of it
    train_pix2pix.main(pix2pix_args(colour_data, tmp_path / "tuned", 1, lr=0.0, init=old / "checkpoint.pt"))
    train_pix2pix.main(pix2pix_args(colour_data, old, 6, resume=True))
    a = torch.load(straight / "checkpoint.pt", weights_only=False)
    b = torch.load(old / "checkpoint.pt", weights_only=False)
    assert b["step"] == 6 and all(torch.equal(a["G"][k], b["G"][k]) for k in a["G"])


def test_pix2pix_init_starts_from_trained_weights(colour_data, tmp_path):
    """``init=`` (fine-tuning) starts from a checkpoint's G and D, or from a generator file."""
    base = tmp_path / "base"
    train_pix2pix.main(pix2pix_args(colour_data, base, 6))
    trained = torch.load(base / "checkpoint.pt", weights_only=False)
    conv = [k for k in trained["G"] if k.endswith("weight") and trained["G"][k].dim() == 4]

    # lr=0: one step leaves the weights where they started
    tuned, fresh = tmp_path / "tuned", tmp_path / "fresh"
    train_pix2pix.main(pix2pix_args(colour_data, tuned, 1, lr=0.0, init=base / "checkpoint.pt"))
    train_pix2pix.main(pix2pix_args(colour_data, fresh, 1, lr=0.0, seed=1))
    t = torch.load(tuned / "checkpoint.pt", weights_only=False)
    f = torch.load(fresh / "checkpoint.pt", weights_only=False)
    assert t["step"] == 1
    for key in conv:
        assert torch.equal(t["G"][key], trained["G"][key]), key
    assert all(torch.equal(t["D"][k], trained["D"][k]) for k in trained["D"] if k.endswith("weight"))
    assert not all(torch.equal(f["G"][k], trained["G"][k]) for k in conv)

    # a bare generator file (as exported, or a reference latest_net_G.pth) initialises G only
    torch.save(trained["G"], tmp_path / "latest_net_G.pth")
    from_file = tmp_path / "from_file"
    train_pix2pix.main(pix2pix_args(colour_data, from_file, 1, lr=0.0, init=tmp_path / "latest_net_G.pth"))
    g = torch.load(from_file / "checkpoint.pt", weights_only=False)["G"]
    assert all(torch.equal(g[k], trained["G"][k]) for k in conv)


def sr_args(data: Path, out: Path, steps: int, **extra) -> list[str]:
    cfg = {"data": data, "out": out, "scale": 2, "n_resblocks": 2, "n_feats": 8, "patch": 16, "batch_size": 4,
           "steps": steps, "eval_every": 1000, "ckpt_every": 1000, "warmup": 1, "lr": 0.002, "threads": 1, **extra}
    return [f"{k}={v}" for k, v in cfg.items()]


def test_sr_loss_goes_down_and_resume_is_exact(sr_data, tmp_path):
    train_sr.main(sr_args(sr_data, tmp_path / "a", 60))
    curve = l1_curve(tmp_path / "a", "loss")
    assert curve[-1] < curve[0] * 0.5
    train_sr.main(sr_args(sr_data, tmp_path / "b", 60, stop_at=30))  # interrupted at step 30
    train_sr.main(sr_args(sr_data, tmp_path / "b", 60, resume=True))
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_export_is_served_by_the_handlers(colour_data, sr_data, tmp_path):
    from restoration.colorizer import colorize_images, load_generator
    from restoration.upscaler import load_sr_model, upscale_image
    from tests.conftest import photo
    from training.export import export_colorize, export_sr

    train_pix2pix.main(pix2pix_args(colour_data, tmp_path / "c", 2))
    train_sr.main(sr_args(sr_data, tmp_path / "s", 2))
    export_colorize(tmp_path / "c", tmp_path / "w" / "colorize", colour_data)
    export_sr(tmp_path / "s", tmp_path / "w" / "sr_x2", sr_data)
    for name in ("colorize", "sr_x2"):
        assert (tmp_path / "w" / name / "MODEL_CARD.md").read_text().startswith("# ")
    g, cfg = load_generator(str(tmp_path / "w" / "colorize"))
    assert colorize_images(g, cfg, [photo(50, 40)])[0].size == (50, 40)
    m, s = load_sr_model(str(tmp_path / "w" / "sr_x2"))
    assert upscale_image(m, photo(20, 10), s).size == (40, 20)


def test_another_super_image_architecture_trains_exports_and_serves(sr_data, tmp_path):
    """model_type=PAN (super-image's PanModel) with its own config fields: loss falls, the export
    says what it is, and serving loads it by the model_type in config.json."""
    import json

    from restoration.upscaler import load_sr_model, upscale_image
    from tests.conftest import photo
    from training.export import export_sr

    train_sr.main(sr_args(sr_data, tmp_path / "pan", 40, model_type="PAN", arch="{nf: 8, unf: 8, nb: 1}"))
    curve = l1_curve(tmp_path / "pan", "loss")
    assert curve[-1] < curve[0]
    conf = json.loads((tmp_path / "pan" / "model" / "config.json").read_text())
    assert conf["model_type"] == "PAN" and conf["nf"] == 8 and conf["nb"] == 1
    info = export_sr(tmp_path / "pan", tmp_path / "w" / "sr_x2", sr_data)
    assert info["config"]["arch"] == {"nf": 8, "unf": 8, "nb": 1}
    assert "PAN" in (tmp_path / "w" / "sr_x2" / "MODEL_CARD.md").read_text().splitlines()[0]
    m, s = load_sr_model(str(tmp_path / "w" / "sr_x2"))
    assert type(m).__name__ == "PanModel" and s == 2
    assert upscale_image(m, photo(20, 10), s).size == (40, 20)
    with pytest.raises(SystemExit, match="arch"):
        train_sr.main(sr_args(sr_data, tmp_path / "bad", 1, model_type="PAN", arch="{no_such_field: 3}"))


def test_best_colorize_checkpoint_is_chosen_on_the_whole_validation_set(colour_data, tmp_path):
    from training.export import best_colorize_checkpoint

    train_pix2pix.main(pix2pix_args(colour_data, tmp_path, 4, eval_every=2))
    best, scores = best_colorize_checkpoint(tmp_path, colour_data)
    assert [r["step"] for r in scores] == [2, 4]
    top = max(scores, key=lambda r: r["psnr"])
    assert best == tmp_path / top["checkpoint"]
    # each score is the PSNR at the chroma scale that checkpoint would be exported with
    assert all(0.3 <= r["chroma_scale"] <= 1.0 and r["psnr"] > 0 for r in scores)


def test_colour_validation_spreads_over_every_photo(tmp_path):
    """The pairs sort by photo (12 crops each): a limit takes evenly spaced pairs, not the first
    photos' crops."""
    from PIL import Image

    from training.train_colorizer import load_val

    for photo_no in range(10):
        for crop in range(3):
            Image.new("RGB", (8, 4), (photo_no * 20 + 40, crop, 0)).save(tmp_path / f"p{photo_no:02d}_{crop}.png")
    photos = load_val(tmp_path, 4, 10)
    seen = sorted({round((float(t[0].mean()) * 255 - 40) / 20) for t in photos})
    assert len(photos) == 10 and seen == list(range(10))
    assert len(load_val(tmp_path, 4, 100)) == 30
    # procedural scenes are left out while there are photographs
    Image.new("RGB", (8, 4), (0, 0, 255)).save(tmp_path / "scene-0-1_0.png")
    assert len(load_val(tmp_path, 4, 100)) == 30
    # and so are grey originals (nothing to colourise; their grey version scores hundreds of dB)
    Image.new("RGB", (8, 4), (90, 90, 90)).save(tmp_path / "p99_0.png")
    assert len(load_val(tmp_path, 4, 100)) == 30


def test_colour_ratio_leaves_out_almost_grey_originals():
    from training.metrics import COLOUR_RATIO_MIN_REF, colour_ratio, colourfulness

    g = torch.Generator().manual_seed(0)
    colour = torch.rand(3, 16, 16, generator=g)
    grey = colour.mean(0, keepdim=True).expand(3, -1, -1).clone()
    assert colourfulness(colour) > COLOUR_RATIO_MIN_REF
    assert colour_ratio(grey, colour) == 0.0
    assert abs(colour_ratio(colour, colour) - 1.0) < 1e-9
    assert colour_ratio(colour, grey) is None  # a grey original: no ratio, not a division by ~0


def test_sr_compressed_input_training_draws_fresh_jpeg_artefacts(sr_data, tmp_path):
    """jpeg/jpeg_p: each training LR patch goes through JPEG at a drawn quality, the same for the
    same (seed, step) and different across steps; val_jpeg compresses every validation LR at one
    quality, as training.evaluate does; bad settings are refused before training."""
    import io

    from PIL import Image

    from training.data import SRDataset, to_tensor

    clean = SRDataset(sr_data / "train", 2, 16, True)
    comp = SRDataset(sr_data / "train", 2, 16, True, jpeg=(30, 40), jpeg_p=1.0)
    a_clean, _ = clean.batch(0, 5, 4)
    a, hr = comp.batch(0, 5, 4)
    again, hr_again = comp.batch(0, 5, 4)
    later, _ = comp.batch(0, 6, 4)
    assert torch.equal(a, again) and torch.equal(hr, hr_again)  # a pure function of (seed, step)
    assert torch.equal(hr, clean.batch(0, 5, 4)[1])  # the targets stay the clean HR
    assert (a - a_clean).abs().mean() > 1 / 255  # compressed at quality 30-40: visibly changed
    assert not torch.equal(a, later)

    val = SRDataset(sr_data / "val", 2, 16, False, val_jpeg=75)
    lr, _ = val.pair(0, None)
    buf = io.BytesIO()
    Image.open(val.lr_dir / val.hr[0].name).convert("RGB").save(buf, "JPEG", quality=75)
    assert torch.equal(lr, to_tensor(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))

    train_sr.main(sr_args(sr_data, tmp_path / "j", 3, jpeg="[50, 95]", jpeg_p=0.85, val_jpeg=75, eval_every=3))
    assert "gain_db" in json.loads((tmp_path / "j" / "log.jsonl").read_text().splitlines()[-1])["val"]
    for bad in ({"jpeg": "[90, 50]"}, {"jpeg_p": 1.5}, {"jpeg": "75"}, {"val_jpeg": 101}):
        with pytest.raises(SystemExit):
            train_sr.main(sr_args(sr_data, tmp_path / "bad", 1, **bad))


def test_sr_real_input_degradations_blur_noise_and_jpeg_in_random_order(sr_data, tmp_path):
    """blur_p/noise_p: mild Gaussian blur and noise of the training LR, with the JPEG, each with its
    probability and in a random order; a pure function of (seed, step); the targets stay clean;
    without them the batches are exactly the JPEG-only ones; bad settings are refused."""
    from training.data import SRDataset, blur_tensor

    img = torch.rand(3, 20, 24)
    b = blur_tensor(img, 1.0)
    assert b.shape == img.shape and abs(float(b.mean() - img.mean())) < 0.02
    assert float(b.std()) < float(img.std()) * 0.7  # blurred: less pixel-to-pixel variance
    flat = torch.full((3, 8, 8), 0.4)
    assert torch.allclose(blur_tensor(flat, 0.8), flat, atol=1e-6)

    base = SRDataset(sr_data / "train", 2, 16, True, jpeg=(70, 90), jpeg_p=0.5)
    same = SRDataset(sr_data / "train", 2, 16, True, jpeg=(70, 90), jpeg_p=0.5, blur_p=0.0, noise_p=0.0)
    assert torch.equal(base.batch(0, 3, 4)[0], same.batch(0, 3, 4)[0])
    deg = SRDataset(sr_data / "train", 2, 16, True, jpeg=(70, 90), jpeg_p=1.0, blur_p=1.0, noise_p=1.0,
                    noise_sigma=(8.0, 8.0))
    a, hr = deg.batch(0, 3, 4)
    again, _ = deg.batch(0, 3, 4)
    assert torch.equal(a, again)
    assert torch.equal(hr, base.batch(0, 3, 4)[1])
    clean = SRDataset(sr_data / "train", 2, 16, True).batch(0, 3, 4)[0]
    assert (a - clean).abs().mean() > 2 / 255
    train_sr.main(sr_args(sr_data, tmp_path / "d", 3, jpeg="[60, 95]", jpeg_p=0.85, blur_p=0.3, noise_p=0.3, loss="mse",
                          val_jpeg=75, eval_every=3))
    assert "gain_db" in json.loads((tmp_path / "d" / "log.jsonl").read_text().splitlines()[-1])["val"]
    for bad in ({"blur_p": 1.5}, {"noise_p": -0.1}, {"blur_sigma": "[1.0, 0.5]"}, {"noise_sigma": "[0, 3]"}, {"loss": "l3"}):
        with pytest.raises(SystemExit):
            train_sr.main(sr_args(sr_data, tmp_path / "bad", 1, **bad))


@pytest.mark.parametrize("model_type, small_arch, deep_arch, added_block", [
    ("EDSR", {"n_resblocks": 2, "n_feats": 8}, {"n_resblocks": 4, "n_feats": 8}, lambda m: m.body[2].body[0]),
    ("PAN", {"nb": 2, "nf": 8, "unf": 6}, {"nb": 4, "nf": 8, "unf": 6}, lambda m: m.SCPA_trunk[2].conv1_a),
])
def test_sr_init_grows_a_deeper_body_that_computes_the_same(tmp_path, model_type, small_arch, deep_arch, added_block):
    """init= from a shallower EDSR or PAN: its blocks fill the first ones, the added blocks start as
    the identity, so the grown model's output equals the source's; a deeper source is refused."""
    from restoration.upscaler import build_sr_model

    torch.manual_seed(0)
    small = build_sr_model(model_type, scale=2, **small_arch)
    for p in small.parameters():  # not the library's init: every tensor matters
        p.data.normal_(0, 0.1)
    small.save_pretrained(tmp_path / "small")
    deep = build_sr_model(model_type, scale=2, **deep_arch)
    n = train_sr.init_from(deep, str(tmp_path / "small"))
    assert n == len(small.state_dict())
    x = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        assert torch.allclose(small.eval()(x), deep.eval()(x), atol=1e-5)
        assert added_block(deep).weight.abs().sum() > 0  # the added blocks still train
    deep.save_pretrained(tmp_path / "deep")
    with pytest.raises(SystemExit, match="do not fit"):
        train_sr.init_from(build_sr_model(model_type, scale=2, **small_arch), str(tmp_path / "deep"))


def test_zoomed_whole_photo_crops(tmp_path):
    """zoom=(lo, hi): whole photos of any aspect kept at their size; every sample is a crop_size²
    crop of the photo rescaled to a drawn long side, grey and colour aligned, a pure function of
    (seed, step), and zoomed differently from step to step."""
    import numpy as np
    from PIL import Image

    from restoration.color import lab_to_rgb
    from training.train_colorizer import CachedPairs

    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate([(96, 64), (64, 120), (80, 80)]):
        colour = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        pair = Image.new("RGB", (2 * w, h))
        pair.paste(colour.convert("L").convert("RGB"), (0, 0))
        pair.paste(colour, (w, 0))
        pair.save(tmp_path / f"p{i}_000.png")
    data = CachedPairs(tmp_path, 0, 24, zoom=(40, 150))
    assert [tuple(a.shape) for a in data.a] == [(64, 96), (120, 64), (80, 80)]
    L, ab = data.batch(0, 2, 3)
    assert L.shape == (3, 1, 24, 24) and ab.shape == (3, 2, 24, 24)
    L2, ab2 = data.batch(0, 2, 3)
    assert torch.equal(L, L2) and torch.equal(ab, ab2)
    assert not torch.equal(L, data.batch(0, 3, 3)[0])
    # grey and colour come from the same place: the colour crop's own lightness is the grey crop
    rgb = lab_to_rgb(torch.cat([(L[0] + 1) * 50, ab[0]]))
    assert float(rgb.min()) >= 0 and float(rgb.max()) <= 1
    from restoration.color import rgb_to_lab
    assert float((rgb_to_lab(rgb)[0] - (L[0, 0] + 1) * 50).abs().mean()) < 3.0
    with pytest.raises(SystemExit):
        CachedPairs(tmp_path, 0, 24, zoom=(16, 150))  # a long side below the crop


def test_sr_validation_spreads_over_the_split(sr_data, tmp_path):
    """eval_images below the split's size takes evenly spaced pairs (first and last included), not
    the first files, which are few photos' crops; an initialised run measures its start (step 0)."""
    from training.data import SRDataset

    val = SRDataset(sr_data / "val", 2, 16, False)
    seen = []
    real = SRDataset.pair

    def spy(self, i, rng, jpeg_rng=None):
        seen.append(i)
        return real(self, i, rng, jpeg_rng)

    model = train_sr.build_model({**train_sr.DEFAULTS, "n_resblocks": 1, "n_feats": 8})
    SRDataset.pair = spy
    try:
        train_sr.evaluate(model, val, {**train_sr.DEFAULTS, "eval_images": 2}, torch.device("cpu"))
    finally:
        SRDataset.pair = real
    assert seen == [0, len(val) - 1]
    train_sr.main(sr_args(sr_data, tmp_path / "a", 2))
    train_sr.main(sr_args(sr_data, tmp_path / "b", 1, init=tmp_path / "a" / "model", eval_every=5))
    steps = [json.loads(x)["step"] for x in (tmp_path / "b" / "log.jsonl").read_text().splitlines() if '"val"' in x]
    assert steps[0] == 0


def test_chroma_decoding_chosen_on_whole_photos_as_served(tmp_path):
    """export_chroma --whole measures whole validation photos exactly as the served colouriser
    colours them (work size, square padding, quarter-resolution ab under the full-resolution L)."""
    import numpy as np

    from restoration.colorizer import colorize_images, load_generator
    from training import export_chroma, train_colorizer
    from training.data import to_tensor
    from training.metrics import psnr

    data = tmp_path / "whole"
    dataset_main(["--task", "colorize", "--source", "procedural:8", "--size", "80", "--crops", "2", "--whole",
                  "--workers", "1", "--val", "0.4", "--test", "0", "--out", str(data)])
    run = tmp_path / "run"
    train_colorizer.main([f"data={data}", f"out={run}", "width=16", "blocks=1", "work_size=64", "crop_size=32",
                          "load_size=40", "batch_size=4", "steps=4", "eval_every=4", "ckpt_every=4", "threads=1",
                          "prior_batches=2", "eval_max=4"])
    summary = export_chroma.main(["--run", str(run), "--data", str(data), "--whole", "--out", str(tmp_path / "w")])
    assert summary["validation"] == "whole photos as served"
    photos = export_chroma.load_whole(data / "val")
    assert photos and all(max(p.size) == 80 for p in photos)  # whole photos at their stored size, not squares
    net, cfg = load_generator(str(tmp_path / "w"))
    served = [psnr(to_tensor(colorize_images(net, cfg, [p.convert("L").convert("RGB")])[0]), to_tensor(p))
              for p in photos]
    measured = summary["vividness_grid"][str(float(cfg.vividness))]["psnr"]
    assert abs(float(np.mean(served)) - measured) < 0.05
    # --frontier measures the same decodings and exports nothing: the best dB over grey at each colour
    front = export_chroma.main(["--run", str(run), "--data", str(data), "--whole", "--frontier"])["frontier"]
    assert list(front) == ["0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1.0", "1.1"]
    known = [v for v in front.values() if v is not None]
    assert known == sorted(known, reverse=True)  # asking for more colour never measures better
    for v in summary["vividness_grid"].values():  # each served setting is one of the decodings measured
        for x, best in front.items():
            if v["colour_ratio"] >= float(x):
                assert best is not None and best >= v["psnr"] - summary["val_grey_psnr"] - 1e-6


def test_stamps_are_photographed_cut_outs_pasted_on_plain_grey_pairs_only(tmp_path):
    """stamps=: photographic cut-outs (dataset_gen.sources.stamp_cutouts: textured, opaque enough,
    outside the drawing folders) are pasted on crops whose grey input is the photo's plain grey, in
    colour on the photo and as its grey on the input, deterministically per step; aged pairs keep
    their crops as stored."""
    import numpy as np
    from PIL import Image, ImageDraw

    from dataset_gen.sources import stamp_cutouts
    from training.train_colorizer import CachedPairs, grey_of, load_stamps, paste_stamps

    rng = np.random.default_rng(0)
    root = tmp_path / "stamps"
    for folder, kind in (("animals", "photo"), ("animals/cartoon", "photo"), ("food", "flat"), ("tiny", "small")):
        (root / folder).mkdir(parents=True, exist_ok=True)
        side = 20 if kind == "small" else 80
        rgb = rng.integers(0, 255, (side, side, 3), dtype=np.uint8) if kind != "flat" else \
            np.full((side, side, 3), (200, 40, 40), np.uint8)
        mask = Image.new("L", (side, side), 0)
        ImageDraw.Draw(mask).ellipse([2, 2, side - 3, side - 3], fill=255)
        Image.fromarray(np.dstack([rgb, np.asarray(mask)])).save(root / folder / f"{kind}.png")
    assert [p.relative_to(root).as_posix() for p in stamp_cutouts(root)] == ["animals/photo.png"]
    stamps = load_stamps(str(root))
    assert len(stamps) == 1 and stamps[0].shape == (80, 80, 4)
    with pytest.raises(SystemExit, match="no photographic cut-out"):
        load_stamps(str(tmp_path / "nothing"))

    # pasting keeps the pair a photo and its grey, and changes both where the stamp lands
    colour = torch.from_numpy(np.full((32, 32, 3), (40, 120, 200), np.uint8))
    grey = grey_of(colour.float()).round().byte()
    a, b = paste_stamps(grey, colour, stamps, 2, np.random.default_rng(1))
    assert not torch.equal(b, colour) and not torch.equal(a, grey)
    assert float((a.float() - grey_of(b.float())).abs().max()) <= 1.0
    assert torch.equal(grey, grey_of(colour.float()).round().byte())  # the inputs were not written to

    # a plain grey pair and an aged one (its grey input far from the photo's grey), each of one
    # colour, so a crop with a stamp on it is one whose colour varies
    data = tmp_path / "pairs"
    data.mkdir()
    for i, aged in enumerate((False, True)):
        photo = Image.new("RGB", (40, 40), (40, 120, 200))
        g = photo.convert("L") if not aged else Image.new("L", (40, 40), 200)
        pair = Image.new("RGB", (80, 40))
        pair.paste(g.convert("RGB"), (0, 0))
        pair.paste(photo, (40, 0))
        pair.save(data / f"p{i}_000.png")
    pasted = CachedPairs(data, 40, 32, stamps=stamps, stamp_p=1.0)
    assert pasted.plain == [True, False]
    from training.data import epoch_batch

    for step in range(4):
        L, ab = pasted.batch(0, step, 2)
        assert torch.equal(L, pasted.batch(0, step, 2)[0])  # a pure function of the step
        for j, i in enumerate(epoch_batch(2, 0, step, 2)):
            varies = float(ab[j].flatten(1).std(1).max()) > 1.0
            assert varies == (int(i) == 0)

    # stamp_aged: the aged pair gets objects too, its grey input aged afresh from the photo with
    # the objects on it (not the stored input, a flat 200), at the stored crop's scale
    both = CachedPairs(data, 40, 32, stamps=stamps, stamp_p=1.0, stamp_aged=True)
    assert both.age_scale == [1.0, 1.0]
    for step in range(4):
        L, ab = both.batch(0, step, 2)
        assert torch.equal(L, both.batch(0, step, 2)[0])
        for j in range(2):
            assert float(ab[j].flatten(1).std(1).max()) > 1.0  # every crop has an object on it
        for j, i in enumerate(epoch_batch(2, 0, step, 2)):
            if int(i) == 1:  # aged afresh: it follows the pasted photo, no longer one flat grey
                assert float(L[j].std()) > 0.02
    from training.train_colorizer import age_again

    rng = np.random.default_rng(3)
    flat = torch.full((32, 32, 3), 128, dtype=torch.uint8)
    aged = age_again(flat, 2.5, rng)
    assert aged.shape == (32, 32) and aged.dtype == torch.uint8


def test_colorizer_regression_loss_trains_the_decoded_ab(tmp_path):
    """loss=huber: plain regression of the ab the served decoding gives (T 1, the rebalancing undone by
    reg_alpha) with a Huber loss; it lowers that loss on a fixed batch, and an unknown loss is refused."""

    from training import train_colorizer

    data = tmp_path / "pairs"
    dataset_main(["--task", "colorize", "--source", "procedural:6", "--size", "48", "--crops", "2",
                  "--workers", "1", "--val", "0.0", "--test", "0", "--out", str(data)])
    common = [f"data={data}", "width=16", "blocks=1", "work_size=64", "crop_size=32", "load_size=40",
              "batch_size=8", "threads=1", "prior_batches=2", "eval_every=1000", "ckpt_every=1000", "warmup=0"]
    run = tmp_path / "reg"
    train_colorizer.main(common + [f"out={run}", "loss=huber", "steps=60", "lr=0.003"])
    logged = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in logged if "loss" in r]
    assert len(losses) >= 3 and losses[-1] < losses[0]
    with pytest.raises(SystemExit, match="loss=l2"):
        train_colorizer.main(common + [f"out={tmp_path / 'bad'}", "loss=l2", "steps=1"])

"""The repair model: damaged training pairs, the network and its tiling, colour kept, the gate,
the strength, training and the settings a workflow node hands on."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from dataset_gen.degrade import DAMAGE_OPS, damage
from restoration.png import add_text, read_text
from restoration.repair import RepairConfig, RepairNet, build, gate, load_repairer, repair_image, residual
from tests.conftest import photo


def random_net(cfg: RepairConfig, seed: int = 0):
    """A network whose zero-initialised output and FiLM layers are randomised, so it changes photos."""
    torch.manual_seed(seed)
    net = build(cfg).eval()
    with torch.no_grad():
        net.tail[-2].weight.normal_(0, 0.05)
        if cfg.context:
            for film in (net.film_low, net.film_high):
                film.lin.weight.normal_(0, 0.2)
            if net.curve is not None:
                last = net.curve.mlp[-1] if cfg.quantiles else net.curve.lin
                last.weight.normal_(0, 0.5)
    return net


def test_damage_is_deterministic_and_recorded():
    img = photo(96, 80, seed=1)
    a, clean_a, rec_a = damage(img, np.random.default_rng(7))
    b, _, rec_b = damage(img, np.random.default_rng(7))
    assert a.tobytes() == b.tobytes() and rec_a == rec_b
    assert rec_a["order"] and set(rec_a["order"]) <= set(DAMAGE_OPS) and set(rec_a["params"]) == set(rec_a["order"])
    json.dumps(rec_a)  # goes into the manifest as it is
    grey = np.asarray(clean_a)
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    assert a.size == img.size and a.tobytes() != clean_a.tobytes()
    orders = {tuple(damage(img, np.random.default_rng(s))[2]["order"]) for s in range(12)}
    assert len(orders) > 6  # the damages and their order vary with the seed
    untouched, target, rec = damage(img, np.random.default_rng(3), clean=1.0)
    assert untouched.tobytes() == target.tobytes() and rec["order"] == []
    # single: one damage instead of the mix, drawn over every kind; single=0 draws as before
    singles = [damage(img, np.random.default_rng(s), single=1.0)[2]["order"] for s in range(40)]
    assert all(len(o) == 1 for o in singles) and len({o[0] for o in singles}) > 6
    assert damage(img, np.random.default_rng(7), single=0.0)[0].tobytes() == a.tobytes()
    mixed = [len(damage(img, np.random.default_rng(s), single=0.5)[2]["order"]) for s in range(40)]
    assert 5 < sum(n == 1 for n in mixed) < 35


def test_dataset_gen_builds_repair_pairs(tmp_path):
    from dataset_gen.build import BuildConfig
    from dataset_gen.build import build as build_dataset
    from dataset_gen.sources import parse_source

    cfg = BuildConfig(task="repair", out=tmp_path / "repair", size=64, crops=2, val=0.3, test=0.0, workers=1)
    meta = build_dataset(cfg, list(parse_source("procedural:6", 0)))
    assert sum(meta["counts"].values()) == 12
    recs = [json.loads(line) for line in (tmp_path / "repair" / "manifest.jsonl").read_text().splitlines()]
    assert all("damage" in r["transform"] for r in recs)
    pair = Image.open(tmp_path / "repair" / recs[0]["split"] / recs[0]["file"])
    assert pair.size == (128, 64)


@pytest.mark.parametrize(("shape", "quantiles", "fine"),
                         [((1, 1, 300, 420), 0, 0), ((1, 1, 257, 131), 0, 0), ((1, 1, 300, 420), 9, 0),
                          ((1, 1, 300, 420), 0, 2)])
def test_tiled_matches_untiled(shape, quantiles, fine):
    cfg = RepairConfig(width=8, levels=2, blocks=1, context=32, quantiles=quantiles, fine=fine)
    net = random_net(cfg)
    with torch.no_grad():  # the added blocks start as the identity: make them do something
        for block in [*net.fine_enc, *net.fine_dec]:
            block.body[-1].weight.normal_(0, 0.2)
    y = torch.rand(shape)
    whole = residual(net, y, tile=0, multiple=cfg.multiple)
    assert whole.abs().max() > 0.01  # the network does change the photo
    tiled = residual(net, y, tile=96, overlap=48, multiple=cfg.multiple)
    assert (whole - tiled).abs().max().item() * 255 <= 1.0


def saved_model_and_tiny_data(tmp_path, net, cfg: RepairConfig):
    """``net`` saved as a weights folder (what train_repair init reads) and a tiny repair dataset."""
    from dataset_gen.build import BuildConfig
    from dataset_gen.build import build as build_dataset
    from dataset_gen.sources import parse_source
    from restoration.weights import save_tensors, write_config

    init = tmp_path / "old"
    init.mkdir()
    save_tensors(net.state_dict(), init / "repair.safetensors")
    write_config(init, cfg.to_dict())
    data = tmp_path / "data"
    build_dataset(BuildConfig(task="repair", out=data, size=64, crops=2, val=0.25, test=0.0, workers=1),
                  list(parse_source("procedural:6", 0)))
    return init, data


def test_colour_kept_grey_stays_grey_and_strength():
    cfg = RepairConfig(width=8, levels=1, blocks=1, context=16)
    net = random_net(cfg, seed=2)
    img = photo(90, 70, seed=3)
    src = np.asarray(img).astype(int)
    out = np.asarray(repair_image(net, cfg, img)).astype(int)
    assert out.shape == src.shape and np.abs(out - src).max() > 0
    inside = ((out > 0) & (out < 255)).all(-1)
    delta = out - src
    assert np.abs(delta[..., 0] - delta[..., 1])[inside].max() <= 1 and np.abs(delta[..., 0] - delta[..., 2])[inside].max() <= 1
    grey = img.convert("L").convert("RGB")
    g = np.asarray(repair_image(net, cfg, grey))
    assert (g[..., 0] == g[..., 1]).all() and (g[..., 1] == g[..., 2]).all()
    assert repair_image(net, cfg, img, strength=0.0).tobytes() == img.tobytes()
    half = np.asarray(repair_image(net, cfg, img, strength=0.5)).astype(int) - src
    assert 0 < np.abs(half).mean() < np.abs(delta).mean()


def test_tone_curve_is_monotone_and_starts_as_identity():
    from restoration.repair import ToneCurve

    curve = ToneCurve(ctx=4, knots=8)
    y = torch.linspace(0, 1, 101).view(1, 1, 1, 101)
    ctx = torch.randn(1, 4)
    assert torch.allclose(curve(y, ctx), y, atol=1e-6)
    with torch.no_grad():
        curve.lin.weight.normal_(0, 2.0)
    out = curve(y, ctx)[0, 0, 0]
    assert (out[1:] >= out[:-1] - 1e-6).all() and not torch.allclose(out, y[0, 0, 0], atol=1e-3)


def test_histogram_tone_curve_reads_quantiles_and_grows_from_a_model_without_it(tmp_path):
    """quantiles > 0: the context carries the luma's quantiles and the tone curve reads them through
    an MLP that starts as the identity, so a curve-less model initialises it exactly (train_repair
    init); the curve then undoes a fade that the quantiles reveal, which the photo's own pixels
    cannot tell apart from a low-contrast scene."""
    from restoration.repair import Context
    from training import train_repair

    ctx = Context(out=16, quantiles=5)
    thumb = torch.linspace(0.2, 0.6, 64).view(1, 1, 8, 8)
    v = ctx(thumb)
    assert v.shape == (1, 21) and torch.allclose(v[0, 16:], torch.linspace(0.2, 0.6, 5), atol=1e-6)

    old_cfg = RepairConfig(width=8, levels=1, blocks=1, context=16, knots=0)
    old = random_net(old_cfg, seed=4)
    new = build(RepairConfig(**{**old_cfg.to_dict(), "knots": 8, "quantiles": 9})).eval()
    missing, unexpected = new.load_state_dict(old.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("curve.mlp.") for k in missing)
    y = torch.rand(1, 1, 48, 40)
    with torch.no_grad():
        assert torch.allclose(new(y), old(y), atol=1e-6)  # step 0 is the old model

    init, data = saved_model_and_tiny_data(tmp_path, old, old_cfg)
    args = [f"data={data}", f"out={tmp_path / 'run'}", "width=8", "levels=1", "blocks=1", "context=16",
            "knots=8", "quantiles=9", f"init={init}", "online=0.15", "crop_size=32", "batch_size=4",
            "steps=3", "eval_every=3", "threads=1", "ema=0", "curve_loss=1.0"]
    train_repair.main(args)
    net, cfg = load_repairer(str(tmp_path / "run" / "model"))
    assert cfg.quantiles == 9 and cfg.knots == 8 and net.curve is not None
    assert net.curve.mlp[-1].weight.abs().max() > 0  # the curve's own loss moved it off the identity
    with pytest.raises(SystemExit, match="curve_loss"):  # a curve loss without a curve
        train_repair.main([*args[:-4], "knots=0", f"out={tmp_path / 'nocurve'}", "init=", "curve_loss=1.0"])
    with pytest.raises(SystemExit):  # a different network is refused, not half loaded
        train_repair.main([*args[:-1], "width=16", f"out={tmp_path / 'bad'}"])


def test_finest_level_grows_by_blocks_that_start_as_the_identity(tmp_path):
    """fine > 0 adds residual blocks at the half-resolution level; they start as the identity, so a
    model without them initialises one with them exactly (train_repair init), and training moves them."""
    from training import train_repair

    old_cfg = RepairConfig(width=8, levels=1, blocks=1, context=16, knots=0)
    old = random_net(old_cfg, seed=5)
    new = build(RepairConfig(**{**old_cfg.to_dict(), "fine": 2})).eval()
    missing, unexpected = new.load_state_dict(old.state_dict(), strict=False)
    assert not unexpected and len(missing) == 16 and all(k.startswith(("fine_enc.", "fine_dec.")) for k in missing)
    y = torch.rand(1, 1, 48, 40)
    with torch.no_grad():
        assert torch.equal(new(y), old(y))  # step 0 is the old model

    init, data = saved_model_and_tiny_data(tmp_path, old, old_cfg)
    train_repair.main([f"data={data}", f"out={tmp_path / 'run'}", "width=8", "levels=1", "blocks=1", "context=16",
                       "knots=0", "fine=1", f"init={init}", "online=0.15", "crop_size=32", "batch_size=4",
                       "steps=3", "eval_every=3", "threads=1", "ema=0"])
    net, cfg = load_repairer(str(tmp_path / "run" / "model"))
    assert cfg.fine == 1 and len(net.fine_enc) == len(net.fine_dec) == 1
    assert net.fine_dec[0].body[-1].weight.abs().max() > 0  # trained off the identity


def test_gate_leaves_small_corrections_out():
    d = torch.full((8, 8), 1.0 / 255)
    d[0, 0] = 40.0 / 255  # one speck
    shrunk, damage_est, g = gate(d, RepairConfig(shrink=2.0))
    assert g == 1.0 and shrunk[1, 1] == 0 and abs(float(shrunk[0, 0]) * 255 - 38.0) < 1e-3
    _, _, g_low = gate(d, RepairConfig(gate_low=5.0, gate_high=10.0))
    _, _, g_mid = gate(d * 5, RepairConfig(gate_low=5.0, gate_high=10.0))
    assert g_low == 0.0 and 0.0 < g_mid < 1.0
    assert damage_est > 0


def test_band_gate_needs_more_evidence_for_a_change_of_tone():
    """With band_sigma the low band (a shift of tone) is dropped below its own threshold while a
    speck (high band) still goes through; above the threshold both apply; ungated is the identity."""
    from restoration.repair import bands

    d = torch.full((64, 64), 4.0 / 255)  # a tone shift of 4 grey levels
    d[30, 30] = 60.0 / 255  # one speck
    low, high = bands(d, 8.0)
    assert torch.allclose(low + high, d) and abs(float(low.mean()) * 255 - 4.0) < 0.1
    cfg = RepairConfig(band_sigma=8.0, tone_low=6.0, tone_high=8.0)
    out, _, g = gate(d, cfg)
    assert g == 1.0 and abs(float(out[0, 0]) * 255) < 0.05 and float(out[30, 30]) * 255 > 50
    out_big, _, _ = gate(d * 3, cfg)  # 12 grey levels of tone: above tone_high
    assert abs(float(out_big[0, 0]) * 255 - 12.0) < 0.1
    assert torch.allclose(gate(d, cfg.ungated())[0], d, atol=1e-6)


def test_training_runs_resumes_and_exports_a_gate(tmp_path):
    from dataset_gen.build import BuildConfig
    from dataset_gen.build import build as build_dataset
    from dataset_gen.sources import parse_source
    from training import train_repair

    data = tmp_path / "data"
    build_dataset(BuildConfig(task="repair", out=data, size=64, crops=3, val=0.25, test=0.0, workers=1),
                  list(parse_source("procedural:8", 0)))
    args = [f"data={data}", f"out={tmp_path / 'run'}", "width=8", "levels=1", "blocks=1", "context=16",
            "crop_size=32", "batch_size=4", "steps=6", "eval_every=3", "ckpt_every=3", "threads=1"]
    first = train_repair.main(args + ["stop_at=3"])
    assert first["step"] == 3
    done = train_repair.main(args + ["resume=true"])
    assert done["step"] == 6
    net, cfg = load_repairer(str(tmp_path / "run" / "model"))
    assert cfg.arch == "repair_unet" and cfg.context == 16
    assert {"gated", "ungated"} <= set(done["val"]) and done["val"]["gated"]["clean_min_db"] > 0
    assert (tmp_path / "run" / "model_6").is_dir()
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert any("gate" in r for r in log)


def test_settings_ride_in_a_png_text_chunk():
    buf = io.BytesIO()
    photo(20, 10, seed=4).save(buf, "PNG")
    png = buf.getvalue()
    tagged = add_text(png, "pix2pix-sr-settings", json.dumps({"vividness": "1"}))
    assert read_text(tagged, "pix2pix-sr-settings") == '{"vividness": "1"}'
    assert read_text(png, "pix2pix-sr-settings") is None and read_text(b"not a png", "k") is None
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(tagged))), np.asarray(Image.open(io.BytesIO(png))))


def test_online_damage_is_fresh_every_step_and_a_pure_function_of_the_step(tmp_path):
    """online > 0: the damage is drawn afresh for each batch (never the stored damaged halves),
    the same for the same (seed, step), different for another step; the targets stay the clean
    photos, and the context thumbnail is that of the freshly damaged whole photo."""
    from dataset_gen.build import BuildConfig
    from dataset_gen.build import build as build_dataset
    from dataset_gen.sources import parse_source
    from training.train_repair import RepairPairs, thumbnails

    data = tmp_path / "data"
    build_dataset(BuildConfig(task="repair", out=data, size=64, crops=2, val=0.0, test=0.0, workers=1),
                  list(parse_source("procedural:4", 0)))
    stored = RepairPairs(data / "train", 32, 16)
    online = RepairPairs(data / "train", 32, 16, online=0.15)
    x, y, t = online.batch(0, 3, 4)
    x2, y2, t2 = online.batch(0, 3, 4)
    assert torch.equal(x, x2) and torch.equal(y, y2) and torch.equal(t, t2)
    xs, ys, _ = stored.batch(0, 3, 4)
    assert torch.equal(y, ys)  # same crops of the same clean photos
    assert not torch.equal(x, xs)  # but not the stored damage
    later = [online.batch(0, s, 4)[0] for s in range(4, 8)]
    assert all(not torch.equal(x, other) for other in later)
    # the thumbnail belongs to the damaged whole photo, not to the stored one
    a, thumb, goal = online._fresh(0, 0, 3, 0)
    assert a.shape == online.clean[0].shape and a.dtype == np.uint8
    assert np.array_equal(goal, online.clean[0])  # the target is the clean photo
    assert np.allclose(thumb, thumbnails(a[None], 16)[0])


def test_evaluate_repair_table_reports_the_worst_clean_photo(tmp_path):
    """training.evaluate's repair table: the clean-photo row gives the worst photo and the share of
    photos that stay ≥ 40 dB beside the mean (a mean over photos, capped at 99 dB for unchanged ones,
    hides the one photo a model harms)."""
    from tests.tiny_models import make_repair
    from training import evaluate

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        photo(96, 72, seed=10 + i).save(photos / f"p{i}.png")
    weights = make_repair(tmp_path / "w")
    evaluate.main(["--photos", str(photos), "--repair", str(weights), "--tasks", "repair",
                   "--out", str(tmp_path / "eval"), "--max-side", "96"])
    res = json.loads((tmp_path / "eval" / "results.json").read_text())
    key = next(k for k in res["summary"]["repair"] if k.startswith("clean photo"))
    per_photo = [r["repaired_psnr"] for r in res["rows"]["repair"][key]]
    s = res["summary"]["repair"][key]
    assert s["repaired_psnr_min"] == pytest.approx(min(per_photo))
    assert s["repaired_share_40db"] == pytest.approx(np.mean([v >= 40 for v in per_photo]))
    assert min(per_photo) < 99  # the randomised tiny model does change a clean photo
    assert f"worst photo {min(per_photo):.2f}" in (tmp_path / "eval" / "README.md").read_text()


def test_export_repair_picks_a_kept_model_and_chooses_its_gate(tmp_path):
    """training.export_repair: a kept model_<step> becomes serving weights with a gate chosen on
    validation (clean validation photos stay ≥ the bound), loadable by the handler's loader."""
    from dataset_gen.build import BuildConfig
    from dataset_gen.build import build as build_dataset
    from dataset_gen.sources import parse_source
    from training import export_repair, train_repair

    data = tmp_path / "data"
    build_dataset(BuildConfig(task="repair", out=data, size=64, crops=2, val=0.3, test=0.0, workers=1),
                  list(parse_source("procedural:6", 0)))
    train_repair.main([f"data={data}", f"out={tmp_path / 'run'}", "width=8", "levels=1", "blocks=1", "context=16",
                       "crop_size=32", "batch_size=4", "steps=4", "eval_every=2", "threads=1"])
    s = export_repair.main(["--model", str(tmp_path / "run" / "model_2"), "--data", str(data),
                            "--out", str(tmp_path / "w")])
    net, cfg = load_repairer(str(tmp_path / "w"))
    assert cfg.gate_low == s["gate"]["gate_low"] and cfg.shrink == s["gate"]["shrink"]
    assert s["val_gated"]["clean_min_db"] >= 40.0 or s["val_gated"]["clean_min_db"] >= s["val_ungated"]["clean_min_db"]
    with pytest.raises(SystemExit):
        export_repair.main(["--model", str(tmp_path / "w"), "--data", str(data), "--out", str(tmp_path / "w")])


def test_repair_validation_spreads_over_every_photo(tmp_path):
    """Pairs sort by photo (10 crops each): a limit takes evenly spaced pairs, not the first photos'."""
    from training.train_repair import load_pairs

    for photo_no in range(12):
        for crop in range(10):
            pair = np.zeros((4, 8), np.uint8)
            pair[:, 4:] = photo_no * 20
            Image.fromarray(pair, "L").save(tmp_path / f"p{photo_no:02d}_{crop:03d}.png")
    _, clean = load_pairs(tmp_path, 24)
    assert len(clean) == 24 and sorted({int(c[0, 0]) // 20 for c in clean}) == list(range(12))
    assert len(load_pairs(tmp_path, 0)[1]) == len(load_pairs(tmp_path, 500)[1]) == 120


def test_damage_without_noise_replays_every_other_damage():
    """damage(without=NOISE_OPS): the damaged copy is the one damage() gives for the seed, and the
    second copy has the same damages (same draws) but no grain or speckle."""
    from dataset_gen.degrade import NOISE_OPS

    img = photo(96, 80, seed=2)
    noisy_seen = quiet_seen = 0
    for s in range(40):
        a, _, rec = damage(img, np.random.default_rng(s), clean=0.1, single=0.3)
        b, rest, clean, rec_b = damage(img, np.random.default_rng(s), clean=0.1, single=0.3, without=NOISE_OPS)
        assert a.tobytes() == b.tobytes() and rec == rec_b
        assert clean.tobytes() == damage(img, np.random.default_rng(s))[1].tobytes()
        if set(rec["order"]) & set(NOISE_OPS):
            noisy_seen += 1
            assert rest.tobytes() != a.tobytes()
            if set(rec["order"]) - set(NOISE_OPS):  # the other damages are in it too
                assert rest.tobytes() != clean.tobytes()
            else:
                assert rest.tobytes() == clean.tobytes()
        else:
            quiet_seen += 1
            assert rest.tobytes() == a.tobytes()
    assert noisy_seen > 5 and quiet_seen > 5
    # replayed draws: a damage after the noise lands on the same pixels in both copies
    y = np.asarray(img.convert("L"), np.float32)
    replayed = False
    for s in range(400):
        a, rest, _, rec = damage(img, np.random.default_rng(s), without=NOISE_OPS)
        if rec["order"][-2:] == ["grain", "dust"] or rec["order"] == ["grain", "scratches"]:
            mark = np.abs(np.asarray(rest, np.float32)[..., 0] - y) > 60  # the speck or scratch
            assert mark.any()
            assert np.abs(np.asarray(a, np.float32)[..., 0] - np.asarray(rest, np.float32)[..., 0])[mark].mean() < 30
            replayed = True
            break
    assert replayed


def test_denoise_stage_runs_first_and_tiles(tmp_path):
    """RepairConfig denoise: the stage's output is what the network repairs, dY is still from the
    input, the context is the input's, and the tiled result matches the untiled one."""
    cfg = RepairConfig(width=8, levels=2, blocks=1, context=32, quantiles=9, denoise=8)
    net = random_net(cfg)
    with torch.no_grad():
        net.pre.tail[-2].weight.normal_(0, 0.05)
    y = torch.rand(1, 1, 130, 170)
    with torch.no_grad():
        ctx = net.context(y)
        stage = y + net.pre(y)
        main = RepairNet(replace(cfg, denoise=0)).eval()
        main.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("pre.")})
        expected = stage - y + main(stage, ctx)
        got = net(y, ctx)
    assert (stage - y).abs().max() > 0.005  # the stage does change the photo
    assert torch.allclose(got, expected, atol=1e-6)
    y2 = torch.rand(1, 1, 300, 420)
    whole = residual(net, y2, tile=0, multiple=cfg.multiple)
    tiled = residual(net, y2, tile=96, overlap=64, multiple=cfg.multiple)
    assert (whole - tiled).abs().max().item() * 255 <= 1.0


def test_denoise_stage_trains_on_noise_alone_and_assembles_with_a_model(tmp_path):
    """train_repair target=denoise learns to remove grain and speckle only (its targets keep every
    other damage); export_repair --denoiser puts it in front of a model and chooses their gate."""
    from training import export_repair, train_repair
    from training.train_repair import RepairPairs

    net0 = random_net(RepairConfig(width=8, levels=1, blocks=1, context=16))
    init, data = saved_model_and_tiny_data(tmp_path, net0, RepairConfig(width=8, levels=1, blocks=1, context=16))
    pairs = RepairPairs(data / "train", 32, context=0, online=0.2, single=0.3, denoise=True)
    x, y, thumb = pairs.batch(0, 0, 8)
    assert thumb is None and x.shape == y.shape == (8, 1, 32, 32)
    with pytest.raises(SystemExit):
        RepairPairs(data / "train", 32, context=0, denoise=True)  # needs damage drawn afresh
    args = [f"data={data}", f"out={tmp_path / 'den'}", "width=8", "levels=1", "blocks=1", "context=0", "knots=0",
            "target=denoise", "online=0.2", "single=0.3", "crop_size=32", "batch_size=4", "steps=4",
            "eval_every=2", "threads=1"]
    with pytest.raises(SystemExit):
        train_repair.main([a for a in args if a not in ("context=0", "knots=0")])  # a stage has no context
    done = train_repair.main(args)
    assert done["step"] == 4 and set(done["val"]) == {"ungated"}
    den, den_cfg = load_repairer(str(tmp_path / "den" / "model"))
    assert den_cfg.context == 0 and den_cfg.shrink == 0 and den_cfg.gate_high == 0
    s = export_repair.main(["--model", str(init), "--denoiser", str(tmp_path / "den" / "model"),
                            "--data", str(data), "--out", str(tmp_path / "w")])
    both, both_cfg = load_repairer(str(tmp_path / "w"))
    assert both_cfg.denoise == 8 and s["denoiser"] and both_cfg.shrink == s["gate"]["shrink"]
    img = photo(80, 64, seed=5)
    yy = torch.from_numpy(np.asarray(img.convert("L"), np.float32) / 255)[None, None]
    with torch.no_grad():
        stage = yy + den(yy)
        by_hand = stage - yy + load_repairer(str(init))[0](stage, net0.context(yy))
        assert (both(yy) - by_hand).abs().max() < 2e-3  # fp16 weights
    with pytest.raises(SystemExit):  # a model with a stage takes no second one
        export_repair.main(["--model", str(tmp_path / "w"), "--denoiser", str(tmp_path / "den" / "model"),
                            "--data", str(data), "--out", str(tmp_path / "w2")])


def test_model_trains_behind_a_frozen_denoise_stage(tmp_path):
    """train_repair denoise=<width> init=<assembled model>: the model behind the stage learns, the
    stage stays as it was trained; without init it refuses (an untrained stage is no stage)."""
    from restoration.weights import load_tensors, save_tensors, write_config
    from training import train_repair

    cfg = RepairConfig(width=8, levels=1, blocks=1, context=16, denoise=8)
    net = random_net(cfg)
    init, data = saved_model_and_tiny_data(tmp_path, net, cfg)
    save_tensors(net.state_dict(), init / "repair.safetensors")
    write_config(init, cfg.to_dict())
    args = [f"data={data}", f"out={tmp_path / 'run'}", "width=8", "levels=1", "blocks=1", "context=16", "denoise=8",
            "online=0.2", "crop_size=32", "batch_size=4", "steps=3", "eval_every=3", "threads=1", "ema=0",
            "lr=0.01", "warmup=0"]
    with pytest.raises(SystemExit):
        train_repair.main(args)
    train_repair.main(args + [f"init={init}"])
    before = load_tensors(init / "repair.safetensors")
    after = load_tensors(tmp_path / "run" / "model" / "repair.safetensors")
    pre = [k for k in before if k.startswith("pre.")]
    assert pre and all(torch.allclose(before[k].float(), after[k].float(), atol=1e-3) for k in pre)
    assert any(not torch.allclose(before[k].float(), after[k].float(), atol=1e-4)
               for k in before if k.startswith("tail."))


def test_logmse_loss_is_minus_the_mean_psnr_of_the_crops():
    from training.train_repair import DEFAULTS, main, pixel_loss

    cfg = {**DEFAULTS, "loss": "logmse", "log_eps": 0.0}
    # two crops: one off by 0.1 everywhere (20 dB), one off by 0.01 (40 dB)
    err = torch.cat([torch.full((1, 1, 8, 8), 0.1), torch.full((1, 1, 8, 8), 0.01)])
    assert pixel_loss(err, cfg).item() == pytest.approx(-30.0, abs=1e-4)
    # each crop's dB counts alike: the same relative change of either crop moves the loss alike,
    # where the mean squared error over the batch hardly sees the small one
    err.requires_grad_(True)
    pixel_loss(err, cfg).backward()
    g = err.grad.flatten(1).sum(1)
    assert g[1] == pytest.approx(10 * g[0].item(), rel=1e-4)
    # log_eps bounds the pull of a crop already within it
    exact = torch.zeros(1, 1, 8, 8)
    assert pixel_loss(exact, {**cfg, "log_eps": 1e-4}).item() == pytest.approx(-40.0)
    with pytest.raises(SystemExit, match="loss 'huber'"):
        main(["loss=huber"])

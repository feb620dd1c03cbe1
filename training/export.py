"""Export trained runs as serving weights: safetensors (fp16 where it measurably loses nothing),
the config the handlers read, and a model card.

    python -m training.export --all --out weights        # runs/colorize, runs/sr_x2, runs/sr_x4
    python -m training.export --colorize runs/colorize --out weights
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from restoration.networks import GeneratorConfig, define_G
from training.data import PairDataset, SRDataset
from training.loop import load_checkpoint
from training.metrics import psnr

# fp16 weights are kept when their outputs match fp32's at least this closely (PSNR between the
# two outputs; 48 dB is an error of one 8-bit level), so the served picture does not change.
FP16_MIN_PSNR_DB = 48.0


def _val_metrics(run: Path, step: int | None = None) -> dict:
    """Validation metrics logged at ``step`` (default: the last ones)."""
    log = run / "log.jsonl"
    if not log.exists():
        return {}
    last = {}
    for line in log.read_text().splitlines():
        row = json.loads(line)
        if "val" in row and (step is None or row["step"] == step):
            last = {"step": row["step"], **row["val"]}
    return last


def _wall(run: Path) -> float:
    ck = load_checkpoint(run / "checkpoint.pt")
    return float(ck.get("wall", 0.0)), int(ck["step"]), ck.get("config", {})


@torch.no_grad()
def fp16_loss_db(make_model, state: dict, inputs: list[torch.Tensor], unit=lambda y: (y.clamp(-1, 1) + 1) / 2
                 ) -> float:
    """Worst PSNR (dB) between the outputs of fp32 weights and of the same weights rounded to fp16."""
    full, half = make_model(), make_model()
    full.load_state_dict(state)
    half.load_state_dict({k: v.half().float() if v.is_floating_point() else v for k, v in state.items()})
    full.eval()
    half.eval()
    worst = float("inf")
    for x in inputs:
        worst = min(worst, psnr(unit(full(x[None])), unit(half(x[None]))))
    return worst


CHROMA_SCALES = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)


@torch.no_grad()
def calibrate_chroma(G, val: PairDataset) -> tuple[float, list[dict]]:
    """Pick the chroma scale for serving on validation pairs: the highest PSNR against the
    originals among the scales whose colourfulness stays at least half of the originals'.

    A GAN colouriser guesses vivid colours; where the guess is wrong, a strong colour costs more
    than a muted one. The rule keeps the pictures colourful while not paying for confident guesses.
    """
    from restoration.color import network_to_rgb as to_rgb
    from training.metrics import colourfulness

    G.eval()
    outs, reals = [], []
    for i in range(len(val)):
        a, b = val.pair(i, None)
        outs.append((a[None], G(a[None]).float()))
        reals.append(to_rgb("colorize", a[None], b[None])[0])
    target = float(sum(colourfulness(r) for r in reals) / len(reals))
    table = []
    for s in CHROMA_SCALES:
        fakes = [to_rgb("colorize", a, o * s)[0] for a, o in outs]
        table.append({"scale": s, "psnr": sum(psnr(f, r) for f, r in zip(fakes, reals, strict=True)) / len(reals),
                      "colourfulness": sum(colourfulness(f) for f in fakes) / len(fakes), "target": target})
    ok = [row for row in table if row["colourfulness"] >= 0.5 * target] or table[:1]
    best = max(ok, key=lambda row: row["psnr"])
    return best["scale"], table


def card(title: str, lines: list[str]) -> str:
    return "# " + title + "\n\n" + "\n".join(lines) + "\n"


def best_colorize_checkpoint(run: Path, data: Path) -> tuple[Path, list[dict]]:
    """The kept colorize checkpoint that serves best on the whole validation set: each one's
    PSNR at its own calibrated chroma scale (as it would be exported), the highest wins.

    Training logs validate on a few images (``eval_images``) for speed; GAN checkpoints differ
    by more than that sample can tell apart, so the choice is made again on every pair."""
    val = None
    scores = []
    for path in sorted(run.glob("checkpoint_*.pt"), key=lambda p: int(p.stem.split("_")[1])):
        ck = load_checkpoint(path)
        gcfg = GeneratorConfig.from_dict(ck["generator"])
        if val is None:
            val = PairDataset(data / "val", "colorize", gcfg.work_size, gcfg.work_size, False)
        G = define_G(gcfg)
        G.load_state_dict(ck["G"])
        scale, table = calibrate_chroma(G, val)
        row = next(r for r in table if r["scale"] == scale)
        scores.append({"checkpoint": path.name, "step": int(ck["step"]), "chroma_scale": scale, "psnr": row["psnr"],
                       "colourfulness": row["colourfulness"], "target_colourfulness": row["target"]})
    if not scores:
        return run / "checkpoint.pt", []
    best = max(scores, key=lambda r: r["psnr"])
    return run / best["checkpoint"], scores


def export_colorize(run: Path, out: Path, data: Path, checkpoint: Path | None = None) -> dict:
    checkpoint = checkpoint or run / "checkpoint.pt"
    ck = load_checkpoint(checkpoint)
    gcfg = GeneratorConfig.from_dict(ck["generator"])
    state = ck["G"]
    val = PairDataset(data / "val", "colorize", gcfg.work_size, gcfg.work_size, False)
    inputs = [val.pair(i, None)[0] for i in range(min(8, len(val)))]
    fidelity = fp16_loss_db(lambda: define_G(gcfg), state, inputs)
    half = fidelity >= FP16_MIN_PSNR_DB
    G = define_G(gcfg)
    G.load_state_dict(state)
    gcfg.chroma_scale, chroma_table = calibrate_chroma(G, val)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in state.items()}
    save_file(tensors, str(out / "generator.safetensors"))
    (out / "config.json").write_text(json.dumps(gcfg.to_dict(), indent=2))
    wall, step, cfg = float(ck.get("wall", 0.0)), int(ck["step"]), ck.get("config", {})
    val_m = _val_metrics(run, step)
    params = sum(v.numel() for v in state.values() if v.is_floating_point())
    info = {"name": "colorize", "chroma_calibration": chroma_table, "steps": step, "wall_min": wall / 60, "fp16": half, "fp16_psnr_vs_fp32": fidelity,
            "params": params, "val": val_m, "config": cfg}
    (out / "MODEL_CARD.md").write_text(card("colorize — Pix2Pix UNet colouriser (Lab)", [
        "Predicts the a/b chroma of CIE Lab from the L channel of a photo (the reference Pix2Pix",
        "colourisation mode); the serving handler recombines it with the photo's full-resolution L.",
        "",
        f"- Architecture: UNet generator, num_downs={gcfg.num_downs}, ngf={gcfg.ngf}, norm={gcfg.norm}, "
        f"{params / 1e6:.2f} M parameters; 70×70 PatchGAN discriminator (ndf={cfg.get('ndf')}) in training.",
        f"- Working resolution: longest side {gcfg.work_size} px.",
        f"- Chroma scale {gcfg.chroma_scale}: chosen on the validation pairs as the highest PSNR whose colourfulness "
        "stays at least half of the originals' (table in export.json).",
        f"- Losses: cGAN ({cfg.get('gan_mode')}) + {cfg.get('lambda_l1')}·L1 + {cfg.get('lambda_colour')}·chroma-strength term.",
        f"- Training: {step} steps, batch {cfg.get('batch_size')}, Adam lr {cfg.get('lr')} β1 {cfg.get('beta1')}, "
        f"{wall / 60:.1f} min wall time on a 2-core CPU.",
        f"- Weights: {'fp16' if half else 'fp32'} safetensors (fp16 outputs vs fp32: {fidelity:.1f} dB PSNR).",
        "- Data and command: `make train` (training/recipe_cpu.sh, configs in training/configs/); see docs/training.md.",
        f"- Validation (generated pairs, step {val_m.get('step')}): " + ", ".join(
            f"{k} {v:.3f}" for k, v in val_m.items() if k != "step"),
        "- Held-out real photographs: see results in docs/training.md (python -m training.evaluate).",
        "- Trained briefly on a small CPU budget: colours are plausible, not faithful; expect brownish/greenish",
        "  guesses on objects whose colour the luminance does not determine.",
    ]))
    (out / "export.json").write_text(json.dumps(info, indent=2, default=str))
    return info


def best_sr_model(run: Path) -> Path:
    """The kept model_<step> directory with the highest validation PSNR-Y, else the latest model/."""
    scores = {}
    for line in (run / "log.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "val" in row and (run / f"model_{row['step']}").is_dir():
            scores[row["step"]] = row["val"]["psnr_y"]
    return run / f"model_{max(scores, key=scores.get)}" if scores else run / "model"


def export_sr(run: Path, out: Path, data: Path, model_dir: Path | None = None) -> dict:
    from restoration.upscaler import build_sr_model

    model_dir = model_dir or run / "model"
    conf = json.loads((model_dir / "config.json").read_text())
    scale = int(conf["scale"])
    state = torch.load(model_dir / f"pytorch_model_{scale}x.pt", map_location="cpu", weights_only=True)

    model_type = str(conf.get("model_type", "EDSR")).upper()

    def make():
        return build_sr_model(model_type, **{k: v for k, v in conf.items() if k != "model_type"})

    val = SRDataset(data / "val", scale, 48, False)
    inputs = [val.pair(i, None)[0] for i in range(min(6, len(val)))]
    fidelity = fp16_loss_db(make, state, inputs, unit=lambda y: y.clamp(0, 1))
    half = fidelity >= FP16_MIN_PSNR_DB
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(model_dir / "config.json", out / "config.json")
    # The library's own layout (loadable with EdsrModel.from_pretrained) ...
    shutil.copy2(model_dir / f"pytorch_model_{scale}x.pt", out / f"pytorch_model_{scale}x.pt")
    # ... and safetensors, which the archive step prefers (no pickle at load time).
    save_file({k: (v.half() if half else v).contiguous() for k, v in state.items()},
              str(out / f"model_{scale}x.safetensors"))
    wall, last_step, cfg = _wall(run)
    step = int(model_dir.name.split("_")[1]) if model_dir.name.startswith("model_") else last_step
    val_m = _val_metrics(run, step)
    params = sum(v.numel() for v in state.values())
    info = {"name": f"sr_x{scale}", "steps": step, "wall_min": wall / 60, "fp16": half, "params": params,
            "fp16_psnr_vs_fp32": fidelity, "val": val_m, "config": cfg}
    if model_type == "EDSR":
        shape = f"EdsrModel: {conf['n_resblocks']} residual blocks, {conf['n_feats']} features"
    else:
        fields = cfg.get("arch") or {}
        shape = f"{model_type.capitalize()}Model" + (": " + ", ".join(f"{k} {v}" for k, v in fields.items()) if fields else "")
    (out / "MODEL_CARD.md").write_text(card(f"sr_x{scale} — {model_type} (super-image) ×{scale}", [
        f"A small {model_type} from the `super-image` library ({shape}, "
        f"{params / 1e6:.2f} M parameters), trained on HR/LR pairs made by dataset_gen.",
        "",
        f"- Training: {last_step} steps ({'this is the validation-best model, from step ' + str(step) if step != last_step else 'the last model'}), L1 loss, batch {cfg.get('batch_size')} of {cfg.get('patch')}² LR patches, "
        f"Adam lr {cfg.get('lr')} with cosine decay{', initialised from ' + cfg['init'] if cfg.get('init') else ''}; "
        f"{wall / 60:.1f} min on a 2-core CPU.",
        f"- Files: the library's layout (config.json + pytorch_model_{scale}x.pt, loadable with "
        f"`{model_type.capitalize()}Model.from_pretrained`) and model_{scale}x.safetensors ({'fp16' if half else 'fp32'}; fp16 vs fp32 "
        f"outputs: {fidelity:.1f} dB PSNR) which serving prefers.",
        "- Data and command: `make train` (training/recipe_cpu.sh, configs in training/configs/); see docs/training.md.",
        f"- Validation (generated pairs, step {val_m.get('step')}): " + ", ".join(
            f"{k} {v:.3f}" for k, v in val_m.items() if k != "step"),
    ]))
    (out / "export.json").write_text(json.dumps(info, indent=2, default=str))
    return info


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--all", action="store_true", help="runs/colorize, runs/sr_x2, runs/sr_x4")
    p.add_argument("--colorize")
    p.add_argument("--best", action="store_true",
                   help="export the kept checkpoints with the best validation PSNR instead of the last ones "
                        "(colorize: measured on every validation pair at each checkpoint's calibrated chroma scale)")
    p.add_argument("--sr", action="append", default=[], help="an SR run folder (repeatable)")
    p.add_argument("--data-colorize", default="data/colorize")
    p.add_argument("--data-sr", default="data/sr")
    p.add_argument("--out", default="weights")
    a = p.parse_args(argv)
    out = Path(a.out)
    col = a.colorize or ("runs/colorize" if a.all else None)
    srs = a.sr or (["runs/sr_x2", "runs/sr_x4"] if a.all else [])
    if col:
        ck, scores = best_colorize_checkpoint(Path(col), Path(a.data_colorize)) if a.best else (None, [])
        for row in scores:
            print(f"{row['checkpoint']}: validation PSNR {row['psnr']:.2f} dB at chroma scale {row['chroma_scale']}, "
                  f"colourfulness {row['colourfulness']:.1f} (originals {row['target_colourfulness']:.1f})")
        info = export_colorize(Path(col), out / "colorize", Path(a.data_colorize), ck)
        if scores:
            info["checkpoint_selection"] = scores
            (out / "colorize" / "export.json").write_text(json.dumps(info, indent=2, default=str))
        print(json.dumps(info, default=str)[:400])
    for run in srs:
        conf = json.loads((Path(run) / "model" / "config.json").read_text())
        model_dir = best_sr_model(Path(run)) if a.best else None
        info = export_sr(Path(run), out / f"sr_x{conf['scale']}", Path(a.data_sr), model_dir)
        print(json.dumps(info, default=str)[:400])


if __name__ == "__main__":
    main()

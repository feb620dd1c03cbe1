"""Export one kept repair model (``runs/<run>/model_<step>``) as serving weights, with its gate
chosen on validation as a finished run does (training.train_repair.choose_gate).

    python -m training.export_repair --model runs/repair_tone2/model_3000 --data data/repair2 --out weights/repair
    python -m training.export_repair --model weights/repair --denoiser runs/denoise/model --data data/repair2 --out DIR

A run exports its last model with a gate; this picks an earlier one, e.g. the validation-best.
``--denoiser`` puts a noise-removal stage (``train_repair target=denoise``) in front of the model
(RepairConfig ``denoise``); the gate is then chosen for the two together.
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import replace
from pathlib import Path

from restoration.repair import REPAIR_FILES, RepairConfig, RepairNet, build, load_repairer
from restoration.weights import save_tensors, write_config
from training.train_repair import choose_gate, load_pairs, measure


def with_denoiser(net: RepairNet, cfg: RepairConfig, denoiser: str) -> tuple[RepairNet, RepairConfig]:
    """The model ``net`` with the noise-removal stage in ``denoiser`` (a weights directory) in front."""
    pre, pre_cfg = load_repairer(denoiser)
    if pre_cfg.context or pre_cfg.knots or pre_cfg.denoise or pre_cfg.levels != cfg.levels:
        raise SystemExit(f"{denoiser}: not a noise-removal stage for this model (train_repair target=denoise, "
                         f"context=0, knots=0, levels={cfg.levels})")
    if cfg.denoise:
        raise SystemExit("the model has a noise-removal stage already")
    if pre_cfg.blocks != cfg.blocks:
        raise SystemExit(f"{denoiser}: blocks {pre_cfg.blocks}, the model {cfg.blocks}: they must match")
    both_cfg = replace(cfg, denoise=pre_cfg.width)
    both = build(both_cfg)
    state = dict(net.state_dict())
    state.update({f"pre.{k}": v for k, v in pre.state_dict().items()})
    both.load_state_dict(state, strict=True)
    return both.eval(), both_cfg


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a kept model directory (config.json + repair.safetensors)")
    p.add_argument("--denoiser", default="", help="a noise-removal stage to put in front (train_repair target=denoise)")
    p.add_argument("--data", required=True, help="the dataset whose val/ chooses the gate")
    p.add_argument("--out", required=True)
    p.add_argument("--eval-max", type=int, default=120)
    p.add_argument("--clean-min-db", type=float, default=40.0)
    a = p.parse_args(argv)
    out = Path(a.out)
    if out.resolve() == Path(a.model).resolve():
        raise SystemExit("--out must differ from --model")
    net, cfg = load_repairer(a.model)
    if a.denoiser:
        net, cfg = with_denoiser(net, cfg, a.denoiser)
    val = load_pairs(Path(a.data) / "val", a.eval_max)
    ungated = measure(net, val, cfg.ungated(), "cpu")
    chosen, gated = choose_gate(net, val, cfg.ungated(), "cpu", a.clean_min_db)
    out.mkdir(parents=True, exist_ok=True)
    if a.denoiser:
        save_tensors(net.state_dict(), out / REPAIR_FILES[0], half=True)
    else:  # the kept model's file as it is
        shutil.copy(Path(a.model) / REPAIR_FILES[0], out / REPAIR_FILES[0])
    write_config(out, chosen.to_dict())
    summary = {"model": str(a.model), "denoiser": a.denoiser or None, "val_ungated": ungated, "val_gated": gated,
               "gate": {k: getattr(chosen, k) for k in ("shrink", "gate_low", "gate_high", "band_sigma",
                                                                "tone_low", "tone_high")}}
    (out / "export.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()

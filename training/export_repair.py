"""Export one kept repair model (``runs/<run>/model_<step>``) as serving weights, with its gate
chosen on validation as a finished run does (training.train_repair.choose_gate).

    python -m training.export_repair --model runs/repair_tone2/model_3000 --data data/repair2 --out weights/repair

A run exports its last model with a gate; this picks an earlier one, e.g. the validation-best.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from restoration.repair import REPAIR_FILES, load_repairer
from restoration.weights import write_config
from training.train_repair import choose_gate, load_pairs, measure


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a kept model directory (config.json + repair.safetensors)")
    p.add_argument("--data", required=True, help="the dataset whose val/ chooses the gate")
    p.add_argument("--out", required=True)
    p.add_argument("--eval-max", type=int, default=120)
    p.add_argument("--clean-min-db", type=float, default=40.0)
    a = p.parse_args(argv)
    net, cfg = load_repairer(a.model)
    val = load_pairs(Path(a.data) / "val", a.eval_max)
    ungated = measure(net, val, cfg.ungated(), "cpu")
    chosen, gated = choose_gate(net, val, cfg.ungated(), "cpu", a.clean_min_db)
    out = Path(a.out)
    if out.resolve() == Path(a.model).resolve():
        raise SystemExit("--out must differ from --model")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(a.model) / REPAIR_FILES[0], out / REPAIR_FILES[0])
    write_config(out, chosen.to_dict())
    summary = {"model": str(a.model), "val_ungated": ungated, "val_gated": gated,
               "gate": {k: getattr(chosen, k) for k in ("shrink", "gate_low", "gate_high", "band_sigma",
                                                                "tone_low", "tone_high")}}
    (out / "export.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()

"""Build the TorchServe archives: ``repair.mar``, ``colorize.mar``, ``sr_x2.mar``, ``sr_x4.mar`` and ``restore.war``.

Weights come from local directories (the committed defaults under ``weights/`` unless a flag or
environment variable names others) or, for SR, from a hub name such as ``eugenesiow/edsr-base``
when the build machine has internet. Either way they are baked into the archive: nothing is
downloaded at serve time.

    python -m serving.archive                      # defaults from weights/
    python -m serving.archive --sr-x2 eugenesiow/edsr-base --colorize path/to/pix2pix_run
    REPAIR_WEIGHTS=... COLORIZE_WEIGHTS=... SR_X2_WEIGHTS=... SR_X4_WEIGHTS=... python -m serving.archive
    python -m serving.archive --onnx               # also an ONNX graph per model (PIX2PIX_ONNX=1)

With ``--onnx`` each model archive also carries ``model.onnx``, exported from the same weights,
which workers run with ONNX Runtime when ``PIX2PIX_BACKEND=onnxruntime`` (restoration/backends.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from restoration.names import COLORIZE, MODELS, REPAIR, SR_SCALES, SR_X2, SR_X4, WORKFLOW_RESTORE
from restoration.repair import REPAIR_FILES
from restoration.settings import env_flag
from restoration.upscaler import COMPRESSED_DIR
from restoration.weights import COLORIZE_FILES, sr_files

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WEIGHTS = {name: ROOT / "weights" / name for name in MODELS}
ENV_VARS = {name: f"{name.upper()}_WEIGHTS" for name in MODELS}
HANDLER_FILES = {REPAIR: "handlers/repair.py", COLORIZE: "handlers/colorize.py", SR_X2: "handlers/super_resolution.py",
                 SR_X4: "handlers/super_resolution.py"}
# Packages the workers import, copied whole into each archive (every module, no hand-kept list):
# the core (models, colour, image decoding) and the TorchServe adapters.
PACKAGES = ("restoration", "handlers")


def tool_path(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def _stage_code(stage: Path) -> None:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, stage / package, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def resolve_sr(source: str, scale: int, tmp: Path) -> Path:
    """A local super-image directory, or a hub name downloaded now (build time only)."""
    path = Path(source)
    if path.is_dir():
        return path
    if "/" not in source:
        raise SystemExit(f"{source!r} is neither a directory nor a hub name like 'eugenesiow/edsr-base'")
    from restoration.upscaler import MODEL_TYPES, model_classes

    # Hub names carry the architecture (eugenesiow/edsr-base, eugenesiow/msrn, ...).
    model_type = next((t for t in MODEL_TYPES if t.lower() in source.lower()), "EDSR")
    model_cls, _ = model_classes(model_type)
    out = tmp / f"hub_{scale}x"
    try:
        model = model_cls.from_pretrained(source, scale=scale)
    except Exception as exc:  # noqa: BLE001 - offline build machines end here
        raise SystemExit(f"could not download {source} ×{scale} ({exc}); on a machine without internet pass "
                         "a local directory laid out as super-image saves models instead") from exc
    model.save_pretrained(str(out))
    return out


def export_onnx_graph(name: str, stage: Path, weights: Path) -> Path | None:
    """Export the network of ``weights`` as ``stage/model.onnx`` (the input's free axes dynamic)."""
    import torch

    from restoration.backends import ONNX_FILE, export_onnx

    if name == COLORIZE:
        import math

        from restoration.colorizer import input_multiple, load_generator

        net, cfg = load_generator(str(weights))
        m = input_multiple(cfg)
        side = max(m, math.ceil(cfg.work_size / m) * m)
        # batches of 1..64 inputs, each padded to the same square (restoration/colorizer.py)
        return export_onnx(net, torch.zeros(2, 1, side, side), stage / ONNX_FILE, {0: "batch"})
    if name == REPAIR:
        return None  # served by eager PyTorch only: its tiles take a whole-photo context as a second input
    from restoration.upscaler import load_sr_model

    net, _ = load_sr_model(str(weights), scale=SR_SCALES[name])
    return export_onnx(net, torch.rand(1, 3, 48, 40), stage / ONNX_FILE, {2: "height", 3: "width"})


def build_model(name: str, weights: Path, export: Path, tmp: Path, onnx: bool = False) -> Path:
    """Archive one model: handler + shared code + weights + config into ``export/name.mar``."""
    stage = tmp / name
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    _stage_code(stage)
    candidates = list(COLORIZE_FILES if name == COLORIZE else REPAIR_FILES if name == REPAIR else sr_files(SR_SCALES[name]))
    serialized = next((weights / c for c in candidates if (weights / c).exists()), None)
    if serialized is None:
        raise SystemExit(f"no weights for {name} in {weights}: expected one of {', '.join(candidates)}")
    cfg = weights / "config.json"
    if cfg.exists():
        shutil.copy2(cfg, stage / "config.json")
    elif name != COLORIZE:
        raise SystemExit(f"{weights} has no config.json")
    if name in SR_SCALES:
        # The archive serves exactly the scale its name says, whatever the directory holds.
        data = json.loads((stage / "config.json").read_text())
        data["scale"] = SR_SCALES[name]
        (stage / "config.json").write_text(json.dumps(data, indent=2))
    if name in SR_SCALES and (weights / COMPRESSED_DIR).is_dir():
        # the variant for compressed inputs (restoration.upscaler.COMPRESSED_DIR)
        shutil.copytree(weights / COMPRESSED_DIR, stage / COMPRESSED_DIR)
    card = weights / "MODEL_CARD.md"
    if card.exists():
        shutil.copy2(card, stage / "MODEL_CARD.md")
    if onnx:
        export_onnx_graph(name, stage, weights)
    cmd = [
        tool_path("torch-model-archiver"), "--model-name", name, "--version", "1.0",
        "--handler", str(ROOT / HANDLER_FILES[name]),
        "--serialized-file", str(serialized),
        "--extra-files", str(stage),
        "--export-path", str(export), "--force",
    ]
    subprocess.run(cmd, check=True)
    return export / f"{name}.mar"


def build_workflow(export: Path) -> Path:
    """Archive the ``restore`` workflow (spec + node functions) into ``export/restore.war``."""
    cmd = [
        tool_path("torch-workflow-archiver"), "--workflow-name", WORKFLOW_RESTORE,
        "--spec-file", str(ROOT / "serving" / "restore.yaml"),
        "--handler", str(ROOT / "serving" / "restore_workflow.py"),
        "--export-path", str(export), "--force",
    ]
    subprocess.run(cmd, check=True)
    return export / f"{WORKFLOW_RESTORE}.war"


def build_all(export: Path, sources: dict[str, str], onnx: bool | None = None) -> list[Path]:
    """Build every archive into ``export``; ``sources`` maps model name → weights dir or hub name;
    ``onnx`` adds ONNX graphs (default: the ``PIX2PIX_ONNX`` environment variable)."""
    if onnx is None:
        onnx = env_flag("PIX2PIX_ONNX", False)
    export.mkdir(parents=True, exist_ok=True)
    built = []
    with tempfile.TemporaryDirectory(prefix="pix2pix-sr-archive-") as t:
        tmp = Path(t)
        for name in MODELS:
            src = sources.get(name) or str(DEFAULT_WEIGHTS[name])
            weights = resolve_sr(src, SR_SCALES[name], tmp) if name in SR_SCALES else Path(src)
            if not weights.is_dir():
                raise SystemExit(f"weights for {name}: {src} is not a directory")
            built.append(build_model(name, weights, export, tmp, onnx=onnx))
    built.append(build_workflow(export))
    return built


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "model_store"), help="where the archives go")
    for name in MODELS:
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name,
                            default=os.environ.get(ENV_VARS[name]) or str(DEFAULT_WEIGHTS[name]),
                            help=f"weights directory (or hub name for SR); env {ENV_VARS[name]}")
    parser.add_argument("--onnx", action="store_true", default=None,
                        help="also export each network as model.onnx (for PIX2PIX_BACKEND=onnxruntime)")
    args = parser.parse_args(argv)
    built = build_all(Path(args.out), {n: getattr(args, n) for n in MODELS}, onnx=args.onnx)
    for path in built:
        print(f"built {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()

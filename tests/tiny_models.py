"""Tiny, randomly initialised weights in the serving layouts, made by the tests themselves.

They exercise the real loading and inference code paths in seconds; they are test fixtures,
never served as trained models.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch


def make_colorize(root: Path, seed: int = 0, work_size: int = 64, num_downs: int = 6, ngf: int = 8) -> Path:
    """A small UNet colouriser in ``root/colorize`` (config.json + generator.safetensors)."""
    from safetensors.torch import save_file

    from restoration.networks import GeneratorConfig, define_G, init_weights

    torch.manual_seed(seed)
    cfg = GeneratorConfig(num_downs=num_downs, ngf=ngf, work_size=work_size, norm="batch")
    net = define_G(cfg)
    init_weights(net)
    out = root / "colorize"
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out / "generator.safetensors"))
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    return out


def make_chroma(root: Path, seed: int = 0, work_size: int = 64, width: int = 16, blocks: int = 1) -> Path:
    """A small classification colouriser (restoration.chroma) in ``root/colorize``."""
    from restoration.chroma import ChromaConfig, build
    from restoration.weights import COLORIZE_FILE, save_tensors, write_config

    torch.manual_seed(seed)
    cfg = ChromaConfig(width=width, blocks=blocks, work_size=work_size, vividness=0.5)
    net, centres = build(cfg)
    cfg.num_bins = len(centres)
    with torch.no_grad():  # spread the logits so the decoding temperature visibly matters
        net.head.weight.mul_(20.0)
    out = root / "colorize"
    save_tensors(net.state_dict(), (out.mkdir(parents=True, exist_ok=True), out / COLORIZE_FILE)[1])
    write_config(out, cfg.to_dict())
    return out


def make_sr(root: Path, scale: int, seed: int = 0, n_resblocks: int = 2, n_feats: int = 8) -> Path:
    """A small super-image EDSR in ``root/sr_x{scale}``, saved with the library's save_pretrained."""
    from super_image import EdsrConfig, EdsrModel

    torch.manual_seed(seed + scale)
    model = EdsrModel(EdsrConfig(scale=scale, n_resblocks=n_resblocks, n_feats=n_feats))
    out = root / f"sr_x{scale}"
    model.save_pretrained(str(out))
    return out


def make_repair(root: Path, seed: int = 0, width: int = 8, levels: int = 1, blocks: int = 1) -> Path:
    """A small repair network (restoration.repair) in ``root/repair``, its output layer randomised
    so that it visibly changes a photo (a trained one starts from zero there)."""
    from restoration.repair import REPAIR_FILES, RepairConfig, build
    from restoration.weights import save_tensors, write_config

    torch.manual_seed(seed)
    cfg = RepairConfig(width=width, levels=levels, blocks=blocks, tile=128, overlap=32)
    net = build(cfg)
    with torch.no_grad():
        net.tail[-2].weight.normal_(0.0, 0.05)
    out = root / "repair"
    out.mkdir(parents=True, exist_ok=True)
    save_tensors(net.state_dict(), out / REPAIR_FILES[0])
    write_config(out, cfg.to_dict())
    return out


def make_sr_compressed(sr_dir: Path, seed: int = 7) -> Path:
    """A second ×2 model in ``sr_dir/compressed`` (the variant for compressed inputs)."""
    made = make_sr(sr_dir / "_variant", 2, seed=seed)
    out = sr_dir / "compressed"
    made.rename(out)
    (sr_dir / "_variant").rmdir()
    return out


def make_all(root: Path) -> dict[str, Path]:
    """Weights for every served model: {"colorize": dir, "sr_x2": dir, "sr_x4": dir}, and the
    Pix2Pix UNet colouriser the service still loads ("colorize_pix2pix")."""
    sr_x2 = make_sr(root, 2)
    make_sr_compressed(sr_x2)
    return {"repair": make_repair(root), "colorize": make_chroma(root), "sr_x2": sr_x2, "sr_x4": make_sr(root, 4),
            "colorize_pix2pix": make_colorize(root / "pix2pix")}

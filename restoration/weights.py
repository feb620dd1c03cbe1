"""The layout of a weights directory, in one place: file names, loading, saving.

A directory holds ``config.json`` and the tensors: ``generator.safetensors`` for the colouriser
(either architecture, told apart by the config's ``arch``), ``model_{s}x.safetensors`` and/or
super-image's ``pytorch_model_{s}x.pt`` for super-resolution. Tensors load from safetensors, or
with ``torch.load(weights_only=True)`` (never unpickling arbitrary objects), and are cast to
float32 (files may be stored as fp16).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

CONFIG = "config.json"
COLORIZE_FILES = ("generator.safetensors", "latest_net_G.pth", "generator.pth")
COLORIZE_FILE = COLORIZE_FILES[0]


def sr_files(scale: int) -> tuple[str, str]:
    """(safetensors, super-image's own .pt) file names of a ×``scale`` model."""
    return f"model_{scale}x.safetensors", f"pytorch_model_{scale}x.pt"


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from safetensors or a torch file (``weights_only=True``), floats as float32."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def save_tensors(state: dict[str, torch.Tensor], path: str | Path, half: bool = False) -> None:
    from safetensors.torch import save_file

    out = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous() for k, v in state.items()}
    save_file(out, str(path))


def read_config(model_dir: str | Path) -> dict:
    path = Path(model_dir) / CONFIG
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def write_config(model_dir: str | Path, config: dict) -> None:
    Path(model_dir).mkdir(parents=True, exist_ok=True)
    (Path(model_dir) / CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def first_existing(model_dir: str | Path, names: tuple[str, ...]) -> Path:
    for name in names:
        path = Path(model_dir) / name
        if path.exists():
            return path
    raise FileNotFoundError(f"no weights ({', '.join(names)}) in {model_dir}")

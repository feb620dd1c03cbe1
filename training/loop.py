"""The skeleton every trainer shares: device and DDP set-up, seeding, threads, ``log.jsonl``,
atomic resumable checkpoints (loaded with ``weights_only=True``), the time budget, a cosine
learning rate with warm-up, and a weight average (EMA)."""

from __future__ import annotations

import copy
import json
import math
import os
import time
from pathlib import Path

import torch


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """A checkpoint written by these trainers, with ``weights_only=True`` (no arbitrary objects).
    Checkpoints of earlier versions hold NumPy scalars (learning rates in the optimiser state):
    those, and only those, are allowed too."""
    import numpy as np

    allowed = [np._core.multiarray.scalar, np.dtype, type(np.dtype(np.float64))]
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, map_location=map_location, weights_only=True)


class Run:
    """One training run's surroundings. ``cfg`` needs ``out``, ``seed``, ``threads``, ``minutes``,
    ``resume``; the trainer owns the models, losses and data."""

    def __init__(self, cfg: dict) -> None:
        self.cfg = cfg
        self.ddp = "RANK" in os.environ and "WORLD_SIZE" in os.environ
        self.rank, self.world = (int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])) if self.ddp else (0, 1)
        cuda = torch.cuda.is_available()
        self.device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu")
        if self.ddp:
            if cuda:  # each process on its own GPU (NCCL would otherwise put every rank's work on cuda:0)
                torch.cuda.set_device(self.device)
            torch.distributed.init_process_group("nccl" if cuda else "gloo")
        if cfg.get("threads"):
            torch.set_num_threads(int(cfg["threads"]))
        torch.manual_seed(int(cfg.get("seed", 0)))
        self.master = self.rank == 0
        self.amp = self.device.type == "cuda"
        self.out = Path(cfg["out"])
        self.out.mkdir(parents=True, exist_ok=True)
        self.ckpt_path = self.out / "checkpoint.pt"
        self._log = open(self.out / "log.jsonl", "a", encoding="utf-8") if self.master else None  # noqa: SIM115
        self.budget = float(cfg.get("minutes") or 0) * 60.0
        self.t_start = time.time()

    # -- bookkeeping -------------------------------------------------------------------------
    def log(self, record: dict) -> None:
        if self._log is not None:
            self._log.write(json.dumps(record) + "\n")
            self._log.flush()

    def elapsed(self) -> float:
        return time.time() - self.t_start

    def out_of_time(self) -> bool:
        return bool(self.budget) and self.elapsed() > self.budget

    def resume(self) -> dict | None:
        """The checkpoint's contents when ``resume`` is set and one exists (wall time carried on)."""
        if not (self.cfg.get("resume") and self.ckpt_path.exists()):
            return None
        ck = load_checkpoint(self.ckpt_path, self.device)
        self.t_start = time.time() - float(ck.get("wall", 0.0))
        return ck

    def save(self, state: dict) -> None:
        """Atomically write the checkpoint (tensors, numbers, strings and dicts of them only)."""
        if not self.master:
            return
        state = dict(state, wall=self.elapsed())
        tmp = self.ckpt_path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.ckpt_path)

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        return torch.nn.parallel.DistributedDataParallel(model) if self.ddp else model

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
        if self.ddp:
            torch.distributed.destroy_process_group()


def cosine_lr(base: float, step: int, steps: int, warmup: int, floor: float = 0.0) -> float:
    """Linear warm-up, then a cosine from ``base`` down to ``floor · base`` at ``steps``."""
    warm = min(1.0, (step + 1) / max(1, warmup))
    cos = 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(1, steps))))
    return base * warm * (floor + (1 - floor) * cos)


class EMA:
    """Exponential moving average of a model's parameters (buffers copied as they are)."""

    def __init__(self, model: torch.nn.Module, decay: float = 0.999) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))  # short warm-up: early averages follow closely
        for e, p in zip(self.model.parameters(), model.parameters(), strict=True):
            e.mul_(d).add_(p.detach(), alpha=1 - d)
        for e, b in zip(self.model.buffers(), model.buffers(), strict=True):
            e.copy_(b)

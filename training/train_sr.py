"""Train or fine-tune a `super-image` model (EDSR by default) on HR/LR pairs from dataset_gen.

    python -m training.train_sr --config training/configs/sr_x2_cpu.yaml
    python -m training.train_sr scale=4 init=weights/sr_x2 steps=2000      # key=value overrides
    torchrun --nproc_per_node=8 -m training.train_sr --config training/configs/sr_gpu.yaml

The model is the library's own class (``EdsrModel``/``EdsrConfig``) and is saved with its
``save_pretrained`` layout (config.json + pytorch_model_{scale}x.pt), so the archive step serves
hub models and ours alike. ``init`` starts from another model's body (e.g. ×4 from ×2: the
upsampler differs, the rest transfers). L1 loss, Adam, cosine decay, checkpoints and resume,
validation PSNR-Y/SSIM against bicubic every ``eval_every`` steps.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from training import config
from training.data import SRDataset
from training.metrics import psnr_y, ssim

DEFAULTS = {
    "data": "data/sr", "out": "runs/sr_x2", "scale": 2,
    "model_type": "EDSR", "n_resblocks": 8, "n_feats": 32, "res_scale": 1.0, "init": "",
    "patch": 48, "batch_size": 16, "lr": 5e-4, "steps": 3000, "minutes": 0.0, "warmup": 100,
    "eval_every": 250, "ckpt_every": 250, "eval_images": 24, "seed": 0, "threads": 0, "resume": False,
    "stop_at": 0,  # stop (checkpointed) at this step, as an interruption would; resume=true goes on
}


def load_config(argv: list[str] | None = None) -> dict:
    return config.load_config(DEFAULTS, __doc__, argv)


def build_model(cfg: dict):
    from super_image import EdsrConfig, EdsrModel

    if cfg["model_type"].upper() != "EDSR":
        raise SystemExit("training here covers EDSR; other super-image models are served, not trained")
    conf = EdsrConfig(scale=cfg["scale"], n_resblocks=cfg["n_resblocks"], n_feats=cfg["n_feats"],
                      res_scale=cfg["res_scale"])
    return EdsrModel(conf)


def init_from(model, path: str) -> int:
    """Copy every tensor whose name and shape match from a saved model directory; returns how many."""
    files = sorted(Path(path).glob("pytorch_model_*x.pt"))
    if not files:
        raise SystemExit(f"init={path}: no pytorch_model_*x.pt")
    src = torch.load(files[0], map_location="cpu", weights_only=True)
    own = model.state_dict()
    n = 0
    for k, v in src.items():
        if k in own and own[k].shape == v.shape:
            own[k].copy_(v)
            n += 1
    return n


def bicubic_up(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """PIL bicubic upscaling (the baseline SR papers report), for one 3×h×w image."""
    img = Image.fromarray((lr.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())
    up = img.resize((img.width * scale, img.height * scale), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(up).copy()).permute(2, 0, 1).float() / 255


@torch.no_grad()
def evaluate(model, val: SRDataset, cfg: dict, device) -> dict:
    model.eval()
    s = cfg["scale"]
    res = {"psnr_y": [], "ssim": [], "bicubic_psnr_y": [], "bicubic_ssim": []}
    for i in range(min(len(val), cfg["eval_images"])):
        lr, hr = val.pair(i, None)
        sr = model(lr[None].to(device)).float().clamp(0, 1)[0].cpu()
        sr = (sr * 255).round() / 255  # as served: 8-bit output
        bic = bicubic_up(lr, s)
        res["psnr_y"].append(psnr_y(sr, hr, s))
        res["bicubic_psnr_y"].append(psnr_y(bic, hr, s))
        res["ssim"].append(ssim(sr, hr))
        res["bicubic_ssim"].append(ssim(bic, hr))
    model.train()
    out = {k: float(np.mean(v)) for k, v in res.items()}
    out["gain_db"] = out["psnr_y"] - out["bicubic_psnr_y"]
    return out


def main(argv: list[str] | None = None) -> dict:
    cfg = load_config(argv)
    ddp = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    rank, world = (int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])) if ddp else (0, 1)
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    if ddp:
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if cfg["threads"]:
        torch.set_num_threads(int(cfg["threads"]))
    master = rank == 0
    torch.manual_seed(cfg["seed"])
    out_dir = Path(cfg["out"])
    out_dir.mkdir(parents=True, exist_ok=True)
    model = build_model(cfg).to(device)
    if cfg["init"]:
        n = init_from(model, cfg["init"])
        if master:
            print(f"initialised {n} tensors from {cfg['init']}")
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], betas=(0.9, 0.999))
    step, wall = 0, 0.0
    ckpt_path = out_dir / "checkpoint.pt"
    if cfg["resume"] and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)  # our own file
        torch.nn.Module.load_state_dict(model, ck["model"])
        opt.load_state_dict(ck["opt"])
        step, wall = ck["step"], ck.get("wall", 0.0)
        if master:
            print(f"resumed at step {step}")
    train_model = torch.nn.parallel.DistributedDataParallel(model) if ddp else model
    train = SRDataset(Path(cfg["data"]) / "train", cfg["scale"], cfg["patch"], True)
    val_dir = Path(cfg["data"]) / "val"
    val = SRDataset(val_dir, cfg["scale"], cfg["patch"], False) if (val_dir / "hr").is_dir() else None
    amp = device.type == "cuda"
    log = open(out_dir / "log.jsonl", "a", encoding="utf-8") if master else None  # noqa: SIM115 (open for the run)
    budget = cfg["minutes"] * 60.0
    t_start = time.time() - wall
    metrics: dict = {}
    bar = tqdm(total=cfg["steps"], initial=step, desc=f"sr x{cfg['scale']}", disable=not master)
    while step < cfg["steps"]:
        lr_now = cfg["lr"] * min(1.0, (step + 1) / cfg["warmup"]) * 0.5 * (1 + np.cos(np.pi * step / cfg["steps"]))
        for g in opt.param_groups:
            g["lr"] = lr_now
        lr_b, hr_b = train.batch(cfg["seed"], step, cfg["batch_size"], rank, world)
        lr_b, hr_b = lr_b.to(device), hr_b.to(device)
        with torch.autocast(device.type, enabled=amp, dtype=torch.bfloat16):
            loss = F.l1_loss(train_model(lr_b).float(), hr_b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        bar.update(1)
        if master and (step % 25 == 0 or step == 1):
            log.write(json.dumps({"step": step, "loss": loss.item(), "lr": lr_now, "wall_s": time.time() - t_start})
                      + "\n")
            log.flush()
            bar.set_postfix(l1=f"{loss.item():.4f}")
        out_of_time = (budget and time.time() - t_start > budget) or step == cfg["stop_at"]
        if master and (step % cfg["ckpt_every"] == 0 or step == cfg["steps"] or out_of_time):
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                        "wall": time.time() - t_start, "config": cfg}, ckpt_path.with_suffix(".tmp"))
            ckpt_path.with_suffix(".tmp").replace(ckpt_path)
            model.save_pretrained(str(out_dir / "model"))
        if master and val is not None and (step % cfg["eval_every"] == 0 or step == cfg["steps"] or out_of_time):
            metrics = evaluate(model, val, cfg, device)
            model.save_pretrained(str(out_dir / f"model_{step}"))  # kept: export --best picks one
            log.write(json.dumps({"step": step, "val": metrics}) + "\n")
            log.flush()
            tqdm.write(f"step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
        if out_of_time:
            tqdm.write(f"time budget of {cfg['minutes']} min reached at step {step}")
            break
    bar.close()
    if master:
        log.close()
        model.save_pretrained(str(out_dir / "model"))
    if ddp:
        torch.distributed.destroy_process_group()
    return {"step": step, "val": metrics, "wall_s": time.time() - t_start}


if __name__ == "__main__":
    main()

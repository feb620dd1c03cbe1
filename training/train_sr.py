"""Train or fine-tune a `super-image` model (EDSR by default) on HR/LR pairs from dataset_gen.

    python -m training.train_sr --config training/configs/sr_x2_cpu.yaml
    python -m training.train_sr scale=4 init=weights/sr_x2 steps=2000      # key=value overrides
    python -m training.train_sr model_type=PAN "arch={nf: 32, unf: 24, nb: 8}" out=runs/sr_x2_pan
    torchrun --nproc_per_node=8 -m training.train_sr --config training/configs/sr_gpu.yaml

The model is the library's own class (``EdsrModel``/``EdsrConfig``, or ``PanModel``, ``CarnModel``, ...
with ``model_type``) and is saved with its
``save_pretrained`` layout (config.json + pytorch_model_{scale}x.pt), so the archive step serves
hub models and ours alike. ``init`` starts from another model's body (e.g. ×4 from ×2: the
upsampler differs, the rest transfers). L1 loss (``loss: mse`` for a final fine-tune: PSNR is a
mean squared error, and L1 leaves a few hundredths of a dB), Adam, cosine decay, checkpoints and resume,
validation PSNR-Y/SSIM against bicubic every ``eval_every`` steps.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from restoration.upscaler import build_sr_model, model_classes
from restoration.weights import load_tensors
from training import config
from training.data import SRDataset
from training.loop import Run, cosine_lr
from training.metrics import psnr_y, ssim

DEFAULTS = {
    "data": "data/sr", "out": "runs/sr_x2", "scale": 2,
    "model_type": "EDSR", "n_resblocks": 8, "n_feats": 32, "res_scale": 1.0, "init": "",
    # fields of another super-image model's config (model_type PAN, CARN, A2N, ...), e.g. {nf: 32, nb: 8};
    # EDSR takes n_resblocks, n_feats and res_scale above
    "arch": {},
    # compressed-input variant: each training LR patch through JPEG at a quality in jpeg (lo, hi) with
    # probability jpeg_p, drawn afresh at every use; val_jpeg: validation LR compressed at that quality
    "jpeg": [60, 95], "jpeg_p": 0.0, "val_jpeg": 0,
    # the other mild degradations of real photos, each with its probability, in a random order with
    # the JPEG (training.data.SRDataset): Gaussian blur of the LR (sigma in LR pixels), Gaussian noise
    # (sigma in grey levels)
    "blur_p": 0.0, "blur_sigma": [0.3, 1.0], "noise_p": 0.0, "noise_sigma": [1.0, 6.0],
    "loss": "l1",  # l1 | mse
    "patch": 48, "batch_size": 16, "lr": 5e-4, "steps": 3000, "minutes": 0.0, "warmup": 100,
    "eval_every": 250, "ckpt_every": 250, "eval_images": 24, "seed": 0, "threads": 0, "resume": False,
    "stop_at": 0,  # stop (checkpointed) at this step, as an interruption would; resume=true goes on
}


def load_config(argv: list[str] | None = None) -> dict:
    return config.load_config(DEFAULTS, __doc__, argv)


def build_model(cfg: dict):
    """The library's own model class for ``model_type`` (EDSR by default; any of
    restoration.upscaler.MODEL_TYPES, with its config fields in ``arch``)."""
    if cfg["model_type"].upper() == "EDSR":
        fields = {"n_resblocks": cfg["n_resblocks"], "n_feats": cfg["n_feats"], "res_scale": cfg["res_scale"]}
    else:
        fields = {}
    arch = cfg.get("arch") or {}
    if not isinstance(arch, dict):
        raise SystemExit(f"setting 'arch': expected a mapping of config fields, got {arch!r}")
    try:
        _, config_cls = model_classes(cfg["model_type"])
    except ValueError as e:
        raise SystemExit(str(e)) from None
    # the library's configs take **kwargs, so a misspelt field would be saved and ignored: refuse it
    known = {k for k, v in inspect.signature(config_cls.__init__).parameters.items()
             if v.kind not in (v.VAR_KEYWORD, v.VAR_POSITIONAL) and k != "self"}
    unknown = sorted(set(arch) - known)
    if unknown:
        raise SystemExit(f"setting 'arch': {', '.join(unknown)} not fields of {config_cls.__name__} "
                         f"({', '.join(sorted(known - {'scale'}))})")
    try:
        return build_sr_model(cfg["model_type"], scale=cfg["scale"], **{**fields, **arch})
    except (TypeError, ValueError) as e:
        raise SystemExit(f"model_type {cfg['model_type']!r} with {arch}: {e}") from None


# Residual blocks that a deeper body grows by: (the block's first tensor, with the index as a group;
# the tensors of block i that zeroing turns the block into the identity). EDSR's body ends in a
# convolution numbered after its blocks (``body.<n>``); PAN's closing trunk_conv has its own name.
GROWABLE = (
    (r"body\.(\d+)\.body\.0\.weight", ("body.{i}.body.2.weight", "body.{i}.body.2.bias")),
    (r"SCPA_trunk\.(\d+)\.conv1_a\.weight", ("SCPA_trunk.{i}.conv3.weight",)),
)


def _n_blocks(names, pattern: str = GROWABLE[0][0]) -> int:
    """Residual blocks of a body (EDSR's ``body.<i>.body.0.weight`` by default), 0 for other layouts."""
    idx = [int(m.group(1)) for k in names if (m := re.fullmatch(pattern, k))]
    return max(idx) + 1 if idx else 0


def init_from(model, path: str) -> int:
    """Copy every tensor whose name and shape match from a saved model directory; returns how many.

    A deeper body grows from a shallower one (EDSR's residual blocks, PAN's SCPA blocks): the
    source's blocks fill the first ones, EDSR's closing body convolution becomes ours, and each
    added block starts as the identity (its last convolution zeroed), so the grown model computes
    what the source did and training starts from its quality rather than from scratch.
    """
    files = sorted(Path(path).glob("pytorch_model_*x.pt")) + sorted(Path(path).glob("model_*x.safetensors"))
    if not files:
        raise SystemExit(f"init={path}: no pytorch_model_*x.pt or model_*x.safetensors")
    src = load_tensors(files[0])
    own = model.state_dict()
    grown: list[tuple[int, int, tuple[str, ...]]] = []
    for pattern, zero in GROWABLE:
        n_src, n_own = _n_blocks(src, pattern), _n_blocks(own, pattern)
        if n_src > n_own > 0:
            raise SystemExit(f"init={path}: {n_src} residual blocks do not fit a model of {n_own}")
        if 0 < n_src < n_own:
            grown.append((n_src, n_own, zero))
            if f"body.{n_src}.weight" in src and f"body.{n_own}.weight" in own:  # EDSR's closing conv
                for end in ("weight", "bias"):
                    src[f"body.{n_own}.{end}"] = src.pop(f"body.{n_src}.{end}")
    n = 0
    for k, v in src.items():
        if k in own and own[k].shape == v.shape:
            own[k].copy_(v)
            n += 1
    for n_src, n_own, zero in grown:
        for i in range(n_src, n_own):
            for name in zero:
                own[name.format(i=i)].zero_()
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
    # evenly spaced over the split: the files sort by photo, so the first ones are few photos' crops
    n = min(len(val), cfg["eval_images"])
    for i in sorted({int(round(j)) for j in np.linspace(0, len(val) - 1, n)}):
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
    if cfg["loss"] not in ("l1", "mse"):
        raise SystemExit(f"setting 'loss': expected l1 or mse, got {cfg['loss']!r}")
    mse = cfg["loss"] == "mse"
    run = Run(cfg)
    model = build_model(cfg).to(run.device)
    if cfg["init"]:
        n = init_from(model, cfg["init"])
        if run.master:
            print(f"initialised {n} tensors from {cfg['init']}")
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], betas=(0.9, 0.999))
    step = 0
    ck = run.resume()
    if ck is not None:
        torch.nn.Module.load_state_dict(model, ck["model"])
        opt.load_state_dict(ck["opt"])
        step = int(ck["step"])
        if run.master:
            print(f"resumed at step {step}")
    train_model = run.wrap(model)
    jpeg = cfg["jpeg"]
    if not (isinstance(jpeg, (list, tuple)) and len(jpeg) == 2):
        raise SystemExit(f"setting 'jpeg': expected [lowest, highest] quality, got {jpeg!r}")
    train = SRDataset(Path(cfg["data"]) / "train", cfg["scale"], cfg["patch"], True,
                      jpeg=tuple(jpeg), jpeg_p=float(cfg["jpeg_p"]),
                      blur_p=float(cfg["blur_p"]), blur_sigma=tuple(cfg["blur_sigma"]),
                      noise_p=float(cfg["noise_p"]), noise_sigma=tuple(cfg["noise_sigma"]))
    val_dir = Path(cfg["data"]) / "val"
    val = (SRDataset(val_dir, cfg["scale"], cfg["patch"], False, val_jpeg=int(cfg["val_jpeg"]))
           if (val_dir / "hr").is_dir() else None)
    metrics: dict = {}
    if run.master and val is not None and step == 0 and cfg["init"]:
        metrics = evaluate(model, val, cfg, run.device)  # where the initialising model starts
        run.log({"step": 0, "val": metrics})
        tqdm.write("step 0: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
    bar = tqdm(total=cfg["steps"], initial=step, desc=f"sr x{cfg['scale']}", disable=not run.master)
    while step < cfg["steps"]:
        lr_now = cosine_lr(cfg["lr"], step, cfg["steps"], cfg["warmup"])
        for g in opt.param_groups:
            g["lr"] = lr_now
        lr_b, hr_b = train.batch(cfg["seed"], step, cfg["batch_size"], run.rank, run.world)
        lr_b, hr_b = lr_b.to(run.device), hr_b.to(run.device)
        with torch.autocast(run.device.type, enabled=run.amp, dtype=torch.bfloat16):
            pred = train_model(lr_b).float()
            loss = F.mse_loss(pred, hr_b) if mse else F.l1_loss(pred, hr_b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        bar.update(1)
        if step % 25 == 0 or step == 1:
            run.log({"step": step, "loss": loss.item(), "lr": lr_now, "wall_s": run.elapsed()})
            bar.set_postfix(loss=f"{loss.item():.4f}")
        out_of_time = run.out_of_time() or step == cfg["stop_at"]
        if step % cfg["ckpt_every"] == 0 or step == cfg["steps"] or out_of_time:
            run.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "config": cfg})
            if run.master:
                model.save_pretrained(str(run.out / "model"))
        if run.master and val is not None and (step % cfg["eval_every"] == 0 or step == cfg["steps"] or out_of_time):
            metrics = evaluate(model, val, cfg, run.device)
            model.save_pretrained(str(run.out / f"model_{step}"))  # kept: export --best picks one
            run.log({"step": step, "val": metrics})
            tqdm.write(f"step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
        if out_of_time:
            tqdm.write(f"time budget of {cfg['minutes']} min reached at step {step}")
            break
    bar.close()
    if run.master:
        model.save_pretrained(str(run.out / "model"))
    run.close()
    return {"step": step, "val": metrics, "wall_s": run.elapsed()}


if __name__ == "__main__":
    main()

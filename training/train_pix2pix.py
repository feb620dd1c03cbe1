"""Train Pix2Pix (UNet generator + 70×70 PatchGAN, cGAN + λ·L1) on aligned A|B pairs.

    python -m training.train_pix2pix --config training/configs/colorize_cpu.yaml
    python -m training.train_pix2pix data=data/colorize steps=4000 ngf=64 num_downs=8   # key=value overrides
    torchrun --nproc_per_node=8 -m training.train_pix2pix --config training/configs/colorize_gpu.yaml

CPU by default; CUDA with AMP when present; DistributedDataParallel when launched by torchrun
(it sets RANK/WORLD_SIZE). Checkpoints every ``ckpt_every`` steps; ``resume=true`` continues a
run exactly. Validation writes PSNR/SSIM/colourfulness to ``log.jsonl`` and a PNG grid.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from restoration.color import network_to_rgb as to_rgb
from restoration.networks import GeneratorConfig, clean_reference_state_dict, define_D, define_G, init_weights
from training import config
from training.data import PairDataset
from training.loop import Run, load_checkpoint
from training.metrics import colourfulness, psnr, ssim

DEFAULTS = {
    "data": "data/colorize",
    "out": "runs/colorize",
    "task": "colorize",  # or edges2photo (RGB → RGB)
    # generator / discriminator
    "num_downs": 7, "ngf": 32, "norm": "batch", "use_dropout": False, "ndf": 32, "n_layers": 3,
    "spectral_norm": False, "gan_mode": "vanilla",
    # losses
    "lambda_l1": 100.0, "lambda_colour": 0.0,
    # data
    "crop_size": 128, "load_size": 143, "batch_size": 8,
    # optimisation: constant lr for `steps * (1 - decay)` steps, then linear decay to 0
    "lr": 2e-4, "beta1": 0.5, "steps": 3000, "decay": 0.5, "minutes": 0.0,
    "eval_every": 250, "ckpt_every": 250, "eval_images": 16,
    "seed": 0, "threads": 0, "resume": False,
    "keep_checkpoints": True,  # keep checkpoint_<step>.pt at every validation (export --best picks one)
    "stop_at": 0,  # stop (checkpointed) at this step, as an interruption would; resume=true goes on
    # fine-tune: start from these weights (a checkpoint of this script: G and D; or a generator
    # file: safetensors / reference latest_net_G.pth) with a fresh optimiser and schedule
    "init": "",
}


def load_config(argv: list[str] | None = None) -> dict:
    return config.load_config(DEFAULTS, __doc__, argv)


def load_init(path: str, G: torch.nn.Module, D: torch.nn.Module, device, verbose: bool) -> None:
    """Start from trained weights: this script's checkpoint (G and D) or a generator file."""
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state, d_state = load_file(path), None
    else:
        ck = load_checkpoint(Path(path))
        state, d_state = (ck["G"], ck.get("D")) if "G" in ck else (ck, None)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    G.load_state_dict(clean_reference_state_dict(state, G), strict=True)
    if d_state is not None:
        D.load_state_dict(d_state)
    G.to(device), D.to(device)
    if verbose:
        print(f"initialised from {path}" + (" (generator and discriminator)" if d_state is not None else ""))


def gan_loss(pred: torch.Tensor, real: bool, mode: str) -> torch.Tensor:
    target = torch.ones_like(pred) if real else torch.zeros_like(pred)
    if mode == "lsgan":
        return F.mse_loss(pred, target)
    return F.binary_cross_entropy_with_logits(pred, target)


def colourfulness_term(fake_ab: torch.Tensor, real_ab: torch.Tensor) -> torch.Tensor:
    """Penalise predicted chroma that is weaker than the target's (L1 regresses to grey otherwise)."""
    return F.relu(real_ab.abs().mean((1, 2, 3)) - fake_ab.abs().mean((1, 2, 3))).mean()


def lr_at(step: int, cfg: dict) -> float:
    keep = int(cfg["steps"] * (1 - cfg["decay"]))
    if step < keep:
        return cfg["lr"]
    return cfg["lr"] * max(0.0, 1 - (step - keep) / max(1, cfg["steps"] - keep))


@torch.no_grad()
def evaluate(G, val: PairDataset, cfg: dict, device, out_dir: Path, step: int) -> dict:
    """Metrics on the validation pairs, against the baseline of returning the input; PNG grid."""
    G.eval()
    m = {"psnr": [], "ssim": [], "colourfulness": [], "target_colourfulness": [], "baseline_psnr": []}
    rows = []
    for i in range(min(len(val), cfg["eval_images"])):
        a, b = val.pair(i, None)
        a, b = a[None].to(device), b[None].to(device)
        out = G(a).float()
        fake, real = to_rgb(cfg["task"], a, out)[0].cpu(), to_rgb(cfg["task"], a, b)[0].cpu()
        base = to_rgb(cfg["task"], a, torch.zeros_like(b))[0].cpu() if cfg["task"] == "colorize" else (a[0].cpu() + 1) / 2
        m["psnr"].append(psnr(fake, real))
        m["ssim"].append(ssim(fake, real))
        m["colourfulness"].append(colourfulness(fake))
        m["target_colourfulness"].append(colourfulness(real))
        m["baseline_psnr"].append(psnr(base, real))
        if len(rows) < 4:
            rows.append(torch.cat([base, fake, real], 2))
    G.train()
    if rows:
        from PIL import Image

        grid = (torch.cat(rows, 1).clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy()
        Image.fromarray(grid).save(out_dir / f"val_{step:06d}.png")
    return {k: float(np.mean(v)) for k, v in m.items() if v}


def plot_losses(log_path: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log_path.read_text().splitlines() if '"loss_G"' in line]
    if not rows:
        return
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    steps = [r["step"] for r in rows]
    for key in ("loss_G_gan", "loss_D"):
        ax[0].plot(steps, [r[key] for r in rows], label=key)
    ax[1].plot(steps, [r["loss_G_l1"] for r in rows], label="L1 (×1)")
    for a in ax:
        a.set_xlabel("step")
        a.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    cfg = load_config(argv)
    run = Run(cfg)
    in_nc, out_nc = (1, 2) if cfg["task"] == "colorize" else (3, 3)
    gcfg = GeneratorConfig(input_nc=in_nc, output_nc=out_nc, num_downs=cfg["num_downs"], ngf=cfg["ngf"],
                           norm=cfg["norm"], use_dropout=cfg["use_dropout"], task=cfg["task"],
                           work_size=cfg["crop_size"])
    G, D = define_G(gcfg).to(run.device), define_D(in_nc + out_nc, cfg["ndf"], cfg["n_layers"], cfg["norm"],
                                                   cfg["spectral_norm"]).to(run.device)
    init_weights(G)
    init_weights(D)
    if cfg["init"] and not (cfg["resume"] and run.ckpt_path.exists()):
        load_init(cfg["init"], G, D, run.device, run.master)
    opt_G = torch.optim.Adam(G.parameters(), lr=cfg["lr"], betas=(cfg["beta1"], 0.999))
    opt_D = torch.optim.Adam(D.parameters(), lr=cfg["lr"], betas=(cfg["beta1"], 0.999))
    scaler = torch.amp.GradScaler("cuda", enabled=run.amp)
    step = 0
    ck = run.resume()
    if ck is not None:
        G.load_state_dict(ck["G"])
        D.load_state_dict(ck["D"])
        opt_G.load_state_dict(ck["opt_G"])
        opt_D.load_state_dict(ck["opt_D"])
        step = int(ck["step"])
        torch.set_rng_state(ck["torch_rng"])  # dropout continues as if never interrupted
        if run.master:
            print(f"resumed at step {step}")
    G_train, D_train = run.wrap(G), run.wrap(D)
    train = PairDataset(Path(cfg["data"]) / "train", cfg["task"], cfg["load_size"], cfg["crop_size"], True)
    val_dir = Path(cfg["data"]) / "val"
    val = PairDataset(val_dir, cfg["task"], cfg["load_size"], cfg["crop_size"], False) if any(
        val_dir.glob("*.png")) else None
    bar = tqdm(total=cfg["steps"], initial=step, desc="pix2pix", disable=not run.master)
    metrics: dict = {}
    while step < cfg["steps"]:
        for group in (*opt_G.param_groups, *opt_D.param_groups):
            group["lr"] = lr_at(step, cfg)
        a, b = train.batch(cfg["seed"], step, cfg["batch_size"], run.rank, run.world)
        a, b = a.to(run.device), b.to(run.device)
        with torch.autocast(run.device.type, enabled=run.amp):
            fake = G_train(a)
            # Discriminator: real pairs → 1, generated pairs → 0.
            d_fake = D_train(torch.cat([a, fake.detach()], 1))
            d_real = D_train(torch.cat([a, b], 1))
            loss_D = 0.5 * (gan_loss(d_fake, False, cfg["gan_mode"]) + gan_loss(d_real, True, cfg["gan_mode"]))
        opt_D.zero_grad(set_to_none=True)
        scaler.scale(loss_D).backward()
        scaler.step(opt_D)
        with torch.autocast(run.device.type, enabled=run.amp):
            # Generator: fool D, stay close to the target (λ·L1), optionally keep chroma strong.
            loss_gan = gan_loss(D_train(torch.cat([a, fake], 1)), True, cfg["gan_mode"])
            loss_l1 = F.l1_loss(fake, b)
            loss_G = loss_gan + cfg["lambda_l1"] * loss_l1
            if cfg["lambda_colour"] and cfg["task"] == "colorize":
                loss_G = loss_G + cfg["lambda_colour"] * colourfulness_term(fake, b)
        opt_G.zero_grad(set_to_none=True)
        scaler.scale(loss_G).backward()
        scaler.step(opt_G)
        scaler.update()
        step += 1
        bar.update(1)
        if step % 25 == 0 or step == 1:
            run.log({"step": step, "loss_G": loss_G.item(), "loss_G_gan": loss_gan.item(),
                     "loss_G_l1": loss_l1.item(), "loss_D": loss_D.item(), "lr": lr_at(step - 1, cfg),
                     "wall_s": run.elapsed()})
            bar.set_postfix(l1=f"{loss_l1.item():.4f}", d=f"{loss_D.item():.3f}")
        out_of_time = run.out_of_time() or step == cfg["stop_at"]
        validating = val is not None and (step % cfg["eval_every"] == 0 or step == cfg["steps"] or out_of_time)
        # a kept checkpoint_<step>.pt must hold this step's weights: save whenever one is kept
        if (step % cfg["ckpt_every"] == 0 or step == cfg["steps"] or out_of_time
                or (validating and cfg["keep_checkpoints"])):
            run.save({"G": G.state_dict(), "D": D.state_dict(), "opt_G": opt_G.state_dict(),
                      "opt_D": opt_D.state_dict(), "step": step, "torch_rng": torch.get_rng_state(),
                      "config": cfg, "generator": gcfg.to_dict()})
        if run.master and validating:
            metrics = evaluate(G, val, cfg, run.device, run.out, step)
            if cfg["keep_checkpoints"] and run.ckpt_path.exists():
                shutil.copy2(run.ckpt_path, run.out / f"checkpoint_{step}.pt")
            run.log({"step": step, "val": metrics})
            tqdm.write(f"step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
        if out_of_time:
            tqdm.write(f"time budget of {cfg['minutes']} min reached at step {step}")
            break
    bar.close()
    if run.master:
        plot_losses(run.out / "log.jsonl", run.out / "losses.png")
        (run.out / "generator.json").write_text(json.dumps(gcfg.to_dict(), indent=2))
    run.close()
    return {"step": step, "val": metrics, "wall_s": run.elapsed(), "nan": not math.isfinite(loss_G.item())}


if __name__ == "__main__":
    main()

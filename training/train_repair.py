"""Train the repair model (restoration.repair.RepairNet) on damaged → clean grey pairs.

    python -m dataset_gen --task repair --source all-photos --size 256 --crops 10 --clean 0.15 --out data/repair2
    python -m training.train_repair data=data/repair2 out=runs/repair knots=0 steps=6000 minutes=60 threads=1
    python -m training.train_repair --config training/configs/repair_cpu.yaml resume=true

The network predicts a residual on the luminance; a Charbonnier loss (smooth L1) between the
repaired and the clean luminance, Adam(W), cosine decay, an EMA of the weights (what is exported), resumable checkpoints
and the time budget of :mod:`training.loop`. Every ``eval_every`` steps the EMA model is measured
on the validation pairs (PSNR on L of the damaged input and of the repaired output against the
clean photo, and of a clean photo passed through) and exported to ``out/model_<step>``; at the end
the gate that keeps clean photos untouched (restoration.repair.gate) is chosen on validation and
written into ``out/model/config.json``.

With ``target=denoise`` it trains a noise-removal stage instead (RepairConfig ``denoise``): the
damage is drawn afresh (``online``) and the target is the same photo with every drawn damage but
grain and speckle (dataset_gen.degrade.damage ``without=NOISE_OPS``), so the stage learns to take
out noise and nothing else; its validation pairs are drawn the same way from the validation photos
with a fixed seed, and no gate is chosen (the assembled model's gate is: training.export_repair
``--denoiser``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from dataset_gen.degrade import NOISE_OPS, damage
from restoration.repair import REPAIR_FILES, RepairConfig, bands, build, gate, ramp, soft_threshold, thumbnail
from restoration.weights import load_tensors, save_tensors, write_config
from training import config
from training.data import epoch_batch, evenly_spaced, list_pngs, step_rng
from training.loop import EMA, Run, cosine_lr

DEFAULTS = {
    "data": "data/repair2", "out": "runs/repair", "init": "",
    "width": 32, "levels": 3, "blocks": 2, "fine": 0, "denoise": 0, "context": 64, "knots": 16, "quantiles": 0,
    "loss": "charbonnier", "eps": 1e-3,
    # loss "logmse": each crop's 10·log10(MSE + log_eps), averaged: the negative of the mean PSNR the
    # evaluation reports, so a crop with mild damage (or none) weighs as much in dB as a faded one,
    # where a pixel loss lets the few large errors of the tone damages decide; log_eps (1e-4 = 40 dB,
    # the clean-photo bar) bounds the pull of crops already repaired that far
    "log_eps": 1e-4,
    # > 0: the tone curve's own output is also pulled towards the clean photo (that loss times this
    # weight): trained only through the whole network, the curve stayed at the identity while the
    # local network, already trained on faded inputs, kept doing a worse job of the global correction
    "curve_loss": 0.0,
    "online": 0.0,  # > 0: damage drawn afresh every batch, this share of photos left clean (RepairPairs)
    "single": 0.0,  # with online: this share of damaged photos gets one damage instead of the mix
    "target": "clean",  # or "denoise": train the noise-removal stage (needs online > 0, no context)
    "crop_size": 96, "batch_size": 16, "lr": 1e-3, "weight_decay": 1e-4, "warmup": 200, "ema": 0.999,
    "steps": 6000, "minutes": 0.0, "eval_every": 500, "ckpt_every": 250, "eval_max": 120,
    "clean_min_db": 40.0,  # the gate is chosen so that clean validation photos stay at least this close
    "seed": 0, "threads": 0, "resume": False, "stop_at": 0,
}


def load_config(argv: list[str] | None = None) -> dict:
    return config.load_config(DEFAULTS, __doc__, argv)


def load_pairs(folder: Path, limit: int = 0, min_side: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(damaged, clean) grey pairs as lists of H×W uint8 arrays (A|B PNGs: damaged left, clean
    right). Crops of one size or whole photos of any size (``dataset_gen --whole``); pairs whose
    shorter side is under ``min_side`` (too small for a training crop) are left out. With more
    pairs than ``limit``, evenly spaced ones: the files sort by photo, so the first ``limit`` would
    be the crops of only the first few photos (as the colour validation once was)."""
    files = list_pngs(folder)
    files = evenly_spaced(files, limit)
    damaged, clean = [], []
    for f in files:
        ab = np.asarray(Image.open(f).convert("L"), dtype=np.uint8)
        w = ab.shape[1] // 2
        if min(ab.shape[0], w) < min_side:
            continue
        damaged.append(ab[:, :w].copy())
        clean.append(ab[:, w:2 * w].copy())
    if not clean:
        raise SystemExit(f"{folder}: no pairs of at least {min_side} px a side")
    return damaged, clean


class RepairPairs:
    """Training pairs held in memory; a batch is a pure function of (seed, step).

    ``online`` > 0 draws the damage afresh for every photo of every batch (dataset_gen.degrade.damage
    on the whole clean photo, undamaged with probability ``online``): the stored damaged halves are
    not used, so the network never sees the same grain, specks or scratches twice. With the stored
    pairs a run saw each damage ~90 times (16 000 steps over 2 900 pairs) and could learn them."""

    def __init__(self, folder: Path, crop: int, context: int = 64, online: float = 0.0, single: float = 0.0,
                 denoise: bool = False) -> None:
        self.damaged, self.clean = load_pairs(folder, min_side=crop)
        self.crop, self.context, self.online, self.single = crop, context, float(online), float(single)
        self.denoise = denoise  # the target is the photo with its damage but the noise (online only)
        if denoise and not self.online:
            raise SystemExit("target=denoise draws its damage afresh: set online > 0")
        # each pair's whole damaged photo as the context branch sees it
        self.thumbs = thumbnails(self.damaged, context) if context and not self.online else None

    def _fresh(self, i: int, seed: int, step: int, j: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """Photo i damaged afresh (a pure function of seed, step and its place j in the batch), its
        thumbnail, and the target (the clean photo, or with ``denoise`` the photo without its noise)."""
        rng = np.random.default_rng([seed, step, j, 7919])
        a, b = noisy_pair(self.clean[i], rng, self.online, self.single, self.denoise)
        return a, (thumbnails(a[None], self.context)[0] if self.context else None), b

    def __len__(self) -> int:
        return len(self.clean)

    def batch(self, seed: int, step: int, batch_size: int, rank: int = 0, world: int = 1):
        idx = epoch_batch(len(self), seed, step, batch_size, rank, world)
        rng = step_rng(seed, step, rank)
        xs, ys, ts = [], [], []
        for j, i in enumerate(idx):
            h, w = self.clean[i].shape
            y0, x0 = int(rng.integers(0, h - self.crop + 1)), int(rng.integers(0, w - self.crop + 1))
            if self.online:
                whole, t, goal = self._fresh(int(i), seed, step * world + rank, j)
            else:
                whole, t, goal = self.damaged[i], (self.thumbs[i] if self.thumbs is not None else None), self.clean[i]
            a = whole[y0:y0 + self.crop, x0:x0 + self.crop]
            b = goal[y0:y0 + self.crop, x0:x0 + self.crop]
            k = int(rng.integers(0, 4))  # rotations and flips: scratches run any way
            t = t if t is not None else np.zeros((1, 1), np.float32)
            a, b, t = np.rot90(a, k), np.rot90(b, k), np.rot90(t, k)
            if rng.random() < 0.5:
                a, b, t = a[:, ::-1], b[:, ::-1], t[:, ::-1]
            xs.append(a.copy())
            ys.append(b.copy())
            ts.append(t.copy())
        x = torch.from_numpy(np.stack(xs)).unsqueeze(1).float() / 255.0
        y = torch.from_numpy(np.stack(ys)).unsqueeze(1).float() / 255.0
        thumb = torch.from_numpy(np.stack(ts)).unsqueeze(1) if self.context else None
        return x, y, thumb


def noisy_pair(clean: np.ndarray, rng: np.random.Generator, keep_clean: float, single: float,
               denoise: bool) -> tuple[np.ndarray, np.ndarray]:
    """(damaged, target) grey uint8 arrays of one clean photo: the damage model's draw, and the
    clean photo or (``denoise``) the same draw without grain and speckle."""
    img = Image.fromarray(clean, "L").convert("RGB")
    if denoise:
        d, goal, _, _ = damage(img, rng, clean=keep_clean, single=single, without=NOISE_OPS)
        return np.array(d.convert("L"), dtype=np.uint8), np.array(goal.convert("L"), dtype=np.uint8)
    d, _, _ = damage(img, rng, clean=keep_clean, single=single)
    return np.array(d.convert("L"), dtype=np.uint8), clean


def denoise_val(clean: list[np.ndarray], single: float, seed: int = 2_026_120_7) -> tuple[list, list]:
    """Validation pairs of the noise-removal stage: each validation photo damaged with a fixed seed
    (the stored damaged halves have no noise-free counterpart); a fifth of them left undamaged."""
    pairs = [noisy_pair(c, np.random.default_rng([seed, i]), 0.2, single, True) for i, c in enumerate(clean)]
    return [a for a, _ in pairs], [b for _, b in pairs]


def pixel_loss(err: torch.Tensor, cfg: dict) -> torch.Tensor:
    # Charbonnier (a smooth L1): plain L1's gradient is only the error's sign, so the many
    # pixels a damage leaves exactly as they were hold the output at the identity; with it
    # the network stayed there for 1000 steps, with this it learns within a few hundred.
    if cfg["loss"] == "charbonnier":
        return torch.sqrt(err * err + cfg["eps"] ** 2).mean()
    if cfg["loss"] == "mse":
        return (err * err).mean()
    if cfg["loss"] == "logmse":
        mse = (err * err).flatten(1).mean(1)
        return 10 * torch.log10(mse + cfg["log_eps"]).mean()
    return err.abs().mean()


def thumbnails(images, side: int) -> np.ndarray:
    """Grey uint8 photos (an N×H×W array or a list of H×W arrays of any sizes) → N×side×side
    float32 thumbnails (restoration.repair.thumbnail)."""
    out = []
    for im in images:
        t = torch.from_numpy(np.ascontiguousarray(im))[None, None].float() / 255.0
        out.append(thumbnail(t, side)[0, 0].numpy())
    return np.stack(out)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return 99.0 if mse == 0 else 10 * math.log10(1.0 / mse)


@torch.inference_mode()
def residuals(net, x, device) -> list[torch.Tensor]:
    """dY for grey uint8 photos (an N×H×W array or a list of H×W arrays), each H×W float32 on the
    CPU; photos of one size go through in batches of 8."""
    out: list[torch.Tensor] = []
    i = 0
    while i < len(x):
        j = i + 1
        while j < len(x) and j - i < 8 and x[j].shape == x[i].shape:
            j += 1
        t = torch.from_numpy(np.stack(x[i:j])).unsqueeze(1).float().div(255.0).to(device)
        out.extend(net(t)[:, 0].float().cpu())
        i = j
    return out


def measure(net, val: tuple[np.ndarray, np.ndarray], rcfg: RepairConfig, device) -> dict:
    """PSNR on L (dB, mean over photos): damaged input and repaired output against the clean photo
    (over the damaged pairs), and every clean photo passed through against itself."""
    damaged, clean = val
    d_res, c_res = residuals(net, damaged, device), residuals(net, clean, device)
    return score(damaged, clean, d_res, c_res, rcfg)


def score(damaged, clean, d_res, c_res, rcfg: RepairConfig) -> dict:
    rows = {"damaged": [], "repaired": [], "clean_through": []}
    for i in range(len(clean)):
        x = torch.from_numpy(damaged[i]).float() / 255.0
        y = torch.from_numpy(clean[i]).float() / 255.0
        c, _, _ = gate(c_res[i], rcfg)
        rows["clean_through"].append(psnr(torch.round((y + c).clamp(0, 1) * 255) / 255, y))
        if np.array_equal(damaged[i], clean[i]):
            continue  # an undamaged pair: measured as a clean photo above, not as a repair
        d, _, _ = gate(d_res[i], rcfg)
        rows["damaged"].append(psnr(x, y))
        rows["repaired"].append(psnr(torch.round((x + d).clamp(0, 1) * 255) / 255, y))
    m = {f"psnr_{k}": float(np.mean(v)) for k, v in rows.items()}
    m["gain_db"] = m["psnr_repaired"] - m["psnr_damaged"]
    m["clean_min_db"] = float(np.min(rows["clean_through"]))
    return m


GATE_SHRINKS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)
GATE_SPANS = (0.0, 0.5, 1.0, 2.0)
TONE_SPANS = (0.0, 1.0, 2.0, 4.0)
BAND_SIGMAS = (0.0, 8.0)  # 0: one gate on the whole dY; 8 px: the low band (tone) gated on its own


def _thresholds(estimates: np.ndarray, spans: tuple[float, ...]) -> list[tuple[float, float]]:
    """(low, high) gate thresholds to try: off, and ramps starting at quantiles of the clean
    photos' estimated damage (a span of 0 is a step)."""
    out = []
    for low in [0.0] + [float(np.quantile(estimates, q)) for q in (0.5, 0.9, 1.0)]:
        for span in spans:
            out.append((low, low + span if span else (low + 1e-6 if low else 0.0)))
    return out


def choose_gate(net, val: tuple[np.ndarray, np.ndarray], rcfg: RepairConfig, device, clean_min_db: float,
                band_sigmas: tuple[float, ...] = BAND_SIGMAS) -> tuple[RepairConfig, dict]:
    """The gate (shrink, damage thresholds, and with ``band_sigma`` the low band's own thresholds)
    with the best repaired PSNR whose clean photos all stay ≥ ``clean_min_db`` from themselves
    (falls back to the safest setting tried). The chosen setting is measured again through
    :func:`restoration.repair.gate`, as served."""
    damaged, clean = val
    d_res, c_res = residuals(net, damaged, device), residuals(net, clean, device)
    pairs = [i for i in range(len(clean)) if not np.array_equal(damaged[i], clean[i])]
    ys = [torch.from_numpy(c).float() / 255.0 for c in clean]
    xs = {i: torch.from_numpy(damaged[i]).float() / 255.0 for i in pairs}

    def through(x: torch.Tensor, y: torch.Tensor, delta: torch.Tensor) -> float:
        return psnr(torch.round((x + delta).clamp(0, 1) * 255) / 255, y)

    best, best_psnr, safest, safest_min = None, -math.inf, None, -math.inf
    for sigma in band_sigmas:
        split_c = [bands(r, sigma) if sigma else (torch.zeros_like(r), r) for r in c_res]
        split_d = {i: bands(d_res[i], sigma) if sigma else (torch.zeros_like(d_res[i]), d_res[i]) for i in pairs}
        tone_c = np.array([float(lo.abs().mean()) * 255 for lo, _ in split_c])
        tone_d = {i: float(split_d[i][0].abs().mean()) * 255 for i in pairs}
        tones = _thresholds(tone_c, TONE_SPANS) if sigma else [(0.0, 0.0)]
        for shrink in GATE_SHRINKS:
            high_c = [soft_threshold(h, shrink) for _, h in split_c]
            high_d = {i: soft_threshold(split_d[i][1], shrink) for i in pairs}
            est_c = np.array([float(h.abs().mean()) * 255 for h in high_c])
            est_d = {i: float(high_d[i].abs().mean()) * 255 for i in pairs}
            for (g_lo, g_hi), (t_lo, t_hi) in ((g, t) for g in _thresholds(est_c, GATE_SPANS) for t in tones):
                cand = RepairConfig(**{**rcfg.to_dict(), "shrink": shrink, "gate_low": g_lo, "gate_high": g_hi,
                                       "band_sigma": sigma, "tone_low": t_lo, "tone_high": t_hi})
                clean_min = min(through(ys[i], ys[i], high_c[i] * ramp(est_c[i], g_lo, g_hi)
                                        + split_c[i][0] * ramp(tone_c[i], t_lo, t_hi)) for i in range(len(clean)))
                if clean_min > safest_min:
                    safest, safest_min = cand, clean_min
                if clean_min < clean_min_db:
                    continue
                repaired = float(np.mean([through(xs[i], ys[i], high_d[i] * ramp(est_d[i], g_lo, g_hi)
                                                  + split_d[i][0] * ramp(tone_d[i], t_lo, t_hi))
                                          for i in pairs])) if pairs else 0.0
                if repaired > best_psnr:
                    best, best_psnr = cand, repaired
    chosen = best if best is not None else safest
    return chosen, score(damaged, clean, d_res, c_res, chosen)


def export_model(net, rcfg: RepairConfig, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    save_tensors(net.state_dict(), out / REPAIR_FILES[0], half=True)
    write_config(out, rcfg.to_dict())


def write_card(out: Path, cfg: dict, step: int, wall_s: float, ungated: dict, gated: dict, chosen: RepairConfig) -> None:
    """MODEL_CARD.md beside the exported weights: what it is, how it was trained, what it measured."""
    def row(name: str, m: dict) -> str:
        return (f"| {name} | {m['psnr_damaged']:.2f} | {m['psnr_repaired']:.2f} | {m['gain_db']:+.2f} | "
                f"{m['psnr_clean_through']:.2f} (worst {m['clean_min_db']:.2f}) |")

    text = "\n".join([
        "# Repair model", "",
        "Removes an old print's damage (grain, dust, scratches, cracks, fading, toned prints, blur, JPEG) on the",
        "luminance; a colour photo keeps its chroma. restoration.repair.RepairNet (width "
        f"{cfg['width']}, {cfg['levels']} levels): a whole-photo context ({cfg['context']}x{cfg['context']} thumbnail)"
        + (f" sets a {cfg['knots']}-knot tone curve and" if cfg["knots"] else "")
        + " modulates a space-to-depth", "encoder-decoder that predicts a luminance residual.", "",
        f"Trained by `python -m training.train_repair` on `{cfg['data']}` (dataset_gen --task repair): {step} steps,",
        f"batch {cfg['batch_size']}, crops {cfg['crop_size']}, {cfg['loss']} loss, AdamW lr {cfg['lr']} cosine, EMA {cfg['ema']};",
        f"{wall_s / 60:.0f} min on the CPU with {cfg['threads'] or 'all'} thread(s).", "",
        "Validation (PSNR on L, dB; damaged pairs vs clean, and clean photos through the model):", "",
        "| | damaged | repaired | gain | clean through |", "| --- | ---: | ---: | ---: | ---: |",
        row("without gate", ungated), row("with gate (served)", gated), "",
        f"Gate chosen on validation: shrink {chosen.shrink} grey levels, damage thresholds {chosen.gate_low:.3f} .. "
        f"{chosen.gate_high:.3f}"
        + (f"; low band (Gaussian sigma {chosen.band_sigma:g} px) thresholds {chosen.tone_low:.3f} .. {chosen.tone_high:.3f}"
           if chosen.band_sigma else "")
        + f" (clean photos must stay >= {cfg['clean_min_db']} dB).", ""])
    (out / "MODEL_CARD.md").write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> dict:
    cfg = load_config(argv)
    if cfg["loss"] not in ("charbonnier", "mse", "logmse", "l1"):
        raise SystemExit(f"loss {cfg['loss']!r}: charbonnier, mse, logmse or l1")
    if cfg["target"] not in ("clean", "denoise"):
        raise SystemExit(f"target {cfg['target']!r}: clean or denoise")
    stage = cfg["target"] == "denoise"
    if stage and (cfg["context"] or cfg["knots"] or cfg["curve_loss"]):
        raise SystemExit("target=denoise trains a stage without context: set context=0 knots=0 curve_loss=0")
    run = Run(cfg)
    rcfg = RepairConfig(width=int(cfg["width"]), levels=int(cfg["levels"]), blocks=int(cfg["blocks"]),
                        fine=int(cfg["fine"]), denoise=int(cfg["denoise"]),
                        context=int(cfg["context"]), knots=int(cfg["knots"]), quantiles=int(cfg["quantiles"]))
    net = build(rcfg).to(run.device)
    if cfg["init"]:
        # a model without the tone curve or the finest level's added blocks starts one that has
        # them: theirs are the only parameters allowed to be missing (they start as the identity,
        # so step 0 is the old model)
        try:
            missing, unexpected = net.load_state_dict(load_tensors(Path(cfg["init"]) / REPAIR_FILES[0]), strict=False)
        except RuntimeError as e:  # tensors of other shapes: another width, levels or blocks
            raise SystemExit(f"init {cfg['init']}: not this network ({str(e).splitlines()[0]})") from None
        grown = ("curve.", "fine_enc.", "fine_dec.")
        if unexpected or any(not k.startswith(grown) for k in missing):
            raise SystemExit(f"init {cfg['init']}: not this network (missing {missing}, unexpected {unexpected})")
        if missing and run.master:
            print(f"init {cfg['init']}: {len(missing)} tensors (tone curve, added blocks) start as the identity")
    if net.pre is not None:
        # the noise-removal stage in front stays as it was trained (train_repair target=denoise,
        # assembled by export_repair --denoiser): the model behind it learns to repair its output
        if not cfg["init"]:
            raise SystemExit("denoise > 0 trains the model behind a trained stage: init=<an assembled model>")
        net.pre.requires_grad_(False)
    opt = torch.optim.AdamW([q for q in net.parameters() if q.requires_grad], lr=cfg["lr"],
                            weight_decay=cfg["weight_decay"])
    ema = EMA(net, cfg["ema"])
    train = RepairPairs(Path(cfg["data"]) / "train", int(cfg["crop_size"]), int(cfg["context"]),
                        float(cfg["online"]), float(cfg["single"]), denoise=stage)
    val_dir = Path(cfg["data"]) / "val"
    val = load_pairs(val_dir, int(cfg["eval_max"])) if val_dir.is_dir() else None
    if stage and val is not None:
        val = denoise_val(val[1], float(cfg["single"]))
    if run.master:
        print(f"{len(train)} training pairs, {0 if val is None else len(val[0])} validation pairs, "
              f"{sum(p.numel() for p in net.parameters()) / 1e6:.2f} M parameters")
    step = 0
    ck = run.resume()
    if ck is not None:
        net.load_state_dict(ck["model"])
        ema.model.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"])
        step = int(ck["step"])
        if run.master:
            print(f"resumed at step {step}")
    model = run.wrap(net)
    curve_w = float(cfg["curve_loss"])
    if curve_w and net.curve is None:
        raise SystemExit("curve_loss needs the tone curve (knots > 0 and context > 0)")
    bar = tqdm(total=cfg["steps"], initial=step, desc="repair", disable=not run.master, mininterval=30)
    metrics: dict = {}
    while step < cfg["steps"]:
        net.train()
        lr = cosine_lr(cfg["lr"], step, cfg["steps"], cfg["warmup"], floor=0.02)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y, thumb = train.batch(cfg["seed"], step, cfg["batch_size"], run.rank, run.world)
        x, y = x.to(run.device), y.to(run.device)
        thumb = thumb.to(run.device) if thumb is not None else None
        with torch.autocast(run.device.type, enabled=run.amp, dtype=torch.bfloat16):
            if curve_w:
                res, base = model(x, None, thumb, return_base=True)
            else:
                res, base = model(x, None, thumb), None
            out = x + res
        loss = pixel_loss(out.float() - y, cfg)
        if base is not None:
            loss = loss + curve_w * pixel_loss(base.float() - y, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        ema.update(net, step)
        step += 1
        bar.update(1)
        if step % 25 == 0 or step == 1:
            run.log({"step": step, "loss": loss.item(), "lr": lr, "wall_s": run.elapsed()})
        out_of_time = run.out_of_time() or (cfg["stop_at"] and step >= cfg["stop_at"])
        last = step == cfg["steps"] or out_of_time
        if step % cfg["ckpt_every"] == 0 or last:
            run.save({"model": net.state_dict(), "ema": ema.model.state_dict(), "opt": opt.state_dict(), "step": step})
            if run.master:
                export_model(ema.model, rcfg, run.out / "model")
        if run.master and val is not None and (step % cfg["eval_every"] == 0 or last):
            metrics = measure(ema.model, val, rcfg, run.device)
            export_model(ema.model, rcfg, run.out / f"model_{step}")
            run.log({"step": step, "val": metrics})
            tqdm.write(f"step {step}: " + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
        if out_of_time:
            tqdm.write(f"stopped at step {step} (time budget or stop_at)")
            break
    bar.close()
    if run.master and val is not None and not metrics:  # resumed at its last step: measure what is there
        metrics = measure(ema.model, val, rcfg, run.device)
    if run.master and val is not None and stage:
        metrics = {"ungated": metrics}  # a stage has no gate: the assembled model's is chosen
    elif run.master and val is not None:
        chosen, gated = choose_gate(ema.model, val, rcfg, run.device, float(cfg["clean_min_db"]))
        export_model(ema.model, chosen, run.out / "model")
        run.log({"step": step, "gate": {k: getattr(chosen, k) for k in ("shrink", "gate_low", "gate_high")},
                 "val_gated": gated})
        write_card(run.out / "model", cfg, step, run.elapsed(), metrics, gated, chosen)
        print(f"gate: shrink {chosen.shrink}, low {chosen.gate_low:.3f}, high {chosen.gate_high:.3f}: "
              + ", ".join(f"{k} {v:.2f}" for k, v in gated.items()))
        metrics = {"ungated": metrics, "gated": gated}
    run.close()
    return {"step": step, "val": metrics, "wall_s": run.elapsed()}


if __name__ == "__main__":
    main()

"""Train the classification colouriser (restoration.chroma): L in, a distribution over ab bins out.

    python -m training.train_colorizer --config training/configs/colorize_cls_cpu.yaml [key=value ...]

Recipe (Zhang et al., 2016, with Iizuka et al.'s global branch): targets soft-encoded to the 5
nearest of the in-gamut ab bins (σ = 5), cross-entropy weighted by class rebalancing
(λ = 0.5 against the smoothed ab prior of the training set, measured at the start of the run
and kept in the checkpoint), chroma predicted at a quarter of the input, EMA of the weights.
Validation decodes with the annealed mean at several temperatures and reports PSNR of the
recombined RGB against the photo, the grey baseline, and the colourfulness ratio.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from dataset_gen.degrade import old_photo
from dataset_gen.sources import PROCEDURAL_PREFIX
from restoration.chroma import ChromaConfig, annealed_mean, build, decoding, rebalance_weights, soft_encode
from restoration.color import lab_to_rgb, normalize_l, rgb_to_lab
from restoration.repair import LUMA
from restoration.weights import COLORIZE_FILE, save_tensors, write_config
from training.config import load_config
from training.data import epoch_batch, evenly_spaced, list_pngs, step_rng, to_tensor
from training.loop import EMA, Run, cosine_lr
from training.metrics import COLOUR_RATIO_MIN_REF, colour_ratio, colourfulness, psnr

DEFAULTS = {
    "data": "data/colorize", "out": "runs/colorize_cls", "width": 64, "blocks": 4, "work_size": 256,
    "crop_size": 96, "load_size": 112, "batch_size": 16, "lr": 1e-3, "weight_decay": 1e-4, "warmup": 200,
    "steps": 8000, "minutes": 0, "lam": 0.5, "ema": 0.999, "prior_batches": 60, "eval_every": 1000,
    "eval_size": 192, "eval_max": 64, "ckpt_every": 250, "threads": 0, "seed": 0, "resume": False,
    "init": "",
    "zoom": None,  # [lo, hi]: whole photos rescaled per sample to a long side in lo..hi px (CachedPairs)
    # > 0: this share of the crops whose grey input is the plain grey of the photo get 1 .. stamp_max
    # photographed objects (dataset_gen.sources.stamp_cutouts) pasted on, in colour and in grey
    "stamps": 0.0, "stamp_max": 2, "stamp_dir": "",
    # true: aged pairs get objects too, their grey input aged afresh (dataset_gen.degrade.old_photo)
    # from the photo with the objects on it, at the scale the dataset aged its crops
    "stamp_aged": False,
    # "cls": cross-entropy over the ab bins, rebalanced (the recipe); "huber": plain regression, a
    # Huber loss (beta in Lab units) on the ab the served decoding gives at T 1 (the mean of the
    # bins' softmax with the rebalancing undone by reg_alpha), no rebalancing: the issue's
    # classification-against-regression comparison, and a regression fine-tune after classification
    "loss": "cls", "huber_beta": 5.0, "reg_alpha": 1.0,
}

STAMP_SIDE = 128  # cut-outs are kept at most this long a side (the crops they go on are ~96 px)


def load_stamps(folder: str = "") -> list[torch.Tensor]:
    """The photographic cut-outs (dataset_gen.sources.stamp_cutouts of ``folder``, or of the Tux
    Paint stamps package) as H×W×4 uint8 RGBA tensors, at most ``STAMP_SIDE`` px a side."""
    from dataset_gen.sources import TUXPAINT_STAMPS, stamp_cutouts

    paths = stamp_cutouts(Path(folder) if folder else TUXPAINT_STAMPS)
    if not paths:
        raise SystemExit("stamps > 0: no photographic cut-out found; install tuxpaint-stamps-default with "
                         "bash scripts/install-photos.sh, or set stamp_dir")
    out = []
    for path in paths:
        with Image.open(path) as im:
            rgba = im.convert("RGBA")
        rgba.thumbnail((STAMP_SIDE, STAMP_SIDE), Image.Resampling.LANCZOS)
        out.append(torch.from_numpy(np.asarray(rgba).copy()))
    return out


def grey_of(rgb: torch.Tensor) -> torch.Tensor:
    """The grey (float, 0..255) dataset_gen.degrade.to_grey gives an RGB photo (…×3, 0..255): ITU-R 601 luma."""
    r, g, b = LUMA
    return rgb[..., 0] * r + rgb[..., 1] * g + rgb[..., 2] * b


def paste_stamps(a: torch.Tensor, b: torch.Tensor, stamps: list[torch.Tensor], count: int,
                 rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` drawn cut-outs pasted on a crop (grey a c×c, colour b c×c×3, uint8) at drawn places,
    sizes (a long side of 30 … 90 % of the crop) and mirror: in colour on the photo, in grey on its
    grey version, so the pair stays a photo and its grey copy."""
    c = a.shape[0]
    af, bf = a.float(), b.float()
    for _ in range(count):
        s = stamps[int(rng.integers(0, len(stamps)))]
        h, w = s.shape[:2]
        f = float(rng.uniform(0.3, 0.9)) * c / max(h, w)
        sh, sw = max(2, min(c, round(h * f))), max(2, min(c, round(w * f)))
        t = F.interpolate(s.permute(2, 0, 1)[None].float(), size=(sh, sw), mode="bilinear", antialias=True,
                          align_corners=False)[0].permute(1, 2, 0)
        if rng.random() < 0.5:
            t = t.flip(1)
        y0, x0 = int(rng.integers(0, c - sh + 1)), int(rng.integers(0, c - sw + 1))
        m = (t[..., 3:] / 255.0).clamp(0, 1)
        rgb = t[..., :3].clamp(0, 255)
        region = (slice(y0, y0 + sh), slice(x0, x0 + sw))
        bf[region] = bf[region] * (1 - m) + rgb * m
        af[region] = af[region] * (1 - m[..., 0]) + grey_of(rgb) * m[..., 0]
    return af.round().clamp(0, 255).byte(), bf.round().clamp(0, 255).byte()


def age_again(b: torch.Tensor, scale: float, rng: np.random.Generator) -> torch.Tensor:
    """The grey input (c×c uint8) of colour crop b (c×c×3 uint8) aged like an old print by
    dataset_gen.degrade.old_photo, at ``scale`` times the crop's size and brought back, as
    dataset_gen ages a stored crop that training then shrinks."""
    c = b.shape[0]
    img = Image.fromarray(b.numpy(), "RGB")
    big = max(c, round(c * scale))
    if big != c:
        img = img.resize((big, big), Image.Resampling.BICUBIC)
    aged, _ = old_photo(img, rng)
    grey = aged.convert("L")
    if big != c:
        grey = grey.resize((c, c), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(grey).copy())


class CachedPairs:
    """Aligned grey|colour pairs decoded once and kept as uint8 in memory; a batch is a pure
    function of (seed, step): random crops and flips (no colour jitter, which would teach wrong
    object colours).

    Two ways to crop. By default every pair is resized to ``load_size``² and a ``crop_size``² crop
    is cut from it (a few pixels of play: the fixed crops of the dataset are the variety). With
    ``zoom=(lo, hi)`` the pairs keep their stored size (whole photos: ``dataset_gen --whole``) and
    each sample rescales its photo to a long side drawn from lo..hi px before cutting the crop, so
    the network sees every photo at many scales and places: at the served work size (long side
    256) a crop of 96² is a third of the photo; zoomed in, a face or a single flower."""

    def __init__(self, folder: Path, load_size: int, crop_size: int, zoom: tuple[int, int] | None = None,
                 stamps: list[torch.Tensor] | None = None, stamp_p: float = 0.0, stamp_max: int = 2,
                 stamp_aged: bool = False) -> None:
        files = list_pngs(folder)
        a_list, b_list, sides = [], [], []
        for path in files:
            with Image.open(path) as im:
                ab = im.convert("RGB")
            half = ab.width // 2
            a_img, b_img = ab.crop((0, 0, half, ab.height)).convert("L"), ab.crop((half, 0, ab.width, ab.height))
            sides.append(max(a_img.size))
            if zoom is None:
                size = (load_size, load_size)
                a_img = a_img.resize(size, Image.Resampling.BICUBIC)
                b_img = b_img.resize(size, Image.Resampling.BICUBIC)
            a_list.append(torch.from_numpy(np.asarray(a_img).copy()))
            b_list.append(torch.from_numpy(np.asarray(b_img).copy()))
        self.zoom = (int(zoom[0]), int(zoom[1])) if zoom is not None else None
        if self.zoom is None:
            self.a = torch.stack(a_list)  # N×S×S grey inputs (possibly aged)
            self.b = torch.stack(b_list)  # N×S×S×3 colour targets
        else:
            if not crop_size <= self.zoom[0] <= self.zoom[1]:
                raise SystemExit(f"zoom {list(zoom)}: expected crop_size <= lo <= hi")
            self.a, self.b = a_list, b_list  # whole photos of different sizes
        self.load_size, self.crop_size = load_size, crop_size
        # stamps go only on pairs whose grey input is the photo's plain grey: on an aged print a
        # clean pasted object would mark itself as the part to colour
        self.stamps, self.stamp_p, self.stamp_max = stamps or [], float(stamp_p), max(1, int(stamp_max))
        self.plain = [bool((a.float() - grey_of(b.float())).abs().mean() < 1.5)
                      for a, b in zip(a_list, b_list, strict=True)] if self.stamps else [False] * len(a_list)
        # an aged pair that gets objects is aged afresh: dataset_gen aged the stored crop, so the
        # training crop is aged at the stored crop's scale (grain and specks as big as in the data)
        self.stamp_aged = bool(stamp_aged) and bool(self.stamps)
        self.age_scale = [max(1.0, s / load_size) if zoom is None else 1.0 for s in sides]

    def __len__(self) -> int:
        return len(self.a)

    def _zoomed(self, i: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One crop_size² crop of photo i rescaled to a drawn long side (uint8 c×c and c×c×3)."""
        c = self.crop_size
        a, b = self.a[i], self.b[i]
        h, w = a.shape
        # the short side must still hold a crop after rescaling
        lo = max(self.zoom[0], c * max(h, w) / min(h, w))
        f = max(lo, float(rng.uniform(self.zoom[0], self.zoom[1]))) / max(h, w)
        side = c / f  # the crop's side in stored pixels
        y0 = float(rng.uniform(0, h - side)) if h > side else 0.0
        x0 = float(rng.uniform(0, w - side)) if w > side else 0.0
        top, left = int(y0), int(x0)
        bottom, right = min(h, int(np.ceil(y0 + side))), min(w, int(np.ceil(x0 + side)))
        region = torch.cat([a[top:bottom, left:right, None], b[top:bottom, left:right]], 2)
        region = region.permute(2, 0, 1)[None].float()
        out = F.interpolate(region, size=(c, c), mode="bilinear", antialias=True, align_corners=False)
        out = out[0].round().clamp(0, 255).byte().permute(1, 2, 0)
        return out[..., 0], out[..., 1:]

    def batch(self, seed: int, step: int, batch_size: int, rank: int = 0, world: int = 1):
        """(L normalised N×1×c×c from the grey input, ab N×2×c×c in Lab units of the photo)."""
        idx = epoch_batch(len(self.a), seed, step, batch_size, rank, world)
        rng = step_rng(seed, step, rank)
        c, m = self.crop_size, self.load_size - self.crop_size
        grey, colour = [], []
        for i in idx:
            if self.zoom is not None:
                a, b = self._zoomed(int(i), rng)
            else:
                y0, x0 = int(rng.integers(0, m + 1)), int(rng.integers(0, m + 1))
                a = self.a[i, y0:y0 + c, x0:x0 + c]
                b = self.b[i, y0:y0 + c, x0:x0 + c]
            plain = self.plain[int(i)]
            if self.stamps and (plain or self.stamp_aged) and rng.random() < self.stamp_p:
                a, b = paste_stamps(a, b, self.stamps, int(rng.integers(1, self.stamp_max + 1)), rng)
                if not plain:
                    a = age_again(b, self.age_scale[int(i)], rng)
            if rng.random() < 0.5:
                a, b = a.flip(1), b.flip(1)
            grey.append(a)
            colour.append(b)
        a = torch.stack(grey).float().div_(255.0)[:, None].expand(-1, 3, -1, -1)
        b = torch.stack(colour).permute(0, 3, 1, 2).float().div_(255.0)
        return normalize_l(rgb_to_lab(a)[:, 0:1]), rgb_to_lab(b)[:, 1:3]


def quarter(ab: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(ab, 4)


def measure_prior(train: CachedPairs, centres: torch.Tensor, cfg: dict) -> torch.Tensor:
    counts = torch.zeros(len(centres), dtype=torch.float64)
    for b in range(int(cfg["prior_batches"])):
        _, ab = train.batch(cfg["seed"] + 7919, b, cfg["batch_size"])
        idx, _ = soft_encode(quarter(ab), centres, k=1)
        counts += torch.bincount(idx.reshape(-1), minlength=len(centres)).double()
    return (counts + 1.0).float()


def load_val(folder: Path, size: int, limit: int) -> list[torch.Tensor]:
    """The photo halves (B) of validation pairs, resized to ``size``²: clean colour targets.

    Photographs only where there are any: a procedural scene's colours are random draws, which no
    colouriser can predict, and they pulled the decoding chosen on validation towards grey. With
    more pairs than ``limit``, evenly spaced ones: the files sort by photo, so the first ``limit``
    would be the crops of only the first few photos."""
    files = list_pngs(folder)
    photos = [f for f in files if not f.name.startswith(PROCEDURAL_PREFIX)]
    files = photos or files
    files = evenly_spaced(files, limit)
    out = []
    for path in files:
        ab = Image.open(path).convert("RGB")
        b = to_tensor(ab.crop((ab.width // 2, 0, ab.width, ab.height)).resize((size, size), Image.Resampling.BICUBIC))
        if out and torch.equal(out[-1], b):
            continue  # copies of one whole photo (dataset_gen --whole --crops k) differ only in their grey input
        out.append(b)
    # An (almost) grey original has no colour to recover, and its grey version scores a PSNR in
    # the hundreds (one grey wallpaper lifted the mean "grey" PSNR of 47 photos by 2.3 dB).
    coloured = [t for t in out if colourfulness(t) >= COLOUR_RATIO_MIN_REF]
    return coloured or out


@torch.no_grad()
def evaluate(net, centres: torch.Tensor, photos: list[torch.Tensor], ccfg: ChromaConfig, device,
             settings: tuple[float, ...] = (0.0, 0.5, 1.0)) -> dict:
    net.eval()
    rows: dict[str, list[float]] = {}
    for rgb in photos:
        lab = rgb_to_lab(rgb)
        grey = lab_to_rgb(torch.cat([lab[0:1], torch.zeros_like(lab[1:])]))
        rows.setdefault("grey_psnr", []).append(psnr(grey, rgb))
        logits = net(normalize_l(lab[0:1])[None].to(device)).float().cpu()
        for v in settings:
            alpha, t = decoding(ccfg, v)
            ab = annealed_mean(logits, centres, t, net.log_weight.cpu(), alpha)
            ab = F.interpolate(ab, size=rgb.shape[-2:], mode="bilinear", align_corners=False)[0]
            out = lab_to_rgb(torch.cat([lab[0:1], ab]))
            rows.setdefault(f"psnr_v{v:g}", []).append(psnr(out, rgb))
            ratio = colour_ratio(out, rgb)
            if ratio is not None:
                rows.setdefault(f"colour_v{v:g}", []).append(ratio)
    return {k: float(np.mean(v)) for k, v in rows.items()}


def export_model(net, ccfg: ChromaConfig, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    save_tensors(net.state_dict(), out / COLORIZE_FILE)
    write_config(out, ccfg.to_dict())


def main(argv: list[str] | None = None) -> dict:
    cfg = load_config(DEFAULTS, __doc__, argv)
    if cfg["loss"] not in ("cls", "huber"):  # before the data and the prior are read
        raise SystemExit(f"loss={cfg['loss']}: expected cls or huber")
    run = Run(cfg)
    ccfg = ChromaConfig(width=int(cfg["width"]), blocks=int(cfg["blocks"]), work_size=int(cfg["work_size"]))
    net, centres = build(ccfg)
    ccfg.num_bins = len(centres)
    net.to(run.device)
    if cfg["init"]:
        from restoration.weights import load_tensors

        net.load_state_dict(load_tensors(Path(cfg["init"]) / COLORIZE_FILE), strict=False)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    ema = EMA(net, cfg["ema"])
    stamps = load_stamps(cfg["stamp_dir"]) if cfg["stamps"] else None
    train = CachedPairs(Path(cfg["data"]) / "train", cfg["load_size"], cfg["crop_size"], cfg["zoom"],
                        stamps, cfg["stamps"], cfg["stamp_max"], cfg["stamp_aged"])
    if run.master:
        on = len(train) if train.stamp_aged else sum(train.plain)
        print(f"{len(train)} training pairs" + (f", {len(stamps)} stamps on {on} pairs" if stamps else ""))
    val_dir = Path(cfg["data"]) / "val"
    val = load_val(val_dir, cfg["eval_size"], cfg["eval_max"]) if val_dir.is_dir() else []
    step = 0
    ck = run.resume()
    if ck is not None:
        net.load_state_dict(ck["model"], strict=False)  # log_weight is set from the prior below
        ema.model.load_state_dict(ck["ema"], strict=False)
        opt.load_state_dict(ck["opt"])
        prior, step = ck["prior"], int(ck["step"])
        if run.master:
            print(f"resumed at step {step}")
    else:
        prior = measure_prior(train, centres, cfg)
    weights = rebalance_weights(prior, cfg["lam"], centres=centres).to(run.device)
    log_w = weights.log()
    with torch.no_grad():  # kept with the weights: decoding undoes the rebalancing bias with it
        net.log_weight.copy_(log_w)
        ema.model.log_weight.copy_(log_w)
    centres_d = centres.to(run.device)
    model = run.wrap(net)
    bar = tqdm(total=cfg["steps"], initial=step, desc="colorize cls", disable=not run.master)
    metrics: dict = {}
    while step < cfg["steps"]:
        net.train()
        lr = cosine_lr(cfg["lr"], step, cfg["steps"], cfg["warmup"], floor=0.02)
        for g in opt.param_groups:
            g["lr"] = lr
        L, ab = train.batch(cfg["seed"], step, cfg["batch_size"], run.rank, run.world)
        L, ab = L.to(run.device), quarter(ab).to(run.device)
        idx, wts = soft_encode(ab, centres_d)
        pix_w = weights[idx[:, 0]]  # rebalancing weight of each pixel's nearest bin
        with torch.autocast(run.device.type, enabled=run.amp, dtype=torch.bfloat16):
            logits = model(L)
        logp = torch.log_softmax(logits.float(), dim=1)
        ce = -(logp.gather(1, idx) * wts).sum(1)
        if cfg["loss"] == "huber":
            pred = annealed_mean(logits, centres_d, 1.0, log_w, float(cfg["reg_alpha"]))
            loss = F.smooth_l1_loss(pred, ab, beta=float(cfg["huber_beta"]))
        else:
            loss = (ce * pix_w).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        ema.update(net, step)
        step += 1
        bar.update(1)
        if step % 25 == 0 or step == 1:
            run.log({"step": step, "loss": loss.item(), "ce": ce.mean().item(), "lr": lr, "wall_s": run.elapsed()})
            bar.set_postfix(loss=f"{loss.item():.3f}")
        out_of_time = run.out_of_time()
        last = step == cfg["steps"] or out_of_time
        if step % cfg["ckpt_every"] == 0 or last:
            run.save({"model": net.state_dict(), "ema": ema.model.state_dict(), "opt": opt.state_dict(),
                      "prior": prior, "step": step, "lam": float(cfg["lam"])})
            if run.master:
                export_model(ema.model, ccfg, run.out / "model")
        if run.master and val and (step % cfg["eval_every"] == 0 or last):
            metrics = evaluate(ema.model, centres, val, ccfg, run.device)
            export_model(ema.model, ccfg, run.out / f"model_{step}")
            run.log({"step": step, "val": metrics})
            tqdm.write(f"step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
        if out_of_time:
            tqdm.write(f"time budget of {cfg['minutes']} min reached at step {step}")
            break
    bar.close()
    run.close()
    return {"step": step, "val": metrics, "wall_s": run.elapsed()}


if __name__ == "__main__":
    main()

"""Export a classification-colouriser run as serving weights, with its decoding chosen on validation.

    python -m training.export_chroma --run runs/colorize_cls [--step N] --data data/colorize_all --out weights/colorize
    python -m training.export_chroma --run runs/colorize_v15 --step N --data data/colorize_whole --whole --out DIR
    python -m training.export_chroma --run runs/colorize_cls --step N --data data/colorize_all --frontier

``--frontier`` exports nothing: it prints the model's validation frontier, the best PSNR over grey
among the decodings (α, T) whose colourfulness reaches 0.4x … 1.1x, to compare runs at equal colour.

With ``--whole`` the validation photos are whole photographs (``dataset_gen --whole``) colourised
as served: grey at their stored size, the network at the work size (long side) padded to a square,
ab at a quarter recombined with the full-resolution L (restoration.colorizer). Crops of a few
photographs resized to squares measured the vivid end at 0.93x colourfulness where whole held-out
photos measured 0.63x; the decoding has to be chosen on what users send.

The faithful end of the vividness range takes the prior correction α with the best validation
PSNR (temperature 1: the mean); the vivid end the most colourful (α, T) whose PSNR stays within
0.5 dB of returning the grey input; the served default is the most vivid setting on a 0.25 grid
whose PSNR is within 0.3 dB of the faithful end's. Weights are stored in fp16 (the network's ab
output changes by well under one Lab unit; measured and written to the model card).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dataset_gen.sources import PROCEDURAL_PREFIX
from restoration.chroma import ChromaConfig, annealed_mean, build, decoding, rebalance_weights
from restoration.color import lab_to_rgb, normalize_l, rgb_to_lab
from restoration.colorizer import recombine, working_batch
from restoration.weights import COLORIZE_FILE, load_tensors, read_config, save_tensors, write_config
from training.data import list_pngs, to_tensor
from training.loop import load_checkpoint
from training.metrics import COLOUR_RATIO_MIN_REF, colour_ratio, colourfulness, psnr
from training.train_colorizer import load_val


def _logits(net, photos: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = []
    with torch.no_grad():
        for rgb in photos:
            lab = rgb_to_lab(rgb)
            out.append((lab, net(normalize_l(lab[0:1])[None]).float()))
    return out


def load_whole(folder: Path) -> list[Image.Image]:
    """The colour originals (B halves) of a ``--whole`` dataset's validation pairs, one per source
    photo (its copies differ only in the grey input), photographs only where there are any, almost
    grey originals left out (as train_colorizer.load_val)."""
    files = list_pngs(folder)
    photos = [f for f in files if not f.name.startswith(PROCEDURAL_PREFIX)]
    files = photos or files
    out: list[Image.Image] = []
    seen: set[str] = set()
    for path in files:
        stem = path.stem.rsplit("_", 1)[0]
        if stem in seen:
            continue
        seen.add(stem)
        ab = Image.open(path).convert("RGB")
        b = ab.crop((ab.width // 2, 0, ab.width, ab.height))
        if colourfulness(to_tensor(b)) >= COLOUR_RATIO_MIN_REF:
            out.append(b)
    return out


def _logits_whole(net, cfg: ChromaConfig, photos: list[Image.Image]):
    """As served (restoration.colorizer.working_batch, as predict_ab): (grey photo, logits cropped
    to a quarter of its working size) per photo."""
    out = []
    with torch.no_grad():
        for img in photos:
            grey = img.convert("L").convert("RGB")
            x, [(h, w)] = working_batch(cfg, [grey])
            out.append((grey, net(x).float()[:, :, :-(-h // 4), :-(-w // 4)]))
    return out


def score_whole(cached, photos, centres, log_weight, alpha: float, t: float) -> tuple[float, float]:
    ps, cs = [], []
    for (grey, lg), img in zip(cached, photos, strict=True):
        ab = annealed_mean(lg, centres, t, log_weight, alpha)[0]
        out, ref = to_tensor(recombine(grey, ab)), to_tensor(img)
        ps.append(psnr(out, ref))
        ratio = colour_ratio(out, ref)
        if ratio is not None:
            cs.append(ratio)
    return float(np.mean(ps)), float(np.mean(cs)) if cs else 0.0


def score(cached, photos, centres, log_weight, alpha: float, t: float) -> tuple[float, float]:
    ps, cs = [], []
    for (lab, lg), rgb in zip(cached, photos, strict=True):
        ab = annealed_mean(lg, centres, t, log_weight, alpha)
        ab = F.interpolate(ab, size=rgb.shape[-2:], mode="bilinear", align_corners=False)[0]
        out = lab_to_rgb(torch.cat([lab[0:1], ab]))
        ps.append(psnr(out, rgb))
        ratio = colour_ratio(out, rgb)
        if ratio is not None:
            cs.append(ratio)
    return float(np.mean(ps)), float(np.mean(cs)) if cs else 0.0


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True)
    p.add_argument("--step", type=int, help="model_<step> (default: the run's last model)")
    p.add_argument("--data", required=True, help="the dataset whose val/ chooses the decoding")
    p.add_argument("--out", help="the weights directory to write (not with --frontier)")
    p.add_argument("--frontier", action="store_true",
                   help="print the validation frontier (best dB over grey at each colourfulness), export nothing")
    p.add_argument("--whole", action="store_true",
                   help="the dataset holds whole photos (dataset_gen --whole): validate as served")
    a = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    run = Path(a.run)
    model_dir = run / (f"model_{a.step}" if a.step else "model")
    cfg = ChromaConfig.from_dict(read_config(model_dir))
    net, centres = build(cfg)
    state = load_tensors(model_dir / COLORIZE_FILE)
    ck = load_checkpoint(run / "checkpoint.pt")
    lam = float(ck.get("lam", 0.5))  # the rebalancing the run trained with
    state["log_weight"] = rebalance_weights(ck["prior"], lam, centres=centres).log()
    net.load_state_dict(state, strict=True)
    net.eval()
    if a.whole:
        photos = load_whole(Path(a.data) / "val")
        cached = _logits_whole(net, cfg, photos)
        grey = float(np.mean([psnr(to_tensor(g), to_tensor(img)) for (g, _), img in zip(cached, photos, strict=True)]))
        measure = score_whole
    else:
        photos = load_val(Path(a.data) / "val", 192, 120)
        cached = _logits(net, photos)
        grey = float(np.mean([psnr(lab_to_rgb(torch.cat([lab[0:1], torch.zeros_like(lab[1:])])), rgb)
                              for (lab, _), rgb in zip(cached, photos, strict=True)]))
        measure = score
    lw = net.log_weight
    table = {}
    for alpha in (-0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5):
        for t in (1.0, 0.6, 0.38):
            table[(alpha, t)] = measure(cached, photos, centres, lw, alpha, t)
    if a.frontier:
        front = {}
        for x in (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1):
            ok = [ps - grey for ps, cr in table.values() if cr >= x]
            front[str(x)] = round(max(ok), 3) if ok else None
        summary = {"run": run.name, "model": model_dir.name, "val_grey_psnr": grey, "frontier": front}
        print(json.dumps(summary))
        return summary
    if not a.out:
        p.error("--out is required (or --frontier)")
    faithful = max((k for k in table if k[1] == 1.0), key=lambda k: table[k][0])
    vivid_ok = [k for k in table if table[k][0] >= grey - 0.5 and k[0] <= faithful[0]] or [faithful]
    vivid = max(vivid_ok, key=lambda k: table[k][1])
    cfg = replace(cfg, alpha_faithful=faithful[0], t_faithful=faithful[1], alpha_vivid=vivid[0], t_vivid=vivid[1],
                  num_bins=len(centres))
    grid = {}
    for v in (0.0, 0.25, 0.5, 0.75, 1.0):
        grid[v] = measure(cached, photos, centres, lw, *decoding(cfg, v))
    default = max(v for v, (ps, _) in grid.items() if ps >= grid[0.0][0] - 0.3)
    cfg = replace(cfg, vividness=default)
    # fp16 storage: how far the ab output moves
    half = {k: (v.half().float() if v.is_floating_point() else v) for k, v in net.state_dict().items()}
    net16, _ = build(cfg)
    net16.load_state_dict(half)
    net16.eval()
    with torch.no_grad():
        first = to_tensor(photos[0]) if a.whole else photos[0]
        x = normalize_l(rgb_to_lab(first)[0:1])[None]
        a32 = annealed_mean(net(x), centres, 1.0, lw, cfg.alpha_faithful)
        a16 = annealed_mean(net16(x), centres, 1.0, lw, cfg.alpha_faithful)
    fp16_max_ab = float((a32 - a16).abs().max())
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    save_tensors(net.state_dict(), out / COLORIZE_FILE, half=fp16_max_ab < 1.0)
    write_config(out, cfg.to_dict())
    step = a.step or int(ck.get("step", 0))
    summary = {"run": run.name, "model": model_dir.name, "step": step,
               "validation": "whole photos as served" if a.whole else "square crops", "val_photos": len(photos),
               "val_grey_psnr": grey,
               "faithful": faithful, "vivid": vivid, "default_vividness": default,
               "vividness_grid": {str(k): {"psnr": v[0], "colour_ratio": v[1]} for k, v in grid.items()},
               "fp16_max_ab_change": fp16_max_ab, "parameters": sum(p.numel() for p in net.parameters())}
    (out / "export.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [
        "# colorize: classification colouriser", "",
        f"- Network: restoration.chroma.ChromaNet, width {cfg.width}, {cfg.blocks} blocks, "
        f"{summary['parameters'] / 1e6:.2f} M parameters, {len(centres)} ab bins (grid {cfg.grid:g}); "
        f"sees the photo's L at {cfg.work_size} px (long side), predicts ab at a quarter of that.",
        f"- Trained: {run.name}, {model_dir.name}, step {step} of {int(ck.get('step', 0))} (docs/training.md), on the project's own dataset "
        "(python -m dataset_gen --task colorize --source all-photos ...), held-out photos excluded.",
        f"- Decoding: vividness 0 = α {cfg.alpha_faithful:g}, T {cfg.t_faithful:g}; vividness 1 = α {cfg.alpha_vivid:g}, "
        f"T {cfg.t_vivid:g}; served default {cfg.vividness:g} (chosen on validation, see export.json).",
        f"- Weights: {'fp16' if fp16_max_ab < 1.0 else 'fp32'} safetensors (fp16 vs fp32: ab moves at most "
        f"{fp16_max_ab:.3f} Lab units).", "",
        "| vividness | val PSNR dB (grey: " + f"{grey:.2f}) | colourfulness / original |", "| ---: | ---: | ---: |",
        *[f"| {v:g} | {ps:.2f} | {cr:.2f} |" for v, (ps, cr) in grid.items()], "",
    ]
    (out / "MODEL_CARD.md").write_text("\n".join(lines))
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()

"""Colourise a photo: a network predicts its colour (Lab chroma) at a small working size.

Two architectures load from a weights directory, told apart by ``arch`` in its config.json:
the classification colouriser of :mod:`restoration.chroma` (ab bins, decoded at a temperature
set by ``vividness``) and the Pix2Pix UNet generator (ab regressed directly). The network sees the luminance at a small working resolution (its ``work_size``) and
predicts a/b there; the chroma is upsampled to the photo's full size and recombined with the
photo's own full-resolution luminance, so no detail is lost and any input size works.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from restoration.chroma import ChromaConfig, annealed_mean, decoding, gamut_bins
from restoration.chroma import build as build_chroma
from restoration.color import denormalize_ab, lab_to_rgb, normalize_l, rgb_to_lab
from restoration.networks import GeneratorConfig, clean_reference_state_dict, define_G, required_multiple
from restoration.parallel import map_row_ranges
from restoration.weights import COLORIZE_FILES, first_existing, load_tensors, read_config

# Pixels recombined at a time at full resolution: bounds the float32 working set for huge photos
# and keeps each thread's temporaries near the cache (at 4000×3000, strips of 1 M pixels ran
# 1.12× slower than 256 K).
_STRIP_PIXELS = 1 << 18


ColorizerConfig = GeneratorConfig | ChromaConfig


def load_generator(model_dir: str, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, ColorizerConfig]:
    """Load a colouriser from a weights directory (``config.json`` + safetensors, or a reference
    ``latest_net_G.pth``, loaded without unpickling arbitrary objects)."""
    raw = read_config(model_dir)
    state = load_tensors(first_existing(model_dir, COLORIZE_FILES))
    if raw.get("arch") == "chroma_classifier":
        cfg: ColorizerConfig = ChromaConfig.from_dict(raw)
        net, centres = build_chroma(cfg)
        net.register_buffer("centres", centres, persistent=False)
        net.load_state_dict(state, strict=True)
    else:
        cfg = GeneratorConfig.from_dict(raw) if raw else GeneratorConfig()
        net = define_G(cfg)
        net.load_state_dict(clean_reference_state_dict(state, net), strict=True)
    net.eval().to(device)
    return net, cfg


def working_size(width: int, height: int, work_size: int) -> tuple[int, int]:
    """Size the generator sees: the longest side becomes ``work_size`` (never upscaled past it)."""
    longest = max(width, height)
    s = min(1.0, work_size / longest)
    return max(1, round(width * s)), max(1, round(height * s))


def padded_side(work_size: int, num_downs: int) -> int:
    """Every input is padded to this square so inputs of any aspect can be stacked in a batch
    (``num_downs=3`` for the classification colouriser: sides multiples of 8)."""
    m = required_multiple(num_downs)
    return max(m, math.ceil(work_size / m) * m)


def _to_tensor(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)


def _pad_to(x: torch.Tensor, side: int) -> torch.Tensor:
    _, _, h, w = x.shape
    ph, pw = side - h, side - w
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def input_multiple(cfg: ColorizerConfig) -> int:
    return 8 if isinstance(cfg, ChromaConfig) else required_multiple(cfg.num_downs)


def working_batch(cfg: ColorizerConfig, images: list[Image.Image]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """What the network sees: each image's normalised L at its working size, padded to one square
    (N×1×side×side), and each working size (h, w)."""
    m = input_multiple(cfg)
    side = max(m, math.ceil(cfg.work_size / m) * m)
    batch, sizes = [], []
    for img in images:
        w, h = working_size(*img.size, cfg.work_size)
        small = img.resize((w, h), Image.Resampling.BICUBIC, reducing_gap=3.0) if (w, h) != img.size else img
        L = rgb_to_lab(_to_tensor(small))[0:1]
        batch.append(_pad_to(normalize_l(L)[None], side))
        sizes.append((h, w))
    return torch.cat(batch), sizes


@torch.inference_mode()
def predict_ab(net: Callable[[torch.Tensor], torch.Tensor], cfg: ColorizerConfig, images: list[Image.Image],
               device: torch.device | str = "cpu", vividness: float | list[float | None] | None = None,
               centres: torch.Tensor | None = None, log_weight: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Predicted ab (2×h×w, Lab units) for each image, at its working size (Pix2Pix) or a quarter
    of it (classification). ``vividness``: one value, or one per image (None: the default)."""
    x, sizes = working_batch(cfg, images)
    out = net(x.to(device)).float().cpu()
    if not isinstance(cfg, ChromaConfig):
        out = out * cfg.chroma_scale
        return [denormalize_ab(out[i, :, :h, :w]) for i, (h, w) in enumerate(sizes)]
    if centres is None:
        centres = getattr(net, "centres", None)
        centres = gamut_bins(cfg.grid) if centres is None else centres
    per_image = vividness if isinstance(vividness, list) else [vividness] * len(images)
    log_weight = log_weight if log_weight is not None else getattr(net, "log_weight", None)
    result = []
    for i, (h, w) in enumerate(sizes):
        alpha, t = decoding(cfg, per_image[i])
        ab = annealed_mean(out[i:i + 1], centres.cpu(), t, log_weight, alpha)[0]
        result.append(ab[:, :math.ceil(h / 4), :math.ceil(w / 4)])
    return result


# sRGB decoding of 8-bit values and sRGB encoding of linear light, as lookup tables: the
# recombination runs per full-resolution pixel, and the power functions dominate it otherwise.
_DECODE_LUT = torch.where(
    torch.arange(256) / 255.0 > 0.04045, ((torch.arange(256) / 255.0 + 0.055) / 1.055) ** 2.4,
    torch.arange(256) / 255.0 / 12.92,
).float()
_DECODE_LUT_NP = _DECODE_LUT.numpy()
_ENCODE_STEPS = 65535
_lin = torch.arange(_ENCODE_STEPS + 1, dtype=torch.float64) / _ENCODE_STEPS
_ENCODE_LUT = torch.where(_lin > 0.0031308, 1.055 * _lin ** (1 / 2.4) - 0.055, 12.92 * _lin).mul(255.0).round().clamp(
    0, 255).to(torch.uint8)
del _lin
_WHITE_X, _WHITE_Z = 0.950456, 1.088754
_XYZ2RGB = torch.linalg.inv(torch.tensor(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)).float()


def _f_inv(f: torch.Tensor) -> torch.Tensor:
    return torch.where(f > 0.2068966, f * f * f, (f - 16.0 / 116.0) / 7.787)


def _recombine_rows(src: np.ndarray, ab_full: list[np.ndarray], out: np.ndarray, top: int, bottom: int) -> None:
    """:func:`recombine` for rows ``top``..``bottom``, in strips (writes ``out``)."""
    luma = torch.tensor([0.212671, 0.715160, 0.072169])
    rows = max(1, _STRIP_PIXELS // src.shape[1])
    for start in range(top, bottom, rows):
        stop = min(bottom, start + rows)
        lin = torch.from_numpy(_DECODE_LUT_NP[src[start:stop]])  # h×w×3 linear RGB
        y = lin @ luma
        fy = torch.where(y > 0.008856, y.clamp_min(1e-12) ** (1.0 / 3.0), 7.787 * y + 16.0 / 116.0)
        x = _f_inv(fy + torch.from_numpy(ab_full[0][start:stop]) / 500.0) * _WHITE_X
        z = _f_inv(fy - torch.from_numpy(ab_full[1][start:stop]) / 200.0) * _WHITE_Z
        rgb_lin = torch.stack([x, y, z], -1) @ _XYZ2RGB.T
        idx = rgb_lin.clamp_(0.0, 1.0).mul_(_ENCODE_STEPS).round_().long()
        out[start:stop] = _ENCODE_LUT[idx].numpy()


def recombine(image: Image.Image, ab_small: torch.Tensor) -> Image.Image:
    """Full-resolution L of ``image`` + ab upsampled to its size → RGB, in strips of rows.

    The luminance is kept exactly: Y (relative luminance) of the input pixel is reused as is,
    so only X and Z come from the predicted chroma. Equivalent to converting to Lab, replacing
    a and b, and converting back (``restoration.color``), to within one 8-bit level.
    """
    width, height = image.size
    # Chroma upsampling in PIL's float mode: cheap in memory even for 40 MP photos.
    ab_full = [
        np.array(Image.fromarray(ab_small[c].numpy().astype(np.float32), "F").resize(
            (width, height), Image.Resampling.BILINEAR))
        for c in range(2)
    ]
    src = np.asarray(image, dtype=np.uint8)
    out = np.empty_like(src)
    # Row ranges in parallel, one torch thread each: the work is element-wise and lookups, and one
    # range per core ran 1.2-1.35x faster than one range on all cores (1024x768 to 4000x3000,
    # identical output).
    threads = torch.get_num_threads()
    parts = max(1, min(threads, height // 64))
    if parts > 1:
        torch.set_num_threads(1)
    try:
        map_row_ranges(lambda _, top, bottom: _recombine_rows(src, ab_full, out, top, bottom), height, parts)
    finally:
        torch.set_num_threads(threads)
    return Image.fromarray(out, "RGB")


def recombine_reference(image: Image.Image, ab_small: torch.Tensor) -> Image.Image:
    """The plain Lab round trip that :func:`recombine` computes faster (for tests)."""
    width, height = image.size
    ab = F.interpolate(ab_small[None], size=(height, width), mode="bilinear", align_corners=False)[0]
    lab = rgb_to_lab(_to_tensor(image))
    lab[1:] = ab
    rgb = lab_to_rgb(lab).mul(255.0).round().clamp(0, 255).byte()
    return Image.fromarray(rgb.permute(1, 2, 0).numpy(), "RGB")


def colorize_images(net: Callable[[torch.Tensor], torch.Tensor], cfg: ColorizerConfig, images: list[Image.Image],
                    device: torch.device | str = "cpu", vividness: float | list[float | None] | None = None,
                    centres: torch.Tensor | None = None, log_weight: torch.Tensor | None = None) -> list[Image.Image]:
    """Colourise upright sRGB images (colour inputs are treated by their luminance). A runner
    that is not the module itself (ONNX, channels_last) needs the module's ``centres`` and
    ``log_weight`` passed."""
    abs_ = predict_ab(net, cfg, images, device, vividness, centres, log_weight)
    return [recombine(img, ab) for img, ab in zip(images, abs_, strict=True)]

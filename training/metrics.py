"""Image quality metrics: PSNR, SSIM, PSNR on the Y channel, and Hasler–Süsstrunk colourfulness.

Inputs are float tensors in [0, 1], shaped (3, H, W) or (N, 3, H, W) (SSIM and PSNR also take
one channel).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB (inf for identical inputs)."""
    mse = torch.mean((a.double() - b.double()) ** 2).item()
    if mse == 0:
        return float("inf")
    return 10.0 * torch.log10(torch.tensor(data_range**2 / mse)).item()


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """ITU-R BT.601 luma as used by SR benchmarks: Y in [16/255, 235/255] for x in [0, 1]."""
    r, g, b = x.unbind(-3)
    return (16.0 + 65.481 * r + 128.553 * g + 24.966 * b) / 255.0


def psnr_y(sr: torch.Tensor, hr: torch.Tensor, shave: int) -> float:
    """PSNR on the Y channel with ``shave`` border pixels removed (the usual SR protocol: shave = scale)."""
    ys, yh = rgb_to_y(sr), rgb_to_y(hr)
    if shave:
        ys, yh = ys[..., shave:-shave, shave:-shave], yh[..., shave:-shave, shave:-shave]
    return psnr(ys, yh)


def _gaussian(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    g = torch.exp(-((torch.arange(size, dtype=torch.float64) - size // 2) ** 2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] @ g[None, :]


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> float:
    """Mean SSIM (Wang et al. 2004: 11×11 Gaussian window, σ=1.5, K1=0.01, K2=0.03), per channel averaged."""
    a, b = a.double(), b.double()
    if a.dim() == 2:
        a, b = a[None], b[None]
    if a.dim() == 3:
        a, b = a[None], b[None]
    c = a.shape[1]
    w = _gaussian().to(a)[None, None].repeat(c, 1, 1, 1)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = F.conv2d(a, w, groups=c), F.conv2d(b, w, groups=c)
    saa = F.conv2d(a * a, w, groups=c) - mu_a**2
    sbb = F.conv2d(b * b, w, groups=c) - mu_b**2
    sab = F.conv2d(a * b, w, groups=c) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * sab + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (saa + sbb + c2)
    return (num / den).mean().item()


def colourfulness(x: torch.Tensor) -> float:
    """Hasler & Süsstrunk (2003) colourfulness M on 0–255 RGB: sqrt(σrg²+σyb²) + 0.3·sqrt(μrg²+μyb²).

    0 for a grey image; about 15 "slightly", 33 "moderately", 59 "quite", 82 "highly" colourful.
    """
    x = x.double() * 255.0
    r, g, b = x.unbind(-3)
    rg = r - g
    yb = 0.5 * (r + g) - b
    std = torch.sqrt(rg.std(unbiased=False) ** 2 + yb.std(unbiased=False) ** 2)
    mean = torch.sqrt(rg.mean() ** 2 + yb.mean() ** 2)
    return (std + 0.3 * mean).item()


# Below this colourfulness a photo is as good as grey (a micrograph, a grey archive print): its
# colour ratio would be a division by almost nothing, so it is left out of colour-ratio means.
COLOUR_RATIO_MIN_REF = 5.0


def colour_ratio(out: torch.Tensor, ref: torch.Tensor) -> float | None:
    """colourfulness(out) / colourfulness(ref); None where ``ref`` is almost grey."""
    cf = colourfulness(ref)
    return None if cf < COLOUR_RATIO_MIN_REF else colourfulness(out) / cf

"""Colourisation as classification over quantised ab (Zhang et al., 2016), with a global branch.

The network sees the luminance at a modest working size and predicts, at a quarter of it, a
distribution over ``Q`` ab bins (a 10-unit grid over the sRGB gamut). Training targets are
soft-encoded to the nearest bins and weighted by the inverse of the smoothed ab prior of the
training photographs (class rebalancing, so rare saturated colours are not drowned by the
many near-grey pixels). Decoding takes the *annealed mean* of the distribution at a temperature:
``T = 1`` is the plain mean (closest on average, desaturated), small ``T`` the vivid mode-like
colour; the public ``vividness`` setting (0 … 1) maps onto it.

An image-level feature (global average pool → MLP, added back to every position, as in Iizuka
et al., 2016) lets the decoder use the whole scene (sky vs. sea, indoor vs. outdoor).
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

GRID = 10.0  # ab bin spacing in Lab units
AB_RANGE = 110.0


def _lab_to_linear_rgb(L: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Unclipped linear sRGB of Lab values (for the gamut test)."""
    from restoration.color import _WHITE, _XYZ2RGB

    fy = (L + 16.0) / 116.0
    f = torch.stack([fy + a / 500.0, fy, fy - b / 200.0], -1)
    xyz = torch.where(f > 0.2068966, f**3, (f - 16.0 / 116.0) / 7.787) * _WHITE
    return xyz @ _XYZ2RGB.T


@functools.lru_cache(maxsize=4)
def gamut_bins(grid: float = GRID) -> torch.Tensor:
    """Centres (Q×2, Lab units) of the ab grid cells that hold an sRGB colour at some lightness."""
    steps = torch.arange(-AB_RANGE, AB_RANGE + 1e-6, grid)
    a, b = torch.meshgrid(steps, steps, indexing="ij")
    a, b = a.reshape(-1), b.reshape(-1)
    # a cell counts when any point of it is in gamut at any lightness (one vectorised test)
    offsets = torch.linspace(-grid / 2, grid / 2, 5)
    da, db = torch.meshgrid(offsets, offsets, indexing="ij")
    L = torch.linspace(2.0, 98.0, 49)[:, None, None]
    pa = (a[None, None, :] + da.reshape(1, -1, 1)).expand(len(L), -1, -1)
    pb = (b[None, None, :] + db.reshape(1, -1, 1)).expand(len(L), -1, -1)
    rgb = _lab_to_linear_rgb(L.expand_as(pa), pa, pb)
    ok = ((rgb >= 0) & (rgb <= 1)).all(-1).flatten(0, 1).any(0)
    return torch.stack([a[ok], b[ok]], -1)


def soft_encode(ab: torch.Tensor, centres: torch.Tensor, k: int = 5, sigma: float = 5.0) -> tuple[torch.Tensor, torch.Tensor]:
    """ab (N×2×H×W, Lab units) → (indices N×k×H×W of the k nearest bins, Gaussian weights)."""
    n, _, h, w = ab.shape
    flat = ab.permute(0, 2, 3, 1).reshape(-1, 2)
    d2 = torch.cdist(flat, centres.to(flat)).pow_(2)
    dist, idx = d2.topk(k, dim=1, largest=False)
    wts = torch.softmax(-dist / (2 * sigma * sigma), dim=1)
    return (idx.reshape(n, h, w, k).permute(0, 3, 1, 2), wts.reshape(n, h, w, k).permute(0, 3, 1, 2))


def rebalance_weights(prior: torch.Tensor, lam: float = 0.5, sigma_bins: float = 0.5,
                      centres: torch.Tensor | None = None) -> torch.Tensor:
    """Per-bin loss weights ∝ 1 / ((1-λ)·smoothed prior + λ/Q), normalised to E_prior[w] = 1."""
    p = prior / prior.sum()
    if centres is not None and sigma_bins > 0:  # smooth the prior over neighbouring bins
        d2 = torch.cdist(centres, centres).pow(2)
        kern = torch.exp(-d2 / (2 * (sigma_bins * GRID) ** 2))
        p = kern @ p
        p = p / p.sum()
    w = 1.0 / ((1 - lam) * p + lam / p.numel())
    return w / (p * w).sum()


def decoding(cfg: ChromaConfig, vividness: float | None) -> tuple[float, float]:
    """(prior correction α, temperature T) for a vividness setting (None: the config's default).

    Training with rebalancing weights ``w`` teaches the network roughly ``w(q)·p(q|x)``, biased
    towards rare saturated colours; subtracting ``α·log w`` from the logits undoes that bias
    (α = 1: the plain posterior, whose mean is closest on average). Vividness moves α and T from
    the faithful end (``alpha_faithful``, ``t_faithful``) to the vivid one, both set on validation.
    """
    v = cfg.vividness if vividness is None else vividness
    v = min(1.0, max(0.0, float(v)))
    alpha = cfg.alpha_faithful + (cfg.alpha_vivid - cfg.alpha_faithful) * v
    t = math.exp(math.log(cfg.t_faithful) + (math.log(cfg.t_vivid) - math.log(cfg.t_faithful)) * v)
    return alpha, t


def annealed_mean(logits: torch.Tensor, centres: torch.Tensor, temperature: float,
                  log_weight: torch.Tensor | None = None, alpha: float = 0.0) -> torch.Tensor:
    """Logits N×Q×h×w → ab N×2×h×w (Lab units): the mean of softmax((logits - α·log w) / T)."""
    logits = logits.float()
    if log_weight is not None and alpha:
        logits = logits - alpha * log_weight.to(logits)[None, :, None, None]
    prob = torch.softmax(logits / max(1e-3, temperature), dim=1)
    return torch.einsum("nqhw,qc->nchw", prob, centres.to(prob))


@dataclass
class ChromaConfig:
    """What rebuilds a :class:`ChromaNet` from its weights (stored beside them as JSON)."""

    arch: str = "chroma_classifier"
    width: int = 64
    blocks: int = 4
    grid: float = GRID
    work_size: int = 256
    # decoding (see `decoding`): the served default vividness and the two ends it moves between,
    # chosen on validation by export
    vividness: float = 0.5
    alpha_faithful: float = 1.0
    alpha_vivid: float = 0.5
    t_faithful: float = 1.0
    t_vivid: float = 0.6
    num_bins: int = 0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ChromaConfig:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _Res(nn.Module):
    def __init__(self, ch: int, dilation: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(ch, ch, 1, dilation), nn.Conv2d(ch, ch, 3, 1, dilation, dilation, bias=False),
                                  nn.BatchNorm2d(ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


class ChromaNet(nn.Module):
    """L (N×1×H×W, normalised to [-1, 1], H and W multiples of 8) → bin logits at H/4 × W/4.

    Cheap on purpose (most of the work at 1/8 scale): colour is low-frequency, and the served
    photo keeps its own full-resolution luminance."""

    def __init__(self, num_bins: int, width: int = 64, blocks: int = 4) -> None:
        super().__init__()
        c1, c2, c3 = width // 4, width // 2, width
        self.stem = nn.Sequential(_conv(1, c1, 2), _conv(c1, c2))  # /2
        self.down2 = _conv(c2, c2 * 2, 2)  # /4
        self.down3 = _conv(c2 * 2, c3 * 2, 2)  # /8
        self.mid = nn.Sequential(*[_Res(c3 * 2, 2 if i % 2 == 0 else 4) for i in range(blocks)])
        self.glob = nn.Sequential(nn.Linear(c3 * 2, c3 * 2), nn.ReLU(inplace=True), nn.Linear(c3 * 2, c3 * 2))
        self.up = nn.Sequential(nn.Conv2d(c3 * 2 + c2 * 2, c3, 1, bias=False), nn.BatchNorm2d(c3),
                                nn.ReLU(inplace=True), _conv(c3, c3))
        self.head = nn.Conv2d(c3, num_bins, 1)
        # log of the class-rebalancing weights the network was trained with (set by the trainer)
        self.register_buffer("log_weight", torch.zeros(num_bins))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s2 = self.down2(self.stem(x))
        s3 = self.mid(self.down3(s2))
        g = self.glob(s3.mean((2, 3)))[:, :, None, None]
        s3 = F.relu(s3 + g)
        up = F.interpolate(s3, size=s2.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(self.up(torch.cat([up, s2], 1)))


def build(cfg: ChromaConfig) -> tuple[ChromaNet, torch.Tensor]:
    centres = gamut_bins(cfg.grid)
    return ChromaNet(len(centres), cfg.width, cfg.blocks), centres

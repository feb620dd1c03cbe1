"""Repair an old print's damage (grain, dust, scratches, fading, blur, JPEG) on the luminance.

The network (:class:`RepairNet`, a Pix2Pix-family encoder-decoder with skip connections, no
normalisation layers) sees the photo's full-resolution luminance Y and predicts a residual
``dY``; the repaired photo is ``RGB + g·s·dY`` on every channel, which changes Y by exactly
``g·s·dY`` and keeps the chroma (Cb, Cr): a colour photo keeps its colours, a grey one stays grey.

* ``s`` is the user's strength (0 = off … 1 = full).
* ``g`` is a gate so that clean photos are left alone: each pixel's change is first shrunk by
  ``shrink`` (tiny corrections vanish, specks and scratches stay), then scaled by the estimated
  damage of the whole photo, ``mean |dY|`` in grey levels: 0 below ``gate_low``, 1 above
  ``gate_high``, linear between. Both thresholds are chosen on validation (training.train_repair).
  With ``band_sigma`` > 0 the gate works on two bands of ``dY``: its low band (a Gaussian blur:
  the change of tone that fading calls for, and that a clean low-contrast photo must not get)
  needs its own, larger estimated damage (``tone_low`` … ``tone_high``), while the high band
  (grain, specks, scratches) goes through the shrink and ``gate_low`` … ``gate_high`` as above.

Faded contrast, lifted blacks and a toned print's curve are properties of the whole photo, which
no tile can see: a small context branch reads a 64×64 thumbnail of the whole photo once and
modulates the network's features (FiLM) everywhere. Large photos then run in overlapping tiles
(bounded memory) that all get that same context; the rest of the network is fully convolutional
with a bounded receptive field and the tiles start on multiples of its stride, so the tiled
result matches an untiled pass to within rounding (the tests check ≤ 1/255).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from restoration.tiling import tile_grid
from restoration.weights import first_existing, load_tensors, read_config

REPAIR_FILES = ("repair.safetensors",)
ARCH = "repair_unet"
# ITU-R BT.601 luma, as PIL's "L" conversion and the training data use.
LUMA = (0.299, 0.587, 0.114)
RES_SCALE = 0.1


@dataclass
class RepairConfig:
    arch: str = ARCH
    width: int = 32  # channels at half resolution; deeper levels widen (×4/3, ×2, ×8/3)
    levels: int = 3  # downsamplings by 2 after the first (space-to-depth) halving
    blocks: int = 2  # residual blocks per encoder level (one per decoder level)
    # residual blocks added at the finest (half-resolution) level, this many after the head and as
    # many before the tail: where grain, specks and blocks a pixel or two wide are told from detail
    fine: int = 0
    # > 0: a noise-removal stage of this width runs first (a network of the same shape without the
    # context branch, trained on its own to take out only grain and speckle: damage(without=NOISE_OPS)),
    # and the network repairs its output; dY is still measured from the input
    denoise: int = 0
    shrink: float = 0.0  # per-pixel soft threshold on |dY|, grey levels (0-255)
    gate_low: float = 0.0  # estimated damage (mean |dY|, grey levels) below which nothing changes
    gate_high: float = 0.0  # ... above which the full correction applies (0, 0: no gate)
    context: int = 64  # side of the whole-photo thumbnail the context branch reads (0: no branch)
    knots: int = 16  # the context's global tone curve: a monotone piecewise-linear map with this many steps
    # > 0: the tone curve reads this many quantiles of the photo's luma (its histogram: where its
    # blacks and whites sit) beside the context vector, through a small MLP, instead of a linear map
    quantiles: int = 0
    # > 0: gate dY's low band (a Gaussian blur of this sigma, px) and its high band separately
    band_sigma: float = 0.0
    tone_low: float = 0.0  # low band's estimated damage (mean |low|, grey levels) below which it is dropped
    tone_high: float = 0.0  # ... above which it applies in full (0, 0: no tone gate)
    tile: int = 512  # tile core side in pixels (0: untiled)
    overlap: int = 96  # context margin per side; a multiple of the stride (2**(levels+1))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RepairConfig:
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})

    def ungated(self) -> RepairConfig:
        """The same network's settings with no shrink and no gate: the full correction."""
        return replace(self, shrink=0.0, gate_low=0.0, gate_high=0.0, tone_low=0.0, tone_high=0.0)

    @property
    def multiple(self) -> int:
        return 2 ** (self.levels + 1)


def _act() -> nn.Module:
    """The network's activation: a leaky ReLU (slope 0.2, as Pix2Pix's encoder), which cannot die.
    With plain ReLUs, a run's layer before the output drifted (Adam takes full-size steps on the
    tiny gradients a near-zero output layer passes down) until every unit was negative, and the
    network stayed at the identity from then on."""
    return nn.LeakyReLU(0.2, inplace=True)


class ResBlock(nn.Module):
    """A residual block scaled by ``RES_SCALE`` (as EDSR does): with no normalisation layers,
    unscaled blocks let the features grow level by level until the units before the output died
    (a run stayed at the identity for 5000 steps with features in the hundreds). ``zero``: its last
    convolution starts at zero, so the block starts as the identity (a network grown by such
    blocks computes at step 0 exactly what it did before)."""

    def __init__(self, ch: int, zero: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1), _act(), nn.Conv2d(ch, ch, 3, padding=1))
        if zero:
            nn.init.zeros_(self.body[-1].weight)
            nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + RES_SCALE * self.body(x)


def thumbnail(y: torch.Tensor, side: int) -> torch.Tensor:
    """The whole photo's luma (N×1×H×W) area-averaged to side×side: what the context branch reads."""
    return F.adaptive_avg_pool2d(y, (side, side))


class Context(nn.Module):
    """Thumbnail → one vector per photo: pooled convolutional features and the thumbnail's
    tone statistics (mean, spread, darkest and brightest values), then, with ``quantiles`` > 0,
    that many evenly spaced quantiles of its luma (from the darkest to the brightest value)."""

    def __init__(self, out: int = 64, quantiles: int = 0) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 16, 3, stride=2, padding=1), _act(),
                                  nn.Conv2d(16, 32, 3, stride=2, padding=1), _act(),
                                  nn.Conv2d(32, out - 4, 3, stride=2, padding=1), _act())
        self.out = out  # the features FiLM reads
        self.quantiles = quantiles
        self.full = out + quantiles  # the whole vector (the tone curve reads it all)

    def forward(self, thumb: torch.Tensor) -> torch.Tensor:
        flat = thumb.flatten(1)
        stats = torch.stack([flat.mean(1), flat.std(1), flat.amin(1), flat.amax(1)], 1)
        parts = [self.body(thumb - 0.5).mean((2, 3)), stats]
        if self.quantiles:
            # in float32 whatever the network runs in (torch.quantile takes no half precision)
            levels = torch.linspace(0, 1, self.quantiles, device=flat.device)
            parts.append(torch.quantile(flat.float(), levels, dim=1).T.to(flat.dtype))
        return torch.cat(parts, 1)


class FiLM(nn.Module):
    """Scale and shift feature maps by the photo's context (starts as the identity)."""

    def __init__(self, ctx: int, ch: int) -> None:
        super().__init__()
        self.lin = nn.Linear(ctx, 2 * ch)
        nn.init.zeros_(self.lin.weight)
        nn.init.zeros_(self.lin.bias)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.lin(ctx[:, :self.lin.in_features])[:, :, None, None].chunk(2, 1)
        return x * (1 + gamma) + beta


class ToneCurve(nn.Module):
    """A monotone piecewise-linear tone curve per photo from its context (starts as the identity):
    undoes faded contrast, lifted blacks and a toned print's response, which are the same
    everywhere in the photo and so are no job for the local network. ``hidden`` > 0: a small MLP
    (for the context with the luma quantiles: inverting a fade divides by the histogram's spread,
    which no linear map of the quantiles does) instead of a linear map."""

    def __init__(self, ctx: int, knots: int, hidden: int = 0) -> None:
        super().__init__()
        self.knots = knots
        if hidden:
            self.mlp = nn.Sequential(nn.Linear(ctx, hidden), _act(), nn.Linear(hidden, hidden), _act(),
                                     nn.Linear(hidden, knots + 1))
            last = self.mlp[-1]
        else:
            self.lin = nn.Linear(ctx, knots + 1)
            last = self.lin
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, y: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        p = self.mlp(ctx) if hasattr(self, "mlp") else self.lin(ctx)
        # softplus(0) = log 2: scaled so that zero parameters give equal steps of 1/knots
        steps = F.softplus(p[:, 1:]) / (math.log(2.0) * self.knots)
        start = 0.1 * torch.tanh(p[:, :1])
        levels = torch.cat([start, start + steps.cumsum(1)], 1)  # N×(knots+1), the curve at 0, 1/K, ... 1
        pos = y.clamp(0, 1) * self.knots
        idx = pos.floor().clamp(max=self.knots - 1)
        frac = pos - idx
        n = y.shape[0]
        flat = idx.long().reshape(n, -1)  # any layout (a rotated or flipped view too)
        lo = levels.gather(1, flat).view_as(y)
        hi = levels.gather(1, flat + 1).view_as(y)
        return lo + (hi - lo) * frac


class RepairNet(nn.Module):
    """Y (N×1×H×W in [0, 1]) → residual dY (N×1×H×W); any H, W (padded to the stride inside).

    dY = curve(Y) − Y + local(curve(Y)): a global tone curve from the photo's context, then a
    fully convolutional network for local damage (grain, dust, scratches, blocks, blur).

    ``ctx`` is the whole photo's context vector (:meth:`context` of its full luma), or ``thumb``
    its thumbnail (training passes a crop with its photo's thumbnail); when both are omitted it is
    computed from ``y`` itself, which is right whenever ``y`` is the whole photo.
    """

    def __init__(self, cfg: RepairConfig) -> None:
        super().__init__()
        self.multiple = cfg.multiple
        self.context_side = cfg.context
        mult = (1, 4 / 3, 2, 8 / 3, 8 / 3, 8 / 3)
        widths = [int(cfg.width * mult[i]) for i in range(cfg.levels + 1)]
        # Space-to-depth first (as FFDNet does): every layer runs at half resolution or below,
        # a quarter of the cost of a full-resolution first level, and the 2×2 pixels of each
        # block still reach the head unmixed.
        self.head = nn.Sequential(nn.PixelUnshuffle(2), nn.Conv2d(4, widths[0], 3, padding=1), _act())
        # the finest level's added blocks start as the identity (ResBlock zero): a model without
        # them initialises a model with them exactly (training.train_repair init)
        self.fine_enc = nn.Sequential(*[ResBlock(widths[0], zero=True) for _ in range(cfg.fine)])
        self.fine_dec = nn.Sequential(*[ResBlock(widths[0], zero=True) for _ in range(cfg.fine)])
        self.down = nn.ModuleList()
        self.enc = nn.ModuleList()
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in range(cfg.levels):
            self.down.append(nn.Sequential(nn.Conv2d(widths[i], widths[i + 1], 3, stride=2, padding=1),
                                           _act()))
            self.enc.append(nn.Sequential(*[ResBlock(widths[i + 1]) for _ in range(cfg.blocks)]))
            self.up.append(nn.Sequential(nn.Conv2d(widths[i + 1], widths[i] * 4, 1), nn.PixelShuffle(2)))
            self.dec.append(ResBlock(widths[i]))
        self.tail = nn.Sequential(nn.Conv2d(widths[0], widths[0], 3, padding=1), _act(),
                                  nn.Conv2d(widths[0], 4, 3, padding=1), nn.PixelShuffle(2))
        # Starts close to the identity (a residual of a fraction of a grey level), but not at it:
        # an all-zero output layer passes no gradient to the layers below until it has grown.
        nn.init.normal_(self.tail[-2].weight, std=1e-4)
        nn.init.zeros_(self.tail[-2].bias)
        self.pre: RepairNet | None = None
        if cfg.denoise:
            self.pre = RepairNet(RepairConfig(width=cfg.denoise, levels=cfg.levels, blocks=cfg.blocks, context=0,
                                              knots=0))
        self.curve: ToneCurve | None = None
        if cfg.context:
            self.ctx = Context(quantiles=cfg.quantiles)
            self.film_low = FiLM(self.ctx.out, widths[-1])
            self.film_high = FiLM(self.ctx.out, widths[0])
            if cfg.knots:
                self.curve = (ToneCurve(self.ctx.full, cfg.knots, hidden=64) if cfg.quantiles
                              else ToneCurve(self.ctx.out, cfg.knots))

    def context(self, y: torch.Tensor) -> torch.Tensor | None:
        """The context vector of whole photos (N×1×H×W luma); None without a context branch."""
        if not self.context_side:
            return None
        return self.ctx(thumbnail(y, self.context_side))

    def forward(self, y: torch.Tensor, ctx: torch.Tensor | None = None, thumb: torch.Tensor | None = None,
                return_base: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """dY; with ``return_base`` also the tone curve's output (training supervises it directly)."""
        y0 = y
        if ctx is None and self.context_side:
            ctx = self.ctx(thumb) if thumb is not None else self.context(y)
        if self.pre is not None:  # the context stays the input's: tiles get the whole photo's
            y = y + self.pre(y)
        base = y
        if ctx is not None and self.curve is not None:
            base = self.curve(y, ctx)
            y = base
        h, w = y.shape[-2:]
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        x = F.pad(y, (0, pw, 0, ph), mode="replicate") if ph or pw else y
        x = x - 0.5
        feats = [self.fine_enc(self.head(x))]
        for down, enc in zip(self.down, self.enc, strict=True):
            feats.append(enc(down(feats[-1])))
        z = feats[-1]
        if ctx is not None:
            z = self.film_low(z, ctx)
        for i in reversed(range(len(self.up))):
            z = self.dec[i](self.up[i](z) + feats[i])
        z = self.fine_dec(z)
        if ctx is not None:
            z = self.film_high(z, ctx)
        out = self.tail(z)[..., :h, :w] + (base - y0)
        return (out, base) if return_base else out


def build(cfg: RepairConfig) -> RepairNet:
    return RepairNet(cfg)


def load_repairer(model_dir: str, device: torch.device | str = "cpu") -> tuple[RepairNet, RepairConfig]:
    """Load the repair network and its settings from a weights directory."""
    raw = read_config(model_dir)
    if raw.get("arch") != ARCH:
        raise ValueError(f"{model_dir}: config.json is not a repair model (arch {raw.get('arch')!r})")
    cfg = RepairConfig.from_dict(raw)
    net = build(cfg)
    net.load_state_dict(load_tensors(first_existing(model_dir, REPAIR_FILES)), strict=True)
    net.eval().to(device)
    return net, cfg


def luma(rgb: np.ndarray) -> np.ndarray:
    """H×W×3 uint8 → H×W float32 luma in [0, 1]."""
    r, g, b = LUMA
    x = rgb.astype(np.float32)
    return (x[..., 0] * r + x[..., 1] * g + x[..., 2] * b) / 255.0


@torch.inference_mode()
def residual(net: RepairNet, y: torch.Tensor, tile: int = 512, overlap: int = 96, multiple: int = 16) -> torch.Tensor:
    """The network's dY for a 1×1×H×W luma tensor, in overlapping tiles; H×W float32 on the CPU.

    The whole photo's context is computed once and given to every tile. Tiles start on multiples
    of ``multiple`` (the network's stride) so each sees the grid an untiled pass sees; only each
    tile's core is kept.
    """
    _, _, height, width = y.shape
    ctx = net.context(y)
    if tile <= 0 or (height <= tile and width <= tile):
        return net(y, ctx)[0, 0].float().cpu()
    tile = max(multiple, tile // multiple * multiple)
    overlap = (overlap + multiple - 1) // multiple * multiple
    out = torch.empty((height, width), dtype=torch.float32)
    for top, left, bottom, right in tile_grid(height, width, tile):
        t0, l0 = max(0, top - overlap), max(0, left - overlap)
        b0, r0 = min(height, bottom + overlap), min(width, right + overlap)
        r = net(y[:, :, t0:b0, l0:r0], ctx)[0, 0]
        out[top:bottom, left:right] = r[top - t0:bottom - t0, left - l0:right - l0].float().cpu()
    return out


def _blur1(t: torch.Tensor, sigma: float) -> torch.Tensor:
    """A 1×1×H×W tensor blurred by a Gaussian of ``sigma`` px (separable; edges replicated)."""
    r = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-(x * x) / (2 * sigma * sigma))
    k = (k / k.sum()).to(t)
    t = F.conv2d(F.pad(t, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(t, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))


def gaussian_blur(d: torch.Tensor, sigma: float) -> torch.Tensor:
    """An H×W tensor's low band: a Gaussian blur of ``sigma`` px. A wide blur runs on a copy
    shrunk by ``sigma / 2`` (area averages) and comes back by bilinear interpolation: the band
    it keeps is smooth on that scale, and a 4K photo's band costs 1/16 of the work and memory."""
    h, w = d.shape
    f = max(1, int(sigma // 2))
    t = d[None, None]
    if f == 1:
        return _blur1(t, sigma)[0, 0]
    ph, pw = (-h) % f, (-w) % f
    if ph or pw:
        t = F.pad(t, (0, pw, 0, ph), mode="replicate")
    small = _blur1(F.avg_pool2d(t, f), sigma / f)
    up = F.interpolate(small, size=t.shape[-2:], mode="bilinear", align_corners=False)
    return up[0, 0, :h, :w]


def ramp(value: float, low: float, high: float) -> float:
    """0 below ``low``, 1 above ``high``, linear between; 1 when ``high`` ≤ ``low`` (no gate)."""
    if high > low:
        return min(1.0, max(0.0, (value - low) / (high - low)))
    return 1.0


def soft_threshold(d: torch.Tensor, shrink: float) -> torch.Tensor:
    if shrink <= 0:
        return d
    return torch.sign(d) * (d.abs() - shrink / 255.0).clamp_min(0.0)


def bands(d: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high): ``d``'s Gaussian blur and the rest."""
    low = gaussian_blur(d, sigma)
    return low, d - low


def gate(d: torch.Tensor, cfg: RepairConfig) -> tuple[torch.Tensor, float, float]:
    """Shrink small corrections, then scale by the photo's estimated damage (per band with
    ``band_sigma``: the low band by its own estimate and thresholds).

    Returns (gated dY, estimated damage in grey levels, gate factor in [0, 1]) — with bands, the
    high band's estimate and factor.
    """
    if cfg.band_sigma > 0:
        low, high = bands(d, cfg.band_sigma)
        g_tone = ramp(float(low.abs().mean()) * 255.0, cfg.tone_low, cfg.tone_high)
        high = soft_threshold(high, cfg.shrink)
        damage = float(high.abs().mean()) * 255.0
        g = ramp(damage, cfg.gate_low, cfg.gate_high)
        return high * g + low * g_tone, damage, g
    d = soft_threshold(d, cfg.shrink)
    damage = float(d.abs().mean()) * 255.0
    g = ramp(damage, cfg.gate_low, cfg.gate_high)
    return d * g, damage, g


def apply_delta(rgb: np.ndarray, delta: torch.Tensor) -> Image.Image:
    """Add dY (H×W, in [0, 1] units) to every channel of an H×W×3 uint8 photo."""
    d = delta.numpy()[..., None] * 255.0
    out = np.clip(np.rint(rgb.astype(np.float32) + d), 0, 255).astype(np.uint8)
    return Image.fromarray(out, "RGB")


def repair_image(net: RepairNet, cfg: RepairConfig, img: Image.Image,
                 strength: float | None = None, device: torch.device | str = "cpu", tile: int | None = None,
                 overlap: int | None = None) -> Image.Image:
    """Repair one RGB photo at full resolution (same size out); ``strength`` 0 … 1 (None: 1)."""
    s = 1.0 if strength is None else float(strength)
    rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    if s <= 0.0:
        return Image.fromarray(rgb.copy(), "RGB")
    y = torch.from_numpy(luma(rgb))[None, None].to(device)
    d = residual(net, y, cfg.tile if tile is None else tile, cfg.overlap if overlap is None else overlap,
                 cfg.multiple)
    d, _, _ = gate(d, cfg)
    return apply_delta(rgb, d * s)


def repair_images(net, cfg: RepairConfig, images: list[Image.Image], device: torch.device | str = "cpu",
                  strengths: list[float | None] | None = None) -> list[Image.Image]:
    strengths = strengths or [None] * len(images)
    return [repair_image(net, cfg, img, s, device) for img, s in zip(images, strengths, strict=True)]

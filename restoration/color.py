"""sRGB ↔ CIE Lab (D65) in torch, used by training and by the serving handler alike.

Tensors are ``(N, 3, H, W)`` or ``(3, H, W)``; sRGB in [0, 1], L in [0, 100], a/b roughly
[-110, 110].  The normalisation helpers map L to [-1, 1] and ab to about [-1, 1] as the
reference Pix2Pix colourisation mode does (L/50 - 1, ab/110).
"""

from __future__ import annotations

import torch

# sRGB (linear) → XYZ, D65 white, and its inverse.
_RGB2XYZ = torch.tensor(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)
_XYZ2RGB = torch.linalg.inv(_RGB2XYZ)
_WHITE = torch.tensor([0.950456, 1.0, 1.088754])
_EPS = 0.008856
_KAPPA = 7.787


def _mix(m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    # Channel mixing on dimension -3, so (C,H,W) and (N,C,H,W) both work.
    return torch.einsum("ij,...jhw->...ihw", m.to(x.dtype).to(x.device), x)


def _view_white(x: torch.Tensor) -> torch.Tensor:
    return _WHITE.to(x.dtype).to(x.device).view(3, 1, 1)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1] → Lab."""
    rgb = rgb.clamp(0.0, 1.0)
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = _mix(_RGB2XYZ, linear) / _view_white(rgb)
    f = torch.where(xyz > _EPS, xyz.clamp_min(1e-12) ** (1.0 / 3.0), _KAPPA * xyz + 16.0 / 116.0)
    fx, fy, fz = f.unbind(-3)
    L = 116.0 * fy - 16.0
    a = 500.0 * (fx - fy)
    b = 200.0 * (fy - fz)
    return torch.stack([L, a, b], dim=-3)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """Lab → sRGB in [0, 1] (out-of-gamut colours clipped)."""
    L, a, b = lab.unbind(-3)
    fy = (L + 16.0) / 116.0
    fx = fy + a / 500.0
    fz = fy - b / 200.0
    f = torch.stack([fx, fy, fz], dim=-3)
    xyz = torch.where(f > 0.2068966, f**3, (f - 16.0 / 116.0) / _KAPPA) * _view_white(lab)
    linear = _mix(_XYZ2RGB, xyz).clamp(0.0, 1.0)
    rgb = torch.where(linear > 0.0031308, 1.055 * linear.clamp_min(1e-12) ** (1.0 / 2.4) - 0.055, 12.92 * linear)
    return rgb.clamp(0.0, 1.0)


def normalize_l(L: torch.Tensor) -> torch.Tensor:
    """L in [0, 100] → [-1, 1] (generator input)."""
    return L / 50.0 - 1.0


def denormalize_l(x: torch.Tensor) -> torch.Tensor:
    return (x + 1.0) * 50.0


def normalize_ab(ab: torch.Tensor) -> torch.Tensor:
    """ab → about [-1, 1] (generator target)."""
    return ab / 110.0


def denormalize_ab(x: torch.Tensor) -> torch.Tensor:
    return x * 110.0


def network_to_rgb(task: str, a: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """A Pix2Pix network's space → RGB in [0, 1] (colorize: L of the input + predicted ab;
    other tasks: RGB in [-1, 1])."""
    if task == "colorize":
        return lab_to_rgb(torch.cat([denormalize_l(a), denormalize_ab(out)], 1))
    return (out.clamp(-1, 1) + 1) / 2

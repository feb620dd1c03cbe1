"""Metric functions against known values."""

from __future__ import annotations

import math

import pytest
import torch

from training.metrics import colourfulness, psnr, psnr_y, rgb_to_y, ssim


def test_psnr_known_value():
    a = torch.zeros(3, 8, 8)
    b = torch.full((3, 8, 8), 0.1)  # MSE 0.01 → 20 dB
    assert psnr(a, b) == pytest.approx(20.0, abs=1e-9)
    assert psnr(a, a) == math.inf


def test_psnr_y_shaves_border_and_uses_bt601():
    assert rgb_to_y(torch.ones(3, 1, 1)).item() == pytest.approx(235 / 255, abs=1e-6)
    assert rgb_to_y(torch.zeros(3, 1, 1)).item() == pytest.approx(16 / 255, abs=1e-6)
    a = torch.rand(3, 20, 20)
    b = a.clone()
    b[:, :2, :] = 1 - b[:, :2, :]  # damage only the border rows
    assert psnr_y(a, b, shave=2) == math.inf


def test_ssim_identity_and_inverse():
    x = torch.rand(3, 32, 32)
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-9)
    assert ssim(x, 1 - x) < 0.1


def test_ssim_constant_shift_matches_closed_form():
    # Two constant images: SSIM = (2·μa·μb + C1) / (μa² + μb² + C1) (contrast/structure terms are 1).
    a, b = torch.full((1, 16, 16), 0.2), torch.full((1, 16, 16), 0.6)
    c1 = 0.01**2
    assert ssim(a, b) == pytest.approx((2 * 0.2 * 0.6 + c1) / (0.2**2 + 0.6**2 + c1), rel=1e-6)


def test_colourfulness_values():
    assert colourfulness(torch.full((3, 8, 8), 0.5)) == pytest.approx(0.0, abs=1e-9)
    red = torch.zeros(3, 4, 4)
    red[0] = 1.0  # rg = 255, yb = 127.5 everywhere: σ = 0, μ term = 0.3·sqrt(255² + 127.5²)
    assert colourfulness(red) == pytest.approx(0.3 * math.hypot(255, 127.5), rel=1e-9)

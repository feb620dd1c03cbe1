"""The Pix2Pix networks: shapes, and checkpoint compatibility with the reference implementation."""

from __future__ import annotations

import pytest
import torch

from restoration.networks import (
    GeneratorConfig,
    clean_reference_state_dict,
    define_D,
    define_G,
    required_multiple,
)


def reference_unet_keys(num_downs: int, norm: str) -> list[str]:
    """State-dict keys of the reference `UnetGenerator`, derived from its layout description
    (not from our module): each level is `model.` + `model.<index>` of a Sequential, where
    outermost = [downconv, sub, uprelu, upconv, tanh], innermost = [downrelu, downconv, uprelu,
    upconv, upnorm], middle = [downrelu, downconv, downnorm, sub, uprelu, upconv, upnorm, (dropout)]."""
    batch = norm == "batch"
    norm_keys = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"] if batch else []
    keys: list[str] = []
    prefix = "model.model."
    # outermost level
    keys += [prefix + "0.weight"] + ([] if batch else [prefix + "0.bias"])  # downconv: bias only without BN
    keys += [prefix + "3.weight", prefix + "3.bias"]  # outermost upconv always has a bias
    sub = prefix + "1.model."
    for level in range(num_downs - 2):  # middle levels
        keys += [sub + "1.weight"] + ([] if batch else [sub + "1.bias"])
        keys += [sub + "2." + k for k in norm_keys]
        keys += [sub + "5.weight"] + ([] if batch else [sub + "5.bias"])
        keys += [sub + "6." + k for k in norm_keys]
        sub = sub + "3.model."
        del level
    # innermost
    keys += [sub + "1.weight"] + ([] if batch else [sub + "1.bias"])
    keys += [sub + "3.weight"] + ([] if batch else [sub + "3.bias"])
    keys += [sub + "4." + k for k in norm_keys]
    return keys


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_unet256_keys_match_reference_layout(norm):
    net = define_G(GeneratorConfig(input_nc=1, output_nc=2, num_downs=8, ngf=64, norm=norm))
    assert sorted(net.state_dict().keys()) == sorted(reference_unet_keys(8, norm))


def test_reference_checkpoint_loads_strict_and_runs():
    cfg = GeneratorConfig(num_downs=8, ngf=8, norm="batch")
    src = define_G(cfg)
    # A checkpoint as the reference writes it from a DataParallel model.
    state = {"module." + k: v.clone() for k, v in src.state_dict().items()}
    dst = define_G(cfg)
    dst.load_state_dict(clean_reference_state_dict(state, dst), strict=True)
    x = torch.randn(1, 1, 256, 256)
    src.eval()
    dst.eval()
    assert torch.equal(src(x), dst(x))


def test_old_instance_norm_checkpoint_keys_are_dropped():
    cfg = GeneratorConfig(num_downs=6, ngf=4, norm="instance")
    net = define_G(cfg)
    state = dict(net.state_dict())
    state["model.model.1.model.2.running_mean"] = torch.zeros(8)
    cleaned = clean_reference_state_dict(state, net)
    net.load_state_dict(cleaned, strict=True)


def test_generator_output_shape_and_range():
    cfg = GeneratorConfig(num_downs=6, ngf=8)
    net = define_G(cfg).eval()
    side = required_multiple(cfg.num_downs)
    y = net(torch.randn(2, 1, side, side * 2))
    assert y.shape == (2, 2, side, side * 2)
    assert y.abs().max() <= 1.0


def test_patchgan_70_receptive_field_output_size():
    d = define_D(3, ndf=8, n_layers=3)
    # 256×256 input → 30×30 patch logits in the paper's configuration
    assert d(torch.randn(1, 3, 256, 256)).shape == (1, 1, 30, 30)


def test_spectral_norm_discriminator_builds():
    d = define_D(3, ndf=8, n_layers=3, spectral_norm=True)
    assert d(torch.randn(1, 3, 64, 64)).shape[1] == 1

"""Pix2Pix networks: the UNet generator and the PatchGAN discriminator (Isola et al., 2017).

The modules are laid out so that their ``state_dict`` keys match checkpoints written by the
reference implementation (``--netG unet_256`` / ``unet_128``, ``--netD basic``/``n_layers``,
``--norm batch`` or ``instance``): a ``latest_net_G.pth`` trained there loads here with
``strict=True`` and can be archived and served unchanged.

Only torch is imported here: the serving handlers import this module too.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field

import torch
from torch import nn


def norm_layer_for(norm: str):
    """Map a norm name to a layer factory, as the reference does (``batch``, ``instance``, ``none``)."""
    if norm == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if norm == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if norm == "none":
        return lambda _channels: nn.Identity()
    raise ValueError(f"unknown norm {norm!r}; use 'batch', 'instance' or 'none'")


def _uses_bias(norm_layer) -> bool:
    # BatchNorm has its own affine shift, so the convolution before it needs no bias;
    # InstanceNorm (affine=False) and no norm do.
    factory = norm_layer.func if isinstance(norm_layer, functools.partial) else norm_layer
    return factory is not nn.BatchNorm2d


class UnetSkipConnectionBlock(nn.Module):
    """One level of the UNet: downsample, the inner levels, upsample, then concatenate the skip.

    ``|-- down -- [submodule] -- up --|`` followed by ``cat(x, up)`` (except at the outermost level).
    """

    def __init__(
        self,
        outer_nc: int,
        inner_nc: int,
        input_nc: int | None = None,
        submodule: nn.Module | None = None,
        outermost: bool = False,
        innermost: bool = False,
        norm_layer=nn.BatchNorm2d,
        use_dropout: bool = False,
    ) -> None:
        super().__init__()
        self.outermost = outermost
        use_bias = _uses_bias(norm_layer)
        if input_nc is None:
            input_nc = outer_nc
        downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
        downrelu = nn.LeakyReLU(0.2, True)
        downnorm = norm_layer(inner_nc)
        uprelu = nn.ReLU(True)
        upnorm = norm_layer(outer_nc)

        # The order of entries below fixes the state_dict indices; keep it.
        if outermost:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1)
            layers = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
            layers = [downrelu, downconv, uprelu, upconv, upnorm]
        else:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
            layers = [downrelu, downconv, downnorm, submodule, uprelu, upconv, upnorm]
            if use_dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """UNet with ``num_downs`` downsamplings: an input of side 2**num_downs reaches 1×1 at the bottom.

    Inputs must have height and width divisible by ``2**num_downs``; :func:`required_multiple`
    tells callers how much to pad.
    """

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        num_downs: int,
        ngf: int = 64,
        norm_layer=nn.BatchNorm2d,
        use_dropout: bool = False,
    ) -> None:
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"num_downs must be at least 5 (got {num_downs})")
        self.num_downs = num_downs
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, innermost=True, norm_layer=norm_layer)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(
                ngf * 8, ngf * 8, submodule=block, norm_layer=norm_layer, use_dropout=use_dropout
            )
        block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, norm_layer=norm_layer)
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block, norm_layer=norm_layer)
        block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block, norm_layer=norm_layer)
        self.model = UnetSkipConnectionBlock(
            output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True, norm_layer=norm_layer
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    """PatchGAN: with ``n_layers=3`` each output logit sees a 70×70 patch of the input."""

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3, norm_layer=nn.BatchNorm2d,
                 spectral_norm: bool = False) -> None:
        super().__init__()
        use_bias = _uses_bias(norm_layer)
        sn = nn.utils.spectral_norm if spectral_norm else (lambda m: m)
        kw, padw = 4, 1
        layers: list[nn.Module] = [sn(nn.Conv2d(input_nc, ndf, kw, 2, padw)), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [
                sn(nn.Conv2d(ndf * prev, ndf * mult, kw, 2, padw, bias=use_bias)),
                norm_layer(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [
            sn(nn.Conv2d(ndf * prev, ndf * mult, kw, 1, padw, bias=use_bias)),
            norm_layer(ndf * mult),
            nn.LeakyReLU(0.2, True),
            sn(nn.Conv2d(ndf * mult, 1, kw, 1, padw)),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


@dataclass
class GeneratorConfig:
    """Everything needed to rebuild a generator from its weights (stored beside them as JSON).

    ``task="colorize"`` means Lab colourisation: L in (1 channel), ab out (2 channels), as the
    reference's ``--dataset_mode colorization``.  ``work_size`` is the side of the square the
    serving handler resizes the longest image side to before inference.
    """

    input_nc: int = 1
    output_nc: int = 2
    num_downs: int = 8
    ngf: int = 64
    norm: str = "batch"
    use_dropout: bool = False
    task: str = "colorize"
    work_size: int = 256
    # Predicted chroma is multiplied by this at inference; export calibrates it on validation
    # pairs (training.export.calibrate_chroma). 1.0 is the generator's raw output.
    chroma_scale: float = 1.0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> GeneratorConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def define_G(cfg: GeneratorConfig) -> UnetGenerator:
    """Build the generator a config describes (the reference's ``unet_256`` is ``num_downs=8``)."""
    return UnetGenerator(
        cfg.input_nc, cfg.output_nc, cfg.num_downs, cfg.ngf, norm_layer_for(cfg.norm), cfg.use_dropout
    )


def define_D(input_nc: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch",
             spectral_norm: bool = False) -> NLayerDiscriminator:
    """Build the PatchGAN (``n_layers=3`` is the reference's ``basic`` 70×70 discriminator)."""
    return NLayerDiscriminator(input_nc, ndf, n_layers, norm_layer_for(norm), spectral_norm)


def required_multiple(num_downs: int) -> int:
    """Height and width of a generator input must be multiples of this."""
    return 2**num_downs


def init_weights(net: nn.Module, gain: float = 0.02) -> None:
    """Normal(0, 0.02) initialisation as in the paper; norm layers get weight ~ N(1, 0.02)."""

    def init(m: nn.Module) -> None:
        name = m.__class__.__name__
        if hasattr(m, "weight") and m.weight is not None and ("Conv" in name or "Linear" in name):
            nn.init.normal_(m.weight.data, 0.0, gain)
            if getattr(m, "bias", None) is not None:
                nn.init.constant_(m.bias.data, 0.0)
        elif "BatchNorm2d" in name:
            nn.init.normal_(m.weight.data, 1.0, gain)
            nn.init.constant_(m.bias.data, 0.0)

    net.apply(init)


def clean_reference_state_dict(state: dict[str, torch.Tensor], net: nn.Module) -> dict[str, torch.Tensor]:
    """Accept checkpoints saved by the reference code: strip ``module.`` (DataParallel) and drop
    InstanceNorm running stats that old PyTorch versions wrote for affine-free InstanceNorm."""
    out = {}
    wanted = set(net.state_dict().keys())
    for key, value in state.items():
        if key.startswith("module."):
            key = key[len("module."):]
        if key not in wanted and key.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked"):
            continue
        out[key] = value
    return out

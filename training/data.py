"""Datasets for training: aligned A|B pairs (Pix2Pix) and HR/LR pairs (super-resolution).

Sampling is a pure function of (seed, step): which images form a batch and how each is
jittered. A run resumed from a checkpoint therefore sees exactly the batches it would have
seen, and each DDP rank takes its own share of every batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dataset_gen.degrade import jpeg
from restoration.color import normalize_ab, normalize_l, rgb_to_lab


def list_pngs(folder: Path) -> list[Path]:
    files = sorted(p for p in Path(folder).glob("*.png") if not p.name.endswith(".tmp.png"))
    if not files:
        raise SystemExit(f"{folder}: no PNG pairs; build them with `python -m dataset_gen`")
    return files


def evenly_spaced(items: list, limit: int) -> list:
    """At most ``limit`` items spread evenly from the first to the last (all of them when ``limit``
    is 0 or not smaller): validation files sort by photo, so the first ``limit`` would be the crops
    of only the first few photos."""
    if not limit or len(items) <= limit:
        return list(items)
    if limit == 1:
        return list(items[:1])
    return [items[round(i * (len(items) - 1) / (limit - 1))] for i in range(limit)]


def to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL → 3×H×W float in [0, 1]."""
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0


def step_rng(seed: int, step: int, salt: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, step, salt])


def epoch_batch(n: int, seed: int, step: int, batch_size: int, rank: int = 0, world: int = 1) -> np.ndarray:
    """Indices of the batch of ``step`` (this rank's share): items drawn without replacement per epoch."""
    per_epoch = max(1, n // batch_size)
    epoch, within = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return order[within * batch_size:(within + 1) * batch_size][rank::world]


class PairDataset:
    """Aligned A|B PNGs as the reference implementation lays them out (A left, B right)."""

    def __init__(self, folder: Path, task: str, load_size: int, crop_size: int, train: bool = True) -> None:
        self.files = list_pngs(folder)
        self.task, self.load_size, self.crop_size, self.train = task, load_size, crop_size, train

    def __len__(self) -> int:
        return len(self.files)

    def pair(self, i: int, rng: np.random.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(input, target) tensors for file i; jittered (resize, crop, flip) when training."""
        ab = Image.open(self.files[i]).convert("RGB")
        w2, h = ab.size
        a, b = ab.crop((0, 0, w2 // 2, h)), ab.crop((w2 // 2, 0, w2, h))
        if self.train and rng is not None:
            a = a.resize((self.load_size, self.load_size), Image.Resampling.BICUBIC)
            b = b.resize((self.load_size, self.load_size), Image.Resampling.BICUBIC)
            x0 = int(rng.integers(0, self.load_size - self.crop_size + 1))
            y0 = int(rng.integers(0, self.load_size - self.crop_size + 1))
            box = (x0, y0, x0 + self.crop_size, y0 + self.crop_size)
            a, b = a.crop(box), b.crop(box)
            if rng.random() < 0.5:
                a, b = a.transpose(Image.Transpose.FLIP_LEFT_RIGHT), b.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        else:
            a = a.resize((self.crop_size, self.crop_size), Image.Resampling.BICUBIC)
            b = b.resize((self.crop_size, self.crop_size), Image.Resampling.BICUBIC)
        ta, tb = to_tensor(a), to_tensor(b)
        if self.task == "colorize":
            # Lab colourisation: L of the (grey, possibly aged) input in, ab of the photo out.
            return normalize_l(rgb_to_lab(ta)[0:1]), normalize_ab(rgb_to_lab(tb)[1:3])
        return ta * 2 - 1, tb * 2 - 1

    def batch(self, seed: int, step: int, batch_size: int, rank: int = 0, world: int = 1):
        """The batch of ``step`` (this rank's share): images drawn without replacement per epoch."""
        idx = epoch_batch(len(self.files), seed, step, batch_size, rank, world)
        rng = step_rng(seed, step, rank)
        pairs = [self.pair(int(i), rng) for i in idx]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


def jpeg_tensor(img: torch.Tensor, quality: int) -> torch.Tensor:
    """A 3×H×W image in [0, 1] through 8-bit JPEG at ``quality`` (dataset_gen's JPEG, PIL's encoder)."""
    arr = (img.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    return to_tensor(jpeg(Image.fromarray(arr, "RGB"), quality))


def blur_tensor(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """A C×H×W image blurred by an isotropic Gaussian of ``sigma`` pixels (reflected borders)."""
    r = max(1, int(np.ceil(3 * sigma)))
    x = torch.arange(-r, r + 1, dtype=img.dtype)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    c = img.shape[0]
    out = F.pad(img[None], (r, r, r, r), mode="reflect")
    out = F.conv2d(out, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    out = F.conv2d(out, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return out[0]


def noise_tensor(img: torch.Tensor, sigma: float, grey: bool, rng: np.random.Generator) -> torch.Tensor:
    """``img`` plus Gaussian noise of ``sigma`` (in [0, 1] units): the same on every channel
    (luminance noise) when ``grey``, else drawn per channel; clipped to [0, 1]."""
    shape = (1, *img.shape[1:]) if grey else tuple(img.shape)
    n = torch.from_numpy(rng.standard_normal(shape).astype(np.float32)) * sigma
    return (img + n).clamp(0, 1)


class SRDataset:
    """HR crops and their LR copies (``hr/`` and ``lr_x{scale}/`` with the same file names).

    ``jpeg=(lo, hi)`` with ``jpeg_p`` > 0 compresses each training LR patch, with that
    probability, at a quality drawn from lo..hi (a fresh draw every time a patch is used, so the
    network does not see the same artefacts twice); ``val_jpeg`` compresses every validation LR at
    one fixed quality, so that validation measures the gain over bicubic of the same JPEG.

    ``blur_p``/``noise_p`` > 0 add the other mild degradations of real photos (as the BSRGAN /
    Real-ESRGAN degradation models do): a Gaussian blur of the LR patch (sigma drawn from
    ``blur_sigma``, LR pixels) and Gaussian noise (sigma from ``noise_sigma``, grey levels; luminance
    noise in 40 % of draws, colour noise otherwise), each with its probability; the degradations
    drawn for a patch (blur, noise, JPEG) are applied in a random order."""

    def __init__(self, folder: Path, scale: int, patch: int, train: bool = True,
                 jpeg: tuple[int, int] | None = None, jpeg_p: float = 0.0, val_jpeg: int = 0,
                 blur_p: float = 0.0, blur_sigma: tuple[float, float] = (0.3, 1.0),
                 noise_p: float = 0.0, noise_sigma: tuple[float, float] = (1.0, 6.0)) -> None:
        self.hr = list_pngs(Path(folder) / "hr")
        self.lr_dir = Path(folder) / f"lr_x{scale}"
        if not self.lr_dir.is_dir():
            raise SystemExit(f"{self.lr_dir} missing: build the dataset with --scales including {scale}")
        self.scale, self.patch, self.train = scale, patch, train
        if jpeg is not None and not (1 <= int(jpeg[0]) <= int(jpeg[1]) <= 100):
            raise SystemExit(f"jpeg qualities {list(jpeg)}: expected 1 <= lo <= hi <= 100")
        if not 0.0 <= float(jpeg_p) <= 1.0:
            raise SystemExit(f"jpeg_p {jpeg_p}: expected a probability in [0, 1]")
        if not 0 <= int(val_jpeg) <= 100:
            raise SystemExit(f"val_jpeg {val_jpeg}: expected a JPEG quality 1..100 (0: none)")
        for name, prob in (("blur_p", blur_p), ("noise_p", noise_p)):
            if not 0.0 <= float(prob) <= 1.0:
                raise SystemExit(f"{name} {prob}: expected a probability in [0, 1]")
        for name, rng_ in (("blur_sigma", blur_sigma), ("noise_sigma", noise_sigma)):
            if len(rng_) != 2 or not 0.0 < float(rng_[0]) <= float(rng_[1]):
                raise SystemExit(f"{name} {list(rng_)}: expected [lowest, highest] with 0 < lowest <= highest")
        self.jpeg = (int(jpeg[0]), int(jpeg[1])) if jpeg is not None else None
        self.jpeg_p, self.val_jpeg = float(jpeg_p), int(val_jpeg)
        self.blur_p, self.noise_p = float(blur_p), float(noise_p)
        self.blur_sigma = (float(blur_sigma[0]), float(blur_sigma[1]))
        self.noise_sigma = (float(noise_sigma[0]), float(noise_sigma[1]))
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.hr)

    def _load(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if i not in self._cache:  # small datasets: keep decoded images in memory
            hr = to_tensor(Image.open(self.hr[i]).convert("RGB"))
            lr = to_tensor(Image.open(self.lr_dir / self.hr[i].name).convert("RGB"))
            if not self.train and self.val_jpeg:  # validation LR: compressed once, kept
                lr = jpeg_tensor(lr, self.val_jpeg)
            self._cache[i] = (lr, hr)
        return self._cache[i]

    def pair(self, i: int, rng: np.random.Generator | None,
             jpeg_rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        lr, hr = self._load(i)
        if not self.train or rng is None:
            return lr, hr
        s, p = self.scale, self.patch
        y0 = int(rng.integers(0, lr.shape[1] - p + 1))
        x0 = int(rng.integers(0, lr.shape[2] - p + 1))
        lr_p = lr[:, y0:y0 + p, x0:x0 + p]
        hr_p = hr[:, y0 * s:(y0 + p) * s, x0 * s:(x0 + p) * s]
        if jpeg_rng is not None:
            lr_p = self.degrade(lr_p, jpeg_rng)
        if rng.random() < 0.5:
            lr_p, hr_p = lr_p.flip(-1), hr_p.flip(-1)
        if rng.random() < 0.5:
            lr_p, hr_p = lr_p.flip(-2), hr_p.flip(-2)
        if rng.random() < 0.5:
            lr_p, hr_p = lr_p.transpose(-1, -2), hr_p.transpose(-1, -2)
        return lr_p.contiguous(), hr_p.contiguous()

    def degrade(self, lr: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """The training LR patch through the degradations drawn for it, in a random order."""
        ops = []
        if self.blur_p > 0 and rng.random() < self.blur_p:
            sigma = float(rng.uniform(*self.blur_sigma))
            ops.append(lambda x: blur_tensor(x, sigma))
        if self.noise_p > 0 and rng.random() < self.noise_p:
            sigma, grey = float(rng.uniform(*self.noise_sigma)) / 255.0, bool(rng.random() < 0.4)
            noise_rng = np.random.default_rng(rng.integers(1 << 62))
            ops.append(lambda x: noise_tensor(x, sigma, grey, noise_rng))
        if self.jpeg is not None and self.jpeg_p > 0 and rng.random() < self.jpeg_p:
            quality = int(rng.integers(self.jpeg[0], self.jpeg[1] + 1))
            ops.append(lambda x: jpeg_tensor(x, quality))
        if len(ops) > 1:
            ops = [ops[i] for i in rng.permutation(len(ops))]
        for op in ops:
            lr = op(lr)
        return lr

    def batch(self, seed: int, step: int, batch_size: int, rank: int = 0, world: int = 1):
        n = len(self.hr)
        rng = step_rng(seed, step, rank)
        # degradation draws from their own stream: the crops and flips stay those of a run without JPEG
        jpeg_rng = np.random.default_rng([seed, step, rank, 1])
        idx = np.random.default_rng([seed, step]).integers(0, n, batch_size)[rank::world]
        pairs = [self.pair(int(i), rng, jpeg_rng) for i in idx]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])

"""Worker settings read from the environment in one place, with one parser per kind of value.

    PIX2PIX_BACKEND         torch (default) | onnxruntime
    PIX2PIX_CHANNELS_LAST   1 (default) | 0: eager PyTorch in the NHWC memory format on the CPU
    PIX2PIX_TORCH_THREADS   compute threads of every model (default: PyTorch's)
    PIX2PIX_MODEL_THREADS   per model, over the above: "name=threads,name=threads"
    PIX2PIX_SR_TILE         SR tile side in input pixels (default 256; 0 = untiled)
    PIX2PIX_SR_OVERLAP      SR tile margin (default 24)
    PIX2PIX_ONNX            1 | 0 (default): archives also carry an ONNX graph
    PIX2PIX_MAX_INPUT_MB, PIX2PIX_MAX_INPUT_MP, PIX2PIX_MAX_OUTPUT_MP, PIX2PIX_MAX_ASPECT: the
                            image limits (restoration.image_io.Limits)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from restoration.image_io import Limits

BACKENDS = ("torch", "onnxruntime")
#: The restore workflow's colourise node runs beside its ×2 node: under load both compute at once,
#: and with all cores each they oversubscribe the CPU. The colourise step is about a tenth of the
#: work, so one thread costs a lone request little and keeps the ×2 node's threads on their cores
#: (make bench: restore at concurrency 16 went from 2.2 to 4.0 images/s on 2 cores).
DEFAULT_MODEL_THREADS = "restore__colorize=1"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def env_flag(name: str, default: bool, environ: Mapping[str, str] | None = None) -> bool:
    """The one boolean parser: 1/true/yes/on or 0/false/no/off (any case); unset or empty = default."""
    value = (os.environ if environ is None else environ).get(name, "").strip().lower()
    if not value:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name}={value!r}: use 1 or 0")


def env_int(name: str, default: int, environ: Mapping[str, str] | None = None, minimum: int = 0) -> int:
    value = (os.environ if environ is None else environ).get(name, "").strip()
    if not value:
        return default
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r}: must be a whole number") from None
    if n < minimum:
        raise ValueError(f"{name}={n}: must be at least {minimum}")
    return n


@dataclass(frozen=True)
class WorkerSettings:
    backend: str = "torch"
    channels_last: bool = True
    torch_threads: str | None = None
    model_threads: str = DEFAULT_MODEL_THREADS
    sr_tile: int = 256
    sr_overlap: int = 24
    onnx: bool = False
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WorkerSettings:
        env = os.environ if environ is None else environ
        backend = env.get("PIX2PIX_BACKEND", "torch").strip().lower() or "torch"
        if backend not in BACKENDS:
            raise ValueError(f"PIX2PIX_BACKEND={backend!r}: use one of {', '.join(BACKENDS)}")
        return cls(
            backend=backend,
            channels_last=env_flag("PIX2PIX_CHANNELS_LAST", True, env),
            torch_threads=env.get("PIX2PIX_TORCH_THREADS") or None,
            model_threads=env.get("PIX2PIX_MODEL_THREADS", DEFAULT_MODEL_THREADS),
            sr_tile=env_int("PIX2PIX_SR_TILE", 256, env),
            sr_overlap=env_int("PIX2PIX_SR_OVERLAP", 24, env),
            onnx=env_flag("PIX2PIX_ONNX", False, env),
            limits=Limits.from_env() if environ is None else Limits(),
        )

    def threads_for(self, model_name: str) -> int | None:
        """The thread count configured for ``model_name`` (None: leave PyTorch's default)."""
        threads = self.torch_threads
        for item in self.model_threads.split(","):
            name, sep, value = item.strip().partition("=")
            if sep and name.strip() == model_name:
                threads = value.strip()
        if threads is None:
            return None
        try:
            n = int(threads)
        except ValueError:
            raise ValueError(f"thread count for {model_name} must be a whole number, got {threads!r}") from None
        if n < 1:
            raise ValueError(f"thread count for {model_name} must be at least 1, got {n}")
        return n

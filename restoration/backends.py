"""Inference backends: eager PyTorch (the default) or ONNX Runtime on the CPU.

Eager PyTorch on the CPU runs the networks in the channels_last (NHWC) memory format: the same
weights and arithmetic, measured 1.4-1.6× faster for SR and a little faster for colourisation on
this project's benchmark (``make bench``; max difference 1/255). ``PIX2PIX_CHANNELS_LAST=0``
turns it off.

An archive built with ``python -m serving.archive --onnx`` carries the network as an ONNX graph
(``model.onnx``, exported from the same weights at build time). A worker started with
``PIX2PIX_BACKEND=onnxruntime`` runs that graph with ONNX Runtime instead of eager PyTorch; the
handlers call either the same way (a float tensor in, a float tensor out), so tiling, padding,
batching and colour handling are shared and the outputs agree to within float rounding (the
tests check the served images against eager PyTorch to within 1/255).

On GPUs the setting is ignored: eager PyTorch on CUDA is used there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch

from restoration.settings import WorkerSettings

logger = logging.getLogger(__name__)

BACKEND_ENV = "PIX2PIX_BACKEND"
CHANNELS_LAST_ENV = "PIX2PIX_CHANNELS_LAST"
ONNX_FILE = "model.onnx"
# Opset of the exported graphs (ONNX Runtime 1.2x runs it on every CPU).
OPSET = 18


def backend_setting() -> str:
    return WorkerSettings.from_env().backend


def channels_last_setting() -> bool:
    return WorkerSettings.from_env().channels_last


class ChannelsLast:
    """``net`` run in the channels_last memory format; takes and returns ordinary (contiguous)
    NCHW tensors, so callers see no difference but the time."""

    def __init__(self, net: torch.nn.Module) -> None:
        self.net = net.to(memory_format=torch.channels_last)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.contiguous(memory_format=torch.channels_last)).contiguous()


def torch_runner(net: torch.nn.Module, device: torch.device) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    """Eager PyTorch: channels_last on the CPU (unless switched off), the module as it is elsewhere."""
    if device.type == "cpu" and channels_last_setting():
        return ChannelsLast(net), "torch (channels_last)"
    return net, "torch"


def export_onnx(net: torch.nn.Module, example: torch.Tensor, path: Path, dynamic: dict[int, str]) -> Path:
    """Export ``net`` (eval, CPU, float32) to ``path``; ``dynamic`` names the input's free axes
    (e.g. ``{2: "height", 3: "width"}``); the other axes keep the example's size."""
    from torch.export import Dim

    dims = {axis: Dim(name, min=1 if axis == 0 else 8, max=64 if axis == 0 else 8192) for axis, name in dynamic.items()}
    net = net.float().eval().cpu()
    torch.onnx.export(net, (example.float().cpu(),), str(path), dynamo=True, opset_version=OPSET,
                      dynamic_shapes=(dims,), verbose=False)
    return path


class OnnxModule:
    """An ONNX Runtime session called like the module it was exported from."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.path = path

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input_name: x.detach().float().cpu().contiguous().numpy()})[0]
        return torch.from_numpy(out)


def select(net: torch.nn.Module, model_dir: str, device: torch.device) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    """The callable that runs ``net`` under the configured backend, and that backend's name.

    ``onnxruntime`` needs the archive's ``model.onnx`` and the ``onnxruntime`` package; when either
    is missing the worker says so in its log and serves with eager PyTorch, rather than not at all.
    """
    wanted = backend_setting()
    if wanted == "torch" or device.type != "cpu":
        return torch_runner(net, device)
    path = Path(model_dir) / ONNX_FILE
    if not path.exists():
        logger.error("%s=onnxruntime but the archive has no %s (build it with `python -m serving.archive "
                     "--onnx`); serving with eager PyTorch", BACKEND_ENV, ONNX_FILE)
        return torch_runner(net, device)
    try:
        # the worker's thread count (PIX2PIX_TORCH_THREADS / PIX2PIX_MODEL_THREADS, set before this)
        return OnnxModule(path, torch.get_num_threads()), "onnxruntime"
    except ImportError:
        logger.error("%s=onnxruntime but the onnxruntime package is not installed; serving with eager PyTorch",
                     BACKEND_ENV)
        return torch_runner(net, device)

"""Template for the image handlers: decode and check each request, restore the accepted ones,
encode the results, and answer every request in the batch on its own.

TorchServe calls :meth:`ImageHandler.handle` with a batch of requests.  A bad image in a batch
gets its own 4xx status and JSON body (``context.set_response_status`` per request) while the
other requests of the batch still get their pictures.  Subclasses implement
:meth:`ImageHandler.load_model` and :meth:`ImageHandler.restore` only.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import torch
from PIL import Image

from restoration import backends
from restoration.image_io import CONTENT_TYPES, ImageError, Limits, decode_image, encode_image, output_format
from restoration.names import WORKFLOW_NODES
from restoration.png import add_text, read_text
from restoration.settings import WorkerSettings

logger = logging.getLogger(__name__)

JSON_TYPE = "application/json"
# Shortest reply of a workflow node, result or error (see ImageHandler.handle).
WORKFLOW_MIN_REPLY_S = 0.05

# Settings a client may send, by form field name, with the request header that carries them too.
SETTINGS = {"vividness": "X-Vividness", "strength": "X-Repair-Strength", "sr_input": "X-SR-Input"}
# Fields TorchServe hands over besides the image: query parameters and form fields.
_NON_IMAGE_KEYS = {"format", *SETTINGS}
# PNG text key under which a workflow node hands the request's settings to the next node:
# TorchServe passes only the body from node to node, not the client's headers or form fields.
CARRY_KEY = "pix2pix-sr-settings"

def compute_threads(model_name: str, environ: dict[str, str] | None = None) -> int | None:
    """The thread count configured for ``model_name`` (None: leave PyTorch's default)."""
    return WorkerSettings.from_env(environ).threads_for(model_name)


def request_body(row: dict[str, Any]) -> bytes:
    """The image bytes of one request row (raw body, or the first file field of a multipart form).

    ``curl --data-binary @x.jpg`` without a Content-Type sends ``application/x-www-form-urlencoded``;
    TorchServe then parses the image as a URL-encoded form and the bytes are lost. That case gets a
    415 that says how to send the image instead of a confusing decode error.
    """
    for key in ("body", "data"):
        value = row.get(key)
        if value is not None:
            return _as_bytes(value)
    candidates = {k: v for k, v in row.items() if k not in _NON_IMAGE_KEYS}
    for value in candidates.values():
        if isinstance(value, bytes | bytearray) and len(value) > 16:
            return bytes(value)
    if candidates:
        raise ImageError(
            415,
            "FormEncodedBody",
            "the body arrived as a URL-encoded form, which corrupts image bytes; send the raw image with "
            "a Content-Type such as image/jpeg (curl: -H 'Content-Type: image/jpeg' --data-binary @photo.jpg) "
            "or as a multipart file field (curl -F data=@photo.jpg)",
        )
    return b""


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str):
        # TorchServe decodes text/* and JSON bodies before the handler sees them.
        return value.encode("utf-8", errors="surrogateescape")
    if isinstance(value, dict | list):
        return json.dumps(value).encode()
    return bytes(value)


def form_field(row: dict[str, Any], key: str) -> str | None:
    """A form field of a multipart request (``curl -F format=jpeg -F data=@x.png``).

    TorchServe 0.12 does not hand URL query parameters to handlers; form fields it does.
    """
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def error_body(err: ImageError) -> bytes:
    return json.dumps(err.to_dict()).encode()


def upstream_error(body: bytes) -> ImageError | None:
    """The error a previous workflow node answered with, if ``body`` is one.

    TorchServe drops a node's status code and passes its body to the next node; a JSON error
    body is recognised here so the next node forwards it instead of failing on it.
    """
    if not body.startswith(b"{") or len(body) > 65536:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, dict) and {"code", "type", "message"} <= data.keys() and isinstance(data["code"], int):
        return ImageError(data["code"], str(data["type"]), str(data["message"]))
    return None


class ImageHandler:
    """Base of the colourise and super-resolution handlers (TorchServe custom handler protocol)."""

    #: upscale factor of the output; used to refuse too-large outputs before decoding
    scale: int = 1
    #: metric dimension value and log name
    task: str = "image"

    def __init__(self) -> None:
        self.initialized = False
        self.model: torch.nn.Module | None = None
        # what runs the network: the module itself, or an ONNX Runtime session (restoration.backends)
        self.runner: Any = None
        self.backend = "torch"
        self.device = torch.device("cpu")
        self.limits = Limits()
        self.model_name = self.task
        self.in_workflow = False
        self.hands_on = False
        self._metrics: dict[str, Any] | None = None
        self._pending: list[tuple[str, float]] = []

    # -- TorchServe protocol -------------------------------------------------------------
    def initialize(self, context: Any) -> None:
        """Load the model from the archive's directory onto the worker's device."""
        props = context.system_properties
        model_dir = props.get("model_dir", ".")
        self.model_name = getattr(context, "model_name", None) or self.task
        gpu_id = props.get("gpu_id")
        if torch.cuda.is_available() and gpu_id is not None:
            self.device = torch.device(f"cuda:{gpu_id}")
        # Workflow nodes are registered as "<workflow>__<node>" (e.g. restore__sr_x2).
        self.in_workflow = "__" in self.model_name
        # A node before the last one hands its result on as PNG with the request's settings in it.
        self.hands_on = self.in_workflow and self.model_name.rpartition("__")[2] != WORKFLOW_NODES[-1]
        threads = compute_threads(self.model_name)
        if threads:
            torch.set_num_threads(threads)
        self.limits = Limits.from_env()
        self.model = self.load_model(model_dir)
        self.runner, self.backend = backends.select(self.model, model_dir, self.device)
        self._init_metrics(context)
        self.initialized = True
        logger.info("%s ready on %s with %s, %d threads (limits %s)", self.model_name, self.device, self.backend,
                    torch.get_num_threads(), self.limits)

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[bytes]:
        """One result per request: image bytes, or a JSON error with its own 4xx/5xx status."""
        started = time.perf_counter()
        try:
            results = self._handle(data, context)
        finally:
            self._flush_metrics()
        if self.in_workflow:
            # TorchServe 0.12's DagExecutor queues a node's job and only then attaches the promise
            # the reply completes; a reply that arrives in between is lost and the workflow request
            # hangs until the node's timeout-ms. A refusal takes about a millisecond and a small
            # image a few, so either can win that race on a loaded machine (seen in the hostile-input
            # test, and with 96×64 photos at 24 concurrent requests): hold every node reply back.
            # Photos of real size take longer than this anyway.
            time.sleep(max(0.0, WORKFLOW_MIN_REPLY_S - (time.perf_counter() - started)))
        return results

    def _handle(self, data: list[dict[str, Any]], context: Any) -> list[bytes]:
        results: list[bytes | None] = [None] * len(data)
        # (index in the batch, image, reply format, model options, the request's settings)
        accepted: list[tuple[int, Image.Image, str, dict, dict[str, str]]] = []
        for i, row in enumerate(data):
            t0 = time.perf_counter()
            try:
                body = request_body(row)
                upstream = upstream_error(body) if self.in_workflow else None
                if upstream is not None:
                    # An earlier workflow node refused the image: hand its verdict on unchanged.
                    raise upstream
                settings = request_settings(context, i, row, carried_settings(body) if self.in_workflow else {})
                fmt = output_format(settings.get("accept"), settings.get("format"))
                options = self.request_options(settings)
                decoded = decode_image(body, self.limits, scale=self.scale)
            except ImageError as err:
                self._reject(context, i, err, results)
                continue
            self._metric("DecodeSeconds", time.perf_counter() - t0)
            self._metric("InputMegapixels", decoded.megapixels)
            accepted.append((i, decoded.image, fmt, options, settings))

        if accepted:
            t0 = time.perf_counter()
            try:
                outputs = self.restore_batch([a[1] for a in accepted], [a[3] for a in accepted])
            except ImageError as err:
                for i, *_ in accepted:
                    self._reject(context, i, err, results)
                outputs = []
            except torch.OutOfMemoryError:
                oom = ImageError(503, "OutOfMemory", "the server ran out of memory for this image; "
                                                     "retry later or send a smaller image")
                for i, *_ in accepted:
                    self._reject(context, i, oom, results)
                outputs = []
            self._metric("InferenceSeconds", time.perf_counter() - t0)
            for (i, _, fmt, _, settings), out in zip(accepted, outputs, strict=False):
                t1 = time.perf_counter()
                if self.hands_on:
                    # lossless to the next node, the client's settings (and format) with it
                    fmt, png = "png", encode_image(out, "png")
                    results[i] = add_text(png, CARRY_KEY, json.dumps(settings, ensure_ascii=True))
                else:
                    results[i] = encode_image(out, fmt)
                context.set_response_content_type(i, CONTENT_TYPES[fmt])
                self._metric("EncodeSeconds", time.perf_counter() - t1)
        return [r if r is not None else b"" for r in results]

    @property
    def net(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """What runs the network: the backend's runner, or the module itself (once initialized)."""
        net = self.runner or self.model
        if net is None:
            raise RuntimeError(f"{type(self).__name__} is not initialized")
        return net

    # -- steps subclasses implement ------------------------------------------------------
    def load_model(self, model_dir: str) -> torch.nn.Module:
        raise NotImplementedError

    def restore(self, image: Image.Image) -> Image.Image:
        """Restore one upright sRGB image."""
        raise NotImplementedError

    def request_options(self, settings: dict[str, str]) -> dict:
        """This model's options from the request's settings (:func:`request_settings`); raise
        ImageError for a bad value."""
        return {}

    def restore_batch(self, images: list[Image.Image], options: list[dict] | None = None) -> list[Image.Image]:
        """Restore several images; subclasses that can stack inputs override this."""
        return [self.restore(img) for img in images]

    # -- helpers -------------------------------------------------------------------------
    def _reject(self, context: Any, i: int, err: ImageError, results: list[bytes | None]) -> None:
        results[i] = error_body(err)
        context.set_response_status(err.status, err.kind, i)
        context.set_response_content_type(i, JSON_TYPE)
        self._count_rejection(err.kind)
        logger.info("request %d refused: %s %s", i, err.status, err.kind)

    def _init_metrics(self, context: Any) -> None:
        metrics = getattr(context, "metrics", None)
        if metrics is None or not hasattr(metrics, "add_metric_to_cache"):
            return
        from ts.metrics.metric_type_enum import MetricTypes

        dims = ["ModelName", "Level"]
        self._metrics = {
            "DecodeSeconds": metrics.add_metric_to_cache("DecodeSeconds", "s", dims, MetricTypes.HISTOGRAM),
            "InferenceSeconds": metrics.add_metric_to_cache("InferenceSeconds", "s", dims, MetricTypes.HISTOGRAM),
            "EncodeSeconds": metrics.add_metric_to_cache("EncodeSeconds", "s", dims, MetricTypes.HISTOGRAM),
            "InputMegapixels": metrics.add_metric_to_cache("InputMegapixels", "MP", dims, MetricTypes.HISTOGRAM),
            "Rejections": metrics.add_metric_to_cache(
                "Rejections", "count", ["ModelName", "Level", "Reason"], MetricTypes.COUNTER
            ),
        }

    def _metric(self, name: str, value: float) -> None:
        # Held until the batch is done: each update is a log line the Java frontend parses at
        # once, and on a small CPU that parsing would compete with the inference threads.
        if self._metrics is not None:
            self._pending.append((name, value))

    def _flush_metrics(self) -> None:
        pending, self._pending = self._pending, []
        if self._metrics is None:  # nothing is queued without metrics; for the type checker
            return
        for name, value in pending:
            self._metrics[name].add_or_update(value, [self.model_name, "Model"])

    def _count_rejection(self, reason: str) -> None:
        if self._metrics is not None:
            self._metrics["Rejections"].add_or_update(1, [self.model_name, "Model", reason])


def carried_settings(body: bytes) -> dict[str, str]:
    """The settings an earlier workflow node stored in the image it handed on (empty if none)."""
    text = read_text(body[:65536], CARRY_KEY)
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


def request_settings(context: Any, i: int, row: dict[str, Any], carried: dict[str, str] | None = None
                     ) -> dict[str, str]:
    """The client's settings of request ``i``: each from its header, else its form field, else
    what an earlier workflow node carried; plus ``accept`` and ``format`` (the reply's format)."""
    carried = carried or {}
    out: dict[str, str] = {}
    for field, header in {**SETTINGS, "accept": "Accept", "format": ""}.items():
        value = request_header(context, i, header) if header else None
        if value is None and field != "accept":
            value = form_field(row, field)
        if value is None:
            value = carried.get(field)
        if value is not None:
            out[field] = value
    return out


def request_header(context: Any, i: int, key: str) -> str | None:
    try:
        return context.get_request_header(i, key)
    except (AttributeError, KeyError, IndexError):
        return None


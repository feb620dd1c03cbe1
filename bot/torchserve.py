"""A small aiohttp client for TorchServe's prediction API, shared by every job.

One :class:`aiohttp.ClientSession` for the bot's whole life (connection reuse), a timeout per
call, retries with exponential backoff on 503 and on connection errors (TorchServe restarting,
a worker coming back), the ``Authorization: Bearer`` header when an inference key is set, the
``X-Vividness`` header (the user's colour setting) on the colour endpoints only, the
``X-Repair-Strength`` header (the user's repair setting) on the repairing endpoints only, and the
``X-SR-Input`` header (what the user's photos are) on the endpoints that run the ×2 model only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass

import aiohttp

from restoration.names import COLORIZE, REPAIR, SR_X2, WORKFLOW_RESTORE, prediction_path

from . import metrics
from .credentials import KeySource, current

log = logging.getLogger(__name__)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
# Statuses worth another try: overloaded (503) and gateways in front of a restarting server.
RETRY_STATUSES = frozenset({502, 503, 504})
MAX_RETRY_AFTER = 30.0
# The per-request colour setting, 0 (faithful) … 1 (vivid); absent: the model's validated default.
VIVIDNESS_HEADER = "X-Vividness"
# Only the colouriser and the workflow that starts with it read it.
COLOUR_PATHS = frozenset({prediction_path(COLORIZE), prediction_path(WORKFLOW_RESTORE)})
# The per-request repair strength, 0 (off) … 1 (full); absent: full. Read by the repair model and
# the workflow that starts with it.
STRENGTH_HEADER = "X-Repair-Strength"
REPAIR_PATHS = frozenset({prediction_path(REPAIR), prediction_path(WORKFLOW_RESTORE)})
# Which ×2 weights serve: "compressed" picks the variant trained on degraded LR; absent (or
# "clean"): the default. Read by sr_x2 and the workflow that ends with it (×4 has one model).
SR_INPUT_HEADER = "X-SR-Input"
SR_INPUTS = ("clean", "compressed")  # the server answers 400 BadSrInput to anything else
SR_X2_PATHS = frozenset({prediction_path(SR_X2), prediction_path(WORKFLOW_RESTORE)})


class TorchServeError(Exception):
    """A prediction that did not give an image.

    ``status`` is the HTTP status (0 when TorchServe could not be reached); ``kind`` and ``message``
    come from the API's JSON error body when it has one. ``is_client_error`` tells a refused
    image (4xx: tell the user what to send instead) from a service fault (apologise).
    """

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(f"{status} {kind}: {message}")
        self.status = status
        self.kind = kind
        self.message = message

    @property
    def is_client_error(self) -> bool:
        """A refusal of the image itself (not of the bot's credentials)."""
        return 400 <= self.status < 500 and not self.is_auth_error

    @property
    def is_auth_error(self) -> bool:
        return self.status in (401, 403)


@dataclass(frozen=True)
class Prediction:
    """An image TorchServe answered with."""

    data: bytes
    media_type: str  # "image/png" or "image/jpeg", from the bytes, not the header
    seconds: float


def sniff_image_type(data: bytes) -> str | None:
    """``image/png`` or ``image/jpeg`` from the magic bytes; ``None`` for anything else.

    The workflow endpoint always answers ``Content-Type: application/json``, even for PNG bytes,
    so the header cannot be trusted.
    """
    if data.startswith(PNG_MAGIC):
        return "image/png"
    if data.startswith(JPEG_MAGIC):
        return "image/jpeg"
    return None


def parse_error(status: int, body: bytes) -> TorchServeError:
    """The API's JSON error body ``{code, type, message}`` (or TorchServe's own) as an exception."""
    kind, message = "HTTPError", body[:300].decode("utf-8", "replace").strip() or f"HTTP {status}"
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        payload = None
    if isinstance(payload, dict):
        kind = str(payload.get("type") or kind)
        message = str(payload.get("message") or message)
        # A workflow node forwards an upstream refusal inside a 500; its own code says what it was.
        code = payload.get("code")
        if status >= 500 and isinstance(code, int) and 400 <= code < 500:
            status = code
    # TorchServe answers a missing, wrong or expired key with 400 (InvalidKeyException): not the image's fault.
    if kind == "InvalidKeyException" or "Token Authori" in message or "Token Authentication" in message:
        status = 401
    return TorchServeError(status, kind, message)


def _unit_value(name: str, value: float) -> str:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be from 0 to 1, got {value!r}")
    return f"{value:g}"


def format_vividness(value: float) -> str:
    """The header value: ``0``, ``1``, ``0.25`` (the server refuses anything outside 0 … 1)."""
    return _unit_value("vividness", value)


def format_strength(value: float) -> str:
    """The ``X-Repair-Strength`` value: ``0.3``, ``1`` (the server answers 400 BadStrength outside 0 … 1)."""
    return _unit_value("repair strength", value)


def format_sr_input(value: str) -> str:
    """The ``X-SR-Input`` value: ``clean`` or ``compressed``."""
    if value not in SR_INPUTS:
        raise ValueError(f"sr_input must be one of {', '.join(SR_INPUTS)}, got {value!r}")
    return value


class TorchServeClient:
    """Calls ``POST {base}/predictions/<model>`` and ``POST {base}/wfpredict/<workflow>``."""

    def __init__(self, base_url: str, token: KeySource = None, timeout: float = 300.0, retries: int = 3,
                 backoff: float = 1.0) -> None:
        self.base_url = base_url.rstrip("/")
        # a fixed key, or a FileSecret read for every request (a rotated key is used at once)
        self.token = token
        self.timeout = aiohttp.ClientTimeout(total=timeout, connect=10)
        self.retries = retries
        self.backoff = backoff
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> TorchServeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _headers(self, path: str, vividness: float | None = None, strength: float | None = None,
                 sr_input: str | None = None) -> dict[str, str]:
        headers = {"Content-Type": "application/octet-stream", "Accept": "image/png"}
        key = current(self.token)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        if vividness is not None and path in COLOUR_PATHS:
            headers[VIVIDNESS_HEADER] = format_vividness(vividness)
        if strength is not None and path in REPAIR_PATHS:
            headers[STRENGTH_HEADER] = format_strength(strength)
        if sr_input is not None and path in SR_X2_PATHS:
            headers[SR_INPUT_HEADER] = format_sr_input(sr_input)
        return headers

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def close(self) -> None:
        """Close the connection pool (at shutdown)."""
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def predict(self, path: str, data: bytes, target: str = "", vividness: float | None = None,
                      strength: float | None = None, sr_input: str | None = None) -> Prediction:
        """Send image bytes to ``path`` and return the image TorchServe answers with.

        ``vividness`` (0 … 1) goes out as ``X-Vividness`` to the colour endpoints (colorize and the
        restore workflow) and is left out for the others; ``strength`` (0 … 1) goes out as
        ``X-Repair-Strength`` to the repairing endpoints (repair and the restore workflow) only;
        ``sr_input`` (``clean`` or ``compressed``) goes out as ``X-SR-Input`` to the endpoints that
        run the ×2 model (sr_x2 and the restore workflow) only. ``None`` sends no header.

        Raises :class:`TorchServeError`: 4xx for a refused image (not retried), the final status
        after retries for 5xx, 0 with kind ``Unavailable`` when TorchServe cannot be reached, and
        ``Timeout`` when no answer came within the timeout.
        """
        target = target or path.rsplit("/", 1)[-1]
        url = self.base_url + path
        headers = self._headers(path, vividness, strength, sr_input)
        attempt = 0
        while True:
            started = time.monotonic()
            delay = self.backoff * (2**attempt)
            try:
                async with self.session.post(url, data=data, headers=headers) as resp:
                    body = await resp.read()
                    elapsed = time.monotonic() - started
                    metrics.TORCHSERVE_SECONDS.labels(target=target).observe(elapsed)
                    if resp.status == 200:
                        media_type = sniff_image_type(body)
                        if media_type is None:
                            metrics.TORCHSERVE_ERRORS.labels(target=target, status="bad_body").inc()
                            raise parse_error(502, body)
                        return Prediction(body, media_type, elapsed)
                    metrics.TORCHSERVE_ERRORS.labels(target=target, status=str(resp.status)).inc()
                    error = parse_error(resp.status, body)
                    if resp.status not in RETRY_STATUSES or attempt >= self.retries:
                        raise error
                    retry_after = resp.headers.get("Retry-After", "")
                    if retry_after.isdigit():
                        delay = min(float(retry_after), MAX_RETRY_AFTER)
                    log.warning("TorchServe %s answered %s; retry %d/%d in %.1fs", target, resp.status,
                                attempt + 1, self.retries, delay)
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, ConnectionError) as exc:
                # Refused, reset, dropped or cut short: TorchServe is down or restarting.
                metrics.TORCHSERVE_ERRORS.labels(target=target, status="connection").inc()
                if attempt >= self.retries:
                    raise TorchServeError(0, "Unavailable", f"TorchServe is not reachable ({type(exc).__name__})") from exc
                log.warning("TorchServe %s not reachable (%s); retry %d/%d in %.1fs", target, type(exc).__name__,
                            attempt + 1, self.retries, delay)
            except TimeoutError as exc:
                # Not retried: a request that took the whole timeout would likely take it again.
                metrics.TORCHSERVE_ERRORS.labels(target=target, status="timeout").inc()
                raise TorchServeError(0, "Timeout", f"no answer within {self.timeout.total:.0f} s") from exc
            attempt += 1
            await asyncio.sleep(delay)

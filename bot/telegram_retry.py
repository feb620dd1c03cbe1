"""Retries for Telegram Bot API calls: 429 waits ``retry_after``, 5xx and dropped connections back off.

aiogram has no built-in retry; this request middleware wraps every call the bot makes except
``getUpdates`` (the polling loop has its own backoff).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramEntityTooLarge,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods import GetUpdates, TelegramMethod
from aiogram.methods.base import Response

from . import metrics

log = logging.getLogger(__name__)

MAX_RETRY_AFTER = 300.0


class RetryMiddleware(BaseRequestMiddleware):
    """Send a failed call again: after ``retry_after`` on 429, with exponential backoff on 5xx
    and network errors; give up after ``retries`` attempts and raise the last error."""

    def __init__(self, retries: int = 5, base_delay: float = 0.5, max_delay: float = 30.0) -> None:
        self.retries = retries
        self.base_delay = base_delay
        self.max_delay = max_delay

    async def __call__(self, make_request: NextRequestMiddlewareType[Any], bot: Bot,
                       method: TelegramMethod[Any]) -> Response[Any]:
        name = method.__api_method__
        if isinstance(method, GetUpdates):
            return await make_request(bot, method)
        attempt = 0
        while True:
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as exc:
                error, kind, delay = exc, "retry_after", min(float(exc.retry_after), MAX_RETRY_AFTER)
            except TelegramEntityTooLarge as exc:  # a network error subclass in aiogram, but final
                metrics.TELEGRAM_ERRORS.labels(method=name, kind="entity_too_large").inc()
                raise exc
            except (TelegramServerError, ClientDecodeError) as exc:  # 5xx, or a non-JSON page from a proxy
                error, kind, delay = exc, "server_error", min(self.base_delay * 2**attempt, self.max_delay)
            except TelegramNetworkError as exc:
                error, kind, delay = exc, "network", min(self.base_delay * 2**attempt, self.max_delay)
            except TelegramAPIError as exc:
                metrics.TELEGRAM_ERRORS.labels(method=name, kind=type(exc).__name__).inc()
                raise
            metrics.TELEGRAM_ERRORS.labels(method=name, kind=kind).inc()
            if attempt >= self.retries:
                log.error("Telegram %s failed after %d attempts (%s)", name, attempt + 1, kind)
                raise error
            attempt += 1
            metrics.TELEGRAM_RETRIES.labels(method=name).inc()
            log.warning("Telegram %s: %s; retry %d/%d in %.1f s", name, kind, attempt, self.retries, delay)
            await asyncio.sleep(delay)

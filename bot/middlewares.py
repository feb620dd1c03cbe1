"""Update middlewares: metrics, the allow-list, and the user's language for every handler."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.exceptions import TelegramAPIError
from aiogram.types import CallbackQuery, Message, TelegramObject, Update, User

from . import metrics
from .texts import language_of, text

log = logging.getLogger(__name__)

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


class UpdateTracker(BaseMiddleware):
    """Counts updates by type and remembers the newest update id (confirmed at shutdown)."""

    def __init__(self) -> None:
        self.last_update_id: int | None = None

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        if isinstance(event, Update):
            metrics.UPDATES.labels(type=event.event_type).inc()
            if self.last_update_id is None or event.update_id > self.last_update_id:
                self.last_update_id = event.update_id
        return await handler(event, data)


class AccessControl(BaseMiddleware):
    """Drops updates from users outside the allow-list (when one is set) and tells them, at most
    once an hour, that the bot is private. Also puts the user's language into ``data["lang"]``."""

    def __init__(self, allowed: frozenset[int], notice_every_s: float = 3600.0) -> None:
        self.allowed = allowed
        self.notice_every_s = notice_every_s
        self._noticed: dict[int, float] = {}

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user: User | None = data.get("event_from_user")
        lang = language_of(user.language_code if user else None)
        data["lang"] = lang
        if not self.allowed or (user is not None and user.id in self.allowed):
            return await handler(event, data)
        if user is None:
            return None
        log.info("update from user %s refused: not on the allow-list", user.id)
        now = time.monotonic()
        if now - self._noticed.get(user.id, -1e9) >= self.notice_every_s:
            self._noticed[user.id] = now
            inner = event.event if isinstance(event, Update) else event
            try:
                if isinstance(inner, Message):
                    await inner.answer(text(lang, "not_allowed"))
                elif isinstance(inner, CallbackQuery):
                    await inner.answer(text(lang, "not_allowed"), show_alert=True)
            except TelegramAPIError:
                pass
        return None

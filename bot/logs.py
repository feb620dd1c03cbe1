"""Logging set-up that keeps secrets out of the logs.

aiohttp errors quote request URLs, and Telegram URLs carry the bot token
(``/bot<token>/sendPhoto``, ``/file/bot<token>/...``); a filter on the handler replaces every
secret in messages and tracebacks before anything is written.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable

REDACTED = "***"


Secret = str | Callable[[], str | None] | None


def _variants(secret: str | None) -> set[str]:
    if not secret or len(secret) < 6:
        return set()
    if ":" in secret:  # a bot token is <id>:<secret>; the secret half alone must go too
        return {secret, secret.split(":", 1)[1]}
    return {secret}


class RedactSecrets(logging.Filter):
    """Replace each secret (and a bot token's secret half) in a record's text and traceback.

    A secret may be a callable (a key file re-read when it changes): its current value is
    redacted, asked for on every record."""

    def __init__(self, secrets: Iterable[Secret]) -> None:
        super().__init__()
        found: set[str] = set()
        self.sources: list[Callable[[], str | None]] = []
        for secret in secrets:
            if callable(secret):
                self.sources.append(secret)
            else:
                found |= _variants(secret)
        self.fixed = found

    @property
    def secrets(self) -> list[str]:
        """Every value to redact now, longest first (so a secret inside another goes whole)."""
        found = set(self.fixed)
        for source in self.sources:
            found |= _variants(source())
        return sorted(found, key=len, reverse=True)

    def redact(self, value: str, secrets: list[str] | None = None) -> str:
        for secret in self.secrets if secrets is None else secrets:
            value = value.replace(secret, REDACTED)
        return value

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self.secrets
        if not secrets:
            return True
        message = record.getMessage()
        clean = self.redact(message, secrets)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text, secrets)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info, secrets)
        return True


def setup_logging(secrets: Iterable[Secret], level: str = "INFO") -> None:
    """Log to stderr, with secrets redacted from everything any library logs."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access log would list every webhook request; warnings are enough.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

"""Logging set-up that keeps secrets out of the logs.

aiohttp errors quote request URLs, and Telegram URLs carry the bot token
(``/bot<token>/sendPhoto``, ``/file/bot<token>/...``); a filter on the handler replaces every
secret in messages and tracebacks before anything is written.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

REDACTED = "***"


class RedactSecrets(logging.Filter):
    """Replace each secret (and a bot token's secret half) in a record's text and traceback."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        super().__init__()
        found: set[str] = set()
        for secret in secrets:
            if not secret or len(secret) < 6:
                continue
            found.add(secret)
            if ":" in secret:  # a bot token is <id>:<secret>; the secret half alone must go too
                found.add(secret.split(":", 1)[1])
        self.secrets = sorted(found, key=len, reverse=True)

    def redact(self, value: str) -> str:
        for secret in self.secrets:
            value = value.replace(secret, REDACTED)
        return value

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        clean = self.redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def setup_logging(secrets: Iterable[str | None], level: str = "INFO") -> None:
    """Log to stderr, with secrets redacted from everything any library logs."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access log would list every webhook request; warnings are enough.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

"""Bot settings, read once from environment variables (the only way to configure the bot).

A secret setting ``NAME`` may instead be given as ``NAME_FILE``, the path of a file holding it
(Kubernetes mounts Secrets as files). The TorchServe key's file is read again whenever it
changes (:mod:`bot.credentials`); the others are read at start.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from restoration.image_io import MB, Limits
from restoration.names import (
    BOT_METRICS_PORT,
    DEFAULT_TELEGRAM_API_BASE,
    DEFAULT_TORCHSERVE_URL,
    ENV_BOT_ALLOWED_USERS,
    ENV_BOT_METRICS_PORT,
    ENV_BOT_TOKEN,
    ENV_TELEGRAM_API_BASE,
    ENV_TORCHSERVE_TOKEN,
    ENV_TORCHSERVE_URL,
)

from .credentials import FileSecret, KeySource

# Telegram refuses getFile for files above 20 MB, so a larger image can never reach the bot.
TELEGRAM_DOWNLOAD_LIMIT = 20 * MB


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def _int(env: dict[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not an integer") from exc
    if value < minimum:
        raise ConfigError(f"{name}={value} is below the minimum {minimum}")
    return value


def _float(env: dict[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not a number") from exc
    if value < minimum:
        raise ConfigError(f"{name}={value} is below the minimum {minimum}")
    return value


def _bool(env: dict[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (use 1/0, true/false)")


def _secret(env: dict[str, str], name: str, *, missing_file_ok: bool = False) -> str | None:
    """``NAME``, or the contents of the file ``NAME_FILE`` names; ``None`` when neither is set.

    ``missing_file_ok``: a named file that does not exist counts as unset (a Secret key marked
    optional is simply absent from the mounted folder)."""
    inline = env.get(name, "").strip()
    path = env.get(f"{name}_FILE", "").strip()
    if inline and path:
        raise ConfigError(f"both {name} and {name}_FILE are set; use one of them")
    if not path:
        return inline or None
    try:
        return Path(path).read_text(encoding="utf-8").strip() or None
    except FileNotFoundError as exc:
        if missing_file_ok:
            return None
        raise ConfigError(f"{name}_FILE={path}: no such file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{name}_FILE={path}: cannot read it ({type(exc).__name__})") from exc


def parse_user_ids(raw: str | None) -> frozenset[int]:
    """``"12, 34"`` → ``{12, 34}``; empty means everybody is allowed."""
    ids: set[int] = set()
    for part in (raw or "").replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            ids.add(int(part))
        except ValueError as exc:
            raise ConfigError(f"{ENV_BOT_ALLOWED_USERS}: {part!r} is not a numeric Telegram user id") from exc
    return frozenset(ids)


@dataclass(frozen=True)
class Settings:
    """Everything the bot reads from the environment; see bot/README.md for each variable."""

    token: str
    telegram_api_base: str = DEFAULT_TELEGRAM_API_BASE
    torchserve_url: str = DEFAULT_TORCHSERVE_URL
    torchserve_token: str | None = None
    # the key's file, re-read whenever it changes (a rotated key needs no restart); it may be
    # absent at start (the Secret is filled in later)
    torchserve_token_file: Path | None = None
    metrics_port: int = BOT_METRICS_PORT
    metrics_host: str = "0.0.0.0"
    allowed_users: frozenset[int] = frozenset()
    state_dir: Path = Path("state")
    redis_url: str | None = None
    redis_password: str | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = None
    webhook_host: str = "0.0.0.0"
    webhook_port: int = 8443
    webhook_path: str = "/telegram"
    max_jobs: int = 4
    user_max_queued: int = 3
    user_burst: int = 10
    user_rate_per_min: float = 20.0
    torchserve_timeout: float = 300.0
    torchserve_retries: int = 3
    torchserve_backoff: float = 1.0
    telegram_retries: int = 5
    shutdown_timeout: float = 60.0
    album_wait: float = 0.8
    image_workers: int = 1
    compare_default: bool = False
    limits: Limits = field(default_factory=Limits)

    @property
    def download_limit(self) -> int:
        """Largest file the bot downloads: Telegram's getFile cap or the service's byte limit."""
        return min(TELEGRAM_DOWNLOAD_LIMIT, self.limits.max_bytes)

    @property
    def db_path(self) -> Path:
        return self.state_dir / "jobs.sqlite3"

    def torchserve_key(self) -> KeySource:
        """What the TorchServe client sends as its key: the file (re-read on change) or the value."""
        if self.torchserve_token_file is not None:
            return FileSecret(self.torchserve_token_file)
        return self.torchserve_token

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Read the settings; raise :class:`ConfigError` naming the variable that is wrong."""
        env = dict(os.environ if env is None else env)
        token = _secret(env, ENV_BOT_TOKEN)
        if not token:
            raise ConfigError(f"{ENV_BOT_TOKEN} is not set; get a token from @BotFather and export it "
                              f"(or name a file holding it in {ENV_BOT_TOKEN}_FILE)")
        webhook_url = _secret(env, "BOT_WEBHOOK_URL")
        webhook_secret = _secret(env, "BOT_WEBHOOK_SECRET")
        token_file = env.get(f"{ENV_TORCHSERVE_TOKEN}_FILE", "").strip()
        if token_file and env.get(ENV_TORCHSERVE_TOKEN, "").strip():
            raise ConfigError(f"both {ENV_TORCHSERVE_TOKEN} and {ENV_TORCHSERVE_TOKEN}_FILE are set; use one of them")
        if webhook_url and not webhook_secret:
            raise ConfigError("BOT_WEBHOOK_URL is set but BOT_WEBHOOK_SECRET is not; webhook mode needs a secret")
        return cls(
            token=token,
            telegram_api_base=env.get(ENV_TELEGRAM_API_BASE, "").strip().rstrip("/") or DEFAULT_TELEGRAM_API_BASE,
            torchserve_url=env.get(ENV_TORCHSERVE_URL, "").strip().rstrip("/") or DEFAULT_TORCHSERVE_URL,
            torchserve_token=env.get(ENV_TORCHSERVE_TOKEN, "").strip() or None,
            torchserve_token_file=Path(token_file) if token_file else None,
            metrics_port=_int(env, ENV_BOT_METRICS_PORT, BOT_METRICS_PORT),
            metrics_host=env.get("BOT_METRICS_HOST", "").strip() or "0.0.0.0",
            allowed_users=parse_user_ids(_secret(env, ENV_BOT_ALLOWED_USERS, missing_file_ok=True)),
            state_dir=Path(env.get("BOT_STATE_DIR", "").strip() or "state"),
            redis_url=env.get("BOT_REDIS_URL", "").strip() or None,
            redis_password=_secret(env, "BOT_REDIS_PASSWORD"),
            webhook_url=webhook_url,
            webhook_secret=webhook_secret,
            webhook_host=env.get("BOT_WEBHOOK_HOST", "").strip() or "0.0.0.0",
            webhook_port=_int(env, "BOT_WEBHOOK_PORT", 8443, minimum=1),
            webhook_path=env.get("BOT_WEBHOOK_PATH", "").strip() or "/telegram",
            max_jobs=_int(env, "BOT_MAX_JOBS", 4, minimum=1),
            user_max_queued=_int(env, "BOT_USER_MAX_QUEUED", 3, minimum=1),
            user_burst=_int(env, "BOT_USER_BURST", 10, minimum=1),
            user_rate_per_min=_float(env, "BOT_USER_RATE_PER_MIN", 20.0, minimum=0.01),
            torchserve_timeout=_float(env, "BOT_TORCHSERVE_TIMEOUT", 300.0, minimum=1.0),
            torchserve_retries=_int(env, "BOT_TORCHSERVE_RETRIES", 3),
            torchserve_backoff=_float(env, "BOT_TORCHSERVE_BACKOFF", 1.0),
            telegram_retries=_int(env, "BOT_TELEGRAM_RETRIES", 5),
            shutdown_timeout=_float(env, "BOT_SHUTDOWN_TIMEOUT", 60.0),
            album_wait=_float(env, "BOT_ALBUM_WAIT", 0.8),
            image_workers=_int(env, "BOT_IMAGE_WORKERS", 1, minimum=1),
            compare_default=_bool(env, "BOT_COMPARE_DEFAULT", False),
            limits=Limits.from_env(),
        )

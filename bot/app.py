"""Wiring and life cycle: build the bot, resume saved jobs, take updates, shut down gracefully.

aiogram stops polling on a signal but does not wait for the work its handlers started; here
SIGTERM stops taking updates, lets the jobs in flight finish (bounded by BOT_SHUTDOWN_TIMEOUT),
leaves waiting jobs in the job store for the next start, confirms the updates already handled
and only then exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from aiogram import BaseMiddleware, Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramAPIError, TelegramUnauthorizedError
from aiogram.fsm.storage.base import BaseStorage
from aiogram.fsm.storage.memory import MemoryStorage
from aiogram.types import BotCommand, TelegramObject

from . import metrics
from .config import ConfigError, Settings
from .intake import Intake
from .jobs import JobQueue, UserRateLimiter
from .logs import setup_logging
from .middlewares import AccessControl, UpdateTracker
from .processing import JobRunner
from .routers import commands_router, fallback_router, images_router
from .store import JobStore
from .telegram_retry import RetryMiddleware
from .texts import COMMANDS, mode_name, text
from .torchserve import TorchServeClient

log = logging.getLogger("bot")


class InFlight(BaseMiddleware):
    """Counts handlers running now, so shutdown can wait for them before confirming updates."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def __call__(self, handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
                       event: TelegramObject, data: dict[str, Any]) -> Any:
        self.count += 1
        self._idle.clear()
        try:
            return await handler(event, data)
        finally:
            self.count -= 1
            if self.count == 0:
                self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False


def make_storage(settings: Settings) -> BaseStorage:
    """Where each user's mode and settings live: memory, or Redis when BOT_REDIS_URL is set."""
    if not settings.redis_url:
        return MemoryStorage()
    try:
        from aiogram.fsm.storage.redis import RedisStorage
    except ImportError as exc:  # the `redis` package is optional
        raise ConfigError("BOT_REDIS_URL is set but the `redis` package is not installed (pip install redis)") from exc
    # The password from BOT_REDIS_PASSWORD(_FILE), or already in the URL (redis://:pw@host:6379/0).
    if settings.redis_password and urlsplit(settings.redis_url).password:
        raise ConfigError("BOT_REDIS_URL carries a password and BOT_REDIS_PASSWORD is set too; use one of them")
    kwargs = {"password": settings.redis_password} if settings.redis_password else {}
    return RedisStorage.from_url(settings.redis_url, connection_kwargs=kwargs)


async def check_storage(storage: BaseStorage, timeout: float = 10.0) -> None:
    """Fail at start, with a message naming the setting, when the Redis storage cannot be reached
    (instead of failing every user's command later)."""
    redis = getattr(storage, "redis", None)
    if redis is None:
        return
    kwargs = redis.connection_pool.connection_kwargs
    where = f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"  # never the URL: it may hold a password
    try:
        await asyncio.wait_for(redis.ping(), timeout)
    except Exception as exc:  # noqa: BLE001 (connection refused, DNS, auth, timeout: all mean the same here)
        raise ConfigError(f"cannot reach Redis at {where} (BOT_REDIS_URL): {type(exc).__name__}") from exc


def make_bot(settings: Settings) -> Bot:
    """A Bot whose every call (except getUpdates) is retried on 429, 5xx and dropped connections."""
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_base))
    session.middleware(RetryMiddleware(retries=settings.telegram_retries))
    return Bot(settings.token, session=session)


class BotApp:
    """Everything the running bot holds, built from :class:`Settings`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = JobStore(settings.db_path)
        self.bot = make_bot(settings)
        self.torchserve = TorchServeClient(settings.torchserve_url, settings.torchserve_key(),
                                           timeout=settings.torchserve_timeout, retries=settings.torchserve_retries,
                                           backoff=settings.torchserve_backoff)
        self.runner = JobRunner(self.bot, self.torchserve, self.store, settings)
        self.queue = JobQueue(self.runner, settings.max_jobs, settings.user_max_queued,
                              UserRateLimiter(settings.user_burst, settings.user_rate_per_min),
                              on_position=self.runner.show_position)
        self.intake = Intake(self.bot, self.store, self.queue, settings.album_wait)
        self.tracker = UpdateTracker()
        self.in_flight = InFlight()
        self.storage = make_storage(settings)
        self.dp = self.build_dispatcher()
        self.stop_requested = asyncio.Event()

    def build_dispatcher(self) -> Dispatcher:
        dp = Dispatcher(storage=self.storage, settings=self.settings, intake=self.intake, queue=self.queue,
                        store=self.store)
        dp.update.outer_middleware(self.tracker)
        dp.update.outer_middleware(AccessControl(self.settings.allowed_users))
        dp.update.outer_middleware(self.in_flight)
        dp.include_routers(commands_router, images_router, fallback_router)
        return dp

    async def set_commands(self) -> None:
        """The command menu in English (default) and Russian."""
        for lang, commands in COMMANDS.items():
            menu = [BotCommand(command=c, description=d) for c, d in commands]
            with contextlib.suppress(TelegramAPIError):
                await self.bot.set_my_commands(menu, language_code=None if lang == "en" else lang)

    async def resume(self) -> int:
        """Put the jobs a previous run accepted but did not finish back in the queue."""
        jobs = self.store.unfinished()
        for job in jobs:
            job.status_ready.set()
            position = self.queue.submit(job)
            job.shown_position = position
            metrics.JOBS_RESUMED.inc()
        for job in jobs:
            await self.runner.show_status(job, text(job.lang, "resumed") + "\n" + text(
                job.lang, "queued", position=self.queue.position(job) or 1, mode=mode_name(job.lang, job.mode)))
        if jobs:
            log.info("resumed %d job(s) from the job store", len(jobs))
        return len(jobs)

    def request_stop(self, sig: signal.Signals) -> None:
        log.info("%s received: no new updates; finishing the jobs in flight", sig.name)
        self.stop_requested.set()

    async def run(self) -> None:
        """Start, serve until SIGTERM/SIGINT, then shut down gracefully."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig)
        metrics.serve(self.settings.metrics_port, self.settings.metrics_host)
        await check_storage(self.storage)
        pruned = self.store.prune()
        try:
            me = await self.bot.get_me()
        except TelegramUnauthorizedError as exc:
            raise ConfigError("Telegram refused the bot token (401); check TELEGRAM_BOT_TOKEN") from exc
        log.info("bot @%s (id %s) starting; job store %s (%d old jobs pruned)", me.username, me.id,
                 self.settings.db_path, pruned)
        await self.set_commands()
        await self.resume()
        self.queue.start()
        try:
            if self.settings.webhook_url:
                await self.serve_webhook()
            else:
                await self.poll()
        finally:
            await self.shutdown()

    async def poll(self) -> None:
        await self.bot.delete_webhook(drop_pending_updates=False)
        polling = asyncio.create_task(self.dp.start_polling(
            self.bot, handle_signals=False, close_bot_session=False,
            allowed_updates=self.dp.resolve_used_update_types()))
        stop = asyncio.create_task(self.stop_requested.wait())
        await asyncio.wait({polling, stop}, return_when=asyncio.FIRST_COMPLETED)
        if not polling.done():
            try:
                await self.dp.stop_polling()
            except RuntimeError:  # the stop came before polling had started
                polling.cancel()
        stop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await polling
        await self.confirm_updates()

    async def confirm_updates(self) -> None:
        """Tell Telegram the updates handled so far are done, so a restart does not get them again."""
        if not await self.in_flight.wait_idle(15):
            log.warning("%d update handler(s) still running at shutdown", self.in_flight.count)
        if self.tracker.last_update_id is None:
            return
        with contextlib.suppress(TelegramAPIError):
            await self.bot.get_updates(offset=self.tracker.last_update_id + 1, limit=1, timeout=0)

    async def serve_webhook(self) -> None:
        """Webhook mode for several replicas: Telegram POSTs updates, checked by the secret token."""
        from aiogram.webhook.aiohttp_server import SimpleRequestHandler
        from aiohttp import web

        app = web.Application()
        SimpleRequestHandler(dispatcher=self.dp, bot=self.bot, secret_token=self.settings.webhook_secret,
                             handle_in_background=True).register(app, path=self.settings.webhook_path)
        web_runner = web.AppRunner(app, access_log=None)
        await web_runner.setup()
        site = web.TCPSite(web_runner, self.settings.webhook_host, self.settings.webhook_port)
        await site.start()
        log.info("webhook listening on %s:%d%s", self.settings.webhook_host, self.settings.webhook_port,
                 self.settings.webhook_path)
        url = self.settings.webhook_url
        if not url:  # run() chooses webhook mode only with a URL
            raise ConfigError("BOT_WEBHOOK_URL is not set")
        await self.bot.set_webhook(url, secret_token=self.settings.webhook_secret,
                                   allowed_updates=self.dp.resolve_used_update_types())
        try:
            await self.stop_requested.wait()
        finally:
            # Stop taking updates; the webhook stays set for the other replicas.
            await site.stop()
            if not await self.in_flight.wait_idle(15):
                log.warning("%d update handler(s) still running at shutdown", self.in_flight.count)
            await web_runner.cleanup()

    async def shutdown(self) -> None:
        await self.intake.close()
        left = await self.queue.close(self.settings.shutdown_timeout)
        for job in left:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.runner.show_status(job, text(job.lang, "restarting")), 10)
        if left:
            log.info("%d job(s) stay in the job store and resume at the next start", len(left))
        await self.torchserve.close()
        await self.bot.session.close()
        with contextlib.suppress(Exception):
            await self.storage.close()
        self.store.close()
        log.info("stopped")


async def run(settings: Settings) -> None:
    """Build the bot and run it until a stop signal."""
    await BotApp(settings).run()


def main() -> int:
    """Entry point of ``python -m bot``: 0 after a clean stop, 2 for a configuration error."""
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"bot: {exc}", file=sys.stderr)
        return 2
    setup_logging([settings.token, settings.torchserve_key(), settings.webhook_secret, settings.redis_password])
    try:
        asyncio.run(run(settings))
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    return 0

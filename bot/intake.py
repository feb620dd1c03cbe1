"""Accepting a request: persist the job, show its place in the queue, hand it to the queue.

Albums arrive as one message per image; they are gathered for a moment and become one job.
The order (write to the job store, then the status message, then the queue) means a job the
user was told about is always on disk, so a crash cannot lose it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import Message

from .jobs import Job, JobItem, JobQueue, QueueFull
from .modes import (
    DEFAULT_REPAIR_STRENGTH,
    DEFAULT_SR_INPUT,
    DEFAULT_VIVIDNESS,
    Mode,
    RepairStrength,
    SrInput,
    Vividness,
)
from .store import JobStore
from .texts import mode_name, text

log = logging.getLogger(__name__)


@dataclass
class Request:
    """What a user asked for before it becomes a job."""

    user_id: int
    chat_id: int
    lang: str
    mode: Mode
    compare: bool
    items: list[JobItem] = field(default_factory=list)
    vividness: Vividness = DEFAULT_VIVIDNESS
    repair_strength: RepairStrength = DEFAULT_REPAIR_STRENGTH
    sr_input: SrInput = DEFAULT_SR_INPUT


class Intake:
    """Turns photos, image files and albums into persisted, queued jobs."""

    def __init__(self, bot: Bot, store: JobStore, queue: JobQueue, album_wait: float = 0.8) -> None:
        self.bot = bot
        self.store = store
        self.queue = queue
        self.album_wait = album_wait
        self._albums: dict[tuple[int, str], Request] = {}
        self._tasks: set[asyncio.Task] = set()
        self.closed = False

    async def submit(self, message: Message, request: Request) -> Job | None:
        """Accept a request: ``None`` when it was refused (queue full) or is a duplicate delivery."""
        if not request.items:
            return None
        try:
            self.queue.check_room(request.user_id)
        except QueueFull as exc:
            await message.answer(text(request.lang, "too_many_queued", count=exc.waiting))
            return None
        items = sorted(request.items, key=lambda i: i.message_id)
        job = Job(user_id=request.user_id, chat_id=request.chat_id, source_message_id=items[0].message_id,
                  lang=request.lang, mode=request.mode, compare=request.compare, items=items,
                  vividness=request.vividness, repair_strength=request.repair_strength, sr_input=request.sr_input)
        if not self.store.add(job):
            log.info("message %s in chat %s was already accepted; duplicate delivery ignored",
                     job.source_message_id, job.chat_id)
            return None
        if self.closed:
            # Shutting down: the job is on disk and runs after the restart.
            job.status_ready.set()
            await self._send_status(job, text(job.lang, "restarting"))
            return job
        position = self.queue.submit(job)
        job.shown_position = position
        await self._send_status(job, text(job.lang, "queued", position=position, mode=mode_name(job.lang, job.mode)))
        return job

    async def _send_status(self, job: Job, message: str) -> None:
        try:
            sent = await self.bot.send_message(job.chat_id, message)
            job.status_message_id = sent.message_id
            self.store.set_status_message(job.id, sent.message_id)
        except TelegramAPIError as exc:
            log.warning("job %s: status message failed (%s)", job.id, type(exc).__name__)
        finally:
            job.status_ready.set()

    def add_to_album(self, message: Message, request: Request, group_id: str) -> None:
        """Gather the images of an album; the first one starts a short timer, then all become one job."""
        key = (request.chat_id, group_id)
        pending = self._albums.get(key)
        if pending is not None:
            pending.items.extend(request.items)
            return
        self._albums[key] = request
        task = asyncio.create_task(self._flush_album(message, key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush_album(self, message: Message, key: tuple[int, str]) -> None:
        await asyncio.sleep(self.album_wait)
        request = self._albums.pop(key)
        await self.submit(message, request)

    async def close(self) -> None:
        """At shutdown: accept the albums still being gathered (they are persisted, not lost)."""
        self.closed = True
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for key in list(self._albums):
            request = self._albums.pop(key)
            first = min(request.items, key=lambda i: i.message_id)
            job = Job(user_id=request.user_id, chat_id=request.chat_id, source_message_id=first.message_id,
                      lang=request.lang, mode=request.mode, compare=request.compare,
                      items=sorted(request.items, key=lambda i: i.message_id), vividness=request.vividness,
                      repair_strength=request.repair_strength, sr_input=request.sr_input)
            if self.store.add(job):
                job.status_ready.set()
                await self._send_status(job, text(job.lang, "restarting"))

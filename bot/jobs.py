"""Jobs and the queue that runs them: a global limit on jobs in flight, one job at a time per
user, a per-user rate limit, and queue positions for the status messages.

A job is one request of one user: a photo, an image file, or an album (up to 10 images), one
mode. People beyond the limits wait in the queue and are told their position; nobody is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from . import metrics
from .modes import (
    DEFAULT_REPAIR_STRENGTH,
    DEFAULT_SR_INPUT,
    DEFAULT_VIVIDNESS,
    Mode,
    RepairStrength,
    SrInput,
    Vividness,
)

log = logging.getLogger(__name__)


@dataclass
class JobItem:
    """One image of a job, as Telegram knows it (the bytes are downloaded when the job runs)."""

    file_id: str
    message_id: int
    kind: str  # "photo" or "document"
    file_name: str | None = None
    file_size: int | None = None

    def to_dict(self) -> dict:
        return {"file_id": self.file_id, "message_id": self.message_id, "kind": self.kind,
                "file_name": self.file_name, "file_size": self.file_size}

    @classmethod
    def from_dict(cls, d: dict) -> JobItem:
        return cls(file_id=d["file_id"], message_id=d["message_id"], kind=d["kind"],
                   file_name=d.get("file_name"), file_size=d.get("file_size"))


@dataclass
class Job:
    """An accepted request; ``done`` counts the images already answered (resume point).
    ``vividness`` is sent to TorchServe by the colour modes only, ``repair_strength`` by the
    repairing modes only, ``sr_input`` by the modes that run the ×2 model only."""

    user_id: int
    chat_id: int
    source_message_id: int
    lang: str
    mode: Mode
    compare: bool
    items: list[JobItem]
    vividness: Vividness = DEFAULT_VIVIDNESS
    repair_strength: RepairStrength = DEFAULT_REPAIR_STRENGTH
    sr_input: SrInput = DEFAULT_SR_INPUT
    id: int | None = None
    done: int = 0
    status_message_id: int | None = None
    created_at: float = field(default_factory=time.time)
    resumed: bool = False
    # Set once the "queued" status message exists, so a fast job does not race its creation.
    status_ready: asyncio.Event = field(default_factory=asyncio.Event, repr=False, compare=False)
    shown_position: int | None = field(default=None, repr=False, compare=False)

    @property
    def remaining(self) -> int:
        return len(self.items) - self.done


class UserRateLimiter:
    """A token bucket per user: ``burst`` images at once, refilled at ``per_minute`` images a minute."""

    def __init__(self, burst: int, per_minute: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.burst = burst
        self.rate = per_minute / 60.0
        self.clock = clock
        self._buckets: dict[int, tuple[float, float]] = {}  # user -> (tokens, at)

    def _tokens(self, user_id: int) -> float:
        tokens, at = self._buckets.get(user_id, (float(self.burst), self.clock()))
        return min(float(self.burst), tokens + (self.clock() - at) * self.rate)

    def wait_time(self, user_id: int, cost: int) -> float:
        """Seconds until ``cost`` images may start (0 when they may start now)."""
        cost = min(cost, self.burst)  # an album larger than the burst waits for a full bucket
        missing = cost - self._tokens(user_id)
        return 0.0 if missing <= 1e-9 else missing / self.rate

    def take(self, user_id: int, cost: int) -> None:
        """Spend ``cost`` tokens (call only when :meth:`wait_time` is 0)."""
        cost = min(cost, self.burst)
        self._buckets[user_id] = (max(0.0, self._tokens(user_id) - cost), self.clock())


class QueueFull(Exception):
    """The user already has as many jobs waiting as allowed."""

    def __init__(self, waiting: int) -> None:
        super().__init__(f"{waiting} jobs waiting")
        self.waiting = waiting


class JobQueue:
    """Starts waiting jobs when a slot is free, the user has no job running and the rate allows.

    ``run_job`` processes one job; ``on_position`` is told a waiting job's new 1-based position
    whenever it changes (the status message shows it).
    """

    def __init__(self, run_job: Callable[[Job], Awaitable[None]], max_in_flight: int, user_max_queued: int,
                 rate: UserRateLimiter,
                 on_position: Callable[[Job, int], Awaitable[None]] | None = None) -> None:
        self.run_job = run_job
        self.max_in_flight = max_in_flight
        self.user_max_queued = user_max_queued
        self.rate = rate
        self.on_position = on_position
        self.waiting: list[Job] = []
        self.running: dict[int, tuple[Job, asyncio.Task]] = {}  # user id -> (job, task)
        self._wake = asyncio.Event()
        self._closing = False
        self._notifications: set[asyncio.Task] = set()
        self._scheduler: asyncio.Task | None = None

    # -- what the conversation needs -------------------------------------------------------------

    def waiting_for(self, user_id: int) -> int:
        return sum(1 for j in self.waiting if j.user_id == user_id)

    def check_room(self, user_id: int) -> None:
        """Raise :class:`QueueFull` when the user may not add another job now."""
        waiting = self.waiting_for(user_id)
        if waiting >= self.user_max_queued:
            raise QueueFull(waiting)

    def submit(self, job: Job) -> int:
        """Add a job (already persisted) and return its position in the queue."""
        self.waiting.append(job)
        metrics.QUEUE_DEPTH.set(len(self.waiting))
        self._wake.set()
        return self.position(job)

    def position(self, job: Job) -> int:
        """1-based place among the waiting jobs; 0 when it is running or gone."""
        try:
            return self.waiting.index(job) + 1
        except ValueError:
            return 0

    def cancel_user(self, user_id: int) -> list[Job]:
        """Take the user's waiting jobs out of the queue (a running job is not interrupted)."""
        cancelled = [j for j in self.waiting if j.user_id == user_id]
        self.waiting = [j for j in self.waiting if j.user_id != user_id]
        metrics.QUEUE_DEPTH.set(len(self.waiting))
        self._notify_positions()
        return cancelled

    @property
    def in_flight(self) -> int:
        return len(self.running)

    # -- scheduling ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the scheduler task."""
        self._scheduler = asyncio.create_task(self._schedule(), name="job-scheduler")

    def _pick(self) -> tuple[Job | None, float | None]:
        """The first waiting job that may start now, or how long until one might (rate limit)."""
        soonest: float | None = None
        for job in self.waiting:
            if job.user_id in self.running:
                continue
            wait = self.rate.wait_time(job.user_id, job.remaining)
            if wait <= 0:
                return job, None
            soonest = wait if soonest is None else min(soonest, wait)
        return None, soonest

    async def _schedule(self) -> None:
        while not self._closing:
            self._wake.clear()
            timeout: float | None = None
            started = False
            while len(self.running) < self.max_in_flight and not self._closing:
                job, timeout = self._pick()
                if job is None:
                    break
                self._launch(job)
                started = True
            if started:
                self._notify_positions()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)

    def _launch(self, job: Job) -> None:
        self.waiting.remove(job)
        self.rate.take(job.user_id, job.remaining)
        task = asyncio.create_task(self._run(job), name=f"job-{job.id}")
        self.running[job.user_id] = (job, task)
        metrics.QUEUE_DEPTH.set(len(self.waiting))
        metrics.JOBS_IN_FLIGHT.set(len(self.running))

    async def _run(self, job: Job) -> None:
        try:
            await self.run_job(job)
        except asyncio.CancelledError:
            log.warning("job %s interrupted at shutdown; it stays in the job store and resumes at start", job.id)
            raise
        except Exception:
            log.exception("job %s failed unexpectedly", job.id)
        finally:
            self.running.pop(job.user_id, None)
            metrics.JOBS_IN_FLIGHT.set(len(self.running))
            self._wake.set()

    def _notify_positions(self) -> None:
        if self.on_position is None:
            return
        for index, job in enumerate(self.waiting, start=1):
            if job.shown_position != index:
                job.shown_position = index
                task = asyncio.create_task(self.on_position(job, index))
                self._notifications.add(task)
                task.add_done_callback(self._notifications.discard)

    # -- shutdown -----------------------------------------------------------------------------

    async def close(self, timeout: float) -> list[Job]:
        """Start nothing new, give running jobs up to ``timeout`` seconds to finish, cancel the rest.

        Returns the jobs that did not run (still waiting, or cancelled at the deadline); they stay
        in the job store and resume at the next start.
        """
        self._closing = True
        self._wake.set()
        if self._scheduler is not None:
            await self._scheduler
        tasks = {task: job for job, task in self.running.values()}
        left = list(self.waiting)
        if tasks:
            log.info("waiting up to %.0f s for %d job(s) in flight", timeout, len(tasks))
            done, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
                left.append(tasks[task])
            if pending:
                await asyncio.wait(pending)
        if self._notifications:
            await asyncio.wait(self._notifications, timeout=5)
        return left

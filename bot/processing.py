"""What happens to an accepted job: download, check, predict, send the results, tidy up.

One :class:`JobRunner` serves every job. The image bytes live only in memory for the length of
one image's processing; nothing is written to disk and nothing about the pixels is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from dataclasses import dataclass

import aiohttp
from aiogram import Bot
from aiogram.enums import ChatAction
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest, TelegramForbiddenError
from aiogram.types import BufferedInputFile, ReplyParameters
from PIL import Image

from restoration.image_io import ImageError, decode_image

from . import metrics
from .config import Settings
from .jobs import Job, JobItem
from .results import PREVIEW_SIDE, encode_photo, result_file_name, side_by_side
from .store import JobStore
from .texts import image_error_text, mode_name, text
from .torchserve import TorchServeClient, TorchServeError

log = logging.getLogger(__name__)


class DownloadError(Exception):
    """The file could not be fetched from Telegram."""


class FileTooBig(Exception):
    """The file is larger than the bot accepts."""

    def __init__(self, size: int) -> None:
        super().__init__(f"{size} bytes")
        self.size = size


async def download(bot: Bot, file_id: str, limit: int, attempts: int = 3) -> bytes:
    """The file's bytes via getFile and the file route, refusing more than ``limit`` bytes
    (counted while streaming: the size Telegram reports is not trusted alone)."""
    for attempt in range(attempts):
        try:
            file = await bot.get_file(file_id)
            if file.file_size and file.file_size > limit:
                raise FileTooBig(file.file_size)
            if not file.file_path:
                raise DownloadError("Telegram gave no file path")
            url = bot.session.api.file_url(bot.token, file.file_path)
            data = bytearray()
            async for chunk in bot.session.stream_content(url, timeout=120, chunk_size=256 * 1024):
                data += chunk
                if len(data) > limit:
                    raise FileTooBig(len(data))
            return bytes(data)
        except TelegramBadRequest as exc:
            if "too big" in str(exc).lower():
                raise FileTooBig(limit + 1) from exc
            raise DownloadError(f"getFile refused: {exc.message}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            # The URL holds the token: keep only the error's type and status.
            status = getattr(exc, "status", "")
            if attempt + 1 >= attempts:
                raise DownloadError(f"file download failed ({type(exc).__name__} {status})".strip()) from None
            await asyncio.sleep(0.5 * 2**attempt)
    raise DownloadError("unreachable")


class JobRunner:
    """Processes a job image by image; called by the queue, at most ``max_jobs`` at a time."""

    def __init__(self, bot: Bot, torchserve: TorchServeClient, store: JobStore, settings: Settings) -> None:
        self.bot = bot
        self.torchserve = torchserve
        self.store = store
        self.settings = settings
        # Decoding and encoding full-size images is the bot's memory peak (a 64 MP result is about
        # 200 MB of pixels): one job at a time does it, the others wait on the network meanwhile.
        self.pixel_work = asyncio.Semaphore(settings.image_workers)

    # -- status message -----------------------------------------------------------------------

    async def show_status(self, job: Job, message: str) -> None:
        """Edit the job's status message (or send one when it is missing); never fails the job."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(job.status_ready.wait(), timeout=15)
        try:
            if job.status_message_id is not None:
                await self.bot.edit_message_text(text=message, chat_id=job.chat_id,
                                                 message_id=job.status_message_id)
                return
        except TelegramBadRequest as exc:
            if "not modified" in str(exc).lower():
                return
            job.status_message_id = None  # deleted by the user: send a fresh one
        except TelegramAPIError as exc:
            log.warning("job %s: status update failed (%s)", job.id, type(exc).__name__)
            return
        try:
            sent = await self.bot.send_message(job.chat_id, message)
        except TelegramAPIError as exc:
            log.warning("job %s: status message failed (%s)", job.id, type(exc).__name__)
            return
        job.status_message_id = sent.message_id
        if job.id is not None:
            self.store.set_status_message(job.id, sent.message_id)

    async def show_position(self, job: Job, position: int) -> None:
        """Queue callback: the job moved to ``position``."""
        await self.show_status(job, text(job.lang, "queued", position=position, mode=mode_name(job.lang, job.mode)))

    async def remove_status(self, job: Job) -> None:
        if job.status_message_id is None:
            return
        with contextlib.suppress(TelegramAPIError):
            await self.bot.delete_message(job.chat_id, job.status_message_id)

    # -- the job ------------------------------------------------------------------------------

    async def __call__(self, job: Job) -> None:
        """Process the job's remaining images; record progress after each so a restart resumes."""
        started = time.monotonic()
        try:
            outcome = await self._run_items(job)
        except Exception:
            # A bug must not make the job come back at every start: log it, apologise, close it.
            log.exception("job %s failed", job.id)
            outcome = "error"
            with contextlib.suppress(TelegramAPIError):
                await self.bot.send_message(job.chat_id, text(job.lang, "service_error"))
        if outcome == "blocked":
            log.info("job %s: the user blocked the bot; job skipped", job.id)
        else:
            await self.remove_status(job)
        if job.id is not None:
            self.store.finish(job.id, outcome)
        metrics.JOB_SECONDS.labels(mode=job.mode.value).observe(time.monotonic() - started)

    async def _run_items(self, job: Job) -> str:
        outcome = "ok"
        try:
            for index in range(job.done, len(job.items)):
                if len(job.items) > 1:
                    status = text(job.lang, "working_many", mode=mode_name(job.lang, job.mode),
                                  done=index, total=len(job.items))
                else:
                    status = text(job.lang, "working", mode=mode_name(job.lang, job.mode))
                await self.show_status(job, status)
                outcome = await self.process_item(job, job.items[index])
                metrics.JOBS.labels(mode=job.mode.value, outcome=outcome).inc()
                job.done = index + 1
                if job.id is not None:
                    self.store.advance(job.id, job.done)
                if outcome in ("unavailable", "blocked"):
                    break  # the service is down or the user is gone: the rest would fail the same way
        except TelegramForbiddenError:
            outcome = "blocked"
        return outcome

    async def reply(self, job: Job, item: JobItem, message: str) -> None:
        await self.bot.send_message(job.chat_id, message, reply_parameters=_reply_to(item))

    async def process_item(self, job: Job, item: JobItem) -> str:
        """One image: returns the outcome label (ok, refused, unavailable, failed, blocked)."""
        settings = self.settings
        lang, mode = job.lang, job.mode
        try:
            with contextlib.suppress(TelegramAPIError):
                await self.bot.send_chat_action(job.chat_id, ChatAction.UPLOAD_PHOTO)
            try:
                data = await download(self.bot, item.file_id, settings.download_limit)
            except FileTooBig as exc:
                await self.reply(job, item, text(lang, "file_too_big", size_mb=exc.size / 1e6,
                                                 limit_mb=settings.download_limit / 1e6))
                return "refused"
            except (DownloadError, TelegramAPIError) as exc:
                log.warning("job %s: download failed: %s", job.id, exc)
                await self.reply(job, item, text(lang, "download_failed"))
                return "failed"
            try:
                # The same checks as the server, before the upload: the user hears why at once.
                async with self.pixel_work:
                    before = await asyncio.to_thread(_check, data, settings, mode.scale, job.compare)
            except ImageError as exc:
                await self.reply(job, item, image_error_text(lang, exc.kind, exc.message, settings.limits,
                                                             settings.download_limit))
                return "refused"
            with contextlib.suppress(TelegramAPIError):
                await self.bot.send_chat_action(job.chat_id, ChatAction.UPLOAD_PHOTO)
            try:
                # Each setting matters to the modes that use it only (the client also drops it elsewhere).
                vividness = job.vividness.value_sent if mode.colours else None
                strength = job.repair_strength.value_sent if mode.repairs else None
                sr_input = job.sr_input.value_sent if mode.upscales_x2 else None
                prediction = await self.torchserve.predict(mode.path, data, target=mode.target, vividness=vividness,
                                                           strength=strength, sr_input=sr_input)
            except TorchServeError as exc:
                log.warning("job %s: TorchServe %s: %s %s", job.id, mode.target, exc.status, exc.kind)
                if exc.is_auth_error:
                    log.error("TorchServe refused the inference key; check TORCHSERVE_TOKEN or the file "
                              "TORCHSERVE_TOKEN_FILE names (keys expire and change when TorchServe restarts)")
                if exc.is_client_error:
                    await self.reply(job, item, image_error_text(lang, exc.kind, exc.message, settings.limits,
                                                                 settings.download_limit))
                    return "refused"
                key = "service_down" if exc.status in (0, 502, 503, 504) else "service_error"
                await self.reply(job, item, text(lang, key))
                return "unavailable" if key == "service_down" else "failed"
            await self.send_result(job, item, before, prediction.data, prediction.media_type)
            return "ok"
        except TelegramForbiddenError:
            return "blocked"
        except TelegramAPIError as exc:
            # Retries are spent (see telegram_retry); the user cannot be told, only the log can.
            log.error("job %s: Telegram %s failed: %s", job.id, type(exc).__name__, exc.message)
            return "failed"

    async def send_result(self, job: Job, item: JobItem, before: Image.Image | None, data: bytes,
                          media_type: str) -> None:
        """The result as a photo (a reduced preview when too large), always as a full-quality
        document, and the before/after image when asked for."""
        lang, mode = job.lang, job.mode
        async with self.pixel_work:
            rendered = await asyncio.to_thread(render_result, data, before)
        width, height = rendered.size
        name = result_file_name(item.file_name, mode.value, media_type)
        if rendered.photo is not None:
            pw, ph = rendered.photo_size
            if (pw, ph) == (width, height):
                caption = text(lang, "caption", mode=mode_name(lang, mode), width=width, height=height)
            else:
                caption = text(lang, "caption_preview", mode=mode_name(lang, mode), width=width, height=height,
                               pw=pw, ph=ph)
            await self.bot.send_photo(job.chat_id,
                                      BufferedInputFile(rendered.photo, filename=name.rsplit(".", 1)[0] + ".jpg"),
                                      caption=caption, reply_parameters=_reply_to(item))
        with contextlib.suppress(TelegramAPIError):
            await self.bot.send_chat_action(job.chat_id, ChatAction.UPLOAD_DOCUMENT)
        await self.bot.send_document(job.chat_id, BufferedInputFile(data, filename=name),
                                     reply_parameters=_reply_to(item), disable_content_type_detection=True)
        if rendered.comparison is not None:
            await self.bot.send_photo(job.chat_id, BufferedInputFile(rendered.comparison, filename="before_after.jpg"),
                                      caption=text(lang, "caption_compare"))


# The "before" half of a comparison never needs more than this on its long side.
BEFORE_MAX_SIDE = 2048


def _check(data: bytes, settings: Settings, scale: int, keep: bool) -> Image.Image | None:
    """Refuse the image as the server would (raises ImageError); keep a small copy for the
    comparison only when it is wanted, so no full-size pixels stay in memory during the call."""
    decoded = decode_image(data, settings.limits, scale)
    if not keep:
        return None
    before = decoded.image
    if max(before.size) > BEFORE_MAX_SIDE:
        before = before.copy()
        before.thumbnail((BEFORE_MAX_SIDE, BEFORE_MAX_SIDE), Image.Resampling.LANCZOS)
    return before


@dataclass
class Rendered:
    """What is sent for one result, as bytes; the decoded pixels are gone when this exists."""

    size: tuple[int, int]
    photo: bytes | None
    photo_size: tuple[int, int]
    comparison: bytes | None


def render_result(data: bytes, before: Image.Image | None) -> Rendered:
    """Decode the result once, make the photo (or preview) and the optional comparison."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        result = img if img.mode == "RGB" else img.convert("RGB")  # no second full-size copy
    encoded = encode_photo(result)
    comparison = None
    if before is not None:
        # Built at preview size: two full-size halves of a 64 MP result would be 400 MB of pixels.
        after = result.copy() if max(result.size) <= PREVIEW_SIDE // 2 else _shrunk(result, PREVIEW_SIDE // 2)
        pair = encode_photo(side_by_side(before, after))
        comparison = pair[0] if pair is not None else None
    photo, photo_size = encoded if encoded is not None else (None, (0, 0))
    return Rendered(size=result.size, photo=photo, photo_size=photo_size, comparison=comparison)


def _shrunk(img: Image.Image, side: int) -> Image.Image:
    factor = max(1, max(img.size) // (2 * side))
    small = img.reduce(factor) if factor >= 2 else img.copy()
    small.thumbnail((side, side), Image.Resampling.LANCZOS)
    return small


def _reply_to(item: JobItem) -> ReplyParameters:
    # The user may have deleted their message meanwhile; the result still goes out.
    return ReplyParameters(message_id=item.message_id, allow_sending_without_reply=True)

"""Photos, images sent as files, and albums: checked for what Telegram already tells us, then queued."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.fsm.context import FSMContext
from aiogram.types import Document, Message

from restoration.image_io import ImageError, check_dimensions

from ..config import Settings
from ..intake import Intake, Request
from ..jobs import JobItem
from ..texts import image_error_text, text
from .commands import preferences

router = Router(name="images")

# Documents worth downloading; the bytes are still checked by restoration.image_io, whatever the name says.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".jfif",
                    ".heic", ".heif", ".hif", ".avif")  # the last four: what phones save


def looks_like_image(document: Document) -> bool:
    """An image by its MIME type or file name (Telegram reports what the sender's app said)."""
    mime = (document.mime_type or "").lower()
    name = (document.file_name or "").lower()
    return mime.startswith("image/") or name.endswith(IMAGE_EXTENSIONS)


async def _queue(message: Message, item: JobItem, state: FSMContext, lang: str, intake: Intake,
                 settings: Settings) -> None:
    prefs = await preferences(state, settings)
    request = Request(user_id=message.from_user.id if message.from_user else message.chat.id,
                      chat_id=message.chat.id, lang=lang, mode=prefs.mode, compare=prefs.compare, items=[item],
                      vividness=prefs.vividness, repair_strength=prefs.repair_strength, sr_input=prefs.sr_input)
    if message.media_group_id:
        intake.add_to_album(message, request, message.media_group_id)
    else:
        await intake.submit(message, request)


@router.message(F.photo)
async def photo(message: Message, state: FSMContext, lang: str, intake: Intake, settings: Settings) -> None:
    largest = message.photo[-1]
    if largest.file_size and largest.file_size > settings.download_limit:
        await message.reply(text(lang, "file_too_big", size_mb=largest.file_size / 1e6,
                                 limit_mb=settings.download_limit / 1e6))
        return
    mode = (await preferences(state, settings)).mode
    try:
        # Telegram tells a photo's size: refuse what is too large without downloading it.
        check_dimensions(largest.width, largest.height, settings.limits, scale=mode.scale)
    except ImageError as exc:
        await message.reply(image_error_text(lang, exc.kind, exc.message, settings.limits, settings.download_limit))
        return
    item = JobItem(file_id=largest.file_id, message_id=message.message_id, kind="photo",
                   file_size=largest.file_size)
    await _queue(message, item, state, lang, intake, settings)


@router.message(F.document)
async def document(message: Message, state: FSMContext, lang: str, intake: Intake, settings: Settings) -> None:
    doc = message.document
    if not looks_like_image(doc):
        await message.reply(text(lang, "not_image"))
        return
    if doc.file_size and doc.file_size > settings.download_limit:
        await message.reply(text(lang, "file_too_big", size_mb=doc.file_size / 1e6,
                                 limit_mb=settings.download_limit / 1e6))
        return
    item = JobItem(file_id=doc.file_id, message_id=message.message_id, kind="document", file_name=doc.file_name,
                   file_size=doc.file_size)
    await _queue(message, item, state, lang, intake, settings)

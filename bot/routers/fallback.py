"""Everything that is not a command or an image: a short hint at what to send instead."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.types import Message

from ..texts import text

router = Router(name="fallback")


@router.message(F.text)
async def text_message(message: Message, lang: str) -> None:
    await message.answer(text(lang, "text_hint"))


@router.message()
async def anything_else(message: Message, lang: str) -> None:
    """Stickers, videos, voice notes, non-image files..."""
    await message.answer(text(lang, "not_image"))

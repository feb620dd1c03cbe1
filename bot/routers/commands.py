"""Commands and the mode/settings keyboards: /start, /help, /mode, /settings, /cancel."""

from __future__ import annotations

import contextlib

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from ..config import Settings
from ..jobs import JobQueue
from ..keyboards import CompareToggle, ModeChoice, modes_keyboard, settings_keyboard
from ..modes import DEFAULT_MODE, Mode
from ..store import CANCELLED, JobStore
from ..texts import help_text, mode_name, text

router = Router(name="commands")


async def preferences(state: FSMContext, settings: Settings) -> tuple[Mode, bool]:
    """The user's mode and comparison setting (kept in the FSM storage: memory or Redis)."""
    data = await state.get_data()
    try:
        mode = Mode(data.get("mode", DEFAULT_MODE))
    except ValueError:
        mode = DEFAULT_MODE
    return mode, bool(data.get("compare", settings.compare_default))


@router.message(CommandStart())
async def start(message: Message, state: FSMContext, lang: str, settings: Settings) -> None:
    mode, _ = await preferences(state, settings)
    await message.answer(text(lang, "start", mode=mode_name(lang, mode)), reply_markup=modes_keyboard(lang, mode))


@router.message(Command("help"))
async def show_help(message: Message, lang: str, settings: Settings) -> None:
    await message.answer(help_text(lang, settings.limits, settings.download_limit))


@router.message(Command("mode"))
async def choose_mode(message: Message, state: FSMContext, lang: str, settings: Settings) -> None:
    mode, _ = await preferences(state, settings)
    await message.answer(text(lang, "choose_mode"), reply_markup=modes_keyboard(lang, mode))


@router.callback_query(ModeChoice.filter())
async def mode_chosen(query: CallbackQuery, callback_data: ModeChoice, state: FSMContext, lang: str) -> None:
    await state.update_data(mode=callback_data.mode.value)
    name = mode_name(lang, callback_data.mode)
    await query.answer(name)
    if query.message is not None:
        with contextlib.suppress(TelegramAPIError):  # "message is not modified" on a second tap
            await query.message.edit_text(text(lang, "mode_set", mode=name),
                                          reply_markup=modes_keyboard(lang, callback_data.mode))


@router.message(Command("settings"))
async def show_settings(message: Message, state: FSMContext, lang: str, settings: Settings) -> None:
    _, compare = await preferences(state, settings)
    await message.answer(text(lang, "settings", state=text(lang, "on" if compare else "off")),
                         reply_markup=settings_keyboard(lang, compare))


@router.callback_query(CompareToggle.filter())
async def compare_toggled(query: CallbackQuery, callback_data: CompareToggle, state: FSMContext, lang: str) -> None:
    await state.update_data(compare=callback_data.on)
    status = text(lang, "settings", state=text(lang, "on" if callback_data.on else "off"))
    await query.answer(status)
    if query.message is not None:
        with contextlib.suppress(TelegramAPIError):
            await query.message.edit_text(status, reply_markup=settings_keyboard(lang, callback_data.on))


@router.message(Command("cancel"))
async def cancel(message: Message, bot: Bot, lang: str, queue: JobQueue, store: JobStore) -> None:
    if message.from_user is None:
        return
    cancelled = queue.cancel_user(message.from_user.id)
    for job in cancelled:
        if job.id is not None:
            store.finish(job.id, "cancelled", state=CANCELLED)
        if job.status_message_id is not None:
            with contextlib.suppress(TelegramAPIError):
                await bot.delete_message(job.chat_id, job.status_message_id)
    if cancelled:
        await message.answer(text(lang, "cancelled", count=len(cancelled)))
    else:
        await message.answer(text(lang, "nothing_to_cancel"))


@router.callback_query(F.data)
async def stale_button(query: CallbackQuery) -> None:
    """A button from an older version of the keyboards: just stop the spinner."""
    await query.answer()

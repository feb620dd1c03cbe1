"""Commands and the mode/settings keyboards: /start, /help, /mode, /settings, /cancel.

A button under a message older than 48 hours arrives with an ``InaccessibleMessage`` (Telegram no
longer lets the bot edit it): the callback is still answered and the updated keyboard comes as a
fresh message instead of an edit.
"""

from __future__ import annotations

import contextlib
import logging
from typing import NamedTuple

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from ..config import Settings
from ..jobs import JobQueue
from ..keyboards import (
    CompareToggle,
    ModeChoice,
    SrInputChoice,
    StrengthChoice,
    VividnessChoice,
    modes_keyboard,
    settings_keyboard,
)
from ..modes import (
    DEFAULT_MODE,
    DEFAULT_REPAIR_STRENGTH,
    DEFAULT_SR_INPUT,
    DEFAULT_VIVIDNESS,
    Mode,
    RepairStrength,
    SrInput,
    Vividness,
)
from ..store import CANCELLED, JobStore
from ..texts import help_text, mode_name, settings_text, sr_input_name, strength_name, text, vividness_name

log = logging.getLogger(__name__)

router = Router(name="commands")


class Preferences(NamedTuple):
    """A user's settings, kept in the FSM storage (memory or Redis)."""

    mode: Mode
    compare: bool
    vividness: Vividness
    repair_strength: RepairStrength
    sr_input: SrInput


async def preferences(state: FSMContext, settings: Settings) -> Preferences:
    """The user's mode, comparison, colour, repair and ×2 input settings; the defaults for what was
    never chosen (or is unknown, e.g. written by another version of the bot)."""
    data = await state.get_data()
    try:
        mode = Mode(data.get("mode", DEFAULT_MODE))
    except ValueError:
        mode = DEFAULT_MODE
    return Preferences(mode=mode, compare=bool(data.get("compare", settings.compare_default)),
                       vividness=Vividness.parse(data.get("vividness", DEFAULT_VIVIDNESS)),
                       repair_strength=RepairStrength.parse(data.get("repair_strength", DEFAULT_REPAIR_STRENGTH)),
                       sr_input=SrInput.parse(data.get("sr_input", DEFAULT_SR_INPUT)))


def settings_view(lang: str, prefs: Preferences) -> tuple[str, InlineKeyboardMarkup]:
    """The /settings message and keyboard showing ``prefs``."""
    return (settings_text(lang, prefs.compare, prefs.vividness, prefs.repair_strength, prefs.sr_input),
            settings_keyboard(lang, prefs.compare, prefs.vividness, prefs.repair_strength, prefs.sr_input))


async def show_settings_in_place(query: CallbackQuery, bot: Bot, lang: str, prefs: Preferences) -> None:
    """The /settings message and keyboard after a tap, showing ``prefs``."""
    await show_in_place(query, bot, *settings_view(lang, prefs))


async def show_in_place(query: CallbackQuery, bot: Bot, message_text: str, markup: InlineKeyboardMarkup) -> None:
    """Show the answer to a button: edit the message the button is under, or, when that message is
    no longer accessible (older than 48 hours), send a fresh one with the keyboard."""
    message = query.message
    if isinstance(message, Message):
        with contextlib.suppress(TelegramAPIError):  # "message is not modified" on a second tap
            await message.edit_text(message_text, reply_markup=markup)
        return
    chat_id = message.chat.id if message is not None else query.from_user.id
    try:
        await bot.send_message(chat_id, message_text, reply_markup=markup)
    except TelegramAPIError as exc:
        log.warning("could not send a fresh keyboard to chat %s (%s)", chat_id, type(exc).__name__)


@router.message(CommandStart())
async def start(message: Message, state: FSMContext, lang: str, settings: Settings) -> None:
    mode = (await preferences(state, settings)).mode
    await message.answer(text(lang, "start", mode=mode_name(lang, mode)), reply_markup=modes_keyboard(lang, mode))


@router.message(Command("help"))
async def show_help(message: Message, lang: str, settings: Settings) -> None:
    await message.answer(help_text(lang, settings.limits, settings.download_limit))


@router.message(Command("mode"))
async def choose_mode(message: Message, state: FSMContext, lang: str, settings: Settings) -> None:
    mode = (await preferences(state, settings)).mode
    await message.answer(text(lang, "choose_mode"), reply_markup=modes_keyboard(lang, mode))


@router.callback_query(ModeChoice.filter())
async def mode_chosen(query: CallbackQuery, callback_data: ModeChoice, state: FSMContext, lang: str,
                      bot: Bot) -> None:
    await state.update_data(mode=callback_data.mode.value)
    name = mode_name(lang, callback_data.mode)
    await query.answer(name)
    await show_in_place(query, bot, text(lang, "mode_set", mode=name), modes_keyboard(lang, callback_data.mode))


@router.message(Command("settings"))
async def show_settings(message: Message, state: FSMContext, lang: str, settings: Settings) -> None:
    message_text, markup = settings_view(lang, await preferences(state, settings))
    await message.answer(message_text, reply_markup=markup)


@router.callback_query(CompareToggle.filter())
async def compare_toggled(query: CallbackQuery, callback_data: CompareToggle, state: FSMContext, lang: str,
                          settings: Settings, bot: Bot) -> None:
    await state.update_data(compare=callback_data.on)
    prefs = await preferences(state, settings)
    await query.answer(text(lang, "settings_compare", state=text(lang, "on" if callback_data.on else "off")))
    await show_settings_in_place(query, bot, lang, prefs)


@router.callback_query(VividnessChoice.filter())
async def vividness_chosen(query: CallbackQuery, callback_data: VividnessChoice, state: FSMContext, lang: str,
                           settings: Settings, bot: Bot) -> None:
    await state.update_data(vividness=callback_data.vividness.value)
    prefs = await preferences(state, settings)
    await query.answer(text(lang, "vividness_set", vividness=vividness_name(lang, callback_data.vividness)))
    await show_settings_in_place(query, bot, lang, prefs)


@router.callback_query(StrengthChoice.filter())
async def strength_chosen(query: CallbackQuery, callback_data: StrengthChoice, state: FSMContext, lang: str,
                          settings: Settings, bot: Bot) -> None:
    await state.update_data(repair_strength=callback_data.strength.value)
    prefs = await preferences(state, settings)
    await query.answer(text(lang, "strength_set", strength=strength_name(lang, callback_data.strength)))
    await show_settings_in_place(query, bot, lang, prefs)


@router.callback_query(SrInputChoice.filter())
async def sr_input_chosen(query: CallbackQuery, callback_data: SrInputChoice, state: FSMContext, lang: str,
                          settings: Settings, bot: Bot) -> None:
    await state.update_data(sr_input=callback_data.sr_input.value)
    prefs = await preferences(state, settings)
    await query.answer(text(lang, "sr_input_set", sr_input=sr_input_name(lang, callback_data.sr_input)))
    await show_settings_in_place(query, bot, lang, prefs)


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
    """A button from an older version of the keyboards (its message accessible or not): just stop
    the spinner."""
    await query.answer()

"""Inline keyboards and their typed callback data."""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder

from .modes import Mode
from .texts import mode_name, text


class ModeChoice(CallbackData, prefix="mode"):
    """A tap on a mode button."""

    mode: Mode


class CompareToggle(CallbackData, prefix="cmp"):
    """A tap on the before/after comparison switch; ``on`` is the state it switches to."""

    on: bool


def modes_keyboard(lang: str, current: Mode | None = None) -> InlineKeyboardMarkup:
    """The four modes, two per row; the current one is marked with a dot."""
    builder = InlineKeyboardBuilder()
    for mode in Mode:
        label = mode_name(lang, mode)
        if mode == current:
            label = f"• {label}"
        builder.button(text=label, callback_data=ModeChoice(mode=mode))
    builder.adjust(2)
    return builder.as_markup()


def settings_keyboard(lang: str, compare: bool) -> InlineKeyboardMarkup:
    """One switch: the before/after comparison image."""
    builder = InlineKeyboardBuilder()
    label = text(lang, "compare_button_on" if compare else "compare_button_off")
    builder.button(text=label, callback_data=CompareToggle(on=not compare))
    return builder.as_markup()

"""Inline keyboards and their typed callback data."""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder

from .modes import (
    DEFAULT_REPAIR_STRENGTH,
    DEFAULT_SR_INPUT,
    DEFAULT_VIVIDNESS,
    Mode,
    RepairStrength,
    SrInput,
    Vividness,
)
from .texts import mode_name, sr_input_button, strength_button, text, vividness_button


class ModeChoice(CallbackData, prefix="mode"):
    """A tap on a mode button."""

    mode: Mode


class CompareToggle(CallbackData, prefix="cmp"):
    """A tap on the before/after comparison switch; ``on`` is the state it switches to."""

    on: bool


class VividnessChoice(CallbackData, prefix="viv"):
    """A tap on one of the colour settings (natural, default, vivid)."""

    vividness: Vividness


class StrengthChoice(CallbackData, prefix="rep"):
    """A tap on one of the repair strengths (light, medium, full)."""

    strength: RepairStrength


class SrInputChoice(CallbackData, prefix="sri"):
    """A tap on one of the ×2 input settings (sharp originals, compressed photos)."""

    sr_input: SrInput


def modes_keyboard(lang: str, current: Mode | None = None) -> InlineKeyboardMarkup:
    """The modes, two per row in :class:`Mode`'s order (restore, the last, alone on its row); the
    current one is marked with a dot."""
    builder = InlineKeyboardBuilder()
    for mode in Mode:
        label = mode_name(lang, mode)
        if mode == current:
            label = f"• {label}"
        builder.button(text=label, callback_data=ModeChoice(mode=mode))
    builder.adjust(2)
    return builder.as_markup()


def settings_keyboard(lang: str, compare: bool, vividness: Vividness = DEFAULT_VIVIDNESS,
                      strength: RepairStrength = DEFAULT_REPAIR_STRENGTH,
                      sr_input: SrInput = DEFAULT_SR_INPUT) -> InlineKeyboardMarkup:
    """The before/after comparison switch on the first row; the three colour settings on the
    second, the three repair strengths on the third and the two ×2 input settings on the fourth,
    the current ones marked with a dot."""
    builder = InlineKeyboardBuilder()
    label = text(lang, "compare_button_on" if compare else "compare_button_off")
    builder.button(text=label, callback_data=CompareToggle(on=not compare))
    for choice in Vividness:
        label = vividness_button(lang, choice)
        if choice == vividness:
            label = f"• {label}"
        builder.button(text=label, callback_data=VividnessChoice(vividness=choice))
    for level in RepairStrength:
        label = strength_button(lang, level)
        if level == strength:
            label = f"• {label}"
        builder.button(text=label, callback_data=StrengthChoice(strength=level))
    for kind in SrInput:
        label = sr_input_button(lang, kind)
        if kind == sr_input:
            label = f"• {label}"
        builder.button(text=label, callback_data=SrInputChoice(sr_input=kind))
    builder.adjust(1, len(Vividness), len(RepairStrength), len(SrInput))
    return builder.as_markup()

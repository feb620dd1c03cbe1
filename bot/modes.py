"""The five things the bot can do to a photo, which TorchServe endpoint does each, the
colour-vividness setting of the colour modes, the strength setting of the repairing modes and the
input setting of the modes that run the ×2 model."""

from __future__ import annotations

from enum import StrEnum

from restoration.names import COLORIZE, REPAIR, SR_X2, SR_X4, WORKFLOW_RESTORE, prediction_path


class Mode(StrEnum):
    """A processing mode; the value is what callback data and the job store carry. The order is
    the mode keyboard's (two per row, restore alone on the last)."""

    REPAIR = "repair"
    COLORIZE = "colorize"
    UPSCALE_X2 = "x2"
    UPSCALE_X4 = "x4"
    RESTORE = "restore"

    @property
    def target(self) -> str:
        """The model or workflow name TorchServe serves this mode under."""
        return _TARGETS[self]

    @property
    def path(self) -> str:
        """URL path of the prediction endpoint (``/predictions/sr_x2``, ``/wfpredict/restore``)."""
        return prediction_path(self.target)

    @property
    def scale(self) -> int:
        """How many times larger each side of the result is."""
        return _SCALES[self]

    @property
    def colours(self) -> bool:
        """Whether the mode colourises (and so honours the vividness setting)."""
        return self in (Mode.COLORIZE, Mode.RESTORE)

    @property
    def repairs(self) -> bool:
        """Whether the mode repairs damage (and so honours the repair-strength setting)."""
        return self in (Mode.REPAIR, Mode.RESTORE)

    @property
    def upscales_x2(self) -> bool:
        """Whether the mode runs the ×2 model (and so honours the input setting); ×4 has one model."""
        return self in (Mode.UPSCALE_X2, Mode.RESTORE)


_TARGETS = {Mode.REPAIR: REPAIR, Mode.COLORIZE: COLORIZE, Mode.UPSCALE_X2: SR_X2, Mode.UPSCALE_X4: SR_X4,
            Mode.RESTORE: WORKFLOW_RESTORE}
# repair and colourise keep the size; restore = repair, colourise, then ×2
_SCALES = {Mode.REPAIR: 1, Mode.COLORIZE: 1, Mode.UPSCALE_X2: 2, Mode.UPSCALE_X4: 4, Mode.RESTORE: 2}

DEFAULT_MODE = Mode.RESTORE


class Vividness(StrEnum):
    """How vivid the colouriser's colours are; the value is what callback data, the FSM storage
    and the job store carry."""

    NATURAL = "natural"
    DEFAULT = "default"
    VIVID = "vivid"

    @property
    def value_sent(self) -> float | None:
        """The ``X-Vividness`` value sent to TorchServe (0 = faithful, 1 = vivid); ``None``: no
        header, so the model's validated default applies."""
        return _VIVIDNESS_SENT[self]

    @classmethod
    def parse(cls, value: object) -> Vividness:
        """A stored value back as a setting; anything unknown or missing is the default."""
        try:
            return cls(value)
        except (ValueError, TypeError):
            return cls.DEFAULT


_VIVIDNESS_SENT = {Vividness.NATURAL: 0.0, Vividness.DEFAULT: None, Vividness.VIVID: 1.0}

DEFAULT_VIVIDNESS = Vividness.DEFAULT


class RepairStrength(StrEnum):
    """How strongly the repair model removes damage; the value is what callback data, the FSM
    storage and the job store carry. No "off": a user who wants no repair picks another mode."""

    LIGHT = "light"
    MEDIUM = "medium"
    FULL = "full"

    @property
    def value_sent(self) -> float | None:
        """The ``X-Repair-Strength`` value sent to TorchServe (0 = off … 1 = full); ``None``: no
        header, so the server's default (full) applies."""
        return _STRENGTH_SENT[self]

    @classmethod
    def parse(cls, value: object) -> RepairStrength:
        """A stored value back as a setting; anything unknown or missing is the default."""
        try:
            return cls(value)
        except (ValueError, TypeError):
            return DEFAULT_REPAIR_STRENGTH


_STRENGTH_SENT = {RepairStrength.LIGHT: 0.3, RepairStrength.MEDIUM: 0.6, RepairStrength.FULL: None}

DEFAULT_REPAIR_STRENGTH = RepairStrength.FULL


class SrInput(StrEnum):
    """What the user's photos are, for the ×2 model: sharp originals or heavily compressed JPEGs;
    the value is what callback data, the FSM storage and the job store carry. Neither is better
    everywhere (the compressed variant wins on JPEG quality 75 and loses on clean and quality-90
    inputs), so the user chooses and sharp stays the default."""

    CLEAN = "clean"
    COMPRESSED = "compressed"

    @property
    def value_sent(self) -> str | None:
        """The ``X-SR-Input`` value sent to TorchServe; ``None``: no header, so the default ×2
        weights (for clean inputs) serve."""
        return _SR_INPUT_SENT[self]

    @classmethod
    def parse(cls, value: object) -> SrInput:
        """A stored value back as a setting; anything unknown or missing is the default."""
        try:
            return cls(value)
        except (ValueError, TypeError):
            return DEFAULT_SR_INPUT


_SR_INPUT_SENT = {SrInput.CLEAN: None, SrInput.COMPRESSED: "compressed"}

DEFAULT_SR_INPUT = SrInput.CLEAN

"""The four things the bot can do to a photo, and which TorchServe endpoint does each."""

from __future__ import annotations

from enum import StrEnum

from restoration.names import COLORIZE, SR_X2, SR_X4, WORKFLOW_RESTORE, prediction_path


class Mode(StrEnum):
    """A processing mode; the value is what callback data and the job store carry."""

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


_TARGETS = {Mode.COLORIZE: COLORIZE, Mode.UPSCALE_X2: SR_X2, Mode.UPSCALE_X4: SR_X4, Mode.RESTORE: WORKFLOW_RESTORE}
# restore = colourise, then ×2
_SCALES = {Mode.COLORIZE: 1, Mode.UPSCALE_X2: 2, Mode.UPSCALE_X4: 4, Mode.RESTORE: 2}

DEFAULT_MODE = Mode.RESTORE

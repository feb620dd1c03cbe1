"""One router per feature, wired together in :func:`bot.app.build_dispatcher`."""

from .commands import router as commands_router
from .fallback import router as fallback_router
from .images import router as images_router

__all__ = ["commands_router", "fallback_router", "images_router"]

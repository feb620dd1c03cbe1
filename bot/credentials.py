"""Secrets given to the bot: inline in an environment variable, or as a file that variable names.

Kubernetes mounts Secrets as files and refreshes them when the Secret changes (an environment
variable is fixed for the life of the process and leaks into child processes and crash dumps).
``NAME_FILE`` names such a file; :class:`FileSecret` re-reads it whenever it changes, so a rotated
key is used without restarting the bot.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

# What the TorchServe client takes as its key: a fixed value, something that reads the current
# one (a FileSecret), or nothing.
KeySource = str | Callable[[], str | None] | None


class FileSecret:
    """The contents of one file (stripped), read again whenever the file changes.

    A mounted Secret's file is a symbolic link that the kubelet points at a new copy when the
    Secret changes; ``os.stat`` follows it, so a new inode, time or size means new contents.
    A missing or empty file gives ``None`` (a Secret not populated yet).
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int, int, int] | None = None
        self._value: str | None = None

    def __call__(self) -> str | None:
        return self.get()

    def __repr__(self) -> str:
        return f"FileSecret({str(self.path)!r})"  # never the value

    def get(self) -> str | None:
        """The current value: one ``stat`` per call, a read only when the file changed."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self._stamp is not None:
                log.warning("%s disappeared; sending no key until it is back", self.path)
            self._stamp, self._value = None, None
            return None
        except OSError as exc:
            log.warning("cannot stat %s (%s); keeping the key read before", self.path, exc)
            return self._value
        stamp = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            try:
                value = self.path.read_text(encoding="utf-8").strip() or None
            except OSError as exc:
                log.warning("cannot read %s (%s); keeping the key read before", self.path, exc)
                return self._value
            if self._stamp is not None and value != self._value:
                log.info("%s changed; using the new key from now on", self.path)
            self._stamp, self._value = stamp, value
        return self._value


def current(source: KeySource) -> str | None:
    """The value a :data:`KeySource` holds right now."""
    return source() if callable(source) else source

"""Row ranges of an image processed on several cores by threads (numpy, torch and zlib release
the GIL in their inner loops). Used by the PNG writer and the colourise recombination."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers < workers:
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rows")
        return _pool


def row_ranges(height: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` consecutive (top, bottom) ranges of nearly equal size covering ``height`` rows."""
    bounds = [round(height * i / parts) for i in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def map_row_ranges(fn: Callable[[int, int, int], T], height: int, parts: int) -> list[T]:
    """``fn(index, top, bottom)`` for each of ``parts`` row ranges, in order; on the calling thread
    when there is one part, else one thread per part."""
    ranges = row_ranges(height, parts)
    if len(ranges) == 1:
        return [fn(0, *ranges[0])]
    return list(_executor(len(ranges)).map(lambda item: fn(item[0], *item[1]), enumerate(ranges)))

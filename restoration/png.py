"""A fast PNG writer for 8-bit RGB results: vectorised row filters and deflate on every core.

Pillow's PNG encoder tries all five row filters per row in C, then deflates on one core; for the
service's large outputs that dominates the reply (1024×768: ~49 ms; a 4 MP photo: ~250 ms). Here:

* each row gets the Sub or the Up filter, whichever leaves the smaller sum of absolute
  differences (Pillow's rule, over two filters instead of five), computed with numpy;
* the rows are cut into one part per core; each part is deflated by its own compressor in a
  thread (zlib releases the GIL) and ends on a full flush, so the raw deflate streams join into
  one valid zlib stream (the technique of pigz); the Adler-32 checksums of the parts are combined;
* the image is filtered and compressed in strips, so the extra memory is a few strips, not
  copies of a 64-megapixel picture.

Measured (1024×768 photo, 2 cores): 18 ms vs Pillow's 49 ms at the same zlib level and strategy;
files 0–7 % larger. Decoders see an ordinary PNG (tests decode it with Pillow, pixel-exact).
"""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np

from restoration.parallel import map_row_ranges

SIGNATURE = b"\x89PNG\r\n\x1a\n"
STRIP_ROWS = 64
MIN_PART_BYTES = 1 << 20  # below this a part is not worth a thread
IDAT_BYTES = 1 << 20  # IDAT chunk size, as common encoders write them
_ADLER_BASE = 65521

def adler32_combine(adler1: int, adler2: int, len2: int) -> int:
    """Adler-32 of A+B from adler32(A), adler32(B) and len(B) (the sums are linear in the data)."""
    rem = len2 % _ADLER_BASE
    a1, b1 = adler1 & 0xFFFF, adler1 >> 16
    a2, b2 = adler2 & 0xFFFF, adler2 >> 16
    a = (a1 + a2 - 1) % _ADLER_BASE
    b = (b1 + b2 + rem * a1 - rem) % _ADLER_BASE
    return a | (b << 16)


def filter_rows(rows: np.ndarray, above: np.ndarray | None) -> np.ndarray:
    """PNG-filtered scanlines (filter byte + data) of ``rows`` (h×w×3 uint8); ``above`` is the
    row before them (None at the top of the image)."""
    h = rows.shape[0]
    flat = rows.reshape(h, -1)
    c = rows.shape[2]
    sub = np.empty_like(flat)
    sub[:, :c] = flat[:, :c]
    np.subtract(flat[:, c:], flat[:, :-c], out=sub[:, c:])
    prev = np.empty_like(flat)
    prev[0] = above.reshape(-1) if above is not None else 0
    prev[1:] = flat[:-1]
    up = flat - prev
    cost_sub = np.abs(sub.view(np.int8), dtype=np.int16).sum(1, dtype=np.int64)
    cost_up = np.abs(up.view(np.int8), dtype=np.int16).sum(1, dtype=np.int64)
    use_up = cost_up < cost_sub
    out = np.empty((h, flat.shape[1] + 1), np.uint8)
    out[:, 0] = np.where(use_up, 2, 1)
    out[:, 1:] = np.where(use_up[:, None], up, sub)
    return out


def _deflate_part(arr: np.ndarray, top: int, bottom: int, level: int, strategy: int, last: bool
                  ) -> tuple[bytes, int, int]:
    """Raw deflate of the filtered rows top..bottom, ending on a full flush (or the final block)."""
    comp = zlib.compressobj(level, zlib.DEFLATED, -15, 9, strategy)
    pieces, adler, length = [], 1, 0
    for start in range(top, bottom, STRIP_ROWS):
        stop = min(bottom, start + STRIP_ROWS)
        raw = filter_rows(arr[start:stop], arr[start - 1] if start > 0 else None).tobytes()
        adler = zlib.adler32(raw, adler)
        length += len(raw)
        pieces.append(comp.compress(raw))
    pieces.append(comp.flush(zlib.Z_FINISH if last else zlib.Z_FULL_FLUSH))
    return b"".join(pieces), adler, length


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(tag)))


def encode_rgb_png(arr: np.ndarray, level: int = 1, strategy: int = zlib.Z_RLE, threads: int | None = None) -> bytes:
    """PNG bytes of an h×w×3 uint8 array (8-bit RGB, no interlacing)."""
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an h×w×3 uint8 array, got {arr.dtype} {arr.shape}")
    arr = np.ascontiguousarray(arr)
    height, width = arr.shape[:2]
    threads = threads or len(os.sched_getaffinity(0)) or 1
    parts = max(1, min(threads, arr.nbytes // MIN_PART_BYTES, height))
    results = map_row_ranges(lambda i, top, bottom: _deflate_part(arr, top, bottom, level, strategy, i == parts - 1),
                             height, parts)
    adler = results[0][1]
    for _, part_adler, part_len in results[1:]:
        adler = adler32_combine(adler, part_adler, part_len)
    # zlib header: deflate, 32 KiB window; FLEVEL 0 ("fastest"), check bits make it a multiple of 31
    stream = b"\x78\x01" + b"".join(body for body, _, _ in results) + struct.pack(">I", adler)
    out = [SIGNATURE, _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))]
    out += [_chunk(b"IDAT", stream[i:i + IDAT_BYTES]) for i in range(0, len(stream), IDAT_BYTES)]
    out.append(_chunk(b"IEND", b""))
    return b"".join(out)


# -- a text chunk: how the restore workflow carries a request's settings between its nodes ------

def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def add_text(png: bytes, key: str, text: str) -> bytes:
    """``png`` with a ``tEXt`` chunk ``key`` = ``text`` (Latin-1) right after its header chunk."""
    if not png.startswith(SIGNATURE):
        raise ValueError("not a PNG")
    (ihdr_len,) = struct.unpack(">I", png[8:12])
    end = 8 + 12 + ihdr_len
    return png[:end] + _chunk(b"tEXt", key.encode("latin-1") + b"\0" + text.encode("latin-1")) + png[end:]


def read_text(data: bytes, key: str) -> str | None:
    """The ``tEXt`` value stored under ``key`` before the image data of a PNG (None if absent)."""
    if not data.startswith(SIGNATURE):
        return None
    pos, want = 8, key.encode("latin-1") + b"\0"
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        if kind in (b"IDAT", b"IEND") or pos + 12 + length > len(data):
            return None
        body = data[pos + 8:pos + 8 + length]
        if kind == b"tEXt" and body.startswith(want):
            return body[len(want):].decode("latin-1")
        pos += 12 + length
    return None

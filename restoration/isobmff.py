"""The declared size of a HEIF/HEIC or AVIF image, read from its ISO base media file boxes.

Phones save photos as HEIC (HEVC in a HEIF container) or AVIF (AV1 in the same container). Both
decoders would parse and allocate before Pillow tells the size, and libavif refuses declared sizes
past its own limit with an error that does not name them; reading the primary item's ``ispe``
(image spatial extent) box here lets :func:`restoration.image_io.decode_image` refuse a too-large
image with its real size before either library sees the bytes.

Only the few boxes that lead to that size are read (``ftyp``, ``meta`` → ``pitm``, ``iprp`` →
``ipco``/``ipma``; ``moov`` → ``trak`` → ``tkhd`` for image sequences without a still image).
Every length is checked against the data, so a hostile file yields ``None`` for what it hides,
never an exception or a large allocation.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1",
                         b"miaf"})
AVIF_BRANDS = frozenset({b"avif", b"avis"})


@dataclass(frozen=True)
class ContainerHeader:
    """What the boxes say: the Pillow format name and the primary image's size (after a
    90°/270° ``irot``), or ``None`` when the file does not declare one where it should."""

    format: str  # "HEIF" or "AVIF"
    size: tuple[int, int] | None


def _boxes(data: memoryview, start: int, end: int):
    """``(type, payload_start, payload_end)`` of each box in ``data[start:end]``, stopping at the
    first box whose length does not fit."""
    at = start
    while at + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, at)
        header = 8
        if size == 1:
            if at + 16 > end:
                return
            size = struct.unpack_from(">Q", data, at + 8)[0]
            header = 16
        elif size == 0:
            size = end - at
        if size < header or at + size > end:
            return
        yield kind, at + header, at + size
        at += size


def _child(data: memoryview, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    for k, s, e in _boxes(data, start, end):
        if k == kind:
            return s, e
    return None


def _full_box(data: memoryview, start: int, end: int) -> tuple[int, int, int] | None:
    """``(version, flags, payload_start)`` of a FullBox."""
    if start + 4 > end:
        return None
    word = struct.unpack_from(">I", data, start)[0]
    return word >> 24, word & 0xFFFFFF, start + 4


def brand(data: bytes | memoryview) -> str | None:
    """``"HEIF"`` or ``"AVIF"`` when the file starts with an ``ftyp`` box naming one of their brands."""
    view = memoryview(data)
    if len(view) < 16 or bytes(view[4:8]) != b"ftyp":
        return None
    size = struct.unpack_from(">I", view, 0)[0]
    end = min(max(size, 16), len(view), 4096)
    major = bytes(view[8:12])
    compatible = {bytes(view[i:i + 4]) for i in range(16, end - 3, 4)}
    if major in AVIF_BRANDS or (major in HEIF_BRANDS - {b"heic", b"heix"} and compatible & AVIF_BRANDS):
        return "AVIF"
    if major in HEIF_BRANDS or compatible & HEIF_BRANDS:
        return "HEIF"
    return None


def _primary_size(data: memoryview, start: int, end: int) -> tuple[int, int] | None:
    """The primary item's ``ispe`` inside a ``meta`` box's payload, swapped for a quarter-turn ``irot``."""
    full = _full_box(data, start, end)
    if full is None:
        return None
    meta_start = full[2]
    pitm = _child(data, meta_start, end, b"pitm")
    iprp = _child(data, meta_start, end, b"iprp")
    if pitm is None or iprp is None:
        return None
    full = _full_box(data, *pitm)
    if full is None:
        return None
    version, _, at = full
    fmt = ">H" if version == 0 else ">I"
    if at + struct.calcsize(fmt) > pitm[1]:
        return None
    primary = struct.unpack_from(fmt, data, at)[0]
    ipco = _child(data, *iprp, b"ipco")
    ipma = _child(data, *iprp, b"ipma")
    if ipco is None or ipma is None:
        return None
    properties = list(_boxes(data, *ipco))  # associations index this list from 1
    indices = _associations(data, *ipma, primary)
    width = height = None
    quarter_turn = False
    for index in indices:
        if not 1 <= index <= len(properties):
            continue
        kind, s, e = properties[index - 1]
        if kind == b"ispe" and width is None and s + 12 <= e:
            width, height = struct.unpack_from(">II", data, s + 4)
        elif kind == b"irot" and s < e:
            quarter_turn = bool(data[s] & 1)
    if width is None:
        return None
    return (height, width) if quarter_turn else (width, height)


def _associations(data: memoryview, start: int, end: int, item: int) -> list[int]:
    """The property indices the ``ipma`` box associates with ``item``."""
    full = _full_box(data, start, end)
    if full is None:
        return []
    version, flags, at = full
    if at + 4 > end:
        return []
    count = struct.unpack_from(">I", data, at)[0]
    at += 4
    id_fmt = ">H" if version < 1 else ">I"
    id_len = struct.calcsize(id_fmt)
    wide = bool(flags & 1)
    for _ in range(count):
        if at + id_len + 1 > end:
            return []
        item_id = struct.unpack_from(id_fmt, data, at)[0]
        n = data[at + id_len]
        at += id_len + 1
        step = 2 if wide else 1
        if at + n * step > end:
            return []
        if item_id == item:
            if wide:
                return [struct.unpack_from(">H", data, at + 2 * i)[0] & 0x7FFF for i in range(n)]
            return [data[at + i] & 0x7F for i in range(n)]
        at += n * step
    return []


def _track_size(data: memoryview, start: int, end: int) -> tuple[int, int] | None:
    """The largest ``tkhd`` width × height of the tracks in a ``moov`` box (image sequences)."""
    best: tuple[int, int] | None = None
    for kind, s, e in _boxes(data, start, end):
        if kind != b"trak":
            continue
        tkhd = _child(data, s, e, b"tkhd")
        if tkhd is None:
            continue
        full = _full_box(data, *tkhd)
        if full is None:
            continue
        version, _, at = full
        at += 84 if version == 1 else 72  # times, ids, duration, layer, volume and the matrix come first
        if at + 8 > tkhd[1]:
            continue
        w, h = (v >> 16 for v in struct.unpack_from(">II", data, at))  # 16.16 fixed point
        if best is None or w * h > best[0] * best[1]:
            best = (w, h)
    return best


def read_header(data: bytes | memoryview) -> ContainerHeader | None:
    """The container's format and declared primary-image size; ``None`` when ``data`` is not a
    HEIF/AVIF file at all. Reads only box headers: no pixel is decoded."""
    fmt = brand(data)
    if fmt is None:
        return None
    view = memoryview(data)
    size = None
    track = None
    for kind, s, e in _boxes(view, 0, len(view)):
        if kind == b"meta":
            size = _primary_size(view, s, e)
        elif kind == b"moov":
            track = _track_size(view, s, e)
    return ContainerHeader(format=fmt, size=size or track)

"""A corpus of hostile and awkward inputs, generated on the fly (nothing is committed).

Each case says whether a correct service must refuse it (4xx JSON) or restore it (an image).
Used by the serving tests, the bot tests and the reliability report.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

import numpy as np
import pillow_heif
from PIL import Image

# Pillow saves and opens HEIF through pillow-heif's plugin (the service registers it too).
pillow_heif.register_heif_opener()


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    expect: str  # "error" or "image"
    content_type: str = "application/octet-stream"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(side: int = 50000) -> bytes:
    """A PNG declaring side×side pixels whose IDAT is a small zlib stream of zeros (expands hugely)."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    comp = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    body = b"".join(comp.compress(row) for _ in range(64)) + comp.flush()
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b"")


def gif_bomb(side: int = 30000) -> bytes:
    """A GIF whose logical screen and frame claim side×side pixels."""
    buf = io.BytesIO()
    Image.new("P", (4, 4)).save(buf, "GIF")
    data = bytearray(buf.getvalue())
    data[6:10] = struct.pack("<HH", side, side)  # logical screen
    idx = data.index(b",")  # image descriptor
    data[idx + 5: idx + 9] = struct.pack("<HH", side, side)
    return bytes(data)


def webp_bomb(side: int = 16383) -> bytes:
    """A lossless WebP whose VP8L header claims side×side pixels (16383 is the format's maximum):
    a small file that would need about 1 GB once decoded. Made by patching a tiny image's header."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 20, 30)).save(buf, "WEBP", lossless=True)
    data = bytearray(buf.getvalue())
    at = data.index(b"VP8L") + 8  # chunk payload: 0x2f signature, then 14+14+1+3 bits
    assert data[at] == 0x2F
    bits = int.from_bytes(data[at + 1:at + 5], "little")
    bits = (bits & ~((1 << 28) - 1)) | (side - 1) | ((side - 1) << 14)
    data[at + 1:at + 5] = bits.to_bytes(4, "little")
    return bytes(data)


def declare_size(data: bytes, width: int, height: int) -> bytes:
    """A HEIF or AVIF file whose ``ispe`` box (the primary image's declared size) says
    width×height: a file of a few hundred bytes that claims a huge image."""
    out = bytearray(data)
    at = out.index(b"ispe") + 8  # box type, then version/flags
    out[at:at + 8] = struct.pack(">II", width, height)
    return bytes(out)


def heif_bomb(side: int = 30000, fmt: str = "HEIF") -> bytes:
    """A tiny HEIC (or AVIF, ``fmt="AVIF"``) whose container declares side×side pixels."""
    return declare_size(_save(Image.new("RGB", (64, 64), (10, 20, 30)), fmt, quality=50), side, side)


def corrupt_container(data: bytes) -> bytes:
    """The same file with the item boxes (iinf/iloc/iprp) overwritten: a HEIF/AVIF brand with
    nothing a decoder can find an image in."""
    out = bytearray(data)
    start = out.index(b"meta") + 8
    end = out.index(b"mdat")
    out[start:end - 4] = bytes((i * 37 + 11) & 0xFF for i in range(end - 4 - start))
    return bytes(out)


def _flip_payload(data: bytes) -> bytes:
    """Bit flips through the coded picture (mdat) only: the container stays readable."""
    out = bytearray(data)
    for i in range(out.index(b"mdat") + 24, len(out) - 4, 29):
        out[i] ^= 0x5A
    return bytes(out)


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _photo(w: int = 96, h: int = 64) -> Image.Image:
    y, x = np.mgrid[0:h, 0:w]
    arr = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) * 127 // (w + h)], -1)
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def corpus() -> list[Case]:
    """Every hostile or awkward input the service must survive."""
    photo = _photo()
    jpeg = _save(photo, "JPEG", quality=90)
    png = _save(photo, "PNG")
    corrupted_jpeg = bytearray(jpeg)
    for i in range(200, len(corrupted_jpeg) - 10, 37):
        corrupted_jpeg[i] ^= 0x5A
    corrupted_png = bytearray(png)
    corrupted_png[40:60] = b"\x00" * 20  # breaks the IDAT CRC/zlib stream
    frames = [Image.new("RGB", (40, 30), c) for c in ((200, 0, 0), (0, 200, 0), (0, 0, 200))]
    apng = io.BytesIO()
    frames[0].save(apng, "PNG", save_all=True, append_images=frames[1:])
    agif = io.BytesIO()
    frames[0].save(agif, "GIF", save_all=True, append_images=frames[1:])
    awebp = io.BytesIO()
    frames[0].save(awebp, "WEBP", save_all=True, append_images=frames[1:])
    big_exif = Image.Exif()
    big_exif[0x010E] = "x" * 60000  # ImageDescription: ~60 KB of EXIF
    icc_blob = b"\x00" * 200_000  # an enormous, meaningless ICC profile
    rgba_palette = Image.new("RGBA", (30, 30), (0, 0, 255, 0))
    rgba_palette.paste((255, 0, 0, 255), (10, 10, 20, 20))
    zip_bytes = b"PK\x03\x04" + b"\x14\x00" * 10 + b"\x00" * 100 + b"PK\x05\x06" + b"\x00" * 18
    gifar = _save(Image.new("P", (20, 20)), "GIF") + zip_bytes  # GIF + ZIP polyglot: a valid GIF
    html_jpeg = b"\xff\xd8\xff\xe0<html><script>alert(1)</script></html>"
    i16 = Image.fromarray((np.arange(64 * 48).reshape(48, 64) * 20).astype(np.uint16))
    heic = _save(photo, "HEIF", quality=85)
    avif = _save(photo, "AVIF", quality=85)
    rotated = Image.Exif()
    rotated[0x0112] = 6  # what a phone held upright writes: rotate 90° clockwise to view
    rgba_phone = photo.convert("RGBA")
    rgba_phone.putalpha(128)
    aavif = io.BytesIO()
    frames[0].save(aavif, "AVIF", save_all=True, append_images=frames[1:])
    return [
        Case("zero_bytes", b"", "error"),
        Case("png_bomb_50000x50000", png_bomb(), "error", "image/png"),
        Case("gif_bomb_30000x30000", gif_bomb(), "error", "image/gif"),
        Case("webp_bomb_16383x16383", webp_bomb(), "error", "image/webp"),
        Case("thin_1x100000", _save(Image.new("L", (1, 100000)), "PNG"), "error", "image/png"),
        Case("wide_100000x1", _save(Image.new("L", (100000, 1)), "PNG"), "error", "image/png"),
        Case("truncated_jpeg", jpeg[: len(jpeg) // 2], "error", "image/jpeg"),
        Case("truncated_png", png[: len(png) // 2], "error", "image/png"),
        Case("corrupted_jpeg", bytes(corrupted_jpeg), "any", "image/jpeg"),
        Case("corrupted_png", bytes(corrupted_png), "error", "image/png"),
        Case("html_as_jpeg", b"<!doctype html><html><body>hi</body></html>", "error", "image/jpeg"),
        Case("svg_as_png", b'<svg xmlns="http://www.w3.org/2000/svg" width="9e9" height="9e9"/>', "error",
             "image/png"),
        Case("zip_as_jpeg", zip_bytes, "error", "image/jpeg"),
        Case("jpeg_magic_then_html", html_jpeg, "error", "image/jpeg"),
        Case("eps_as_jpeg", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n", "error", "image/jpeg"),
        Case("gif_zip_polyglot", gifar, "image", "image/gif"),
        Case("huge_exif", _save(photo, "JPEG", exif=big_exif.tobytes()), "image", "image/jpeg"),
        Case("huge_icc", _save(photo, "PNG", icc_profile=icc_blob), "image", "image/png"),
        Case("sixteen_bit_grey", _save(i16, "PNG"), "image", "image/png"),
        Case("cmyk_jpeg", _save(photo.convert("CMYK"), "JPEG"), "image", "image/jpeg"),
        Case("palette_transparency", _save(rgba_palette.convert("P"), "PNG"), "image", "image/png"),
        Case("animated_png", apng.getvalue(), "image", "image/png"),
        Case("animated_gif", agif.getvalue(), "image", "image/gif"),
        Case("animated_webp", awebp.getvalue(), "image", "image/webp"),
        Case("bmp", _save(photo, "BMP"), "image", "image/bmp"),
        Case("tiff", _save(photo, "TIFF"), "image", "image/tiff"),
        Case("jpeg_labelled_png", jpeg, "image", "image/png"),
        # Phone photos saved as files: HEIC (HEVC in HEIF) and AVIF.
        Case("heic", heic, "image", "image/heic"),
        Case("avif", avif, "image", "image/avif"),
        Case("heic_exif_rotated", _save(photo, "HEIF", exif=rotated.tobytes()), "image", "image/heic"),
        Case("avif_exif_rotated", _save(photo, "AVIF", exif=rotated.tobytes()), "image", "image/avif"),
        Case("heic_transparent", _save(rgba_phone, "HEIF"), "image", "image/heic"),
        Case("animated_avif", aavif.getvalue(), "image", "image/avif"),
        Case("heic_bomb_30000x30000", heif_bomb(), "error", "image/heic"),
        Case("avif_bomb_100000x100000", heif_bomb(100000, "AVIF"), "error", "image/avif"),
        Case("truncated_heic", heic[: len(heic) // 2], "error", "image/heic"),
        Case("truncated_avif", avif[: len(avif) // 2], "error", "image/avif"),
        Case("heic_header_only", heic[:120], "error", "image/heic"),
        Case("corrupt_heic_container", corrupt_container(heic), "error", "image/heic"),
        Case("corrupt_avif_container", corrupt_container(avif), "error", "image/avif"),
        Case("corrupted_heic_pixels", _flip_payload(heic), "any", "image/heic"),
        Case("corrupted_avif_pixels", _flip_payload(avif), "any", "image/avif"),
        Case("heic_labelled_jpeg", heic, "image", "image/jpeg"),
    ]

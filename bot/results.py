"""Turning a result into what Telegram accepts: a photo within its limits, a before/after image.

Pure functions on Pillow images, tested without servers.
"""

from __future__ import annotations

import io

from PIL import Image

# Telegram's sendPhoto limits.
PHOTO_MAX_BYTES = 10 * 1024 * 1024
PHOTO_MAX_SIDES = 10_000  # width + height
PHOTO_MAX_ASPECT = 20.0
# A preview (for a result beyond the limits) is this long on its long side: what Telegram shows.
PREVIEW_SIDE = 2560


def fits_photo_limits(width: int, height: int, size_bytes: int, max_bytes: int = PHOTO_MAX_BYTES) -> bool:
    """Whether Telegram takes an image of this size and weight as a photo."""
    return (width + height <= PHOTO_MAX_SIDES and max(width, height) / min(width, height) <= PHOTO_MAX_ASPECT
            and size_bytes <= max_bytes)


def photo_size(width: int, height: int) -> tuple[int, int]:
    """The size the photo is sent at: unchanged when width + height is within Telegram's 10000,
    else a preview of PREVIEW_SIDE px on the long side (Telegram shows no more than that anyway)."""
    if width + height <= PHOTO_MAX_SIDES:
        return width, height
    return preview_size(width, height)


def preview_size(width: int, height: int) -> tuple[int, int]:
    factor = PREVIEW_SIDE / max(width, height)
    return max(1, round(width * factor)), max(1, round(height * factor))


def encode_photo(img: Image.Image, quality: int = 90,
                 max_bytes: int = PHOTO_MAX_BYTES) -> tuple[bytes, tuple[int, int]] | None:
    """JPEG bytes for sendPhoto within Telegram's limits and their size in pixels, a reduced
    preview when the image does not fit; ``None`` when no photo can be made (aspect beyond 20:1:
    only the file is sent).

    Telegram recompresses photos anyway, so JPEG loses nothing visible; the full-quality PNG goes
    out as a document beside it.
    """
    if max(img.size) / min(img.size) > PHOTO_MAX_ASPECT:
        return None
    size = photo_size(*img.size)
    while True:
        frame = img if size == img.size else _reduce(img, size)
        out = io.BytesIO()
        frame.convert("RGB").save(out, format="JPEG", quality=quality, subsampling=0)
        data = out.getvalue()
        if fits_photo_limits(*size, len(data), max_bytes) or min(size) <= 16:
            return data, size
        smaller = preview_size(*img.size)
        size = smaller if max(smaller) < max(size) else (max(1, int(size[0] * 0.8)), max(1, int(size[1] * 0.8)))


def _reduce(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    # reduce() first (box filter by an integer factor, cheap) keeps LANCZOS off the full-size pixels.
    factor = min(img.width // size[0], img.height // size[1])
    if factor >= 2:
        img = img.reduce(factor)
    return img.resize(size, Image.Resampling.LANCZOS)


def side_by_side(before: Image.Image, after: Image.Image, gap: int = 8) -> Image.Image:
    """Before (scaled to the result's height) and after, next to each other on white."""
    height = after.height
    width = max(1, round(before.width * height / before.height))
    left = before.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (width + gap + after.width, height), (255, 255, 255))
    canvas.paste(left, (0, 0))
    canvas.paste(after.convert("RGB"), (width + gap, 0))
    return canvas


def result_file_name(original: str | None, mode_value: str, media_type: str) -> str:
    """``holiday_restore.png`` from ``holiday.jpg``; a neutral name for photos (they have none)."""
    stem = "photo"
    if original:
        stem = original.rsplit("/", 1)[-1].rsplit(".", 1)[0] or "photo"
        # Keep the name readable and safe in any file system.
        stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)[:60] or "photo"
    ext = "jpg" if media_type == "image/jpeg" else "png"
    return f"{stem}_{mode_value}.{ext}"

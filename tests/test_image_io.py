"""Image decoding and limits: every odd input comes out upright sRGB, or is refused clearly."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms

from restoration.image_io import ImageError, Limits, check_dimensions, decode_image, encode_image, output_format
from tests.conftest import encode, photo


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a huge size but carries almost no data (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def refused(data: bytes, limits: Limits | None = None, scale: int = 1) -> ImageError:
    with pytest.raises(ImageError) as info:
        decode_image(data, limits or Limits(), scale=scale)
    err = info.value
    assert 400 <= err.status < 500
    body = err.to_dict()
    assert set(body) == {"code", "type", "message"} and body["message"]
    return err


def test_rgb_jpeg_roundtrip():
    d = decode_image(encode(photo(64, 48), "JPEG", quality=95))
    assert d.image.mode == "RGB" and d.size == (64, 48) and d.source_format == "JPEG"


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "1", "CMYK", "YCbCr", "I;16", "I"])
def test_modes_become_rgb(mode):
    if mode in ("I;16", "I"):
        arr = np.linspace(0, 65535, 40 * 30).reshape(30, 40).astype(np.uint16 if mode == "I;16" else np.int32)
        img = Image.fromarray(arr)
        assert img.mode == mode
    else:
        img = photo(40, 30).convert(mode)
    fmt = "TIFF" if mode in ("CMYK", "YCbCr", "I", "I;16") else "PNG"
    if mode == "YCbCr":
        fmt = "JPEG"
    d = decode_image(encode(img, fmt))
    assert d.image.mode == "RGB" and d.size == (40, 30)


def test_sixteen_bit_grey_is_scaled_not_clipped():
    arr = np.full((10, 10), 32768, np.uint16)
    d = decode_image(encode(Image.fromarray(arr), "PNG"))
    v = np.asarray(d.image)[0, 0, 0]
    assert 125 <= v <= 130  # mid-grey, not 255


def test_transparent_palette_lands_on_white():
    img = Image.new("RGBA", (8, 8), (255, 0, 0, 0)).convert("P")
    d = decode_image(encode(img, "PNG"))
    assert np.asarray(d.image).min() >= 250


def test_exif_rotation_is_applied():
    img = photo(60, 20)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    d = decode_image(encode(img, "JPEG", exif=exif.tobytes()))
    assert d.size == (20, 60)


def test_icc_profile_converted_to_srgb():
    lab_profile = ImageCms.createProfile("LAB")
    del lab_profile
    # An sRGB-tagged image must come back essentially unchanged.
    img = photo(16, 16)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    d = decode_image(encode(img, "PNG", icc_profile=srgb))
    diff = np.abs(np.asarray(d.image).astype(int) - np.asarray(img).astype(int)).max()
    assert diff <= 2


def test_animated_gif_first_frame():
    frames = [Image.new("RGB", (10, 10), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    d = decode_image(buf.getvalue())
    assert d.animated and np.asarray(d.image)[5, 5, 0] > 200


@pytest.mark.parametrize(
    "data,kind",
    [
        (b"", "EmptyBody"),
        (b"hello, not an image", "UnsupportedMediaType"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "UnsupportedMediaType"),
        (b"PK\x03\x04" + b"\x00" * 40, "UnsupportedMediaType"),
    ],
)
def test_not_images(data, kind):
    assert refused(data).kind == kind


def test_truncated_jpeg():
    data = encode(photo(200, 200), "JPEG")
    err = refused(data[: len(data) // 3])
    assert err.kind == "CorruptImage" and err.status == 400


def test_too_many_bytes():
    err = refused(b"\xff" * 2000, Limits(max_bytes=1000))
    assert err.status == 413 and "limit is" in err.message


def test_bomb_refused_before_decoding():
    err = refused(png_header_only(30000, 30000))
    assert err.status == 413 and err.kind == "TooManyPixels" and "900.0 MP" in err.message


def test_extreme_aspect():
    err = refused(encode(Image.new("RGB", (2000, 20)), "PNG"))
    assert err.status == 422 and "aspect" in err.message


def test_output_limit_checked_on_header():
    limits = Limits(max_output_pixels=1_000_000)
    err = refused(png_header_only(600, 600), limits, scale=2)  # 1.44 MP out
    assert err.kind == "OutputTooLarge" and "×2" in err.message
    check_dimensions(500, 500, limits, scale=2)  # exactly 1 MP passes


def test_limits_from_env(monkeypatch):
    monkeypatch.setenv("PIX2PIX_MAX_OUTPUT_MP", "8")
    monkeypatch.setenv("PIX2PIX_MAX_INPUT_MB", "2.5")
    lim = Limits.from_env()
    assert lim.max_output_pixels == 8_000_000 and lim.max_bytes == 2_500_000


def test_output_format_negotiation():
    assert output_format(None, None) == "png"
    assert output_format("image/jpeg", None) == "jpeg"
    assert output_format("image/webp, image/png;q=0.9", None) == "png"
    assert output_format(None, "JPG") == "jpeg"
    with pytest.raises(ImageError):
        output_format(None, "gif")


def test_encode_png_and_jpeg():
    img = photo(32, 32)
    assert encode_image(img, "png").startswith(b"\x89PNG")
    assert encode_image(img, "jpeg").startswith(b"\xff\xd8")


# -- restoration.png: the fast RGB PNG writer -------------------------------------------------------


def _idat_stream(png: bytes) -> bytes:
    pos, stream = 8, b""
    while pos < len(png):
        (length,), tag = struct.unpack(">I", png[pos:pos + 4]), png[pos + 4:pos + 8]
        if tag == b"IDAT":
            stream += png[pos + 8:pos + 8 + length]
        pos += 12 + length
    return stream


def test_adler32_combine_matches_zlib():
    from restoration.png import adler32_combine

    rng = np.random.default_rng(3)
    for n1, n2 in ((0, 5), (1, 1), (1000, 70000), (65521, 65522), (300000, 12)):
        a, b = rng.integers(0, 256, n1, dtype=np.uint8).tobytes(), rng.integers(0, 256, n2, dtype=np.uint8).tobytes()
        assert adler32_combine(zlib.adler32(a), zlib.adler32(b), n2) == zlib.adler32(a + b)


@pytest.mark.parametrize("shape", [(1, 1), (1, 37), (53, 1), (64, 64), (129, 200), (700, 300)])
@pytest.mark.parametrize("content", ["noise", "photo", "flat"])
def test_fast_png_is_pixel_exact_and_a_valid_zlib_stream(shape, content, monkeypatch):
    import restoration.png as fast_png

    # small parts, strips and IDAT chunks, so every seam is crossed even on small images
    monkeypatch.setattr(fast_png, "MIN_PART_BYTES", 1000)
    monkeypatch.setattr(fast_png, "STRIP_ROWS", 7)
    monkeypatch.setattr(fast_png, "IDAT_BYTES", 4096)
    h, w = shape
    rng = np.random.default_rng(h * 1000 + w)
    if content == "noise":
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    elif content == "flat":
        arr = np.full((h, w, 3), (12, 200, 99), np.uint8)
    else:
        arr = np.asarray(photo(w, h, seed=5))
    for threads in (1, 2, 3):
        data = fast_png.encode_rgb_png(arr, threads=threads)
        zlib.decompress(_idat_stream(data))  # checks the combined Adler-32
        back = Image.open(io.BytesIO(data))
        assert back.mode == "RGB" and back.size == (w, h)
        assert np.array_equal(np.asarray(back), arr)


def test_encode_image_png_uses_the_fast_writer_and_round_trips():
    img = photo(300, 200, seed=9)
    data = encode_image(img)
    assert data.startswith(b"\x89PNG") and b"IDAT" in data
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), np.asarray(img))
    grey = img.convert("L")  # other modes keep Pillow's encoder
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode_image(grey)))), np.asarray(grey))
    with pytest.raises(ValueError):
        from restoration.png import encode_rgb_png

        encode_rgb_png(np.zeros((4, 4), np.uint8))


# -- phone photos as files: HEIC/HEIF (pillow-heif) and AVIF (Pillow's own plugin) ----------------

from restoration.isobmff import read_header  # noqa: E402
from tests.hostile import corrupt_container, declare_size, heif_bomb  # noqa: E402 - registers the HEIF plugin

PHONE_FORMATS = ["HEIF", "AVIF"]


def _close(a: Image.Image, b: Image.Image, tol: float = 12.0) -> bool:
    """Lossy phone formats: pixels close on average, not equal (a wrong rotation is off by 20 or more)."""
    return a.size == b.size and np.abs(np.asarray(a, np.int16) - np.asarray(b.convert("RGB"), np.int16)).mean() < tol


@pytest.mark.parametrize("fmt", PHONE_FORMATS)
def test_phone_formats_decode(fmt):
    img = photo(96, 64, seed=3)
    data = encode(img, fmt, quality=90)
    assert read_header(data).format == fmt and read_header(data).size[1] >= 64
    d = decode_image(data)
    assert d.source_format == fmt and d.image.mode == "RGB" and _close(d.image, img)


@pytest.mark.parametrize("fmt", PHONE_FORMATS)
@pytest.mark.parametrize("mode", ["L", "RGBA"])
def test_phone_formats_grey_and_transparent(fmt, mode):
    img = photo(40, 30).convert(mode)
    if mode == "RGBA":
        img.putalpha(0)  # fully transparent: lands on white
    d = decode_image(encode(img, fmt, quality=90))
    assert d.image.mode == "RGB" and d.size == (40, 30)
    if mode == "RGBA":
        assert np.asarray(d.image).min() >= 245


def test_ten_bit_heic_is_scaled_to_eight_bits():
    """HDR phone photos are 10-bit HEIC: scaled (not clipped) to 8 bits like 16-bit PNGs."""
    import pillow_heif

    arr = np.linspace(0, 65535, 48 * 32 * 3).reshape(32, 48, 3).astype(np.uint16)
    heif = pillow_heif.from_bytes(mode="RGB;16", size=(48, 32), data=arr.tobytes())
    buf = io.BytesIO()
    heif.save(buf, quality=90)
    assert pillow_heif.open_heif(io.BytesIO(buf.getvalue()), convert_hdr_to_8bit=False).info["bit_depth"] == 10
    d = decode_image(buf.getvalue())
    assert d.image.mode == "RGB" and d.size == (48, 32)
    got = np.asarray(d.image, np.int16)[:, :, 0]
    assert np.abs(got - (arr[:, :, 0] >> 8).astype(np.int16)).mean() < 3


@pytest.mark.parametrize("fmt", PHONE_FORMATS)
def test_phone_formats_exif_rotation(fmt):
    """A phone held upright writes orientation 6: the picture comes back upright, rotated once
    (HEIF stores it as an `irot` that libheif applies; AVIF's Pillow plugin reports it in EXIF)."""
    img = photo(90, 30, seed=4)
    exif = Image.Exif()
    exif[0x0112] = 6
    d = decode_image(encode(img, fmt, quality=90, exif=exif.tobytes()))
    assert d.size == (30, 90)
    assert _close(d.image, img.transpose(Image.Transpose.ROTATE_270))


@pytest.mark.parametrize("fmt", PHONE_FORMATS)
def test_phone_formats_icc_tagged(fmt):
    img = photo(32, 32, seed=5)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    d = decode_image(encode(img, fmt, quality=90, icc_profile=srgb))
    assert _close(d.image, img)


@pytest.mark.parametrize("fmt", PHONE_FORMATS)
def test_phone_formats_declared_huge_refused_before_any_decoder(fmt, monkeypatch):
    data = heif_bomb(30000, fmt)
    assert len(data) < 2000  # a small file that claims 900 MP

    def no_decoder(*args, **kwargs):
        raise AssertionError("a decoder was given a file the header already refuses")

    monkeypatch.setattr(Image, "open", no_decoder)
    err = refused(data)
    assert err.status == 413 and err.kind == "TooManyPixels" and "30000×30000" in err.message
    # beyond what libavif/libheif would even parse, the refusal still names the size
    assert "100000×100000" in refused(heif_bomb(100000, fmt)).message


@pytest.mark.parametrize("fmt", PHONE_FORMATS)
def test_phone_formats_aspect_and_output_limits_on_the_header(fmt):
    small = encode(photo(64, 64), fmt, quality=50)
    err = refused(declare_size(small, 4000, 100))
    assert err.status == 422 and err.kind == "ExtremeAspectRatio"
    err = refused(declare_size(small, 3000, 3000), Limits(max_output_pixels=64_000_000), scale=4)
    assert err.kind == "OutputTooLarge"


@pytest.mark.parametrize("fmt", PHONE_FORMATS)
def test_phone_formats_truncated_and_corrupt(fmt):
    data = encode(photo(120, 80), fmt, quality=80)
    for cut in (len(data) // 2, 200, 40):
        err = refused(data[:cut])
        assert err.status == 400 and err.kind == "CorruptImage" and fmt in err.message
    err = refused(corrupt_container(data))
    assert err.status == 400 and err.kind == "CorruptImage"


def test_container_reader_never_raises_on_hostile_boxes():
    """Every prefix and random damage: the box reader answers or says None, never raises; the
    decoder answers with an image or an ImageError, nothing else."""
    rng = np.random.default_rng(0)
    for fmt in PHONE_FORMATS:
        data = encode(photo(48, 40), fmt, quality=60)
        for cut in range(0, len(data), 5):
            read_header(data[:cut])
        for _ in range(150):
            damaged = bytearray(data)
            for at in rng.integers(0, 400, size=4):
                damaged[at] = int(rng.integers(0, 256))
            read_header(bytes(damaged))
            try:
                decode_image(bytes(damaged))
            except ImageError:
                pass
    assert read_header(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2") is None  # an MP4 is not a photo
    assert read_header(encode(photo(8, 8), "PNG")) is None

"""Image decoding: every colour mode and container to RGB, and every unusable file refused with one clear sentence."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from recommender import images
from recommender.errors import QueryError
from recommender.images import load_image

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def raw_png(width: int, height: int, bit_depth: int, colour_type: int, rows: list[bytes]) -> bytes:
    """A PNG written by hand (Pillow cannot write 16-bit RGB, nor lie about its size)."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    data = zlib.compress(b"".join(b"\x00" + row for row in rows))
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data)
            + png_chunk(b"IEND", b""))


def saved(image: Image.Image, path: Path, **options) -> Path:
    image.save(path, **options)
    return path


def pixel(image: Image.Image, xy=(0, 0)) -> tuple[int, ...]:
    return tuple(int(value) for value in image.getpixel(xy))


def assert_rgb(image: Image.Image, size: tuple[int, int]) -> None:
    assert isinstance(image, Image.Image)
    assert image.mode == "RGB"
    assert image.size == size


# ---------------------------------------------------------------------------------------------- good images


def test_rgb_jpeg_from_str_path_pathlike_and_bytes(tmp_path):
    path = saved(Image.new("RGB", (40, 30), RED), tmp_path / "photo.jpg", quality=95)
    for source in (path, str(path), path.read_bytes(), bytearray(path.read_bytes())):
        image = load_image(source)
        assert_rgb(image, (40, 30))
        assert np.allclose(pixel(image), RED, atol=8)


def test_pil_image_input_is_converted_and_left_untouched():
    original = Image.new("RGBA", (20, 10), (0, 0, 255, 0))
    image = load_image(original)
    assert_rgb(image, (20, 10))
    assert pixel(image) == WHITE
    assert original.mode == "RGBA"


def test_rgba_png_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (16, 16), (255, 0, 0, 0))
    rgba.putpixel((1, 1), (0, 0, 255, 255))
    rgba.putpixel((2, 2), (0, 0, 0, 128))
    image = load_image(saved(rgba, tmp_path / "alpha.png"))
    assert_rgb(image, (16, 16))
    assert pixel(image) == WHITE
    assert pixel(image, (1, 1)) == BLUE
    assert all(abs(value - 127) <= 1 for value in pixel(image, (2, 2)))


def test_palette_images_with_and_without_transparency(tmp_path):
    gif = saved(Image.new("P", (12, 12), 0), tmp_path / "transparent.gif", transparency=0)
    assert pixel(load_image(gif)) == WHITE
    rgba = Image.new("RGBA", (12, 12), (255, 0, 0, 0))
    rgba.putpixel((3, 3), (0, 0, 255, 255))
    palette_png = saved(rgba.quantize(method=Image.Quantize.FASTOCTREE), tmp_path / "palette_alpha.png")
    assert Image.open(palette_png).mode == "P"
    image = load_image(palette_png)
    assert pixel(image) == WHITE and pixel(image, (3, 3)) == BLUE
    opaque = saved(Image.new("RGB", (12, 12), GREEN).convert("P"), tmp_path / "palette.png")
    assert pixel(load_image(opaque)) == GREEN


@pytest.mark.parametrize("mode, value, expected", [
    ("L", 200, 200),
    ("LA", (100, 255), 100),
    ("1", 1, 255),
])
def test_grayscale_and_bilevel_pngs(tmp_path, mode, value, expected):
    image = load_image(saved(Image.new(mode, (10, 9), value), tmp_path / f"gray_{mode}.png"))
    assert_rgb(image, (10, 9))
    assert pixel(image) == (expected,) * 3


def test_sixteen_bit_grayscale_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 32896, 65535] * 4] * 10, dtype=np.uint16)
    path = saved(Image.fromarray(values), tmp_path / "gray16.png")
    assert Image.open(path).mode.startswith("I")
    image = load_image(path)
    assert_rgb(image, (12, 10))
    assert [pixel(image, (x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_sixteen_bit_rgb_png(tmp_path):
    row = struct.pack(">" + "HHH" * 8, *([65535, 32896, 0] * 8))
    path = tmp_path / "rgb16.png"
    path.write_bytes(raw_png(8, 8, 16, 2, [row] * 8))
    image = load_image(path)
    assert_rgb(image, (8, 8))
    assert pixel(image) == (255, 128, 0)


@pytest.mark.parametrize("mode, values, expected", [
    ("I", np.array([[0, 70000]] * 10, dtype=np.int32), [0, 255]),  # beyond 16 bits: min–max
    ("I", np.array([[0, 200]] * 10, dtype=np.int32), [0, 200]),  # fits 8 bits: as is
    ("F", np.array([[0.0, 0.5]] * 10, dtype=np.float32), [0, 128]),  # 0..1 floats
    ("F", np.array([[-5.0, 5.0]] * 10, dtype=np.float32), [0, 255]),  # anything else: min–max
])
def test_32_bit_integer_and_float_tiffs(tmp_path, mode, values, expected):
    values = np.tile(values, (1, 5))
    source = Image.fromarray(values)
    assert source.mode == mode
    image = load_image(saved(source, tmp_path / "wide.tif"))
    assert_rgb(image, (10, 10))
    assert [pixel(image, (x, 0))[0] for x in range(2)] == expected


def test_cmyk_jpeg(tmp_path):
    image = load_image(saved(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), tmp_path / "cmyk.jpg", quality=95))
    assert_rgb(image, (16, 16))
    assert np.allclose(pixel(image), RED, atol=10)


@pytest.mark.parametrize("mode", ["YCbCr", "LAB", "HSV", "RGBX", "RGBa", "La", "PA", "I;16"])
def test_any_other_mode_becomes_rgb(mode):
    image = load_image(Image.new(mode, (9, 9)))
    assert_rgb(image, (9, 9))


@pytest.mark.parametrize("orientation, size", [(1, (40, 20)), (3, (40, 20)), (6, (20, 40)), (8, (20, 40))])
def test_exif_orientation_is_applied(tmp_path, orientation, size):
    source = Image.new("RGB", (40, 20), RED)
    source.paste(BLUE, (0, 0, 10, 20))  # left quarter blue
    exif = Image.Exif()
    exif[0x0112] = orientation
    image = load_image(saved(source, tmp_path / f"rotated{orientation}.jpg", exif=exif, quality=95))
    assert_rgb(image, size)
    if orientation == 6:  # rotate 90° clockwise: the blue left edge ends on top
        assert np.allclose(pixel(image, (10, 2)), BLUE, atol=40)
        assert np.allclose(pixel(image, (10, 37)), RED, atol=40)


def animation(path: Path, **options) -> Path:
    frames = [Image.new("RGB", (24, 16), colour) for colour in (RED, GREEN, BLUE)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0, **options)
    return path


@pytest.mark.parametrize("name, options", [
    ("animated.gif", {}),
    ("animated.png", {}),  # APNG
    pytest.param("animated.webp", {"lossless": True},
                 marks=pytest.mark.skipif(not features.check("webp"), reason="Pillow without WebP")),
])
def test_animations_use_their_first_frame(tmp_path, name, options):
    path = animation(tmp_path / name, **options)
    assert getattr(Image.open(path), "n_frames", 1) == 3
    image = load_image(path)
    assert_rgb(image, (24, 16))
    assert np.allclose(pixel(image), RED, atol=8)


@pytest.mark.parametrize("extension", ["bmp", "tiff", "webp", "ppm", "tga"])
def test_other_raster_formats(tmp_path, extension):
    if extension == "webp" and not features.check("webp"):
        pytest.skip("Pillow without WebP")
    image = load_image(saved(Image.new("RGB", (14, 11), GREEN), tmp_path / f"green.{extension}"))
    assert_rgb(image, (14, 11))


def test_minimum_side_is_accepted(tmp_path):
    assert_rgb(load_image(saved(Image.new("RGB", (8, 8)), tmp_path / "small.png")), (8, 8))


def test_no_file_handle_is_left_open(tmp_path):
    fd_dir = Path("/proc/self/fd")
    if not fd_dir.is_dir():
        pytest.skip("needs /proc")
    noise = np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    good = saved(Image.fromarray(noise), tmp_path / "good.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(good.read_bytes()[:1000])
    before = len(os.listdir(fd_dir))
    for _ in range(20):
        load_image(good)
        with pytest.raises(QueryError):
            load_image(bad)
    assert len(os.listdir(fd_dir)) <= before


# ----------------------------------------------------------------------------------------------- bad images


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(QueryError, match="image file not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(QueryError, match="is not a file"):
        load_image(tmp_path)


def test_empty_file_and_empty_bytes(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(QueryError, match=r"empty.png is empty \(0 bytes\)"):
        load_image(empty)
    with pytest.raises(QueryError, match="empty"):
        load_image(b"")


@pytest.mark.parametrize("fmt, keep", [("PNG", 0.5), ("JPEG", 0.5), ("GIF", 0.4)])
def test_truncated_files(tmp_path, fmt, keep):
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    noise.save(buffer, format=fmt)
    data = buffer.getvalue()
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(QueryError, match="truncated or corrupt"):
        load_image(path)


def test_corrupt_data_behind_a_valid_signature(tmp_path):
    path = tmp_path / "corrupt.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(QueryError, match=r"truncated or corrupt|not an image"):
        load_image(path)


@pytest.mark.parametrize("content, message", [
    (b"<!DOCTYPE html><html><body>404 Not Found</body></html>", "web page"),
    (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>', "SVG"),
    (b'<svg xmlns="http://www.w3.org/2000/svg"><circle r="4"/></svg>', "SVG"),
    (b"just some text, definitely not pixels\n" * 10, "not an image in a supported format"),
    (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not an image in a supported format"),
])
def test_non_images_posing_as_png(tmp_path, content, message):
    path = tmp_path / "picture.png"
    path.write_bytes(content)
    with pytest.raises(QueryError, match=message):
        load_image(path)


def test_decompression_bomb_header_is_refused_before_decoding(tmp_path):
    data = raw_png(8, 8, 8, 2, [b"\x00" * 24] * 8)
    # Same file, but the header now claims 100 000 × 100 000 pixels.
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    bomb = data[:8] + png_chunk(b"IHDR", header) + data[8 + 25:]
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb)
    with pytest.raises(QueryError, match="decompression bomb"):
        load_image(path)


def test_pixel_limit_is_the_module_constant(tmp_path, monkeypatch):
    path = saved(Image.new("RGB", (100, 100)), tmp_path / "big.png")
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 5_000)
    with pytest.raises(QueryError, match=r"100×100 pixels, more than the 5,000 allowed"):
        load_image(path)
    with pytest.raises(QueryError, match="more than the 5,000 allowed"):
        load_image(Image.new("RGB", (100, 100)))


def test_byte_limit_is_the_module_constant(tmp_path, monkeypatch):
    path = saved(Image.new("RGB", (64, 64)), tmp_path / "heavy.bmp")
    monkeypatch.setattr(images, "MAX_IMAGE_BYTES", 1_000)
    with pytest.raises(QueryError, match="images may be at most"):
        load_image(path)
    with pytest.raises(QueryError, match="images may be at most"):
        load_image(path.read_bytes())


@pytest.mark.parametrize("size", [(1, 1), (4, 4), (7, 200), (200, 7)])
def test_too_small_images(tmp_path, size):
    with pytest.raises(QueryError, match=rf"only {size[0]}×{size[1]} pixels; it needs at least 8×8"):
        load_image(saved(Image.new("RGB", size), tmp_path / "tiny.png"))


def test_wrong_source_type():
    with pytest.raises(QueryError, match="not int"):
        load_image(42)

"""Decode an uploaded image into a plain RGB picture, or refuse it with one clear sentence (``QueryError``).

Accepted: any raster format in ``ALLOWED_FORMATS``, in any colour mode. Transparency is composited on white,
palette / grayscale / 16-bit / 32-bit / float / CMYK / YCbCr / LAB … are converted to 8-bit RGB, an EXIF
orientation is applied (a portrait photo stays portrait), and only the first frame of an animation (GIF, WebP,
APNG) is used.

Refused: a missing path or a directory, an empty (0-byte) or oversized (> ``MAX_IMAGE_BYTES``) file, anything that
is not a raster image (HTML, SVG, text renamed ``.png``), a truncated or corrupt file, a decompression bomb
(> ``MAX_IMAGE_PIXELS`` pixels, checked from the header before any pixel is decoded; Pillow's own
``DecompressionBombWarning`` is turned into an error too), and images smaller than ``MIN_IMAGE_SIDE`` pixels on a
side — CLIP would only see a blown-up blur of them, so we say so instead of returning a meaningless match.

Files are read whole into memory (they are at most ``MAX_IMAGE_BYTES``) and closed before decoding starts, so no
file handle is ever left open. The limits are module constants read at call time (tests may monkeypatch them).
"""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from recommender.errors import QueryError

MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000
MIN_IMAGE_SIDE = 8
# Raster formats only: no EPS (it would run Ghostscript on untrusted input), no exotic scientific formats.
# (Multi-picture JPEGs from phones, MPO, open through the JPEG decoder.) Formats this Pillow lacks are skipped.
ALLOWED_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "AVIF", "BMP", "DIB", "TIFF", "ICO", "PPM", "TGA", "JPEG2000",
                   "QOI")
BACKGROUND = (255, 255, 255)

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | Image.Image


def load_image(source: ImageSource) -> Image.Image:
    """An 8-bit RGB copy of ``source`` (a path, the raw bytes of a file, or a PIL image, which is not modified).

    Raises:
        QueryError: The image cannot be used; the message says why in one sentence.
    """
    if isinstance(source, Image.Image):
        _check_pixels(source.size, "the image")
        return _checked_size(_to_rgb(source), "the image")
    if isinstance(source, bytes | bytearray | memoryview):
        return _decode(bytes(source), "the uploaded file")
    if isinstance(source, str | os.PathLike):
        path = Path(source).expanduser()
        return _decode(_read_file(path), f"{path.name or path}")
    raise QueryError(f"an image must be a file path, bytes or a PIL image, not {type(source).__name__}")


def _read_file(path: Path) -> bytes:
    if not path.exists():
        raise QueryError(f"image file not found: {path}")
    if not path.is_file():
        raise QueryError(f"{path} is not a file")
    size = path.stat().st_size
    _check_byte_size(size, path.name)
    try:
        with path.open("rb") as handle:
            return handle.read(MAX_IMAGE_BYTES + 1)
    except OSError as error:
        raise QueryError(f"cannot read {path.name}: {error.strerror or error}") from error


def _check_byte_size(size: int, label: str) -> None:
    if size == 0:
        raise QueryError(f"{label} is empty (0 bytes)")
    if size > MAX_IMAGE_BYTES:
        raise QueryError(f"{label} is {size / 2**20:.1f} MB; images may be at most {MAX_IMAGE_BYTES / 2**20:.0f} MB")


def _check_pixels(size: tuple[int, int], label: str) -> None:
    width, height = size
    if width * height > MAX_IMAGE_PIXELS:
        raise QueryError(f"{label} is {width}×{height} pixels, more than the {MAX_IMAGE_PIXELS:,} allowed "
                         "(possible decompression bomb)")


def _checked_size(image: Image.Image, label: str) -> Image.Image:
    width, height = image.size
    if min(width, height) < MIN_IMAGE_SIDE:
        raise QueryError(f"{label} is only {width}×{height} pixels; it needs at least "
                         f"{MIN_IMAGE_SIDE}×{MIN_IMAGE_SIDE}")
    return image


def _not_an_image(data: bytes, label: str) -> QueryError:
    head = data[:512].lstrip().lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in data[:4096].lower()):
        return QueryError(f"{label} is an SVG (vector) drawing; export it as PNG or JPEG first")
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head:
        return QueryError(f"{label} is a web page (HTML), not an image")
    return QueryError(f"{label} is not an image in a supported format ({', '.join(ALLOWED_FORMATS[:6])}, …)")


def _decode(data: bytes, label: str) -> Image.Image:
    _check_byte_size(len(data), label)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=_available_formats()) as image:
                _check_pixels(image.size, label)
                image.seek(0)  # first frame of an animation
                image.load()
                oriented = _exif_transposed(image)
                rgb = _to_rgb(oriented)
        except UnidentifiedImageError as error:
            raise _not_an_image(data, label) from error
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise QueryError(f"{label} has too many pixels to decode safely (possible decompression bomb)") from error
        except QueryError:
            raise
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError, struct.error,
                zlib.error) as error:
            raise QueryError(f"{label} is truncated or corrupt and cannot be decoded ({error})") from error
    return _checked_size(rgb, label)


def _available_formats() -> list[str]:
    Image.init()
    return [name for name in ALLOWED_FORMATS if name in Image.OPEN]


def _exif_transposed(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation (a broken EXIF block means no rotation, not a refused photo)."""
    try:
        return ImageOps.exif_transpose(image) or image
    except Exception:  # malformed EXIF data comes in many shapes
        return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode → a new 8-bit RGB image (transparency composited on ``BACKGROUND``)."""
    mode = image.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        return Image.fromarray(_scale_to_uint8(np.asarray(image), mode), mode="L").convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if has_alpha:
        if mode == "La":  # premultiplied L+alpha has no direct conversion to RGBA
            image = image.convert("LA")
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _scale_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """16-bit / 32-bit / float grayscale → 0..255: by the type's range when the values fit it, else min–max."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if mode == "F" and low >= 0.0 and high <= 1.0:
        scaled = values * 255.0
    elif mode != "F" and low >= 0.0 and high <= 255.0 and not mode.startswith("I;16"):
        scaled = values
    elif low >= 0.0 and high <= 65535.0:
        scaled = values / 257.0
    else:
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    return np.clip(np.nan_to_num(scaled), 0, 255).round().astype(np.uint8)

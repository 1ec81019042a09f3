"""Bad input, generated: nasty queries, malformed images and malformed catalogs never crash the library or the app.

* ≥ 1,000 generated queries: 800 through ``Recommender.search_text`` on the embedded default, 200 through the launched
  app's ``/search_text`` (gradio_client). Each one gets results in the CLI's JSON shape or a clear ``QueryError`` /
  ``AppError`` message, never another exception; the server still answers a normal query afterwards.
* A generated corpus of malformed images (≥ 30 named cases plus random mutations of valid files) through
  ``recommender.images.load_image`` and through the app's ``/search_image`` (the tiny CLIP of ``tests/tiny_clip.py``):
  each gets an RGB picture / results or a clear message.
* Malformed catalogs: refused by ``Catalog.load`` with a message naming file, row and column; ``ingest`` counts bad
  cells (NaN or out-of-range valence → missing, counted as ``invalid_valence``) instead of failing.
* A CI-sized run of ``benchmarks/load.py`` against the launched app (slow).

A known minor defect is pinned as an ``xfail`` test (see SECURITY.md): the non-UTF-8 CSV message names a byte offset,
not the line.
"""

from __future__ import annotations

import io
import json
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, features

from recommender.errors import CatalogError, QueryError
from recommender.images import MAX_IMAGE_BYTES, MIN_IMAGE_SIDE, load_image
from space_config import SETTINGS

SERVICE_EXAMPLES = 800
APP_EXAMPLES = 200
NORMAL_QUERY = "driving alone at night after a breakup"
RESULT_KEYS = {"query", "model", "ranking", "results"}
SONG_KEYS = {"rank", "song_id", "title", "artist", "valence", "score", "lines"}


# --- generated queries ------------------------------------------------------------------------------------------

INJECTIONS = [
    "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "<svg/onload=alert(1)>", "javascript:alert(1)",
    "' OR '1'='1' --", "\"; DROP TABLE songs; --", "1; SELECT * FROM users", "{{7*7}}", "${7*7}", "#{7*7}",
    "${jndi:ldap://127.0.0.1/a}", "../../../../etc/passwd", "..\\..\\windows\\win.ini", "%s%s%s%n", "%x" * 20,
    "__import__('os').system('id')", "eval('1+1')", "$(id)", "`id`", "| cat /etc/passwd", "{\"$gt\": \"\"}",
    "<!--", "]]>", "<?xml version='1.0'?><!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><x>&e;</x>",
    "\\u0000", "%00", "%0d%0aSet-Cookie: x=y", "\r\nX-Injected: 1", "NaN", "Infinity", "null", "None", "[]", "{}",
]
BIDI_AND_INVISIBLE = "\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff\u2060"
NASTY_QUERIES = [
    "", " ", "\t\n\r\x0b\x0c", "\x00", "\x00" * 50, "\x85\xa0\u1680\u2000\u2028\u2029\u3000", BIDI_AND_INVISIBLE,
    "x" * 100_000, "😀" * 100_000, " " * 100_000, "a " * 50_000, "\u200b" * 100_000, "ab\x00" * 33_334,
    "x" * SETTINGS.max_query_chars, "x" * (SETTINGS.max_query_chars + 1), " y " * SETTINGS.max_query_chars,
    "\u202eevil reversed text\u202c", "שלום עולם, לילה לבד בכביש", "مرحبا بالعالم ليلة وحيدة", "مرحبا hello שלום",
    "👨‍👩‍👧‍👦🏳️‍🌈🇺🇳👍🏽" * 20, "Z̷̢̛̛a̴̢̛l̷̨g̸̢o̵ ̴t̸e̶x̵t̴" * 30, "\ufffd\ufffe\uffff", "\U0010ffff\U000e0001",
    "\x1b[31mred\x1b[0m", "\x07\x08\x7f", "ﷺ" * 500, "\u0300" * 5000, "🎵" * 1999, "A\u0000B\u0000C",
    *INJECTIONS,
]
RTL = st.characters(min_codepoint=0x0590, max_codepoint=0x08FF)
EMOJI = st.one_of(st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF),
                  st.sampled_from(["\u200d", "\ufe0f", "\U0001f3fb", "\U0001f3ff", "\u20e3"]))
CONTROLS = st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp", "Co", "Cn", "Mn", "Me"], codec="utf-8")
ANY_TEXT = st.characters(codec="utf-8")  # every code point that UTF-8 can carry (no lone surrogates)
FRAGMENTS = st.one_of(
    st.text(ANY_TEXT, max_size=200), st.text(RTL, max_size=60), st.text(EMOJI, max_size=60),
    st.text(CONTROLS, max_size=60), st.sampled_from(INJECTIONS), st.sampled_from(["dancing in the rain", "home"]),
)
QUERIES = st.one_of(
    st.sampled_from(NASTY_QUERIES),
    st.text(ANY_TEXT, max_size=400),
    st.text(st.one_of(RTL, EMOJI, CONTROLS), max_size=300),
    st.lists(FRAGMENTS, max_size=6).map("".join),
    # Long inputs, generated: a fragment repeated up to ~100k characters.
    st.builds(lambda fragment, times: (fragment or "x") * times, FRAGMENTS, st.integers(1, 3_000)),
)


def expected_clean(query: str) -> str:
    """The contract: whitespace (and NUL) collapsed; empty or over the limit is a QueryError."""
    return " ".join(query.replace("\x00", " ").split())


def assert_result(result: dict, *, query: str, model: str, top_n: int) -> None:
    assert set(result) == RESULT_KEYS and result["model"] == model and result["query"] == query
    json.dumps(result, allow_nan=False)  # plain JSON: no NaN, no numpy scalars
    songs = result["results"]
    assert 1 <= len(songs) <= top_n and [song["rank"] for song in songs] == list(range(1, len(songs) + 1))
    scores = [song["score"] for song in songs]
    assert all(math.isfinite(score) for score in scores) and scores == sorted(scores, reverse=True)
    for song in songs:
        assert set(song) == SONG_KEYS and song["lines"]
        assert song["valence"] is None or 0.0 <= song["valence"] <= 1.0


def assert_clear(message: str) -> None:
    """A message a person can act on: one short sentence, no traceback, not an empty/None placeholder."""
    assert isinstance(message, str) and 5 <= len(message) <= 600, message
    assert "Traceback" not in message and message.strip() not in ("None", "null", "Error"), message


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The CPU is shared: one thread is ~5× faster per short query than two contended ones."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


BASE_SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                               HealthCheck.function_scoped_fixture,
                                                               HealthCheck.large_base_example])


@settings(BASE_SETTINGS, max_examples=SERVICE_EXAMPLES)
@given(query=QUERIES)
def test_generated_queries_through_the_service(default_recommender, query):
    cleaned = expected_clean(query)
    if not cleaned or len(cleaned) > SETTINGS.max_query_chars:
        with pytest.raises(QueryError) as caught:
            default_recommender.search_text(query)
        assert_clear(str(caught.value))
        assert ("empty" if not cleaned else "too long") in str(caught.value)
    else:
        result = default_recommender.search_text(query, top_n=5)
        assert_result(result, query=cleaned, model="baseline", top_n=5)


OPTION_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                          st.text(max_size=8), st.sampled_from(["0.5", "1e3", "nan", "inf", "-0", "5"]),
                          st.lists(st.integers(), max_size=2))


@settings(BASE_SETTINGS, max_examples=150)
@given(valence_min=OPTION_VALUES, valence_max=OPTION_VALUES, top_n=OPTION_VALUES)
def test_generated_options_through_the_service(default_recommender, valence_min, valence_max, top_n):
    try:
        result = default_recommender.search_text("dancing in the rain", valence_min=valence_min,
                                                 valence_max=valence_max, top_n=top_n)
    except QueryError as error:
        assert_clear(str(error))
        return
    low, high, wanted = float(valence_min), float(valence_max), int(float(top_n))
    assert 0.0 <= low <= high <= 1.0 and 1 <= wanted <= SETTINGS.max_top_n
    json.dumps(result, allow_nan=False)
    assert len(result["results"]) <= wanted
    if (low, high) != (0.0, 1.0):
        assert all(low <= song["valence"] <= high for song in result["results"])


@pytest.mark.parametrize("query", ["\ud800", "night drive \udfff", "\udbff\udc00 ok"])
def test_lone_surrogates_are_a_query_error(default_recommender, query):
    try:
        result = default_recommender.search_text(query)
    except QueryError as error:
        assert_clear(str(error))
    else:
        json.dumps(result)


# --- malformed images --------------------------------------------------------------------------------------------


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def raw_png(width: int, height: int, *, bit_depth: int = 8, colour_type: int = 2, rows: list[bytes] | None = None,
            idat: bytes | None = None) -> bytes:
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    if idat is None:
        rows = rows if rows is not None else [b"\x7f" * (width * channels * bit_depth // 8)] * height
        idat = zlib.compress(b"".join(b"\x00" + row for row in rows))
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def noise(size=(48, 40), mode="RGB", seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = len(Image.new(mode, (1, 1)).getbands())
    array = rng.integers(0, 255, (size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(array.squeeze(-1) if channels == 1 else array, mode=None if channels != 1 else "L")


def frames(fmt: str, **options) -> bytes:
    pictures = [Image.new("RGB", (24, 24), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    return encoded(pictures[0], fmt, save_all=True, append_images=pictures[1:], duration=50, loop=0, **options)


def jpeg_with_size(width: int, height: int) -> bytes:
    """A real JPEG whose SOF0 header is rewritten to claim another size (a pixel bomb that decodes nothing)."""
    data = bytearray(encoded(Image.new("RGB", (16, 16), (9, 9, 9)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


GIF_BOMB = (b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x00\x00\x00"  # logical screen, no palette
            + b"," + struct.pack("<HHHH", 0, 0, 65535, 65535) + b"\x00"  # one image of the same size
            + b"\x02\x02\x44\x01\x00;")  # a few LZW bytes, then the trailer


def malformed_images() -> list[tuple[str, str, bytes, str]]:
    """``(case, file name, bytes, expectation)``; expectation ``"rgb"`` (must decode) or ``"error"`` (clear refusal)."""
    png, jpeg = encoded(noise(), "PNG"), encoded(noise(), "JPEG", quality=90)
    gif = encoded(noise().convert("P"), "GIF")
    rng = np.random.default_rng(7)
    sixteen_rgb = raw_png(16, 16, bit_depth=16, colour_type=2, rows=[bytes(range(96))] * 16)
    bad_crc = bytearray(png)
    bad_crc[29] ^= 0xFF  # IHDR CRC
    bad_zlib = raw_png(16, 16, idat=b"\x78\x9c" + b"\xde\xad\xbe\xef" * 8)
    exif = Image.Exif()
    exif[0x0112] = 99  # an orientation that does not exist
    float_tiff = np.full((16, 16), np.nan, dtype=np.float32)
    float_tiff[::2] = np.inf
    float_tiff[1::4] = -3.5
    palette = Image.new("P", (20, 20), 3)
    palette.info["transparency"] = 3
    cases = [
        ("empty file", "empty.png", b"", "error"),
        ("one byte", "one.png", b"\x89", "error"),
        ("png signature only", "sig.png", png[:8], "error"),
        ("png truncated in the header", "cut-header.png", png[:30], "error"),
        ("png truncated in IDAT", "cut-idat.png", png[: len(png) // 2], "error"),
        ("png without IEND", "no-iend.png", png[:-12], "either"),
        ("png with a bad IHDR CRC", "bad-crc.png", bytes(bad_crc), "error"),
        ("png with corrupt zlib data", "bad-zlib.png", bad_zlib, "error"),
        ("png signature then garbage", "garbage.png", b"\x89PNG\r\n\x1a\n" + rng.bytes(2048), "error"),
        ("png signature then HTML", "sig-html.png", b"\x89PNG\r\n\x1a\n<html><script>x</script></html>", "error"),
        ("jpeg truncated after the header", "cut.jpg", jpeg[:200], "error"),
        ("jpeg truncated in the scan", "cut-scan.jpg", jpeg[: len(jpeg) * 2 // 3], "error"),
        ("jpeg SOI marker only", "soi.jpg", b"\xff\xd8", "error"),
        ("jpeg SOI then garbage", "soi-garbage.jpg", b"\xff\xd8\xff" + rng.bytes(1024), "error"),
        ("gif truncated", "cut.gif", gif[: len(gif) // 2], "error"),
        ("webp truncated", "cut.webp", encoded(noise(), "WEBP")[:40], "error"),
        ("1x1 png", "dot.png", encoded(Image.new("RGB", (1, 1)), "PNG"), "error"),
        ("7x100 png", "sliver.png", encoded(Image.new("RGB", (MIN_IMAGE_SIDE - 1, 100)), "PNG"), "error"),
        ("1x10000 png", "line.png", encoded(Image.new("L", (1, 10_000)), "PNG"), "error"),
        ("8x8 png, the smallest allowed", "min.png", encoded(Image.new("RGB", (8, 8), (1, 2, 3)), "PNG"), "rgb"),
        ("png header claiming 50000x50000", "bomb.png", raw_png(50_000, 50_000, idat=zlib.compress(b"\0" * 64)),
         "error"),
        ("png header claiming 10x5000000", "bomb-tall.png", raw_png(10, 5_000_000, idat=zlib.compress(b"\0" * 64)),
         "error"),
        ("gif header claiming 65535x65535", "bomb.gif", GIF_BOMB, "error"),
        ("jpeg header claiming 65000x65000", "bomb.jpg", jpeg_with_size(65_000, 65_000), "error"),
        ("bmp header claiming 100000x100000", "bomb.bmp",
         b"BM" + struct.pack("<IHHI", 0, 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, 100_000, 100_000, 1, 24, 0, 0,
                                                                 0, 0, 0, 0) + b"\0" * 64, "error"),
        ("random bytes (1 KB)", "random.png", rng.bytes(1024), "error"),
        ("random bytes (64 KB)", "random.jpg", rng.bytes(65_536), "error"),
        ("text file", "notes.txt", b"just some words, definitely not pixels\n" * 20, "error"),
        ("text renamed .png", "notes.png", b"hello\nworld\n", "error"),
        ("HTML posing as PNG", "page.png", b"<!DOCTYPE html><html><body>404 Not Found</body></html>", "error"),
        ("SVG posing as PNG", "drawing.png", b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"></svg>',
         "error"),
        ("XML SVG posing as PNG", "drawing2.png",
         b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>', "error"),
        ("EPS (would run Ghostscript)", "print.png", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n",
         "error"),
        ("PDF", "doc.png", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", "error"),
        ("ZIP", "archive.png", b"PK\x03\x04" + b"\0" * 26 + b"PK\x05\x06" + b"\0" * 18, "error"),
        ("ELF binary", "program.png", b"\x7fELF\x02\x01\x01" + b"\0" * 57, "error"),
        ("PSD (format not allowed)", "layers.png", b"8BPS\x00\x01" + b"\0" * 20, "error"),
        ("JPEG named .png", "photo.png", jpeg, "rgb"),
        ("PNG named .jpg", "picture.jpg", png, "rgb"),
        ("GIF named .webp", "anim.webp", gif, "rgb"),
        ("PNG followed by HTML (polyglot)", "polyglot.png", png + b"<html><script>alert(1)</script></html>", "rgb"),
        ("CMYK JPEG", "cmyk.jpg", encoded(Image.new("CMYK", (20, 20), (0, 255, 255, 0)), "JPEG"), "rgb"),
        ("CMYK TIFF", "cmyk.tif", encoded(Image.new("CMYK", (20, 20), (255, 0, 0, 0)), "TIFF"), "rgb"),
        ("16-bit grayscale PNG", "gray16.png", encoded(Image.new("I;16", (20, 20), 40_000), "PNG"), "rgb"),
        ("16-bit RGB PNG", "rgb16.png", sixteen_rgb, "rgb"),
        ("float TIFF with NaN and inf", "float.tif", encoded(Image.fromarray(float_tiff, mode="F"), "TIFF"), "rgb"),
        ("32-bit integer TIFF, negative", "int32.tif",
         encoded(Image.fromarray(np.full((16, 16), -70_000, dtype=np.int32), mode="I"), "TIFF"), "rgb"),
        ("animated GIF", "anim.gif", frames("GIF"), "rgb"),
        ("animated PNG", "anim.png", frames("PNG"), "rgb"),
        ("1-bit PNG", "bilevel.png", encoded(Image.new("1", (16, 16), 1), "PNG"), "rgb"),
        ("LA PNG", "la.png", encoded(Image.new("LA", (16, 16), (10, 0)), "PNG"), "rgb"),
        ("palette PNG with transparency", "palette.png", encoded(palette, "PNG", transparency=3), "rgb"),
        ("JPEG with a nonsense EXIF orientation", "exif.jpg", encoded(noise(), "JPEG", exif=exif.tobytes()), "rgb"),
        ("ICO", "favicon.ico", encoded(Image.new("RGBA", (32, 32), (1, 2, 3, 128)), "ICO"), "rgb"),
        ("multi-page TIFF", "pages.tif", frames("TIFF"), "rgb"),
    ]
    if features.check("webp"):
        cases.append(("animated WEBP", "anim.webp", frames("WEBP"), "rgb"))
    return cases


MALFORMED = malformed_images()


def test_the_malformed_corpus_is_big_enough():
    assert len(MALFORMED) >= 30 and len({name for name, *_ in MALFORMED}) == len(MALFORMED)
    assert sum(expect == "error" for *_, expect in MALFORMED) >= 30


def check_decoded(name: str, outcome, expect: str) -> None:
    if isinstance(outcome, QueryError):
        assert expect != "rgb", f"{name}: refused a usable image: {outcome}"
        assert_clear(str(outcome))
    else:
        assert expect != "error", f"{name}: decoded something that should be refused"
        assert outcome.mode == "RGB" and min(outcome.size) >= MIN_IMAGE_SIDE


@pytest.mark.parametrize("case", MALFORMED, ids=[case[0] for case in MALFORMED])
def test_malformed_images_through_load_image(tmp_path, case):
    name, filename, data, expect = case
    path = tmp_path / filename
    path.write_bytes(data)
    for source in (path, data):
        try:
            outcome = load_image(source)
        except QueryError as error:
            outcome = error
        check_decoded(name, outcome, expect)


def test_oversized_file_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "huge.png"
    with path.open("wb") as handle:  # sparse: the size is what matters
        handle.write(encoded(Image.new("RGB", (8, 8)), "PNG"))
        handle.truncate(MAX_IMAGE_BYTES + 1)
    with pytest.raises(QueryError, match="images may be at most"):
        load_image(path)


VALID_BASES = [encoded(noise(size=(24, 20), seed=seed), fmt) for seed, fmt in
               enumerate(["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"] if features.check("webp") else
                         ["PNG", "JPEG", "GIF", "BMP", "TIFF"])]


@st.composite
def mutated_images(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID_BASES)))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "header"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if action == "flip" and data:
            data[position] ^= draw(st.integers(1, 255))
        elif action == "truncate":
            del data[position:]
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=64))
        elif action == "delete":
            del data[position:position + draw(st.integers(1, 64))]
        else:  # rewrite a byte of the first 32, where the sizes live
            if len(data) > 32:
                data[draw(st.integers(8, 31))] = draw(st.integers(0, 255))
    return bytes(data)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about the broken TIFF tags we make
@settings(BASE_SETTINGS, max_examples=150)
@given(data=mutated_images())
def test_mutated_images_decode_or_are_refused(data):
    try:
        image = load_image(data)
    except QueryError as error:
        assert_clear(str(error))
    else:
        assert image.mode == "RGB" and min(image.size) >= MIN_IMAGE_SIDE


# --- malformed catalogs ------------------------------------------------------------------------------------------


def good_tables() -> dict[str, pd.DataFrame]:
    songs = pd.DataFrame({"song_id": ["s1", "s2", "s3"], "title": ["One", "Two", "Three"],
                          "artist": ["A", "B", "C"], "valence": [0.1, 0.5, 0.9]})
    lines = pd.DataFrame({"line_id": [0, 1, 2, 3], "song_id": ["s1", "s1", "s2", "s3"], "position": [0, 1, 0, 0],
                          "text": ["rain on the road", "night drive", "sunny day", "quiet morning"]})
    pairs = pd.DataFrame({"pair_id": [0], "song_id": ["s1"], "line_ids": [[0]], "fragment": ["rain on the road"],
                          "annotation": ["about leaving in the rain"]})
    return {"songs": songs, "lines": lines, "pairs": pairs}


def write_catalog(directory: Path, tables: dict[str, pd.DataFrame]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame.to_parquet(directory / f"{name}.parquet", index=False)
    return directory


def edit(table: str, column: str, row: int, value):
    """Change one cell (the column keeps a type parquet can store)."""
    def change(tables):
        values = tables[table][column].tolist()
        values[row] = value
        tables[table] = tables[table].assign(**{column: pd.Series(values, dtype=object if value is None else None)})
    return change


def set_column(table: str, column: str, values: list):
    def change(tables):
        tables[table] = tables[table].assign(**{column: values})
    return change


def drop_column(table: str, column: str):
    def change(tables):
        tables[table] = tables[table].drop(columns=[column])
    return change


# (case, change, file, row or None, column, words in the message)
BAD_CATALOGS = [
    ("missing title column", drop_column("songs", "title"), "songs.parquet", None, "title", "missing required"),
    ("missing text column", drop_column("lines", "text"), "lines.parquet", None, "text", "missing required"),
    ("valence is text", set_column("songs", "valence", ["0.1", "happy", "0.9"]), "songs.parquet", 1, "valence",
     "expected a number"),
    ("title is a number", set_column("songs", "title", [1, 2, 3]), "songs.parquet", 0, "title", "expected text"),
    ("artist is a list", set_column("songs", "artist", [["A"], ["B"], ["C"]]), "songs.parquet", 0, "artist",
     "expected text"),
    ("valence above 1", edit("songs", "valence", 2, 1.5), "songs.parquet", 2, "valence", "outside 0..1"),
    ("valence below 0", edit("songs", "valence", 0, -0.01), "songs.parquet", 0, "valence", "outside 0..1"),
    ("valence infinite", edit("songs", "valence", 1, math.inf), "songs.parquet", 1, "valence", "outside 0..1"),
    ("duplicated song id", edit("songs", "song_id", 2, "s1"), "songs.parquet", 2, "song_id", "duplicate id"),
    ("missing song id", edit("songs", "song_id", 1, None), "songs.parquet", 1, "song_id", "empty value"),
    ("duplicated line id", edit("lines", "line_id", 3, 0), "lines.parquet", 3, "line_id", "duplicate id"),
    ("two lines at one position", edit("lines", "position", 1, 0), "lines.parquet", 1, "position", "two lines"),
    ("position not whole", set_column("lines", "position", [0, 1.5, 0, 0]), "lines.parquet", 1, "position",
     "whole number"),
    ("position is text", set_column("lines", "position", ["0", "one", "0", "0"]), "lines.parquet", 1, "position",
     "expected a number"),
    ("line of an unknown song", edit("lines", "song_id", 2, "ghost"), "lines.parquet", 2, "song_id",
     "is not in songs.parquet"),
    ("empty line text", edit("lines", "text", 0, None), "lines.parquet", 0, "text", "empty value"),
    ("blank artist", edit("songs", "artist", 1, "   "), "songs.parquet", 1, "artist", "empty value"),
    ("pair line ids not a list", set_column("pairs", "line_ids", ["0"]), "pairs.parquet", 0, "line_ids",
     "expected a list"),
    ("pair points at another song's line", set_column("pairs", "line_ids", [[2]]), "pairs.parquet", 0, "line_ids",
     "is not a line of song"),
]


@pytest.mark.parametrize("case", BAD_CATALOGS, ids=[case[0] for case in BAD_CATALOGS])
def test_malformed_catalogs_are_refused_naming_file_row_and_column(tmp_path, case):
    from recommender.catalog import Catalog

    _, change, file_name, row, column, words = case
    tables = good_tables()
    change(tables)
    write_catalog(tmp_path / "cat", tables)
    with pytest.raises(CatalogError) as caught:
        Catalog.load(tmp_path / "cat")
    message = str(caught.value)
    assert file_name in message and column in message and words in message, message
    if row is not None:
        assert f"row {row}, column '{column}'" in message, message
    assert_clear(message)


def test_unreadable_and_missing_catalog_files(tmp_path):
    from recommender.catalog import Catalog

    directory = write_catalog(tmp_path / "cat", good_tables())
    (directory / "lines.parquet").write_bytes(b"PAR1 this is not parquet PAR1")
    with pytest.raises(CatalogError, match=r"lines\.parquet: not a readable parquet file"):
        Catalog.load(directory)
    (directory / "lines.parquet").unlink()
    with pytest.raises(CatalogError, match=r"lines\.parquet: missing"):
        Catalog.load(directory)
    with pytest.raises(CatalogError, match="catalog directory not found"):
        Catalog.load(tmp_path / "nowhere")


def test_nan_valence_in_a_parquet_catalog_loads_as_missing(tmp_path, packaged_encoder):
    """Load accepts NaN as "valence unknown": the full range keeps the song (valence None), a narrow one drops it."""
    from recommender.catalog import Catalog
    from recommender.embeddings import build_embeddings
    from recommender.service import Recommender

    tables = good_tables()
    tables["songs"].loc[0, "valence"] = float("nan")
    catalog = Catalog.load(write_catalog(tmp_path / "cat", tables))
    assert math.isnan(catalog.songs["valence"].iloc[0])
    build_embeddings(catalog, packaged_encoder, tmp_path / "emb", show_progress_bar=False)
    recommender = Recommender.open(catalog_dir=tmp_path / "cat", embeddings_dir=tmp_path / "emb", model="baseline")
    everything = recommender.search_text("rain on the road at night", top_n=3)
    json.dumps(everything, allow_nan=False)
    first = next(song for song in everything["results"] if song["song_id"] == "s1")
    assert first["valence"] is None
    narrow = recommender.search_text("rain on the road at night", valence_min=0.0, valence_max=0.95, top_n=3)
    assert "s1" not in {song["song_id"] for song in narrow["results"]}


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("\n".join(record if isinstance(record, str) else json.dumps(record) for record in records) + "\n",
                    encoding="utf-8")
    return path


def test_ingest_counts_bad_cells_instead_of_failing(tmp_path):
    """Bad valence never fails an ingest: the song is kept with valence missing, and the report counts it.

    A JSON ``NaN`` number counts as ``valence_missing`` (a NaN is how a blank numeric cell arrives); out-of-range,
    infinite and non-numeric values count as ``invalid_valence``.
    """
    from recommender.ingest import ingest_sources

    lyrics = "first line here\nsecond line there"
    source = write_jsonl(tmp_path / "songs.jsonl", [
        {"title": "Fine", "artist": "A", "valence": 0.4, "lyrics": lyrics},
        '{"title": "Nan Valence", "artist": "A", "valence": NaN, "lyrics": "a b c"}',
        {"title": "Too Happy", "artist": "A", "valence": 1.5, "lyrics": lyrics},
        {"title": "Wordy", "artist": "A", "valence": "very happy", "lyrics": lyrics},
        {"title": "Infinite", "artist": "A", "valence": "inf", "lyrics": lyrics},
        {"title": "No Valence", "artist": "A", "lyrics": lyrics},
        {"title": "Lyrics List", "artist": "A", "lyrics": ["not", "text"]},
        {"title": 1234, "artist": "Numbers", "valence": "0.7", "lyrics": lyrics},
        {"artist": "A", "lyrics": lyrics},
        {"title": "Bad Notes", "artist": "A", "lyrics": lyrics, "annotations": "{not json"},
        {"title": "Fine", "artist": "a ", "valence": 0.9, "lyrics": "other words"},  # duplicate of the first song
        "this line is not JSON at all",
        "[1, 2, 3]",
    ])
    catalog = ingest_sources([source])
    report = catalog.report
    assert report["rows_read"] == 11 and report["records_unparseable"] == 2
    assert report["invalid_valence"] == 3 and report["valence_missing"] == 3
    assert report["rows_without_lyrics"] == 1 and report["rows_without_artist_or_title"] == 1
    assert report["annotation_parse_errors"] == 1 and report["duplicate_songs_merged"] == 1
    valence = dict(zip(catalog.songs["title"], catalog.songs["valence"], strict=True))
    assert valence["Fine"] == 0.4 and valence["1234"] == 0.7  # the first occurrence wins; a number title is text
    for title in ("Nan Valence", "Too Happy", "Wordy", "Infinite", "No Valence", "Bad Notes"):
        assert math.isnan(valence[title]), title


def test_nan_valence_in_a_csv(tmp_path):
    """In CSV text, "nan" is not a blank cell: it counts as ``invalid_valence``; an empty cell as missing."""
    from recommender.ingest import ingest_sources

    path = tmp_path / "songs.csv"
    path.write_text("title,artist,valence,lyrics\nOne,A,nan,\"la la\nla\"\nTwo,B,NaN,words\nThree,C,,more words\n",
                    encoding="utf-8")
    catalog = ingest_sources([path])
    assert catalog.report["invalid_valence"] == 2 and catalog.report["valence_missing"] == 1
    assert catalog.songs["valence"].isna().all()


def test_missing_columns_in_a_native_csv_are_refused(tmp_path):
    from recommender.ingest import IngestError, ingest_sources

    path = tmp_path / "songs.csv"
    path.write_text("title,artist,mood\nOne,A,happy\n", encoding="utf-8")
    with pytest.raises(IngestError, match=r"songs\.csv: missing column\(s\) lyrics"):
        ingest_sources([path])


def latin1_csv(directory: Path, where: str) -> tuple[Path, int]:
    """A CSV with one Latin-1 byte sequence in the header, in data row 3, or ~100 KB in; returns (path, its line)."""
    rows = [f"Song {i},Artist,0.5,plain words {i}" for i in range(4000 if where == "deep" else 5)]
    header, bad_row = "title,artist,valence,lyrics", {"row 3": 2, "deep": 3500}.get(where)
    if bad_row is None:
        header = "titl\xe9,artist,valence,lyrics"
    else:
        rows[bad_row] = "Caf\xe9 del Mar,Artist,0.5,d\xe9j\xe0 vu"
    path = directory / "latin1.csv"
    path.write_bytes("\n".join([header, *rows]).encode("latin-1"))
    return path, 1 if bad_row is None else bad_row + 2


@pytest.mark.parametrize("where", ["header", "row 3", "deep"])
def test_non_utf8_csv_is_refused_with_a_clear_message(tmp_path, where):
    from recommender.ingest import IngestError, ingest_sources

    path, _ = latin1_csv(tmp_path, where)
    with pytest.raises(IngestError) as caught:
        ingest_sources([path])
    message = str(caught.value)
    assert "latin1.csv" in message and "UTF-8" in message, message
    assert_clear(message)


@pytest.mark.parametrize("where", ["row 3", "deep"])
def test_non_utf8_csv_message_names_the_line(tmp_path, where):
    from recommender.ingest import IngestError, ingest_sources

    path, line = latin1_csv(tmp_path, where)
    with pytest.raises(IngestError, match=rf"line {line}\b"):
        ingest_sources([path])


# --- the launched app --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def robust_app(tmp_path_factory, default_recommender):
    """The real app on 127.0.0.1 with the tiny CLIP in its artifacts directory; yields (url, client)."""
    from gradio_client import Client

    from recommender.registry import ModelRegistry
    from tests.test_app import TINY, launched
    from tests.tiny_clip import build_tiny_clip

    artifacts = tmp_path_factory.mktemp("robust-artifacts")
    build_tiny_clip(artifacts / TINY)
    with launched(ModelRegistry(artifacts=artifacts)) as url:
        yield url, Client(url, verbose=False)


def assert_app_answers_normally(client) -> None:
    result = client.predict(NORMAL_QUERY, "baseline", 0.0, 1.0, 3, api_name="/search_text")
    assert_result(result, query=NORMAL_QUERY, model="baseline", top_n=3)


@pytest.mark.slow
@settings(BASE_SETTINGS, max_examples=APP_EXAMPLES)
@given(query=QUERIES)
def test_generated_queries_through_the_app_api(robust_app, query):
    from gradio_client.exceptions import AppError

    _, client = robust_app
    cleaned = expected_clean(query)
    try:
        result = client.predict(query, "baseline", 0.0, 1.0, 3, api_name="/search_text")
    except AppError as error:
        assert not cleaned or len(cleaned) > SETTINGS.max_query_chars, f"refused a valid query: {error}"
        assert_clear(str(error))
        assert ("empty" if not cleaned else "too long") in str(error)
    else:
        assert cleaned and len(cleaned) <= SETTINGS.max_query_chars
        assert_result(result, query=cleaned, model="baseline", top_n=3)


@pytest.mark.slow
def test_the_app_still_answers_after_the_generated_queries(robust_app):
    _, client = robust_app
    assert_app_answers_normally(client)
    import httpx

    assert httpx.get(robust_app[0], timeout=30).status_code == 200  # the page too


@pytest.mark.slow
def test_generated_options_through_the_app_api(robust_app):
    from gradio_client.exceptions import AppError

    _, client = robust_app
    bad = [("baseline", -1, 1, 5), ("baseline", 0.9, 0.1, 5), ("baseline", "a", 1, 5), ("baseline", 0, 1, 0),
           ("baseline", 0, 1, SETTINGS.max_top_n + 1), ("baseline", 0, 1, 2.5), ("baseline", 0, 1, "ten"),
           ("baseline", None, None, None), ("no-such-model", 0, 1, 5), ("../../etc", 0, 1, 5), (None, 0, 1, 5),
           (["baseline"], 0, 1, 5), ({"a": 1}, 0, 1, 5), ("finetuned", 0, 1, 5)]
    for model, low, high, top_n in bad:
        with pytest.raises(AppError) as caught:
            client.predict(NORMAL_QUERY, model, low, high, top_n, api_name="/search_text")
        assert_clear(str(caught.value))
    assert_app_answers_normally(client)


@pytest.mark.slow
def test_lone_surrogate_through_the_raw_api_gets_a_clear_message(robust_app):
    import httpx

    url, client = robust_app
    body = '{"data": ["night drive \\ud800", "baseline", 0, 1, 3]}'  # JSON escapes can carry what UTF-8 cannot
    joined = httpx.post(f"{url}gradio_api/call/search_text", content=body,
                        headers={"content-type": "application/json"}, timeout=30)
    assert joined.status_code == 200
    stream = httpx.get(f"{url}gradio_api/call/search_text/{joined.json()['event_id']}", timeout=60).text
    assert_app_answers_normally(client)
    assert "event: error" in stream
    payload = json.loads(stream.split("data:", 1)[1].strip().splitlines()[0])
    assert payload["error"] and ("surrogate" in payload["error"].lower() or "unicode" in payload["error"].lower())


@pytest.mark.slow
def test_malformed_images_through_the_app_api(robust_app, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    from tests.test_app import TINY

    _, client = robust_app
    outcomes = {}
    for name, filename, data, expect in MALFORMED:
        path = tmp_path / name.replace(" ", "-").replace("/", "-") / filename
        path.parent.mkdir()
        path.write_bytes(data)
        try:
            result = client.predict(handle_file(str(path)), TINY, 0.0, 1.0, 3, api_name="/search_image")
        except AppError as error:
            assert expect != "rgb", f"{name}: refused a usable image: {error}"
            assert_clear(str(error))
            outcomes[name] = "refused"
        else:
            assert expect != "error", f"{name}: searched with something that should be refused"
            assert_result(result, query=f"image:{filename}", model=TINY, top_n=3)
            outcomes[name] = "results"
    assert len(outcomes) == len(MALFORMED) >= 30
    assert_app_answers_normally(client)


@pytest.mark.slow
def test_ci_sized_load_run_has_no_failures_and_recovers(robust_app):
    """benchmarks/load.py in miniature: 40 requests from 8 clients, then a burst past the queue, then recovery."""
    from benchmarks.load import run_benchmark
    from tests.test_app import TINY

    url, _ = robust_app
    stats = run_benchmark(url, requests=40, clients=8, timeout=60.0, image_model=TINY, burst=None)
    assert stats["served"] == 40 and stats["failures"] == 0, stats["errors"]
    assert stats["image_requests"] > 0 and stats["text_requests"] > 0
    assert stats["busy"] >= 1 and not stats["burst_errors"], stats["burst_errors"]
    assert stats["busy_message"] and "queue is full" in stats["busy_message"].lower()
    assert stats["recovered"] and stats["recovery_s"] < 60

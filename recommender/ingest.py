"""Turn song sources into a validated ``Catalog``: songs, cleaned lyric lines and (line, annotation) pairs.

Two input formats are read (detected per file, see ``detect_format``):

* **Spot-A-Mood CSV** (``lyrics``, ``annotation`` and ``genius_id`` columns): Genius page text with scraper junk
  (``"<Title> Lyrics"`` glued to the first line, ``[Chorus]`` headers, ``"You might also like"`` glued to a line,
  a trailing ``"<N>Embed"``), Spotify audio features, and ``annotation`` as a Python-literal list of
  ``(fragment, [[annotation_text, ...]])`` tuples, parsed with ``ast.literal_eval`` only.
* **Native** CSV / JSONL / JSON: ``title``, ``artist``, ``lyrics`` (newline-separated), optional ``valence``,
  ``genius_id``, ``url``, audio features, and ``annotations``: a list of ``{"fragment": ..., "annotation": ...}``
  (in CSV, a JSON string in the ``annotations`` column).

Every dropped or repaired thing is counted in ``Catalog.report`` (written as ``ingest_report.json``); the pair
counts always add up: ``pairs_total == pairs_kept + sum(pairs_dropped_*)``, and so do the row counts: every row
read is a song, a row merged into one (``duplicate_songs_merged``, ``song_versions_merged``,
``near_duplicate_lyrics_merged``) or a dropped row (``rows_without_*``, ``rows_wrong_lyrics_page``; see
``ROW_OUTCOME_KEYS``). Search shows one row per song, so versions of a song (remaster, live, radio edit,
``feat.``, near-identical lyrics) are collapsed into one here.

The cleaning and matching helpers are pure functions so they can be tested on hand-written strings.
"""

from __future__ import annotations

import ast
import csv
import difflib
import json
import os
import re
import string
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recommender.catalog import AUDIO_FEATURES, Catalog, make_song_id
from recommender.errors import RecommenderError

FORMAT_SPOTAMOOD = "spotamood"
FORMAT_NATIVE_CSV = "native-csv"
FORMAT_NATIVE_JSONL = "native-jsonl"
FORMAT_NATIVE_JSON = "native-json"
SOURCE_SUFFIXES = (".csv", ".jsonl", ".json")

# How a pair was mapped to lines, in the order the strategies are tried.
MAP_EXACT = "exact"  # normalized fragment lines equal a run of song lines
MAP_LOOSE = "loose"  # equal once all punctuation is ignored
MAP_PARTIAL = "partial"  # the fragment is a word-aligned piece of a run of lines (a half line, a line and a half)
MAP_SECTION = "section"  # the fragment is a section header such as "[Chorus]": the lines of that section

PAIR_DROP_KEYS = (
    "pairs_dropped_fragment_not_found",
    "pairs_dropped_wrong_match",
    "pairs_dropped_empty",
    "pairs_dropped_malformed",
    "pairs_dropped_duplicate",
    "pairs_dropped_song_dropped",
)
# Where each row read ends up: rows_read == songs + sum(report[key] for key in ROW_OUTCOME_KEYS).
ROW_OUTCOME_KEYS = (
    "rows_without_artist_or_title",
    "rows_without_lyrics",
    "rows_wrong_lyrics_page",
    "rows_without_lines_after_cleaning",
    "duplicate_songs_merged",
    "song_versions_merged",
    "near_duplicate_lyrics_merged",
)
CLEANING_KEYS = (
    "title_prefix_removed",
    "embed_suffix_removed",
    "you_might_also_like_removed",
    "ticket_ads_removed",
    "section_headers_removed",
    "inline_section_headers_removed",
    "blank_lines_removed",
)


class IngestError(RecommenderError, ValueError):
    """A source cannot be read at all (missing file, unknown format, required columns absent)."""


class AnnotationParseError(ValueError):
    """An annotation cell is not a literal list of (fragment, annotations) items."""


# --------------------------------------------------------------------------------------------------------------
# Text normalization
# --------------------------------------------------------------------------------------------------------------

_QUOTES = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "\u00b4": "'", "`": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2013": "-", "\u2014": "-", "\u2012": "-", "\u2212": "-",
})
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"), None)
_EDGE_CHARS = string.punctuation + string.whitespace + "\u2026\u00a1\u00bf\u00b7"


def normalize_for_match(text: str) -> str:
    """Case-fold, unify quotes/apostrophes/dashes, collapse whitespace, strip punctuation at both ends."""
    text = unicodedata.normalize("NFKC", text).translate(_INVISIBLE).translate(_QUOTES).casefold()
    return " ".join(text.split()).strip(_EDGE_CHARS)


def loose_normalize(text: str) -> str:
    """``normalize_for_match`` ignoring all punctuation and accents: only letters, digits and single spaces."""
    text = unicodedata.normalize("NFKD", text.translate(_QUOTES))
    text = "".join(char for char in text if not unicodedata.combining(char)).casefold()
    text = text.replace("'", "")  # don't -> dont, not don t
    return " ".join(re.sub(r"[\W_]+", " ", text).split())


# --------------------------------------------------------------------------------------------------------------
# Lyrics cleaning (pure functions)
# --------------------------------------------------------------------------------------------------------------

_CONTRIBUTORS = re.compile(r"^\s*\d[\d,.]*[KkMm]?\s+Contributors?")
_EMBED_SUFFIX = re.compile(r"(\d*)Embed\s*\Z")
_YMAL = "You might also like"
# Genius inserts "You might also like" once per page: at the start of a line, glued to what follows (a lyric,
# a "[Chorus]" header, or nothing), or glued to the end of the last line. A lyric "You might also like it" has
# a space after the phrase and is left alone.
_YMAL_LINE_START = re.compile(r"(?m)^[ \t]*You might also like(?=[^\s]|[ \t]*$)")
_YMAL_LINE_END = re.compile(r"(?m)(?<=\S)You might also like[ \t]*$")
_TICKET_AD = re.compile(r"See [^\n]{1,120}? Live[ \t]*Get tickets as low as \$[\d,.]+")
_BRACKET_GROUP = r"\[(?:[^\[\]\n]|\[[^\[\]\n]*\])*\]"  # [Chorus], [Songtext zu "Waterloo [German Version]"]
_HEADER_LINE = re.compile(rf"^(?:{_BRACKET_GROUP}[ \t]*)+$|^\[[^\[\]\n]{{0,80}}$")  # or unclosed "[Verse 1: Name"
_LEADING_HEADER = re.compile(rf"^{_BRACKET_GROUP}[ \t]*(?=\S)")


def remove_title_prefix(text: str, title: str | None = None) -> tuple[str, str | None]:
    """Split Genius' ``"<Page title> Lyrics"`` off the first line.

    The page title may be preceded by a contributors count (``"12 ContributorsTitle Lyrics"``) and may differ from
    the ``title`` hint (curly quotes, ``feat.``, or a wrong Genius match). When the first line holds several
    ``" Lyrics"``, the one whose prefix matches ``title`` wins, else the first.

    Returns:
        The text without the prefix (what followed it stays on the first line) and the page title, or the text
        unchanged and ``None`` when the first line has no ``" Lyrics"``.
    """
    first, newline, rest = text.partition("\n")
    contributors = _CONTRIBUTORS.match(first)
    head = first[contributors.end():] if contributors else first
    candidates = [match.start() for match in re.finditer(r" Lyrics", head)]
    if not candidates:
        return text, None
    chosen = candidates[0]
    if title is not None and len(candidates) > 1:
        wanted = normalize_for_match(title)
        chosen = next((pos for pos in candidates if normalize_for_match(head[:pos]) == wanted), chosen)
    page_title = head[:chosen].strip()
    return head[chosen + len(" Lyrics"):] + newline + rest, page_title


def remove_embed_suffix(text: str) -> tuple[str, bool]:
    """Remove the ``"<N>Embed"`` glued to the end of the text (only there: ``Embed`` elsewhere is kept).

    The digits are Genius' count (shown on some pages only, never starting with 0), but a lyric may itself end
    in digits ("Route 66" + "14Embed" gives "Route 6614Embed"), and the split cannot be read off the text:

    * if the last line with some of the digits kept repeats an earlier line (a chorus), that many are kept;
    * else if the digits start a word ("... edge of 1984Embed"), they are all kept: a line does not end in a
      space, and most pages show no count;
    * else (digits glued to a word: "... away19Embed") they are all removed.
    """
    match = _EMBED_SUFFIX.search(text)
    if not match:
        return text, False
    body, digits = text[: match.start()], match.group(1)
    if not digits:
        return body, True
    earlier, _, last = body.rpartition("\n")
    earlier_lines = {line.strip() for line in earlier.split("\n")}
    valid = [keep for keep in range(len(digits), -1, -1) if keep == len(digits) or digits[keep] != "0"]
    repeated = [keep for keep in valid if keep and (last + digits[:keep]).strip() in earlier_lines]
    if repeated:
        keep = repeated[0]
    elif last.strip() and last[-1].isspace():
        keep = len(digits)
    else:
        keep = min(valid)
    return body + digits[:keep], True


def remove_you_might_also_like(text: str) -> tuple[str, int]:
    """Remove Genius' ``"You might also like"`` where it is glued to the start or end of a line."""
    text, at_start = _YMAL_LINE_START.subn("", text)
    text, at_end = _YMAL_LINE_END.subn("", text)
    return text, at_start + at_end


def remove_ticket_ads(text: str) -> tuple[str, int]:
    """Remove ``"See <Artist> LiveGet tickets as low as $<N>"`` concert adverts."""
    return _TICKET_AD.subn("", text)


def is_section_header(line: str) -> bool:
    """A line made only of bracketed labels: ``[Chorus]``, ``[Verse 1: Name]``, ``[Chorus][x2]``.

    A short line that opens a bracket and never closes it (``"[Verse 1: Name"``) is a broken header too.
    """
    return bool(_HEADER_LINE.match(line.strip()))


def strip_leading_header(line: str) -> tuple[str, str | None]:
    """Split a bracketed label off the start of a line that goes on with text (``"[Hook] Uh, check it"``)."""
    match = _LEADING_HEADER.match(line)
    if not match:
        return line, None
    return line[match.end():], match.group(0).strip()


@dataclass
class CleanedLyrics:
    """Result of ``clean_lyrics``.

    Attributes:
        lines: Lyric lines in order, stripped, no headers, no blank lines.
        sections: ``(normalized header, first line index, end line index)`` per section header, in order.
        page_title: The Genius page title found in the ``"<Title> Lyrics"`` prefix, or ``None``.
        counts: How many of each ``CLEANING_KEYS`` repair were made.
    """

    lines: list[str]
    sections: list[tuple[str, int, int]] = field(default_factory=list)
    page_title: str | None = None
    counts: Counter = field(default_factory=Counter)


def clean_lyrics(text: str, title: str | None = None, *, genius_prefix: bool = True) -> CleanedLyrics:
    """Clean one song's lyrics text into lines.

    Args:
        text: Raw lyrics, lines separated by newlines.
        title: The song title, used to pick the ``"<Title> Lyrics"`` prefix and (with ``genius_prefix=False``)
            to decide whether to remove it.
        genius_prefix: Always remove a ``"<Page title> Lyrics"`` prefix (Genius page text). When false, remove it
            only if the page title matches ``title``.
    """
    counts: Counter = Counter()
    text = text.replace("\r\n", "\n").replace("\r", "\n").translate(_INVISIBLE)
    stripped, page_title = remove_title_prefix(text, title)
    # Outside Genius page text, only a prefix naming this song and glued to what follows (as Genius does) goes:
    # "Ember Lyrics\nSmall fire" loses it, a lyric "Love Lyrics are all I write" keeps it.
    native_ok = (title is not None and page_title is not None and titles_match(page_title, title)
                 and stripped[:1] not in (" ", "\t"))
    if page_title is not None and (genius_prefix or native_ok):
        # "Title Lyrics\nFirst line": the prefix's own line is not a blank lyric line.
        text = stripped[1:] if stripped.startswith("\n") else stripped
        counts["title_prefix_removed"] += 1
    else:
        page_title = None
    text, removed = remove_embed_suffix(text.rstrip())
    text = text.rstrip()
    counts["embed_suffix_removed"] += int(removed)
    text, removed_count = remove_you_might_also_like(text)
    counts["you_might_also_like_removed"] += removed_count
    text, removed_count = remove_ticket_ads(text)
    counts["ticket_ads_removed"] += removed_count

    lines: list[str] = []
    sections: list[tuple[str, int, int]] = []
    open_section: tuple[str, int] | None = None

    def close_section() -> None:
        if open_section is not None:
            sections.append((open_section[0], open_section[1], len(lines)))

    for raw_line in text.split("\n"):
        line = raw_line.strip()
        if not line:
            counts["blank_lines_removed"] += 1
            continue
        if is_section_header(line):
            counts["section_headers_removed"] += 1
            close_section()
            open_section = (normalize_for_match(line), len(lines))
            continue
        line, header = strip_leading_header(line)
        if header is not None:
            counts["inline_section_headers_removed"] += 1
            line = line.strip()
        lines.append(line)
    close_section()
    return CleanedLyrics(lines, sections, page_title, counts)


# --------------------------------------------------------------------------------------------------------------
# Title matching (detects wrong Genius pages)
# --------------------------------------------------------------------------------------------------------------

_BRACKETED = re.compile(r"\([^()]*\)|\[[^\[\]]*\]")
_FEATURING = re.compile(r"\b(?:feat|ft|featuring|with)\b\.?.*$", re.IGNORECASE)
_DASH_SUFFIX = re.compile(r"\s+[-\u2013\u2014]\s+.*$")
_FILLER_WORDS = frozenset({"the", "a", "an"})


def _title_variants(title: str) -> set[str]:
    title = title.translate(_QUOTES).replace("&", " and ")
    variants = {loose_normalize(title)}
    without_parts = _BRACKETED.sub(" ", title)
    variants.add(loose_normalize(_FEATURING.sub("", without_parts)))
    variants.add(loose_normalize(_DASH_SUFFIX.sub("", _FEATURING.sub("", without_parts))))
    return {variant for variant in variants if variant}


def titles_match(page_title: str, title: str, threshold: float = 0.85) -> bool:
    """Whether a Genius page title plausibly names the song ``title``.

    Tolerates curly quotes, accents, ``&``/``and``, ``(feat. ...)``, ``" - Remastered"``-style suffixes, extra or
    missing words (one title's words contained in the other's) and small spelling differences. A release calendar,
    a book chapter or a playlist page does not match.
    """
    for page_variant in _title_variants(page_title):
        for title_variant in _title_variants(title):
            page_compact, title_compact = page_variant.replace(" ", ""), title_variant.replace(" ", "")
            if page_compact == title_compact:
                return True
            page_words, title_words = set(page_variant.split()), set(title_variant.split())
            if (page_words <= title_words and title_words - page_words <= _FILLER_WORDS) or (
                    title_words <= page_words and page_words - title_words <= _FILLER_WORDS):
                return True
            if difflib.SequenceMatcher(None, page_compact, title_compact).ratio() >= threshold:
                return True
    return False


# --------------------------------------------------------------------------------------------------------------
# Versions of one song (remaster, live, radio edit, feat. ...) and near-identical lyrics
# --------------------------------------------------------------------------------------------------------------

# What a version decoration says (text after " - " or inside brackets). Only these words make a part removable,
# so a real parenthesised title part ("I Ran (So Far Away)") is kept.
_DECORATION = re.compile(
    r"""^(?:feat\.?|ft\.|featuring|with)\s+\S
    |\bre-?master(?:ed)?\b|\bremix(?:ed)?\b|\bmix\b|\bedit\b|\bversion\b|\bmono\b|\bstereo\b|\bdemo\b
    |\bacoustic\b|\bunplugged\b|\binstrumental\b|\bsoundtrack\b|\bbonus\s+track\b|\bre-?recorded\b
    |\bdeluxe\b|\banniversary\b|\bextended\b|\bsession\b
    |^live(?:\s*$|\s*[/,]|\s+(?:at|from|in|on|version|recording|session|\d))|\blive\s+(?:at|from|in|on)\b
    |^from\s+(?:the\s+)?["“'].+|^from\s+.*\b(?:movie|film|motion\s+picture|series|musical)\b""",
    re.IGNORECASE | re.VERBOSE,
)
# A language version has other lyrics: not the same song for search.
_LANGUAGE = re.compile(r"\b(?:spanish|español|espanol|english|french|français|german|deutsch|italian|portuguese|"
                       r"japanese|korean|chinese|translation|traducción)\b", re.IGNORECASE)
_DASH_SEPARATOR = re.compile(r"\s*[-\u2013\u2014]\s+|\s+[-\u2013\u2014]\s*")
_BRACKET_PART = re.compile(r"\s*(?:\(([^()]*)\)|\[([^\[\]]*)\])")
_TRAILING_FEAT = re.compile(r"\s+(?:feat\.?|ft\.|featuring)\s+\S.*$", re.IGNORECASE)
_ARTIST_TAIL = re.compile(r"\s*[(\[]?\s*\b(?:feat\.?|ft\.|featuring|with)\s+\S.*$|\s+&\s+\S.*$", re.IGNORECASE)
VERSION_JACCARD = 0.8  # distinct-line Jaccard at which two songs of one artist are the same lyrics
MIN_DISTINCT_LINES = 4  # shorter lyrics ("Instrumental", a placeholder) are too little evidence to merge on


def _is_decoration(text: str) -> bool:
    return bool(_DECORATION.search(text.strip())) and not _LANGUAGE.search(text)


def strip_version(title: str) -> str:
    """The base title without version decorations: ``"Hey Jude - Remastered 2015"`` -> ``"Hey Jude"``.

    Removes ``" - <decoration>"`` tails (all parts after the first dash must be decorations), bracketed
    decorations anywhere (``"(Live at Wembley)"``, ``"[feat. X]"``, ``"(with X)"``) and a bare ``" feat. X"`` tail.
    Bracketed parts without a version word stay, and so does the whole title if nothing would be left.
    """
    base = " ".join(title.translate(_QUOTES).split())
    while True:
        before = base
        parts = _DASH_SEPARATOR.split(base)
        separators = list(_DASH_SEPARATOR.finditer(base))
        cut = next((cut for cut in range(1, len(parts)) if all(_is_decoration(part) for part in parts[cut:])), None)
        if cut is not None:
            base = base[: separators[cut - 1].start()]
        base = _BRACKET_PART.sub(lambda m: "" if _is_decoration(m.group(1) or m.group(2) or "") else m.group(0),
                                 base).strip()
        base = _TRAILING_FEAT.sub("", base).strip()
        if not base:
            return " ".join(title.split())
        if base == before:
            return base


def has_version_decoration(title: str) -> bool:
    """Whether ``strip_version`` removes anything that matters for matching (so this is not the original)."""
    return loose_normalize(strip_version(title)) != loose_normalize(title)


def primary_artist(artist: str) -> str:
    """Normalized artist without a ``feat. X`` / ``featuring X`` / ``with X`` / ``& X`` tail, for grouping."""
    stripped = _ARTIST_TAIL.sub("", " ".join(artist.split())).strip()
    return loose_normalize(stripped or artist)


def version_key(artist: str, title: str) -> tuple[str, str]:
    """``(primary artist, base title)``: equal keys mean versions of one song."""
    return primary_artist(artist), loose_normalize(strip_version(title))


def line_set_jaccard(first: set[str], second: set[str]) -> float:
    """Jaccard similarity of two sets of distinct normalized lines (0 when both are empty)."""
    union = len(first | second)
    return len(first & second) / union if union else 0.0


# --------------------------------------------------------------------------------------------------------------
# Annotations
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawPair:
    """One (fragment, annotation) item as found in the source, before mapping to lines."""

    fragment: Any
    annotation: Any


def _is_blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def parse_spotamood_annotation(value: Any) -> list[RawPair]:
    """Parse a Spot-A-Mood ``annotation`` cell: a Python-literal list of ``(fragment, [[text, ...]])`` tuples.

    Only ``ast.literal_eval`` is used: nothing in the cell is ever executed. Blank or ``"[]"`` gives no pairs.
    Items of the wrong shape are returned as they are (``annotation_text`` / ``fragment_text`` reject them later,
    so they are counted, not lost).

    Raises:
        AnnotationParseError: The cell is not a literal list or tuple.
    """
    if _is_blank(value):
        return []
    if not isinstance(value, str):
        raise AnnotationParseError(f"expected text, got {type(value).__name__}")
    try:
        parsed = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as error:
        raise AnnotationParseError(f"not a Python literal: {type(error).__name__}: {error}") from None
    if not isinstance(parsed, (list, tuple)):
        raise AnnotationParseError(f"expected a list, got {type(parsed).__name__}")
    pairs = []
    for item in parsed:
        if isinstance(item, (list, tuple)) and len(item) == 2:
            pairs.append(RawPair(item[0], item[1]))
        else:
            pairs.append(RawPair(None, item))
    return pairs


def parse_native_annotations(value: Any) -> list[RawPair]:
    """Parse native annotations: a list of ``{"fragment": str, "annotation": str}`` (or that list as JSON text).

    Raises:
        AnnotationParseError: Not a list (or not valid JSON).
    """
    if _is_blank(value):
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise AnnotationParseError(f"not valid JSON: {error}") from None
    if value is None:
        return []
    if not isinstance(value, list):
        raise AnnotationParseError(f"expected a list, got {type(value).__name__}")
    return [
        RawPair(item.get("fragment"), item.get("annotation")) if isinstance(item, dict) else RawPair(None, item)
        for item in value
    ]


def _flatten_text(value: Any) -> list[str] | None:
    """The strings in a str / nested list of str, or ``None`` when something else is in there."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        parts: list[str] = []
        for item in value:
            inner = _flatten_text(item)
            if inner is None:
                return None
            parts.extend(inner)
        return parts
    return None


def annotation_text(value: Any) -> str | None:
    """Join an annotation's paragraphs (``[["p1", "p2"], ["p3"]]`` or a string) into one stripped line of text.

    Returns ``None`` when the value is not text or a (nested) list of text; ``""`` when it holds no text.
    """
    parts = _flatten_text(value)
    if parts is None:
        return None
    return " ".join(" ".join(part.split()) for part in parts if part.strip())


def fragment_lines(fragment: str) -> list[str]:
    """The lines of a fragment, stripped, without blank lines (fragments are joined with ``"\\n "`` in the data)."""
    return [line.strip() for line in fragment.replace("\r", "\n").split("\n") if line.strip()]


_TRACKLIST_ANNOTATION = re.compile(r"\btrack\s*list\b|\btracklist\b", re.IGNORECASE)
_TRACKLIST_FRAGMENT = re.compile(r"^.+\s[-\u2013\u2014]\s.+\s[-\u2013\u2014]\s*\d+\s*/\s*\d+\s*$")


def looks_like_tracklist(fragment: str, annotation: str) -> bool:
    """A pair from an album tracklist or release-calendar page rather than from song lyrics.

    Such pages annotate "Artist - Album - 3/12"-style entries with "... Lyrics and Tracklist" and a list of track
    names. A normal annotation that mentions a "tracklisting" is not enough on its own.
    """
    if _TRACKLIST_FRAGMENT.match(" ".join(fragment.split())):
        return True
    return bool(re.search(r"Lyrics and Track\s*list", annotation, re.IGNORECASE))


# --------------------------------------------------------------------------------------------------------------
# Fragment -> lines
# --------------------------------------------------------------------------------------------------------------


def _find_run(haystack: Sequence[str], needle: Sequence[str]) -> int | None:
    size = len(needle)
    if not size:
        return None
    for start in range(len(haystack) - size + 1):
        if haystack[start] == needle[0] and list(haystack[start:start + size]) == list(needle):
            return start
    return None


def _find_partial(lines_loose: Sequence[str], fragment_loose: str) -> list[int] | None:
    """Lines covered by the first word-aligned occurrence of the fragment in the song's joined text."""
    if not fragment_loose:
        return None
    offsets, pieces, cursor = [], [], 1
    for line in lines_loose:
        offsets.append(cursor)
        pieces.append(line)
        cursor += len(line) + 1
    joined = " " + " ".join(pieces) + " "
    found = joined.find(f" {fragment_loose} ")
    if found < 0:
        return None
    start, end = found + 1, found + 1 + len(fragment_loose)
    covered = [index for index, (offset, line) in enumerate(zip(offsets, lines_loose, strict=True))
               if line and offset < end and offset + len(line) > start]
    return covered or None


def map_fragment(
    fragment: str, lines: Sequence[str], sections: Sequence[tuple[str, int, int]] = (),
) -> tuple[list[int] | None, str | None]:
    """Find the song lines (indices into ``lines``) a fragment annotates.

    Tried in order, each taking the first (earliest) match so a repeated chorus maps to its first occurrence:
    ``exact`` run of normalized lines; ``loose`` run ignoring punctuation; ``partial`` word-aligned piece of the
    song's text (part of a line, or runs starting/ending mid-line); ``section``: a fragment that is only a header
    such as ``[Chorus]`` maps to that section's lines. Header lines inside a fragment are ignored.

    Returns:
        ``(line indices, strategy)``, or ``(None, None)`` when the fragment is not in the song.
    """
    raw_lines = fragment_lines(fragment)
    headers = [line for line in raw_lines if is_section_header(line)]
    wanted = [line for line in raw_lines if not is_section_header(line)]
    if not wanted:
        keys = {normalize_for_match(header) for header in headers}
        for key, start, end in sections:
            if key in keys and end > start:
                return list(range(start, end)), MAP_SECTION
        return None, None
    exact_lines = [normalize_for_match(line) for line in lines]
    exact_wanted = [normalize_for_match(line) for line in wanted]
    start = _find_run(exact_lines, exact_wanted)
    if start is not None:
        return list(range(start, start + len(wanted))), MAP_EXACT
    loose_lines = [loose_normalize(line) for line in lines]
    loose_wanted = [loose_normalize(line) for line in wanted]
    if all(loose_wanted):
        start = _find_run(loose_lines, loose_wanted)
        if start is not None:
            return list(range(start, start + len(wanted))), MAP_LOOSE
    covered = _find_partial(loose_lines, " ".join(part for part in loose_wanted if part))
    if covered is not None:
        return covered, MAP_PARTIAL
    return None, None


# --------------------------------------------------------------------------------------------------------------
# Reading sources
# --------------------------------------------------------------------------------------------------------------


def _raise_csv_field_limit() -> None:
    limit = sys.maxsize
    while True:
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:
            limit //= 10


def expand_sources(sources: Iterable[str | os.PathLike]) -> list[Path]:
    """Files to read: each file as given, each directory's ``*.csv``, ``*.jsonl``, ``*.json`` files sorted.

    Raises:
        IngestError: A source does not exist, or nothing readable was found.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    files: list[Path] = []
    seen: set[Path] = set()
    for source in sources:
        path = Path(source)
        if path.is_dir():
            found = sorted(child for child in path.iterdir()
                           if child.is_file() and child.suffix.lower() in SOURCE_SUFFIXES)
        elif path.is_file():
            found = [path]
        else:
            raise IngestError(f"{path}: no such file or directory")
        for file in found:
            if file.resolve() not in seen:
                seen.add(file.resolve())
                files.append(file)
    if not files:
        raise IngestError(f"no *.csv, *.jsonl or *.json files in {', '.join(str(Path(s)) for s in sources)}")
    return files


def _first_non_utf8_line(path: Path) -> int | None:
    """1-based number of the first physical line that is not valid UTF-8 (the decoder only knows a buffer offset).

    A UTF-8 sequence never spans a newline byte, so decoding line by line finds the same first error.
    """
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return None


def _not_utf8_error(path: Path, what: str, error: UnicodeDecodeError) -> IngestError:
    """The message names the line to fix, then the decoder's own words."""
    line = _first_non_utf8_line(path)
    where = f"{path}, line {line}" if line is not None else str(path)
    byte = error.object[error.start]
    return IngestError(f"{where}: cannot be read as UTF-8 {what} ({error.reason}, byte 0x{byte:02x}); "
                       "save the file as UTF-8 and ingest it again")


def _read_csv_header(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return next(csv.reader(handle), [])
    except UnicodeDecodeError as error:
        raise _not_utf8_error(path, "CSV", error) from error
    except csv.Error as error:
        raise IngestError(f"{path}: cannot be read as UTF-8 CSV ({error})") from error


def detect_format(path: Path) -> str:
    """``spotamood`` for a CSV with ``lyrics``, ``annotation`` and ``genius_id`` columns; otherwise native."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        columns = {column.strip().lower() for column in _read_csv_header(path)}
        if {"lyrics", "annotation", "genius_id"} <= columns:
            return FORMAT_SPOTAMOOD
        return FORMAT_NATIVE_CSV
    if suffix == ".jsonl":
        return FORMAT_NATIVE_JSONL
    if suffix == ".json":
        return FORMAT_NATIVE_JSON
    raise IngestError(f"{path}: unknown file type (expected .csv, .jsonl or .json)")


def _iter_csv(path: Path) -> Iterator[dict]:
    _raise_csv_field_limit()
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None:
            return
        reader.fieldnames = [name.strip().lower() for name in reader.fieldnames]
        missing = [name for name in ("title", "artist", "lyrics") if name not in reader.fieldnames]
        if missing:
            raise IngestError(f"{path}: missing column(s) {', '.join(missing)}")
        try:
            yield from reader
        except csv.Error as error:
            raise IngestError(f"{path}, line {reader.line_num}: {error}") from error


def _iter_json_records(path: Path, fmt: str, counts: Counter) -> Iterator[dict]:
    """Records of a JSONL file (bad lines counted as ``records_unparseable``) or a JSON list / ``{"songs": []}``."""
    if fmt == FORMAT_NATIVE_JSONL:
        with path.open(encoding="utf-8-sig") as handle:
            for line in handle:
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    counts["records_unparseable"] += 1
                    continue
                if isinstance(record, dict):
                    yield record
                else:
                    counts["records_unparseable"] += 1
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        raise IngestError(f"{path}: not valid JSON ({error})") from error
    if isinstance(data, dict) and isinstance(data.get("songs"), list):
        data = data["songs"]
    if not isinstance(data, list):
        raise IngestError(f"{path}: expected a list of songs or {{\"songs\": [...]}}")
    for record in data:
        if isinstance(record, dict):
            yield record
        else:
            counts["records_unparseable"] += 1


# --------------------------------------------------------------------------------------------------------------
# Ingestion
# --------------------------------------------------------------------------------------------------------------


@dataclass
class _Row:
    """One source record after cleaning, before duplicates are merged and pairs mapped."""

    song_id: str
    meta: dict
    cleaned: CleanedLyrics
    raw_pairs: list[RawPair]


@dataclass
class _Pending:
    """A record whose artist is missing: resolved once every row of the ingest is known (see ``_ArtistIndex``)."""

    record: dict
    fmt: str
    raw_pairs: list[RawPair]
    title: str
    title_repaired: bool


def _text_field(record: dict, name: str) -> str | None:
    value = record.get(name)
    if _is_blank(value):
        return None
    return " ".join(str(value).split())


_MISSING_NAMES = frozenset({"nan", "none", "null", "n/a", "-", "--", "?", "unknown"})


def _name_field(record: dict, name: str) -> str | None:
    """A title or artist, with placeholders (``"nan"``, ``"None"``, ``"-"``...) left by exports read as missing."""
    value = _text_field(record, name)
    return None if value is None or value.casefold() in _MISSING_NAMES else value


# Genius pages that are not one song: their page title must not become a song title.
_NOT_A_SONG_PAGE = re.compile(
    r"release calendar|listening log|album challenge|discography|tracklist|collection|best albums|greatest|"
    r"\bchap(?:ter|\.)|\bscript\b|playlist|speech|traducci|translation|\bv\.\s|\bvs\.?\s|consumption",
    re.IGNORECASE)
_PLACEHOLDER_ARTISTS = frozenset({"various artists", "various", "unknown artist"})


def _title_from_page(lyrics: Any, artist: str | None) -> str | None:
    """The song title in a Genius ``"<Title> Lyrics"`` prefix, unless the page is a calendar, list or book.

    A compilation placeholder artist ("Various Artists") marks a wrong Genius match, so nothing is taken from it.
    """
    if not isinstance(lyrics, str) or _is_blank(lyrics):
        return None
    if artist is not None and loose_normalize(artist) in _PLACEHOLDER_ARTISTS:
        return None
    _, page_title = remove_title_prefix(lyrics.replace("\r\n", "\n").translate(_INVISIBLE))
    if not page_title or _NOT_A_SONG_PAGE.search(page_title) or not loose_normalize(page_title):
        return None
    return " ".join(page_title.split())


def genius_slug(text: str) -> str:
    """Genius' URL slug of a name: ``"Guns N' Roses"`` -> ``"guns-n-roses"`` (case-folded)."""
    return "-".join(loose_normalize(text.replace("&", " and ")).split())


class _ArtistIndex:
    """Artists of the rows that have one, to repair rows that lack one: only from evidence in this ingest.

    A missing artist is taken from rows with the same Genius url or genius_id when those all name one artist, or
    from a Genius url (``https://genius.com/Adele-hello-lyrics``) whose slug starts with a known artist's slug.
    """

    def __init__(self, rows: Iterable[_Row]) -> None:
        self.by_url: dict[str, dict[str, str]] = {}
        self.by_genius_id: dict[str, dict[str, str]] = {}
        self.by_slug: dict[str, str] = {}
        for row in rows:
            artist = row.meta["artist"]
            key = loose_normalize(artist)
            if key in _PLACEHOLDER_ARTISTS:
                continue
            if row.meta.get("url"):
                self.by_url.setdefault(row.meta["url"].casefold(), {}).setdefault(key, artist)
            if row.meta.get("genius_id"):
                self.by_genius_id.setdefault(row.meta["genius_id"], {}).setdefault(key, artist)
            self.by_slug.setdefault(genius_slug(artist), artist)

    def artist_for(self, record: dict, title: str | None) -> str | None:
        url = _text_field(record, "url")
        for found in (self.by_url.get(url.casefold()) if url else None,
                      self.by_genius_id.get(_genius_id(record.get("genius_id")) or "")):
            if found and len(found) == 1:
                return next(iter(found.values()))
        if not url:
            return None
        slug = url.rstrip("/").rsplit("/", 1)[-1].casefold()
        if not slug.endswith("-lyrics"):
            return None
        slug = slug[: -len("-lyrics")]
        if title and slug.endswith("-" + genius_slug(title)):
            return self.by_slug.get(slug[: -len(genius_slug(title)) - 1])
        prefixes = [known for known in self.by_slug if slug.startswith(known + "-")]
        return self.by_slug[max(prefixes, key=len)] if prefixes else None


def _number(value: Any) -> tuple[float | None, bool]:
    """``(float or None, invalid)``: blank gives ``(None, False)``, unparseable or non-finite ``(None, True)``."""
    if _is_blank(value):
        return None, False
    if isinstance(value, bool):
        return None, True
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None, True
    if not np.isfinite(number):
        return None, True
    return number, False


def _genius_id(value: Any) -> str | None:
    if _is_blank(value):
        return None
    number, invalid = _number(value)
    if not invalid and number is not None and number.is_integer():
        return str(int(number))
    return str(value).strip()


def _metadata(record: dict) -> dict:
    """Song columns other than ids and text; invalid numbers become missing and are counted."""
    meta: dict[str, Any] = {"genius_id": _genius_id(record.get("genius_id")), "url": _text_field(record, "url")}
    valence, invalid = _number(record.get("valence"))
    if valence is not None and not 0.0 <= valence <= 1.0:
        valence, invalid = None, True
    meta["valence"] = valence
    meta["_valence_invalid"] = invalid
    invalid_features = 0
    for name in AUDIO_FEATURES:
        raw = record.get(name)
        if name == "duration_ms" and _is_blank(raw):
            raw = record.get("duration")
        value, bad = _number(raw)
        meta[name] = value
        invalid_features += int(bad)
    meta["_invalid_features"] = invalid_features
    return meta


def _new_report() -> Counter:
    counts: Counter = Counter()
    for key in (
        "rows_read", "records_unparseable", "rows_without_artist_or_title", "rows_without_lyrics",
        "rows_wrong_lyrics_page", "rows_without_lines_after_cleaning", "duplicate_songs_merged",
        "song_versions_merged", "near_duplicate_lyrics_merged", "rows_title_repaired", "rows_artist_repaired",
        "valence_missing", "invalid_valence", "invalid_audio_features", "annotation_parse_errors",
        "rows_with_annotations", "pairs_total", "pairs_kept", *PAIR_DROP_KEYS, *CLEANING_KEYS,
        "pairs_mapped_exact", "pairs_mapped_loose", "pairs_mapped_partial", "pairs_mapped_section",
    ):
        counts[key] = 0
    return counts


def ingest_sources(sources: Sequence[str | os.PathLike], *, drop_wrong_pages: bool = True) -> Catalog:
    """Read song sources into a validated ``Catalog`` with a full ``report`` of what was dropped or repaired.

    Args:
        sources: Files or directories (a directory means its ``*.csv``, ``*.jsonl``, ``*.json`` files, sorted).
        drop_wrong_pages: Drop Spot-A-Mood rows whose Genius page title (the ``"<Title> Lyrics"`` prefix) does not
            match the song title: those pages are release calendars, book chapters or other songs, not the lyrics.

    A missing title is repaired from the Genius ``"<Title> Lyrics"`` prefix, a missing artist from other rows
    (same Genius url or genius_id, or a url slug naming a known artist); rows still lacking either, or lacking
    lyrics, are dropped. Songs with the same ``make_song_id`` are merged (the first occurrence's lyrics and
    metadata, missing metadata filled from later ones, pairs united and de-duplicated), and so are versions of
    one song (see ``_collapse_versions``). Cleaning and valence counts in the report are over the songs kept; row
    counts are over rows read.

    Raises:
        IngestError: A source is missing or unreadable as a whole.
    """
    files = [(path, detect_format(path)) for path in expand_sources(sources)]
    counts = _new_report()
    rows_per_file: dict[str, dict[str, Any]] = {}
    rows: list[_Row | _Pending] = []
    for path, fmt in files:
        file_counts: Counter = Counter()
        if fmt in (FORMAT_SPOTAMOOD, FORMAT_NATIVE_CSV):
            records: Iterable[dict] = _iter_csv(path)
        else:
            records = _iter_json_records(path, fmt, file_counts)
        read = 0
        try:
            for record in records:
                read += 1
                row = _read_record(record, fmt, counts, drop_wrong_pages)
                if row is not None:
                    rows.append(row)
        except UnicodeDecodeError as error:
            raise _not_utf8_error(path, "text", error) from error
        except OSError as error:
            raise IngestError(f"{path}: cannot be read ({error})") from error
        counts["records_unparseable"] += file_counts["records_unparseable"]
        counts["rows_read"] += read
        rows_per_file[str(path)] = {"format": fmt, "rows_read": read,
                                    "records_unparseable": file_counts["records_unparseable"]}

    songs, lines, pairs = _assemble(_resolve_pending(rows, counts, drop_wrong_pages), counts)
    report: dict[str, Any] = {key: int(value) for key, value in sorted(counts.items())}
    report["sources"] = [str(Path(source)) for source in ([sources] if isinstance(sources, (str, os.PathLike))
                                                          else sources)]
    report["files"] = rows_per_file
    report["songs"] = len(songs)
    report["lines"] = len(lines)
    report["pairs"] = len(pairs)
    report["songs_with_pairs"] = int(pairs["song_id"].nunique()) if len(pairs) else 0
    return Catalog(songs, lines, pairs, report)


def _read_record(record: dict, fmt: str, counts: Counter, drop_wrong_pages: bool) -> _Row | _Pending | None:
    """Clean one record; count and return ``None`` when it is dropped (its pairs counted as dropped too).

    A missing title is repaired from the Genius page title (Spot-A-Mood only); a missing artist can only be
    repaired from other rows, so such a record comes back as ``_Pending``.
    """
    record = {str(key).strip().lower(): value for key, value in record.items()}
    raw_pairs: list[RawPair] = []
    try:
        if fmt == FORMAT_SPOTAMOOD:
            raw_pairs = parse_spotamood_annotation(record.get("annotation"))
        else:
            raw_pairs = parse_native_annotations(record.get("annotations"))
    except AnnotationParseError:
        counts["annotation_parse_errors"] += 1
    counts["pairs_total"] += len(raw_pairs)
    counts["rows_with_annotations"] += int(bool(raw_pairs))

    title, artist = _name_field(record, "title"), _name_field(record, "artist")
    title_repaired = False
    if title is None and fmt == FORMAT_SPOTAMOOD:
        title = _title_from_page(record.get("lyrics"), artist)
        title_repaired = title is not None
    if title is None:
        _drop(counts, raw_pairs, "rows_without_artist_or_title")
        return None
    if artist is None:
        return _Pending(record, fmt, raw_pairs, title, title_repaired)
    return _finish_record(record, fmt, raw_pairs, title, artist, counts, drop_wrong_pages,
                          title_repaired=title_repaired)


def _drop(counts: Counter, raw_pairs: list[RawPair], reason: str,
          pair_reason: str = "pairs_dropped_song_dropped") -> None:
    counts[reason] += 1
    counts[pair_reason] += len(raw_pairs)


def _finish_record(record: dict, fmt: str, raw_pairs: list[RawPair], title: str, artist: str, counts: Counter,
                   drop_wrong_pages: bool, *, title_repaired: bool = False,
                   artist_repaired: bool = False) -> _Row | None:
    """Clean the lyrics of a record that has a title and an artist (given or repaired)."""
    counts["rows_title_repaired"] += int(title_repaired)
    counts["rows_artist_repaired"] += int(artist_repaired)
    lyrics = record.get("lyrics")
    if _is_blank(lyrics) or not isinstance(lyrics, str):
        _drop(counts, raw_pairs, "rows_without_lyrics")
        return None
    cleaned = clean_lyrics(lyrics, title, genius_prefix=fmt == FORMAT_SPOTAMOOD)
    if (drop_wrong_pages and fmt == FORMAT_SPOTAMOOD and cleaned.page_title is not None
            and not titles_match(cleaned.page_title, title)):
        _drop(counts, raw_pairs, "rows_wrong_lyrics_page", "pairs_dropped_wrong_match")
        return None
    if not cleaned.lines:
        _drop(counts, raw_pairs, "rows_without_lines_after_cleaning")
        return None
    meta = {"title": title, "artist": artist, **_metadata(record)}
    return _Row(make_song_id(artist, title), meta, cleaned, raw_pairs)


def _resolve_pending(rows: list[_Row | _Pending], counts: Counter, drop_wrong_pages: bool) -> list[_Row]:
    """Repair the artist of each ``_Pending`` record from the other rows, in place; drop (and count) the rest."""
    index = _ArtistIndex(row for row in rows if isinstance(row, _Row))
    resolved: list[_Row] = []
    for row in rows:
        if isinstance(row, _Pending):
            artist = index.artist_for(row.record, row.title)
            if artist is None:
                _drop(counts, row.raw_pairs, "rows_without_artist_or_title")
                continue
            finished = _finish_record(row.record, row.fmt, row.raw_pairs, row.title, artist, counts,
                                      drop_wrong_pages, title_repaired=row.title_repaired, artist_repaired=True)
            if finished is None:
                continue
            row = finished
        resolved.append(row)
    return resolved


def _collapse_versions(groups: list[list[_Row]], counts: Counter) -> list[list[_Row]]:
    """Merge groups (rows of one ``song_id``) that are versions of one song; the canonical group's rows first.

    Two songs are one when (a) the primary artist and the title without version decorations are equal
    (``song_versions_merged``), or (b) one primary artist's lyrics share at least ``VERSION_JACCARD`` of their
    distinct lines, or any artists' normalized lyrics are identical (``near_duplicate_lyrics_merged``). Each
    count is the number of songs folded into another. The canonical version has an undecorated title, then the
    most lines, then came first; its ``song_id`` and lyrics are kept, so re-ingesting gives the same ids.
    """
    parent = list(range(len(groups)))

    def find(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    def union(first: int, second: int, key: str) -> None:
        first, second = find(first), find(second)
        if first != second:
            parent[max(first, second)] = min(first, second)
            counts[key] += 1

    firsts = [group[0] for group in groups]
    by_version: dict[tuple[str, str], int] = {}
    for index, row in enumerate(firsts):
        key = version_key(row.meta["artist"], row.meta["title"])
        if key[1]:
            union(by_version.setdefault(key, index), index, "song_versions_merged")

    line_sets = [{loose_normalize(line) for line in row.cleaned.lines} - {""} for row in firsts]
    by_artist: dict[str, list[int]] = {}
    by_text: dict[str, int] = {}
    for index, row in enumerate(firsts):
        if len(line_sets[index]) < MIN_DISTINCT_LINES:
            continue
        text = "\n".join(loose_normalize(line) for line in row.cleaned.lines)
        union(by_text.setdefault(text, index), index, "near_duplicate_lyrics_merged")
        same_artist = by_artist.setdefault(primary_artist(row.meta["artist"]), [])
        for other in same_artist:
            if line_set_jaccard(line_sets[other], line_sets[index]) >= VERSION_JACCARD:
                union(other, index, "near_duplicate_lyrics_merged")
        same_artist.append(index)

    clusters: dict[int, list[int]] = {}
    for index in range(len(groups)):
        clusters.setdefault(find(index), []).append(index)
    merged = []
    for members in clusters.values():  # in order of each cluster's first-seen song
        canonical = min(members, key=lambda index: (has_version_decoration(firsts[index].meta["title"]),
                                                    -len(firsts[index].cleaned.lines), index))
        merged.append([row for index in [canonical, *(m for m in members if m != canonical)]
                       for row in groups[index]])
    return merged


def _assemble(rows: list[_Row], counts: Counter) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Songs, lines and pairs tables: duplicates and versions merged, every row's pairs mapped onto the kept lyrics."""
    by_id: dict[str, list[_Row]] = {}
    for row in rows:
        by_id.setdefault(row.song_id, []).append(row)
    counts["duplicate_songs_merged"] += sum(len(group) - 1 for group in by_id.values())
    song_records, line_records, pair_records = [], [], []
    next_line_id = 0
    for group in _collapse_versions(list(by_id.values()), counts):
        first = group[0]
        song_id = first.song_id
        meta = dict(first.meta)
        for later in group[1:]:
            for key, value in later.meta.items():
                if meta.get(key) is None and value is not None and not key.startswith("_"):
                    meta[key] = value
        if meta["valence"] is None:
            counts["invalid_valence" if meta["_valence_invalid"] else "valence_missing"] += 1
        counts["invalid_audio_features"] += meta["_invalid_features"]
        counts.update(first.cleaned.counts)
        song_records.append({"song_id": song_id, **{k: v for k, v in meta.items() if not k.startswith("_")}})

        line_ids = list(range(next_line_id, next_line_id + len(first.cleaned.lines)))
        next_line_id += len(line_ids)
        for position, (line_id, text) in enumerate(zip(line_ids, first.cleaned.lines, strict=True)):
            line_records.append({"line_id": line_id, "song_id": song_id, "position": position, "text": text})

        seen: set[tuple[str, str]] = set()
        for row in group:
            for raw in row.raw_pairs:
                outcome = _map_pair(raw, first.cleaned, seen)
                counts[outcome[0]] += 1
                if outcome[1] is not None:
                    fragment, annotation, indices, strategy = outcome[1]
                    counts[f"pairs_mapped_{strategy}"] += 1
                    pair_records.append({
                        "pair_id": len(pair_records), "song_id": song_id,
                        "line_ids": [line_ids[index] for index in indices],
                        "fragment": fragment, "annotation": annotation,
                    })
    songs = pd.DataFrame(song_records, columns=["song_id", "title", "artist", "valence", "genius_id", "url",
                                                *AUDIO_FEATURES])
    lines = pd.DataFrame(line_records, columns=["line_id", "song_id", "position", "text"])
    pairs = pd.DataFrame(pair_records, columns=["pair_id", "song_id", "line_ids", "fragment", "annotation"])
    return songs, lines, pairs


def _map_pair(
    raw: RawPair, cleaned: CleanedLyrics, seen: set[tuple[str, str]],
) -> tuple[str, tuple[str, str, list[int], str] | None]:
    """``(report key, (fragment, annotation, line indices, strategy) or None)`` for one raw pair."""
    if not isinstance(raw.fragment, str):
        return "pairs_dropped_malformed", None
    annotation = annotation_text(raw.annotation)
    if annotation is None:
        return "pairs_dropped_malformed", None
    fragment = "\n".join(fragment_lines(raw.fragment))
    if not fragment or not annotation:
        return "pairs_dropped_empty", None
    if (fragment, annotation) in seen:
        return "pairs_dropped_duplicate", None
    seen.add((fragment, annotation))
    if looks_like_tracklist(fragment, annotation):
        return "pairs_dropped_wrong_match", None
    indices, strategy = map_fragment(fragment, cleaned.lines, cleaned.sections)
    if indices is None or strategy is None:
        return "pairs_dropped_fragment_not_found", None
    return "pairs_kept", (fragment, annotation, indices, strategy)

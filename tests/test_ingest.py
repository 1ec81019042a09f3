"""Ingestion: every cleaning step on hand-written text, annotation parsing and mapping, both input formats,
duplicate merging, exact report counts on a small fixture, and (when present) the real songsdata sample."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest

from recommender.catalog import AUDIO_FEATURES, Catalog, make_song_id
from recommender.errors import RecommenderError
from recommender.ingest import (
    FORMAT_NATIVE_CSV,
    FORMAT_NATIVE_JSON,
    FORMAT_NATIVE_JSONL,
    FORMAT_SPOTAMOOD,
    MAP_EXACT,
    MAP_LOOSE,
    MAP_PARTIAL,
    MAP_SECTION,
    PAIR_DROP_KEYS,
    ROW_OUTCOME_KEYS,
    AnnotationParseError,
    IngestError,
    RawPair,
    annotation_text,
    clean_lyrics,
    detect_format,
    expand_sources,
    fragment_lines,
    genius_slug,
    has_version_decoration,
    ingest_sources,
    is_section_header,
    looks_like_tracklist,
    loose_normalize,
    map_fragment,
    normalize_for_match,
    parse_native_annotations,
    parse_spotamood_annotation,
    primary_artist,
    remove_embed_suffix,
    remove_ticket_ads,
    remove_title_prefix,
    remove_you_might_also_like,
    strip_leading_header,
    strip_version,
    titles_match,
    version_key,
)

SONGSDATA_DIR = Path(__file__).resolve().parents[2] / "shared/datasets/songsdata"
SPOTAMOOD_COLUMNS = [
    "artist", "title", "danceability", "energy", "key", "loudness", "mode", "speechiness", "acousticness",
    "instrumentalness", "liveness", "valence", "tempo", "duration", "time_signature", "lyrics", "genius_id",
    "annotation",
]


def spotamood_row(artist, title, lyrics, annotation="[]", valence="0.5", genius_id="1234.0", **extra) -> dict:
    row = {column: "0.1" for column in SPOTAMOOD_COLUMNS}
    row.update({"artist": artist, "title": title, "lyrics": lyrics, "annotation": annotation, "valence": valence,
                "genius_id": genius_id, "duration": "201000", "key": "5", "mode": "1", "time_signature": "4"})
    row.update(extra)
    return row


def write_csv(path: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    columns = columns or SPOTAMOOD_COLUMNS
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def annotation_literal(items) -> str:
    """The Spot-A-Mood cell format: Python repr of a list of (fragment, [[text, ...]]) tuples."""
    return repr(list(items))


def pairs_add_up(report: dict) -> bool:
    return report["pairs_total"] == report["pairs_kept"] + sum(report[key] for key in PAIR_DROP_KEYS)


def rows_add_up(report: dict) -> bool:
    """Every row read is a song, merged into one, or dropped for a counted reason."""
    return report["rows_read"] == report["songs"] + sum(report[key] for key in ROW_OUTCOME_KEYS)


# ------------------------------------------------------------------------------------------------------------
# Cleaning functions
# ------------------------------------------------------------------------------------------------------------


class TestRemoveTitlePrefix:
    def test_prefix_glued_to_first_line(self):
        assert remove_title_prefix("Paper Boats LyricsWe fold the morning\nLine two", "Paper Boats") == (
            "We fold the morning\nLine two", "Paper Boats")

    def test_prefix_glued_to_a_header(self):
        text, page = remove_title_prefix("I Ran (So Far Away) Lyrics[Instrumental Intro]\nI walk", "I Ran")
        assert text == "[Instrumental Intro]\nI walk" and page == "I Ran (So Far Away)"

    def test_contributors_count_before_the_title(self):
        assert remove_title_prefix("12 ContributorsPaper Boats LyricsWe fold", "Paper Boats") == (
            "We fold", "Paper Boats")

    def test_title_containing_lyrics_picks_the_matching_occurrence(self):
        text, page = remove_title_prefix("Lost Lyrics Lyrics[Verse]\nwords", "Lost Lyrics")
        assert (text, page) == ("[Verse]\nwords", "Lost Lyrics")

    def test_page_title_may_differ_from_the_title_column(self):
        text, page = remove_title_prefix("Don\u2019t Wait LyricsNo time", "Don't Wait")
        assert (text, page) == ("No time", "Don\u2019t Wait")

    def test_no_prefix_leaves_text_alone(self):
        assert remove_title_prefix("Just a line\nAnd another", "Whatever") == ("Just a line\nAnd another", None)

    def test_only_the_first_line_is_looked_at(self):
        assert remove_title_prefix("Hello\nSong Lyrics are here", "Song")[1] is None


class TestRemoveEmbedSuffix:
    def test_plain_embed(self):
        assert remove_embed_suffix("line one\nlast line there") == ("line one\nlast line there", False)
        assert remove_embed_suffix("line one\nlast lineEmbed") == ("line one\nlast line", True)

    def test_count_glued_to_a_word_is_removed(self):
        assert remove_embed_suffix("We sang\nnight and day42Embed") == ("We sang\nnight and day", True)

    def test_embed_elsewhere_is_kept(self):
        text = "Embed the memory deep\nhold it Embedded\nbye7Embed"
        assert remove_embed_suffix(text) == ("Embed the memory deep\nhold it Embedded\nbye", True)

    def test_a_number_that_starts_a_word_is_kept(self):
        assert remove_embed_suffix("We stood at the edge of 1999Embed") == ("We stood at the edge of 1999", True)

    def test_repeated_line_decides_how_many_digits_belong_to_the_lyric(self):
        text = "Drive down Route 66\nkeep going\nDrive down Route 6614Embed"
        assert remove_embed_suffix(text) == ("Drive down Route 66\nkeep going\nDrive down Route 66", True)
        text = "Repeat Chorus 2\nstuff\nRepeat Chorus 21Embed"
        assert remove_embed_suffix(text)[0].endswith("\nRepeat Chorus 2")

    def test_trailing_whitespace_after_embed(self):
        assert remove_embed_suffix("last line3Embed  \n") == ("last line", True)


class TestYouMightAlsoLike:
    def test_glued_to_the_next_line(self):
        assert remove_you_might_also_like("a\nYou might also likeI ran away\nb") == ("a\nI ran away\nb", 1)

    def test_glued_to_a_header(self):
        assert remove_you_might_also_like("a\nYou might also like[Chorus]\nb") == ("a\n[Chorus]\nb", 1)

    def test_on_its_own_line(self):
        assert remove_you_might_also_like("a\nYou might also like\nb") == ("a\n\nb", 1)

    def test_glued_to_the_end_of_the_last_line(self):
        assert remove_you_might_also_like("a\nkilling youYou might also like") == ("a\nkilling you", 1)

    def test_a_real_lyric_is_kept(self):
        text = "You might also like it here\nthey say you might also like me"
        assert remove_you_might_also_like(text) == (text, 0)


def test_ticket_ads_are_removed():
    text = "first line\nSee Some Band LiveGet tickets as low as $45You might also like\nnext"
    assert remove_ticket_ads(text) == ("first line\nYou might also like\nnext", 1)
    assert remove_ticket_ads("See you live tonight") == ("See you live tonight", 0)


class TestSectionHeaders:
    @pytest.mark.parametrize("line", ["[Chorus]", "[Verse 1: Some Name]", " [Chorus][x2] ", "[Verse 1: Name",
                                      "[Songtext zu \u201eSong [German Version]\u201c]"])
    def test_headers(self, line):
        assert is_section_header(line)

    @pytest.mark.parametrize("line", ["Come and save me tonight [x5]", "(Chorus)", "[Hook] and then words", ""])
    def test_not_headers(self, line):
        assert not is_section_header(line)

    def test_leading_header_split_off(self):
        assert strip_leading_header("[Hook] Uh, check it") == ("Uh, check it", "[Hook]")
        assert strip_leading_header("No header [here]") == ("No header [here]", None)


class TestCleanLyrics:
    RAW = ("Paper Boats Lyrics[Verse 1]\n  We fold the morning into paper boats \n\n[Chorus]\nSail away\n"
           "You might also likeLittle ships\n\n[Outro]\n[Hook] Sail on\nSail away12Embed")

    def test_lines_and_counts(self):
        cleaned = clean_lyrics(self.RAW, "Paper Boats")
        assert cleaned.lines == ["We fold the morning into paper boats", "Sail away", "Little ships", "Sail on",
                                 "Sail away"]
        assert cleaned.page_title == "Paper Boats"
        assert dict(cleaned.counts) == {
            "title_prefix_removed": 1, "embed_suffix_removed": 1, "you_might_also_like_removed": 1,
            "ticket_ads_removed": 0, "section_headers_removed": 3, "inline_section_headers_removed": 1,
            "blank_lines_removed": 2,
        }

    def test_sections_record_header_line_ranges(self):
        cleaned = clean_lyrics(self.RAW, "Paper Boats")
        assert cleaned.sections == [("verse 1", 0, 1), ("chorus", 1, 3), ("outro", 3, 5)]

    def test_native_text_keeps_a_lyric_that_looks_like_a_prefix(self):
        assert clean_lyrics("Love Lyrics are all I write\nmore", "Love", genius_prefix=False).lines[0] == (
            "Love Lyrics are all I write")
        assert clean_lyrics("Ember Lyrics\nSmall fire", "Ember", genius_prefix=False).lines == ["Small fire"]
        assert clean_lyrics("Other Page LyricsSmall fire", "Ember", genius_prefix=False).lines == [
            "Other Page LyricsSmall fire"]

    def test_crlf_and_invisible_characters(self):
        assert clean_lyrics("a\r\n\u200bb\u200b\r\n\r\n", None).lines == ["a", "b"]

    def test_only_junk_gives_no_lines(self):
        assert clean_lyrics("Arrival Lyrics[Instrumental]You might also like3Embed", "Arrival").lines == []


class TestTitlesMatch:
    @pytest.mark.parametrize(("page", "title"), [
        ("Don\u2019t Cry (Behind My Back)", "Don't Cry (Behind My Back)"),
        ("Stressed Out", "Stressed Out (feat. Some Singer)"),
        ("Scenario (Remix)", "Scenario - Remix"),
        ("(What\u2019s So Funny \u2019Bout) Peace Love and Understanding", "Peace Love And Understanding"),
        ("Gracias por la M\u00fasica", "Gracias Por La Musica"),
        ("Glamour and Glitz", "Glamour & Glitz"),
        ("Jailbait", "Jail Bait"),
        ("The Big Sky", "Big Sky"),
        ("Counting Sheep to the Rhythm of the War Drum", "Counting Sheep To The Rhythm Of The War Drums"),
    ])
    def test_same_song(self, page, title):
        assert titles_match(page, title)

    @pytest.mark.parametrize(("page", "title"), [
        ("October 2031 Album Release Calendar", "Over You"),
        ("Ulysses (Chap. 12)", "Cowman Milk Your Cow"),
        ("Money Honey", "Honey"),
        ("I Miss You Old Friend", "I Miss You"),
    ])
    def test_wrong_page(self, page, title):
        assert not titles_match(page, title)


def test_normalizers():
    assert normalize_for_match("  \u201cDon\u2019t  STOP\u201d... ") == "don't stop"
    assert normalize_for_match("(Oh, oh)") == "oh, oh"
    assert loose_normalize("Don\u2019t stop, caf\u00e9!") == "dont stop cafe"


# ------------------------------------------------------------------------------------------------------------
# Annotations
# ------------------------------------------------------------------------------------------------------------


class TestParseSpotamoodAnnotation:
    def test_valid_literal(self):
        cell = annotation_literal([("Line one\n Line two", [["First paragraph.", "Second."]]), ("x", [["y"]])])
        assert parse_spotamood_annotation(cell) == [
            RawPair("Line one\n Line two", [["First paragraph.", "Second."]]), RawPair("x", [["y"]])]

    @pytest.mark.parametrize("cell", ["[]", "", "  ", None, float("nan")])
    def test_blank_means_no_pairs(self, cell):
        assert parse_spotamood_annotation(cell) == []

    @pytest.mark.parametrize("cell", ["[('unclosed', [['x']]", "{'a': 1}", "not python at all", "42"])
    def test_malformed_raises(self, cell):
        with pytest.raises(AnnotationParseError):
            parse_spotamood_annotation(cell)

    def test_code_is_never_executed(self, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        for cell in ("__import__('pathlib').Path('PWNED').touch()",
                     "[(__import__('pathlib').Path('PWNED').touch(), [['x']])]"):
            with pytest.raises(AnnotationParseError):
                parse_spotamood_annotation(cell)
        assert not (tmp_path / "PWNED").exists()

    def test_wrong_shaped_items_are_kept_for_counting(self):
        assert parse_spotamood_annotation("['just a string']") == [RawPair(None, "just a string")]


def test_parse_native_annotations():
    items = [{"fragment": "a", "annotation": "b"}, "junk"]
    assert parse_native_annotations(items) == [RawPair("a", "b"), RawPair(None, "junk")]
    assert parse_native_annotations(json.dumps(items[:1])) == [RawPair("a", "b")]
    assert parse_native_annotations("") == [] and parse_native_annotations(None) == []
    with pytest.raises(AnnotationParseError):
        parse_native_annotations("[{not json")
    with pytest.raises(AnnotationParseError):
        parse_native_annotations({"fragment": "a"})


def test_annotation_text_joins_paragraphs():
    assert annotation_text([["First  part.\n\nMore.", " Second. "], ["Third."]]) == "First part. More. Second. Third."
    assert annotation_text("  plain ") == "plain"
    assert annotation_text([[""]]) == ""
    assert annotation_text([[3]]) is None and annotation_text(None) is None


def test_fragment_lines():
    assert fragment_lines("One\n Two\n \n Three ") == ["One", "Two", "Three"]


def test_looks_like_tracklist():
    assert looks_like_tracklist("Some Artist - Some Album - 3/12", "anything")
    assert looks_like_tracklist("Some Album", "Some Album Lyrics and Tracklist\n\nSong A\nSong B")
    assert not looks_like_tracklist("Told you in the jam", "Refers to the previous song in the tracklisting.")


class TestMapFragment:
    LINES = ("We fold the morning into paper boats", "Sail away, sail away", "Little ships of dreams",
             "Don\u2019t you cry", "Sail away, sail away", "Little ships of dreams")
    SECTIONS = (("verse", 0, 1), ("chorus", 1, 3), ("bridge", 3, 4), ("chorus", 4, 6))

    def test_single_line(self):
        assert map_fragment("We fold the morning into paper boats", self.LINES) == ([0], MAP_EXACT)

    def test_case_quotes_and_edge_punctuation_are_ignored(self):
        assert map_fragment("DON'T YOU CRY!", self.LINES) == ([3], MAP_EXACT)

    def test_multi_line_joined_with_newline_space(self):
        assert map_fragment("Sail away, sail away\n Little ships of dreams", self.LINES) == ([1, 2], MAP_EXACT)

    def test_repeated_chorus_maps_to_first_run(self):
        assert map_fragment("Little ships of dreams", self.LINES) == ([2], MAP_EXACT)

    def test_inner_punctuation_differences(self):
        assert map_fragment("Sail away sail away", self.LINES) == ([1], MAP_LOOSE)

    def test_part_of_a_line_and_runs_cut_mid_line(self):
        assert map_fragment("paper boats", self.LINES) == ([0], MAP_PARTIAL)
        assert map_fragment("paper boats\n Sail away", self.LINES) == ([0, 1], MAP_PARTIAL)
        assert map_fragment("pap", self.LINES) == (None, None)  # not word-aligned

    def test_section_header_fragment(self):
        assert map_fragment("[Chorus]", self.LINES, self.SECTIONS) == ([1, 2], MAP_SECTION)
        assert map_fragment("[Outro]", self.LINES, self.SECTIONS) == (None, None)

    def test_header_inside_fragment_is_ignored(self):
        assert map_fragment("[Bridge]\n Don't you cry", self.LINES, self.SECTIONS) == ([3], MAP_EXACT)

    def test_not_found(self):
        assert map_fragment("A line from another song", self.LINES) == (None, None)
        assert map_fragment("", self.LINES) == (None, None)


# ------------------------------------------------------------------------------------------------------------
# Ingestion
# ------------------------------------------------------------------------------------------------------------

PAPER_BOATS = ("Paper Boats Lyrics[Verse 1]\nWe fold the morning into paper boats\nAnd send them down the gutter "
               "stream\n\n[Chorus]\nSail away, sail away\nLittle ships of dreams\nYou might also likeSail away, sail "
               "away\nLittle ships of dreams12Embed")


@pytest.fixture
def fixture_csv(tmp_path) -> Path:
    """Seven Spot-A-Mood rows exercising every drop and repair once or twice (all text invented)."""
    first_pair = ("We fold the morning into paper boats", [["A picture of childhood."]])
    rows = [
        spotamood_row("The Example Band", "Paper Boats", PAPER_BOATS, annotation_literal([
            first_pair,
            ("Sail away, sail away\n Little ships of dreams", [["The chorus."]]),
            ("A line from another song", [["Wrong song."]]),
            ("Some Artist - Some Album - 3/12", [["Some Album Lyrics and Tracklist\n\nTrack one"]]),
            ("", [["Empty fragment."]]),
            ("send them down", [[""]]),
            ("[Chorus]", [["About the chorus."]]),
            ("the gutter", [["Partial line."]]),
            first_pair,
            "just a string",
        ])),
        spotamood_row("the example band", "paper boats", "Paper Boats Lyrics\nOther text", annotation_literal([
            ("Little ships of dreams", [["Boats as dreams."]]), first_pair]), valence="0.9"),
        spotamood_row("Nobody", "No Words", "", annotation_literal([("x", [["y"]])])),
        spotamood_row("", "No Artist", "No Artist Lyrics\nHello", annotation_literal([("Hello", [["z"]])])),
        spotamood_row("Someone", "Quiet River", "March 2031 Album Release Calendar Lyrics3/1\nA - B - 1/9Embed",
                      annotation_literal([("A - B - 1/9", [["B Lyrics and Tracklist"]])])),
        spotamood_row("Someone", "Quiet Stream", "Quiet Stream Lyrics\nRunning water\n\nUnder the bridge\nEmbed",
                      "[('unclosed', [['x']]", valence="1.7"),
        spotamood_row("Someone", "Night Train", "Night Train Lyrics\nRolling through the night\nStations passing "
                      "by5Embed", "__import__('pathlib').Path('PWNED').touch()", valence="", genius_id=""),
    ]
    return write_csv(tmp_path / "songs.csv", rows)


def test_fixture_report_counts_exactly(fixture_csv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    catalog = ingest_sources([fixture_csv])
    report = catalog.report
    expected = {
        "rows_read": 7, "records_unparseable": 0, "rows_without_artist_or_title": 1, "rows_without_lyrics": 1,
        "rows_wrong_lyrics_page": 1, "rows_without_lines_after_cleaning": 0, "duplicate_songs_merged": 1,
        "song_versions_merged": 0, "near_duplicate_lyrics_merged": 0, "rows_title_repaired": 0,
        "rows_artist_repaired": 0,
        "valence_missing": 1, "invalid_valence": 1, "invalid_audio_features": 0, "annotation_parse_errors": 2,
        "rows_with_annotations": 5,
        "pairs_total": 15, "pairs_kept": 5, "pairs_dropped_fragment_not_found": 1, "pairs_dropped_wrong_match": 2,
        "pairs_dropped_empty": 2, "pairs_dropped_malformed": 1, "pairs_dropped_duplicate": 2,
        "pairs_dropped_song_dropped": 2,
        "pairs_mapped_exact": 3, "pairs_mapped_loose": 0, "pairs_mapped_partial": 1, "pairs_mapped_section": 1,
        "title_prefix_removed": 3, "embed_suffix_removed": 3, "you_might_also_like_removed": 1,
        "ticket_ads_removed": 0, "section_headers_removed": 2, "inline_section_headers_removed": 0,
        "blank_lines_removed": 2,
        "songs": 3, "lines": 10, "pairs": 5, "songs_with_pairs": 1,
    }
    assert {key: report[key] for key in expected} == expected
    assert pairs_add_up(report) and rows_add_up(report)
    assert report["sources"] == [str(fixture_csv)]
    assert report["files"] == {str(fixture_csv): {"format": FORMAT_SPOTAMOOD, "rows_read": 7,
                                                  "records_unparseable": 0}}
    assert not (tmp_path / "PWNED").exists()


def test_fixture_tables(fixture_csv):
    catalog = ingest_sources([fixture_csv])
    songs = catalog.songs.set_index("title")
    assert list(songs.index) == ["Paper Boats", "Quiet Stream", "Night Train"]
    boats = songs.loc["Paper Boats"]
    assert boats["song_id"] == make_song_id("The Example Band", "Paper Boats")
    assert boats["valence"] == 0.5 and boats["genius_id"] == "1234" and boats["duration_ms"] == 201000.0
    assert boats["key"] == 5.0 and boats["danceability"] == 0.1
    assert set(AUDIO_FEATURES) <= set(catalog.songs.columns)
    assert songs.loc["Quiet Stream", "valence"] != songs.loc["Quiet Stream", "valence"]  # NaN: 1.7 is invalid
    assert songs.loc["Night Train", "genius_id"] is None

    assert catalog.song_lines(boats["song_id"]) == [
        "We fold the morning into paper boats", "And send them down the gutter stream", "Sail away, sail away",
        "Little ships of dreams", "Sail away, sail away", "Little ships of dreams"]
    assert catalog.song_lines(songs.loc["Night Train", "song_id"]) == ["Rolling through the night",
                                                                       "Stations passing by"]
    assert catalog.lines["line_id"].tolist() == list(range(10))
    assert catalog.lines["position"].tolist() == [0, 1, 2, 3, 4, 5, 0, 1, 0, 1]

    pairs = catalog.pairs
    assert pairs["pair_id"].tolist() == [0, 1, 2, 3, 4]
    assert [list(ids) for ids in pairs["line_ids"]] == [[0], [2, 3], [2, 3, 4, 5], [1], [3]]
    assert pairs["fragment"].tolist() == ["We fold the morning into paper boats",
                                          "Sail away, sail away\nLittle ships of dreams", "[Chorus]", "the gutter",
                                          "Little ships of dreams"]
    assert pairs["annotation"].tolist()[-1] == "Boats as dreams."


def test_saved_catalog_carries_the_report(fixture_csv, tmp_path):
    catalog = ingest_sources([fixture_csv])
    catalog.save(tmp_path / "catalog")
    report = json.loads((tmp_path / "catalog" / "ingest_report.json").read_text())
    assert report["pairs_kept"] == 5
    loaded = Catalog.load(tmp_path / "catalog")
    assert loaded.content_hash == catalog.content_hash and len(loaded.pairs) == 5


def test_drop_wrong_pages_can_be_turned_off(fixture_csv):
    report = ingest_sources([fixture_csv], drop_wrong_pages=False).report
    assert report["rows_wrong_lyrics_page"] == 0 and report["songs"] == 4
    assert pairs_add_up(report) and rows_add_up(report)


def test_native_jsonl(tmp_path):
    path = tmp_path / "songs.jsonl"
    records = [
        {"title": "Lantern", "artist": "Glow", "valence": 0.3, "url": "https://example.org/lantern",
         "lyrics": "[Verse]\nHold the lantern high\n\nLight the way home",
         "annotations": [{"fragment": "Hold the lantern high", "annotation": "Hope."},
                         {"fragment": "Not here", "annotation": "Nowhere."},
                         {"fragment": "Light the way home", "annotation": ["Guidance.", "Home."]}]},
        {"title": "Ember", "artist": "Glow", "valence": None, "lyrics": "Ember Lyrics\nSmall fire", "tempo": "fast"},
        {"title": "Blank", "artist": "Glow", "lyrics": "   "},
    ]
    lines = [json.dumps(records[0]), "{not json", "", json.dumps(records[1]), "[1, 2]", json.dumps(records[2])]
    path.write_text("\n".join(lines) + "\n")
    catalog = ingest_sources([path])
    report = catalog.report
    assert report["files"][str(path)] == {"format": FORMAT_NATIVE_JSONL, "rows_read": 3, "records_unparseable": 2}
    assert report["records_unparseable"] == 2 and report["rows_without_lyrics"] == 1
    assert report["valence_missing"] == 1 and report["invalid_audio_features"] == 1
    assert report["title_prefix_removed"] == 1 and report["section_headers_removed"] == 1
    assert report["pairs_total"] == 3 and report["pairs_kept"] == 2
    assert report["pairs_dropped_fragment_not_found"] == 1 and pairs_add_up(report)
    assert catalog.songs["title"].tolist() == ["Lantern", "Ember"]
    assert catalog.songs["url"].tolist() == ["https://example.org/lantern", None]
    assert catalog.song_lines(make_song_id("Glow", "Ember")) == ["Small fire"]
    assert catalog.pairs["annotation"].tolist() == ["Hope.", "Guidance. Home."]
    assert [list(ids) for ids in catalog.pairs["line_ids"]] == [[0], [1]]


def test_native_csv(tmp_path):
    columns = ["title", "artist", "valence", "lyrics", "annotations", "duration_ms"]
    rows = [
        {"title": "Harbor", "artist": "Tide", "valence": "0.25", "duration_ms": "180000",
         "lyrics": "Ferry leaves at dawn\nGulls above the pier",
         "annotations": json.dumps([{"fragment": "Gulls above the pier", "annotation": "Loneliness."}])},
        {"title": "Cake", "artist": "Tide", "valence": "abc", "lyrics": "Candles burning", "annotations": "[{oops",
         "duration_ms": ""},
        {"title": "Party", "artist": "Tide", "valence": "", "lyrics": "Balloons", "annotations": "",
         "duration_ms": ""},
    ]
    path = write_csv(tmp_path / "native.csv", rows, columns)
    assert detect_format(path) == FORMAT_NATIVE_CSV
    catalog = ingest_sources([path])
    report = catalog.report
    assert report["rows_read"] == 3 and report["annotation_parse_errors"] == 1
    assert report["invalid_valence"] == 1 and report["valence_missing"] == 1
    assert report["pairs_kept"] == 1 and pairs_add_up(report)
    assert catalog.songs["duration_ms"].tolist()[0] == 180000.0
    assert catalog.songs["valence"].isna().tolist() == [False, True, True]
    assert list(catalog.pairs["line_ids"][0]) == [1]


def test_native_json_list_and_songs_object(tmp_path):
    song = {"title": "Rain", "artist": "Cloud", "lyrics": "Drops on the window"}
    (tmp_path / "a.json").write_text(json.dumps([song]))
    (tmp_path / "b.json").write_text(json.dumps({"songs": [{**song, "title": "Snow"}, "junk"]}))
    assert detect_format(tmp_path / "a.json") == FORMAT_NATIVE_JSON
    catalog = ingest_sources([tmp_path])
    assert catalog.songs["title"].tolist() == ["Rain", "Snow"]
    assert catalog.report["records_unparseable"] == 1


def test_duplicates_across_files_are_merged(tmp_path):
    first = write_csv(tmp_path / "a.csv", [spotamood_row("Band", "Song", "Song LyricsLine one\nLine two", (
        annotation_literal([("Line one", [["One."]])])), valence="", danceability="0.7")])
    second = write_csv(tmp_path / "b.csv", [spotamood_row("BAND", "song", "Song LyricsLine one\nLine two changed",
                                                          annotation_literal([("Line one", [["One."]]),
                                                                              ("Line two", [["Two."]])]),
                                                          valence="0.6", danceability="0.2")])
    catalog = ingest_sources([tmp_path])
    report = catalog.report
    assert [Path(name).name for name in report["files"]] == ["a.csv", "b.csv"]
    assert report["duplicate_songs_merged"] == 1 and report["songs"] == 1
    assert report["pairs_total"] == 3 and report["pairs_kept"] == 2 and report["pairs_dropped_duplicate"] == 1
    assert catalog.lines["text"].tolist() == ["Line one", "Line two"]  # the first occurrence's lyrics
    song = catalog.songs.iloc[0]
    assert song["title"] == "Song" and song["danceability"] == 0.7
    assert song["valence"] == 0.6  # missing in the first occurrence, filled from the duplicate
    assert report["valence_missing"] == 0
    assert catalog.pairs["annotation"].tolist() == ["One.", "Two."]
    # The same file named twice is read once.
    assert ingest_sources([first, first, second]).report["rows_read"] == 2


def test_format_detection_and_source_expansion(tmp_path):
    spot = write_csv(tmp_path / "spot.csv", [spotamood_row("A", "B", "B Lyrics\nx")])
    plain = write_csv(tmp_path / "plain.csv", [{"title": "T", "artist": "A", "lyrics": "x"}],
                      ["title", "artist", "lyrics"])
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / "z.jsonl").write_text("")
    assert detect_format(spot) == FORMAT_SPOTAMOOD and detect_format(plain) == FORMAT_NATIVE_CSV
    assert [path.name for path in expand_sources([tmp_path])] == ["plain.csv", "spot.csv", "z.jsonl"]
    with pytest.raises(IngestError, match="no such file"):
        expand_sources([tmp_path / "missing.csv"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(IngestError, match=r"no \*\.csv"):
        ingest_sources([empty])


def test_native_csv_without_required_columns_is_a_clear_error(tmp_path):
    path = write_csv(tmp_path / "bad.csv", [{"name": "x", "text": "y"}], ["name", "text"])
    with pytest.raises(IngestError, match="missing column"):
        ingest_sources([path])
    assert issubclass(IngestError, RecommenderError)


@pytest.mark.parametrize("name", ["bad.csv", "bad.jsonl"])
def test_undecodable_file_is_a_clear_error(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"\xff\xfe\x00title,artist,lyrics\n\xff")
    with pytest.raises(IngestError, match="UTF-8"):
        ingest_sources([path])


def test_the_embedded_default_catalog_ingests_cleanly():
    source = Path(__file__).resolve().parents[1] / "data" / "default_songs.jsonl"
    if not source.is_file():
        pytest.skip("no embedded default catalog")
    report = ingest_sources([source]).report
    assert report["songs"] > 0 and pairs_add_up(report)
    assert report["pairs_dropped_fragment_not_found"] == 0 and report["annotation_parse_errors"] == 0


# ------------------------------------------------------------------------------------------------------------
# Versions of one song, near-identical lyrics, repaired titles and artists
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("title", "base"), [
    ("Hey Jude - Remastered 2015", "Hey Jude"),
    ("Hotel California - 2013 Remaster", "Hotel California"),
    ("Glass River - Live", "Glass River"),
    ("Glass River (Live at Wembley)", "Glass River"),
    ("Glass River - Radio Edit", "Glass River"),
    ("Glass River (Radio Version)", "Glass River"),
    ("Glass River - Single Version", "Glass River"),
    ("Glass River - Acoustic Version", "Glass River"),
    ("Only Wanna Be With You - Hootie Mix", "Only Wanna Be With You"),
    ("Glass River - Extended 12\" Mix", "Glass River"),
    ("Glass River - Mono", "Glass River"),
    ("Glass River - Demo", "Glass River"),
    ("Glass River (feat. Someone)", "Glass River"),
    ("Glass River [feat. Someone]", "Glass River"),
    ("Glass River (with Someone)", "Glass River"),
    ("Glass River feat. Someone", "Glass River"),
    ("Glass River - From \u201cSome Movie\u201d Soundtrack", "Glass River"),
    ("Glass River (feat. Someone) - Live at Wembley - 1986 Remaster", "Glass River"),
    # Real title parts and other songs are kept.
    ("I Ran (So Far Away)", "I Ran (So Far Away)"),
    ("(I Just) Died in Your Arms", "(I Just) Died in Your Arms"),
    ("I'm Alive (Live Forever)", "I'm Alive (Live Forever)"),
    ("Live Forever", "Live Forever"),
    ("Dancing with Myself", "Dancing with Myself"),
    ("Glass River - Part 2", "Glass River - Part 2"),
    ("Despacito - Spanish Version", "Despacito - Spanish Version"),
    ("Remix", "Remix"),
])
def test_strip_version(title, base):
    assert strip_version(title) == base
    assert has_version_decoration(title) == (title != base)


def test_primary_artist_and_version_key():
    assert primary_artist("Band feat. Guest") == primary_artist("BAND  featuring X") == "band"
    assert primary_artist("Band & Other") == primary_artist("Band with Other") == "band"
    assert primary_artist("Tyler, The Creator") == "tyler the creator"
    assert primary_artist("With Confidence") == "with confidence"
    assert version_key("Band feat. Guest", "Glass River - Remastered") == version_key("band", "glass river")
    assert genius_slug("Guns N' Roses") == "guns-n-roses" and genius_slug("Simon & Garfunkel") == "simon-and-garfunkel"


GLASS_RIVER = ["Glass river flowing", "Under the frozen sky", "We were never lonely", "Counting every star",
               "Glass river flowing"]
OTHER_LYRICS = ["Streets of neon burning", "Nobody knows my name", "Running through the city", "Lights go down"]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def note(fragment: str, text: str) -> dict:
    return {"fragment": fragment, "annotation": text}


def test_versions_collapse_into_the_canonical_song(tmp_path):
    records = [
        {"title": "Glass River - Remastered 2011", "artist": "Band", "valence": 0.7,
         "lyrics": "\n".join(GLASS_RIVER), "annotations": [note("Under the frozen sky", "Winter.")]},
        {"title": "Glass River (feat. Guest)", "artist": "Band feat. Guest", "valence": 0.2,
         "lyrics": "\n".join([*GLASS_RIVER, "Guest verse here"]),
         "annotations": [note("We were never lonely", "Company."), note("Guest verse here", "Not in the original.")]},
        {"title": "Glass River - Live at Wembley", "artist": "band", "lyrics": "\n".join(GLASS_RIVER[:3])},
        {"title": "Glass River (Radio Edit)", "artist": "Band", "lyrics": "\n".join(GLASS_RIVER[:2]),
         "annotations": [note("Under the frozen sky", "Winter.")]},
        {"title": "Glass River", "artist": "Band", "lyrics": "\n".join(GLASS_RIVER[:4]),
         "annotations": [note("Counting every star", "Hope.")]},
        {"title": "I Ran (So Far Away)", "artist": "Band", "lyrics": "\n".join(OTHER_LYRICS)},
        {"title": "I Ran", "artist": "Band", "lyrics": "One line only\nAnd another"},
        {"title": "Glass River", "artist": "Other Band", "lyrics": "Completely different words\nNothing shared"},
    ]
    catalog = ingest_sources([write_jsonl(tmp_path / "songs.jsonl", records)])
    report = catalog.report
    assert report["song_versions_merged"] == 4 and report["near_duplicate_lyrics_merged"] == 0
    assert report["songs"] == 4 and rows_add_up(report) and pairs_add_up(report)
    songs = catalog.songs.set_index("song_id")
    canonical = make_song_id("Band", "Glass River")
    assert songs.loc[canonical, "title"] == "Glass River" and songs.loc[canonical, "artist"] == "Band"
    assert songs.loc[canonical, "valence"] == 0.7  # missing in the original, filled from the first version
    assert catalog.song_lines(canonical) == GLASS_RIVER[:4]  # the undecorated title's lyrics
    assert sorted(catalog.songs["title"]) == ["Glass River", "Glass River", "I Ran", "I Ran (So Far Away)"]
    pairs = catalog.pairs[catalog.pairs["song_id"] == canonical]
    assert sorted(pairs["annotation"]) == ["Company.", "Hope.", "Winter."]  # versions' pairs kept, de-duplicated
    assert report["pairs_dropped_duplicate"] == 1 and report["pairs_dropped_fragment_not_found"] == 1

    # Ingesting in another order gives the same canonical id and title.
    again = ingest_sources([write_jsonl(tmp_path / "reversed.jsonl", records[::-1])])
    assert set(again.songs["song_id"]) == set(catalog.songs["song_id"])


def test_the_most_complete_decorated_version_stands_in_for_a_missing_original(tmp_path):
    records = [{"title": "Glass River - Radio Edit", "artist": "Band", "lyrics": "\n".join(GLASS_RIVER[:2])},
               {"title": "Glass River - Live", "artist": "Band", "lyrics": "\n".join(GLASS_RIVER)}]
    catalog = ingest_sources([write_jsonl(tmp_path / "songs.jsonl", records)])
    assert catalog.songs["title"].tolist() == ["Glass River - Live"]
    assert catalog.songs["song_id"].tolist() == [make_song_id("Band", "Glass River - Live")]


TEN_LINES = [f"Line number {word} of the song" for word in
             ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")]


def test_near_identical_lyrics_merge_and_merely_similar_ones_do_not(tmp_path):
    one_changed = [*TEN_LINES[:9], "A different ending"]  # 9 shared of 11 distinct lines: Jaccard 0.82
    three_changed = [*TEN_LINES[:7], "New eight", "New nine", "New ten"]  # 7 of 13: 0.54
    records = [
        {"title": "Numbers", "artist": "Counter", "lyrics": "\n".join(TEN_LINES),
         "annotations": [note("Line number two of the song", "Two.")]},
        {"title": "Numbers Again", "artist": "Counter feat. Guest", "lyrics": "\n".join(one_changed),
         "annotations": [note("Line number three of the song", "Three.")]},
        {"title": "Other Numbers", "artist": "Counter", "lyrics": "\n".join(three_changed)},
        # Another artist: similar lyrics are not enough, identical ones (up to case and punctuation) are.
        {"title": "Cover", "artist": "Someone Else", "lyrics": "\n".join([*TEN_LINES[:9], "Cover ending"])},
        {"title": "Same Words", "artist": "Third Artist", "lyrics": "\n".join(line.upper() + "!" for line in
                                                                             three_changed)},
        # Too short to be evidence: identical two-line lyrics stay apart.
        {"title": "Short A", "artist": "X", "lyrics": "Oh\nYeah"},
        {"title": "Short B", "artist": "Y", "lyrics": "Oh\nYeah"},
    ]
    catalog = ingest_sources([write_jsonl(tmp_path / "songs.jsonl", records)])
    report = catalog.report
    assert report["near_duplicate_lyrics_merged"] == 2 and report["song_versions_merged"] == 0
    assert report["songs"] == 5 and rows_add_up(report) and pairs_add_up(report)
    assert catalog.songs["title"].tolist() == ["Numbers", "Other Numbers", "Cover", "Short A", "Short B"]
    numbers = make_song_id("Counter", "Numbers")
    assert sorted(catalog.pairs.loc[catalog.pairs["song_id"] == numbers, "annotation"]) == ["Three.", "Two."]


def test_missing_titles_are_repaired_from_the_genius_page_title(tmp_path):
    rows = [
        spotamood_row("Moon Band", "", "Paper Moon LyricsHanging in the sky\nPaper moon so high",
                      annotation_literal([("Paper moon so high", [["The moon."]])])),
        spotamood_row("Moon Band", "nan", "Silver Lake Lyrics\nStill water"),
        spotamood_row("Moon Band", "  ", "just text without a page title"),
        spotamood_row("Various Artists", "", "January 2031 Album Release Calendar Lyrics1/1\nA - B - 7/7",
                      annotation_literal([("A - B - 7/7", [["B Lyrics and Tracklist"]])])),
        spotamood_row("None", "Lost Song", "Lost Song Lyrics\nNo artist anywhere", genius_id="999"),
    ]
    catalog = ingest_sources([write_csv(tmp_path / "songs.csv", rows)])
    report = catalog.report
    assert report["rows_title_repaired"] == 2 and report["rows_artist_repaired"] == 0
    assert report["rows_without_artist_or_title"] == 3 and report["pairs_dropped_song_dropped"] == 1
    assert catalog.songs["title"].tolist() == ["Paper Moon", "Silver Lake"]
    assert catalog.song_lines(make_song_id("Moon Band", "Paper Moon")) == ["Hanging in the sky", "Paper moon so high"]
    assert catalog.pairs["annotation"].tolist() == ["The moon."]
    assert rows_add_up(report) and pairs_add_up(report)


def test_missing_artists_are_repaired_only_from_other_rows(tmp_path):
    records = [
        {"title": "Someone Like You", "artist": "null", "url": "https://genius.com/Adele-someone-like-you-lyrics",
         "lyrics": "I heard that you're settled down"},  # before the row that names the artist: order is irrelevant
        {"title": "Hello", "artist": "Adele", "url": "https://genius.com/Adele-hello-lyrics", "genius_id": 77,
         "lyrics": "Hello, it's me"},
        {"title": "Hello (Live)", "artist": "-", "url": "https://genius.com/Adele-hello-lyrics",
         "lyrics": "Hello, it's me\nLive"},
        {"title": "Skyfall", "artist": None, "genius_id": "77.0", "lyrics": "This is the end"},
        {"title": "Rolling", "artist": "", "url": "https://genius.com/Unknown-band-rolling-lyrics", "lyrics": "Roll"},
        {"title": "Orphan", "lyrics": "No artist, no url"},
        {"title": "Other", "artist": "None", "url": "https://example.org/Adele-other", "lyrics": "Not Genius"},
    ]
    catalog = ingest_sources([write_jsonl(tmp_path / "songs.jsonl", records)])
    report = catalog.report
    assert report["rows_artist_repaired"] == 3 and report["rows_without_artist_or_title"] == 3
    assert report["song_versions_merged"] == 1  # the repaired "Hello (Live)" is a version of "Hello"
    assert catalog.songs["title"].tolist() == ["Someone Like You", "Hello", "Skyfall"]
    assert set(catalog.songs["artist"]) == {"Adele"}
    assert rows_add_up(report) and pairs_add_up(report)


# ------------------------------------------------------------------------------------------------------------
# Real data
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.realdata
def test_real_songsdata():
    files = sorted(SONGSDATA_DIR.glob("*.csv")) if SONGSDATA_DIR.is_dir() else []
    if len(files) < 8:
        pytest.skip(f"real songsdata not available at {SONGSDATA_DIR}")
    started = time.perf_counter()
    catalog = ingest_sources(files)
    assert time.perf_counter() - started < 60
    report = catalog.report
    assert report["rows_read"] == 4000 and len(report["files"]) == 8
    assert all(entry["format"] == FORMAT_SPOTAMOOD for entry in report["files"].values())
    # 4,000 rows hold ~2,760 distinct songs (the files overlap), 644 of them annotated, ~3,270 distinct pairs;
    # wrong Genius pages (release calendars, book chapters, other songs) are dropped with their annotations.
    assert 2000 <= report["songs"] <= 2800
    assert report["duplicate_songs_merged"] > 1000
    # Versions (remix, extended mix, acoustic version ...) and near-identical lyrics fold into one song each.
    assert 5 <= report["song_versions_merged"] <= 40 and 1 <= report["near_duplicate_lyrics_merged"] <= 40
    assert rows_add_up(report)
    keys = [version_key(artist, title) for artist, title in zip(catalog.songs["artist"], catalog.songs["title"],
                                                                 strict=True)]
    assert len(set(keys)) == len(keys)
    assert report["pairs_total"] == 5016 and report["rows_with_annotations"] == 1061
    assert 450 <= report["songs_with_pairs"] <= 644
    assert 2000 <= report["pairs_kept"] <= 3300
    assert report["pairs_dropped_fragment_not_found"] < 100
    assert 100 <= report["rows_wrong_lyrics_page"] <= 300 and report["pairs_dropped_wrong_match"] > 500
    assert report["annotation_parse_errors"] == 0
    assert pairs_add_up(report)
    assert report["pairs_kept"] == report["pairs"] == len(catalog.pairs)
    assert sum(report[f"pairs_mapped_{how}"] for how in ("exact", "loose", "partial", "section")) == len(
        catalog.pairs)

    texts = catalog.lines["text"]
    assert not texts.str.contains(r"Embed\s*$").any()
    assert not texts.str.startswith("[").any()
    assert not texts.str.contains("You might also like").any()
    assert not texts.str.strip().eq("").any()
    assert catalog.songs["valence"].between(0, 1).all()
    # Every pair's lines belong to its song (Catalog validates this) and its fragment text is on those lines.
    line_text = dict(zip(catalog.lines["line_id"], texts.map(loose_normalize), strict=True))
    for fragment, line_ids in zip(catalog.pairs["fragment"].head(300), catalog.pairs["line_ids"].head(300),
                                  strict=True):
        if not is_section_header(fragment):
            covered = " ".join(line_text[line_id] for line_id in line_ids)
            assert loose_normalize(fragment.split("\n")[0]) in covered

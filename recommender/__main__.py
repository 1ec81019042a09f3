"""Command line: ``python -m recommender {ingest,build,search} ...``.

Errors that are the user's (bad input, missing files, unknown model) end with one clear line on stderr and a
non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from recommender.errors import RecommenderError
from space_config import SETTINGS

EXIT_USAGE = 2


def _command_ingest(args: argparse.Namespace) -> int:
    from recommender.ingest import ingest_sources

    for source in args.sources:
        if not Path(source).exists():
            raise RecommenderError(f"source not found: {source}")
    catalog = ingest_sources(args.sources)
    catalog.save(args.out)
    report = catalog.report or {}
    print(f"ingested {len(catalog.songs)} songs, {len(catalog.lines)} lines, {len(catalog.pairs)} annotation pairs "
          f"into {args.out} (details: {Path(args.out) / 'ingest_report.json'})")
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    return 0


def _command_build(args: argparse.Namespace) -> int:
    from recommender.catalog import Catalog
    from recommender.embeddings import build_embeddings
    from recommender.encoders import load_encoder

    catalog = Catalog.load(args.catalog)
    encoder = load_encoder(args.model)
    _, report = build_embeddings(catalog, encoder, args.out, batch_size=args.batch_size,
                                 show_progress_bar=not args.quiet)
    print(f"built {report['distinct_texts_encoded']} embeddings ({encoder.dimension}-d, {encoder.describe()}) for "
          f"{report['catalog_lines']} catalog lines in {report['seconds']:.1f} s "
          f"({report['lines_per_second']} lines/s) → {args.out}")
    return 0


def _command_search(args: argparse.Namespace) -> int:
    from recommender.ranking import check_ranking, check_valence_range
    from recommender.service import Recommender, check_query, check_top_n

    if (args.query is None) == (args.image is None):
        raise RecommenderError("give either a QUERY sentence or --image PATH (not both)")
    # Validate cheap things before loading a model.
    if args.query is not None:
        check_query(args.query)
    elif not Path(args.image).is_file():
        raise RecommenderError(f"image not found: {args.image}")
    check_top_n(args.top)
    ranking = check_ranking(args.ranking)
    valence_min, valence_max = check_valence_range(*args.valence)
    if args.catalog and not Path(args.catalog).is_dir():
        raise RecommenderError(f"catalog directory not found: {args.catalog}")
    recommender = Recommender.open(catalog_dir=args.catalog, embeddings_dir=args.embeddings, model=args.model)
    options = {"valence_min": valence_min, "valence_max": valence_max, "top_n": args.top, "ranking": ranking}
    if args.image is not None:
        result = recommender.search_image(args.image, **options)
    else:
        result = recommender.search_text(args.query, **options)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    print(f"{result['query']!r} · model {recommender.encoder.describe()} · ranking {result['ranking']}")
    if not result["results"]:
        print("no songs match in this valence range")
    for song in result["results"]:
        valence = "  –  " if song["valence"] is None else f"{song['valence']:.2f}"
        print(f"{song['rank']:>3}. {song['score']:6.3f}  valence {valence}  {song['title']} — {song['artist']}")
        for line in song["lines"][:3]:
            print(f"         {line['score']:.3f}  {line['text']}")
    return 0


def _command_calibrate(args: argparse.Namespace) -> int:
    from recommender.calibration import calibrate_embeddings

    outcome = calibrate_embeddings(args.embeddings, catalog_dir=args.catalog, images_dir=args.images)
    print(json.dumps(outcome, indent=2) if args.json else
          f"{outcome['model_name']}: threshold {outcome['threshold']:.4f} (the baseline's 0.6 sits at percentile "
          f"{outcome['percentile']:.3f} of its top-100 candidate scores on {outcome['queries']} sample "
          f"{outcome['query_kind']}) → written to {Path(args.embeddings) / 'manifest.json'}")
    return 0


def _command_publish(args: argparse.Namespace) -> int:
    from recommender.hub import publish

    if not args.embeddings:
        raise RecommenderError("give at least one --embeddings DIR to publish")
    where = publish(args.catalog, args.embeddings, repo=args.repo, revision=args.revision, to_dir=args.to_dir)
    if args.to_dir:
        print(f"wrote the dataset repo layout of {args.repo} to {where}")
    else:
        print(f"published {args.repo} at commit {where}: pin it as dataset_revision in space_config/settings.py")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m recommender",
                                     description="Find songs by what their lyrics mean.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    commands = parser.add_subparsers(dest="command", required=True)

    ingest = commands.add_parser("ingest", help="read Spot-A-Mood CSV or native CSV/JSONL into a catalog directory")
    ingest.add_argument("sources", nargs="+", metavar="SRC", help="files or directories to read")
    ingest.add_argument("--out", required=True, help="catalog directory to write (replaced atomically)")
    ingest.add_argument("--json", action="store_true", help="also print the ingest report")
    ingest.set_defaults(handler=_command_ingest)

    build = commands.add_parser("build", help="embed every distinct line of a catalog with a model")
    build.add_argument("--catalog", required=True, help="catalog directory")
    build.add_argument("--model", default=SETTINGS.baseline_model, help="configured name, Hub id or model directory")
    build.add_argument("--out", required=True, help="embedding set directory to write (replaced atomically)")
    build.add_argument("--batch-size", type=int, default=SETTINGS.encode_batch_size)
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    build.set_defaults(handler=_command_build)

    search = commands.add_parser("search", help="songs whose lyric lines match a sentence")
    search.add_argument("query", nargs="?", help='e.g. "driving alone at night after a breakup"')
    search.add_argument("--image", help="search with a picture instead (needs a CLIP model, e.g. --model clip)")
    search.add_argument("--catalog", help="catalog directory (default: the embedded default catalog)")
    search.add_argument("--embeddings", help="embedding set directory (default: built and cached on first use)")
    search.add_argument("--model", default=SETTINGS.baseline_model, help="configured name, Hub id or model directory")
    search.add_argument("--valence", nargs=2, type=float, default=(0.0, 1.0), metavar=("MIN", "MAX"),
                        help="keep songs with valence in MIN..MAX (0 sad … 1 happy)")
    search.add_argument("--top", type=int, default=SETTINGS.default_top_n, help="number of songs")
    # The names are spelled out (not imported from recommender.ranking) so that building the parser never imports
    # torch; tests/test_cli.py checks they match RANKING_NAMES, and check_ranking validates the value.
    search.add_argument("--ranking", default=SETTINGS.default_ranking, metavar="{seed,song-mean,windows,hybrid,blend}",
                        help="how lines become song scores: seed = the original study's rule (top-100 lines, summed "
                             "per song); song-mean = the song's mean line vector; windows = the study's rule over "
                             f"{SETTINGS.window_lines}-line windows; hybrid = song vector + best window; "
                             f"blend = song vector + {SETTINGS.verse_lines}-line verses encoded as one text + best "
                             "window + the whole song as one text "
                             f"(default: {SETTINGS.default_ranking})")
    search.add_argument("--json", action="store_true", help="print one JSON object")
    search.set_defaults(handler=_command_search)

    publish = commands.add_parser("publish", help="push a catalog and its embedding sets as a Hub dataset repo")
    publish.add_argument("--catalog", required=True, help="catalog directory")
    publish.add_argument("--embeddings", nargs="+", default=[], metavar="DIR",
                         help="embedding set directories (one per model)")
    publish.add_argument("--repo", required=True, metavar="OWNER/NAME", help="dataset repo id")
    publish.add_argument("--revision", metavar="BRANCH", help="branch to commit to (created if missing)")
    publish.add_argument("--to-dir", metavar="DIR", help="write the same repo layout locally instead of pushing")
    publish.set_defaults(handler=_command_publish)

    calibrate = commands.add_parser("calibrate", help="set an embedding set's count-half threshold by percentile")
    calibrate.add_argument("--embeddings", required=True, help="embedding set directory to calibrate")
    calibrate.add_argument("--catalog", help="its catalog (default: the catalog directory that holds it)")
    calibrate.add_argument("--images", help="directory of sample pictures as queries (CLIP; default: sample text)")
    calibrate.add_argument("--json", action="store_true")
    calibrate.set_defaults(handler=_command_calibrate)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s" if args.verbose else "notice: %(message)s")
    if not args.verbose:
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()
        transformers_logging.disable_progress_bar()
    try:
        return args.handler(args)
    except RecommenderError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:  # full disk, unwritable directory, network refused while publishing
        where = f" ({error.filename})" if getattr(error, "filename", None) else ""
        print(f"error: {error.strerror or error}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

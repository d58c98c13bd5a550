"""Command line: ``mmsearch index|reindex|search|stats|eval|export|import|serve|demo``. Thin: parsing and printing only."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from .config import MIN_RELEVANCE, Config, default_cache_path
from .errors import ConfigError, MMSearchError
from .lock import lock_for_writing
from .present import format_groups, format_hits, no_matches, stats_lines
from .records import printable

if TYPE_CHECKING:
    from .engine import SearchEngine


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (no heavy imports, so ``--help`` is instant)."""
    models = argparse.ArgumentParser(add_help=False)
    group = models.add_argument_group("database and models (also MMSEARCH_* environment variables)")
    group.add_argument("--db", help="database folder (MMSEARCH_DB; default ~/.local/share/mmsearch/db)")
    group.add_argument("--clip-model",
                       help="open_clip model name or JSON config path (MMSEARCH_CLIP_MODEL; default ViT-B-32)")
    group.add_argument("--clip-pretrained",
                       help="pretrained tag or local checkpoint file (MMSEARCH_CLIP_PRETRAINED; default openai)")
    group.add_argument("--text-model", help="sentence-transformers id or folder, 'clip' or 'minilm' (MMSEARCH_TEXT_MODEL)")
    group.add_argument("--caption-model", metavar="MODEL",
                       help="a sentence-transformers model of its own for captions and photo text, e.g. BAAI/bge-m3 "
                            "(MMSEARCH_CAPTION_MODEL; '' for none); changing it re-embeds captions only")
    group.add_argument("--trust-remote-code", action="store_true", default=None,
                       help="let the caption model run its repository's code (GTE needs it); only for repositories "
                            "you trust (MMSEARCH_TRUST_REMOTE_CODE=1)")
    group.add_argument("--chroma-url", metavar="URL",
                       help="use a Chroma server (chroma run) at http://HOST:PORT instead of --db (MMSEARCH_CHROMA_URL)")
    group.add_argument("--chroma-header", action="append", metavar="'NAME: VALUE'",
                       help="extra HTTP header for the Chroma server, repeatable (MMSEARCH_CHROMA_HEADERS); "
                            "put a token in MMSEARCH_CHROMA_TOKEN, not on the command line")
    group.add_argument("--rerank", metavar="MODEL", dest="rerank_model",
                       help="rerank the top 30 hits of text queries with this CrossEncoder (MMSEARCH_RERANK_MODEL)")
    group.add_argument("--offline", action="store_true",
                       help="offline profile: caption search with the packaged all-MiniLM-L6-v2, no image model")

    parser = argparse.ArgumentParser(
        prog="mmsearch", description="Private, local-first image search by text (any language) or image.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    index = sub.add_parser("index", parents=[models], help="index folders of images (only new or changed files are encoded)")
    index.add_argument("paths", nargs="+", metavar="PATH", help="folders (recursive) or image files")
    index.add_argument("--captions", action="append", metavar="FILE",
                       help="caption manifest (.csv or .jsonl with path,caption); repeatable")
    index.add_argument("--batch-size", type=int,
                       help="images per encoder batch (MMSEARCH_BATCH_SIZE; default 32 on the CPU, 256 on CUDA)")
    index.add_argument("--workers", type=int, metavar="N",
                       help="decode workers (MMSEARCH_WORKERS; default: one per CPU core)")
    index.add_argument("--ocr", action=argparse.BooleanOptionalAction, default=None,
                       help="read the text in photos (Chinese and English) and search it; recorded in the index, "
                            "so later runs keep doing it (MMSEARCH_OCR=1); --no-ocr turns it off")
    index.add_argument("--ocr-engine", choices=["rapidocr", "tesseract"],
                       help="OCR engine (MMSEARCH_OCR_ENGINE; default rapidocr, bundled models)")
    index.add_argument("--no-prune", action="store_true", help="keep entries whose files are gone")
    index.add_argument("--hidden", action="store_true", help="also index hidden files and folders (.name)")
    index.add_argument("--shard", metavar="I/N",
                       help="index only worker I's share of N (0-based); run N workers into one --chroma-url")
    index.add_argument("--forget-captions", action="store_true",
                       help="drop captions earlier manifests gave to files that no --captions file of this run lists")
    index.add_argument("--json", action="store_true", help="print the report as JSON on stdout")

    search = sub.add_parser("search", parents=[models], help="search the index by text, image, or both")
    search.add_argument("query", nargs="?", default="", help="text query in any language")
    search.add_argument("--image", metavar="FILE", help="query image (combined with QUERY when both are given)")
    search.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    search.add_argument("--folder", help="only images inside this folder")
    search.add_argument("--from", dest="date_from", metavar="DATE", help="only images taken on or after YYYY-MM-DD")
    search.add_argument("--to", dest="date_to", metavar="DATE", help="only images taken on or before YYYY-MM-DD")
    search.add_argument("--camera", help="only images from this camera (as shown by stats)")
    search.add_argument("--place", metavar="NAME",
                        help="only photos taken in this city, region or country (any language: Lisbon, 里斯本, Portugal)")
    search.add_argument("--near", metavar="LAT,LON", type=position, help="only photos taken near this point (with --within)")
    search.add_argument("--within", metavar="KM", type=float, default=10.0, help="radius of --near in km (default 10)")
    search.add_argument("--sort", choices=("best", "date", "date-asc"), default="best",
                        help="order of the hits: best match (default), newest first, or oldest first")
    search.add_argument("--literal", action="store_true",
                        help="take the query as text only: no dates, places, -words or field words read in it")
    search.add_argument("--text-weight", type=share, default=0.5, help="text share in a text + image query (default 0.5)")
    search.add_argument("--like", action="append", default=[], metavar="FILE",
                        help="an indexed image that is what you want: refines the query, and is remembered; repeatable")
    search.add_argument("--unlike", action="append", default=[], metavar="FILE",
                        help="an indexed image that is not: refines the query, ranks it last, is remembered; repeatable")
    search.add_argument("--no-remember", action="store_true", help="use --like/--unlike for this search only")
    search.add_argument("--min-relevance", type=share, default=MIN_RELEVANCE, metavar="R",
                        help=f"only hits at least this relevant, 0-1 (default {MIN_RELEVANCE}; see README: relevance)")
    search.add_argument("--all", action="store_true", help="the nearest k hits, however weak (no relevance floor)")
    search.add_argument("--no-collapse", action="store_true",
                        help="list every copy of a photo (by default copies fold into the best one, '+N similar')")
    search.add_argument("--json", action="store_true", help='print {"results": [...]} on stdout')

    stats = sub.add_parser("stats", parents=[models], help="what the index holds and which models built it")
    stats.add_argument("--json", action="store_true", help="print JSON on stdout")

    fb = sub.add_parser("feedback", parents=[models], help="the lasting like/unlike marks: list, clear or export them")
    fb.add_argument("action", choices=("list", "clear", "export"), help="list (or export as JSON) the marks, or clear them")
    fb.add_argument("--path", help="clear only the marks of this image")
    fb.add_argument("--query", help="clear only the marks of this query")
    fb.add_argument("--json", action="store_true", help="list as JSON (what export prints)")
    fb.add_argument("--yes", action="store_true", help="clear every mark without asking (a bare clear asks first)")

    export = sub.add_parser("export", parents=[models],
                            help="write the index (vectors and metadata) to a folder, to import elsewhere")
    export.add_argument("folder", help="new or empty folder to write")
    imp = sub.add_parser("import", parents=[models],
                         help="load an export into this database or server (no re-encoding)")
    imp.add_argument("folder", help="a folder written by mmsearch export")

    ev = sub.add_parser("eval", parents=[models], help="retrieval recall@1/5/10 on a captioned image set, per signal")
    ev.add_argument("images", help="folder the captions file's image paths are relative to")
    ev.add_argument("--captions", required=True, metavar="FILE",
                    help="Karpathy split JSON (dataset_flickr30k.json, dataset_coco.json) or path,caption[,lang] csv/jsonl")
    ev.add_argument("--image-captions", metavar="FILE",
                    help="the images' own captions (manifest csv/jsonl) for the caption and keyword signals")
    ev.add_argument("--split", default="test", help="split of a Karpathy JSON (default test)")
    ev.add_argument("--limit", type=positive, help="only the first N images")
    ev.add_argument("--corpus", choices=("library", "listed"),
                    help="what is searched: every image under IMAGES (default for csv/jsonl: your library), or only "
                         "the images the captions file lists (default for a Karpathy split, its protocol)")
    ev.add_argument("--feedback", action="store_true",
                    help="also simulate a user who marks hits: recall after 0, 1, 2 rounds, and a returning user")
    ev.add_argument("--json", action="store_true", help="print the result as JSON (recall in percent)")

    dup = sub.add_parser("duplicates", parents=[models],
                         help="groups of copies, resizes and re-encodes of one photo; move the extra copies away")
    dup.add_argument("--folder", help="only images inside this folder")
    dup.add_argument("--of", action="append", metavar="PATH",
                     help="only the groups of these indexed files or folders (e.g. new photos); repeatable")
    dup.add_argument("--max-bits", type=int, help="largest perceptual-hash distance, of 64 bits (default 8)")
    dup.add_argument("--min-cosine", type=float, help="smallest image-vector cosine (default 0.92)")
    dup.add_argument("--move-to", metavar="DIR", help="move every file but the keepers here (folder structure kept)")
    dup.add_argument("--undo", metavar="MANIFEST", help="put back the files a --move-to run moved")
    dup.add_argument("--yes", action="store_true", help="move without asking")
    dup.add_argument("--json", action="store_true", help='print {"groups": [...]} on stdout')

    re = sub.add_parser("reindex", parents=[models],
                        help="change the index's models without downtime: re-embed beside the live index, then switch")
    re.add_argument("--rollback", action="store_true", help="switch back to the previous models (while they exist)")
    re.add_argument("--drop-previous", action="store_true", help="delete the previous models' collections")
    re.add_argument("--batch-size", type=int, help="images per encoder batch (default 32 on the CPU, 256 on CUDA)")
    re.add_argument("--workers", type=int, metavar="N", help="decode workers (default: one per CPU core)")
    re.add_argument("--allow-failed", action="store_true",
                    help="switch even if some indexed files cannot be read again (they leave the index)")
    re.add_argument("--json", action="store_true", help="print the report as JSON on stdout")

    serve = sub.add_parser("serve", parents=[models], help="web search page (Gradio)")
    _server_args(serve)
    serve.add_argument("--watch", action="store_true",
                       help="also keep the index current: watch its folders and index what changes (the page shows it)")
    serve.add_argument("--poll", action="store_true", help="with --watch: poll (network mounts that send no events)")

    album = sub.add_parser("album", help="smart albums: saved searches that fill themselves")
    action = album.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = action.add_parser("add", parents=[models], help="save a search as an album: album add NAME QUERY [filters]")
    add.add_argument("name")
    add.add_argument("query", nargs="?", default="", help="as search reads it (dates and places work)")
    add.add_argument("--folder")
    add.add_argument("--from", dest="date_from", metavar="DATE")
    add.add_argument("--to", dest="date_to", metavar="DATE")
    add.add_argument("--place", metavar="NAME")
    add.add_argument("--camera")
    add.add_argument("--min-relevance", type=share, default=MIN_RELEVANCE, metavar="R",
                     help=f"photos at least this relevant join (default {MIN_RELEVANCE})")
    listing = action.add_parser("list", parents=[models], help="the albums, with their photo counts and new photos")
    listing.add_argument("--json", action="store_true")
    show = action.add_parser("show", parents=[models], help="an album's photos, new ones marked (then they count as seen)")
    show.add_argument("name")
    show.add_argument("--json", action="store_true")
    remove = action.add_parser("remove", parents=[models], help="delete an album (its photos stay indexed)")
    remove.add_argument("name")
    out = action.add_parser("export", parents=[models], help="links (or --copy copies) of its photos in a folder; safe to repeat")
    out.add_argument("name")
    out.add_argument("target", metavar="DIR")
    out.add_argument("--copy", action="store_true", help="copy the files instead of linking them")

    watch = sub.add_parser("watch", parents=[models],
                           help="keep the index current: watch its folders (or PATHs) and index what changes")
    watch.add_argument("paths", nargs="*", help="folders to watch (default: those the index holds)")
    watch.add_argument("--poll", action="store_true", help="poll instead of waiting for events (network mounts)")

    demo = sub.add_parser("demo", parents=[models],
                          help="index sample_images/ and open the web page; falls back to the offline profile")
    demo.add_argument("folder", nargs="?", default="sample_images", help="image folder (default sample_images)")
    demo.add_argument("--no-serve", action="store_true", help="index and print a sample search, do not start the web page")
    _server_args(demo)
    return parser


def position(text: str) -> tuple[float, float]:
    """``--near``'s LAT,LON as two numbers."""
    try:
        lat, lon = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not LAT,LON (e.g. 38.72,-9.14)") from None
    return lat, lon


def share(text: str) -> float:
    """An argparse type: a number from 0 to 1 (``nan`` and ``7`` are refused, not printed as NaN)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number from 0 to 1") from None
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise argparse.ArgumentTypeError(f"{text!r} is not a number from 0 to 1")
    return value


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def port(text: str) -> int:
    """An argparse type: a TCP port, 1-65535."""
    if not text.strip().isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1-65535)")
    return int(text)


def file_size(text: str) -> str:
    """An argparse type: a size as Gradio takes it, e.g. ``25mb``, ``200kb``, ``1gb``."""
    import re

    if not re.fullmatch(r"\s*\d+(\.\d+)?\s*(b|kb|mb|gb|tb)\s*", text.lower()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 25mb, 200kb or 1gb")
    return text


def _server_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=port, default=7860, help="port (default 7860)")
    parser.add_argument("--auth", metavar="FILE|USER:PASS",
                        help="require a login: a file with one user:password per line (or MMSEARCH_AUTH); "
                             "user:password works too but shows in ps")
    parser.add_argument("--allowed-host", action="append", metavar="NAME",
                        help="also answer requests for this host name (e.g. behind a reverse proxy); repeatable")
    parser.add_argument("--read-only", action="store_true",
                        help="no index runs from the page (the default on a non-loopback --host without --auth)")
    parser.add_argument("--max-file-size", type=file_size, default="25mb",
                        help="largest query-image upload (default 25mb)")
    parser.add_argument("--trust-proxy", action="store_true",
                        help="believe X-Forwarded-For from a reverse proxy on this machine (off: the login delay is "
                             "per connection address)")


def server_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments for ``web.app.launch`` from the server options."""
    from mmsearch_web.views import parse_auth

    auth = args.auth or Config.from_env().auth
    watching = {"watch": True, "poll": args.poll} if getattr(args, "watch", False) else {}
    return {"host": args.host, "port": args.port, "auth": parse_auth(auth), "read_only": args.read_only,
            "max_file_size": args.max_file_size, "allowed_host": args.allowed_host, "trust_proxy": args.trust_proxy,
            **watching}


def config_from_args(args: argparse.Namespace) -> Config:
    """Config from defaults, environment and command-line options (options win)."""
    config = Config.from_env(db=args.db, clip_model=args.clip_model, clip_pretrained=args.clip_pretrained,
                             text_model=args.text_model, caption_model=args.caption_model,
                             trust_remote_code=args.trust_remote_code, batch_size=getattr(args, "batch_size", None),
                             workers=getattr(args, "workers", None), ocr=getattr(args, "ocr", None),
                             ocr_engine=getattr(args, "ocr_engine", None),
                             chroma_url=args.chroma_url,
                             chroma_headers="; ".join(args.chroma_header) if args.chroma_header else None,
                             rerank_model=args.rerank_model)
    return Config.offline_profile(config) if args.offline else config


class _Stderr(logging.StreamHandler):
    """A handler that writes to ``sys.stderr`` as it is at each message (tests and the page swap it)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("mmsearch: %(message)s"))

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure_logging(level: int = logging.INFO) -> None:
    """The library logs (``logging.getLogger("mmsearch....")``) and never prints; the command line shows its
    messages on stderr, one line each, prefixed ``mmsearch:``. Idempotent."""
    root = logging.getLogger("mmsearch")
    if not any(isinstance(h, _Stderr) for h in root.handlers):
        root.addHandler(_Stderr())
    root.setLevel(level)


# Commands that only read (their writes, feedback, are done when they return): the program ends them without
# tearing down what they loaded. At a million photos that teardown (Chroma's vector indexes, the keyword
# index) took 0.7 s after the results were printed.
LEAVE_AT_ONCE = frozenset({"search", "stats"})


def run(argv: Sequence[str] | None = None) -> NoReturn:
    """The ``mmsearch`` program: ``main``, then its exit code; after ``LEAVE_AT_ONCE`` commands, once the
    output and the logs are flushed, without tearing down the interpreter."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    code = _main(args)
    if args.command in LEAVE_AT_ONCE:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except OSError:  # a closed pipe (``| head``): what was written is all that can be
            code = code or 1
        logging.shutdown()
        os._exit(code)
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 error, 130 interrupted)."""
    return _main(build_parser().parse_args(argv))


def _main(args: argparse.Namespace) -> int:
    """``main`` once the command line is parsed."""
    configure_logging()
    try:
        return COMMANDS[args.command](args)
    except MMSearchError as exc:
        print(f"mmsearch: error: {exc}{_pinned_by_environment(exc)}", file=sys.stderr)
        return 1
    except OSError as exc:  # a file or folder named on the command line that cannot be used as asked
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"mmsearch: error: {printable(where)}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except UnicodeDecodeError as exc:
        print(f"mmsearch: error: a file given is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mmsearch: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


def _engine(args: argparse.Namespace, existing: bool = False) -> SearchEngine:
    """The engine of the command's options; ``existing``: the command only reads, and an embedded database
    that does not exist yet is an error (never made as a side effect)."""
    from .engine import SearchEngine

    config = config_from_args(args)
    if existing:
        require_index(config)
    return SearchEngine(config=config)


def require_index(config: Config) -> None:
    """Raises ConfigError when ``config`` names an embedded database folder that does not exist."""
    if not config.chroma_url and not Path(config.db).expanduser().is_dir():
        raise ConfigError(f"there is no index at {config.db}; `mmsearch index FOLDER --db {config.db}` makes one")


SHOWN_SKIPPED = 10  # skipped files listed on stderr; all of them go to <db>/skipped.tsv


def cmd_index(args: argparse.Namespace) -> int:
    engine = _engine(args)
    report = engine.index(args.paths, captions=args.captions, prune=not args.no_prune, progress=not args.json,
                          hidden=args.hidden, shard=args.shard, forget_captions=args.forget_captions)
    listings = Path(engine.config.local_dir)
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        shard = f" (shard {args.shard})" if args.shard else ""
        print(f"indexed into {engine.config.chroma_url or engine.config.db}{shard}: {report.summary()}")
    _write_listing(report.failed, listings / "skipped.tsv", "skipped", quiet=args.json)
    _write_listing(report.warnings, listings / "warnings.tsv", "indexed with a warning", quiet=args.json)
    if report.captions_removed and not args.json:
        print(f"mmsearch: {report.captions_removed} captions were removed (sidecars or manifests changed"
              f"{', --forget-captions' if args.forget_captions else ''})", file=sys.stderr)
    if report.interrupted:
        print("mmsearch: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


def cmd_reindex(args: argparse.Namespace) -> int:
    from .errors import DatabaseBusyError

    config = config_from_args(args)
    given = _given_models(args, config)
    action = "rollback" if args.rollback else "drop-previous" if args.drop_previous else "reindex"
    try:
        lock_for_writing(config)
    except DatabaseBusyError:
        if args.drop_previous and args.rollback:
            raise
        options = {"models": given, "batch_size": args.batch_size, "allow_failed": args.allow_failed}
        return _handed_over(args, config, action, options)
    if args.rollback or args.drop_previous:
        return _switch_back(args)
    from .engine import SearchEngine
    from .ingest.reindex import target_config
    from .store.client import Store

    engine = SearchEngine(config=target_config(config, given, Store.from_config(config).models() or {}))
    report = engine.reindex(batch_size=args.batch_size, workers=args.workers, progress=not args.json,
                            allow_failed=args.allow_failed)
    _print_reindex(args, engine.config.chroma_url or engine.config.db, report.to_dict(), report.summary())
    if report.failed:
        _write_listing(report.failed, Path(config.local_dir) / "reindex-failed.tsv", "not read again", quiet=args.json)
    if report.interrupted:
        print("mmsearch: interrupted before the switch; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


def _given_models(args: argparse.Namespace, config: Config) -> dict[str, str]:
    """The model settings given by options or MMSEARCH_* variables (``--offline`` gives all of them)."""
    from .config import ENV_VARS, MODEL_FIELDS

    env = {name for var, name in ENV_VARS.items() if os.environ.get(var)}
    chosen = [f for f in (*MODEL_FIELDS, "caption_model") if args.offline or getattr(args, f) is not None or f in env]
    return {f: getattr(config, f) for f in chosen if getattr(config, f) is not None}


def _switch_back(args: argparse.Namespace) -> int:
    from .ingest.reindex import drop_previous, rollback

    store, where = _store(args, write=True)
    done: dict[str, Any] = {}
    if args.rollback:
        done["active"] = rollback(store)
        models = store.beside(done["active"]).signature() or {}
        if not args.json:
            print(f"{where} switched back to image model {models.get('image_model')}, text model "
                  f"{models.get('text_model')}; they answer as of when they were replaced (`mmsearch index` updates them)")
    if args.drop_previous:
        done["dropped"] = drop_previous(store, config_from_args(args))
        if not args.json:
            print(f"{where}: dropped {len(done['dropped'])} previous generations of collections"
                  + (f" ({', '.join(done['dropped'])})" if done["dropped"] else ""))
    if args.json:
        print(json.dumps(done))
    return 0


def _handed_over(args: argparse.Namespace, config: Config, action: str, options: dict[str, Any]) -> int:
    """The database is held by a running ``serve``: it does the job (``mmsearch.ingest.handoff``) and we show it."""
    from .errors import ReindexError
    from .ingest.handoff import hand_over
    from .lock import acquire_writer_lock

    try:
        status = hand_over(config.db, action, options, progress=not args.json)
    except KeyboardInterrupt:
        print("mmsearch: asked the server to stop after its current batch; run the same command again to resume",
              file=sys.stderr)
        return 130
    if status is None:  # nobody took it: the holder is not a serving mmsearch; its own message
        acquire_writer_lock(config.db)
        if action == "undo-duplicates":
            return cmd_duplicates(args)  # the holder finished meanwhile
        return _switch_back(args) if action != "reindex" else cmd_reindex(args)
    if status["state"] == "cancelled":
        print(f"mmsearch: the {action} was cancelled before the server started it", file=sys.stderr)
        return 130
    if status["state"] == "failed":
        if action == "undo-duplicates":
            raise MMSearchError(f"the server (pid {status.get('pid')}) could not undo the moves: {status.get('error')}")
        raise ReindexError(f"the server (pid {status.get('pid')}) could not {action}: {status.get('error')}")
    if action == "undo-duplicates":
        print(_moved_back(int(status.get("back", 0)), list(status.get("left") or []))
              + f" (by the serving process, pid {status.get('pid')})")
        return 0
    if action != "reindex":
        print(json.dumps({k: status[k] for k in ("active", "dropped") if k in status}) if args.json else
              f"{config.db}: {action} done by the serving process (pid {status.get('pid')})")
        return 0
    _print_reindex(args, f"{config.db} (by the serving process, pid {status.get('pid')})", status["report"],
                   status["summary"])
    return 130 if status["report"].get("interrupted") else 0


def _print_reindex(args: argparse.Namespace, where: str, report: dict[str, Any], summary: str) -> None:
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return
    print(f"reindexed {where}: {summary}")
    if report.get("switched"):
        models = report["models"]
        print(f"now answering with image model {models['image_model']}, text model {models['text_model']}, "
              f"captions by {models['caption_model']}; `mmsearch reindex --rollback` switches back, "
              f"`--drop-previous` frees the old collections")


def _write_listing(items: list[tuple[str, str]], listing: Path, what: str, quiet: bool = False) -> None:
    """All ``(path, reason)`` items in ``listing`` (path TAB reason, one per line; tab, newline and backslash
    written as ``\\t``, ``\\n``, ``\\\\``), and the first few new ones on stderr: those listed by the run
    before for the same reason are counted "as before", not repeated."""
    lines = [f"{tsv_field(path)}\t{tsv_field(reason)}\n" for path, reason in items]
    try:
        before = set(listing.read_text(encoding="utf-8").splitlines(keepends=True))
    except (OSError, UnicodeDecodeError):
        before = set()
    listing.unlink(missing_ok=True)
    if not items:
        return
    listing.parent.mkdir(parents=True, exist_ok=True)
    listing.write_text("".join(lines), encoding="utf-8")
    if quiet:
        return
    fresh = [item for item, line in zip(items, lines) if line not in before]
    for path, reason in fresh[:SHOWN_SKIPPED]:
        print(f"  {what} {printable(path)!s}: {printable(reason)}".replace("\n", "\\n"), file=sys.stderr)
    more = f" ({len(fresh) - SHOWN_SKIPPED} more)" if len(fresh) > SHOWN_SKIPPED else ""
    noun = "file" if len(fresh) == 1 else "files"
    again = len(items) - len(fresh)
    if fresh:
        print(f"{len(fresh)} {'new ' if again else ''}{noun} {what}{more}; full list: {listing}", file=sys.stderr)
    if again:
        print(f"{again} {what} as before (see {listing})", file=sys.stderr)


def tsv_field(text: str) -> str:
    """One field of a listing: printable UTF-8, with no raw tab or newline."""
    return printable(text).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def cmd_search(args: argparse.Namespace) -> int:
    engine = _engine(args, existing=True)
    engine.warm_up()  # the vector indexes load while the keyword index and the text model do
    understood = engine.understand(args.query) if args.query and not args.literal else None
    with _warnings_named(args.image):
        hits = engine.search(args.query, image=args.image, k=args.k, folder=args.folder, date_from=args.date_from,
                             date_to=args.date_to, camera=args.camera, text_weight=args.text_weight,
                             positive=args.like, negative=args.unlike,
                             min_relevance=None if args.all else args.min_relevance, collapse=not args.no_collapse,
                             place=args.place, near=(*args.near, args.within) if args.near else None, sort=args.sort,
                             literal=args.literal)
    said = understood.describe(engine.places) if understood is not None and understood.parsed else ""
    if args.query and not args.no_remember:
        for path, relevant in [(p, True) for p in args.like] + [(p, False) for p in args.unlike]:
            engine.feedback(args.query, path, relevant)
    if args.json:
        signature = engine.signature
        models = {"image": signature["image_model"], "text": signature["text_model"], "caption": signature["caption_model"]}
        print(json.dumps({"models": models, **({"understood": said} if said else {}),
                          "results": [h.to_dict() for h in hits]}, ensure_ascii=False, indent=2))
        return 0
    if said:
        print(f"understood: {said}")
    if not hits and not args.all:
        print(_folder_hint(engine, args.folder) or no_matches(args.query or args.image or "the examples"))
    else:
        if engine.has_caption_space and hits:  # say which model the caption column comes from
            print(f"caption and ocr scores by {engine.signature['caption_model']}")
        print(format_hits(hits))
    return 0


@contextmanager
def _warnings_named(image: str | None) -> Iterator[None]:
    """Pillow's warnings while reading the query image ("Corrupt EXIF data") name it, on one line, as
    indexing names the file that raised them."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.filterwarnings("always", module=r"PIL(\.|$)")
        yield
    for item in caught:
        where = f"{printable(image)}: " if image else ""
        print(f"mmsearch: warning: {where}{item.category.__name__}: {item.message}", file=sys.stderr)


def _pinned_by_environment(exc: MMSearchError) -> str:
    """For an index built with other models: the ``MMSEARCH_*`` variables that pinned the models asked for
    (a shell profile's leftover is easy to miss)."""
    from .config import ENV_VARS, MODEL_FIELDS
    from .errors import IndexMismatchError

    if not isinstance(exc, IndexMismatchError):
        return ""
    pinned = [f"{var}={os.environ[var]}" for var, name in ENV_VARS.items()
              if os.environ.get(var) and name in (*MODEL_FIELDS, "caption_model")]
    return f" (this environment sets {', '.join(pinned)}: unset it to use the index's models)" if pinned else ""


def _folder_hint(engine: SearchEngine, folder: str | None) -> str | None:
    """Why a search with ``--folder`` found nothing, when the folder is none the index holds."""
    from .search.filters import unknown_folder

    if not folder:
        return None
    return unknown_folder(folder, engine.facets()["folders"], engine.store.roots())


def cmd_feedback(args: argparse.Namespace) -> int:
    engine = _engine(args, existing=True)
    if args.action == "clear":
        if args.path is None and args.query is None and not args.yes:
            count = len(engine.feedback_marks())
            if count and not _confirm(f"forget all {count} marks? [y/N] "):
                print("mmsearch: no marks removed (answer y, or add --yes; --path/--query clear some)", file=sys.stderr)
                return 1
        removed = engine.forget_feedback(args.path, args.query)
        print(f"removed {removed} marks")
        return 0
    marks = engine.feedback_marks()
    if args.action == "export" or args.json:
        print(json.dumps({"marks": [m.to_dict() for m in marks]}, ensure_ascii=False, indent=2))
    else:
        for m in marks:
            stamp = datetime.fromtimestamp(m.time).isoformat(sep=" ", timespec="minutes")
            print(f"{stamp}  {'like  ' if m.relevant else 'unlike'}  {m.query!r}  {m.path}")
        print(f"{len(marks)} marks")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    stats = _engine(args, existing=True).stats()
    if args.json:
        print(json.dumps(stats, ensure_ascii=False, indent=2))
        return 0
    print(stats_lines(stats))
    return 0


def _store(args: argparse.Namespace, write: bool) -> tuple[Any, str]:
    """The store named by --db / --chroma-url (no models needed), and how to name it."""
    from .store.client import Store

    config = config_from_args(args)
    if write:
        lock_for_writing(config)
    else:
        require_index(config)
    return Store.from_config(config), config.chroma_url or config.db


def cmd_export(args: argparse.Namespace) -> int:
    from .transfer import export_index

    store, where = _store(args, write=False)
    manifest = export_index(store, args.folder, progress=True)
    print(f"exported {manifest['images']} images and {manifest['captions']} captions from {where} to {args.folder}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from .transfer import import_index

    store, where = _store(args, write=True)
    result = import_index(store, args.folder, progress=True)
    new, present = result["new"], result["present"]
    if not new["images"] and not new["captions"]:
        print(f"nothing to import: all {present['images']} images and {present['captions']} captions of {args.folder} "
              f"were already in {where}")
        return 0
    print(f"imported {new['images']} images and {new['captions']} captions into {where} "
          f"({present['images']} images and {present['captions']} captions were already there; "
          f"models {result['image_model']}, {result['text_model']})")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import hashlib
    from dataclasses import replace

    from .engine import SearchEngine
    from .evaluation import evaluate, evaluate_feedback, format_feedback, format_table, load_dataset

    config = config_from_args(args)
    data = load_dataset(args.captions, args.images, args.split, args.limit)
    corpus = args.corpus or data.corpus
    if not args.db and not config.chroma_url:  # a cache per image folder, corpus and models: re-runs encode nothing
        key = hashlib.sha1(f"{Path(args.images).absolute()}|{corpus}|{config.clip_model}|{config.clip_pretrained}|"
                           f"{config.text_model}".encode()).hexdigest()[:12]
        config = replace(config, db=str(Path(default_cache_path()) / f"eval-{key}"))
    engine = SearchEngine(config=config)
    result = evaluate(engine, data, progress=lambda msg: print(msg, file=sys.stderr), image_captions=args.image_captions,
                      corpus=corpus)
    if args.feedback:
        print("simulating a user who marks hits", file=sys.stderr)
        result["feedback"] = evaluate_feedback(engine, data)
    text = format_table(result) + (format_feedback(result["feedback"]) if args.feedback else "")
    print(json.dumps(result, indent=2) if args.json else text)
    return 0


def cmd_duplicates(args: argparse.Namespace) -> int:
    from .errors import DatabaseBusyError

    if args.undo:
        config = config_from_args(args)
        try:
            lock_for_writing(config)
        except DatabaseBusyError:  # a running serve holds the database: it puts the files back
            return _handed_over(args, config, "undo-duplicates", {"manifest": os.path.abspath(args.undo)})
        back, left = _engine(args).undo_duplicate_moves(args.undo)
        print(_moved_back(back, left))
        return 0
    engine = _engine(args, existing=True)
    groups = engine.duplicates(args.folder, args.max_bits, args.min_cosine, of=args.of)
    if args.json:
        print(json.dumps({"groups": [g.to_dict() for g in groups]}, ensure_ascii=False, indent=2))
    else:
        print(format_groups(groups))
    if not args.move_to or not groups:
        return 0
    extra = sum(len(g.members) - 1 for g in groups)
    if not args.yes and not _confirm(f"move {extra} files of {len(groups)} groups to {args.move_to}? [y/N] "):
        print("mmsearch: nothing moved (answer y, or add --yes)", file=sys.stderr)
        return 1
    manifest = engine.move_duplicates(groups, args.move_to)
    print(f"moved {extra} files to {args.move_to}; undo with: mmsearch duplicates --undo {manifest}")
    return 0


def _moved_back(back: int, left: list[str]) -> str:
    return f"moved {back} files back" + (f"; {len(left)} left where they are (gone, or their place is taken)"
                                         if left else "")


def _confirm(question: str) -> bool:
    try:
        return input(question).strip().lower() in ("y", "yes")
    except EOFError:  # no terminal: never yes
        return False


def cmd_serve(args: argparse.Namespace) -> int:
    from mmsearch_web.app import launch

    options = server_options(args)  # malformed --auth fails before the models load
    launch(_engine(args), **options)
    return 0


def cmd_album(args: argparse.Namespace) -> int:
    engine = _engine(args, existing=True)
    if args.action == "add":
        filters = {k: getattr(args, k) for k in ("folder", "date_from", "date_to", "place", "camera")}
        album = engine.add_album(args.name, args.query, min_relevance=args.min_relevance, **filters)
        print(f"album {album.name!r}: {len(album.photos)} photos now; it fills itself after each index or watch run")
    elif args.action == "list":
        albums = engine.albums
        if args.json:
            print(json.dumps({"albums": [a.to_dict() for a in albums]}, ensure_ascii=False, indent=2))
        for a in albums if not args.json else []:
            new = f", {len(a.new)} new" if a.new else ""
            print(f"{a.name}: {len(a.photos)} photos{new}  ({a.query!r}{_album_filters(a.filters)})")
        if not albums and not args.json:
            print("no albums yet; mmsearch album add NAME QUERY makes one")
    elif args.action == "show":
        album, photos = engine.album(args.name)
        if args.json:
            print(json.dumps({"album": album.to_dict(), "photos": [p.to_dict() for p in photos]}, ensure_ascii=False,
                             indent=2))
            return 0
        print(f"{album.name}: {len(photos)} photos, {sum(p.new for p in photos)} new since you last looked")
        for p in photos:
            print(f"{'new ' if p.new else '    '}{p.relevance:6.3f}  {p.path}")
    elif args.action == "remove":
        engine.remove_album(args.name)
        print(f"removed album {args.name!r} (its photos stay indexed)")
    else:
        made, present = engine.export_album(args.name, args.target, copy=args.copy)
        what = "copied" if args.copy else "linked"
        print(f"{made} photos {what} into {args.target}, {present} there already")
    return 0


def _album_filters(filters: dict[str, str]) -> str:
    return "".join(f", {k} {v}" for k, v in filters.items())


def cmd_watch(args: argparse.Namespace) -> int:
    """Catch up once (files changed while nothing watched), then index what changes until Ctrl-C or SIGTERM,
    which stop after the batch being stored and release the lock."""
    import signal
    import threading

    engine = _engine(args)
    engine.lock_for_writing()
    watcher = engine.watcher(args.paths or None, poll=args.poll,
                             on_run=lambda report: print(f"indexed: {report.summary()}", flush=True))
    stop = threading.Event()

    def on_term(signum: int, frame: object) -> None:
        stop.set()
        signal.raise_signal(signal.SIGINT)  # a run under way stops after its batch, as Ctrl-C makes it

    signal.signal(signal.SIGTERM, on_term)
    present = [r for r in watcher.roots if os.path.isdir(r)]
    try:
        if present:
            print(f"catching up: {engine.index(present, progress=True).summary()}", flush=True)
        print(f"watching {', '.join(watcher.roots)} (Ctrl-C stops)", flush=True)
        watcher.run(stop)
    except KeyboardInterrupt:
        pass
    print(f"stopped watching after {watcher.status.runs} run(s)", flush=True)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(config_from_args(args), args.folder, serve=not args.no_serve, explicit_db=bool(args.db),
                    server=server_options(args) if not args.no_serve else None)


COMMANDS: dict[str, Any] = {"index": cmd_index, "reindex": cmd_reindex,
                           "search": cmd_search, "stats": cmd_stats, "serve": cmd_serve, "demo": cmd_demo,
                           "watch": cmd_watch, "album": cmd_album,
                           "export": cmd_export, "import": cmd_import, "eval": cmd_eval, "duplicates": cmd_duplicates,
                           "feedback": cmd_feedback}

"""What the web page shows, as plain data: gallery items, hit details, index facts. No Gradio here.

Every handler turns ``MMSearchError`` into a message for the page, so users see a sentence, never a
stack trace.
"""

from __future__ import annotations

import html
import os
import re
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmsearch.config import MIN_RELEVANCE
from mmsearch.errors import ImageReadError, MMSearchError, QueryError
from mmsearch.records import clock

from .guard import original_url

if TYPE_CHECKING:
    from mmsearch import Hit, SearchEngine
    from mmsearch.media.thumbnails import ThumbnailCache

THUMBNAIL_THREADS = 4
SORTS = {"best match": "best", "newest": "date", "oldest": "date-asc"}  # the page's order toggle -> ``sort``
PLAYER_HEIGHT = 480  # px: the player's height at most, as the preview's
GalleryItem = tuple[str, str]  # (thumbnail path, label)


@dataclass
class Results:
    """One answer of the page: gallery tiles, the hits behind them (JSON-able), a status line."""

    items: list[GalleryItem] = field(default_factory=list)
    hits: list[dict[str, Any]] = field(default_factory=list)
    status: str = ""

    def as_outputs(self) -> tuple[list[GalleryItem], list[dict[str, Any]], str, list[dict[str, Any]]]:
        """Gallery, hits (API), status, and the hits again for the page's server-side state."""
        return self.items, self.hits, self.status, self.hits


@dataclass(frozen=True)
class SearchForm:
    """The search inputs of the page, with the values Gradio hands over (empty strings for unset)."""

    query: str = ""
    image: str | None = None
    k: Any = 12  # as sent; checked by the engine (a huge or odd k gets a sentence, not a traceback)
    min_relevance: Any = MIN_RELEVANCE  # 0 shows the nearest k, however weak
    text_weight: float = 0.5
    folder: str | None = None
    date_from: str | None = None
    date_to: str | None = None
    camera: str | None = None
    like: list[str] | None = None  # indexed images marked relevant / not relevant for this query
    unlike: list[str] | None = None
    place: str | None = None  # a place key of the Places facet (or a name)
    sort: str = "best"  # "best", "date" (newest first), "date-asc"

    def floor(self) -> float | None:
        """The relevance floor asked for; 0 (or nothing) means none: the nearest k."""
        try:
            value = float(self.min_relevance or 0)
        except (TypeError, ValueError):
            return MIN_RELEVANCE  # an odd value sent to the API: the default, not a traceback
        return value if value > 0 else None

    def filters(self) -> dict[str, Any]:
        return {"folder": self.folder or None, "date_from": (self.date_from or "").strip() or None,
                "date_to": (self.date_to or "").strip() or None, "camera": self.camera or None}


def example_paths(value: Any, name: str = "like") -> list[str]:
    """The page's (or the API's) list of marked image paths, each once.

    Raises:
        QueryError: it is not a list of paths.
    """
    if value is None or value == "":
        return []
    if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
        raise QueryError(f"{name} is a list of indexed image paths, got {str(value)[:80]!r}")
    return list(dict.fromkeys(value))


def run_search(engine: SearchEngine, thumbs: ThumbnailCache, form: SearchForm) -> Results:
    """Search with the form's query, image and filters; errors become the status line."""
    if not (form.query or "").strip() and not form.image and not form.like:
        return Results(status="Type a query (any language) or add an image.")
    try:
        hits = engine.search(form.query or None, image=form.image or None, k=form.k, min_relevance=form.floor(),
                             text_weight=form.text_weight, positive=example_paths(form.like),
                             negative=example_paths(form.unlike, "unlike"), collapse=True, place=form.place or None,
                             sort=SORTS.get(form.sort, form.sort or "best"), **form.filters())
        understood = engine.understand(form.query) if (form.query or "").strip() else None
    except MMSearchError as exc:
        return Results(status=f"⚠️ {exc}")
    said = f" · understood: {understood.describe(engine.places)}" if understood is not None and understood.parsed else ""
    if not hits and form.floor() is not None:
        asked = (form.query or "").strip() or "this image"
        return Results(status=f"No close matches for {asked!r}{said}. Set “Relevance at least” to 0 to see the nearest.")
    return _results(hits, thumbs, "", said)


def run_similar(engine: SearchEngine, thumbs: ThumbnailCache, path: str, form: SearchForm) -> Results:
    """"More like this": images nearest to an indexed image's stored vector."""
    try:
        hits = engine.similar(path, k=form.k, min_relevance=form.floor(), collapse=True, **form.filters())
    except MMSearchError as exc:
        return Results(status=f"⚠️ {exc}")
    if not hits and form.floor() is not None:
        return Results(status=f"No close matches like {Path(path).name}. Set “Relevance at least” to 0 to see the "
                              "nearest.")
    return _results(hits, thumbs, f" like {Path(path).name}")


def _results(hits: list[Hit], thumbs: ThumbnailCache, what: str, said: str = "") -> Results:
    with ThreadPoolExecutor(THUMBNAIL_THREADS) as pool:
        thumb_paths = list(pool.map(lambda h: thumbnail_of(thumbs, h.path, h.metadata, time=h.time), hits))
    shown = [(hit, thumb) for hit, thumb in zip(hits, thumb_paths) if thumb is not None]
    missing = len(hits) - len(shown)
    status = f"{len(shown)} result{'s' if len(shown) != 1 else ''}{what}" if shown else f"No results{what}."
    if missing:
        status += f" ({missing} indexed file{'s' if missing > 1 else ''} no longer readable; re-index to drop them)"
    status += said
    tails = distinct_tails([hit.path for hit, _ in shown])
    return Results([(thumb, hit_label(hit, tail)) for (hit, thumb), tail in zip(shown, tails)],
                   [hit_record(hit) for hit, _ in shown], status)


def hit_record(hit: Hit) -> dict[str, Any]:
    """A hit as the page and its API return it. The path is under ``file``: Gradio would treat a ``path``
    key as a file to upload to the client."""
    from mmsearch.ids import image_id

    data = hit.to_dict()
    data["metadata"] = {k: v for k, v in data["metadata"].items() if k != "path"}
    return {"file": data.pop("path"), "id": image_id(hit.path), **data}


def thumbnail_of(thumbs: ThumbnailCache, path: str, meta: dict[str, Any], size: str = "thumb",
                 time: float | None = None) -> str | None:
    """The thumbnail of an indexed file, made only while the file is still the image that was indexed
    (``mmsearch.media.identity``: not a link or a file put in its place); None when it is not, or cannot
    be read. A video's is its frame at ``time`` (the moment that matched), else its poster frame."""
    from mmsearch.media.identity import still_indexed

    if not still_indexed(path, meta):
        return None
    try:
        return str(thumbs.get(path, size, time if time is not None else meta.get("poster")))
    except ImageReadError:
        return None


def hit_label(hit: Hit, shown_path: str | None = None) -> str:
    """Gallery caption: the file's name with as much of its folder as tells it apart (``shown_path``, see
    ``distinct_tails``), its relevance as a word, the copies folded into it, then its best caption. The raw
    signal scores are in the larger view (``hit_details``), where nothing is cut."""
    caption = f" — {hit.caption}" if hit.caption else ""
    name = shown_path or f"{Path(hit.path).parent.name}/{Path(hit.path).name}"
    if hit.time is not None:
        name += f" @ {clock(hit.time)}"
    similar = f" · +{len(hit.similar)} similar" if hit.similar else ""
    return f"{name} · {relevance_word(hit.relevance)}{similar}{caption}"


def relevance_word(relevance: float) -> str:
    """A hit's relevance for people: a word and the number."""
    word = "strong match" if relevance >= 0.9 else "match" if relevance >= MIN_RELEVANCE else "weak"
    return f"{word} {relevance:.2f}"


def distinct_tails(paths: list[str], most: int = 6) -> list[str]:
    """The shortest ends of ``paths`` (at least the parent folder and the name) that differ from each other:
    ``48x48/legacy/face-monkey.png`` and ``16x16/legacy/face-monkey.png``, not ``legacy/face-monkey.png`` twice."""
    parts = [Path(p).parts for p in paths]
    depth = [2] * len(paths)
    for _ in range(most):
        tails = ["/".join(p[-d:]) for p, d in zip(parts, depth)]
        clashing = {t for t in tails if tails.count(t) > 1}
        if not clashing:
            break
        depth = [d + 1 if t in clashing else d for t, d in zip(tails, depth)]
    return ["/".join(p[-d:]) for p, d in zip(parts, depth)]


def marks_markdown(like: list[str] | None, unlike: list[str] | None) -> str:
    """The marks of this search, as the page lists them."""
    rows = ([f"- ✓ relevant: `{Path(p).name}`" for p in like or []]
            + [f"- ✗ not relevant: `{Path(p).name}`" for p in unlike or []])
    return "**Marks for this search** (Refine reruns it with them)\n" + "\n".join(rows) if rows else ""


def hit_details(hit: dict[str, Any], query: str = "") -> str:
    """Markdown for the larger view of one hit: where it is, when, what camera, its captions, its scores.
    With ``query``, opening the original records a weak like for it (``mmsearch.search.feedback.OPENED``)."""
    meta = hit.get("metadata", {})
    rows = [("File", f"`{hit['file']}`"), ("Folder", f"`{meta.get('folder', os.path.dirname(hit['file']))}`")]
    if meta.get("width"):
        rows.append(("Size", f"{meta['width']} × {meta['height']} px, {_bytes(int(meta.get('size', 0)))}"))
    if meta.get("date"):
        source = "taken" if meta.get("date_source") == "exif" else "modified"
        rows.append(("Date", f"{datetime.fromtimestamp(int(meta['date'])):%Y-%m-%d %H:%M} ({source})"))
    if meta.get("camera"):
        rows.append(("Camera", html.escape(str(meta["camera"]))))
    if meta.get("lat") is not None and meta.get("lon") is not None:
        where = f"{plain(str(meta['place']))} · " if meta.get("place") else ""
        rows.append(("Place", f"{where}{float(meta['lat']):.5f}, {float(meta['lon']):.5f}"))
    if meta.get("kind") == "video":
        moment = f", best match at {clock(float(hit['time']))}" if hit.get("time") is not None else ""
        rows.append(("Video", f"{clock(float(meta.get('duration') or 0))} long, {meta.get('frames', 0)} frames searched{moment}"))
    scores = ", ".join(f"{k} {'n/a' if v is None else f'{v:.3f}'}" for k, v in hit["scores"].items())
    rows.append(("Relevance", relevance_word(float(hit.get("relevance") or 0.0))))
    rows.append(("Score", f"{hit['score']:.3f} ({scores})"))
    if hit.get("similar"):
        rows.append(("Copies", ", ".join(f"`{p}`" for p in hit["similar"])))
    captions = meta.get("captions") or ([hit["caption"]] if hit["caption"] else [])
    link = original_url(hit["id"]) + (f"?q={urllib.parse.quote(query)}" if query.strip() else "")
    if meta.get("kind") == "video" and hit.get("time") is not None:
        link += f"#t={float(hit['time']):.1f}"
    rows.append(("Original", f"[open full size]({link})"))
    text = "\n".join(f"- **{k}**: {v}" for k, v in rows)
    listed = "\n".join(f"- {plain(c)}" for c in captions) or "_no captions_"
    out = f"### {html.escape(Path(hit['file']).name)}\n\n{text}\n\n**Captions**\n\n{listed}"
    if meta.get("ocr"):  # an HTML block: Markdown leaves it alone, so the text reads as it was read
        lines = "<br>".join(html.escape(line, quote=False) for line in str(meta["ocr"]).splitlines())
        out += (f"\n\n**Text in photo** (confidence {float(meta.get('ocr_confidence', 0)):.2f})\n\n"
                f'<div class="ocr-text">{lines}</div>')
    return out


def video_player(hit: dict[str, Any]) -> str:
    """An HTML5 player of a video hit that starts at the moment that matched (a ``#t=`` media fragment on
    the checked original, which answers range requests); "" for photos."""
    if hit.get("metadata", {}).get("kind") != "video":
        return ""
    start = float(hit.get("time") or hit.get("metadata", {}).get("poster") or 0.0)
    source = html.escape(f"{original_url(hit['id'])}#t={start:.1f}", quote=True)
    return (f'<video id="hit-video" controls autoplay muted playsinline preload="metadata" src="{source}" '
            f'style="width:100%;max-height:{PLAYER_HEIGHT}px;background:#000"></video>')


def plain(text: str) -> str:
    """Text from a file (a caption, the text read in a photo) shown as it is in Markdown: HTML escaped,
    and Markdown's own punctuation too, so "[win](http://...)" on a sign is not a link."""
    return re.sub(r"([\\`*_{}\[\]()#+!|>~-])", r"\\\1", html.escape(text, quote=False))


def stats_markdown(stats: dict[str, Any], profile: str) -> str:
    """The index panel's facts: counts, models, folders, last update."""
    stamp = stats.get("updated_at")
    updated = f"{datetime.fromtimestamp(stamp):%Y-%m-%d %H:%M}" if stamp else "never"
    folders = "\n".join(f"- `{r}`" for r in stats.get("roots", [])) or "- none yet"
    return (f"**{stats['images']} images**, {stats['captions']} captions · last updated {updated}\n\n"
            f"{profile}\n\n- image model: `{stats['image_model']}`\n- text model: `{stats['text_model']}`\n"
            f"- caption model: `{stats.get('caption_model') or stats['text_model']}`\n"
            f"- text in photos: {_ocr_state(stats)}\n{_generation_state(stats)}\n**Indexed folders**\n{folders}")


def _generation_state(stats: dict[str, Any]) -> str:
    """What ``mmsearch reindex`` left: previous models to roll back to, a reindex under way."""
    lines = []
    if stats.get("previous"):
        lines.append("- previous models kept: `mmsearch reindex --rollback` switches back")
    if stats.get("reindexing"):
        lines.append("- a reindex to new models is under way (or was stopped: run it again)")
    return "".join(line + "\n" for line in lines)


def _ocr_state(stats: dict[str, Any]) -> str:
    if not stats.get("ocr") and not stats.get("texts"):
        return "not read (`mmsearch index --ocr` reads it)"
    texts = stats.get("texts", 0)
    return f"read with `{stats.get('ocr') or 'no engine now'}`, {texts} photo{'' if texts == 1 else 's'} with text"


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def parse_auth(value: str | None) -> list[tuple[str, str]] | None:
    """``--auth user:pass``, or a file with one ``user:pass`` per line; None when not set.

    Raises:
        ConfigError: malformed credentials.
    """
    from mmsearch.errors import ConfigError

    if not value:
        return None
    lines = Path(value).read_text(encoding="utf-8").splitlines() if os.path.isfile(value) else [value]
    pairs = []
    for line in (raw.strip() for raw in lines):
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            raise ConfigError("--auth takes user:password, or a file with one user:password per line")
        pairs.append((user, password))
    if not pairs:
        raise ConfigError(f"--auth file {value} holds no user:password line")
    return pairs

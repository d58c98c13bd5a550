"""How results and index facts read for people: the CLI table, the profile line, the stats lines.

Shared by the command line, the demo and the web page, so none of them imports another.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from .ids import has_image_vectors

if TYPE_CHECKING:
    from .duplicates import DuplicateGroup
    from .records import Hit

SIGNAL_ORDER = ("image", "caption", "keyword", "rerank")  # known signals first, others after, by name


def profile_label(signature: dict[str, Any]) -> str:
    """One line saying what this index can do, in words (the model ids are in ``stats`` and the Index panel)."""
    caption = signature.get("caption_model") or signature["text_model"]
    own = "; captions and text in photos by a caption model of their own" if caption != signature["text_model"] else ""
    if not has_image_vectors(signature):
        english = "English" if "MiniLM" in str(signature["text_model"]) else "the text model's languages"
        return (f"Offline profile: captions, file names and text in photos only, {english} (no image search, "
                f"no 'more like this'){own}")
    languages = "any language" if "multilingual" in str(signature["text_model"]).lower() else "queries in text or by image"
    return f"Image search: pictures and captions, {languages}{own}"


def shown_signals(hits: list[Hit]) -> list[str]:
    """Signals that at least one hit has a value for, in a stable order."""
    names = {name for hit in hits for name, value in hit.scores.items() if value is not None}
    return [s for s in SIGNAL_ORDER if s in names] + sorted(names - set(SIGNAL_ORDER))


def no_matches(query: object) -> str:
    """The one line of an empty answer (the relevance floor left every hit out)."""
    return f"no close matches for {str(query)!r}; --all shows the nearest"


def format_hits(hits: list[Hit]) -> str:
    """A table for people: rank, relevance, fused score, every signal that ranked a hit, path (with the
    copies folded into it) and caption."""
    if not hits:
        return "no results"
    signals = shown_signals(hits)
    widths = [max(6, len(s)) for s in signals]
    header = "".join(f"{s:>{w}}  " for s, w in zip(signals, widths))
    lines = [f"{'#':>2}  {'relev.':>6}  {'score':>6}  {header}path / caption"]
    indent = 2 + 2 + 6 + 2 + 6 + 2 + sum(w + 2 for w in widths)
    for n, hit in enumerate(hits, 1):
        cells = "".join(f"{format_score(hit.scores.get(s)):>{w}}  " for s, w in zip(signals, widths))
        similar = f"  (+{len(hit.similar)} similar)" if hit.similar else ""
        lines.append(f"{n:>2}  {hit.relevance:6.3f}  {hit.score:6.3f}  {cells}{hit.moment}{similar}")
        if hit.caption:
            lines.append(f"{'':>{indent}}“{hit.caption}”")
        if hit.metadata.get("ocr") and hit.scores.get("ocr"):
            text = " / ".join(str(hit.metadata["ocr"]).splitlines())
            lines.append(f"{'':>{indent}}text in photo: {text[:100]}{'…' if len(text) > 100 else ''}")
    return "\n".join(lines)


def format_score(value: float | None) -> str:
    """A signal value for people: three decimals, or ``-`` when the hit lacks that signal."""
    return "-" if value is None else f"{value:.3f}"


def _ocr_line(stats: dict[str, Any]) -> str:
    engine = stats.get("ocr") or "off"
    texts = stats.get("texts", 0)
    return f"{engine} ({texts} photo{'' if texts == 1 else 's'} with text)" if texts or stats.get("ocr") else engine


def stats_lines(stats: dict[str, Any]) -> str:
    """``mmsearch stats`` for people."""
    stamp = stats["updated_at"]
    updated = datetime.fromtimestamp(stamp).isoformat(sep=" ", timespec="seconds") if stamp else "never"
    videos = f" ({stats['videos']} of them videos)" if stats.get("videos") else ""
    rows = [("database", stats["db"]), ("images", f"{stats['images']}{videos}"), ("captions", stats["captions"]),
            ("image model", stats["image_model"]), ("text model", stats["text_model"]),
            ("caption model", stats.get("caption_model") or stats["text_model"]), ("dimension", stats["dim"]),
            ("schema", stats.get("schema", "-")), ("models in use", _generation_line(stats)),
            ("text in photos", _ocr_line(stats)), ("folders", ", ".join(stats["roots"]) or "-"), ("updated", updated)]
    width = max(len(name) for name, _ in rows) + 2
    return "\n".join(f"{name:<{width}}{value}" for name, value in rows)


def _generation_line(stats: dict[str, Any]) -> str:
    """Which generation of collections answers, and what ``mmsearch reindex`` left or is building."""
    generation = stats.get("generation") or "first"
    line = "the first ones" if generation == "first" else f"those of reindex {generation}"
    if stats.get("previous"):
        line += f"; previous {stats['previous']} kept (mmsearch reindex --rollback / --drop-previous)"
    if stats.get("reindexing"):
        line += f"; a reindex into {stats['reindexing']} is under way or was stopped (run it again to finish)"
    return line


def format_groups(groups: list[DuplicateGroup]) -> str:
    """Duplicate groups for people: the keeper and why, then each copy with how it matches."""
    if not groups:
        return "no duplicates"
    lines = []
    for n, group in enumerate(groups, 1):
        lines.append(f"group {n}: keep {group.keep}  ({group.reason})")
        for m in group.members[1:]:
            cosine = "" if m.cosine is None else f", cosine {m.cosine:.3f}"
            lines.append(f"    {m.kind:<5} {m.path}  ({m.width}x{m.height}, {m.size:,} bytes, {m.hash_distance} bits{cosine})")
    extra = sum(len(g.members) - 1 for g in groups)
    lines.append(f"{len(groups)} groups, {extra} files beside their keepers")
    return "\n".join(lines)

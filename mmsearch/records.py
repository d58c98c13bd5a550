"""Typed result records returned by the public API."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# internal fields of a stored image record, not shown in ``Hit.metadata``
HIDDEN_METADATA = ("folders", "seq", "caption_sig", "manifest_captions", "ocr_sig", "lexical", "ocr_lexical", "look")

@dataclass(frozen=True)
class Hit:
    """One search result, best first in a result list.

    Attributes:
        path: Absolute path of the image file.
        score: Fused score used for ranking (see ``mmsearch.search.fusion``).
        caption: The image's best-matching caption, or ``""`` when it has none.
        scores: Each signal's cosine similarity to the query: ``"image"`` (query vector vs image
            vector) and ``"caption"`` (best caption of the image). ``None`` marks a signal that is
            unavailable for this hit (no captions, or no image encoder in the offline profile).
        metadata: What the index stores for the image (size, width, height, date, camera, ...).
        relevance: How sure the search is that this is what was asked for, 0..1, with the same meaning for
            every query (``mmsearch.search.relevance``): 0.5 and more is a match, near 0 the nearest filler.
        similar: Paths of the copies of this photo (the duplicate rule, ``mmsearch.likeness``) folded into
            this hit when the search collapses copies; empty otherwise.
        time: For a video, the moment (seconds from its start) of the frame that matched best; None for
            photos, and for videos found by their name or captions alone.
    """

    path: str
    score: float
    caption: str
    scores: dict[str, float | None]
    metadata: dict[str, Any] = field(default_factory=dict)
    relevance: float = 0.0
    similar: list[str] = field(default_factory=list)
    time: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable form (as printed by ``mmsearch search --json``)."""
        return {"path": self.path, "score": self.score, "relevance": self.relevance, "scores": dict(self.scores),
                "caption": self.caption, "similar": list(self.similar), "time": self.time,
                "metadata": dict(self.metadata)}

    @property
    def moment(self) -> str:
        """``path @ 01:23`` for a video hit with its moment, else the path."""
        return f"{self.path} @ {clock(self.time)}" if self.time is not None else self.path


def clock(seconds: float) -> str:
    """``01:23`` (or ``1:02:03`` past an hour) of a time in seconds."""
    whole = int(max(0.0, seconds))
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


@dataclass
class IndexReport:
    """What one index run did.

    Attributes:
        added: Images new to the index.
        updated: Images re-encoded because the file or its captions changed.
        unchanged: Images skipped because nothing changed since the last run.
        moved: Images renamed or moved (same content and captions): path updated, nothing re-encoded.
        removed: Index entries dropped because their file is gone.
        failed: ``(path, reason)`` for every file that was skipped as unreadable.
        interrupted: the run was stopped (Ctrl-C) after a batch; running it again resumes.
        warnings: ``(path, message)`` for files indexed despite a problem (corrupt EXIF data, a sidecar
            that could not be read).
        captions_removed: captions the index held for re-encoded files and no longer does (a sidecar
            deleted or edited, a manifest that changed, ``forget_captions``).
        ocr_read: photos whose text was read (``--ocr``), ``ocr_found`` of them with text.
        ocr_failed: ``(path, reason)`` of photos whose text could not be read; they stay indexed without
            text, and the next run tries again.
        videos: how many of ``added`` are videos (the rest are photos).
    """

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    moved: int = 0
    removed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    interrupted: bool = False
    warnings: list[tuple[str, str]] = field(default_factory=list)
    captions_removed: int = 0
    ocr_read: int = 0
    ocr_found: int = 0
    ocr_failed: list[tuple[str, str]] = field(default_factory=list)
    videos: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable form (as printed by ``mmsearch index --json``)."""
        data = asdict(self)
        data["failed"], data["ocr_failed"] = _listed(self.failed, "reason"), _listed(self.ocr_failed, "reason")
        data["warnings"] = _listed(self.warnings, "message")
        return data

    def skipped_by_kind(self) -> list[tuple[int, str, str]]:
        """``(count, extension, reason)`` of the skipped files, most frequent first, e.g. ``(650, ".svg",
        "vector image (SVG), not a raster format")``. Reasons are grouped up to their first colon."""
        import os
        from collections import Counter

        kinds = Counter((os.path.splitext(p)[1].lower() or "(none)", r.split(":")[0]) for p, r in self.failed)
        return [(n, ext, reason) for (ext, reason), n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))]

    def summary(self) -> str:
        """One human line, e.g. ``added 12, updated 0, unchanged 3, moved 0, removed 1, skipped 2``."""
        videos = f" ({self.videos} video{'s' if self.videos != 1 else ''})" if self.videos else ""
        line = (f"added {self.added}{videos}, updated {self.updated}, unchanged {self.unchanged}, "
                f"moved {self.moved}, removed {self.removed}, skipped {len(self.failed)}")
        if self.failed:
            kinds = self.skipped_by_kind()
            shown = "; ".join(f"{n} {ext}: {reason}" for n, ext, reason in kinds[:4])
            line += f" ({shown}{'; ...' if len(kinds) > 4 else ''})"
        if self.warnings:
            line += f", warnings {len(self.warnings)}"
        if self.captions_removed:
            line += f", captions removed {self.captions_removed}"
        if self.ocr_read or self.ocr_failed:
            line += f", text read in {self.ocr_read} ({self.ocr_found} with text"
            line += f", {len(self.ocr_failed)} failed)" if self.ocr_failed else ")"
        return line


@dataclass
class ReindexReport:
    """What one ``mmsearch reindex`` run did.

    Attributes:
        models: The signature of the models the index was re-embedded with (``image_model``,
            ``text_model``, ``caption_model``, ``dim``).
        generation: Their collections' generation (``mmsearch.store.collections.generation_name``).
        previous: The generation that was active before; ``rollback`` switches back to it.
        images_encoded: Images encoded again from their files (the image model changed).
        images_copied: Image vectors copied as they were (the image model did not change).
        texts_embedded: Captions and photo texts embedded again (the caption model changed).
        texts_copied: Captions and photo texts whose vectors were copied.
        marks: Feedback marks carried over (their queries embedded by the new text model).
        resumed: Images already in the new collections: stored by an earlier, stopped run of the same
            reindex, or kept there by a rollback (only files changed since are encoded again).
        failed: ``(path, reason)`` of files that could not be read again; they are not in the new
            collections (a file that is gone is left out the way ``index`` prunes it).
        final: The final incremental pass over the indexed folders (files changed meanwhile).
        switched: Whether the index now answers with the new models.
        unchanged: The index already had these models; nothing was done.
        interrupted: Stopped (Ctrl-C) before the switch; the same command resumes.
        seconds: How long it took.
    """

    models: dict[str, Any]
    generation: str
    previous: str
    images_encoded: int = 0
    images_copied: int = 0
    texts_embedded: int = 0
    texts_copied: int = 0
    marks: int = 0
    resumed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    final: IndexReport | None = None
    switched: bool = False
    unchanged: bool = False
    interrupted: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable form (as printed by ``mmsearch reindex --json``)."""
        data = asdict(self)
        data["failed"] = _listed(self.failed, "reason")
        data["final"] = self.final.to_dict() if self.final is not None else None
        return data

    def summary(self) -> str:
        """One human line of what was encoded, copied and switched."""
        if self.unchanged:
            return "the index already uses these models; nothing to do"
        images = self.images_encoded + self.images_copied
        line = (f"{images} images ({self.images_encoded} encoded, {self.images_copied} copied), "
                f"{self.texts_embedded + self.texts_copied} captions and photo texts ({self.texts_embedded} embedded), "
                f"{self.marks} feedback marks")
        if self.resumed:
            line += f", {self.resumed} already there (from a stopped run, or kept by a rollback)"
        if self.failed:
            line += f", {len(self.failed)} files unreadable"
        if self.final is not None:
            line += f"; final pass: {self.final.summary()}"
        return line + f"; {self.seconds:.1f} s"


def _listed(items: list[tuple[str, str]], what: str) -> list[dict[str, str]]:
    """``(path, text)`` pairs as JSON objects with printable strings."""
    return [{"path": printable(path), what: printable(text)} for path, text in items]


def printable(text: str) -> str:
    """Text safe to print or write as UTF-8: bytes of a non-UTF-8 file name become ``\\xNN``."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that no file name byte made
        return text.encode("utf-8", "backslashreplace").decode("utf-8")

"""Typed result records returned by the public API."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Hit:
    """One search result, best first in a result list.

    Attributes:
        path: Absolute path of the image file.
        score: Fused score used for ranking (see ``mmsearch.fusion``).
        caption: The image's best-matching caption, or ``""`` when it has none.
        scores: Each signal's cosine similarity to the query: ``"image"`` (query vector vs image
            vector) and ``"caption"`` (best caption of the image). ``None`` marks a signal that is
            unavailable for this hit (no captions, or no image encoder in the offline profile).
        metadata: What the index stores for the image (size, width, height, date, camera, ...).
    """

    path: str
    score: float
    caption: str
    scores: dict[str, float | None]
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable form (as printed by ``mmsearch search --json``)."""
        return {"path": self.path, "score": self.score, "scores": dict(self.scores), "caption": self.caption,
                "metadata": dict(self.metadata)}


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
    """

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    moved: int = 0
    removed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    interrupted: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable form (as printed by ``mmsearch index --json``)."""
        data = asdict(self)
        data["failed"] = [{"path": p, "reason": r} for p, r in self.failed]
        return data

    def summary(self) -> str:
        """One human line, e.g. ``added 12, updated 0, unchanged 3, moved 0, removed 1, skipped 2``."""
        return (
            f"added {self.added}, updated {self.updated}, unchanged {self.unchanged}, "
            f"moved {self.moved}, removed {self.removed}, skipped {len(self.failed)}"
        )

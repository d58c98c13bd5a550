"""Identity in one place: record ids of images and captions, and what a model signature says.

Every other module asks here: an image's id, a caption's id and its parts, and whether an index has
image vectors at all (the caption-only offline profile has none).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Any

NO_IMAGE_MODEL = "none"  # the image model recorded by an index built without one (offline profile)


def image_id(path: str) -> str:
    """Stable record id of an image: a hash of its absolute path."""
    return hashlib.sha1(path.encode("utf-8", "surrogateescape")).hexdigest()[:24]


def image_id_of(path: str | os.PathLike[str]) -> str:
    """The record id of the file a user names: ``~`` expanded, made absolute, then ``image_id``."""
    return image_id(os.path.abspath(os.path.expanduser(os.fspath(path))))


def caption_id(image: str, index: int) -> str:
    """Record id of an image's ``index``-th caption."""
    return f"{image}:{index}"


def frame_id(image: str, index: int) -> str:
    """Record id of a video's ``index``-th sampled frame."""
    return f"{image}@{index}"


def split_caption_id(value: str) -> tuple[str, int]:
    """(image id, caption index) of a caption record id."""
    image, _, index = value.rpartition(":")
    return image, int(index)


def split_frame_id(value: str) -> tuple[str, int]:
    """(image id, frame index) of a frame record id."""
    image, _, index = value.rpartition("@")
    return image, int(index)


def caption_ids(image: str, meta: Mapping[str, Any]) -> list[str]:
    """Record ids of all captions of an image, from its metadata's ``captions`` list."""
    return [caption_id(image, n) for n in range(len(meta.get("captions") or []))]


def has_image_vectors(signature: Mapping[str, Any] | None) -> bool:
    """Whether an index (or engine) with this model signature scores images by their pixels."""
    return signature is not None and signature.get("image_model") not in (None, NO_IMAGE_MODEL)


def mark_id(query: str, image_id: str) -> str:
    """Record id of a feedback mark: one per (query text, photo), so marking again replaces it."""
    return hashlib.sha1(f"{query.strip().lower()}\0{image_id}".encode("utf-8", "surrogatepass")).hexdigest()[:24]

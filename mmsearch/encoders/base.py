"""The encoder contract: batch in, L2-normalised float32 ``(n, dim)`` array out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from PIL import Image


@runtime_checkable
class TextEncoder(Protocol):
    """Embeds texts (queries, captions) into the shared image-text space."""

    model_id: str
    dim: int

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Return a float32 array of shape ``(len(texts), dim)`` whose rows have unit length."""
        ...


@runtime_checkable
class ImageEncoder(Protocol):
    """Embeds RGB images into the shared image-text space.

    ``input_size`` is the short side the model resizes images to first (224 for ViT-B-32), or None when
    it does not resize that way; the indexer then decodes images at that size in its worker threads.
    """

    model_id: str
    dim: int
    input_size: int | None

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Return a float32 array of shape ``(len(images), dim)`` whose rows have unit length."""
        ...


@runtime_checkable
class PreparingImageEncoder(ImageEncoder, Protocol):
    """An image encoder whose preprocessing can run apart from its model: indexing calls ``prepare`` in
    its decode workers (so it must be thread-safe, and should not use torch's thread pool) and only
    ``encode_prepared`` in the main thread. ``encode_images(ims)`` equals
    ``encode_prepared(np.stack([prepare(im) for im in ims]))``."""

    def prepare(self, image: Image.Image) -> np.ndarray:
        """One RGB image as the model's float32 input array."""
        ...

    def encode_prepared(self, pixels: np.ndarray) -> np.ndarray:
        """Embed a stack of ``prepare`` outputs; unit-length float32 rows."""
        ...


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, as float32; all-zero rows stay zero instead of becoming NaN."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim == 1:
        vectors = vectors[None, :]
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms == 0, 1.0, norms)).astype(np.float32, copy=False)

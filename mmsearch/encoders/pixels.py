"""Image preprocessing without torch: open_clip's transform rebuilt from Pillow and numpy.

Indexing runs preprocessing in its decode workers. torchvision's ``ToTensor``/``Normalize`` there cost
about 18 ms per image on 2 cores, because every call wakes torch's intra-op threads, which compete with
the decode threads and the model. The same steps in Pillow and numpy give bit-identical arrays (Pillow
does the resizing in both cases; the arithmetic is the same float32 operations) and touch no torch
thread, so the model in the main thread keeps every core torch gives it.

``ArrayTransform.from_torchvision`` reads the steps of open_clip's ``Compose``; a step it does not know
(another resize mode, augmentations) makes it return None, and the caller falls back to running the
torchvision transform itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

Step = Callable[[Any], Any]


@dataclass(frozen=True)
class ArrayTransform:
    """PIL image in, float32 ``(3, H, W)`` array out, equal to the torchvision transform it was read from."""

    steps: tuple[Step, ...]

    def __call__(self, image: Image.Image) -> np.ndarray:
        value: Any = image
        for step in self.steps:
            value = step(value)
        return value

    @classmethod
    def from_torchvision(cls, transform: Any) -> ArrayTransform | None:
        """Rebuild a torchvision/open_clip ``Compose``; None if any step is not one of the known kinds."""
        steps: list[Step] = []
        for t in getattr(transform, "transforms", None) or []:
            step = _translate(t)
            if step is None:
                return None
            steps.append(step)
        return cls(tuple(steps)) if steps else None


def _translate(t: Any) -> Step | None:
    from torchvision import transforms

    name = type(t).__name__
    if isinstance(t, transforms.Resize) and t.max_size is None and _pil_filter(t.interpolation) is not None:
        size = t.size if isinstance(t.size, int) else list(t.size)
        if isinstance(size, list) and len(size) == 1:
            size = size[0]
        return _Resize(size, _pil_filter(t.interpolation))  # type: ignore[arg-type]
    if isinstance(t, transforms.CenterCrop):
        return _CenterCrop(tuple(int(s) for s in t.size))  # type: ignore[arg-type]
    if name == "MaybeConvertMode" or (name == "function" and getattr(t, "__name__", "") == "_convert_to_rgb"):
        return _convert(getattr(t, "mode", "RGB"))
    if name in ("MaybeToTensor", "ToTensor"):
        return _to_array
    if isinstance(t, transforms.Normalize):
        return _Normalize(np.asarray(t.mean, dtype=np.float32).reshape(-1, 1, 1),
                          np.asarray(t.std, dtype=np.float32).reshape(-1, 1, 1))
    return None


@dataclass(frozen=True, eq=False)
class _Normalize:
    """torchvision ``Normalize`` on a CHW float32 array."""

    mean: np.ndarray  # (C, 1, 1) float32
    std: np.ndarray

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = x - self.mean
        out /= self.std
        return out


def _pil_filter(mode: Any) -> int | None:
    from torchvision.transforms import InterpolationMode

    table = {InterpolationMode.BICUBIC: Image.Resampling.BICUBIC, InterpolationMode.BILINEAR: Image.Resampling.BILINEAR,
             InterpolationMode.NEAREST: Image.Resampling.NEAREST, InterpolationMode.LANCZOS: Image.Resampling.LANCZOS,
             InterpolationMode.BOX: Image.Resampling.BOX, InterpolationMode.HAMMING: Image.Resampling.HAMMING}
    return table.get(mode)


@dataclass(frozen=True)
class _Resize:
    """torchvision ``Resize``: an int resizes the short side (long side truncated), a pair is (h, w)."""

    size: int | Sequence[int]
    resample: int

    def __call__(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        if isinstance(self.size, int):
            short, long = (width, height) if width <= height else (height, width)
            new_short, new_long = self.size, int(self.size * long / short)
            new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
        else:
            new_h, new_w = self.size
        if (new_w, new_h) == (width, height):
            return image
        return image.resize((new_w, new_h), self.resample)


@dataclass(frozen=True)
class _CenterCrop:
    """torchvision ``CenterCrop`` (zero padding when the crop is larger than the image)."""

    size: tuple[int, ...]

    def __call__(self, image: Image.Image) -> Image.Image:
        crop_h, crop_w = (self.size * 2)[:2] if len(self.size) == 1 else self.size[:2]
        width, height = image.size
        if crop_w > width or crop_h > height:
            padded = Image.new(image.mode, (max(width, crop_w), max(height, crop_h)))
            left = (crop_w - width) // 2 if crop_w > width else 0
            top = (crop_h - height) // 2 if crop_h > height else 0
            padded.paste(image, (left, top))
            image, (width, height) = padded, padded.size
            if (crop_w, crop_h) == (width, height):
                return image
        top = int(round((height - crop_h) / 2.0))
        left = int(round((width - crop_w) / 2.0))
        return image.crop((left, top, left + crop_w, top + crop_h))


def _convert(mode: str) -> Step:
    return _Convert(mode)


@dataclass(frozen=True)
class _Convert:
    """``image.convert(mode)`` as a step that pickles (the transform travels to decode processes)."""

    mode: str

    def __call__(self, image: Image.Image) -> Image.Image:
        return image.convert(self.mode)


def _to_array(image: Image.Image) -> np.ndarray:
    """torchvision ``ToTensor`` for 8-bit images: HWC uint8 to CHW float32 in [0, 1]."""
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    out = np.ascontiguousarray(array.transpose(2, 0, 1)).astype(np.float32)
    out /= np.float32(255)
    return out

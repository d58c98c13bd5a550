"""Encoder registry: turn a ``Config`` into the image encoder and text embedder it names."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import CLIP_TEXT, NO_IMAGE_MODEL, Config
from ..errors import DimensionMismatchError
from .base import ImageEncoder, PreparingImageEncoder, TextEncoder, l2_normalize
from .openclip import clip_model_id
from .sentence import text_model_id

__all__ = ["Encoders", "ImageEncoder", "PreparingImageEncoder", "TextEncoder", "l2_normalize", "load_caption_encoder",
           "load_encoders", "load_text_encoder", "model_signature"]


@dataclass(frozen=True)
class Encoders:
    """The encoders of one configuration. ``image`` is None in the caption-only offline profile."""

    image: ImageEncoder | None
    text: TextEncoder
    caption: TextEncoder | None = None  # captions' own model (``Config.caption_model``), else None

    @property
    def dim(self) -> int:
        """Dimension of the shared vector space."""
        return self.text.dim

    @property
    def captions(self) -> TextEncoder:
        """The model that embeds captions and the text read in photos: the caption model, else the text model."""
        return self.caption or self.text


def model_signature(config: Config) -> dict[str, str]:
    """The model ids a config stands for, computed without loading any weights. ``caption_model`` is the
    text model's id when captions share its space."""
    image_id = clip_model_id(config.clip_model, config.clip_pretrained) if config.has_image_model else NO_IMAGE_MODEL
    text_id = image_id if config.text_model == CLIP_TEXT else text_model_id(config.text_model)
    caption_id = text_model_id(config.caption_model) if config.caption_model else text_id
    return {"image_model": image_id, "text_model": text_id, "caption_model": caption_id}


def load_caption_encoder(config: Config) -> TextEncoder | None:
    """The caption model alone (None when captions share the text model's space)."""
    if not config.caption_model:
        return None
    from .sentence import SentenceEncoder

    return SentenceEncoder(config.caption_model, config.device, config.cache_dir, config.text_runtime,
                           config.trust_remote_code)


def load_text_encoder(config: Config) -> TextEncoder | None:
    """Only the text model, for text queries (a process answering one query need not load CLIP's image
    tower); None when the text model is the CLIP text tower, which comes with the image model."""
    if config.text_model == CLIP_TEXT:
        return None
    from .sentence import SentenceEncoder

    return SentenceEncoder(config.text_model, config.device, config.cache_dir, config.text_runtime)


def load_encoders(config: Config, text: TextEncoder | None = None, caption: TextEncoder | None = None) -> Encoders:
    """Load the models a config names (reusing ``text`` and ``caption`` if already loaded).

    Raises:
        ModelLoadError: weights cannot be loaded.
        DimensionMismatchError: the text and image models embed into different dimensions.
    """
    image = None
    if config.has_image_model:
        from .openclip import OpenClipEncoder

        image = OpenClipEncoder(config.clip_model, config.clip_pretrained, config.device, config.cache_dir,
                                config.precision)
    caption = caption or load_caption_encoder(config)
    if config.text_model == CLIP_TEXT:
        assert image is not None  # Config refuses text_model='clip' without a CLIP model
        return Encoders(image=image, text=image, caption=caption)  # type: ignore[arg-type]
    text = text or load_text_encoder(config)
    assert text is not None
    if image is not None and image.dim != text.dim:
        raise DimensionMismatchError(
            f"text model {text.model_id} embeds into {text.dim} dimensions but image model {image.model_id} "
            f"into {image.dim}; pick a text model trained into the CLIP space (e.g. clip-ViT-B-32-multilingual-v1 "
            f"for ViT-B-32/openai) or --text-model clip")
    return Encoders(image=image, text=text, caption=caption)

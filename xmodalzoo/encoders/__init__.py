"""Image and text encoders shipped with the core.

Config classes and factories live in light modules; timm and transformers are imported only when an
encoder is built, so importing xmodalzoo stays fast.
"""
from .augment import CaptionAugmentConfig
from .base import EncoderOutput, ImageEncoder, TextEncoder
from .tokenizers import Tokenizer, load_tokenizer


def register_components(r) -> None:  # type: ignore[no-untyped-def]
    """Image encoders ``timm``, ``regions``; text encoders ``bigru``, ``transformers``; their tokenizers."""
    from .bigru import BiGRUConfig, build_bigru
    from .hf_text import (
        TransformersTextConfig, TransformersTokenizerConfig, build_transformers_text_encoder, load_transformers_tokenizer,
    )
    from .regions import RegionEncoderConfig, build_region_encoder
    from .timm_image import TimmImageEncoderConfig, build_timm_image_encoder
    from .vocab import WordTokenizerConfig, load_word_tokenizer

    r.add("image_encoder", "timm", build_timm_image_encoder, TimmImageEncoderConfig)
    r.add("image_encoder", "regions", build_region_encoder, RegionEncoderConfig)
    r.add("text_encoder", "bigru", build_bigru, BiGRUConfig)
    r.add("text_encoder", "transformers", build_transformers_text_encoder, TransformersTextConfig)
    r.add("tokenizer", "word", load_word_tokenizer, WordTokenizerConfig,
          doc="Word vocabulary of the bigru encoder, reloaded from vocab.json.")
    r.add("tokenizer", "transformers", load_transformers_tokenizer, TransformersTokenizerConfig,
          doc="Hugging Face tokenizer of the transformers encoder, reloaded from its saved files.")


__all__ = [
    "CaptionAugmentConfig", "EncoderOutput", "ImageEncoder", "TextEncoder", "Tokenizer", "load_tokenizer",
    "register_components",
]

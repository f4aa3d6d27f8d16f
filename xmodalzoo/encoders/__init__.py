"""Image and text encoders shipped with the core."""
from .base import EncoderOutput, ImageEncoder, TextEncoder, Tokenizer


def register_components(r) -> None:  # type: ignore[no-untyped-def]
    """Encoders: filled in by the encoders module."""


__all__ = ["EncoderOutput", "ImageEncoder", "TextEncoder", "Tokenizer", "register_components"]

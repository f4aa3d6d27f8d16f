"""Model folders, pretrained names and loading (local folders or the Hugging Face Hub)."""
from .folder import load_model, save_model
from .load import load, push_to_hub
from .pretrained import get_pretrained, list_pretrained

__all__ = ["load", "load_model", "push_to_hub", "save_model", "get_pretrained", "list_pretrained"]

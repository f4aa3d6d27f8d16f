"""Model folders, the pretrained index, loading (local folders, runs, the Hugging Face Hub) and publishing."""
from .folder import load_model, save_model
from .load import load, resolve
from .info import pretrained_info
from .pretrained import get_pretrained, list_pretrained
from .publish import push_to_hub, save_pretrained

__all__ = ["get_pretrained", "list_pretrained", "load", "load_model", "pretrained_info", "push_to_hub", "resolve",
           "save_model", "save_pretrained"]

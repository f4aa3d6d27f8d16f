"""Search indexes over image folders: build once with a model, search by text or image (``zoo.Index``)."""
from .backends import BACKENDS, FaissOptions
from .index import Hit, Index
from .searcher import Searcher, default_candidates

__all__ = ["BACKENDS", "FaissOptions", "Hit", "Index", "Searcher", "default_candidates"]

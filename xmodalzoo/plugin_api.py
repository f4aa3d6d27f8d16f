"""The plugin surface: everything a method plugin may import from xmodalzoo, and nothing else.

First-party plugins (``plugins/*``) import only from this module, exactly as a third-party plugin
should; ``docs/plugins.md`` documents it as the stable API.  Names listed in ``__all__`` keep their
meaning across minor versions; everything else in the package may move.
"""
from __future__ import annotations

from .batch_module import BatchModule
from .config import Component, ComponentConfig
from .convert.base import Converter, OfficialCheckpoint
from .errors import CheckpointError
from .convert.keymap import KeyMap
from .data.base import RetrievalDataset
from .data.batch import Batch, TextBatch
from .data.samplers import CaptionBatchSampler
from .embeddings import Embedding, GaussianEmbedding, PointEmbedding, SetEmbedding
from .encoders.base import EncoderOutput, ImageEncoder, TextEncoder
from .encoders.tokenizers import Tokenizer
from .eval.encode import encode_captions, encode_images
from .losses.base import Loss, LossContext, LossOutput
from .losses.mmd import laplacian_kernel, mmd
from .losses.triplet import TripletConfig, TripletLoss
from .method import Method, MethodConfig, assemble_method
from .registry import Registrar
from .similarity.base import SearchVectors, Similarity
from .similarity.reduce import ordered_sum

__all__ = [
    # registration
    "Registrar",
    # configs
    "Component",
    "ComponentConfig",
    # methods and their assembly from registered parts
    "Method",
    "MethodConfig",
    "assemble_method",
    # embeddings
    "Embedding",
    "GaussianEmbedding",
    "PointEmbedding",
    "SetEmbedding",
    # encoders
    "EncoderOutput",
    "ImageEncoder",
    "TextEncoder",
    "TextBatch",
    "Tokenizer",
    # similarities
    "Similarity",
    "SearchVectors",
    "ordered_sum",
    # losses
    "Loss",
    "LossContext",
    "LossOutput",
    "TripletConfig",
    "TripletLoss",
    "laplacian_kernel",
    "mmd",
    # converters of official checkpoints (kind "converter")
    "CheckpointError",
    "Converter",
    "KeyMap",
    "OfficialCheckpoint",
    # training-only parts
    "Batch",
    "BatchModule",
    "CaptionBatchSampler",
    "RetrievalDataset",
    # encoding whole datasets (e.g. for samplers that cluster the current embeddings)
    "encode_captions",
    "encode_images",
]

"""The Method: image/text encoders and heads, a similarity, and optional training-only parts.

A method is assembled from registered parts by :func:`assemble_method`.  Plugins usually register
only a config class (with their defaults) and a factory that calls it; they may subclass
:class:`Method` to add behaviour (e.g. ``uncertainty``) or add a training-only ``batch_module``.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import nn

from .batch_module import is_active
from .config import Component, ComponentConfig
from .contracts import check_method
from .data.batch import Batch, TextBatch
from .embeddings import Embedding, GaussianEmbedding
from .encoders.base import ImageEncoder, TextEncoder
from .encoders.tokenizers import Tokenizer
from .losses.base import Loss
from .registry import REGISTRY
from .similarity.base import Similarity


class MethodConfig(ComponentConfig):
    """Parts of a method; each is the config of a registered component (``type:`` picks it)."""

    embed_dim: int = 1024
    image_encoder: Component["image_encoder"] = {"type": "timm"}
    text_encoder: Component["text_encoder"] = {"type": "bigru"}
    image_head: Component["head"] = {"type": "linear"}
    text_head: Component["head"] = {"type": "linear"}
    similarity: Component["similarity"] = {"type": "cosine"}
    loss: Component["loss"] = {"type": "triplet"}
    #: a training-only module over whole batches (e.g. HREM's relation graph); never in model folders
    batch_module: Optional[Component["batch_module"]] = None


class Method(nn.Module):
    """Encodes images and captions into embeddings and scores them with ``similarity``.

    ``batch_module`` (optional) is a training-only module with its own parameters; it sees whole
    batches of embeddings and returns extra tensors for the loss.  It is never used to encode an
    item, so inference does not need it.
    """

    def __init__(
        self,
        image_encoder: ImageEncoder,
        text_encoder: TextEncoder,
        image_head: nn.Module,
        text_head: nn.Module,
        similarity: Similarity,
        batch_module: nn.Module | None = None,
        config: MethodConfig | None = None,
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.image_head = image_head
        self.text_head = text_head
        self.similarity = similarity
        self.batch_module = batch_module
        self.config = config

    @property
    def tokenizer(self) -> Tokenizer:
        return self.text_encoder.tokenizer

    def tokenize(self, texts: Sequence[str], train: bool = False) -> TextBatch:
        return self.text_encoder.tokenizer(list(texts), train=train)

    def image_transform(self, train: bool = False) -> Any:
        return self.image_encoder.transform(train)

    def encode_image(self, images: torch.Tensor) -> Embedding:
        return self.image_head(self.image_encoder(images))

    def encode_text(self, texts: TextBatch | Sequence[str]) -> Embedding:
        if not isinstance(texts, TextBatch):
            texts = self.tokenize(texts).to(self.device)
        return self.text_head(self.text_encoder(texts))

    def forward(self, batch: Batch) -> tuple[Embedding, Embedding, dict[str, Any]]:
        """Embeddings of a training batch, plus extras from the batch module when it is active."""
        img = self.encode_image(batch.images)
        txt = self.encode_text(batch.texts)
        extras: dict[str, Any] = {}
        if is_active(self.batch_module):
            extras = self.batch_module(img, txt, batch)
        return img, txt, extras

    def score(self, query: Embedding, gallery: Embedding) -> torch.Tensor:
        """(N, M) similarity of every query/gallery pair (small inputs; see the engine for large)."""
        return self.similarity(query, gallery)

    def uncertainty(self, items: Embedding | Sequence[Any]) -> torch.Tensor:
        """One scalar per item: the mean of σ² over dimensions (methods with Gaussian embeddings).

        ``items`` is an embedding, a list of captions (str) or a list of raw images (what
        :meth:`embed_images` takes); raw items are encoded in eval mode first.  Higher = more ambiguous::

            model.uncertainty(["a red circle", "two shapes: a blue star and a small green triangle"])
        """
        if isinstance(items, Embedding):
            emb = items
        elif isinstance(items, str):
            raise TypeError("uncertainty takes a list of captions, not a single string")
        elif len(items) and all(isinstance(x, str) for x in items):
            emb = self.embed_texts(items)
        else:
            emb = self.embed_images(items)
        if isinstance(emb, GaussianEmbedding):
            return emb.logvar.exp().mean(-1)
        raise TypeError(f"{type(self).__name__} gives {type(emb).__name__} embeddings, which carry no uncertainty")

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def embed_images(self, images: Sequence[Any], batch_size: int = 64) -> Embedding:
        """Embeddings of raw images (PIL images, or feature arrays for region encoders), in eval mode."""
        was = self.training
        self.eval()
        transform = self.image_transform(train=False)
        parts = []
        for i in range(0, len(images), batch_size):
            x = torch.stack([transform(im) for im in images[i : i + batch_size]]).to(self.device)
            parts.append(self.encode_image(x).detach().to("cpu"))
        self.train(was)
        return Embedding.cat(parts)

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str], batch_size: int = 256) -> Embedding:
        """Embeddings of captions, in eval mode."""
        was = self.training
        self.eval()
        parts = [self.encode_text(self.tokenize(texts[i : i + batch_size]).to(self.device)).detach().to("cpu")
                 for i in range(0, len(texts), batch_size)]
        self.train(was)
        return Embedding.cat(parts)

    @torch.no_grad()
    def search(self, query: Embedding, gallery: Embedding, k: int = 10, *, max_bytes: int | None = None,
               seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores and indices (N, k) of the best gallery items per query, through the chunked engine."""
        from .similarity.engine import DEFAULT_MAX_BYTES, topk

        return topk(self.similarity, query, gallery, k, max_bytes=max_bytes or DEFAULT_MAX_BYTES,
                    device=self.device, seed=seed)


def assemble_method(
    cfg: MethodConfig,
    *,
    train_captions: Sequence[str] | None = None,
    tokenizer: Any = None,
    method_cls: type[Method] = Method,
    batch_module: nn.Module | None = None,
    **context: Any,
) -> Method:
    """Assemble a :class:`Method` from the registered parts that method config ``cfg`` names.

    The parts are first checked to fit together (:func:`xmodalzoo.contracts.check_method`).
    ``train_captions`` builds a word vocabulary for text encoders that need one; ``tokenizer``
    (e.g. loaded from a model folder) is used as is instead.  ``method_cls`` is the :class:`Method`
    subclass to instantiate; ``batch_module`` a training-only module built by the caller (else the
    one ``cfg.batch_module`` names, if any); ``context`` goes to the image encoder's factory.
    """
    check_method(cfg)
    image_encoder = REGISTRY.build("image_encoder", cfg.image_encoder, **context)
    text_encoder = REGISTRY.build("text_encoder", cfg.text_encoder, train_captions=train_captions, tokenizer=tokenizer)
    image_head = REGISTRY.build("head", cfg.image_head, encoder=image_encoder, embed_dim=cfg.embed_dim, modality="image")
    text_head = REGISTRY.build("head", cfg.text_head, encoder=text_encoder, embed_dim=cfg.embed_dim, modality="text")
    similarity = REGISTRY.build("similarity", cfg.similarity)
    if batch_module is None and getattr(cfg, "batch_module", None) is not None:
        batch_module = REGISTRY.build("batch_module", cfg.batch_module, embed_dim=cfg.embed_dim,
                                      image_encoder=image_encoder, text_encoder=text_encoder)
    return method_cls(image_encoder, text_encoder, image_head, text_head, similarity, batch_module, cfg)


def build_loss(cfg: MethodConfig) -> Loss:
    """The training loss that method config ``cfg`` names (a model folder never needs it)."""
    return REGISTRY.build("loss", cfg.loss)

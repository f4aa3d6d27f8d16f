"""The PCME and PCME++ methods: Gaussian heads on both sides, a match-probability or closed-form
similarity, and their losses; plus per-item uncertainty for raw images and captions.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from pydantic import Field

from xmodalzoo.plugin_api import Component, Method, MethodConfig, TextBatch, assemble_method


class PCMEMethod(Method):
    """A :class:`Method` for Gaussian embeddings.

    ``uncertainty(emb)`` (inherited) is the mean of σ² over dimensions, one scalar per item: larger
    means a more ambiguous image or caption.  :meth:`image_uncertainty` and :meth:`text_uncertainty`
    compute it from raw inputs.
    """

    @torch.no_grad()
    def image_uncertainty(self, images: torch.Tensor) -> torch.Tensor:
        """(B,) mean σ² of each image of a preprocessed (B, ...) batch (eval mode)."""
        with _eval_mode(self):
            return self.uncertainty(self.encode_image(images.to(self.device)))

    @torch.no_grad()
    def text_uncertainty(self, texts: TextBatch | Sequence[str]) -> torch.Tensor:
        """(B,) mean σ² of each caption (strings are tokenised with the model's tokenizer; eval mode)."""
        with _eval_mode(self):
            if isinstance(texts, TextBatch):
                texts = texts.to(self.device)
            return self.uncertainty(self.encode_text(texts))


class _eval_mode:
    """Context manager: put a module in eval mode, restore its previous mode afterwards."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module
        self.was_training = module.training

    def __enter__(self) -> None:
        self.module.eval()

    def __exit__(self, *exc: object) -> None:
        self.module.train(self.was_training)


class PCMEConfig(MethodConfig):
    """PCME defaults (COCO): ResNet-152 grid + GloVe/biGRU, D = 1024, J = 7, a = b = 15, VIB 1e-5."""

    embed_dim: int = Field(1024, ge=1, description="D, the size of μ and σ")
    image_encoder: Component["image_encoder"] = Field(
        {"type": "timm", "model": "resnet152", "pretrained": True, "image_size": 224},
        description="CNN whose 7×7 feature map the image head attends over",
    )
    text_encoder: Component["text_encoder"] = Field(
        {"type": "bigru", "word_dim": 300, "hidden_dim": 512, "bidirectional": True, "combine": "concat",
         "global_feature": "last_token"},
        description="word embeddings + biGRU (2 × 512 = D); the head attends over the word embeddings",
    )
    image_head: Component["head"] = Field(
        {"type": "pcme_gaussian", "source": "local", "d_hidden": 1024}, description="Gaussian image head"
    )
    text_head: Component["head"] = Field(
        {"type": "pcme_gaussian", "source": "inputs", "d_hidden": 150, "sigma_gru": True},
        description="Gaussian text head: attention over word embeddings, σ with a second biGRU",
    )
    similarity: Component["similarity"] = Field(
        {"type": "match_prob", "num_samples": 7, "init_scale": 15.0, "init_shift": 15.0},
        description="Monte-Carlo match probability with learnable a, b",
    )
    loss: Component["loss"] = Field(
        {"type": "pcme", "vib_weight": 1e-5, "uniformity_weight": 0.0},
        description="soft contrastive NLL over all pairs + VIB",
    )


class PCMEppConfig(PCMEConfig):
    """PCME++ defaults: closed-form sampled distance (a = b = 5 init), BCE with pseudo-positives, KL 1e-4."""

    similarity: Component["similarity"] = Field(
        {"type": "csd", "init_scale": 5.0, "init_shift": 5.0}, description="closed-form sampled distance logit"
    )
    loss: Component["loss"] = Field(
        {"type": "pcmepp", "pseudo_positive_weight": 0.1, "vib_weight": 1e-4, "kl_reduction": "mean"},
        description="BCE over all pairs, both directions, pseudo-positives, KL",
    )


def build_pcme(cfg: PCMEConfig, *, train_captions: Sequence[str] | None = None, tokenizer: Any = None) -> PCMEMethod:
    """PCME: probabilistic (Gaussian) embeddings matched by Monte-Carlo match probability."""
    return assemble_method(cfg, train_captions=train_captions, tokenizer=tokenizer, method_cls=PCMEMethod)  # type: ignore[return-value]


def build_pcmepp(cfg: PCMEppConfig, *, train_captions: Sequence[str] | None = None, tokenizer: Any = None) -> PCMEMethod:
    """PCME++: Gaussian embeddings matched by the closed-form sampled distance."""
    return assemble_method(cfg, train_captions=train_captions, tokenizer=tokenizer, method_cls=PCMEMethod)  # type: ignore[return-value]

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
    """PCME defaults (COCO), the one home of the published settings: ResNet-152 grid (RandomErasing 0.2)
    + GloVe/biGRU (PCME caption augmentation), D = 1024, heads as published; the similarity and the
    loss take their own defaults (``match_prob``: J = 7, a = b = 15; ``pcme``: VIB 1e-5, the official
    objective)."""

    embed_dim: int = Field(1024, ge=1, description="D, the size of μ and σ")
    image_encoder: Component["image_encoder"] = Field(
        {"type": "timm", "model": "resnet152", "pretrained": True, "image_size": 224,
         "transform": {"random_erasing": 0.2}},
        description="CNN whose 7×7 feature map the image head attends over; RandomErasing p = 0.2",
    )
    text_encoder: Component["text_encoder"] = Field(
        {"type": "bigru", "word_dim": 300, "hidden_dim": 512, "bidirectional": True, "combine": "concat",
         "global_feature": "last_token", "augment": {"style": "pcme", "mask_prob": 0.1, "delete_ratio": 0.1}},
        description="word embeddings + biGRU (2 × 512 = D, output at the last token, as the official code); "
        "the head attends over the word embeddings; 10 % of tokens masked, then 10 % deleted",
    )
    image_head: Component["head"] = Field(
        {"type": "pcme_gaussian", "source": "local", "d_hidden": 1024}, description="Gaussian image head"
    )
    text_head: Component["head"] = Field(
        {"type": "pcme_gaussian", "source": "inputs", "d_hidden": 150, "sigma_gru": True},
        description="Gaussian text head: attention over word embeddings, σ with a second biGRU",
    )
    similarity: Component["similarity"] = Field(
        {"type": "match_prob"}, description="Monte-Carlo match probability with learnable a, b (its defaults)"
    )
    loss: Component["loss"] = Field(
        {"type": "pcme"}, description="soft contrastive NLL over all pairs + VIB, the official objective (its defaults)"
    )


class PCMEppConfig(PCMEConfig):
    """PCME++ defaults: closed-form sampled distance (``csd``: a = b = 5 initially), BCE with
    pseudo-positives (``pcmepp``: ω 0.1, KL 1e-4 with mean reduction); the encoders and heads of PCME."""

    similarity: Component["similarity"] = Field({"type": "csd"}, description="closed-form sampled distance logit")
    loss: Component["loss"] = Field(
        {"type": "pcmepp"}, description="BCE over all pairs, both directions, pseudo-positives, KL"
    )


def build_pcme(cfg: PCMEConfig, *, train_captions: Sequence[str] | None = None, tokenizer: Any = None) -> PCMEMethod:
    """PCME: probabilistic (Gaussian) embeddings matched by Monte-Carlo match probability."""
    return assemble_method(cfg, train_captions=train_captions, tokenizer=tokenizer, method_cls=PCMEMethod)  # type: ignore[return-value]


def build_pcmepp(cfg: PCMEppConfig, *, train_captions: Sequence[str] | None = None, tokenizer: Any = None) -> PCMEMethod:
    """PCME++: Gaussian embeddings matched by the closed-form sampled distance."""
    return assemble_method(cfg, train_captions=train_captions, tokenizer=tokenizer, method_cls=PCMEMethod)  # type: ignore[return-value]

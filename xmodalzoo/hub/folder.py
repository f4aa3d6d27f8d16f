"""Model folders: ``config.json`` + ``model.safetensors`` + ``tokenizer/`` + ``README.md`` (model card).

A model folder holds everything needed to encode and score items — never the loss, the optimizer
or the training recipe.  :func:`load_model` rebuilds the method from the registry (so the plugin
that provides it must be installed) and loads the weights strictly.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from ..encoders.tokenizers import load_tokenizer
from ..errors import ModelFolderError
from ..files import atomic_dir, commit_dir
from ..method import Method
from ..registry import REGISTRY
from ..version import __version__
from ..weights import check_safetensors, read_safetensors

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
TOKENIZER = "tokenizer"
CARD = "README.md"
FORMAT = "xmodalzoo-model/1"


def inference_state_dict(method: Method) -> dict[str, torch.Tensor]:
    """The method's weights without training-only parts (the batch module)."""
    return {
        k: v.detach().cpu().clone().contiguous()
        for k, v in method.state_dict().items()
        if not k.startswith("batch_module.")
    }


def save_model(method: Method, directory: str | Path, *, card: dict[str, Any] | None = None) -> Path:
    """Write ``method`` as a model folder (atomically) and return its path."""
    from safetensors.torch import save_file

    if method.config is None:
        raise ValueError("the method has no config; assemble it with assemble_method (or zoo.build_method)")
    directory = Path(directory)
    tmp = atomic_dir(directory)
    try:
        cfg = method.config.model_dump(mode="json")
        if cfg.get("batch_module") is not None:
            cfg["batch_module"] = None  # training-only: a model folder holds the inference model alone
        method_entry = REGISTRY.get("method", cfg["type"])
        config = {
            "format": FORMAT,
            "xmodalzoo_version": __version__,
            "method": cfg,
            "plugin": {"name": method_entry.plugin, "distribution": method_entry.distribution},
        }
        (tmp / CONFIG).write_text(json.dumps(config, indent=2))
        save_file(inference_state_dict(method), str(tmp / WEIGHTS), metadata={"format": FORMAT})
        method.tokenizer.save(tmp / TOKENIZER)
        (tmp / CARD).write_text(model_card(cfg, card or {}))
        commit_dir(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def model_card(method_cfg: dict[str, Any], info: dict[str, Any]) -> str:
    """A Hugging Face style model card with the method, its parts and any results."""
    lines = [
        "---",
        "library_name: xmodalzoo",
        "tags: [image-text-retrieval, cross-modal-retrieval, xmodalzoo]",
        "---",
        f"# {info.get('name', method_cfg['type'])}",
        "",
        f"An xmodalzoo `{method_cfg['type']}` model for image–text retrieval.",
        "",
        "```python",
        "import xmodalzoo as zoo",
        f"model = zoo.load({info.get('load_name', 'PATH_OR_NAME')!r})",
        "```",
        "",
        "## Parts",
    ]
    for key in ("image_encoder", "text_encoder", "image_head", "text_head", "similarity"):
        if key in method_cfg and isinstance(method_cfg[key], dict):
            lines.append(f"- {key}: `{method_cfg[key].get('type')}`")
    if info.get("results"):
        lines += ["", "## Results", "", "```json", json.dumps(info["results"], indent=2), "```"]
    if info.get("recipe"):
        lines += ["", "## Training recipe", "", "```yaml", str(info["recipe"]).rstrip(), "```"]
    return "\n".join(lines) + "\n"


def without_downloads(cfg: dict[str, Any]) -> dict[str, Any]:
    """The config without initial-weight sources (downloads, local checkpoints, GloVe files):
    the model folder holds every weight."""
    out = {}
    for k, v in cfg.items():
        if isinstance(v, dict):
            v = without_downloads(v)
        elif k == "pretrained" and v is True:
            v = False
        elif k in ("checkpoint", "glove") and v is not None:
            v = None
        out[k] = v
    return out


def stored_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """A method config (JSON form) as the method loaded from a model folder has it: no training-only
    batch module and no initial-weight sources, whichever way the method was built."""
    return without_downloads({**cfg, "batch_module": None} if "batch_module" in cfg else cfg)


def build_from_folder(directory: str | Path, device: str | torch.device = "cpu") -> Method:
    """The method of a model folder built from its config and tokenizer, *untrained* (freshly
    initialised from the current torch seed; no initial-weight downloads), in eval mode on ``device``."""
    directory = Path(directory)
    cfg_path = directory / CONFIG
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{directory}: not a model folder ({CONFIG} is missing)")
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelFolderError(f"{cfg_path}: not valid JSON ({exc})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else None
        raise ModelFolderError(f"{cfg_path}: unknown model folder format {found!r} (expected {FORMAT})")
    tokenizer = load_tokenizer(directory / TOKENIZER)
    method: Method = REGISTRY.build("method", without_downloads(config["method"]), tokenizer=tokenizer)
    return method.to(device).eval()


def load_model(directory: str | Path, device: str | torch.device = "cpu") -> Method:
    """Rebuild the method saved in a model folder and load its weights (a missing, truncated or corrupt
    ``model.safetensors``: :class:`~xmodalzoo.errors.WeightsFileError` naming it)."""
    directory = Path(directory)
    check_safetensors(directory / WEIGHTS)  # before building: a damaged file fails fast
    method = build_from_folder(directory)
    state = read_safetensors(directory / WEIGHTS)
    missing, unexpected = method.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("batch_module.")]
    if missing or unexpected:
        kind = method.config.type if method.config is not None else type(method).__name__
        raise ModelFolderError(f"{directory / WEIGHTS} does not fit the {kind} model: "
                         f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    return method.to(device).eval()

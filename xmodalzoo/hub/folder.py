"""Model folders: what a trained model is on disk (locally or in a Hugging Face Hub repository).

::

    config.json         format version, library name, distributions and versions, the method's
                        model config (no loss, no optimizer), preprocessing, embedding kind and
                        shape, sha256 and size of each weight file
    model.safetensors   the weights (never a pickle)
    tokenizer/          the tokenizer's own files (vocabulary, ...)
    recipe.yaml         the resolved training recipe (when known)
    eval_results.json   the test results (when known)
    README.md           the model card (:mod:`.card`)

A model folder holds everything needed to encode and score items.  :func:`load_model` checks the
format, that the method's plugin is installed, the weights' checksums (:mod:`.integrity`, before
reading them), rebuilds the method from the registry and loads the weights strictly.  Folders of
format ``xmodalzoo-model/1`` (written before checksums and preprocessing were recorded) still load.
"""
from __future__ import annotations

import json
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from ..encoders.tokenizers import load_tokenizer
from ..errors import ModelFolderError
from ..files import atomic_dir, commit_dir
from ..method import Method
from ..registry import REGISTRY
from ..rundir import results_name
from ..version import __version__
from ..weights import check_safetensors, read_safetensors
from .integrity import file_record, verify_files

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
TOKENIZER = "tokenizer"
CARD = "README.md"
RECIPE = "recipe.yaml"
RESULTS = results_name("test")  # the same name as beside a run's model
LIBRARY = "xmodalzoo"
FORMAT_V1 = "xmodalzoo-model/1"
FORMAT = "xmodalzoo-model/2"
#: every format :func:`load_model` reads, oldest first
FORMATS = (FORMAT_V1, FORMAT)
#: method config fields that only training uses: left out of a model folder (its batch module is
#: written as null instead: see :func:`without_batch_module`)
TRAINING_ONLY = ("loss",)
#: the method config fields holding its parts, with their component kind
PART_KINDS = {"image_encoder": "image_encoder", "text_encoder": "text_encoder", "image_head": "head",
              "text_head": "head", "similarity": "similarity"}


def inference_state_dict(method: Method) -> dict[str, torch.Tensor]:
    """The method's weights without training-only parts (the batch module)."""
    return {
        k: v.detach().cpu().clone().contiguous()
        for k, v in method.state_dict().items()
        if not k.startswith("batch_module.")
    }


def save_model(method: Method, directory: str | Path, *, name: str | None = None, load_name: str | None = None,
               recipe: str | None = None, results: Mapping[str, Any] | None = None, datasets: Sequence[str] = (),
               license: str | None = None, card: Mapping[str, Any] | None = None) -> Path:
    """Write ``method`` as a model folder (atomically: all files or none) and return its path.

    ``recipe`` (the resolved recipe's YAML text) becomes ``recipe.yaml``, ``results`` (an
    ``eval_results.json`` mapping) ``eval_results.json``; both, with ``name``, ``datasets`` and
    ``license``, fill the model card.  ``load_name`` is what the card's snippet passes to
    ``zoo.load`` (default: the folder).  ``card`` is the older spelling: a mapping of the same keys.
    """
    from safetensors.torch import save_file

    if method.config is None:
        raise ValueError("the method has no config; assemble it with assemble_method (or zoo.build_method)")
    extra = dict(card or {})
    name = name or extra.get("name")
    load_name = load_name or extra.get("load_name")
    recipe = recipe if recipe is not None else extra.get("recipe")
    results = results if results is not None else extra.get("results")
    datasets = datasets or tuple(extra.get("datasets", ()))
    license = license or extra.get("license")
    directory = Path(directory)
    cfg = model_config(method)
    plugin = REGISTRY.get("method", cfg["type"])
    tmp = atomic_dir(directory)
    try:
        save_file(inference_state_dict(method), str(tmp / WEIGHTS), metadata={"format": FORMAT})
        method.tokenizer.save(tmp / TOKENIZER)
        config = {
            "format": FORMAT,
            "library_name": LIBRARY,
            "distributions": distributions(cfg),
            "plugin": {"name": plugin.plugin, "distribution": plugin.distribution},
            "method": cfg,
            "preprocessing": preprocessing(method),
            "embedding": embedding_info(method),
            "files": {WEIGHTS: file_record(tmp / WEIGHTS)},
            "card": {"name": name or cfg["type"], "datasets": list(datasets), "license": license},
        }
        (tmp / CONFIG).write_text(json.dumps(config, indent=2))
        if recipe:
            (tmp / RECIPE).write_text(str(recipe))
        if results:
            (tmp / RESULTS).write_text(json.dumps(results, indent=2, default=float))
        write_card(tmp, load_name or str(directory))
        commit_dir(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def write_card(directory: str | Path, load_name: str) -> Path:
    """(Re)write the folder's ``README.md`` from its ``config.json``, ``recipe.yaml`` and
    ``eval_results.json``; ``load_name`` is what the usage snippet passes to ``zoo.load``."""
    from .card import model_card

    directory = Path(directory)
    config = read_config(directory)
    info = config.get("card") or {}
    recipe = (directory / RECIPE).read_text() if (directory / RECIPE).is_file() else None
    results = json.loads((directory / RESULTS).read_text()) if (directory / RESULTS).is_file() else None
    plugin = (config.get("plugin") or {}).get("name")
    text = model_card(config["method"], name=info.get("name") or config["method"]["type"], load_name=load_name,
                      datasets=info.get("datasets") or (), license=info.get("license"), results=results,
                      recipe=recipe, citation=REGISTRY.citations.get(plugin) if plugin else None)
    (directory / CARD).write_text(text)
    return directory / CARD


def model_config(method: Method) -> dict[str, Any]:
    """The method's validated config as JSON, without its training-only fields (loss, batch module)."""
    assert method.config is not None
    cfg = method.config.model_dump(mode="json")
    return {k: v for k, v in without_batch_module(cfg).items() if k not in TRAINING_ONLY}


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"  # a plugin imported from a source tree without being installed


def distributions(cfg: Mapping[str, Any]) -> dict[str, str]:
    """``{distribution: version}`` of xmodalzoo and of every plugin providing the method or one of its parts."""
    out = {"xmodalzoo": __version__}
    entries = [REGISTRY.get("method", cfg["type"])]
    for field, kind in PART_KINDS.items():
        part = cfg.get(field)
        if isinstance(part, Mapping) and part.get("type") in REGISTRY.entries[kind]:
            entries.append(REGISTRY.entries[kind][part["type"]])
    for entry in entries:
        if entry.distribution and entry.distribution not in out:
            out[entry.distribution] = _version(entry.distribution)
    return out


def preprocessing(method: Method) -> dict[str, Any]:
    """How inputs are prepared: the image encoder's eval transform (its steps) and the tokenizer settings."""
    assert method.config is not None
    image_cfg = method.config.image_encoder.model_dump(mode="json")
    transform = method.image_transform(train=False)
    steps = [str(t) for t in getattr(transform, "transforms", [transform])]
    tokenizer = method.tokenizer
    return {
        "image": {"encoder": image_cfg.get("type"), "image_size": image_cfg.get("image_size"),
                  "transform": image_cfg.get("transform"), "eval_steps": steps},
        "tokenizer": {"type": tokenizer.type, "options": tokenizer.options(), "folder": TOKENIZER},
    }


def embedding_info(method: Method) -> dict[str, Any]:
    """The embedding kind and per-item tensor shapes of each side, measured on one probe item
    (a grey image of the encoder's size, a short caption); an image side that takes no pictures
    (precomputed region features) records the kind alone."""
    from PIL import Image

    assert method.config is not None
    training = method.training
    method.eval()
    out: dict[str, Any] = {}
    try:
        with torch.no_grad():
            text = method.embed_texts(["a photo"])
            out["text"] = _shape_of(text)
            size = method.config.image_encoder.model_dump().get("image_size")
            if size:
                out["image"] = _shape_of(method.embed_images([Image.new("RGB", (size, size), (128, 128, 128))]))
            else:
                out["image"] = {"kind": text.kind, "shape": None}
    finally:
        method.train(training)
    return out


def _shape_of(embedding: Any) -> dict[str, Any]:
    return {"kind": embedding.kind,
            "shape": {k: list(v.shape[1:]) for k, v in embedding.tensors().items()}}


def read_config(directory: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a model folder, of a known format; one-line errors otherwise."""
    cfg_path = Path(directory) / CONFIG
    if not cfg_path.is_file():
        raise ModelFolderError(f"{directory}: not a model folder ({CONFIG} is missing)")
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelFolderError(f"{cfg_path}: not valid JSON ({exc})") from None
    found = config.get("format") if isinstance(config, dict) else None
    if found not in FORMATS:
        hint = " (written by a newer xmodalzoo? upgrade it)" if str(found).startswith("xmodalzoo-model/") else ""
        raise ModelFolderError(f"{cfg_path}: unknown model folder format {found!r} "
                               f"(this xmodalzoo reads {', '.join(FORMATS)}){hint}")
    if not isinstance(config.get("method"), dict) or "type" not in config["method"]:
        raise ModelFolderError(f"{cfg_path}: 'method' must be a mapping with a 'type'")
    return config


def require_plugin(config: Mapping[str, Any], cfg_path: Path) -> None:
    """Raise naming the plugin distribution to install when the folder's method is not registered."""
    kind = config["method"]["type"]
    REGISTRY.ensure_loaded()
    if kind in REGISTRY.entries["method"]:
        return
    plugin = config.get("plugin") or {}
    dist = plugin.get("distribution") or f"xmodalzoo-{kind}"
    version = (config.get("distributions") or {}).get(dist)
    failed = (f"; plugin {plugin.get('name')!r} is installed but failed to load (see 'zoo plugins')"
              if plugin.get("name") in REGISTRY.failed_plugins else "")
    raise ModelFolderError(f"{cfg_path}: method {kind!r} is not registered: install the plugin distribution "
                           f"{dist}{f' (version {version} wrote it)' if version else ''}, "
                           f"e.g. pip install {dist}{failed}")


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


def without_batch_module(cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with its training-only batch module stated as null (not omitted: a method loaded from a
    model folder builds none, rather than its default)."""
    return {**cfg, "batch_module": None} if "batch_module" in cfg else cfg


def stored_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """A method config (JSON form) as the method loaded from a model folder has it: no training-only
    batch module and no initial-weight sources, whichever way the method was built."""
    return without_downloads(without_batch_module(cfg))


def build_from_folder(directory: str | Path, device: str | torch.device = "cpu") -> Method:
    """The method of a model folder built from its config and tokenizer, *untrained* (freshly
    initialised from the current torch seed; no initial-weight downloads), in eval mode on ``device``."""
    directory = Path(directory)
    config = read_config(directory)
    require_plugin(config, directory / CONFIG)
    tokenizer = load_tokenizer(directory / TOKENIZER)
    method: Method = REGISTRY.build("method", without_downloads(config["method"]), tokenizer=tokenizer)
    return method.to(device).eval()


def load_model(directory: str | Path, device: str | torch.device = "cpu") -> Method:
    """Rebuild the method saved in a model folder and load its weights (strictly), in eval mode on
    ``device``; the method's ``image_transform()`` and ``tokenizer`` are the folder's."""
    directory = Path(directory)
    config = read_config(directory)
    check_safetensors(directory / WEIGHTS)  # a truncated or garbled file: WeightsFileError saying which
    verify_files(directory, config.get("files") or {})  # then the recorded sha256, before any weight is read
    method = build_from_folder(directory)
    state = read_safetensors(directory / WEIGHTS)
    missing, unexpected = method.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("batch_module.")]
    if missing or unexpected:
        raise ModelFolderError(f"{directory / WEIGHTS} does not fit the {config['method']['type']} model: "
                               f"{_keys('missing', missing)}; {_keys('unexpected', unexpected)}")
    return method.to(device).eval()


def _keys(label: str, keys: Sequence[str], shown: int = 8) -> str:
    if not keys:
        return f"no {label} keys"
    more = f" (+{len(keys) - shown} more)" if len(keys) > shown else ""
    return f"{len(keys)} {label} key{'s' if len(keys) > 1 else ''}: {', '.join(keys[:shown])}{more}"

"""``convert_checkpoint``: an official checkpoint file -> one of our model folders plus ``conversion.json``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import CheckpointError
from ..files import write_json_atomic
from ..registry import REGISTRY
from .base import Converter, OfficialCheckpoint, words_in_id_order
from .keymap import ConversionReport, KeyMap
from .reader import read_checkpoint

#: the report written next to the weights of a converted model folder
REPORT = "conversion.json"


def get_converter(source: str) -> Converter:
    """The converter registered as ``source`` (``zoo list components converter`` lists them)."""
    converter = REGISTRY.build("converter", {"type": source})
    if not isinstance(converter, Converter):
        raise TypeError(f"converter {source!r} built a {type(converter).__name__}, not a Converter")
    return converter


def convert_checkpoint(
    source: str,
    checkpoint: str | Path,
    output: str | Path,
    *,
    recipe: str | Path | None = None,
    overrides: Sequence[str] = (),
    vocab: str | Path | None = None,
    trust_pickle: bool = False,
) -> ConversionReport:
    """Convert the official ``source`` checkpoint file into a model folder at ``output``.

    The model is built from the method's published defaults, or from ``recipe``'s ``method:``
    section, updated with the settings the converter reads from the checkpoint (dimensions,
    options) and then with ``overrides`` (``method.KEY=VALUE``, as ``--set`` in recipes).
    ``vocab`` is a JSON vocabulary for files that hold none (a list of words in id order, or a
    ``{word: id}`` mapping, or VSE∞'s ``{"word2idx": {...}}``).  Raises
    :class:`~xmodalzoo.errors.CheckpointError` when the file is unsafe to read (unless
    ``trust_pickle``) or does not fit; returns the report also written to ``output/conversion.json``.
    """
    from ..hub.folder import save_model

    checkpoint, output = Path(checkpoint), Path(output)
    converter = get_converter(source)
    raw = read_checkpoint(checkpoint, trust_pickle=trust_pickle)
    ck = converter.open(raw, checkpoint)
    cfg, from_ckpt = method_config(converter, ck, recipe, overrides)
    tokenizer = word_tokenizer(cfg, converter.vocabulary(ck) if vocab is None else read_vocab(vocab))
    method = REGISTRY.build("method", cfg, tokenizer=tokenizer).eval()
    ours = {k: v for k, v in method.state_dict().items() if not k.startswith("batch_module.")}
    keys = KeyMap(ck.tensors, ours, ck.origin)
    converter.map(ck, keys)
    account_entries(converter, ck, keys, vocab_given=vocab is not None)
    state, report = keys.finish()
    missing, unexpected = method.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("batch_module.")]
    if missing or unexpected:  # pragma: no cover - finish() already checked both sides
        raise CheckpointError(f"the converted weights do not load: missing {missing[:5]}, unexpected {unexpected[:5]}")
    report.source, report.checkpoint, report.method = source, str(checkpoint), str(cfg["type"])
    report.config_from_checkpoint = from_ckpt
    save_model(method, output)
    write_json_atomic(output / REPORT, report.as_dict())
    return report


def method_config(converter: Converter, ck: OfficialCheckpoint, recipe: str | Path | None,
                  overrides: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The validated method config (JSON values, no initial-weight downloads) and the settings
    that came from the checkpoint (dotted path -> value)."""
    from ..hub.folder import without_downloads
    from ..recipe import apply_overrides, deep_merge, load_recipe_data

    if recipe is not None:
        base = load_recipe_data(recipe).get("method")
        if not isinstance(base, dict):
            raise CheckpointError(f"{recipe}: the recipe has no method: section to build the model from")
        if base.get("type") not in (None, converter.method):
            raise CheckpointError(f"{recipe}: method.type is {base.get('type')!r} but a {converter.method} "
                                  f"checkpoint converts to method {converter.method!r}")
    else:
        base = converter.base_config()
    base = {**base, "type": converter.method}
    entry = REGISTRY.get("method", converter.method)
    # validate first so that the checkpoint's settings merge into complete component configs
    full = entry.validate(base).model_dump(mode="json")
    from_ckpt = converter.method_config(ck)
    merged = deep_merge(full, from_ckpt)
    for text in overrides:
        if not text.strip().startswith("method."):
            raise CheckpointError(f"--set {text!r}: a conversion builds the model only; overrides start with "
                                  "method. (e.g. method.image_encoder.model=resnet50)")
    merged = apply_overrides({"method": merged}, overrides)["method"]
    merged["batch_module"] = None  # training-only: a converted model is an inference model
    cfg = entry.validate(merged).model_dump(mode="json")
    return without_downloads(cfg), _dotted(from_ckpt)


def word_tokenizer(cfg: Mapping[str, Any], words: list[str] | None) -> Any:
    """The word tokenizer of a ``bigru`` text encoder built from ``words``; None for other encoders
    (a transformers encoder brings its own)."""
    from ..encoders.augment import CaptionAugmentConfig
    from ..encoders.vocab import SPECIALS, WordTokenizer

    text = cfg.get("text_encoder") or {}
    if text.get("type") != "bigru":
        return None
    if words is None:
        raise CheckpointError("the checkpoint holds no vocabulary and its text encoder needs one: pass --vocab FILE "
                              "(JSON: the words in id order, or {word: id}, or {\"word2idx\": {...}})")
    if tuple(words[: len(SPECIALS)]) != SPECIALS:
        raise CheckpointError(f"the vocabulary must start with {list(SPECIALS)} (ids 0-3), got {words[:4]}")
    return WordTokenizer(words, CaptionAugmentConfig(**text.get("augment", {})), max_length=text.get("max_length"))


def read_vocab(path: str | Path) -> list[str]:
    """Words in id order from a JSON vocabulary file (see :func:`convert_checkpoint`)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such vocabulary file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not a JSON vocabulary ({exc})") from None
    if isinstance(data, dict) and isinstance(data.get("word2idx"), dict):
        data = data["word2idx"]
    if isinstance(data, list) and all(isinstance(w, str) for w in data):
        return list(data)
    if isinstance(data, dict):
        return words_in_id_order(data, str(path))
    raise CheckpointError(f"{path}: expected a list of words or a {{word: id}} mapping")


def account_entries(converter: Converter, ck: OfficialCheckpoint, keys: KeyMap, *, vocab_given: bool) -> None:
    """Report every non-weight top-level entry of the file: used, or dropped with its reason."""
    reasons = converter.entry_reasons()
    for name, value in ck.entries.items():
        if name in keys.report.entries:  # the converter said what it did with it
            continue
        if name in ("word2idx", "vocab") and vocab_given:
            keys.entry(name, "not used: --vocab was given instead")
        elif name in reasons:
            keys.entry(name, reasons[name])
        else:
            keys.entry(name, f"not used by the model ({type(value).__name__}; the converter does not know it)")


def _dotted(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(_dotted(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out

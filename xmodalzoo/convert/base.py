"""What a method plugin implements to convert the official checkpoints of its paper.

A plugin registers a :class:`Converter` subclass as a component of kind ``converter``::

    r.add("converter", "pcme", build_pcme_converter)   # factory(cfg, **_) -> Converter

and ``zoo convert --from pcme CHECKPOINT -o FOLDER`` finds it by name.  The core reads the file
safely (:mod:`xmodalzoo.convert.reader`), flattens its weights (:meth:`Converter.open`), builds our
model from the method's defaults (or ``--recipe``) updated with :meth:`Converter.method_config`, lets
:meth:`Converter.map` account for every official tensor on a :class:`~xmodalzoo.convert.keymap.KeyMap`,
and writes the model folder with its ``conversion.json``.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

import torch

from ..errors import CheckpointError
from .keymap import KeyMap, flatten_state


@dataclass
class OfficialCheckpoint:
    """An official checkpoint as read from its file.

    ``tensors`` are the weights under flat names (``module.`` stripped; the dicts of an
    ``[img_sd, txt_sd]`` list prefixed ``img_enc.`` / ``txt_enc.``); ``origin`` says where each sat in
    the file; ``entries`` holds the top-level values that are not weights (``opt``, ``criterion``,
    ``word2idx``, ``optimizer``, ``epoch``...); ``options`` the training options as a dict (the
    ``opt`` / ``args`` Namespace or ``config`` mapping), empty when the file has none.
    """

    path: Path
    tensors: dict[str, torch.Tensor]
    origin: dict[str, str] = field(default_factory=dict)
    entries: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def option(self, name: str, default: Any = None) -> Any:
        """One training option (``opt.embed_size``), or ``default``."""
        return self.options.get(name, default)


#: top-level entries of official files that only training needs, with the reason they are dropped
TRAINING_ENTRIES: dict[str, str] = {
    "optimizer": "optimizer state (training only)",
    "optim": "optimizer state (training only)",
    "scheduler": "learning-rate scheduler state (training only)",
    "lr_scheduler": "learning-rate scheduler state (training only)",
    "scaler": "mixed-precision gradient scaler state (training only)",
    "amp": "apex mixed-precision state (training only)",
    "epoch": "training progress (not part of the model)",
    "Eiters": "training progress (not part of the model)",
    "iteration": "training progress (not part of the model)",
    "best_rsum": "validation score of the run (not part of the model)",
    "best_score": "validation score of the run (not part of the model)",
    "best_rsum_val": "validation score of the run (not part of the model)",
    "swa_model": "stochastic-weight-averaging copy kept for training (the converted weights are 'model')",
}

#: names under which official files keep their training options
OPTION_ENTRIES = ("opt", "args", "config", "options")


class Converter:
    """Maps one official checkpoint layout onto our model of :attr:`method`.

    Subclasses set :attr:`method` and implement :meth:`map`; most also override
    :meth:`method_config` (dimensions read from the tensors) and :meth:`vocabulary`.
    """

    #: the registered method the checkpoint becomes (``pcme``, ``vse``...)
    method: ClassVar[str] = ""
    #: the ``model`` entry's layout: a state dict, or a list of state dicts named by these prefixes
    pair_prefixes: ClassVar[tuple[str, ...]] = ("img_enc.", "txt_enc.")

    # ---------------------------------------------------------------- reading
    def open(self, raw: Any, path: Path) -> OfficialCheckpoint:
        """Flatten what :func:`~xmodalzoo.convert.reader.read_checkpoint` returned.

        Accepts a bare state dict, a list ``[img_sd, txt_sd]``, or a dict whose ``model`` (or
        ``state_dict``) entry is either; every other top-level entry lands in ``entries``.
        """
        entries: dict[str, Any] = {}
        if isinstance(raw, Mapping) and not _is_state_dict(raw):
            weights_key = next((k for k in ("model", "state_dict") if k in raw), None)
            if weights_key is None:
                raise CheckpointError(f"{path}: found no 'model' or 'state_dict' entry "
                                      f"(top-level entries: {', '.join(map(str, raw))})")
            weights = raw[weights_key]
            entries = {str(k): v for k, v in raw.items() if k != weights_key}
            where = f"{weights_key}"
        else:
            weights, where = raw, ""
        tensors, origin = self.flatten(weights, where)
        options: dict[str, Any] = {}
        for name in OPTION_ENTRIES:
            if name in entries:
                options = _as_dict(entries[name])
                break
        return OfficialCheckpoint(Path(path), tensors, origin, entries, options)

    def flatten(self, weights: Any, where: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """Flat tensors of the weights entry: a state dict, or a list named by :attr:`pair_prefixes`."""
        if isinstance(weights, (list, tuple)):
            if len(weights) != len(self.pair_prefixes):
                raise CheckpointError(f"{where or 'the checkpoint'} is a list of {len(weights)} state dicts; the "
                                      f"{type(self).__name__} layout has {len(self.pair_prefixes)}")
            tensors: dict[str, torch.Tensor] = {}
            origin: dict[str, str] = {}
            for i, (prefix, sd) in enumerate(zip(self.pair_prefixes, weights)):
                t, o = flatten_state(sd, prefix, f"{where}[{i}]")
                tensors.update(t)
                origin.update(o)
            return tensors, origin
        return flatten_state(weights, "", where)

    # ---------------------------------------------------------------- what to build
    def base_config(self) -> dict[str, Any]:
        """Our method config before the checkpoint's settings (default: the method's published defaults)."""
        return {"type": self.method}

    def method_config(self, ck: OfficialCheckpoint) -> dict[str, Any]:
        """Settings read from the checkpoint (shapes, options), merged over the base config."""
        return {}

    def vocabulary(self, ck: OfficialCheckpoint) -> list[str] | None:
        """The word vocabulary in id order when the file holds one (``word2idx``); else None (the
        user passes ``--vocab``, or the text encoder has its own tokenizer)."""
        word2idx = ck.entries.get("word2idx") or ck.entries.get("vocab")
        if isinstance(word2idx, Mapping) and "word2idx" in word2idx:
            word2idx = word2idx["word2idx"]
        if isinstance(word2idx, Mapping):
            return words_in_id_order(word2idx, f"{ck.path}: word2idx")
        return None

    def entry_reasons(self) -> dict[str, str]:
        """Why each known non-weight top-level entry is not in the model (or how it is used)."""
        reasons = dict(TRAINING_ENTRIES)
        reasons.update({name: "training options; the dimensions they set are read from the tensors"
                        for name in OPTION_ENTRIES})
        reasons.update({"word2idx": "vocabulary, saved as the model folder's tokenizer",
                        "vocab": "vocabulary, saved as the model folder's tokenizer"})
        return reasons

    # ---------------------------------------------------------------- mapping
    def map(self, ck: OfficialCheckpoint, keys: KeyMap) -> None:  # pragma: no cover - abstract
        """Account for every tensor of ``ck`` on ``keys`` (move, rename, tied, drop, put)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- shared layouts
    @staticmethod
    def word_gru_config(ck: OfficialCheckpoint, src: str, combine: str, global_feature: str) -> dict[str, Any]:
        """Our ``bigru`` settings for the word embeddings and biGRU under ``src`` (sizes from the tensors)."""
        return {"type": "bigru", "word_dim": int(ck.tensors[f"{src}embed.weight"].shape[1]),
                "hidden_dim": int(ck.tensors[f"{src}rnn.weight_hh_l0"].shape[1]), "combine": combine,
                "global_feature": global_feature}

    @staticmethod
    def region_config(ck: OfficialCheckpoint, fc: str, mlp_input: str) -> dict[str, Any]:
        """Our ``regions`` encoder settings for the region projection Linear ``fc`` (in and out sizes)."""
        weight = ck.tensors[f"{fc}.weight"]
        return {"type": "regions", "in_dim": int(weight.shape[1]), "out_dim": int(weight.shape[0]),
                "mlp_input": mlp_input}

    @staticmethod
    def map_word_gru(keys: KeyMap, src: str, dst: str) -> None:
        """Word embeddings ``{src}embed.weight`` and GRU ``{src}rnn.*`` -> ``{dst}embed`` / ``{dst}rnn``.

        An embedding with more rows than the vocabulary (DivE's |V| + 1) keeps the first |V| rows;
        the rest is reported as dropped (no word id reaches them).
        """
        emb = keys.tensor(f"{src}embed.weight")
        vocab_size = int(keys.ours[f"{dst}embed.weight"].shape[0])  # our tokenizer's vocabulary
        if emb.shape[0] < vocab_size:
            raise CheckpointError(f"{keys.where(src + 'embed.weight')} has {emb.shape[0]} rows but the vocabulary "
                                  f"has {vocab_size} words (pass the vocabulary the model was trained with)")
        extra = emb.shape[0] - vocab_size
        note = f"rows {vocab_size}..{emb.shape[0] - 1} dropped: no word id of the vocabulary reaches them" if extra else None
        keys.rename(f"{src}embed.weight", f"{dst}embed.weight", (lambda t: t[:vocab_size]) if extra else None, note)
        keys.move(f"{src}rnn.", f"{dst}rnn.")

    @staticmethod
    def map_vse_mlp(keys: KeyMap, src: str, dst: str) -> None:
        """A VSE∞-style two-layer MLP (``layers.{0,1}``, ``bns.{0,1}``) -> ``nn.Sequential`` indices
        0 (Linear), 1 (BatchNorm), 3 (Linear).  ``bns.1`` exists in the official module but its
        forward never applies it: dropped with that reason."""
        keys.move(f"{src}layers.0.", f"{dst}0.")
        keys.move(f"{src}bns.0.", f"{dst}1.")
        keys.move(f"{src}layers.1.", f"{dst}3.")
        keys.drop(f"{src}bns.1.", "BatchNorm after the MLP's last layer, never applied by the official forward")

    @staticmethod
    def resnet_name(ck: OfficialCheckpoint, src: str) -> str | None:
        """The timm name of the torchvision ResNet under ``src`` (resnet18/34/50/101/152) from its
        block counts, or None when the keys are not a torchvision ResNet's."""
        blocks = {int(k[len(src):].split(".")[1]) for k in ck.tensors if k.startswith(f"{src}layer3.")}
        if f"{src}conv1.weight" not in ck.tensors or not blocks:
            return None
        bottleneck = f"{src}layer1.0.conv3.weight" in ck.tensors
        return {(False, 2): "resnet18", (False, 6): "resnet34", (True, 6): "resnet50", (True, 23): "resnet101",
                (True, 36): "resnet152"}.get((bottleneck, max(blocks) + 1))

    @classmethod
    def cnn_config(cls, ck: OfficialCheckpoint, src: str) -> dict[str, Any]:
        """``{"image_encoder": {"model": "resnetN"}}`` for a torchvision ResNet under ``src``; ``{}`` when
        its depth is not recognised (the recipe's backbone then stays)."""
        name = cls.resnet_name(ck, src)
        return {} if name is None else {"image_encoder": {"model": name}}

    @staticmethod
    def map_cnn(keys: KeyMap, src: str, dst: str) -> None:
        """A torchvision ResNet ``{src}*`` -> our timm backbone ``{dst}*`` (the same parameter names);
        an ImageNet classifier ``{src}fc.*`` left in the file is dropped."""
        keys.drop(f"{src}fc.", "ImageNet classifier of the backbone, replaced by the method's heads")
        keys.move(src, dst)


def words_in_id_order(word2idx: Mapping[str, Any], where: str) -> list[str]:
    """The words of a ``{word: id}`` mapping in id order; ids must be exactly 0..N-1."""
    ids = sorted(int(v) for v in word2idx.values())
    if ids != list(range(len(ids))):
        raise CheckpointError(f"{where}: word ids are not exactly 0..{len(ids) - 1}")
    return [w for w, _ in sorted(word2idx.items(), key=lambda kv: int(kv[1]))]


def _is_state_dict(obj: Mapping[Any, Any]) -> bool:
    return bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, argparse.Namespace):
        return dict(vars(value))
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    if hasattr(value, "__dict__"):  # a config object unpickled with --trust-pickle
        return dict(vars(value))
    return {}

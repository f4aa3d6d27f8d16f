"""The bookkeeping of a conversion: every official tensor lands in one of our parameters or is dropped
with a reason; every parameter of ours is filled.

A converter (registered by a method plugin) calls :meth:`KeyMap.move`, :meth:`KeyMap.rename`,
:meth:`KeyMap.tied`, :meth:`KeyMap.drop` and :meth:`KeyMap.put`; :meth:`KeyMap.finish` then checks
that nothing is left over on either side and returns the state dict to load plus the report.
Official tensors are cast to our parameters' dtypes (fp16 checkpoints become fp32); shapes must match.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import torch

from ..errors import CheckpointError

Transform = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class ConversionReport:
    """What a conversion did, written to ``conversion.json`` in the model folder."""

    source: str = ""
    checkpoint: str = ""
    method: str = ""
    #: our key -> {"from": official key (or a description), "note": conversion applied, if any}
    mapped: dict[str, dict[str, str]] = field(default_factory=dict)
    #: official key -> reason it is not in the model
    dropped: dict[str, str] = field(default_factory=dict)
    #: top-level entries of the file that are not tensors: name -> what was done with them
    entries: dict[str, str] = field(default_factory=dict)
    #: settings taken from the checkpoint (dims, options): config path -> value
    config_from_checkpoint: dict[str, Any] = field(default_factory=dict)
    #: number of tensors cast, by "from->to" dtype
    casts: dict[str, int] = field(default_factory=dict)
    conventions: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "checkpoint": self.checkpoint, "method": self.method,
            "mapped": self.mapped, "dropped": self.dropped, "entries": self.entries,
            "config_from_checkpoint": self.config_from_checkpoint, "casts": self.casts,
            "conventions": self.conventions,
        }

    def summary(self) -> list[str]:
        """A few lines for the terminal: counts, drops grouped by reason, casts, conventions."""
        lines = [f"{len(self.mapped)} parameters filled from {self.source} checkpoint {self.checkpoint}"]
        by_reason: dict[str, list[str]] = {}
        for key, reason in self.dropped.items():
            by_reason.setdefault(reason, []).append(key)
        for reason, keys in by_reason.items():
            shown = ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")
            lines.append(f"dropped {len(keys)}: {shown}: {reason}")
        for name, what in self.entries.items():
            lines.append(f"entry {name!r}: {what}")
        for cast, n in self.casts.items():
            lines.append(f"cast {n} tensors {cast}")
        lines += [f"convention: {c}" for c in self.conventions]
        return lines


class KeyMap:
    """Official tensors (flat names) on one side, our state dict's keys on the other.

    ``official`` maps a flat official name (e.g. ``img_enc.fc.weight``, after ``module.`` prefixes
    and ``[img_sd, txt_sd]`` lists were flattened) to its tensor; ``origin`` optionally maps it to
    where it sat in the file (``model[0]['module.fc.weight']``), shown in errors and the report.
    ``ours`` is the freshly built model's state dict (its keys, shapes and dtypes are the targets).
    """

    def __init__(self, official: Mapping[str, torch.Tensor], ours: Mapping[str, torch.Tensor],
                 origin: Mapping[str, str] | None = None) -> None:
        self.official = dict(official)
        self.ours = dict(ours)
        self.origin = dict(origin or {})
        self.state: dict[str, torch.Tensor] = {}
        self.report = ConversionReport()
        self._used: set[str] = set()

    # ------------------------------------------------------------------ queries
    def keys(self, prefix: str = "") -> list[str]:
        """Official keys under ``prefix`` not yet used or dropped, in file order."""
        return [k for k in self.official if k.startswith(prefix) and k not in self._used]

    def has(self, key_or_prefix: str) -> bool:
        """Whether an official key equals ``key_or_prefix`` or starts with it (used or not)."""
        return any(k == key_or_prefix or k.startswith(key_or_prefix) for k in self.official)

    def tensor(self, key: str) -> torch.Tensor:
        """An official tensor (to read a shape or a value), or an error naming the missing key."""
        if key not in self.official:
            raise CheckpointError(f"the checkpoint has no tensor {key!r} (expected by the converter)")
        return self.official[key]

    def where(self, key: str) -> str:
        return self.origin.get(key, key)

    # ------------------------------------------------------------------ mapping
    def rename(self, src: str, dst: str, transform: Transform | None = None, note: str | None = None) -> None:
        """Official ``src`` goes to our ``dst`` (optionally transformed, the note saying how)."""
        if src in self._used:
            raise CheckpointError(f"converter bug: official key {self.where(src)} is mapped twice")
        value = self.tensor(src)
        dtype = value.dtype
        if transform is not None:  # computed in float64, rounded once to our dtype
            value = transform(value.to(torch.float64) if value.is_floating_point() else value)
        self._fill(dst, value, self.where(src), note, dtype)
        self._used.add(src)

    def move(self, src_prefix: str, dst_prefix: str, transform: Transform | None = None,
             note: str | None = None) -> int:
        """Every remaining official key under ``src_prefix`` goes to ``dst_prefix`` + the rest of its
        name; returns how many.  An empty prefix that matches nothing is an error."""
        keys = self.keys(src_prefix)
        if not keys:
            raise CheckpointError(f"the checkpoint has no tensors under {src_prefix!r} (expected by the converter)")
        for k in keys:
            self.rename(k, dst_prefix + k[len(src_prefix):], transform, note)
        return len(keys)

    def put(self, dst: str, value: torch.Tensor | float, source: str, note: str | None = None) -> None:
        """Fill our ``dst`` from a value that is not an official tensor (a ``criterion`` scalar)."""
        self._fill(dst, torch.as_tensor(value), source, note)

    def tied(self, copy_prefix: str, of_prefix: str, reason: str = "weight-tied copy") -> int:
        """Drop the keys under ``copy_prefix`` after checking each equals its twin under ``of_prefix``
        (the same module saved under several names); a copy that differs is an error."""
        keys = self.keys(copy_prefix)
        for k in keys:
            twin = of_prefix + k[len(copy_prefix):]
            if twin not in self.official:
                raise CheckpointError(f"{self.where(k)} is declared a copy of {twin}, which the checkpoint lacks")
            if not torch.equal(self.official[k], self.official[twin]):
                raise CheckpointError(f"{self.where(k)} should be a weight-tied copy of {self.where(twin)} "
                                      "but holds different values")
            self._drop(k, f"{reason} of {twin}")
        return len(keys)

    def drop(self, key_or_prefix: str, reason: str, *, missing_ok: bool = True) -> int:
        """Drop the official key ``key_or_prefix`` or every key under it, with ``reason``."""
        keys = [k for k in self.keys() if k == key_or_prefix or k.startswith(key_or_prefix)]
        if not keys and not missing_ok:
            raise CheckpointError(f"the checkpoint has no tensors under {key_or_prefix!r}")
        for k in keys:
            self._drop(k, reason)
        return len(keys)

    def entry(self, name: str, what: str) -> None:
        """Record what happened to a non-tensor top-level entry of the file."""
        self.report.entries[name] = what

    def convention(self, text: str) -> None:
        """Record a convention conversion (shown in the summary and written to the report)."""
        self.report.conventions.append(text)

    # ------------------------------------------------------------------ the end
    def finish(self) -> tuple[dict[str, torch.Tensor], ConversionReport]:
        """The state dict to load and the report; raises listing official keys left over or our keys
        left unfilled."""
        left = self.keys()
        if left:
            raise CheckpointError(f"{len(left)} official tensors are neither mapped nor dropped: "
                                  f"{_listing(self.where(k) for k in left)}")
        unfilled = [k for k in self.ours if k not in self.state]
        if unfilled:
            raise CheckpointError(f"{len(unfilled)} parameters of the model are not filled by the checkpoint: "
                                  f"{_listing(unfilled)}")
        return self.state, self.report

    def _fill(self, dst: str, value: torch.Tensor, source: str, note: str | None,
              dtype: torch.dtype | None = None) -> None:
        if dst not in self.ours:
            raise CheckpointError(f"{source} maps to {dst!r}, which the model does not have "
                                  "(the checkpoint's layout does not fit this model's settings)")
        if dst in self.state:
            raise CheckpointError(f"{dst!r} is filled twice (from {self.report.mapped[dst]['from']} and {source})")
        target = self.ours[dst]
        if tuple(value.shape) != tuple(target.shape):
            raise CheckpointError(f"{source} has shape {tuple(value.shape)} but {dst} needs {tuple(target.shape)} "
                                  "(pass the matching settings with --recipe or --set)")
        dtype = value.dtype if dtype is None else dtype
        if dtype != target.dtype and dtype != torch.float64:
            cast = f"{str(dtype).removeprefix('torch.')}->{str(target.dtype).removeprefix('torch.')}"
            self.report.casts[cast] = self.report.casts.get(cast, 0) + 1
        self.state[dst] = value.detach().to(target.dtype).clone().contiguous()
        self.report.mapped[dst] = {"from": source, **({"note": note} if note else {})}

    def _drop(self, key: str, reason: str) -> None:
        self.report.dropped[self.where(key)] = reason
        self._used.add(key)


def _listing(keys: Iterable[str], limit: int = 8) -> str:
    keys = list(keys)
    return ", ".join(keys[:limit]) + (f" ... (+{len(keys) - limit} more)" if len(keys) > limit else "")


def flatten_state(obj: Any, prefix: str = "", where: str = "", strip: str = "module.") -> tuple[
        dict[str, torch.Tensor], dict[str, str]]:
    """Flat ``{name: tensor}`` and ``{name: origin}`` of a state dict (or a nested mapping of them),
    with ``strip`` (DataParallel's ``module.``) removed from the front of every key.

    ``prefix`` is put in front of every name (e.g. ``img_enc.`` for the first dict of an
    ``[img_sd, txt_sd]`` list); ``where`` describes the container in the file for the report.
    """
    tensors: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{where or 'the checkpoint'} is a {type(obj).__name__}, not a state dict")
    for key, value in obj.items():
        name = str(key)
        while strip and name.startswith(strip):
            name = name[len(strip):]
        if isinstance(value, torch.Tensor):
            tensors[prefix + name] = value
            origin[prefix + name] = f"{where}[{str(key)!r}]" if where else str(key)
        elif isinstance(value, Mapping):
            sub_t, sub_o = flatten_state(value, f"{prefix}{name}.", f"{where}[{str(key)!r}]", strip)
            tensors.update(sub_t)
            origin.update(sub_o)
        else:
            raise CheckpointError(f"{where}[{str(key)!r}] is a {type(value).__name__} inside a state dict")
    return tensors, origin

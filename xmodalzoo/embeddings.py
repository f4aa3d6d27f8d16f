"""Typed embedding containers: a point, a set of points, or a diagonal Gaussian per item.

All containers hold tensors whose first dimension is the item axis, and share the same operations:
``len``, indexing/slicing along items, ``to(device)``, ``cat``, ``detach``, ``save``/``load``
(safetensors).  ``aux`` carries optional training-time extras from a head (attention maps,
residuals, raw slots) that losses may use; it is dropped by slicing, concatenation and saving.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence, TypeVar

import torch

E = TypeVar("E", bound="Embedding")


@dataclass(repr=False)
class Embedding:
    """Base class; subclasses declare their tensor fields in ``tensor_fields``."""

    tensor_fields: ClassVar[tuple[str, ...]] = ()
    kind: ClassVar[str] = ""

    def tensors(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in self.tensor_fields}

    def _replace(self: E, **tensors: torch.Tensor) -> E:
        return type(self)(**tensors)

    def __len__(self) -> int:
        return int(getattr(self, self.tensor_fields[0]).shape[0])

    def __repr__(self) -> str:
        """The kind, the number of items and each tensor's dtype, shape and device, not its values:
        ``PointEmbedding(kind='point', items=5, vectors=float32[5, 256] cpu)``."""
        parts = [f"kind={self.kind!r}", f"items={len(self)}"]
        for name, t in self.tensors().items():
            dtype = str(t.dtype).removeprefix("torch.")
            parts.append(f"{name}={dtype}[{', '.join(str(d) for d in t.shape)}] {t.device}")
        aux = getattr(self, "aux", None)
        if aux:
            parts.append(f"aux={sorted(aux)}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def __getitem__(self: E, index: Any) -> E:
        """Items along the first axis; always an embedding (a single index gives one item).

        ``index`` is a slice, a sequence/array/tensor of indices or a bool mask, or a single integer
        (Python int, numpy integer, 0-d integer tensor): negative ones count from the end and one out
        of range raises ``IndexError``.
        """
        single = _single_index(index)
        if single is not None:
            n = len(self)
            if not -n <= single < n:
                raise IndexError(f"index {single} is out of range for {type(self).__name__} of {n} items")
            single %= n
            index = slice(single, single + 1)
        return self._replace(**{k: v[index] for k, v in self.tensors().items()})

    @property
    def device(self) -> torch.device:
        return getattr(self, self.tensor_fields[0]).device

    @property
    def dtype(self) -> torch.dtype:
        return getattr(self, self.tensor_fields[0]).dtype

    @property
    def dim(self) -> int:
        return int(getattr(self, self.tensor_fields[0]).shape[-1])

    def to(self: E, *args: Any, **kwargs: Any) -> E:
        return self._replace(**{k: v.to(*args, **kwargs) for k, v in self.tensors().items()})

    def float(self: E) -> E:
        return self._replace(**{k: v.float() for k, v in self.tensors().items()})

    def detach(self: E) -> E:
        return self._replace(**{k: v.detach() for k, v in self.tensors().items()})

    def nbytes_per_item(self) -> int:
        return sum(v[:1].numel() * v.element_size() for v in self.tensors().values())

    @classmethod
    def cat(cls: type[E], items: Sequence[E]) -> E:
        """Concatenate along the item axis."""
        if not items:
            raise ValueError("cannot concatenate an empty list of embeddings")
        kinds = {type(x) for x in items}
        if len(kinds) != 1:
            raise TypeError(f"cannot concatenate different embedding types: {sorted(k.__name__ for k in kinds)}")
        first = items[0]
        return first._replace(**{k: torch.cat([getattr(x, k) for x in items]) for k in first.tensor_fields})

    def save(self, path: str | Path) -> None:
        """Write the tensors to a safetensors file (kind recorded in its metadata), atomically and
        with the umask's ordinary mode (:func:`xmodalzoo.files.atomic_open`)."""
        from safetensors.torch import save

        from .files import atomic_open

        data = save({k: v.detach().contiguous().cpu() for k, v in self.tensors().items()},
                    metadata={"embedding": self.kind})
        with atomic_open(path, "wb") as f:
            f.write(data)

    @staticmethod
    def load(path: str | Path, device: str | torch.device = "cpu") -> "Embedding":
        """Read an embedding written by :meth:`save`."""
        from safetensors import safe_open

        from .weights import check_safetensors

        check_safetensors(path)  # a truncated or foreign file: one line naming it
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            kind = (f.metadata() or {}).get("embedding")
            if kind not in EMBEDDING_TYPES:
                raise ValueError(f"{path}: not an xmodalzoo embedding file (metadata embedding={kind!r})")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        return EMBEDDING_TYPES[kind](**tensors)


@dataclass(repr=False)
class PointEmbedding(Embedding):
    """One vector per item: ``vectors`` (N, D)."""

    vectors: torch.Tensor
    aux: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    tensor_fields: ClassVar[tuple[str, ...]] = ("vectors",)
    kind: ClassVar[str] = "point"

    def __post_init__(self) -> None:
        _check_rank(self, "vectors", 2)


@dataclass(repr=False)
class SetEmbedding(Embedding):
    """K vectors per item: ``vectors`` (N, K, D)."""

    vectors: torch.Tensor
    aux: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    tensor_fields: ClassVar[tuple[str, ...]] = ("vectors",)
    kind: ClassVar[str] = "set"

    def __post_init__(self) -> None:
        _check_rank(self, "vectors", 3)

    @property
    def set_size(self) -> int:
        return int(self.vectors.shape[1])


@dataclass(repr=False)
class GaussianEmbedding(Embedding):
    """A diagonal Gaussian per item: ``mean`` (N, D) and ``logvar`` = log σ² (N, D)."""

    mean: torch.Tensor
    logvar: torch.Tensor
    aux: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    tensor_fields: ClassVar[tuple[str, ...]] = ("mean", "logvar")
    kind: ClassVar[str] = "gaussian"

    def __post_init__(self) -> None:
        _check_rank(self, "mean", 2)
        if self.logvar.shape != self.mean.shape:
            raise ValueError(f"logvar shape {tuple(self.logvar.shape)} != mean shape {tuple(self.mean.shape)}")

    @property
    def variance(self) -> torch.Tensor:
        return self.logvar.exp()

    @property
    def std(self) -> torch.Tensor:
        return (0.5 * self.logvar).exp()


def _single_index(index: Any) -> int | None:
    """``index`` as a Python int when it is one integer (int, numpy integer, 0-d integer tensor)."""
    if isinstance(index, bool):
        return None  # a bool is a mask/None-like index for tensors, not an item number
    if isinstance(index, torch.Tensor):
        if index.dim() != 0 or index.dtype == torch.bool or index.is_floating_point() or index.is_complex():
            return None
        return int(index.item())
    if getattr(index, "ndim", None) not in (None, 0):
        return None  # numpy arrays and the like: fancy indexing
    try:
        return operator.index(index)
    except TypeError:
        return None


def _check_rank(emb: Embedding, name: str, rank: int) -> None:
    t = getattr(emb, name)
    if not isinstance(t, torch.Tensor) or t.dim() != rank:
        shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{type(emb).__name__}.{name} must be a {rank}-d tensor, got {shape}")


EMBEDDING_TYPES: dict[str, type[Embedding]] = {
    "point": PointEmbedding,
    "set": SetEmbedding,
    "gaussian": GaussianEmbedding,
}

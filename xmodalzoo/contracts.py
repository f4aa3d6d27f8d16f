"""Whether the parts of a method fit together, judged from what their registry entries declare.

A head declares the embedding kind it ``emits``; a similarity and a loss the kinds they ``accepts``;
a loss the ``similarities`` it needs (see :meth:`xmodalzoo.registry.Registrar.add`).  Recipes are
checked when they are validated, and :func:`xmodalzoo.method.assemble_method` checks the config it
builds, so a wrong pairing fails with one line per mismatch instead of a type error at step 1::

    recipe.yaml: method.image_head and method.text_head ('pcme_gaussian') emit gaussian embeddings,
    but method.similarity 'cosine' accepts point embeddings only

A part that declares nothing is taken to fit anything.
"""
from __future__ import annotations

from typing import Any, Sequence

from .errors import ContractError
from .registry import REGISTRY, Entry, Registry

HEADS = ("image_head", "text_head")
#: method-config fields that read the heads' embeddings, with their registry kind
CONSUMERS = (("similarity", "similarity"), ("loss", "loss"))


def check_method(cfg: Any, path: str = "method", registry: Registry | None = None) -> None:
    """Raise a :class:`ContractError` (one line per mismatch) when the parts of method config
    ``cfg`` do not fit together; ``path`` is where ``cfg`` sits in the recipe."""
    problems = method_problems(cfg, path, registry)
    if problems:
        raise ContractError(problems)


def method_problems(cfg: Any, path: str = "method", registry: Registry | None = None) -> list[str]:
    """One line per mismatch between the parts of method config ``cfg`` (empty when they fit).

    Reads the fields ``image_head``, ``text_head``, ``similarity`` and ``loss`` where ``cfg`` has
    them (a method config need not derive from :class:`~xmodalzoo.method.MethodConfig`).
    """
    registry = REGISTRY if registry is None else registry
    heads = [(f"{path}.{field}", *_part(cfg, field, "head", registry)) for field in HEADS]
    emitted = [(where, name, emits_kind(entry, sub)) for where, name, entry, sub in heads if entry is not None]
    problems: list[str] = []
    for field, kind in CONSUMERS:
        name, entry, _ = _part(cfg, field, kind, registry)
        accepts = entry.contract.get("accepts") if entry is not None else None
        if accepts is None:
            continue
        misfits = [(where, head, got) for where, head, got in emitted if got is not None and got not in accepts]
        problems += _misfit_lines(misfits, f"{path}.{field} {name!r} accepts {_either(accepts)} embeddings only")
    loss_name, loss_entry, _ = _part(cfg, "loss", "loss", registry)
    sim_name, _, _ = _part(cfg, "similarity", "similarity", registry)
    needs = loss_entry.contract.get("similarities") if loss_entry is not None else None
    if needs is not None and sim_name is not None and sim_name not in needs:
        problems.append(f"{path}.loss {loss_name!r} needs {path}.similarity of type {_either(needs)}, "
                        f"but it is {sim_name!r}")
    return problems


def emits_kind(entry: Entry, cfg: Any) -> str | None:
    """The embedding kind a head entry declares for config ``cfg`` (None: undeclared)."""
    emits = entry.contract.get("emits")
    return emits(cfg) if callable(emits) else emits


def _part(cfg: Any, field: str, kind: str, registry: Registry) -> tuple[str | None, Entry | None, Any]:
    """``(type name, registry entry, sub-config)`` of the part in ``cfg.field`` (Nones when absent)."""
    sub = getattr(cfg, field, None)
    name = sub.get("type") if isinstance(sub, dict) else getattr(sub, "type", None)
    if name is None:
        return None, None, sub
    return str(name), registry.entries.get(kind, {}).get(str(name)), sub


def _misfit_lines(misfits: list[tuple[str, str, str]], consumer: str) -> list[str]:
    """One line per (head type, kind) that ``consumer`` cannot read; two heads alike share a line."""
    groups: dict[tuple[str, str], list[str]] = {}
    for where, head, got in misfits:
        groups.setdefault((head, got), []).append(where)
    lines = []
    for (head, got), places in groups.items():
        verb = "emit" if len(places) > 1 else "emits"
        lines.append(f"{' and '.join(places)} ({head!r}) {verb} {got} embeddings, but {consumer}")
    return lines


def _either(names: Sequence[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"

"""Named pretrained weights that plugins publish (``Registrar.add_pretrained``)."""
from __future__ import annotations

from ..errors import RegistryError
from ..registry import REGISTRY, PretrainedEntry


def list_pretrained(filter: str | None = None) -> list[PretrainedEntry]:
    """Every registered pretrained model, sorted by name (glob ``filter`` optional)."""
    import fnmatch

    REGISTRY.ensure_loaded()
    names = sorted(REGISTRY.pretrained)
    if filter:
        names = [n for n in names if fnmatch.fnmatchcase(n, filter)]
    return [REGISTRY.pretrained[n] for n in names]


def get_pretrained(name: str) -> PretrainedEntry:
    """The pretrained entry called ``name``, or an error listing the closest names."""
    import difflib

    REGISTRY.ensure_loaded()
    if name in REGISTRY.pretrained:
        return REGISTRY.pretrained[name]
    names = sorted(REGISTRY.pretrained)
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
    raise RegistryError(
        f"{name!r} is neither a model folder nor a registered pretrained model.{hint} "
        f"Registered: {', '.join(names) if names else '(none)'}."
    )

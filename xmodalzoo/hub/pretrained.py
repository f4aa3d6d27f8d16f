"""The pretrained index: named weights that plugins declare (``Registrar.add_pretrained``)."""
from __future__ import annotations

import difflib
import fnmatch

from ..errors import HubError, RegistryError
from ..registry import REGISTRY, PretrainedEntry

#: the command that publishes a trained run (an unpublished entry's message names it)
PUSH_COMMAND = "zoo push runs/NAME --repo-id ORG/NAME"


def list_pretrained(filter: str | None = None) -> list[PretrainedEntry]:
    """Every registered pretrained entry, sorted by name (glob ``filter`` optional, e.g. ``"dive*"``),
    published or not: check ``entry.available``."""
    REGISTRY.ensure_loaded()
    names = sorted(REGISTRY.pretrained)
    if filter:
        names = [n for n in names if fnmatch.fnmatchcase(n, filter)]
    return [REGISTRY.pretrained[n] for n in names]


def get_pretrained(name: str) -> PretrainedEntry:
    """The pretrained entry called ``name``, or an error listing the closest names."""
    REGISTRY.ensure_loaded()
    if name in REGISTRY.pretrained:
        return REGISTRY.pretrained[name]
    names = sorted(REGISTRY.pretrained)
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
    raise RegistryError(
        f"{name!r} is neither a model folder, a run folder, hf-hub:ORG/NAME nor a registered pretrained model.{hint} "
        f"Registered: {', '.join(names) if names else '(none)'} (see 'zoo list pretrained')."
    )


def require_available(entry: PretrainedEntry) -> None:
    """Raise, in one line, when ``entry`` has no published weights: which recipe trains them and how
    to publish the result."""
    if not entry.available:
        raise HubError(f"pretrained {entry.name!r} has no published weights (none were released); "
                       f"train them with 'zoo train {entry.recipe}' and publish the run with '{PUSH_COMMAND}'")


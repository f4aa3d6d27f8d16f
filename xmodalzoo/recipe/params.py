"""Checks of a recipe that need its method built: ``train.param_groups`` / ``train.freeze`` patterns.

``zoo validate`` builds the method (on the meta device, so no weights are allocated; initial-weight
downloads switched off and the Hub in offline mode; a one-word vocabulary: the parameter names depend
on none of these) and the loss, and reports every pattern that matches no
parameter, as ``zoo train`` would before creating its run folder.
"""
from __future__ import annotations

from typing import Any

from ..errors import UserError


def parameter_pattern_problems(recipe: Any, source: str = "<recipe>") -> list[str] | None:
    """One line per ``train.param_groups`` or ``train.freeze`` pattern of ``recipe`` that matches no
    parameter of its method (empty: all match, or there are none); None when the method cannot be
    built here (e.g. its text encoder is a Hugging Face model not in the local cache)."""
    import torch

    from ..encoders.pretrained import hub_offline
    from ..hub.folder import without_downloads
    from ..method import build_loss
    from ..registry import REGISTRY
    from ..train.optim import pattern_problems, trainable_parameters

    train = recipe.train
    if not train.param_groups and not train.freeze:
        return []
    try:  # names only: no weights allocated (meta device), no request to the Hub (offline mode)
        with hub_offline(), torch.device("meta"):
            method = REGISTRY.build("method", without_downloads(recipe.method.model_dump(mode="json")),
                                    train_captions=["a"])
            loss = build_loss(recipe.method)
    except UserError:
        raise
    except Exception:  # noqa: BLE001 - a part that needs files or network: the trainer checks at set-up
        return None
    names = [n for n, _ in trainable_parameters(method, loss)]
    problems = pattern_problems(names, [g.pattern for g in train.param_groups], "train.param_groups")
    problems += pattern_problems(names, [f.pattern for f in train.freeze], "train.freeze")
    return [f"{source}: {line}" for line in problems]

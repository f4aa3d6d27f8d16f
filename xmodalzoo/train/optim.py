"""Optimizers with name-pattern parameter groups, and the freezing of parameters by name."""
from __future__ import annotations

import fnmatch
from typing import Iterable

import torch
from torch import nn

from ..errors import RecipeError
from .config import FreezeRule, OptimizerConfig, ParamGroupRule


def matches(name: str, pattern: str) -> bool:
    """Glob match of a parameter name; a plain prefix ``a.b`` also matches everything under ``a.b.``."""
    if fnmatch.fnmatchcase(name, pattern):
        return True
    return not any(c in pattern for c in "*?[") and name.startswith(pattern + ".")


def param_groups(
    named: Iterable[tuple[str, nn.Parameter]], base: OptimizerConfig, rules: list[ParamGroupRule]
) -> list[dict]:
    """One optimizer group per rule (first matching rule wins) plus one for the rest."""
    groups: list[dict] = [
        {"name": r.pattern, "params": [], "lr": base.lr * r.lr_mult, "lr_mult": r.lr_mult,
         "weight_decay": base.weight_decay if r.weight_decay is None else r.weight_decay}
        for r in rules
    ]
    rest = {"name": "default", "params": [], "lr": base.lr, "lr_mult": 1.0, "weight_decay": base.weight_decay}
    for name, p in named:
        for rule, group in zip(rules, groups):
            if matches(name, rule.pattern):
                group["params"].append(p)
                break
        else:
            rest["params"].append(p)
    return [g for g in [*groups, rest] if g["params"]]


def build_optimizer(named: list[tuple[str, nn.Parameter]], cfg: OptimizerConfig,
                    rules: list[ParamGroupRule]) -> torch.optim.Optimizer:
    """The optimizer named in ``cfg`` over every parameter (frozen ones included: they get no grad)."""
    groups = param_groups(named, cfg, rules)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, amsgrad=cfg.amsgrad)
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, amsgrad=cfg.amsgrad)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    try:
        from adamp import AdamP  # type: ignore[import-not-found]
    except ImportError:
        raise ValueError("optimizer 'adamp' needs the adamp package: pip install adamp (or use adamw)") from None
    return AdamP(groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


def apply_freeze(named: list[tuple[str, nn.Parameter]], rules: list[FreezeRule], epoch: int) -> list[str]:
    """Set ``requires_grad`` by the freeze rules for this epoch; returns the frozen names."""
    frozen = []
    for name, p in named:
        freeze = any(matches(name, r.pattern) and epoch < r.epochs for r in rules)
        p.requires_grad_(not freeze)
        if freeze:
            frozen.append(name)
    return frozen


def trainable_parameters(method: nn.Module, loss: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """Every parameter the optimizer sees, by the name patterns match: the method's, then the loss's
    under ``loss.`` (PCME's learnable a, b live in the similarity, i.e. the method)."""
    return [*method.named_parameters(), *((f"loss.{n}", p) for n, p in loss.named_parameters())]


def check_patterns(names: list[str], patterns: list[str], what: str) -> None:
    """Fail early (:class:`~xmodalzoo.errors.RecipeError`, one line per pattern) when a pattern of the
    setting ``what`` (e.g. ``train.freeze``) matches no parameter: a typo would silently do nothing."""
    problems = pattern_problems(names, patterns, what)
    if problems:
        raise RecipeError(problems)


def pattern_problems(names: list[str], patterns: list[str], what: str) -> list[str]:
    """One line per pattern of ``what`` that matches none of the parameter ``names``."""
    prefixes = sorted({".".join(n.split(".")[:2]) for n in names})
    return [f"{what}.{i}.pattern {pattern!r} matches no parameter; parameter prefixes are: {', '.join(prefixes)}"
            for i, pattern in enumerate(patterns) if not any(matches(n, pattern) for n in names)]

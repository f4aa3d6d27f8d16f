"""A throw-away third-party plugin distribution, written to disk, for plugin round-trip tests.

``write_thirdparty_distribution(root)`` writes an importable package ``zoo_thirdparty_demo`` and
its ``.dist-info`` (METADATA + an ``xmodalzoo.plugins`` entry point) into ``root``.  The package
registers the method ``demo_method`` (a :class:`~xmodalzoo.method.MethodConfig` with small
defaults, built by :func:`~xmodalzoo.plugin_api.assemble_method`) and the head ``demo_head``; it
imports only the plugin surface, :mod:`xmodalzoo.plugin_api`, as every plugin should.

The ``thirdparty_plugin`` fixture puts ``root`` on ``sys.path`` and ``PYTHONPATH`` (for
subprocesses), re-discovers plugins, and restores everything afterwards.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pytest

if TYPE_CHECKING:
    from xmodalzoo.registry import Registry

PACKAGE = "zoo_thirdparty_demo"
DISTRIBUTION = "zoo_thirdparty_demo"
PLUGIN = "thirdparty_demo"
METHOD = "demo_method"
HEAD = "demo_head"

_PACKAGE_SOURCE = '''\
"""A demo third-party xmodalzoo plugin: a method and a head."""
from __future__ import annotations

import torch.nn.functional as F
from pydantic import Field
from torch import nn

from xmodalzoo.plugin_api import Component, ComponentConfig, MethodConfig, PointEmbedding, assemble_method

__version__ = "0.1"


class DemoHeadConfig(ComponentConfig):
    """Options of the demo head."""

    temperature: float = Field(1.0, gt=0, description="divides the projected feature")


class DemoHead(nn.Module):
    """Linear projection of the pooled feature, L2-normalised."""

    def __init__(self, cfg: DemoHeadConfig, in_dim: int, embed_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.proj = nn.Linear(in_dim, embed_dim)

    def forward(self, feats):
        return PointEmbedding(F.normalize(self.proj(feats.pooled) / self.cfg.temperature, dim=-1))


def build_demo_head(cfg: DemoHeadConfig, *, encoder, embed_dim: int, **_):
    """Demo head: a normalised linear projection of the pooled feature."""
    return DemoHead(cfg, encoder.pooled_dim, embed_dim)


class DemoMethodConfig(MethodConfig):
    """A small point-embedding method assembled from core parts and the demo head."""

    embed_dim: int = 32
    image_encoder: Component["image_encoder"] = {"type": "timm", "model": "mobilenetv3_small_050", "image_size": 32}
    text_encoder: Component["text_encoder"] = {"type": "bigru", "word_dim": 16, "hidden_dim": 16}
    image_head: Component["head"] = {"type": "demo_head"}
    text_head: Component["head"] = {"type": "demo_head"}


def register(r) -> None:
    r.add("head", "demo_head", build_demo_head, DemoHeadConfig)
    r.add("method", "demo_method", lambda cfg, **ctx: assemble_method(cfg, **ctx), DemoMethodConfig,
          doc="Demo third-party method (core encoders + demo head).")
'''


def write_thirdparty_distribution(root: Path) -> Path:
    """Write the demo plugin package and its dist-info into ``root``; returns ``root``."""
    pkg = root / PACKAGE
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text(_PACKAGE_SOURCE, encoding="utf-8")
    info = root / f"{DISTRIBUTION}-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {DISTRIBUTION}\nVersion: 0.1\nSummary: demo xmodalzoo plugin\n",
        encoding="utf-8",
    )
    (info / "entry_points.txt").write_text(
        f"[xmodalzoo.plugins]\n{PLUGIN} = {PACKAGE}:register\n", encoding="utf-8"
    )
    return root


def write_broken_distribution(root: Path, name: str = "zoo_broken_demo") -> Path:
    """Write a plugin distribution whose module fails to import (a missing dependency)."""
    pkg = root / name
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text(
        textwrap.dedent(
            """\
            import zoo_missing_dependency_xyz  # not installed: importing this plugin fails


            def register(r):
                pass
            """
        ),
        encoding="utf-8",
    )
    info = root / f"{name}-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[xmodalzoo.plugins]\nbroken_demo = {name}:register\n",
                                           encoding="utf-8")
    return root


def write_plugin_distribution(root: Path, distribution: str, entry_points: dict[str, str], package: str,
                              source: str, version: str = "0.1") -> Path:
    """Write an importable ``package`` (its ``__init__.py`` is ``source``) and the dist-info of
    ``distribution`` declaring ``entry_points`` (plugin name -> ``module:register``) into ``root``."""
    pkg = root / package
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text(textwrap.dedent(source), encoding="utf-8")
    info = root / f"{distribution}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n",
                                   encoding="utf-8")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[xmodalzoo.plugins]\n{lines}", encoding="utf-8")
    return root


def pretrained_plugin_source(*names: str, repo_prefix: str = "someone/xmodalzoo-") -> str:
    """Source of a plugin module that registers only pretrained entries (for method ``vse``)."""
    calls = "".join(f"    r.add_pretrained({n!r}, repo_id={repo_prefix + n!r}, method='vse', doc='demo weights {n}')\n"
                    for n in names)
    return f"def register(r):\n{calls}"


@contextlib.contextmanager
def installed_distributions(root: Path, packages: tuple[str, ...]) -> Iterator[Path]:
    """Put ``root`` (holding distributions written above) on ``sys.path`` and discover plugins;
    on exit remove it, forget ``packages`` and discover again."""
    from xmodalzoo.plugins import discover

    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(root))
        importlib.invalidate_caches()
        try:
            discover(force=True)
            yield root
        finally:
            mp.undo()
            for name in packages:
                sys.modules.pop(name, None)
            importlib.invalidate_caches()
            discover(force=True)


@dataclass(frozen=True)
class ThirdPartyPlugin:
    """Where the demo distribution lives and the names it registers."""

    root: Path
    method: str = METHOD
    head: str = HEAD
    plugin: str = PLUGIN
    distribution: str = DISTRIBUTION

    def env(self) -> dict[str, str]:
        """``os.environ`` with the distribution on ``PYTHONPATH``, for subprocesses."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(self.root), env.get("PYTHONPATH", "")) if p)
        return env


@contextlib.contextmanager
def installed_thirdparty(tmp_path: Path) -> Iterator[ThirdPartyPlugin]:
    """Write the demo distribution under ``tmp_path``, put it on ``sys.path`` and discover plugins;
    on exit remove it and discover again."""
    from xmodalzoo.plugins import discover

    root = write_thirdparty_distribution(tmp_path / "thirdparty_site")
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(root))
        importlib.invalidate_caches()
        try:
            discover(force=True)
            yield ThirdPartyPlugin(root)
        finally:
            mp.undo()
            sys.modules.pop(PACKAGE, None)
            importlib.invalidate_caches()
            discover(force=True)


@pytest.fixture
def thirdparty_plugin(tmp_path: Path) -> Iterator[ThirdPartyPlugin]:
    """The demo plugin installed on ``sys.path`` (registered in this process) for one test."""
    with installed_thirdparty(tmp_path) as plugin:
        yield plugin


@pytest.fixture
def bare_registry() -> Iterator["Registry"]:
    """An empty registry for one test (register throw-away components); rediscovered afterwards."""
    from xmodalzoo.plugins import discover
    from xmodalzoo.registry import KINDS, REGISTRY

    discover()
    REGISTRY.entries = {k: {} for k in KINDS}
    REGISTRY.failed_plugins.clear()
    getattr(REGISTRY, "pretrained", {}).clear()
    REGISTRY.version += 1
    try:
        yield REGISTRY
    finally:
        discover(force=True)


@pytest.fixture
def restore_registry() -> Iterator[None]:
    """The full registry, rediscovered after the test (which may add or break plugins)."""
    from xmodalzoo.plugins import discover

    discover()
    try:
        yield
    finally:
        discover(force=True)

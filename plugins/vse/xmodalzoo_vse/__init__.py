"""The VSE method plugin for xmodalzoo: the ``vse_pool`` head (mean/max/GPO) and the ``vse`` method."""
from __future__ import annotations

from xmodalzoo.plugin_api import Registrar

__version__ = "0.1.0"


def register(r: Registrar) -> None:
    """Register VSE's components with the zoo."""
    from .convert import build_vse_infinity_converter
    from .heads import VSEPoolConfig, build_vse_pool
    from .method import VSEConfig, build_vse

    r.add("head", "vse_pool", build_vse_pool, VSEPoolConfig, emits="point")
    r.add("method", "vse", build_vse, VSEConfig)
    r.add("converter", "vse-infinity", build_vse_infinity_converter)

"""The HREM method plugin for xmodalzoo (under construction)."""
from __future__ import annotations

from xmodalzoo.plugin_api import Registrar

__version__ = "0.1.0"


def register(r: Registrar) -> None:
    """Register HREM's components with the zoo."""

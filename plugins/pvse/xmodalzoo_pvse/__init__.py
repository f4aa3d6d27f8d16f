"""The PVSE method plugin for xmodalzoo."""
from __future__ import annotations

from xmodalzoo.plugins import Registrar

__version__ = "0.1.0"


def register(r: Registrar) -> None:
    """Register PVSE's components with the zoo."""

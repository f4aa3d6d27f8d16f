"""Shared helpers of the DivE plugin tests."""
from __future__ import annotations

import pytest

from xmodalzoo.plugins import discover


@pytest.fixture(autouse=True, scope="session")
def _plugins() -> None:
    discover()

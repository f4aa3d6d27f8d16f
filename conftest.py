"""Test-wide settings for both test trees (tests/ and plugins/*/tests): plugins must load cleanly, runs
stay small on 2 cores, no connection leaves the machine, and the test Hub server is a fixture."""
import os
import sys
from pathlib import Path

os.environ.setdefault("XMODALZOO_STRICT_PLUGINS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).parent / "tests"))  # shared helpers (tests use --import-mode=importlib)

import pytest  # noqa: E402

from hubserver import hub_server  # noqa: E402,F401  (fixture: a Hub-compatible server on 127.0.0.1)
from netguard import ALLOW_ENV, GUARD  # noqa: E402


def pytest_configure(config):
    """Refuse every outside connection of the test process (see tests/netguard.py)."""
    if os.environ.get(ALLOW_ENV) != "1":
        GUARD.install()


def pytest_unconfigure(config):
    GUARD.uninstall()


def pytest_terminal_summary(terminalreporter):
    if GUARD.refused:
        terminalreporter.section("network guard: refused outside connections")
        for line in GUARD.summary():
            terminalreporter.write_line(line)


@pytest.fixture(autouse=True)
def _restore_torch_threads():  # type: ignore[no-untyped-def]
    """Several training tests raise torch's thread count for speed; give it back after each test, so
    a later test that needs bit-exact results from one thread (e.g. chunked vs unchunked scores) is not
    affected by the order the tests run in."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)

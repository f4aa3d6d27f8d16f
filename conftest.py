"""Test-wide settings for both test trees (tests/ and plugins/*/tests): plugins must load cleanly, runs
stay small on 2 cores, and the test Hub server is a fixture."""
import os
import sys
from pathlib import Path

os.environ.setdefault("XMODALZOO_STRICT_PLUGINS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).parent / "tests"))  # shared helpers (tests use --import-mode=importlib)

from hubserver import hub_server  # noqa: E402,F401  (fixture: a Hub-compatible server on 127.0.0.1)

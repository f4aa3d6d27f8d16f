"""Test-wide settings: plugins must load cleanly, and runs stay small on 2 cores."""
import os

os.environ.setdefault("XMODALZOO_STRICT_PLUGINS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

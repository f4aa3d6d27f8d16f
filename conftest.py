"""Test-wide settings: plugins must load cleanly, and runs stay small on 2 cores."""
import os

os.environ.setdefault("XMODALZOO_STRICT_PLUGINS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _restore_torch_threads():  # type: ignore[no-untyped-def]
    """Several training tests raise torch's thread count for speed; give it back after each test, so
    a later test that needs bit-exact results from one thread (e.g. chunked vs unchunked scores) is not
    affected by the order the tests run in."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)

"""Fixtures shared by tests/: the throw-away third-party plugin (see thirdparty.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # tests import helper modules (import-mode=importlib)

from thirdparty import bare_registry, restore_registry, thirdparty_plugin  # noqa: E402,F401  (fixtures)


# --- real test datasets (flickr8k/, coco_mini/): one setting, XMODALZOO_TEST_DATA ---
import os  # noqa: E402

import pytest  # noqa: E402

TEST_DATA_ENV = "XMODALZOO_TEST_DATA"
DEFAULT_TEST_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real test datasets: $XMODALZOO_TEST_DATA, default <repo>/../shared/data."""
    path = Path(os.environ.get(TEST_DATA_ENV) or DEFAULT_TEST_DATA).expanduser()
    if not (path / "flickr8k").is_dir() or not (path / "coco_mini").is_dir():
        pytest.skip(f"shared test data not found at {path} (needs flickr8k/ and coco_mini/); "
                    f"set {TEST_DATA_ENV} to the folder holding them")
    return path


@pytest.fixture
def one_thread():
    """Tiny models and matrices: one torch thread is fastest on shared CPUs (and the memory tests'
    scratch space is per thread)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

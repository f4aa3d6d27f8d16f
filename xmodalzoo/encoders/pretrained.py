"""Initial weights downloaded by an encoder (``pretrained: true``): the local cache first, then the
network only when it can be reached, so that a machine without network fails at once, naming the setting.

huggingface_hub retries a file's metadata request five times (1 + 2 + 4 + 8 + 8 s, plus time-outs)
before giving up: about a minute for nothing on an offline machine.  :func:`with_pretrained_weights`
builds once in offline mode (served from the cache when the weights are there), and otherwise opens
one TCP connection to the Hub endpoint (3 s at most) before letting the client download.
"""
from __future__ import annotations

import contextlib
import socket
from typing import Callable, Iterator, TypeVar
from urllib.parse import urlparse

from ..errors import PretrainedWeightsError

T = TypeVar("T")
PROBE_SECONDS = 3.0


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """huggingface_hub in offline mode for the block (it reads the flag at each call)."""
    from huggingface_hub import constants

    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved


def hub_reachable(endpoint: str, timeout: float = PROBE_SECONDS) -> bool:
    """Whether a TCP connection to the host of ``endpoint`` (e.g. ``https://huggingface.co``) opens."""
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def with_pretrained_weights(build: Callable[[], T], setting: str, what: str) -> T:
    """``build()`` (which downloads ``what``, e.g. "the timm weights of resnet18"), from the cache
    when they are there; a one-line :class:`PretrainedWeightsError` naming ``setting`` when they are
    not and the Hub cannot be reached (or the download fails)."""
    from huggingface_hub import constants

    try:
        with hub_offline():
            return build()
    except Exception as exc:  # noqa: BLE001 - not cached (or another failure, raised again below)
        cached_error = exc
    fixes = (f"set {setting}=false (random initial weights), or fetch them once on a machine with network "
             f"(they are kept in the Hugging Face cache, HF_HOME) or point the encoder's checkpoint at a local file")
    if constants.HF_HUB_OFFLINE or not hub_reachable(constants.ENDPOINT):
        where = "offline mode (HF_HUB_OFFLINE)" if constants.HF_HUB_OFFLINE else f"{constants.ENDPOINT} cannot be reached"
        raise PretrainedWeightsError(f"{setting}: {what} are not in the local cache and {where}; {fixes}") \
            from cached_error
    try:
        return build()
    except Exception as exc:  # noqa: BLE001 - a failed download: say which setting asked for it
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise PretrainedWeightsError(f"{setting}: downloading {what} failed ({first}); {fixes}") from exc

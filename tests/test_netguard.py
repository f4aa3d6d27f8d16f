"""The session's network guard (tests/netguard.py): outside connections refused, local ones allowed."""
import socket
import tempfile
from pathlib import Path

import httpx2
import pytest

from netguard import GUARD, NetworkGuardError, is_local_host


@pytest.fixture
def network_guard():
    """The installed guard; the refusals a test provokes on purpose are not reported at the end."""
    if not GUARD.installed:
        pytest.skip("the network guard is turned off (XMODALZOO_ALLOW_NETWORK=1)")
    before = len(GUARD.refused)
    yield GUARD
    del GUARD.refused[before:]


@pytest.mark.parametrize("host, local", [
    ("127.0.0.1", True), ("127.5.0.1", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("LOCALHOST", True), ("0.0.0.0", True), (None, True), ("", True), (b"127.0.0.1", True),
    ("huggingface.co", False), ("8.8.8.8", False), ("2001:db8::1", False), ("10.0.0.1", False),
    ("localhost.example.com", False),
])
def test_is_local_host(host, local):
    assert is_local_host(host) is local


def test_outside_connections_are_refused_naming_the_host(network_guard):
    with pytest.raises(NetworkGuardError, match=r"huggingface\.co:443"):
        socket.create_connection(("huggingface.co", 443), timeout=1)
    with pytest.raises(NetworkGuardError, match=r"example\.org"):
        socket.getaddrinfo("example.org", 80)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        with pytest.raises(NetworkGuardError, match=r"203\.0\.113\.7:80"):
            sock.connect(("203.0.113.7", 80))  # an address (TEST-NET-3): no name resolution involved
        with pytest.raises(NetworkGuardError):
            sock.connect_ex(("203.0.113.7", 80))
    with pytest.raises(httpx2.ConnectError, match=r"network guard: .*huggingface\.co"):
        httpx2.get("https://huggingface.co/api/models/gpt2", timeout=1)
    assert [host for host, _, _ in network_guard.refused[-5:]] == [
        "huggingface.co", "example.org", "203.0.113.7", "203.0.113.7", "huggingface.co"]
    assert network_guard.refused[-1][2].endswith("test_outside_connections_are_refused_naming_the_host")


def test_loopback_and_unix_sockets_are_allowed(network_guard):
    refusals = len(network_guard.refused)
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("localhost", port), timeout=5), socket.socket() as sock:
            sock.connect(("127.0.0.1", port))
            for _ in range(2):
                server.accept()[0].close()
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:  # short: unix socket paths are limited in length
        path = str(Path(folder) / "s")
        with socket.socket(socket.AF_UNIX) as server:
            server.bind(path)
            server.listen()
            with socket.socket(socket.AF_UNIX) as client:
                client.connect(path)
    assert len(network_guard.refused) == refusals

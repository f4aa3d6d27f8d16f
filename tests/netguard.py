"""The test session's network guard: every connection off this machine is refused, loudly.

Installed by the root ``conftest.py`` for the whole pytest process (both test trees, collection
included). It wraps ``socket.socket.connect`` / ``connect_ex`` (which every Python client ends in:
httpx/httpcore, urllib3/requests, asyncio, ssl), ``socket.create_connection`` and
``socket.getaddrinfo`` (so a host name is refused before any DNS query, and the error names it).
Allowed: loopback addresses, ``localhost``, this machine's own host name (resolution only), unix
sockets and non-IP families. A refusal raises :class:`NetworkGuardError`, a ConnectionRefusedError,
so libraries behave as they would offline, and is recorded for the end-of-session summary.

Not covered: subprocesses the tests start (CLI, DDP and third-party-plugin tests), and native code
that opens sockets itself (e.g. hf_xet's Rust client, torch's gloo/nccl). ``XMODALZOO_ALLOW_NETWORK=1``
turns the guard off (to run a test against the real Hub by hand).
"""
from __future__ import annotations

import ipaddress
import os
import socket
from typing import Any, Callable

ALLOW_ENV = "XMODALZOO_ALLOW_NETWORK"


class NetworkGuardError(ConnectionRefusedError):
    """An outside connection attempted in the test session."""


def is_local_host(host: Any) -> bool:
    """Whether ``host`` (a name, an address, None) stays on this machine: loopback, unspecified, localhost."""
    if host in (None, "", b""):
        return True
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if not isinstance(host, str):
        return False
    name = host.strip("[]").split("%")[0].lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


class NetworkGuard:
    """Patches the socket module; ``refused`` lists ``(host, port, test)`` of every refusal."""

    def __init__(self) -> None:
        self.refused: list[tuple[str, Any, str]] = []
        self._originals: dict[str, Callable[..., Any]] = {}

    @property
    def installed(self) -> bool:
        return bool(self._originals)

    def _refuse(self, host: Any, port: Any, what: str) -> NetworkGuardError:
        test = os.environ.get("PYTEST_CURRENT_TEST", "(outside a test)").rsplit(" (", 1)[0]
        self.refused.append((str(host), port, test))
        return NetworkGuardError(
            f"network guard: {what} {host}:{port} refused in the test session (only 127.0.0.1, localhost and "
            f"unix sockets are allowed; use the hub_server fixture for the Hugging Face Hub; {ALLOW_ENV}=1 "
            f"turns the guard off)")

    def _check_address(self, sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
            if not is_local_host(address[0]):
                raise self._refuse(address[0], address[1] if len(address) > 1 else None, "connection to")

    def install(self) -> None:
        """Patch the socket module (idempotent)."""
        if self.installed:
            return
        guard = self
        connect, connect_ex = socket.socket.connect, socket.socket.connect_ex
        create_connection, getaddrinfo = socket.create_connection, socket.getaddrinfo
        own_name = socket.gethostname().lower()

        def guarded_connect(sock: socket.socket, address: Any) -> None:
            guard._check_address(sock, address)
            return connect(sock, address)

        def guarded_connect_ex(sock: socket.socket, address: Any) -> int:
            guard._check_address(sock, address)
            return connect_ex(sock, address)

        def guarded_create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
            if not is_local_host(address[0]):
                raise guard._refuse(address[0], address[1], "connection to")
            return create_connection(address, *args, **kwargs)

        def guarded_getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            name = host.decode(errors="replace") if isinstance(host, bytes) else host
            if not is_local_host(name) and str(name).lower() != own_name:
                raise guard._refuse(name, port, "name resolution of")
            return getaddrinfo(host, port, *args, **kwargs)

        self._originals = {"connect": connect, "connect_ex": connect_ex,
                           "create_connection": create_connection, "getaddrinfo": getaddrinfo}
        socket.socket.connect = guarded_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = guarded_connect_ex  # type: ignore[method-assign]
        socket.create_connection = guarded_create_connection  # type: ignore[assignment]
        socket.getaddrinfo = guarded_getaddrinfo  # type: ignore[assignment]

    def uninstall(self) -> None:
        """Restore the socket module."""
        if not self.installed:
            return
        socket.socket.connect = self._originals["connect"]  # type: ignore[method-assign]
        socket.socket.connect_ex = self._originals["connect_ex"]  # type: ignore[method-assign]
        socket.create_connection = self._originals["create_connection"]  # type: ignore[assignment]
        socket.getaddrinfo = self._originals["getaddrinfo"]  # type: ignore[assignment]
        self._originals = {}

    def summary(self) -> list[str]:
        """One line per refusal, for the end of the session."""
        return [f"{host}:{port} by {test}" for host, port, test in self.refused]


GUARD = NetworkGuard()  # the session's guard (root conftest.py installs it)

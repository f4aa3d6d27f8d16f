"""A Hugging Face Hub–compatible HTTP server on 127.0.0.1 for tests, and the ``hub_server`` fixture.

The Hub is unreachable from the test machines, so tests that download or upload through
huggingface_hub talk to this server instead (stdlib ``http.server`` in a thread, repos in memory)::

    def test_roundtrip(hub_server, tmp_path):
        api = HfApi()                                     # HF_ENDPOINT points at the server
        api.create_repo("zoo-tester/tiny", private=True)  # the fixture's token is the owner's
        api.upload_folder(repo_id="zoo-tester/tiny", folder_path=tmp_path / "model")
        path = hf_hub_download("zoo-tester/tiny", "config.json")   # into the fixture's empty cache
        assert hub_server.count("GET", r"/resolve/") == 1

The protocol (routes, headers, LFS, redirects) is in ``tests/hubapi.py``, the repos and git ids in
``tests/hubstore.py``. This module adds what tests need around it: tokens and accounts, a request
log, fault injection (5xx bursts, connections dropped in the middle of a body), seeding repos
without HTTP, and pointing huggingface_hub (in this process and in subprocesses) at the server.
``docs/testing.md`` explains the whole set-up.
"""
from __future__ import annotations

import importlib
import re
import threading
import traceback
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator, Mapping
from urllib.parse import parse_qs, urlsplit

import pytest

from hubapi import HubApi, HubUser, Request, Response
from hubstore import Repo, new_repo

DEFAULT_USER = "zoo-tester"
DEFAULT_TOKEN = "hf_testhub_zootester_0123456789abcdef"  # fake: only this server knows it


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the server saw it; ``fault`` is "fail" or "drop" when one was injected."""

    method: str
    path: str  # raw path, without the query
    query: str
    headers: Mapping[str, str]  # lower-case names
    status: int
    fault: str | None = None


@dataclass
class _Fault:
    kind: str  # "fail": answer `status`; "drop": send the headers and `after_bytes` of the body, then hang up
    pattern: re.Pattern[str]
    method: str | None
    remaining: int
    status: int = 500
    after_bytes: int | None = None

    def matches(self, method: str, path: str) -> bool:
        return self.remaining > 0 and self.method in (None, method) and bool(self.pattern.search(path))


class HubServer:
    """An in-memory Hub on ``127.0.0.1:<free port>``; use as a context manager or start()/stop().

    Args:
        lfs_threshold: files larger than this many bytes are uploaded through LFS (the Hub: 10 MB);
            so are binary files and files the repo's ``.gitattributes`` routes to LFS.
        multipart_chunk_size: LFS objects larger than this are uploaded in parts of this size (the
            multipart transfer); None: always one PUT (the basic transfer).
        page_size: entries per page of the tree listing (the Hub: 1000).
    """

    def __init__(self, *, lfs_threshold: int = 10_000_000, multipart_chunk_size: int | None = None,
                 page_size: int = 1000) -> None:
        self.api = HubApi(lfs_threshold=lfs_threshold, multipart_chunk_size=multipart_chunk_size,
                          page_size=page_size)
        self._lock = threading.RLock()  # one request at a time touches the repos, log and faults
        self._users: dict[str, HubUser] = {}
        self._log: list[LoggedRequest] = []
        self._faults: list[_Fault] = []
        self.errors: list[str] = []  # tracebacks of requests the server failed on (its own bugs)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.add_user(DEFAULT_USER, DEFAULT_TOKEN)

    # --- lifecycle ---
    def start(self) -> "HubServer":
        handler = type("HubHandler", (_Handler,), {"hub": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self.api.endpoint = f"http://127.0.0.1:{self.port}"
        self.api.cdn_endpoint = f"http://localhost:{self.port}"  # another origin: the client treats it as a CDN
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="test-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "the server is not started"
        return self._httpd.server_address[1]

    @property
    def endpoint(self) -> str:
        """The base URL to put in HF_ENDPOINT, ``http://127.0.0.1:<port>``."""
        return self.api.endpoint

    # --- accounts ---
    @property
    def user(self) -> str:
        return DEFAULT_USER

    @property
    def token(self) -> str:
        """The default account's token (write access to its own namespace)."""
        return DEFAULT_TOKEN

    def add_user(self, name: str, token: str, *, orgs: tuple[str, ...] = (), can_write: bool = True) -> HubUser:
        """Register an account; requests with ``Authorization: Bearer <token>`` act as it."""
        user = HubUser(name, token, tuple(orgs), can_write)
        with self._lock:
            self._users[token] = user
        return user

    # --- seeding repos without going through HTTP ---
    def add_repo(self, repo_id: str, files: Mapping[str, bytes] | None = None, *, repo_type: str = "model",
                 private: bool = False) -> str:
        """Create ``repo_id`` (with the Hub's initial ``.gitattributes`` commit), commit ``files`` to
        ``main`` if any, and return the head commit id."""
        with self._lock:
            repo = new_repo(repo_type, repo_id, private=private, author=repo_id.split("/")[0])
            self.api.repos[repo.key] = repo
        return self.commit_files(repo_id, files, repo_type=repo_type) if files else repo.refs["refs/heads/main"]

    def commit_files(self, repo_id: str, files: Mapping[str, bytes] | None = None, *, repo_type: str = "model",
                     branch: str = "main", delete: tuple[str, ...] = (), message: str = "seed files") -> str:
        """Commit ``files`` (stored as LFS or regular by the upload rule) and deletions to ``branch``."""
        with self._lock:
            repo = self.repo(repo_id, repo_type)
            additions = []
            for path, data in (files or {}).items():
                mode = repo.upload_mode(branch, path, len(data), data[:512], self.api.lfs_threshold)
                additions.append(repo.store_lfs(path, data) if mode == "lfs" else repo.store_regular(path, data))
            commit, _ = repo.commit(branch, additions=additions, deleted_files=delete, title=message,
                                    author=repo_id.split("/")[0])
        return commit.oid

    def repo(self, repo_id: str, repo_type: str = "model") -> Repo:
        """The stored repo, for assertions on what the server holds (KeyError if absent)."""
        return self.api.repos[f"{repo_type}s/{repo_id}"]

    # --- request log ---
    @property
    def requests(self) -> list[LoggedRequest]:
        """Every request served so far (a copy), oldest first."""
        with self._lock:
            return list(self._log)

    def clear_requests(self) -> None:
        with self._lock:
            self._log.clear()

    def count(self, method: str | None = None, pattern: str | None = None) -> int:
        """How many logged requests have ``method`` (any if None) and a path matching ``pattern`` (re.search)."""
        return sum(1 for r in self.requests
                   if method in (None, r.method) and (pattern is None or re.search(pattern, r.path)))

    # --- fault injection ---
    def fail(self, pattern: str, *, status: int = 500, times: int = 1, method: str | None = None) -> None:
        """Answer the next ``times`` requests whose path matches ``pattern`` with HTTP ``status``."""
        with self._lock:
            self._faults.append(_Fault("fail", re.compile(pattern), method, times, status=status))

    def drop(self, pattern: str, *, after_bytes: int | None = None, times: int = 1, method: str | None = "GET") -> None:
        """For the next ``times`` matching requests, send the status line, the headers (with the full
        Content-Length) and ``after_bytes`` bytes of the body (None: half of it), then close the
        connection: a download cut in the middle."""
        with self._lock:
            self._faults.append(_Fault("drop", re.compile(pattern), method, times, after_bytes=after_bytes))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    # --- serving (called by the handler threads) ---
    def _serve(self, handler: "_Handler") -> None:
        url = urlsplit(handler.path)
        headers = {name.lower(): value for name, value in handler.headers.items()}
        body = handler.read_body()
        with self._lock:
            fault = next((f for f in self._faults if f.matches(handler.command, url.path)), None)
            if fault is not None:
                fault.remaining -= 1
            if fault is not None and fault.kind == "fail":
                response = Response.of_json({"error": f"injected HTTP {fault.status}"}, fault.status)
            else:
                response = self._answer_or_report(handler.command, url.path, url.query, headers, body)
            self._log.append(LoggedRequest(handler.command, url.path, url.query, headers, response.status,
                                           fault.kind if fault else None))
        cut = None
        if fault is not None and fault.kind == "drop":
            cut = len(response.body) // 2 if fault.after_bytes is None else fault.after_bytes
        handler.send(response, body_bytes=cut)

    def _answer_or_report(self, method: str, path: str, query: str, headers: dict[str, str],
                          body: bytes) -> Response:
        """The answer, or a 500 naming the server's own exception (kept in ``errors``)."""
        try:
            return self._answer(method, path, query, headers, body)
        except Exception as error:  # a bug of the test server: answer, and fail the test at teardown
            self.errors.append(f"{method} {path}: {traceback.format_exc()}")
            message = f"test Hub error: {type(error).__name__}: {error}"
            return Response.of_json({"error": message}, 500, {"X-Error-Message": " ".join(message.split())[:200]})

    def _answer(self, method: str, path: str, query: str, headers: dict[str, str], body: bytes) -> Response:
        user = None
        authorization = headers.get("authorization", "")
        if authorization.lower().startswith("bearer "):
            user = self._users.get(authorization[len("bearer "):].strip())
            if user is None:
                message = "Invalid credentials in Authorization header"
                return Response.of_json({"error": message}, 401, {"X-Error-Message": message})
        request = Request(method, path, parse_qs(query, keep_blank_values=True), headers, body, user)
        return self.api.handle(request)


class _Handler(BaseHTTPRequestHandler):
    """Reads a request, lets the HubServer answer it, writes the answer (HTTP/1.1, keep-alive)."""

    protocol_version = "HTTP/1.1"
    server_version = "TestHub/1.0"
    hub: HubServer  # set on the subclass HubServer.start() makes

    def do_GET(self) -> None:
        self.hub._serve(self)

    do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def send(self, response: Response, *, body_bytes: int | None = None) -> None:
        """Write ``response``; HEAD gets the headers only. ``body_bytes``: stop after that many body
        bytes and close the connection (the Content-Length still announces the whole body)."""
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if body_bytes is not None:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body if body_bytes is None else response.body[:body_bytes])
        if body_bytes is not None:
            self.wfile.flush()
            self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        pass  # the HubServer keeps its own log


# --- pointing huggingface_hub at a server ---

def client_env(server: HubServer, hf_home: Path) -> dict[str, str]:
    """The environment that points a huggingface_hub client (and any subprocess) at ``server`` with an
    empty cache under ``hf_home``: endpoint, token, cache folders, telemetry and Xet off, online."""
    return {
        "HF_ENDPOINT": server.endpoint,
        "HF_TOKEN": server.token,
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(hf_home / "hub"),
        "HF_ASSETS_CACHE": str(hf_home / "assets"),
        "HF_XET_CACHE": str(hf_home / "xet"),
        "HF_TOKEN_PATH": str(hf_home / "token"),
        "HF_HUB_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        # hf_xet is installed: with it the client uploads LFS files through a Xet storage server,
        # which this server does not implement (see docs/testing.md).
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }


def point_client_at(server: HubServer, hf_home: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Set :func:`client_env` in ``os.environ`` and in the constants huggingface_hub read at import.

    huggingface_hub reads HF_ENDPOINT, the cache folders and the offline/telemetry/Xet switches once,
    when it is imported (``huggingface_hub.constants``), and the module-level ``HfApi`` behind
    ``huggingface_hub.create_repo`` & co. keeps the endpoint of that moment; both are patched here
    for the test, and its shared HTTP client is closed so no connection outlives the server."""
    from huggingface_hub import constants, hf_api
    from huggingface_hub.utils import _cache_assets, _cache_manager, _http

    env = client_env(server, hf_home)
    for name in ("HF_OIDC_RESOURCE", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_HUB_CACHE", "HUGGINGFACE_CO_STAGING"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    hub_cache, assets = env["HF_HUB_CACHE"], env["HF_ASSETS_CACHE"]
    patched = {
        "ENDPOINT": server.endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": server.endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_URL_HOSTS": constants.HF_URL_HOSTS | {"127.0.0.1"},
        "HF_HOME": env["HF_HOME"], "HF_HUB_CACHE": hub_cache, "HUGGINGFACE_HUB_CACHE": hub_cache,
        "HF_ASSETS_CACHE": assets, "HUGGINGFACE_ASSETS_CACHE": assets, "HF_XET_CACHE": env["HF_XET_CACHE"],
        "HF_TOKEN_PATH": env["HF_TOKEN_PATH"], "HF_STORED_TOKENS_PATH": str(hf_home / "stored_tokens"),
        "HF_HUB_OFFLINE": False, "HF_HUB_DISABLE_TELEMETRY": True, "HF_HUB_DISABLE_XET": True,
    }
    for name, value in patched.items():
        monkeypatch.setattr(constants, name, value)
    monkeypatch.setattr(_cache_manager, "HF_HUB_CACHE", hub_cache)
    monkeypatch.setattr(_cache_assets, "HF_ASSETS_CACHE", assets)
    monkeypatch.setattr(hf_api.api, "endpoint", server.endpoint)
    monkeypatch.setattr(importlib.import_module("huggingface_hub.utils.tqdm"), "HF_HUB_DISABLE_PROGRESS_BARS", True)
    _http.close_session()
    return env


@pytest.fixture
def hub_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """A fresh :class:`HubServer` with huggingface_hub pointed at it: HF_ENDPOINT, the default
    account's token in HF_TOKEN, an empty HF_HOME under ``tmp_path``, telemetry and Xet off, online.
    Subprocesses started by the test inherit the environment."""
    from huggingface_hub.utils import _http

    with HubServer() as server:
        point_client_at(server, tmp_path / "hf_home", monkeypatch)
        yield server
        _http.close_session()
    assert not server.errors, "the test Hub failed on requests:\n" + "\n".join(server.errors)

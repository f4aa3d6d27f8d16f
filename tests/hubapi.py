"""The Hub's HTTP protocol over the in-memory repos of ``tests/hubstore.py``: a request in, a response out.

No sockets here (``tests/hubserver.py`` carries the bytes, checks tokens, logs and injects faults).
Routes, as huggingface_hub 2.x calls them (``{T}`` is ``models``/``datasets``/``spaces``, ``{P}`` the
URL prefix ``""``/``datasets/``/``spaces/``, ``{rev}`` and folder paths percent-encoded):

- ``GET /api/whoami-v2``; ``POST /api/validate-yaml`` (accepts every card); ``POST /api/repos/create``;
  ``DELETE /api/repos/delete``
- ``GET /api/{T}/{repo}`` and ``/api/{T}/{repo}/revision/{rev}`` (repo info, ``?blobs=1`` for sizes and
  LFS data), ``GET .../tree/{rev}[/{folder}]`` (``?recursive=``, paginated with a ``Link: rel="next"``
  header), ``POST .../paths-info/{rev}``, ``GET .../refs``, ``GET .../commits/{rev}``
- ``POST .../preupload/{rev}``, ``POST .../commit/{rev}`` (NDJSON; ``?create_pr=1``),
  ``POST|DELETE .../branch/{name}``, ``POST .../tag/{rev}``, ``DELETE .../tag/{tag}``, ``PUT .../settings``
- ``HEAD|GET /{P}{repo}/resolve/{rev}/{path}``: a regular file is served here (``ETag`` = git oid,
  ``X-Repo-Commit``, ``Range``); an LFS file answers 302 to a "CDN" URL on the other loopback name
  (``localhost`` when the endpoint is ``127.0.0.1``) with ``X-Linked-Etag`` (sha256) and ``X-Linked-Size``,
  so the client treats it as off-Hub storage, as it does the real CDN
- ``POST /{P}{repo}.git/info/lfs/objects/batch`` and ``.../verify`` (the git-LFS upload protocol, basic
  or multipart); the pre-signed ``PUT /lfs-upload/...`` (and ``.../part/{n}`` + completion ``POST``)
- ``/api/{T}/{repo}/xet-{read,write}-token/...``: 501, the server has no Xet storage

Anything else answers 501 with the method and path, so a missing route is loud.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping
from urllib.parse import parse_qs, unquote, urlencode

from hubstore import (
    BadRequest,
    Conflict,
    EntryNotFound,
    FileEntry,
    Forbidden,
    Repo,
    RepoNotFound,
    RevisionNotFound,
    StoreError,
    Unauthorized,
    is_ignored,
    lfs_entry,
    new_repo,
)

URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
PLURAL = {"models": "model", "datasets": "dataset", "spaces": "space"}
LFS_JSON = "application/vnd.git-lfs+json"

# (method, action, number of path segments after the repo id) -> (HubApi method, needs write access).
# Each method is called as method(request, repo, argument), the argument being the unquoted segment
# after the action (a revision, branch or tag name) or None.
_REPO_ROUTES = {
    ("GET", "", 0): ("_info", False),
    ("GET", "revision", 2): ("_info", False),
    ("GET", "refs", 1): ("_refs", False),
    ("GET", "commits", 2): ("_commits", False),
    ("POST", "paths-info", 2): ("_paths_info", False),
    ("POST", "preupload", 2): ("_preupload", True),
    ("POST", "commit", 2): ("_commit", True),
    ("POST", "branch", 2): ("_create_branch", True),
    ("DELETE", "branch", 2): ("_delete_branch", True),
    ("POST", "tag", 2): ("_create_tag", True),
    ("DELETE", "tag", 2): ("_delete_tag", True),
    ("PUT", "settings", 1): ("_settings", True),
}


@dataclass(frozen=True)
class HubUser:
    """An account: its token, the organisations it may write to, and whether its token can write."""

    name: str
    token: str
    orgs: tuple[str, ...] = ()
    can_write: bool = True

    def owns(self, namespace: str) -> bool:
        return namespace == self.name or namespace in self.orgs


@dataclass
class Request:
    """One HTTP request: ``path`` is the raw (percent-encoded) path without the query."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Mapping[str, str]  # lower-case names
    body: bytes = b""
    user: HubUser | None = None

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def flag(self, name: str) -> bool:
        return (self.param(name) or "").lower() in ("1", "true", "yes")

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"{}")
        except ValueError as error:
            raise BadRequest(f"the request body is not JSON: {error}") from None


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @classmethod
    def of_json(cls, payload: Any, status: int = 200, headers: Mapping[str, str] | None = None,
                content_type: str = "application/json") -> "Response":
        return cls(status, {"Content-Type": content_type, **(headers or {})}, json.dumps(payload).encode())

    @classmethod
    def of_error(cls, error: StoreError) -> "Response":
        headers = {"X-Error-Message": error.message}
        if error.code:
            headers["X-Error-Code"] = error.code
        if error.commit:
            headers["X-Repo-Commit"] = error.commit
        return cls.of_json({"error": error.message}, error.status, headers)


def iso_date(timestamp: int) -> str:
    """The Hub's date format, ``2024-01-31T12:00:00.000Z``."""
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, stop)`` of a ``Range: bytes=a-b`` / ``a-`` / ``-n`` header; None without one.

    Raises ValueError for a range the server cannot satisfy."""
    if not header:
        return None
    match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if not match or match.group(1) == match.group(2) == "":
        raise ValueError(header)
    first, last = match.groups()
    if first == "":
        start, stop = max(size - int(last), 0), size
    else:
        start, stop = int(first), min(int(last) + 1, size) if last else size
    if start >= size or start >= stop:
        raise ValueError(header)
    return start, stop


def file_response(request: Request, data: bytes, headers: Mapping[str, str]) -> Response:
    """200 with ``data``, or 206 with the requested byte range (416 if it cannot be served)."""
    headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes", **headers}
    try:
        span = byte_range(request.headers.get("range"), len(data))
    except ValueError:
        return Response(416, {**headers, "Content-Range": f"bytes */{len(data)}"})
    if span is None:
        return Response(200, headers, data)
    start, stop = span
    return Response(206, {**headers, "Content-Range": f"bytes {start}-{stop - 1}/{len(data)}"}, data[start:stop])


class HubApi:
    """The Hub's repos and routes. ``endpoint`` is the server's base URL, ``cdn_endpoint`` the URL LFS
    files are redirected to; both are set once the server has its port."""

    def __init__(self, *, lfs_threshold: int, multipart_chunk_size: int | None, page_size: int) -> None:
        self.lfs_threshold = lfs_threshold
        self.multipart_chunk_size = multipart_chunk_size
        self.page_size = page_size
        self.endpoint = ""
        self.cdn_endpoint = ""
        self.repos: dict[str, Repo] = {}  # Repo.key -> repo
        self._secret = secrets.token_bytes(32)  # signs the pre-signed LFS upload and CDN URLs
        self._parts: dict[tuple[str, str], dict[int, bytes]] = {}

    # --- entry point ---
    def handle(self, request: Request) -> Response:
        """Answer one request; Hub errors become their HTTP status and X-Error-* headers."""
        try:
            return self._route(request)
        except StoreError as error:
            return Response.of_error(error)

    def _route(self, request: Request) -> Response:
        segments = request.path.split("/")[1:]
        head = segments[0] if segments else ""
        if head == "api":
            return self._route_api(request, segments[1:])
        if head == "cdn-lfs":
            return self._cdn(request, segments[1:])
        if head == "lfs-upload":
            return self._lfs_upload(request, segments[1:])
        repo_type = PLURAL.get(head) if head in ("datasets", "spaces") else "model"
        rest = segments[1:] if head in ("datasets", "spaces") else segments
        if len(rest) >= 5 and rest[2] == "resolve" and request.method in ("GET", "HEAD"):
            return self._resolve(request, self._readable(request, repo_type, _repo_id(rest)), rest[3], rest[4:])
        if len(rest) == 6 and rest[1].endswith(".git") and rest[2:5] == ["info", "lfs", "objects"]:
            repo_id = _repo_id([rest[0], rest[1][: -len(".git")]])
            if rest[5] == "batch" and request.method == "POST":
                return self._lfs_batch(request, self._writable(request, repo_type, repo_id))
            if rest[5] == "verify" and request.method == "POST":
                return self._lfs_verify(request, self._readable(request, repo_type, repo_id))
        return _not_implemented(request)

    def _route_api(self, request: Request, segments: list[str]) -> Response:
        method = request.method
        if segments == ["whoami-v2"] and method == "GET":
            return self._whoami(request)
        if segments == ["validate-yaml"] and method == "POST":
            return Response.of_json({"errors": [], "warnings": []})
        if segments == ["repos", "create"] and method == "POST":
            return self._create_repo(request)
        if segments == ["repos", "delete"] and method == "DELETE":
            return self._delete_repo(request)
        if len(segments) < 3 or segments[0] not in PLURAL:
            return _not_implemented(request)
        repo_type, repo_id, rest = PLURAL[segments[0]], _repo_id(segments[1:3]), segments[3:]
        action = rest[0] if rest else ""
        if action == "tree" and len(rest) >= 2 and method == "GET":
            repo = self._readable(request, repo_type, repo_id)
            return self._tree(request, repo, unquote(rest[1]), "/".join(unquote(s) for s in rest[2:]))
        if action in ("xet-read-token", "xet-write-token"):
            return Response.of_json({"error": "this test Hub has no Xet storage: set HF_HUB_DISABLE_XET=1"}, 501)
        route = _REPO_ROUTES.get((method, action, len(rest)))
        if route is None:
            return _not_implemented(request)
        handler, writes = route
        repo = (self._writable if writes else self._readable)(request, repo_type, repo_id)
        return getattr(self, handler)(request, repo, unquote(rest[1]) if len(rest) == 2 else None)

    # --- access ---
    def _readable(self, request: Request, repo_type: str, repo_id: str) -> Repo:
        """The repo if it exists and the requester may see it; else the Hub's "not found" (401 anonymous)."""
        repo = self.repos.get(f"{repo_type}s/{repo_id}")
        if repo is None or (repo.private and not (request.user and request.user.owns(repo_id.split("/")[0]))):
            error = RepoNotFound(f"Repository not found: {repo_type}s/{repo_id}")
            error.status = 401 if request.user is None else 404
            raise error
        return repo

    def _writable(self, request: Request, repo_type: str, repo_id: str) -> Repo:
        repo = self._readable(request, repo_type, repo_id)
        self._check_write(request, repo_id.split("/")[0])
        return repo

    def _check_write(self, request: Request, namespace: str) -> HubUser:
        user = request.user
        if user is None:
            raise Unauthorized("Invalid username or password.")
        if not user.owns(namespace) or not user.can_write:
            raise Forbidden(f"You don't have the rights to write to the namespace {namespace}")
        return user

    # --- account and repos ---
    def _whoami(self, request: Request) -> Response:
        user = request.user
        if user is None:
            raise Unauthorized("Invalid credentials in Authorization header")
        return Response.of_json({
            "type": "user", "name": user.name, "fullname": user.name, "email": f"{user.name}@test-hub",
            "emailVerified": True, "isPro": False,
            "orgs": [{"type": "org", "name": org, "fullname": org} for org in user.orgs],
            "auth": {"type": "access_token",
                     "accessToken": {"displayName": "test", "role": "write" if user.can_write else "read"}},
        })

    def _create_repo(self, request: Request) -> Response:
        payload = request.json()
        user = request.user
        if user is None:
            raise Unauthorized("Invalid username or password.")
        namespace = payload.get("organization") or user.name
        self._check_write(request, namespace)
        repo_type = payload.get("type") or "model"
        repo_id = f"{namespace}/{payload.get('name', '')}"
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id) or "--" in repo_id or ".." in repo_id:
            raise BadRequest(f"Invalid repo name: {repo_id}")
        url = f"{self.endpoint}/{URL_PREFIX.get(repo_type, '')}{repo_id}"
        if f"{repo_type}s/{repo_id}" in self.repos:
            return Response.of_json({"error": f"You already created this {repo_type} repo", "url": url}, 409)
        private = payload.get("visibility") == "private" or payload.get("private") is True
        repo = new_repo(repo_type, repo_id, private=private, author=user.name)
        self.repos[repo.key] = repo
        return Response.of_json({"url": url, "name": repo_id, "id": _object_id(repo.key)})

    def _delete_repo(self, request: Request) -> Response:
        payload = request.json()
        user = request.user
        namespace = payload.get("organization") or (user.name if user else "")
        repo_type, repo_id = payload.get("type") or "model", f"{namespace}/{payload.get('name', '')}"
        repo = self._writable(request, repo_type, repo_id)
        del self.repos[repo.key]
        return Response.of_json({})

    def _settings(self, request: Request, repo: Repo, _: None) -> Response:
        payload = request.json()
        if "visibility" in payload:
            repo.private = payload["visibility"] == "private"
        elif "private" in payload:
            repo.private = bool(payload["private"])
        return Response.of_json({})

    # --- reading ---
    def _info(self, request: Request, repo: Repo, revision: str | None) -> Response:
        commit = repo.resolve(revision or "main")
        with_blobs = request.flag("blobs")
        siblings = []
        for path, entry in sorted(commit.files.items()):
            sibling: dict[str, Any] = {"rfilename": path}
            if with_blobs:
                sibling.update(size=entry.size, blobId=entry.oid)
                if entry.is_lfs:
                    sibling["lfs"] = {"sha256": entry.lfs_sha256, "size": entry.size, "pointerSize": entry.pointer_size}
            siblings.append(sibling)
        info: dict[str, Any] = {
            "_id": _object_id(repo.key), "id": repo.repo_id, "author": repo.repo_id.split("/")[0],
            "sha": commit.oid, "lastModified": iso_date(commit.timestamp), "createdAt": iso_date(repo.created_at),
            "private": repo.private, "gated": False, "disabled": False, "downloads": 0, "likes": 0, "tags": [],
            "siblings": siblings, "usedStorage": sum(entry.size for entry in commit.files.values()),
        }
        if repo.repo_type == "model":
            info["modelId"] = repo.repo_id
        return Response.of_json(info)

    def _tree_item(self, path: str, item: FileEntry | str) -> dict[str, Any]:
        if isinstance(item, str):
            return {"type": "directory", "oid": item, "size": 0, "path": path}
        entry: dict[str, Any] = {"type": "file", "oid": item.oid, "size": item.size, "path": path}
        if item.is_lfs:
            entry["lfs"] = {"oid": item.lfs_sha256, "size": item.size, "pointerSize": item.pointer_size}
        return entry

    def _tree(self, request: Request, repo: Repo, revision: str, folder: str) -> Response:
        items = repo.resolve(revision).listing(folder, request.flag("recursive"))
        start = int(request.param("cursor", "0") or 0)
        page = items[start:start + self.page_size]
        headers = {}
        if start + self.page_size < len(items):
            query = {name: values[0] for name, values in request.query.items()}
            query["cursor"] = str(start + self.page_size)
            headers["Link"] = f'<{self.endpoint}{request.path}?{urlencode(query)}>; rel="next"'
        return Response.of_json([self._tree_item(path, item) for path, item in page], headers=headers)

    def _paths_info(self, request: Request, repo: Repo, revision: str | None) -> Response:
        commit = repo.resolve(revision)
        form = parse_qs(request.body.decode())
        found = []
        for path in form.get("paths", []):
            path = path.strip("/")
            if path in commit.files:
                found.append(self._tree_item(path, commit.files[path]))
            elif path in commit.folders:
                found.append(self._tree_item(path, commit.folders[path]))
        return Response.of_json(found)

    def _refs(self, request: Request, repo: Repo, _: None) -> Response:
        def listed(prefix: str) -> list[dict[str, str]]:
            return [{"name": ref[len(prefix):], "ref": ref, "targetCommit": oid}
                    for ref, oid in sorted(repo.refs.items()) if ref.startswith(prefix)]

        refs = {"branches": listed("refs/heads/"), "converts": [], "tags": listed("refs/tags/")}
        if request.flag("include_prs"):
            refs["pullRequests"] = [{"name": ref, "ref": ref, "targetCommit": oid}
                                    for ref, oid in sorted(repo.refs.items()) if ref.startswith("refs/pr/")]
        return Response.of_json(refs)

    def _commits(self, request: Request, repo: Repo, revision: str) -> Response:
        return Response.of_json([
            {"id": c.oid, "title": c.title, "message": c.message, "date": iso_date(c.timestamp),
             "authors": [{"user": c.author, "avatar": ""}]}
            for c in repo.history(revision)
        ])

    def _resolve(self, request: Request, repo: Repo, raw_revision: str, raw_path: list[str]) -> Response:
        commit, entry = repo.file(unquote(raw_revision), "/".join(unquote(s) for s in raw_path))
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{entry.oid}"'}
        if entry.is_lfs:
            location = f"{self.cdn_endpoint}/cdn-lfs/{repo.key}/{entry.lfs_sha256}?sig={self._sign(repo, entry)}"
            headers.update({"Location": location, "X-Linked-Etag": f'"{entry.lfs_sha256}"',
                            "X-Linked-Size": str(entry.size)})
            return Response(302, headers)
        return file_response(request, repo.content(entry), headers)

    def _cdn(self, request: Request, segments: list[str]) -> Response:
        """The pre-signed download of an LFS object (no token: the signature is the permission)."""
        if len(segments) != 4 or segments[0] not in PLURAL or request.method not in ("GET", "HEAD"):
            return _not_implemented(request)
        repo = self.repos.get("/".join(segments[:3]))
        sha256 = segments[3]
        if repo is None or sha256 not in repo.lfs_objects or not hmac.compare_digest(
                request.param("sig", ""), self._signature(f"{repo.key}/{sha256}")):
            raise Forbidden("invalid or expired signature")
        return file_response(request, repo.lfs_objects[sha256], {"ETag": f'"{sha256}"'})

    # --- writing ---
    def _preupload(self, request: Request, repo: Repo, revision: str) -> Response:
        payload = request.json()
        commit = repo.resolve(revision)
        answers = []
        for item in payload.get("files", []):
            path, size = item["path"], int(item["size"])
            sample = base64.b64decode(item.get("sample", ""))
            existing = commit.files.get(path)
            answers.append({
                "path": path,
                "uploadMode": repo.upload_mode(revision, path, size, sample, self.lfs_threshold),
                "shouldIgnore": is_ignored(path, payload.get("gitIgnore")),
                "oid": existing.content_oid if existing else None,
            })
        return Response.of_json({"files": answers, "commitOid": commit.oid})

    def _commit(self, request: Request, repo: Repo, revision: str) -> Response:
        header: dict[str, Any] = {}
        additions: list[FileEntry] = []
        deleted_files, deleted_folders = [], []
        for line in request.body.decode().splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item.get("key"), item.get("value", {})
            if key == "header":
                header = value
            elif key == "file":
                content = value["content"]
                data = base64.b64decode(content) if value.get("encoding") == "base64" else content.encode()
                additions.append(repo.store_regular(_checked_path(value["path"]), data))
            elif key == "lfsFile":
                additions.append(self._lfs_addition(repo, value))
            elif key == "deletedFile":
                deleted_files.append(_checked_path(value["path"]))
            elif key == "deletedFolder":
                deleted_folders.append(_checked_path(value["path"].rstrip("/")))
            else:
                raise BadRequest(f"unknown commit operation: {key}")
        if not header.get("summary"):
            raise BadRequest("the commit has no summary")
        commit, pr_number = repo.commit(
            revision, additions=additions, deleted_files=deleted_files, deleted_folders=deleted_folders,
            title=header["summary"], description=header.get("description", ""), author=request.user.name,
            parent_commit=header.get("parentCommit"), create_pr=request.flag("create_pr"),
        )
        base = f"{self.endpoint}/{URL_PREFIX[repo.repo_type]}{repo.repo_id}"
        return Response.of_json({
            "success": True, "commitOid": commit.oid, "commitUrl": f"{base}/commit/{commit.oid}",
            "pullRequestUrl": f"{base}/discussions/{pr_number}" if pr_number else None, "hookOutput": "",
        })

    def _lfs_addition(self, repo: Repo, value: Mapping[str, Any]) -> FileEntry:
        path, sha256 = _checked_path(value["path"]), value.get("oid", "")
        if value.get("algo", "sha256") != "sha256" or sha256 not in repo.lfs_objects:
            raise BadRequest(f"LFS object {sha256} of {path} was not uploaded to {repo.key}")
        size = len(repo.lfs_objects[sha256])
        if int(value.get("size", size)) != size:
            raise BadRequest(f"LFS object {sha256} of {path} has {size} bytes, not {value['size']}")
        return lfs_entry(path, sha256, size)

    def _create_branch(self, request: Request, repo: Repo, branch: str) -> Response:
        ref = f"refs/heads/{branch}"
        if ref in repo.refs:
            raise Conflict(f"Reference already exists: {ref}")
        repo.refs[ref] = repo.resolve(request.json().get("startingPoint") or "main").oid
        return Response.of_json({})

    def _create_tag(self, request: Request, repo: Repo, revision: str) -> Response:
        tag = request.json().get("tag", "")
        ref = f"refs/tags/{tag}"
        if ref in repo.refs:
            raise Conflict(f"Tag already exists: {tag}")
        repo.refs[ref] = repo.resolve(revision).oid
        return Response.of_json({})

    def _delete_branch(self, request: Request, repo: Repo, branch: str) -> Response:
        return self._delete_ref(repo, f"refs/heads/{branch}")

    def _delete_tag(self, request: Request, repo: Repo, tag: str) -> Response:
        return self._delete_ref(repo, f"refs/tags/{tag}")

    def _delete_ref(self, repo: Repo, ref: str) -> Response:
        if ref == "refs/heads/main":
            raise Forbidden("Cannot delete the default branch")
        if repo.refs.pop(ref, None) is None:
            raise RevisionNotFound(f"Invalid rev id: {ref}")
        return Response.of_json({})

    # --- git-LFS upload protocol ---
    def _signature(self, message: str) -> str:
        return hmac.new(self._secret, message.encode(), hashlib.sha256).hexdigest()

    def _sign(self, repo: Repo, entry: FileEntry) -> str:
        return self._signature(f"{repo.key}/{entry.lfs_sha256}")

    def _lfs_batch(self, request: Request, repo: Repo) -> Response:
        payload = request.json()
        if payload.get("operation") != "upload":
            raise BadRequest("this test Hub only implements the LFS upload operation")
        objects, multipart = [], False
        for item in payload.get("objects", []):
            oid, size = item["oid"], int(item["size"])
            answer: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if oid not in repo.lfs_objects:
                upload_url = f"{self.endpoint}/lfs-upload/{repo.key}/{oid}"
                query = f"?size={size}&sig={self._signature(f'{repo.key}/{oid}')}"
                upload: dict[str, Any] = {"href": upload_url + query}
                chunk = self.multipart_chunk_size
                if chunk and size > chunk:
                    multipart = True
                    upload["header"] = {"chunk_size": str(chunk), **{
                        str(n): f"{upload_url}/part/{n}{query}" for n in range(1, math.ceil(size / chunk) + 1)}}
                verify = f"{self.endpoint}/{URL_PREFIX[repo.repo_type]}{repo.repo_id}.git/info/lfs/objects/verify"
                answer["actions"] = {"upload": upload, "verify": {"href": verify}}
            objects.append(answer)
        return Response.of_json({"transfer": "multipart" if multipart else "basic", "objects": objects},
                                content_type=LFS_JSON)

    def _lfs_verify(self, request: Request, repo: Repo) -> Response:
        payload = request.json()
        data = repo.lfs_objects.get(payload.get("oid", ""))
        if data is None or len(data) != int(payload.get("size", -1)):
            raise EntryNotFound(f"LFS object {payload.get('oid')} not found in {repo.key}")
        return Response.of_json({"success": True})

    def _lfs_upload(self, request: Request, segments: list[str]) -> Response:
        """The pre-signed object upload: ``PUT <oid>`` (basic), or ``PUT <oid>/part/<n>`` then ``POST <oid>``."""
        if len(segments) not in (4, 6) or segments[0] not in PLURAL:
            return _not_implemented(request)
        key, oid = "/".join(segments[:3]), segments[3]
        repo = self.repos.get(key)
        if repo is None or not hmac.compare_digest(request.param("sig", ""), self._signature(f"{key}/{oid}")):
            raise Forbidden("invalid or expired upload signature")
        size = int(request.param("size", "-1"))
        if len(segments) == 6 and segments[4] == "part" and request.method == "PUT":
            self._parts.setdefault((key, oid), {})[int(segments[5])] = request.body
            return Response(200, {"ETag": f'"{hashlib.md5(request.body).hexdigest()}"'})
        if len(segments) == 4 and request.method == "PUT":
            self._store_object(repo, oid, size, request.body)
            return Response(200)
        if len(segments) == 4 and request.method == "POST":
            parts = self._parts.pop((key, oid), {})
            listed = request.json().get("parts", [])
            if sorted(p["partNumber"] for p in listed) != sorted(parts) or any(
                    p["etag"].strip('"') != hashlib.md5(parts[p["partNumber"]]).hexdigest() for p in listed):
                raise BadRequest(f"the parts listed for {oid} do not match the parts uploaded")
            self._store_object(repo, oid, size, b"".join(parts[n] for n in sorted(parts)))
            return Response.of_json({"success": True})
        return _not_implemented(request)

    def _store_object(self, repo: Repo, oid: str, size: int, data: bytes) -> None:
        if hashlib.sha256(data).hexdigest() != oid or len(data) != size:
            raise BadRequest(f"the uploaded object does not match oid {oid} and size {size} ({len(data)} bytes)")
        repo.lfs_objects[oid] = data


def _repo_id(raw: list[str]) -> str:
    return "/".join(unquote(segment) for segment in raw[:2])


def _checked_path(path: str) -> str:
    parts = path.split("/")
    if not path or path.startswith("/") or any(part in ("", ".", "..") for part in parts) or parts[0] == ".git":
        raise BadRequest(f"invalid path in repo: {path!r}")
    return path


def _object_id(key: str) -> str:
    """A stable 24-hex-digit id, like the Hub's database ids."""
    return hashlib.sha1(key.encode()).hexdigest()[:24]


def _not_implemented(request: Request) -> Response:
    message = f"not implemented by the test Hub: {request.method} {request.path}"
    return Response.of_json({"error": message}, 501, {"X-Error-Message": message})


"""In-memory Hub repositories for the test Hub server (``tests/hubserver.py``): no HTTP here.

A :class:`Repo` holds commits (each a full snapshot of the files), refs (``refs/heads/<branch>``,
``refs/tags/<tag>``, ``refs/pr/<n>``) and the file contents: regular files by their git blob oid,
LFS files by their sha256.  Object ids are real git ids: a regular file's oid is ``git hash-object``
of its content, an LFS file's oid is that of its LFS pointer text, folders get git tree ids and
commits git commit ids (author, timestamp, parents, message), so shas look and behave like the Hub's.

Errors are :class:`StoreError` subclasses carrying the HTTP status and the ``X-Error-Code`` the Hub
sends, which is how huggingface_hub tells "repository", "revision" and "entry" not found apart.
"""
from __future__ import annotations

import fnmatch
import hashlib
import time
from dataclasses import dataclass, field
from typing import Iterable, Mapping

LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n"
REPO_TYPES = ("model", "dataset", "space")

# The LFS patterns of the .gitattributes the Hub writes in the first commit of a new repo (a subset).
DEFAULT_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib", "*.lfs.*",
        "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb",
        "*.pickle", "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors", "saved_model/**/*", "*.tar.*",
        "*.tar", "*.tflite", "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst", "*tfevents*",
    )
)


class StoreError(Exception):
    """A request the Hub would refuse: ``status`` is the HTTP status, ``code`` the X-Error-Code."""

    status = 400
    code: str | None = None

    def __init__(self, message: str, *, commit: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.commit = commit  # sent as X-Repo-Commit (EntryNotFound: lets the client cache the absence)


class BadRequest(StoreError):
    status = 400


class Unauthorized(StoreError):
    status = 401


class Forbidden(StoreError):
    status = 403


class RepoNotFound(StoreError):
    status, code = 404, "RepoNotFound"


class RevisionNotFound(StoreError):
    status, code = 404, "RevisionNotFound"


class EntryNotFound(StoreError):
    status, code = 404, "EntryNotFound"


class Conflict(StoreError):
    status = 409


class PreconditionFailed(StoreError):
    status = 412


def git_blob_oid(data: bytes) -> str:
    """``git hash-object`` of ``data``: sha1 of ``b"blob <len>\\0" + data`` (40 hex digits)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def git_tree_oid(entries: Iterable[tuple[str, str, bool]]) -> str:
    """Git tree id of ``(name, oid, is_folder)`` entries, in git's order (a folder sorts as ``name/``)."""
    ordered = sorted(entries, key=lambda e: e[0].encode() + (b"/" if e[2] else b""))
    body = b"".join(
        (b"40000 " if is_folder else b"100644 ") + name.encode() + b"\0" + bytes.fromhex(oid)
        for name, oid, is_folder in ordered
    )
    return hashlib.sha1(b"tree %d\0" % len(body) + body).hexdigest()


def git_commit_oid(tree: str, parents: Iterable[str], author: str, timestamp: int, message: str) -> str:
    """Git commit id: the same author as committer, UTC, ``message`` as the commit message."""
    signature = f"{author} <{author}@users.noreply.test-hub> {timestamp} +0000"
    lines = [f"tree {tree}", *(f"parent {p}" for p in parents), f"author {signature}", f"committer {signature}"]
    body = ("\n".join(lines) + "\n\n" + message.rstrip("\n") + "\n").encode()
    return hashlib.sha1(b"commit %d\0" % len(body) + body).hexdigest()


@dataclass(frozen=True)
class FileEntry:
    """One file of a commit: ``oid`` is the git blob id (of the LFS pointer for an LFS file)."""

    path: str
    size: int
    oid: str
    lfs_sha256: str | None = None
    pointer_size: int | None = None

    @property
    def is_lfs(self) -> bool:
        return self.lfs_sha256 is not None

    @property
    def content_oid(self) -> str:
        """The oid huggingface_hub compares to skip unchanged files: sha256 for LFS, else the git oid."""
        return self.lfs_sha256 or self.oid


def lfs_entry(path: str, sha256: str, size: int) -> FileEntry:
    """The entry of an LFS file: its oid is the git id of its pointer text."""
    pointer = LFS_POINTER.format(oid=sha256, size=size).encode()
    return FileEntry(path, size, git_blob_oid(pointer), sha256, len(pointer))


@dataclass(frozen=True)
class Commit:
    """A full snapshot: ``files`` by path, ``folders`` maps each folder path ("" is the root) to its tree id."""

    oid: str
    parents: tuple[str, ...]
    title: str
    message: str
    author: str
    timestamp: int
    files: Mapping[str, FileEntry]
    folders: Mapping[str, str]

    @classmethod
    def build(cls, files: Mapping[str, FileEntry], parents: tuple[str, ...], title: str, description: str,
              author: str) -> "Commit":
        folders = _folder_oids(files)
        message = title + (f"\n\n{description}" if description else "")
        timestamp = int(time.time())
        oid = git_commit_oid(folders[""], parents, author, timestamp, message)
        return cls(oid, parents, title, message, author, timestamp, dict(files), folders)

    def listing(self, folder: str, recursive: bool) -> list[tuple[str, FileEntry | str]]:
        """``(path, entry)`` under ``folder``: a FileEntry for a file, the tree id (str) for a folder.

        Raises EntryNotFound if ``folder`` is neither "" nor a folder of this commit."""
        folder = folder.strip("/")
        if folder and folder not in self.folders:
            raise EntryNotFound(f"{folder} does not exist on {self.oid}", commit=self.oid)
        prefix = f"{folder}/" if folder else ""
        items: list[tuple[str, FileEntry | str]] = []
        for path, oid in self.folders.items():
            if path and path.startswith(prefix) and (recursive or "/" not in path[len(prefix):]):
                items.append((path, oid))
        for path, entry in self.files.items():
            if path.startswith(prefix) and (recursive or "/" not in path[len(prefix):]):
                items.append((path, entry))
        return sorted(items, key=lambda item: item[0])


def _folder_oids(files: Mapping[str, FileEntry]) -> dict[str, str]:
    """The git tree id of every folder holding ``files`` (bottom-up), "" being the root."""
    children: dict[str, dict[str, tuple[str, bool]]] = {"": {}}
    for path in files:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            children.setdefault("/".join(parts[:depth]), {})
    for path, entry in files.items():
        parent, _, name = path.rpartition("/")
        children[parent][name] = (entry.oid, False)
    oids: dict[str, str] = {}
    for folder in sorted(children, key=lambda f: f.count("/") + bool(f), reverse=True):
        oids[folder] = git_tree_oid((name, oid, is_dir) for name, (oid, is_dir) in children[folder].items())
        if folder:
            parent, _, name = folder.rpartition("/")
            children[parent][name] = (oids[folder], True)
    return oids


def _matches(path: str, pattern: str) -> bool:
    """A .gitattributes/.gitignore pattern: no slash matches the file name, else the whole path."""
    pattern = pattern.strip().rstrip("/")
    if not pattern:
        return False
    if "/" not in pattern:
        return fnmatch.fnmatchcase(path.rpartition("/")[2], pattern)
    return fnmatch.fnmatchcase(path, pattern.lstrip("/").replace("**/", "*"))


def lfs_patterns(gitattributes: str) -> list[str]:
    """The patterns a .gitattributes text routes to LFS (``filter=lfs``)."""
    patterns = []
    for line in gitattributes.splitlines():
        fields = line.split()
        if fields and not fields[0].startswith("#") and "filter=lfs" in fields[1:]:
            patterns.append(fields[0])
    return patterns


def is_ignored(path: str, gitignore: str | None) -> bool:
    """Whether ``path`` matches a pattern of ``gitignore`` (plain patterns only; no ``!`` negation)."""
    lines = (gitignore or "").splitlines()
    return any(_matches(path, line) for line in lines if line.strip() and not line.startswith(("#", "!")))


@dataclass
class Repo:
    """One repository: commits, refs and stored contents."""

    repo_type: str
    repo_id: str
    private: bool
    created_at: int = field(default_factory=lambda: int(time.time()))
    commits: dict[str, Commit] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)  # git oid -> content of regular files
    lfs_objects: dict[str, bytes] = field(default_factory=dict)  # sha256 -> content of LFS files
    next_number: int = 1  # the Hub numbers discussions and pull requests together

    @property
    def key(self) -> str:
        """``models/<id>``, ``datasets/<id>``, ``spaces/<id>``: the repo's prefix in API routes."""
        return f"{self.repo_type}s/{self.repo_id}"

    # --- reading ---
    def resolve(self, revision: str) -> Commit:
        """The commit a branch, tag, ``refs/...`` name or (full or ≥7-digit) commit sha points to."""
        for ref in (revision, f"refs/heads/{revision}", f"refs/tags/{revision}"):
            if ref.startswith("refs/") and ref in self.refs:
                return self.commits[self.refs[ref]]
        if revision in self.commits:
            return self.commits[revision]
        if len(revision) >= 7 and all(c in "0123456789abcdef" for c in revision):
            found = [oid for oid in self.commits if oid.startswith(revision)]
            if len(found) == 1:
                return self.commits[found[0]]
        raise RevisionNotFound(f"Invalid rev id: {revision}")

    def file(self, revision: str, path: str) -> tuple[Commit, FileEntry]:
        """The commit of ``revision`` and its entry for ``path`` (EntryNotFound names the commit)."""
        commit = self.resolve(revision)
        entry = commit.files.get(path)
        if entry is None:
            raise EntryNotFound(f"{path} does not exist on {revision}", commit=commit.oid)
        return commit, entry

    def content(self, entry: FileEntry) -> bytes:
        return self.lfs_objects[entry.lfs_sha256] if entry.lfs_sha256 else self.blobs[entry.oid]

    def branch_ref(self, branch: str) -> str:
        """``refs/heads/<branch>`` if the branch exists, else RevisionNotFound."""
        ref = branch if branch.startswith("refs/heads/") else f"refs/heads/{branch}"
        if ref not in self.refs:
            raise RevisionNotFound(f"Invalid rev id: {branch}")
        return ref

    def upload_mode(self, revision: str, path: str, size: int, sample: bytes, lfs_threshold: int) -> str:
        """"lfs" or "regular", the Hub's rule: over the size threshold, routed to LFS by the revision's
        .gitattributes, or binary (a NUL byte in the first 512 bytes) goes to LFS."""
        commit = self.resolve(revision)
        attributes = commit.files.get(".gitattributes")
        patterns = lfs_patterns(self.content(attributes).decode(errors="replace")) if attributes else []
        if size > lfs_threshold or b"\0" in sample or any(_matches(path, p) for p in patterns):
            return "lfs"
        return "regular"

    # --- writing ---
    def store_regular(self, path: str, data: bytes) -> FileEntry:
        oid = git_blob_oid(data)
        self.blobs[oid] = data
        return FileEntry(path, len(data), oid)

    def store_lfs(self, path: str, data: bytes) -> FileEntry:
        sha256 = hashlib.sha256(data).hexdigest()
        self.lfs_objects[sha256] = data
        return lfs_entry(path, sha256, len(data))

    def commit(self, ref: str, *, additions: Iterable[FileEntry] = (), deleted_files: Iterable[str] = (),
               deleted_folders: Iterable[str] = (), title: str, description: str = "", author: str,
               parent_commit: str | None = None, create_pr: bool = False) -> tuple[Commit, int | None]:
        """Commit on top of ``ref`` (a branch, or ``refs/pr/<n>``); with ``create_pr`` the commit goes to a
        new ``refs/pr/<n>`` started from the branch instead. Returns the commit and the PR number."""
        if ref.startswith("refs/pr/"):
            if ref not in self.refs or create_pr:
                raise RevisionNotFound(f"Invalid rev id: {ref}")
        else:
            ref = self.branch_ref(ref)
        head = self.commits[self.refs[ref]] if ref in self.refs else None
        if parent_commit is not None and (head is None or not head.oid.startswith(parent_commit)):
            raise PreconditionFailed("A commit has happened since. Please refresh and try again.")
        files = dict(head.files) if head else {}
        for path in deleted_files:
            if path not in files:
                raise EntryNotFound(f"A file with this name doesn't exist: {path}")
            del files[path]
        for folder in deleted_folders:
            prefix = folder.strip("/") + "/"
            gone = [path for path in files if path.startswith(prefix)]
            if not gone:
                raise EntryNotFound(f"A folder with this name doesn't exist: {folder}")
            for path in gone:
                del files[path]
        for entry in additions:
            files[entry.path] = entry
        commit = Commit.build(files, (head.oid,) if head else (), title, description, author)
        self.commits[commit.oid] = commit
        pr_number = None
        if create_pr:
            pr_number, self.next_number = self.next_number, self.next_number + 1
            ref = f"refs/pr/{pr_number}"
        self.refs[ref] = commit.oid
        return commit, pr_number

    def history(self, revision: str) -> list[Commit]:
        """The commits reachable from ``revision`` through first parents, newest first."""
        commit: Commit | None = self.resolve(revision)
        history = []
        while commit is not None:
            history.append(commit)
            commit = self.commits[commit.parents[0]] if commit.parents else None
        return history


def new_repo(repo_type: str, repo_id: str, *, private: bool, author: str) -> Repo:
    """A repo with the Hub's first commit: a ``.gitattributes`` on ``main``."""
    if repo_type not in REPO_TYPES:
        raise BadRequest(f"Invalid repo type: {repo_type}")
    repo = Repo(repo_type, repo_id, private)
    first = Commit.build({".gitattributes": repo.store_regular(".gitattributes", DEFAULT_GITATTRIBUTES.encode())},
                         (), "initial commit", "", author)
    repo.commits[first.oid] = first
    repo.refs["refs/heads/main"] = first.oid
    return repo

"""The test Hub server (tests/hubserver.py), driven only through huggingface_hub's public API."""
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    constants,
    create_repo,
    hf_hub_download,
    model_info,
    snapshot_download,
    upload_folder,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from hubapi import byte_range
from hubserver import DEFAULT_USER
from hubstore import git_tree_oid

REPO = f"{DEFAULT_USER}/tiny-model"


def git_blob_reference(data: bytes) -> str:
    """git's blob id, from its definition: sha1 over "blob <size>\\0" and the content."""
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


def lfs_pointer_reference(data: bytes) -> bytes:
    """The git-LFS pointer text of ``data`` (git-lfs spec v1)."""
    return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{hashlib.sha256(data).hexdigest()}\n"
            f"size {len(data)}\n").encode()


def write_folder(root: Path, files: dict[str, bytes]) -> Path:
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    return root


def hub_cache() -> Path:
    return Path(os.environ["HF_HUB_CACHE"])


def test_create_repo_public_private_and_tokens(hub_server, tmp_path):
    api = HfApi()
    assert api.whoami()["name"] == DEFAULT_USER
    url = create_repo(REPO)
    assert url.repo_id == REPO and url.startswith(hub_server.endpoint)
    assert create_repo(REPO, exist_ok=True).repo_id == REPO
    with pytest.raises(HfHubHTTPError) as conflict:
        create_repo(REPO)
    assert conflict.value.response.status_code == 409
    assert model_info(REPO).private is False and model_info(REPO, token=False).id == REPO

    secret = f"{DEFAULT_USER}/secret"
    create_repo(secret, private=True)
    api.upload_file(path_or_fileobj=b"hidden", path_in_repo="a.txt", repo_id=secret)
    assert model_info(secret).private is True
    assert Path(hf_hub_download(secret, "a.txt")).read_bytes() == b"hidden"
    hub_server.add_user("someone-else", "hf_someone_else_token")
    for token in (False, "hf_someone_else_token"):  # anonymous (401) and another account (404)
        empty_cache = tmp_path / f"cache-{bool(token)}"  # the owner's cached copy would be served offline-style
        with pytest.raises(RepositoryNotFoundError):
            model_info(secret, token=token)
        with pytest.raises(RepositoryNotFoundError):
            hf_hub_download(secret, "a.txt", token=token, cache_dir=empty_cache)
        with pytest.raises(RepositoryNotFoundError):
            snapshot_download(secret, token=token, cache_dir=empty_cache)
    with pytest.raises(HfHubHTTPError, match="Invalid user token"):
        api.whoami(token="hf_not_a_token")
    hub_server.add_user(DEFAULT_USER, "hf_read_only_token", can_write=False)
    assert model_info(secret, token="hf_read_only_token").private is True
    for token in ("hf_someone_else_token", "hf_read_only_token"):  # another namespace; a read-only token
        with pytest.raises(HfHubHTTPError) as forbidden:
            api.upload_file(path_or_fileobj=b"x", path_in_repo="b.txt", repo_id=REPO, token=token)
        assert forbidden.value.response.status_code == 403


def test_upload_folder_regular_and_lfs_files(hub_server, tmp_path):
    hub_server.api.lfs_threshold = 64 * 1024  # so a "large" file is small enough for a test
    files = {
        "config.json": b'{"dim": 8}',                          # small text: a regular git file
        "model.safetensors": bytes(range(256)) * 40,           # .gitattributes routes *.safetensors to LFS
        "vocab/words.txt": b"word\n" * 20_000,                 # 100 kB of text, over the threshold: LFS
        "empty.txt": b"",                                      # empty files are always regular
    }
    folder = write_folder(tmp_path / "model", files)
    create_repo(REPO)
    commit = upload_folder(repo_id=REPO, folder_path=folder, commit_message="add model")
    assert hub_server.count("POST", r"\.git/info/lfs/objects/batch$") == 1
    assert hub_server.count("PUT", r"^/lfs-upload/") == 2
    assert hub_server.count("POST", r"/commit/main$") == 1

    tree = {f.path: f for f in HfApi().list_repo_tree(REPO, recursive=True) if hasattr(f, "size")}
    assert set(tree) == {".gitattributes", *files}
    for path in ("config.json", "empty.txt"):
        assert tree[path].lfs is None and tree[path].blob_id == git_blob_reference(files[path])
    for path in ("model.safetensors", "vocab/words.txt"):
        data = files[path]
        assert tree[path].lfs.sha256 == hashlib.sha256(data).hexdigest() and tree[path].size == len(data)
        assert tree[path].blob_id == git_blob_reference(lfs_pointer_reference(data))
    for path, data in files.items():
        assert Path(hf_hub_download(REPO, path)).read_bytes() == data
    assert model_info(REPO).sha == commit.oid

    hub_server.clear_requests()
    again = upload_folder(repo_id=REPO, folder_path=folder, commit_message="same files")
    assert again.oid == commit.oid  # nothing changed: no commit, and no object uploaded again
    assert hub_server.count("POST", r"/commit/") == 0 and hub_server.count("PUT") == 0


def test_multipart_lfs_upload(hub_server, tmp_path):
    hub_server.api.multipart_chunk_size = 16 * 1024
    data = os.urandom(40 * 1024)
    create_repo(REPO)
    HfApi().upload_file(path_or_fileobj=data, path_in_repo="weights.bin", repo_id=REPO)
    assert hub_server.count("PUT", r"/part/\d+$") == 3
    assert hub_server.count("POST", r"^/lfs-upload/") == 1  # the completion call
    assert hub_server.count("POST", r"\.git/info/lfs/objects/verify$") == 1
    assert Path(hf_hub_download(REPO, "weights.bin")).read_bytes() == data


def test_revisions_branch_tag_sha_and_pr(hub_server, tmp_path):
    api = HfApi()
    create_repo(REPO)
    v1 = api.upload_file(path_or_fileobj=b"v1", path_in_repo="w.txt", repo_id=REPO).oid
    api.create_tag(REPO, tag="v1.0")
    api.create_branch(REPO, branch="dev")
    v2 = api.upload_file(path_or_fileobj=b"v2", path_in_repo="w.txt", repo_id=REPO, revision="dev").oid
    pr = upload_folder(repo_id=REPO, folder_path=write_folder(tmp_path / "pr", {"w.txt": b"v3"}), create_pr=True)
    assert (pr.pr_revision, pr.pr_num) == ("refs/pr/1", 1)
    pr_update = api.upload_file(path_or_fileobj=b"v4", path_in_repo="w.txt", repo_id=REPO, revision="refs/pr/1")
    with pytest.raises(HfHubHTTPError) as stale:  # dev has moved on since v1
        api.upload_file(path_or_fileobj=b"x", path_in_repo="w.txt", repo_id=REPO, revision="dev", parent_commit=v1)
    assert stale.value.response.status_code == 412

    expected = {"main": (b"v1", v1), "v1.0": (b"v1", v1), v1: (b"v1", v1), v1[:7]: (b"v1", v1),
                "dev": (b"v2", v2), pr.oid: (b"v3", pr.oid), "refs/pr/1": (b"v4", pr_update.oid)}
    for revision, (content, commit) in expected.items():
        assert model_info(REPO, revision=revision).sha == commit, revision
        assert Path(hf_hub_download(REPO, "w.txt", revision=revision)).read_bytes() == content, revision
        snapshot = Path(snapshot_download(REPO, revision=revision))
        assert snapshot.name == commit and (snapshot / "w.txt").read_bytes() == content, revision

    refs = api.list_repo_refs(REPO, include_pull_requests=True)
    assert {b.name: b.target_commit for b in refs.branches} == {"main": v1, "dev": v2}
    assert [(t.name, t.target_commit) for t in refs.tags] == [("v1.0", v1)]
    assert [(p.ref, p.target_commit) for p in refs.pull_requests] == [("refs/pr/1", pr_update.oid)]
    history = [c.commit_id for c in api.list_repo_commits(REPO, revision="dev")]
    assert history[:2] == [v2, v1] and len(history) == 3  # and the initial .gitattributes commit
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "w.txt", revision="no-such-branch")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "missing.txt")


def test_deletions_paths_info_settings_and_dataset_repos(hub_server):
    api = HfApi()
    create_repo(REPO)
    api.create_commit(REPO, commit_message="files", operations=[
        CommitOperationAdd("a/one.txt", b"1"), CommitOperationAdd("a/two.txt", b"2"),
        CommitOperationAdd("b.txt", b"b")])
    info = {p.path: p for p in api.get_paths_info(REPO, ["a", "b.txt", "absent"])}
    assert set(info) == {"a", "b.txt"} and info["b.txt"].blob_id == git_blob_reference(b"b")
    api.create_commit(REPO, commit_message="remove", operations=[
        CommitOperationDelete("a/"), CommitOperationDelete("b.txt")])
    assert HfApi().list_repo_files(REPO) == [".gitattributes"]
    with pytest.raises(EntryNotFoundError):
        api.create_commit(REPO, commit_message="again", operations=[CommitOperationDelete("b.txt")])

    api.create_branch(REPO, branch="tmp")
    api.delete_branch(REPO, branch="tmp")
    api.create_tag(REPO, tag="t")
    api.delete_tag(REPO, tag="t")
    refs = api.list_repo_refs(REPO)
    assert [b.name for b in refs.branches] == ["main"] and refs.tags == []
    api.update_repo_settings(REPO, private=True)
    with pytest.raises(RepositoryNotFoundError):
        model_info(REPO, token=False)

    dataset = f"{DEFAULT_USER}/tiny-data"
    create_repo(dataset, repo_type="dataset")
    api.upload_file(path_or_fileobj=b"x,y\n", path_in_repo="data.csv", repo_id=dataset, repo_type="dataset")
    assert Path(hf_hub_download(dataset, "data.csv", repo_type="dataset")).read_bytes() == b"x,y\n"
    assert api.dataset_info(dataset).id == dataset
    api.delete_repo(dataset, repo_type="dataset")
    with pytest.raises(RepositoryNotFoundError):
        api.dataset_info(dataset)


def test_git_ids_match_git(tmp_path):
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    blobs = {name: git_blob_reference(name.encode()) for name in ("a.txt", "b", "a")}
    subtree = git_tree_oid([("x.bin", blobs["b"], False)])
    listing = [("a.txt", blobs["a.txt"], False), ("a", subtree, True), ("b", blobs["b"], False)]
    mktree = "".join(f"{'040000 tree' if is_dir else '100644 blob'} {oid}\t{name}\n" for name, oid, is_dir in listing)
    subprocess.run([git, "init", "-q", str(tmp_path)], check=True)
    real = subprocess.run([git, "-C", str(tmp_path), "mktree", "--missing"], input=mktree, text=True,
                          capture_output=True, check=True).stdout.strip()
    assert git_tree_oid(listing) == real  # "a" (a folder) sorts after "a.txt", as git orders it
    hashed = subprocess.run([git, "hash-object", "--stdin"], input=b"a.txt", capture_output=True, check=True)
    assert hashed.stdout.decode().strip() == blobs["a.txt"]


def test_tree_listing_is_paginated(hub_server):
    hub_server.api.page_size = 2
    files = {f"part{i}.txt": f"{i}".encode() for i in range(5)}
    head = hub_server.add_repo(REPO, files)
    snapshot = Path(snapshot_download(REPO))
    assert snapshot.name == head and sorted(p.name for p in snapshot.iterdir()) == sorted([*files, ".gitattributes"])
    assert hub_server.count("GET", r"/tree/") == 3


def run_python(script: str, **env: str) -> list[str]:
    """Run ``script`` in a fresh interpreter with the test's environment (plus ``env``); its output lines."""
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ, **env}, capture_output=True,
                          text=True, check=True)
    return done.stdout.split()


def test_subprocesses_and_offline_mode_from_a_warm_cache(hub_server):
    head = hub_server.add_repo(REPO, {"config.json": b"{}", "model.safetensors": b"\0weights"}, private=True)
    script = ("from huggingface_hub import hf_hub_download, snapshot_download; "
              f"print(snapshot_download({REPO!r})); print(hf_hub_download({REPO!r}, 'config.json'))")
    snapshot, config = run_python(script)  # a fresh process finds the server, token and cache by env alone
    assert Path(snapshot).name == head and Path(snapshot).parent.parent.parent == hub_cache()
    assert all(r.headers.get("authorization") == f"Bearer {hub_server.token}"
               for r in hub_server.requests if not r.path.startswith("/cdn-lfs/"))

    hub_server.clear_requests()
    assert snapshot_download(REPO, local_files_only=True) == snapshot
    assert hf_hub_download(REPO, "config.json", local_files_only=True) == config
    assert Path(hf_hub_download(REPO, "model.safetensors", revision=head, local_files_only=True)).read_bytes() \
        == b"\0weights"
    with pytest.raises(LocalEntryNotFoundError):
        snapshot_download(f"{DEFAULT_USER}/never-downloaded", local_files_only=True)
    assert run_python(script, HF_HUB_OFFLINE="1") == [snapshot, config]
    assert hub_server.requests == []


def test_5xx_burst_on_file_metadata_is_retried(hub_server):
    hub_server.add_repo(REPO, {"config.json": b'{"ok": true}'})
    hub_server.fail(r"/resolve/", status=503, times=2, method="HEAD")
    assert Path(hf_hub_download(REPO, "config.json")).read_bytes() == b'{"ok": true}'
    heads = [(r.status, r.fault) for r in hub_server.requests if r.method == "HEAD"]
    assert heads == [(503, "fail"), (503, "fail"), (200, None)]


def test_5xx_on_the_file_body_is_reported_not_retried(hub_server):
    hub_server.add_repo(REPO, {"config.json": b"{}"})
    hub_server.fail(r"/resolve/", status=500, method="GET")
    with pytest.raises(HfHubHTTPError) as error:
        hf_hub_download(REPO, "config.json")
    assert error.value.response.status_code == 500 and hub_server.count("GET") == 1
    assert not [p for p in hub_cache().rglob("*") if p.is_file() and "blobs" in p.parts]
    assert Path(hf_hub_download(REPO, "config.json")).read_bytes() == b"{}"


def test_dropped_connection_is_retried_and_resumed_with_a_range_request(hub_server, monkeypatch):
    data = os.urandom(50_000)
    hub_server.add_repo(REPO, {"model.safetensors": data})
    hub_server.drop(r"^/cdn-lfs/", after_bytes=20_000)
    assert Path(hf_hub_download(REPO, "model.safetensors")).read_bytes() == data
    # The client writes the body in DOWNLOAD_CHUNK_SIZE pieces (10 MiB): 20 kB never reached the
    # file, so the retry starts from the beginning again.
    gets = [(r.status, r.fault, r.headers.get("range")) for r in hub_server.requests if r.method == "GET"]
    assert gets == [(200, "drop", None), (200, None, None)]

    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 4096)
    hub_server.clear_requests()
    hub_server.drop(r"^/cdn-lfs/", after_bytes=20_000)
    assert Path(hf_hub_download(REPO, "model.safetensors", force_download=True)).read_bytes() == data
    gets = [(r.status, r.fault, r.headers.get("range")) for r in hub_server.requests if r.method == "GET"]
    assert gets == [(200, "drop", None), (206, None, f"bytes={20_000 // 4096 * 4096}-")]


def test_dropped_connections_are_reported_and_leave_no_partial_file(hub_server):
    data = os.urandom(50_000)
    hub_server.add_repo(REPO, {"model.safetensors": data})
    hub_server.drop(r"^/cdn-lfs/", after_bytes=20_000)  # half a file, then nothing more on each retry
    hub_server.drop(r"^/cdn-lfs/", after_bytes=0, times=10)
    with pytest.raises(httpx2.RemoteProtocolError):
        hf_hub_download(REPO, "model.safetensors")
    assert hub_server.count("GET", r"^/cdn-lfs/") == 6  # the first try and 5 resumes
    storage = hub_cache() / f"models--{REPO.replace('/', '--')}"
    left = [p for folder in ("blobs", "snapshots") for p in (storage / folder).rglob("*") if not p.is_dir()]
    assert left == []  # no blob, no *.incomplete download, no snapshot link (only refs/main was written)
    assert list(hub_cache().rglob("*.incomplete")) == []
    hub_server.clear_faults()
    assert Path(hf_hub_download(REPO, "model.safetensors")).read_bytes() == data


def test_with_xet_enabled_the_client_uploads_lfs_files_through_xet(hub_server, tmp_path, monkeypatch):
    """What users get (hf_xet is installed): regular files still commit through the server, but LFS
    content goes to Xet storage whatever the server says, hence HF_HUB_DISABLE_XET in the fixture."""
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", False)
    create_repo(REPO)
    folder = write_folder(tmp_path / "model", {"config.json": b"{}"})
    upload_folder(repo_id=REPO, folder_path=folder)
    assert Path(hf_hub_download(REPO, "config.json")).read_bytes() == b"{}"
    write_folder(folder, {"model.safetensors": b"\0" * 100})
    with pytest.raises(Exception, match="xet-write-token"):
        upload_folder(repo_id=REPO, folder_path=folder)
    assert hub_server.count("GET", r"/xet-write-token/") >= 1
    assert hub_server.count("POST", r"\.git/info/lfs/") == 0


@pytest.mark.parametrize("header, span", [
    (None, None), ("bytes=0-", (0, 10)), ("bytes=3-5", (3, 6)), ("bytes=4-99", (4, 10)), ("bytes=-3", (7, 10)),
    ("bytes=-30", (0, 10)), ("bytes=10-", ValueError), ("bytes=5-4", ValueError), ("items=0-1", ValueError),
    ("bytes=-", ValueError),
])
def test_byte_range_of_a_ten_byte_file(header, span):
    """RFC 9110 byte ranges: ``a-b`` is inclusive, ``a-`` runs to the end, ``-n`` is the last n bytes."""
    if span is ValueError:
        with pytest.raises(ValueError):
            byte_range(header, 10)
    else:
        assert byte_range(header, 10) == span

"""The core of ``zoo convert``: safe reading (an unknown pickled class is refused unless
--trust-pickle), the KeyMap's checks (left-over keys, unfilled parameters, shapes), and official-URL
entries downloaded from a local HTTP server that misbehaves (5xx, dropped connections, a wrong
checksum), converted once and then loaded from the cache without any request."""
from __future__ import annotations

import hashlib
import http.server
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest
import torch
from convert_fakes import fake_vse_infinity

from xmodalzoo.convert import KeyMap, read_checkpoint
from xmodalzoo.errors import CheckpointError

ZOO = Path(sys.executable).with_name("zoo")


class NotAllowListed:
    """A class the restricted unpickler does not know (stands for any code a pickle could name)."""

    def __init__(self) -> None:
        self.value = 3


def _unsafe_checkpoint(path: Path) -> None:
    torch.save({"model": {"w": torch.ones(2)}, "config": NotAllowListed()}, path)


def test_a_pickle_needing_an_unknown_class_is_refused_through_the_cli(tmp_path: Path) -> None:
    _unsafe_checkpoint(tmp_path / "bad.pth")
    proc = subprocess.run([str(ZOO), "convert", "--from", "pcme", str(tmp_path / "bad.pth"), "-o", str(tmp_path / "m")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "weights_only=True" in lines[0] and "NotAllowListed" in lines[0] and "--trust-pickle" in lines[0]
    assert not (tmp_path / "m").exists()


def test_trust_pickle_reads_it_with_a_warning_saying_what_that_means(tmp_path: Path) -> None:
    _unsafe_checkpoint(tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="NotAllowListed"):
        read_checkpoint(tmp_path / "bad.pth")
    with pytest.warns(UserWarning, match="runs whatever code the file contains"):
        raw = read_checkpoint(tmp_path / "bad.pth", trust_pickle=True)
    assert raw["config"].value == 3


def test_allow_listed_plain_types_load_safely(tmp_path: Path) -> None:
    fake_vse_infinity(tmp_path)  # an argparse.Namespace opt and a numpy float64 best_rsum
    raw = read_checkpoint(tmp_path / "vse.pth")
    assert raw["opt"].embed_size == 8 and float(raw["best_rsum"]) == pytest.approx(520.8)


def test_keymap_refuses_unfilled_parameters_wrong_shapes_and_double_use() -> None:
    ours = {"a.weight": torch.zeros(2, 3), "b.weight": torch.zeros(4)}
    keys = KeyMap({"x.weight": torch.ones(2, 3), "y": torch.ones(5)}, ours)
    keys.rename("x.weight", "a.weight")
    with pytest.raises(CheckpointError, match=r"y has shape \(5,\) but b.weight needs \(4,\)"):
        keys.rename("y", "b.weight")
    with pytest.raises(CheckpointError, match="mapped twice"):
        keys.rename("x.weight", "b.weight")
    keys.drop("y", "not needed in this test")
    with pytest.raises(CheckpointError, match=r"1 parameters of the model are not filled by the checkpoint: b.weight"):
        keys.finish()
    keys.put("b.weight", torch.arange(4.0), "a scalar list")
    state, report = keys.finish()
    assert torch.equal(state["b.weight"], torch.arange(4.0)) and report.dropped == {"y": "not needed in this test"}


def test_keymap_casts_fp16_to_our_dtype_and_counts_it() -> None:
    keys = KeyMap({"w": torch.tensor([0.5, 1.5], dtype=torch.float16)}, {"v": torch.zeros(2)})
    keys.rename("w", "v")
    state, report = keys.finish()
    assert state["v"].dtype == torch.float32 and state["v"].tolist() == [0.5, 1.5]
    assert report.casts == {"float16->float32": 1}


# --------------------------------------------------------------------------- official-URL entries
class _Server:
    """Serves files on 127.0.0.1; ``fail`` answers 503 that many times, ``cut`` drops that many bodies halfway."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files, self.requests, self.fail, self.cut = files, 0, 0, 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                server.requests += 1
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                if server.fail:
                    server.fail -= 1
                    self.send_error(503)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut:
                    server.cut -= 1
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[_Server]:
    fake_vse_infinity(tmp_path)
    srv = _Server({"/vse.pth": (tmp_path / "vse.pth").read_bytes(),
                   "/vocab.json": (tmp_path / "coco_precomp_vocab.json").read_bytes()})
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def _entry(server: _Server, **extra: object) -> dict[str, object]:
    return {"name": "vse-test", "url": f"{server.url}/vse.pth", "converter": "vse-infinity",
            "vocab_url": f"{server.url}/vocab.json", **extra}


def test_official_entry_downloads_converts_once_then_loads_from_the_cache(
        server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from xmodalzoo.convert.official import load_official
    from xmodalzoo.hub import load_model

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("xmodalzoo.convert.official.BACKOFF_S", 0.01)
    digest = hashlib.sha256(server.files["/vse.pth"]).hexdigest()
    server.fail, server.cut = 1, 1  # one 503, then one dropped connection: both retried
    folder = load_official(_entry(server, sha256=digest), cache_dir=tmp_path / "cache")
    assert (folder / "conversion.json").is_file() and server.requests == 4  # 3 for the file, 1 for the vocabulary
    assert not [p for p in folder.parent.iterdir() if p.name.endswith(".part")]
    first = load_model(folder).state_dict()
    again = load_official(_entry(server, sha256=digest), cache_dir=tmp_path / "cache", local_files_only=True)
    assert again == folder and server.requests == 4  # no request at all
    assert all(torch.equal(first[k], v) for k, v in load_model(again).state_dict().items())


def test_official_download_failures_leave_nothing_behind(
        server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from xmodalzoo.convert.official import load_official, official_folder

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("xmodalzoo.convert.official.BACKOFF_S", 0.01)
    cache = tmp_path / "cache"
    bad = _entry(server, sha256="0" * 64)
    with pytest.raises(CheckpointError, match="does not match the pinned"):
        load_official(bad, cache_dir=cache)
    server.fail = 10
    with pytest.raises(CheckpointError, match=r"download failed after 4 attempts \(HTTP 503"):
        load_official(_entry(server), cache_dir=cache)
    for entry in (bad, _entry(server)):
        root = official_folder(entry, cache)
        assert not root.exists() or not any(root.iterdir())
    with pytest.raises(CheckpointError, match="not converted in the cache .* downloads are off"):
        load_official(_entry(server), cache_dir=cache, local_files_only=True)


@pytest.mark.parametrize("depth", [18, 50, 152])
def test_a_torchvision_resnet_fills_our_timm_backbone_and_its_depth_is_recognised(depth: int) -> None:
    """The official PCME / PVSE image encoders are torchvision ResNets: their parameter names (minus the
    classifier) are exactly those of the timm backbone we build, and the block counts name the model."""
    import timm
    import torchvision

    from xmodalzoo.convert import Converter, OfficialCheckpoint

    with torch.device("meta"):
        official = torchvision.models.__dict__[f"resnet{depth}"]().state_dict()
        ours = timm.create_model(f"resnet{depth}", pretrained=False, num_classes=0).state_dict()
    assert set(official) - {"fc.weight", "fc.bias"} == set(ours)
    ck = OfficialCheckpoint(Path("x.pth"), {f"img_enc.cnn.{k}": v for k, v in official.items()})
    assert Converter.cnn_config(ck, "img_enc.cnn.") == {"image_encoder": {"model": f"resnet{depth}"}}


def test_overrides_outside_the_method_are_refused(tmp_path: Path) -> None:
    from xmodalzoo.convert import convert_checkpoint

    fake_vse_infinity(tmp_path)
    with pytest.raises(CheckpointError, match="overrides start with method."):
        convert_checkpoint("vse-infinity", tmp_path / "vse.pth", tmp_path / "m", overrides=["train.epochs=3"],
                           vocab=tmp_path / "coco_precomp_vocab.json")
    assert not (tmp_path / "m").exists()

"""Embedding containers: shapes, slicing, concatenation, devices, save/load."""
import pytest
import torch

from xmodalzoo.embeddings import Embedding, GaussianEmbedding, PointEmbedding, SetEmbedding


def make_all(n=4):
    return [
        PointEmbedding(torch.randn(n, 3)),
        SetEmbedding(torch.randn(n, 2, 3)),
        GaussianEmbedding(torch.randn(n, 3), torch.randn(n, 3)),
    ]


@pytest.mark.parametrize("emb", make_all(), ids=lambda e: e.kind)
def test_slice_cat_roundtrip(emb):
    assert len(emb) == 4
    parts = [emb[:1], emb[1:3], emb[3]]
    assert [len(p) for p in parts] == [1, 2, 1]
    back = type(emb).cat(parts)
    for k, v in emb.tensors().items():
        assert torch.equal(v, back.tensors()[k])
    idx = torch.tensor([3, 0])
    picked = emb[idx]
    for k, v in emb.tensors().items():
        assert torch.equal(picked.tensors()[k], v[idx])


@pytest.mark.parametrize("emb", make_all(), ids=lambda e: e.kind)
def test_save_load(tmp_path, emb):
    path = tmp_path / "e.safetensors"
    emb.save(path)
    loaded = Embedding.load(path)
    assert type(loaded) is type(emb)
    for k, v in emb.tensors().items():
        assert torch.equal(v, loaded.tensors()[k])


def test_to_and_dtype():
    e = GaussianEmbedding(torch.zeros(2, 3), torch.zeros(2, 3)).to(torch.float64)
    assert e.dtype == torch.float64 and e.device.type == "cpu"
    assert torch.allclose(e.std, torch.ones(2, 3, dtype=torch.float64))


def test_shape_errors():
    with pytest.raises(ValueError, match="2-d"):
        PointEmbedding(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="3-d"):
        SetEmbedding(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="logvar shape"):
        GaussianEmbedding(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(TypeError, match="different embedding types"):
        Embedding.cat([PointEmbedding(torch.zeros(1, 2)), SetEmbedding(torch.zeros(1, 1, 2))])


def test_load_rejects_foreign_file(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "f.safetensors"))
    with pytest.raises(ValueError, match="not an xmodalzoo embedding"):
        Embedding.load(tmp_path / "f.safetensors")

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


@pytest.mark.parametrize("emb", make_all(5), ids=lambda e: e.kind)
def test_single_index_counts_from_the_end_and_checks_the_range(emb):
    import numpy as np

    for index in (-1, 4, np.int64(4), np.int32(-1), torch.tensor(4), torch.tensor(-1), np.array(4)):
        one = emb[index]
        assert type(one) is type(emb) and len(one) == 1, index
        for k, v in emb.tensors().items():
            assert torch.equal(one.tensors()[k], v[4:5]), index
    assert torch.equal(emb[-5].tensors()[emb.tensor_fields[0]], emb[0].tensors()[emb.tensor_fields[0]])
    for bad in (5, -6, np.int64(5), torch.tensor(-6)):
        with pytest.raises(IndexError, match=r"out of range for \w+Embedding of 5 items"):
            emb[bad]
    # arrays, lists and masks still select several items
    assert len(emb[np.array([0, 4])]) == 2 and len(emb[[1, 2, 3]]) == 3
    assert len(emb[torch.tensor([True, False, True, False, True])]) == 3
    assert len(emb[-2:]) == 2 and len(emb[7:]) == 0  # slices clip, as for tensors


def test_repr_shows_kind_and_shapes_not_values():
    point = PointEmbedding(torch.full((5, 256), 0.123456))
    assert repr(point) == "PointEmbedding(kind='point', items=5, vectors=float32[5, 256] cpu)"
    assert "0.1234" not in str(point)
    sets = SetEmbedding(torch.zeros(3, 4, 8, dtype=torch.float64), aux={"attn": torch.zeros(3, 4)})
    assert repr(sets) == "SetEmbedding(kind='set', items=3, vectors=float64[3, 4, 8] cpu, aux=['attn'])"
    gauss = GaussianEmbedding(torch.zeros(2, 6), torch.zeros(2, 6))
    assert repr(gauss) == "GaussianEmbedding(kind='gaussian', items=2, mean=float32[2, 6] cpu, logvar=float32[2, 6] cpu)"

"""Model folders: save, load (folder and zoo.load), identical embeddings; embed/search helpers."""
import torch

import xmodalzoo as zoo
from xmodalzoo.embeddings import PointEmbedding
from xmodalzoo.hub import save_model
from tiny import write_recipe


def tiny_method(tmp_path, monkeypatch):
    """The tiny recipe's untrained method (seed 0) and its test split."""
    monkeypatch.setenv("XMODALZOO_CACHE", str(tmp_path / "cache"))
    recipe = zoo.load_recipe(write_recipe(tmp_path))
    data = zoo.build_component("dataset", recipe.data, split="test")
    torch.manual_seed(0)
    return zoo.build_method(recipe, train_captions=list(data.captions)).eval(), data


def test_save_load_roundtrip_and_search(tmp_path, monkeypatch):
    method, data = tiny_method(tmp_path, monkeypatch)
    images = [data.load_image(i) for i in range(6)]
    texts = list(data.captions[:4])
    img, txt = method.embed_images(images, batch_size=4), method.embed_texts(texts, batch_size=3)
    assert isinstance(img, PointEmbedding) and len(img) == 6 and len(txt) == 4
    save_model(method, tmp_path / "model", card={"name": "tiny"})
    loaded = zoo.load(tmp_path / "model")
    assert torch.allclose(loaded.embed_images(images).vectors, img.vectors, atol=1e-6)
    assert torch.allclose(loaded.embed_texts(texts).vectors, txt.vectors, atol=1e-6)
    scores, index = loaded.search(txt, img, k=3)
    full = loaded.score(txt, img)
    assert torch.equal(index, torch.argsort(full, dim=1, descending=True, stable=True)[:, :3])
    assert "tiny" in (tmp_path / "model" / "README.md").read_text()


def test_build_from_folder_is_the_untrained_method_of_the_folder(tmp_path, monkeypatch):
    from xmodalzoo.hub.folder import build_from_folder, load_model

    method, _ = tiny_method(tmp_path, monkeypatch)
    with torch.no_grad():
        next(method.image_head.parameters()).add_(1.0)  # "trained": differs from any fresh init
    save_model(method, tmp_path / "model")
    torch.manual_seed(0)
    fresh = build_from_folder(tmp_path / "model")
    assert not fresh.training and fresh.tokenizer.words == method.tokenizer.words
    loaded = load_model(tmp_path / "model")
    saved, new, back = method.state_dict(), fresh.state_dict(), loaded.state_dict()
    assert saved.keys() == new.keys() == back.keys()
    assert all(torch.equal(saved[k], back[k]) for k in saved)
    assert not all(torch.equal(saved[k], new[k]) for k in saved)
    torch.manual_seed(0)
    again = build_from_folder(tmp_path / "model").state_dict()
    assert all(torch.equal(again[k], new[k]) for k in new)  # seeded: the same fresh weights

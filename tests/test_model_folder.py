"""Model folders: save, load (folder and zoo.load), identical embeddings; embed/search helpers."""
import torch

import xmodalzoo as zoo
from xmodalzoo.embeddings import PointEmbedding
from xmodalzoo.hub import save_model
from tiny import write_recipe


def test_save_load_roundtrip_and_search(tmp_path, monkeypatch):
    monkeypatch.setenv("XMODALZOO_CACHE", str(tmp_path / "cache"))
    recipe = zoo.load_recipe(write_recipe(tmp_path))
    data = zoo.build_component("dataset", recipe.data, split="test")
    torch.manual_seed(0)
    method = zoo.build_method(recipe, train_captions=list(data.captions)).eval()
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

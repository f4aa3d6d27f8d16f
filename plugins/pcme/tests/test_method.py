"""pcme / pcmepp methods end to end on tiny encoders: a training step, save/load with a and b, uncertainty."""
import numpy as np
import pytest
import torch
from PIL import Image

from xmodalzoo.data.batch import Batch
from xmodalzoo.embeddings import GaussianEmbedding
from xmodalzoo.hub.folder import load_model, save_model
from xmodalzoo.losses.base import LossContext
from xmodalzoo.api import build_component as build
from xmodalzoo.method import build_loss
from xmodalzoo.plugins import discover
from xmodalzoo.registry import REGISTRY

CAPTIONS = ["a red circle", "a small blue square on the left", "two green triangles", "a circle"]


def tiny(method: str, **extra):
    cfg = {
        "type": method,
        "embed_dim": 8,
        "image_encoder": {"type": "timm", "model": "test_resnet", "pretrained": False, "image_size": 32},
        "text_encoder": {"type": "bigru", "word_dim": 6, "hidden_dim": 4, "combine": "concat"},
        "image_head": {"type": "pcme_gaussian", "source": "local", "d_hidden": 4},
        "text_head": {"type": "pcme_gaussian", "source": "inputs", "d_hidden": 3, "sigma_gru": True},
        **extra,
    }
    torch.manual_seed(0)
    return build("method", cfg, train_captions=CAPTIONS)


def batch(model):
    texts = model.tokenize(CAPTIONS, train=False)
    return Batch(torch.randn(2, 3, 32, 32), texts, torch.tensor([0, 1]), torch.arange(4), torch.tensor([0, 1, 1, 0]))


def component(kind, value):
    """A method config's component default, validated by its own config class (whose defaults apply)."""
    value = value if isinstance(value, dict) else value.model_dump()
    return REGISTRY.get(kind, value["type"]).validate(value)


def test_defaults_are_the_published_ones():
    discover()
    pcme = REGISTRY.get("method", "pcme").validate({})
    sim = component("similarity", pcme.similarity)
    assert pcme.embed_dim == 1024 and sim.num_samples == 7
    assert sim.init_scale == sim.init_shift == 15.0  # the official negative_scale and shift (sigmoid(2s))
    loss = component("loss", pcme.loss)
    assert (loss.vib_weight, loss.uniformity_weight, loss.reduction, loss.vib_on, loss.vib_kl) == \
        (1e-5, 0.0, "sum", "samples", "official")
    image_encoder = component("image_encoder", pcme.image_encoder)
    assert image_encoder.model == "resnet152" and image_encoder.transform.random_erasing == 0.2
    text_encoder = component("text_encoder", pcme.text_encoder)
    assert text_encoder.augment.style == "pcme" and text_encoder.global_feature == "last_token"
    pp = REGISTRY.get("method", "pcmepp").validate({})
    pp_sim, pp_loss = component("similarity", pp.similarity), component("loss", pp.loss)
    assert pp_sim.init_scale == pp_sim.init_shift == 5.0
    assert (pp_loss.pseudo_positive_weight, pp_loss.vib_weight, pp_loss.kl_reduction) == (0.1, 1e-4, "mean")


@pytest.mark.parametrize("method,extra", [
    ("pcme", {"similarity": {"type": "match_prob", "num_samples": 3}}),
    ("pcmepp", {}),
])
def test_training_step_and_model_folder_roundtrip(tmp_path, method, extra):
    model = tiny(method, **extra)
    loss_fn = build_loss(model.config)
    b = batch(model)
    img, txt, _ = model(b)
    assert isinstance(img, GaussianEmbedding) and img.mean.shape == (2, 8) and txt.mean.shape == (4, 8)
    out = loss_fn(img, txt, LossContext(b.positives(), model.similarity))
    out.loss.backward()
    assert model.similarity.logit.raw_scale.grad is not None and model.similarity.logit.shift.grad is not None
    assert model.image_head.sigma_local.weight.grad is not None and model.text_head.sigma_gru.rnn.weight_ih_l0.grad is not None
    with torch.no_grad():
        model.similarity.logit.shift.add_(1.25)  # a learnt value must survive saving
    model.eval()
    with torch.no_grad():
        scores = model.score(model.encode_image(b.images), model.encode_text(CAPTIONS))
    folder = save_model(model, tmp_path / "m")
    loaded = load_model(folder)
    assert torch.equal(loaded.similarity.shift, model.similarity.shift)
    with torch.no_grad():
        again = loaded.score(loaded.encode_image(b.images), loaded.encode_text(CAPTIONS))
    assert torch.allclose(scores, again)
    u_txt = loaded.text_uncertainty(CAPTIONS)
    u_img = loaded.image_uncertainty(b.images)
    assert u_txt.shape == (4,) and u_img.shape == (2,) and (u_txt > 0).all()
    assert torch.allclose(u_txt, loaded.encode_text(CAPTIONS).logvar.exp().mean(-1))
    # the public API takes raw items too: a list of captions, or a list of images
    assert torch.allclose(loaded.uncertainty(CAPTIONS), u_txt, rtol=1e-5)
    pil = [Image.fromarray(np.full((40, 40, 3), 60 * i, dtype=np.uint8)) for i in range(3)]
    u_pil = loaded.uncertainty(pil)
    assert u_pil.shape == (3,) and (u_pil > 0).all()
    with pytest.raises(TypeError, match="list of captions"):
        loaded.uncertainty("a red circle")

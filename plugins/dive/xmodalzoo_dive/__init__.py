"""The DivE method plugin for xmodalzoo (Kim, Kim & Kwak, CVPR 2023: "Improving Cross-Modal Retrieval
with Set of Diverse Embeddings").

Components: head ``dive_slots`` (set-prediction module, K slots competing over T weight-shared
iterations); similarities ``smooth_chamfer``, ``smooth_chamfer_euclidean``, ``chamfer`` and
``set_match_prob`` (any method may use them); loss ``dive``; method ``dive``.
"""
from __future__ import annotations

from xmodalzoo.plugin_api import Registrar

__version__ = "0.1.0"

#: how to cite the method (model cards of its models include it)
CITATION = """\
@inproceedings{kim2023dive,
  title     = {Improving Cross-Modal Retrieval with Set of Diverse Embeddings},
  author    = {Kim, Dongwon and Kim, Namyup and Kwak, Suha},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2023}
}
"""
PAPER = "Kim, Kim & Kwak, Improving Cross-Modal Retrieval with Set of Diverse Embeddings, CVPR 2023"

SET_KINDS = ("set", "point")


def register(r: Registrar) -> None:
    """Register DivE's components with the zoo."""
    from .convert import build_dive_converter
    from .heads import DivEHeadConfig, build_dive_slots
    from .losses import DivELossConfig, build_dive_loss
    from .method import DivEConfig, build_dive
    from .similarity import (
        ChamferConfig, EuclideanSmoothChamferConfig, SetMatchProbConfig, SmoothChamferConfig, build_chamfer,
        build_set_match_prob, build_smooth_chamfer, build_smooth_chamfer_euclidean,
    )

    r.add("head", "dive_slots", build_dive_slots, DivEHeadConfig, emits="set")
    r.add("similarity", "smooth_chamfer", build_smooth_chamfer, SmoothChamferConfig, accepts=SET_KINDS)
    r.add("similarity", "smooth_chamfer_euclidean", build_smooth_chamfer_euclidean, EuclideanSmoothChamferConfig,
          accepts=SET_KINDS)
    r.add("similarity", "chamfer", build_chamfer, ChamferConfig, accepts=SET_KINDS)
    r.add("similarity", "set_match_prob", build_set_match_prob, SetMatchProbConfig, accepts=SET_KINDS)
    r.add("loss", "dive", build_dive_loss, DivELossConfig, accepts=SET_KINDS)
    r.add("method", "dive", build_dive, DivEConfig)
    r.add("converter", "dive", build_dive_converter)
    r.cite(CITATION)
    r.add_pretrained(
        "dive-coco", method="dive", source="unpublished", recipe="recipes/dive_coco.yaml", paper=PAPER,
        doc="DivE on COCO (bottom-up regions + biGRU); the authors released no weights",
        metrics=[{"dataset": "coco", "protocol": "coco1k", "metric": "rsum", "value": 524.6, "measured_by": "paper"},
                 {"dataset": "coco", "protocol": "coco5k", "metric": "rsum", "value": 430.7, "measured_by": "paper"}],
    )

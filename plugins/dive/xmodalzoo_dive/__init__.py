"""The DivE method plugin for xmodalzoo (Kim, Kim & Kwak, CVPR 2023: "Improving Cross-Modal Retrieval
with Set of Diverse Embeddings").

Components: head ``dive_slots`` (set-prediction module, K slots competing over T weight-shared
iterations); similarities ``smooth_chamfer``, ``smooth_chamfer_euclidean``, ``chamfer`` and
``set_match_prob`` (any method may use them); loss ``dive``; method ``dive``.
"""
from __future__ import annotations

from xmodalzoo.plugin_api import Registrar

__version__ = "0.1.0"

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

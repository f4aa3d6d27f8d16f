"""The PVSE method plugin for xmodalzoo: PIE heads, the mil_max similarity, the pvse loss and method."""
from __future__ import annotations

from xmodalzoo.plugin_api import Registrar

__version__ = "0.1.0"

#: how to cite the method (model cards of its models include it)
CITATION = """\
@inproceedings{song2019pvse,
  title     = {Polysemous Visual-Semantic Embedding for Cross-Modal Retrieval},
  author    = {Song, Yale and Soleymani, Mohammad},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2019}
}
"""


def register(r: Registrar) -> None:
    """Register PVSE's components with the zoo."""
    from .convert import build_pvse_converter
    from .heads import PIEConfig, PIEPointConfig, build_pie_point, build_pvse_pie
    from .losses import PVSELossConfig, build_pvse_loss
    from .method import PVSEConfig, build_pvse
    from .similarity import MILMaxConfig, build_mil_max

    r.add("head", "pvse_pie", build_pvse_pie, PIEConfig, emits="set")
    r.add("head", "pie_point", build_pie_point, PIEPointConfig, emits="point")
    r.add("similarity", "mil_max", build_mil_max, MILMaxConfig, accepts=["set"])
    r.add("loss", "pvse", build_pvse_loss, PVSELossConfig, accepts=["set", "point"])
    r.add("method", "pvse", build_pvse, PVSEConfig)
    r.add("converter", "pvse", build_pvse_converter)
    r.cite(CITATION)

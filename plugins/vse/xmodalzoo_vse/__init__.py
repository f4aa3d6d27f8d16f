"""The VSE method plugin for xmodalzoo: the ``vse_pool`` head (mean/max/GPO) and the ``vse`` method."""
from __future__ import annotations

from xmodalzoo.plugin_api import Registrar

__version__ = "0.1.0"

#: how to cite the method (model cards of its models include it)
CITATION = """\
@inproceedings{faghri2018vse++,
  title     = {{VSE++}: Improving Visual-Semantic Embeddings with Hard Negatives},
  author    = {Faghri, Fartash and Fleet, David J. and Kiros, Jamie Ryan and Fidler, Sanja},
  booktitle = {British Machine Vision Conference (BMVC)},
  year      = {2018}
}
@inproceedings{chen2021vseinfty,
  title     = {Learning the Best Pooling Strategy for Visual Semantic Embedding},
  author    = {Chen, Jiacheng and Hu, Hexiang and Wu, Hao and Jiang, Yuning and Wang, Changhu},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2021}
}
"""


def register(r: Registrar) -> None:
    """Register VSE's components with the zoo."""
    from .convert import build_vse_infinity_converter
    from .heads import VSEPoolConfig, build_vse_pool
    from .method import VSEConfig, build_vse

    r.add("head", "vse_pool", build_vse_pool, VSEPoolConfig, emits="point")
    r.add("method", "vse", build_vse, VSEConfig)
    r.add("converter", "vse-infinity", build_vse_infinity_converter)
    r.cite(CITATION)

"""The HREM method plugin for xmodalzoo (Fu et al., CVPR 2023): fragment-level heads, the training-only
instance-level relation module, the HREM loss, neighbour batches and the ``hrem`` method."""
from __future__ import annotations

from xmodalzoo.plugin_api import Registrar

__version__ = "0.1.0"

#: how to cite the method (model cards of its models include it)
CITATION = """\
@inproceedings{fu2023hrem,
  title     = {Learning Semantic Relationship among Instances for Image-Text Matching},
  author    = {Fu, Zheren and Mao, Zhendong and Song, Yan and Zhang, Yongdong},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2023}
}
"""


def register(r: Registrar) -> None:
    """Register HREM's components with the zoo."""
    from .convert import build_hrem_converter
    from .heads import HREMHeadConfig, build_hrem_head
    from .instance import HREMRelationConfig, build_hrem_relation
    from .losses import HREMLossConfig, build_hrem_loss
    from .method import HREMConfig, build_hrem
    from .sampler import NeighbourBatchesConfig, build_hrem_neighbours

    r.add("head", "hrem_fragments", build_hrem_head, HREMHeadConfig, emits="point")
    r.add("batch_module", "hrem_relation", build_hrem_relation, HREMRelationConfig)
    r.add("loss", "hrem", build_hrem_loss, HREMLossConfig, accepts=("point",), similarities=("cosine",))
    r.add("sampler", "hrem_neighbours", build_hrem_neighbours, NeighbourBatchesConfig)
    r.add("method", "hrem", build_hrem, HREMConfig)
    r.add("converter", "hrem", build_hrem_converter)
    r.cite(CITATION)

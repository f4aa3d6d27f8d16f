"""The PCME method plugin for xmodalzoo: probabilistic (Gaussian) cross-modal embeddings.

Components: heads ``pcme_gaussian`` (μ, log σ²) and ``pcme_mean`` (μ only); similarities
``match_prob`` (Monte-Carlo, PCME), ``csd`` (closed form, PCME++) and ``mean_cosine``; losses
``pcme`` and ``pcmepp``; methods ``pcme`` and ``pcmepp``.  Gaussians use logvar = log σ² throughout.
"""
from __future__ import annotations

from xmodalzoo.plugin_api import Registrar

__version__ = "0.1.0"

#: how to cite the method (model cards of its models include it)
CITATION = """\
@inproceedings{chun2021pcme,
  title     = {Probabilistic Embeddings for Cross-Modal Retrieval},
  author    = {Chun, Sanghyuk and Oh, Seong Joon and de Rezende, Rafael Sampaio and Kalantidis, Yannis and Larlus, Diane},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2021}
}
@inproceedings{chun2024pcmepp,
  title     = {Improved Probabilistic Image-Text Representations},
  author    = {Chun, Sanghyuk},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2024}
}
"""


def register(r: Registrar) -> None:
    """Register PCME's components with the zoo."""
    from .convert import build_pcme_converter
    from .heads import PCMEGaussianConfig, PCMEMeanConfig, build_pcme_gaussian, build_pcme_mean
    from .losses import PCMELossConfig, PCMEppLossConfig, build_pcme_loss, build_pcmepp_loss
    from .method import PCMEConfig, PCMEppConfig, build_pcme, build_pcmepp
    from .similarity import CSDConfig, MatchProbConfig, MeanCosineConfig, build_csd, build_match_prob, build_mean_cosine

    r.add("head", "pcme_gaussian", build_pcme_gaussian, PCMEGaussianConfig, emits="gaussian")
    r.add("head", "pcme_mean", build_pcme_mean, PCMEMeanConfig, emits="point")
    r.add("similarity", "match_prob", build_match_prob, MatchProbConfig, accepts=["gaussian"])
    r.add("similarity", "csd", build_csd, CSDConfig, accepts=["gaussian"])
    r.add("similarity", "mean_cosine", build_mean_cosine, MeanCosineConfig, accepts=["gaussian", "point"])
    r.add("loss", "pcme", build_pcme_loss, PCMELossConfig, accepts=["gaussian"], similarities=["match_prob"])
    r.add("loss", "pcmepp", build_pcmepp_loss, PCMEppLossConfig, accepts=["gaussian"], similarities=["csd"])
    r.add("method", "pcme", build_pcme, PCMEConfig)
    r.add("method", "pcmepp", build_pcmepp, PCMEppConfig)
    r.add("converter", "pcme", build_pcme_converter)
    r.cite(CITATION)

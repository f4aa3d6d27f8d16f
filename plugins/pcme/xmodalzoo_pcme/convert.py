"""Converting an official PCME checkpoint (naver-ai/pcme) into our ``pcme`` model.

The file: ``{'model': state_dict, 'criterion': {'negative_scale', 'shift'}, 'config', 'word2idx', ...}``
with keys ``img_enc.cnn.*`` (torchvision ResNet), ``img_enc.fc``, ``img_enc.pie_net.*``,
``img_enc.uncertain_net.{attention,fc,fc2}``, ``txt_enc.embed``, ``txt_enc.rnn``, ``txt_enc.pie_net.*``,
``txt_enc.uncertain_net.{attention,fc,rnn}``; often fp16 (apex O2), sometimes behind ``module.``.

Conventions converted (docs/converting.md):

* the official σ branches output log σ; ours output log σ²: both heads get ``sigma_output: logsigma``
  (the head doubles the branch's output), the weights are copied unchanged;
* ``criterion.negative_scale`` / ``shift`` are a and b of s = −a·d + b; our ``match_prob`` applies the
  official sigmoid(2s) itself, so they are stored unchanged, a as ``raw_scale = softplus⁻¹(a)``
  (:func:`~xmodalzoo_pcme.similarity.logit_state_from_official`).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from xmodalzoo.plugin_api import CheckpointError, Converter, KeyMap, OfficialCheckpoint

from .similarity import logit_state_from_official


class PCMEConverter(Converter):
    """Official PCME checkpoint -> ``pcme`` (ResNet + GloVe/biGRU, Gaussian heads, match probability)."""

    method = "pcme"

    def method_config(self, ck: OfficialCheckpoint) -> dict[str, Any]:
        t = ck.tensors
        cfg: dict[str, Any] = {
            "embed_dim": int(t["img_enc.fc.weight"].shape[0]),
            "text_encoder": self.word_gru_config(ck, "txt_enc.", "concat", "last_token"),
            "image_head": {"d_hidden": int(t["img_enc.pie_net.attention.w_1.weight"].shape[0]),
                           "sigma_gru": False, "sigma_output": "logsigma"},
            "text_head": {"d_hidden": int(t["txt_enc.pie_net.attention.w_1.weight"].shape[0]),
                          "sigma_gru": "txt_enc.uncertain_net.rnn.weight_hh_l0" in t, "sigma_output": "logsigma"},
        }
        return {**cfg, **self.cnn_config(ck, "img_enc.cnn.")}

    def map(self, ck: OfficialCheckpoint, keys: KeyMap) -> None:
        self.map_cnn(keys, "img_enc.cnn.", "image_encoder.backbone.")
        keys.move("img_enc.fc.", "image_head.global_proj.")
        for side, dst in (("img_enc.", "image_head."), ("txt_enc.", "text_head.")):
            pie, unc = f"{side}pie_net.", f"{side}uncertain_net."
            keys.move(f"{pie}attention.w_1.", f"{dst}mu_attention.w1.")
            keys.move(f"{pie}attention.w_2.", f"{dst}mu_attention.w2.")
            keys.move(f"{pie}fc.", f"{dst}mu_residual.")
            keys.move(f"{pie}layer_norm.", f"{dst}layer_norm.")
            keys.move(f"{unc}attention.w_1.", f"{dst}sigma_attention.w1.", note="σ branch: outputs log σ (doubled)")
            keys.move(f"{unc}attention.w_2.", f"{dst}sigma_attention.w2.", note="σ branch: outputs log σ (doubled)")
            keys.move(f"{unc}fc.", f"{dst}sigma_local.", note="σ branch: outputs log σ (doubled)")
        keys.move("img_enc.uncertain_net.fc2.", "image_head.sigma_global.", note="σ branch: outputs log σ (doubled)")
        self.map_word_gru(keys, "txt_enc.", "text_encoder.")
        if keys.has("txt_enc.uncertain_net.rnn."):
            keys.move("txt_enc.uncertain_net.rnn.", "text_head.sigma_gru.rnn.", note="σ branch: outputs log σ (doubled)")
        self.map_criterion(ck, keys)
        keys.convention("log σ -> log σ²: the official σ branches output log σ; both heads run with "
                        "sigma_output=logsigma and return 2·(branch output)")

    @staticmethod
    def map_criterion(ck: OfficialCheckpoint, keys: KeyMap) -> None:
        """``criterion.negative_scale`` (a) and ``criterion.shift`` (b) -> ``similarity.logit``."""
        crit = ck.entries.get("criterion")
        if not isinstance(crit, Mapping) or not {"negative_scale", "shift"} <= set(crit):
            raise CheckpointError(f"{ck.path}: no criterion entry with negative_scale and shift "
                             "(the learnable a, b of the match probability)")
        a, b = float(torch.as_tensor(crit["negative_scale"])), float(torch.as_tensor(crit["shift"]))
        state = logit_state_from_official(a, b)
        keys.put("similarity.logit.raw_scale", state["raw_scale"], "criterion['negative_scale']",
                 note=f"a = {a:g}, stored as softplus⁻¹(a); used in sigmoid(2·(−a·d + b)) as officially")
        keys.put("similarity.logit.shift", state["shift"], "criterion['shift']", note=f"b = {b:g}, unchanged")
        keys.entry("criterion", "negative_scale and shift -> similarity.logit (a, b)")
        keys.convention("match probability: sigmoid(2s), s = −a·d + b, a and b as in the official criterion")


def build_pcme_converter(cfg: Any, **_: Any) -> PCMEConverter:
    """Official PCME checkpoints (naver-ai/pcme) -> pcme."""
    return PCMEConverter()

"""Converting an official PVSE checkpoint (yalesong/pvse) into our ``pvse`` model.

Released files are plain state dicts (or ``{'model': ...}``, or the older ``[img_sd, txt_sd]`` list):
``img_enc.cnn.*`` (torchvision ResNet), ``img_enc.fc`` (global projection),
``img_enc.pie_net.{attention.w_1,attention.w_2,fc,layer_norm}``, ``txt_enc.embed``, ``txt_enc.rnn``,
``txt_enc.pie_net.*``.  Their text path is the "legacy" one (global = GRU output at the last token),
which the converted model uses (``text_encoder.global_feature: last_token``).  The vocabulary is not
in the file: pass ``--vocab``.
"""
from __future__ import annotations

from typing import Any

from xmodalzoo.plugin_api import Converter, KeyMap, OfficialCheckpoint


class PVSEConverter(Converter):
    """Official PVSE checkpoint -> ``pvse`` (ResNet + GloVe/biGRU, K-head PIE, MIL max)."""

    method = "pvse"

    def base_config(self) -> dict[str, Any]:
        # the released COCO setting (recipes/pvse_coco.yaml): ResNet-152 grid, concat biGRU, no text projection
        return {"type": "pvse", "image_encoder": {"type": "timm", "model": "resnet152"},
                "text_encoder": {"type": "bigru"}, "text_head": {"type": "pvse_pie", "project_global": False}}

    def method_config(self, ck: OfficialCheckpoint) -> dict[str, Any]:
        t = ck.tensors
        cfg: dict[str, Any] = {
            "embed_dim": int(t["img_enc.fc.weight"].shape[0]),
            "text_encoder": self.word_gru_config(ck, "txt_enc.", "concat", "last_token"),
        }
        for side, head in (("img_enc.", "image_head"), ("txt_enc.", "text_head")):
            w1, w2 = t[f"{side}pie_net.attention.w_1.weight"], t[f"{side}pie_net.attention.w_2.weight"]
            cfg[head] = {"num_heads": int(w2.shape[0]), "hidden_dim": int(w1.shape[0]),
                         "project_global": f"{side}fc.weight" in t}
        return {**cfg, **self.cnn_config(ck, "img_enc.cnn.")}

    def map(self, ck: OfficialCheckpoint, keys: KeyMap) -> None:
        self.map_cnn(keys, "img_enc.cnn.", "image_encoder.backbone.")
        for side, head in (("img_enc.", "image_head."), ("txt_enc.", "text_head.")):
            if keys.has(f"{side}fc."):
                keys.move(f"{side}fc.", f"{head}global_fc.")
            keys.move(f"{side}pie_net.", head)  # attention.w_1, attention.w_2, fc, layer_norm: the same names
        self.map_word_gru(keys, "txt_enc.", "text_encoder.")
        keys.convention("text global feature: the GRU output at the last token (the released checkpoints' legacy path)")


def build_pvse_converter(cfg: Any, **_: Any) -> PVSEConverter:
    """Official PVSE checkpoints (yalesong/pvse) -> pvse."""
    return PVSEConverter()

"""Converting an official HREM checkpoint (CrossmodalGroup/HREM) into our ``hrem`` model.

The file: ``{'model': [img_state_dict, txt_state_dict], 'opt', 'epoch', 'best_rsum'}``.  Image keys
``fc.fc`` and ``fc.mlp.{layers,bns}`` (FC_MLP over BUTD regions; the MLP's second BatchNorm is never
applied) and ``aggr.layers.0.*`` (nn.TransformerEncoderLayer); text ``bert.*`` (BertModel),
``linear``, ``aggr.layers.0.*``.  The instance-level relation module is training-only and not in the
file; the converted model is the inference model (``batch_module: null``).  ``opt`` (an argparse
Namespace) gives the number of attention heads (``nhead``).
"""
from __future__ import annotations

from typing import Any

from xmodalzoo.plugin_api import Converter, KeyMap, OfficialCheckpoint


class HREMConverter(Converter):
    """Official HREM checkpoint -> ``hrem`` (regions + BERT, fragment transformer, MaxK + mean pooling)."""

    method = "hrem"

    def method_config(self, ck: OfficialCheckpoint) -> dict[str, Any]:
        t = ck.tensors
        heads = int(ck.option("nhead", 16))
        cfg: dict[str, Any] = {
            "embed_dim": int(t["img_enc.fc.fc.weight"].shape[0]),
            "image_encoder": self.region_config(ck, "img_enc.fc.fc", "features"),
        }
        for side, head in (("img_enc.", "image_head"), ("txt_enc.", "text_head")):
            layers = {k.split(".")[3] for k in t if k.startswith(f"{side}aggr.layers.")}
            cfg[head] = {"num_heads": heads, "num_layers": len(layers),
                         "ff_dim": int(t[f"{side}aggr.layers.0.linear1.weight"].shape[0])}
            if ck.option("residual_weight") is not None:
                cfg[head]["maxk_weight"] = float(ck.option("residual_weight"))
        if isinstance(ck.option("bert_path"), str):
            cfg["text_encoder"] = {"model": ck.option("bert_path")}
        return cfg

    def map(self, ck: OfficialCheckpoint, keys: KeyMap) -> None:
        keys.move("img_enc.fc.fc.", "image_encoder.fc.")
        self.map_vse_mlp(keys, "img_enc.fc.mlp.", "image_encoder.mlp.")
        keys.move("img_enc.aggr.", "image_head.aggr.")
        keys.drop("txt_enc.bert.embeddings.position_ids", "position-id buffer that transformers recomputes")
        keys.move("txt_enc.bert.", "text_encoder.backbone.")
        keys.move("txt_enc.linear.", "text_head.proj.fc.")
        keys.move("txt_enc.aggr.", "text_head.aggr.")
        keys.entry("opt", "training options; nhead (and residual_weight when present) set the heads")


def build_hrem_converter(cfg: Any, **_: Any) -> HREMConverter:
    """Official HREM checkpoints (CrossmodalGroup/HREM) -> hrem."""
    return HREMConverter()

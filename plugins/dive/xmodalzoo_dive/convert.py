"""Converting a DivE checkpoint in the layout of the released code (kdwonn/DivE) into our ``dive`` model.

No DivE weights are published; this maps what the released code saves for its COCO recipe
(``train_eval_coco.sh``: BUTD regions, GloVe/biGRU, ``--arch slot --spm_pre_norm --spm_last_ln
--spm_weight_sharing --spm_residual_norm --gpo_1x1 --gpo_rnn``):
``{'args', 'epoch', 'best_score', 'model': state_dict}`` with ``img_enc.fc``, ``img_enc.mlp.{fc1,bn.bn,fc2}``,
``{img,txt}_enc.spm.residual_norm`` (LayerNorm of the global feature),
``{img,txt}_enc.spm.agg_block.latents`` (the K learned slots),
``...agg_block.layers.{0..T-1}.{0,2}`` (pre-norm attention and feed-forward; with weight sharing every
layer is the same module saved T times: the copies are checked equal and dropped),
``...agg_block.last_layer.0`` (final LayerNorm), ``txt_enc.embed`` (|V| (+1) rows), ``txt_enc.rnn``.
The vocabulary is a separate file of the released code: pass ``--vocab`` (JSON).
"""
from __future__ import annotations

from typing import Any

from xmodalzoo.plugin_api import Converter, KeyMap, OfficialCheckpoint

#: the released code's cross-attention has 4 heads (hard-coded in its AggregationBlock)
OFFICIAL_HEADS = 4


class DivEConverter(Converter):
    """Released-code DivE checkpoint -> ``dive`` (regions + biGRU, slot sets, smooth-Chamfer)."""

    method = "dive"

    @staticmethod
    def depth(ck: OfficialCheckpoint, side: str) -> int:
        prefix = f"{side}spm.agg_block.layers."
        return len({k[len(prefix):].split(".")[0] for k in ck.tensors if k.startswith(prefix)})

    def shared(self, ck: OfficialCheckpoint, side: str) -> bool:
        """Weight sharing: ``args.spm_weight_sharing`` when the file has it, else layers 0 and 1 equal."""
        flag = ck.option("spm_weight_sharing")
        if flag is not None:
            return bool(flag)
        a = ck.tensors.get(f"{side}spm.agg_block.layers.0.0.fn.to_q.weight")
        b = ck.tensors.get(f"{side}spm.agg_block.layers.1.0.fn.to_q.weight")
        return a is not None and b is not None and bool((a == b).all())

    def method_config(self, ck: OfficialCheckpoint) -> dict[str, Any]:
        t = ck.tensors
        cfg: dict[str, Any] = {
            "embed_dim": int(t["img_enc.fc.weight"].shape[0]),
            "image_encoder": self.region_config(ck, "img_enc.fc", "projection"),
            "text_encoder": self.word_gru_config(ck, "txt_enc.", "mean", "final_states"),
        }
        for side, head in (("img_enc.", "image_head"), ("txt_enc.", "text_head")):
            spm = f"{side}spm.agg_block."
            inner = int(t[f"{spm}layers.0.0.fn.to_q.weight"].shape[0])
            slot_dim = int(t[f"{spm}latents"].shape[1])
            cfg[head] = {"num_slots": int(t[f"{spm}latents"].shape[0]), "iterations": self.depth(ck, side),
                         "share_weights": self.shared(ck, side), "attention_heads": OFFICIAL_HEADS,
                         "head_dim": inner // OFFICIAL_HEADS,
                         "ff_mult": t[f"{spm}layers.0.2.fn.net.0.weight"].shape[0] / slot_dim}
        cfg["image_head"]["project_global"] = "img_enc.residual_last_fc.weight" in t
        return cfg

    def map(self, ck: OfficialCheckpoint, keys: KeyMap) -> None:
        keys.move("img_enc.fc.", "image_encoder.fc.")
        keys.move("img_enc.mlp.fc1.", "image_encoder.mlp.0.")
        keys.move("img_enc.mlp.bn.bn.", "image_encoder.mlp.1.")
        keys.move("img_enc.mlp.fc2.", "image_encoder.mlp.3.")
        if keys.has("img_enc.residual_last_fc."):
            keys.move("img_enc.residual_last_fc.", "image_head.global_fc.")
        for side, head in (("img_enc.", "image_head."), ("txt_enc.", "text_head.")):
            self.map_set_module(ck, keys, side, head)
        self.map_word_gru(keys, "txt_enc.", "text_encoder.")

    def map_set_module(self, ck: OfficialCheckpoint, keys: KeyMap, side: str, head: str) -> None:
        spm = f"{side}spm.agg_block."
        keys.move(f"{side}spm.residual_norm.", f"{head}global_norm.")
        keys.rename(f"{spm}latents", f"{head}spm.slots")
        shared = self.shared(ck, side)
        for i in range(self.depth(ck, side)):
            src = f"{spm}layers.{i}."
            if shared and i > 0:
                keys.tied(src, f"{spm}layers.0.", "weight-shared iteration (the same module saved again)")
                continue
            dst = f"{head}spm.blocks.{i}."
            keys.move(f"{src}0.norm.", f"{dst}norm_slots.")
            keys.move(f"{src}0.norm_context.", f"{dst}norm_inputs.")
            keys.move(f"{src}0.fn.", f"{dst}attention.")  # to_q, to_k, to_v, to_out.0
            keys.move(f"{src}2.norm.", f"{dst}norm_ff.")
            keys.move(f"{src}2.fn.net.", f"{dst}ff.")  # Linear at 0 and 3, as ours
        keys.move(f"{spm}last_layer.0.", f"{head}spm.final_norm.")


def build_dive_converter(cfg: Any, **_: Any) -> DivEConverter:
    """DivE checkpoints in the released code's layout (kdwonn/DivE) -> dive."""
    return DivEConverter()

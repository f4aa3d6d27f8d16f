"""Converting an official VSE∞ checkpoint (woodfrog/vse_infty) into our ``vse`` model.

The file: ``{'model': [img_state_dict, txt_state_dict], 'opt', 'epoch', 'best_rsum', ...}`` with every
key prefixed ``module.``.  Image (BUTD regions, ``precomp_enc_type: backbone``): ``fc`` (2048 -> D),
``mlp.{layers,bns}.*`` (its second BatchNorm is never applied), ``gpool.{gru,linear}``.  Text: either
``embed`` + ``rnn`` (BiGRU, directions averaged; the vocabulary is a separate JSON file: pass
``--vocab``) or ``bert.*`` + ``linear`` (BERT-base; name the BERT folder with
``--set method.text_encoder.model=...`` or a recipe), then ``gpool``.
"""
from __future__ import annotations

from typing import Any

from xmodalzoo.plugin_api import Converter, KeyMap, OfficialCheckpoint


class VSEInfinityConverter(Converter):
    """Official VSE∞ checkpoint -> ``vse`` (regions + BiGRU or BERT, GPO pooling on both sides)."""

    method = "vse"

    def method_config(self, ck: OfficialCheckpoint) -> dict[str, Any]:
        t = ck.tensors
        cfg: dict[str, Any] = {
            "embed_dim": int(t["img_enc.fc.weight"].shape[0]),
            "image_encoder": self.region_config(ck, "img_enc.fc", "features"),
        }
        for side, head in (("img_enc.", "image_head"), ("txt_enc.", "text_head")):
            gru = t[f"{side}gpool.gru.weight_hh_l0"]
            cfg[head] = {"type": "vse_pool", "pooling": "gpo", "source": "local",
                         "gpo_pe_dim": int(t[f"{side}gpool.gru.weight_ih_l0"].shape[1]),
                         "gpo_hidden_dim": int(gru.shape[1])}
        if "txt_enc.embed.weight" in t:
            cfg["text_encoder"] = self.word_gru_config(ck, "txt_enc.", "mean", "final_states")
        else:
            model = ck.option("bert_path") if isinstance(ck.option("bert_path"), str) else "bert-base-uncased"
            cfg["text_encoder"] = {"type": "transformers", "model": model}
        return cfg

    def map(self, ck: OfficialCheckpoint, keys: KeyMap) -> None:
        keys.move("img_enc.fc.", "image_encoder.fc.")
        self.map_vse_mlp(keys, "img_enc.mlp.", "image_encoder.mlp.")
        for side, head in (("img_enc.", "image_head."), ("txt_enc.", "text_head.")):
            keys.move(f"{side}gpool.gru.", f"{head}gpo.gru.")
            keys.move(f"{side}gpool.linear.", f"{head}gpo.score.")
        if keys.has("txt_enc.embed."):
            self.map_word_gru(keys, "txt_enc.", "text_encoder.")
        else:
            keys.drop("txt_enc.bert.embeddings.position_ids", "position-id buffer that transformers recomputes")
            keys.move("txt_enc.bert.", "text_encoder.backbone.")
            keys.move("txt_enc.linear.", "text_head.proj.")


def build_vse_infinity_converter(cfg: Any, **_: Any) -> VSEInfinityConverter:
    """Official VSE∞ checkpoints (woodfrog/vse_infty) -> vse."""
    return VSEInfinityConverter()

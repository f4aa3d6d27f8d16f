"""The ``README.md`` model card of a model folder, built with huggingface_hub's card classes.

The YAML front-matter (``library_name: xmodalzoo``, tags, datasets, licence, a ``model-index`` with
one entry per evaluation result) is what the Hub indexes; the body has a usage snippet, the parts of
the model, the training recipe and the method's citation (registered by its plugin, ``Registrar.cite``).
"""
from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

TASK = "image-text-retrieval"
TAGS = ["image-text-retrieval", "cross-modal-retrieval", "xmodalzoo"]
PARTS = ("image_encoder", "text_encoder", "image_head", "text_head", "similarity")


def eval_results(results: Mapping[str, Any] | None, dataset: str) -> list[Any]:
    """One ``EvalResult`` per numeric metric of each protocol in an ``eval_results.json`` mapping
    (``{protocol: {metric: value}}``; ``meta`` is skipped)."""
    from huggingface_hub import EvalResult

    out = []
    for protocol, values in (results or {}).items():
        if protocol == "meta" or not isinstance(values, Mapping):
            continue
        for metric, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out.append(EvalResult(task_type=TASK, dataset_type=dataset, dataset_name=dataset,
                                      dataset_config=protocol, dataset_split="test",
                                      metric_type=metric, metric_name=f"{metric} ({protocol})",
                                      metric_value=float(value)))
    return out


def model_card(method_cfg: Mapping[str, Any], *, name: str, load_name: str, datasets: Sequence[str] = (),
               license: str | None = None, results: Mapping[str, Any] | None = None,
               recipe: str | None = None, citation: str | None = None) -> str:
    """The card's text: YAML front-matter (``ModelCardData``) and a Markdown body."""
    from huggingface_hub import ModelCard, ModelCardData

    dataset = datasets[0] if datasets else "unknown"
    evals = eval_results(results, dataset)
    data = ModelCardData(
        library_name="xmodalzoo", tags=[*TAGS, str(method_cfg.get("type"))], license=license or "other",
        datasets=list(datasets) or None, model_name=name, pipeline_tag=None,
        eval_results=evals or None,
    )
    body = [
        f"# {name}",
        "",
        f"An [xmodalzoo](https://pypi.org/project/xmodalzoo/) `{method_cfg.get('type')}` model for "
        "image–text retrieval: it embeds images and captions and scores every pair.",
        "",
        "## Usage",
        "",
        "```python",
        "import xmodalzoo as zoo",
        "from PIL import Image",
        "",
        f"model = zoo.load({load_name!r})",
        "images = model.embed_images([Image.open('photo.jpg')])",
        "texts = model.embed_texts(['a dog on a beach', 'a red car'])",
        "scores = model.score(texts, images)  # (2, 1): caption x image",
        "```",
        "",
        "## Parts",
        "",
    ]
    for key in PARTS:
        part = method_cfg.get(key)
        if isinstance(part, Mapping):
            body.append(f"- {key}: `{part.get('type')}`")
    if results:
        body += ["", "## Results", "", "```json",
                 json.dumps({k: v for k, v in results.items() if k != "meta"}, indent=2), "```"]
    if recipe:
        body += ["", "## Training recipe", "", "The resolved recipe is `recipe.yaml` in this folder:",
                 "", "```yaml", recipe.rstrip(), "```"]
    if citation:
        body += ["", "## Citation", "", "```bibtex", citation.strip(), "```"]
    card = ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n{{ body }}\n",
                                   body="\n".join(body))
    return str(card)

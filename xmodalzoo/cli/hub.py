"""``zoo download``, ``zoo export`` and ``zoo push``: pretrained models in and out of the Hugging Face Hub."""
from __future__ import annotations

import argparse
from typing import Any


def add_verbs(verbs: Any) -> None:
    p = verbs.add_parser("download", help="download pretrained models into the Hugging Face cache",
                         description="Fill the Hugging Face cache with models (pretrained names or "
                                     "hf-hub:ORG/NAME[@REVISION]) so that they load offline (HF_HUB_OFFLINE=1); "
                                     "prints where each one is.")
    p.add_argument("names", nargs="+", metavar="NAME", help="pretrained name (zoo list pretrained) or hf-hub:ORG/NAME")
    p.add_argument("--revision", help="branch, tag or commit (default: the entry's pinned revision, else main)")
    p.add_argument("--cache-dir", metavar="DIR", help="Hugging Face cache folder (default: HF_HUB_CACHE)")
    p.set_defaults(func=cmd_download)

    p = verbs.add_parser("export", help="write a run's model as a model folder",
                         description="Write the model of a finished run as a model folder (config.json, "
                                     "model.safetensors, tokenizer/, recipe.yaml, eval_results.json, README.md).")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run, e.g. runs/vse_shapes")
    p.add_argument("-o", "--output", required=True, metavar="FOLDER", help="the model folder to write")
    p.set_defaults(func=cmd_export)

    p = verbs.add_parser("push", help="publish a run or model folder on the Hugging Face Hub",
                         description="Upload a model folder (or a run's model) to a Hub repository, creating it "
                                     "when missing. The token comes from HF_TOKEN or 'hf auth login'.")
    p.add_argument("source", metavar="RUN_DIR_OR_FOLDER")
    p.add_argument("--repo-id", required=True, metavar="ORG/NAME")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--revision", metavar="BRANCH", help="push to this branch (created from main when missing)")
    p.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    p.set_defaults(func=cmd_push)


def cmd_download(args: argparse.Namespace) -> int:
    """``zoo download``: each model's local folder, one line each."""
    from ..api import resolve_source
    from .output import make_console

    console = make_console()
    for name in args.names:
        folder = resolve_source(name, revision=args.revision, cache_dir=args.cache_dir)
        console.print(f"{name}: {folder}", highlight=False, soft_wrap=True)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..api import export_run
    from .output import make_console

    folder = export_run(args.run_dir, args.output)
    make_console().print(f"model folder written to {folder}", highlight=False, soft_wrap=True)
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from ..hub.publish import push_to_hub
    from .output import make_console

    url = push_to_hub(args.source, args.repo_id, private=args.private or None, revision=args.revision,
                      create_pr=args.create_pr)
    make_console().print(f"pushed to {args.repo_id}: {url}", highlight=False, soft_wrap=True)
    make_console().print(f"load it with: zoo.load('hf-hub:{args.repo_id}')", highlight=False, soft_wrap=True)
    return 0

"""``zoo convert``: an official checkpoint of a paper -> a model folder (see docs/converting.md)."""
from __future__ import annotations

import argparse
from typing import Any

from .output import add_set_option, say


def add_verbs(verbs: Any) -> None:
    c = verbs.add_parser(
        "convert", help="convert an official checkpoint into a model folder",
        description="Read an official checkpoint safely (torch.load weights_only=True), map every tensor onto "
                    "the matching xmodalzoo model and write a model folder with conversion.json (what went where, "
                    "what was dropped and why). Converters: zoo list components converter.",
    )
    c.add_argument("checkpoint", help="the official .pth/.pth.tar/.pt file")
    c.add_argument("--from", dest="source", required=True, metavar="LAYOUT",
                   help="the official layout: pcme, pvse, dive, hrem, vse-infinity (or a plugin's converter)")
    c.add_argument("-o", "--output", required=True, metavar="FOLDER", help="model folder to write")
    c.add_argument("--recipe", metavar="YAML", help="build the model from this recipe's method: section "
                                                    "(default: the method's published defaults)")
    add_set_option(c, "override a method setting, e.g. method.image_encoder.model=resnet50 (repeatable)")
    c.add_argument("--vocab", metavar="JSON", help="vocabulary for checkpoints that hold none (words in id order, "
                                                   "or {word: id})")
    c.add_argument("--trust-pickle", action="store_true",
                   help="read a file that weights_only loading refuses with full unpickling: this RUNS CODE from "
                        "the file; only for files from a source you trust")
    c.set_defaults(func=cmd_convert)


def cmd_convert(args: argparse.Namespace) -> int:
    from ..convert import convert_checkpoint

    report = convert_checkpoint(args.source, args.checkpoint, args.output, recipe=args.recipe,
                                overrides=args.overrides, vocab=args.vocab, trust_pickle=args.trust_pickle)
    for line in report.summary():
        say(line)
    say(f"wrote {args.output} (report: {args.output}/conversion.json)")
    return 0

"""The ``zoo`` command: one module per topic, each adding its verbs to the parser.

* :mod:`.recipes` — ``validate``, ``schema``;
* :mod:`.catalog` — ``list``, ``plugins``, ``info`` (what is installed);
* :mod:`.data` — ``data preview``;
* :mod:`.train` — ``train``; :mod:`.evaluate` — ``eval``;
* :mod:`.hub` — ``download``, ``export``, ``push`` (pretrained models and the Hugging Face Hub);
* :mod:`.convert` — ``convert`` (official checkpoints);
* :mod:`.search` — ``index build``, ``search``.

Mistakes in user input (a bad recipe, an unknown name, a missing file: :class:`~xmodalzoo.errors.UserError`
and ``OSError``) print one red message and exit with status 2; a training run that cannot go on
(:class:`~xmodalzoo.errors.TrainingError`) exits with status 1.  ``XMODALZOO_DEBUG=1`` shows the
traceback instead.  Modules import torch only inside their verbs, so ``zoo --help`` stays fast.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Sequence

from ..errors import TrainingError, UserError
from ..version import __version__
from . import catalog, convert, data, evaluate, hub, recipes, search, train
from .output import print_error, show_warning

USAGE_ERROR = 2
RUN_FAILED = 1
#: the topic modules, in the order their verbs appear in ``zoo --help``
TOPICS = (recipes, catalog, data, train, evaluate, hub, convert, search)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``zoo`` command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return USAGE_ERROR
    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning
            return int(args.func(args) or 0)
    except Exception as exc:
        if debug() or not isinstance(exc, (UserError, OSError, TrainingError)):
            raise
        print_error(exc)
        return RUN_FAILED if isinstance(exc, TrainingError) else USAGE_ERROR
    except KeyboardInterrupt:
        print_error("interrupted")
        return 130


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every verb (each topic module adds its own)."""
    parser = argparse.ArgumentParser(
        prog="zoo",
        description="xmodalzoo: a plugin-based model zoo for image-text cross-modal retrieval.",
        epilog="Set XMODALZOO_DEBUG=1 for tracebacks; XMODALZOO_STRICT_PLUGINS=1 makes plugin failures fatal.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    verbs = parser.add_subparsers(title="commands", metavar="COMMAND")
    for topic in TOPICS:
        topic.add_verbs(verbs)
    return parser


def debug() -> bool:
    return os.environ.get("XMODALZOO_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""``zoo index build`` and ``zoo search``: index a folder of images once, then search it by text or image."""
from __future__ import annotations

import argparse
from typing import Any

from ..errors import UserError
from .output import say


def add_verbs(verbs: Any) -> None:
    ix = verbs.add_parser("index", help="build a search index over a folder of images",
                          description="Search indexes over your own images (see docs/search.md).")
    sub = ix.add_subparsers(title="index commands", metavar="COMMAND")
    b = sub.add_parser("build", help="encode a folder of images into an index folder",
                       description="Encode every image below IMAGE_FOLDER once with a model. Resumable: rerun the "
                                   "same command after an interruption. Unreadable images are skipped and listed "
                                   "in INDEX_DIR/unreadable.tsv.")
    b.add_argument("image_folder", metavar="IMAGE_FOLDER")
    b.add_argument("--model", required=True, metavar="NAME_OR_FOLDER",
                   help="a model folder, a pretrained name (zoo list pretrained) or hf://OWNER/REPO")
    b.add_argument("-o", "--output", required=True, metavar="INDEX_DIR", help="the index folder to write")
    b.add_argument("--batch-size", type=int, default=64)
    b.add_argument("--shard-size", type=int, default=1024, help="images per shard written (the unit of resuming)")
    b.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    b.add_argument("--quiet", action="store_true", help="no progress")
    b.set_defaults(func=cmd_index_build)
    ix.set_defaults(func=lambda args: ix.print_help() or 2)

    s = verbs.add_parser("search", help="search an index by text or by image",
                         description="Print the best images of an index for a text (or --image): rank, score, path.")
    s.add_argument("index", metavar="INDEX_DIR")
    s.add_argument("text", nargs="*", help="one or more queries (each is searched on its own)")
    s.add_argument("--image", action="append", default=[], metavar="FILE", help="search by this image (repeatable)")
    s.add_argument("-k", type=int, default=10, help="results per query (default 10)")
    s.add_argument("--model", metavar="NAME_OR_FOLDER", help="the model (default: the one the index records)")
    s.add_argument("--backend", default="engine", choices=["engine", "faiss-flat", "faiss-ivf", "faiss-hnsw"],
                   help="engine = brute force (default); faiss-* need pip install 'xmodalzoo[search]'")
    s.add_argument("--candidates", type=int, metavar="C", help="candidates re-ranked per query (see docs/search.md)")
    s.add_argument("--device", default="cpu")
    s.add_argument("--html", metavar="FILE", help="also write an HTML gallery of the results")
    s.add_argument("--png", metavar="FILE", help="also write a PNG contact sheet of the results")
    s.set_defaults(func=cmd_search)


def cmd_index_build(args: argparse.Namespace) -> int:
    from ..search import Index

    Index.build(args.image_folder, args.model, args.output, batch_size=args.batch_size, device=args.device,
                shard_size=args.shard_size, progress=False if args.quiet else None)
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from ..search import Index

    if not args.text and not args.image:
        raise UserError("zoo search: give a text query or --image FILE")
    if args.text and args.image:
        raise UserError("zoo search: give text queries or --image files, not both")
    if args.k < 1:
        raise UserError(f"zoo search: -k must be at least 1, got {args.k}")
    index = Index.open(args.index, model=args.model, device=args.device, backend=args.backend)
    queries = list(args.text) if args.text else list(args.image)
    results = (index.search(queries, args.k, candidates=args.candidates) if args.text
               else index.search_images(queries, args.k, candidates=args.candidates))
    for n, (query, hits) in enumerate(zip(queries, results)):
        if len(queries) > 1:
            say(("" if n == 0 else "\n") + f"# {query}")
        for rank, hit in enumerate(hits, 1):
            say(f"{rank:>3}  {hit.score: .4f}  {hit.path}")
    if args.html or args.png:
        from ..search.gallery import write_html, write_png

        if args.html:
            say(f"wrote {write_html(queries, results, args.html)}", stderr=True)
        if args.png:
            say(f"wrote {write_png(queries, results, args.png)}", stderr=True)
    return 0

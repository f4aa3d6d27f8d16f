"""Galleries of search results: an HTML page or a PNG contact sheet, one row per query."""
from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Sequence

from ..files import atomic_path, write_text_atomic
from .images import try_read_image
from .index import Hit


def write_html(queries: Sequence[str], results: Sequence[Sequence[Hit]], out: str | os.PathLike[str]) -> Path:
    """An HTML page (images linked relative to the page) with each query's hits: rank, score, file name."""
    out = Path(out)
    base = out.resolve().parent
    parts = ["<!doctype html>", '<html><head><meta charset="utf-8"><title>xmodalzoo search</title>',
             "<style>body{font-family:sans-serif} .hits{display:flex;flex-wrap:wrap;gap:8px}"
             " figure{margin:0;width:160px} img{width:160px;height:160px;object-fit:cover}"
             " figcaption{font-size:12px;word-break:break-all}</style></head><body>"]
    for query, hits in zip(queries, results):
        parts.append(f"<h2>{html.escape(query)}</h2><div class=\"hits\">")
        for rank, hit in enumerate(hits, 1):
            src = Path(os.path.relpath(Path(hit.path).resolve(), base)).as_posix()
            parts.append(f'<figure><img src="{html.escape(src)}" alt="{html.escape(Path(hit.path).name)}">'
                         f"<figcaption>{rank}. {hit.score:.4f}<br>{html.escape(Path(hit.path).name)}</figcaption></figure>")
        parts.append("</div>")
    parts.append("</body></html>\n")
    return write_text_atomic(out, "\n".join(parts))


def write_png(queries: Sequence[str], results: Sequence[Sequence[Hit]], out: str | os.PathLike[str],
              thumb: int = 128) -> Path:
    """A PNG contact sheet: per query a title line, then its hits as ``thumb``-pixel squares labelled
    with rank and score (an image that can no longer be read is a grey square)."""
    from PIL import Image, ImageDraw

    cols = max((len(h) for h in results), default=1) or 1
    label, title, pad = 14, 18, 4
    row_h = title + thumb + label + pad
    sheet = Image.new("RGB", (cols * (thumb + pad) + pad, max(1, len(results)) * row_h + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (query, hits) in enumerate(zip(queries, results)):
        y = pad + r * row_h
        draw.text((pad, y), query[:120], fill="black")
        for c, hit in enumerate(hits):
            x = pad + c * (thumb + pad)
            image, _ = try_read_image(hit.path)
            tile = image.resize((thumb, thumb)) if image is not None else Image.new("RGB", (thumb, thumb), "grey")
            sheet.paste(tile, (x, y + title))
            draw.text((x, y + title + thumb + 1), f"{c + 1}. {hit.score:.3f}", fill="black")
    out = Path(out)
    with atomic_path(out) as tmp:
        sheet.save(tmp, format="PNG")
    return out

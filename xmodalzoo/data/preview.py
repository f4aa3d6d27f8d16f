"""A contact sheet of a dataset: images with their captions underneath, for eyeballing the data."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .base import RetrievalDataset

_LINE_HEIGHT = 12
_PAD = 6


def preview_grid(
    dataset: RetrievalDataset, path: str | Path, n: int = 16, columns: int = 4, seed: int = 0,
    scale: int = 3,
) -> Path:
    """Write a PNG of ``n`` random images (upscaled ``scale`` times) with their captions below.

    Works for any dataset whose ``image_kind`` is ``"pil"``; returns the written path.
    """
    if dataset.image_kind != "pil":
        raise ValueError(f"preview_grid needs a dataset of PIL images, {dataset!r} has image_kind "
                         f"{dataset.image_kind!r}")
    if n < 1 or columns < 1 or scale < 1:
        raise ValueError(f"n, columns and scale must be positive, got n={n}, columns={columns}, scale={scale}")
    n = min(n, dataset.num_images)
    chosen = np.sort(np.random.default_rng(seed).choice(dataset.num_images, size=n, replace=False))
    images = [dataset.load_image(int(i)).convert("RGB") for i in chosen]
    tile_w = max(img.width for img in images) * scale
    tile_h = max(img.height for img in images) * scale
    wrap = max(10, tile_w // 6)  # the default bitmap font is ~6 px per character
    texts = [_caption_lines(dataset, int(i), wrap) for i in chosen]
    text_h = max(len(t) for t in texts) * _LINE_HEIGHT + _PAD
    rows = (n + columns - 1) // columns
    cols = min(columns, n)
    cell_w, cell_h = tile_w + 2 * _PAD, tile_h + text_h + 2 * _PAD
    sheet = Image.new("RGB", (cols * cell_w, rows * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for k, (img, lines) in enumerate(zip(images, texts)):
        x, y = (k % columns) * cell_w + _PAD, (k // columns) * cell_h + _PAD
        sheet.paste(img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST), (x, y))
        for j, line in enumerate(lines):
            draw.text((x, y + tile_h + _PAD // 2 + j * _LINE_HEIGHT), line, fill="black", font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, format="PNG")
    return path


def _caption_lines(dataset: RetrievalDataset, image: int, width: int) -> list[str]:
    lines = [f"#{dataset.image_ids[image]}"]
    for c in dataset.captions_of(image):
        lines += textwrap.wrap(f"- {dataset.captions[c]}", width=width, subsequent_indent="  ")
    return lines

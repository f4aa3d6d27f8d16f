"""Scenes of the shapes benchmark: the attribute vocabulary, random scene layouts and their pixels.

A scene places 1..``max_objects`` objects in distinct cells of a 3 × 3 grid.  Every object is five
attribute codes, in the order of :data:`ATTRIBUTES`; absent object slots hold ``-1`` everywhere.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "diamond")
COLOURS: tuple[str, ...] = ("red", "orange", "yellow", "green", "blue", "purple")
SIZES: tuple[str, ...] = ("small", "large")
ROWS: tuple[str, ...] = ("top", "middle", "bottom")
COLUMNS: tuple[str, ...] = ("left", "centre", "right")

#: attribute names, in the order of the last axis of every object array
ATTRIBUTES: tuple[str, ...] = ("shape", "colour", "size", "row", "column")
#: number of values of each attribute, in :data:`ATTRIBUTES` order
ATTRIBUTE_SIZES: tuple[int, ...] = (len(SHAPES), len(COLOURS), len(SIZES), len(ROWS), len(COLUMNS))
SHAPE, COLOUR, SIZE, ROW, COLUMN = range(5)

#: object fill colours (RGB), in :data:`COLOURS` order
PALETTE = np.array(
    [[220, 30, 30], [250, 135, 0], [245, 220, 0], [30, 160, 50], [30, 70, 230], [145, 40, 185]],
    dtype=np.float32,
)

#: half-extent of an object as a share of the grid cell, by size
_HALF_EXTENT = (0.26, 0.42)


def sample_scenes(num_images: int, max_objects: int, rng: np.random.Generator) -> np.ndarray:
    """Random layouts: (num_images, max_objects, 5) int8 attribute codes, -1 for absent slots.

    Each image gets 1..max_objects objects (uniform), each in its own grid cell (so none overlap).
    """
    if not 1 <= max_objects <= 9:
        raise ValueError(f"max_objects must be between 1 and 9 (a 3x3 grid), got {max_objects}")
    num_objects = rng.integers(1, max_objects + 1, size=num_images)
    cells = np.argsort(rng.random((num_images, 9)), axis=1)[:, :max_objects]
    objects = np.empty((num_images, max_objects, 5), dtype=np.int8)
    objects[..., SHAPE] = rng.integers(0, len(SHAPES), size=(num_images, max_objects))
    objects[..., COLOUR] = rng.integers(0, len(COLOURS), size=(num_images, max_objects))
    objects[..., SIZE] = rng.integers(0, len(SIZES), size=(num_images, max_objects))
    objects[..., ROW] = cells // 3
    objects[..., COLUMN] = cells % 3
    objects[np.arange(max_objects)[None, :] >= num_objects[:, None]] = -1
    return objects


def count_objects(objects: np.ndarray) -> np.ndarray:
    """Objects per image (int64) of an (N, M, 5) object array."""
    return (objects[..., SHAPE] >= 0).sum(axis=1).astype(np.int64)


def shape_mask(shape: int, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Pixels inside ``shape`` at object-frame coordinates (u right, v down; the shape spans ~[-1, 1])."""
    au, av = u.abs(), v.abs()
    name = SHAPES[shape]
    if name == "circle":
        return u * u + v * v <= 0.95**2
    if name == "square":
        return torch.maximum(au, av) <= 0.78
    if name == "diamond":
        return au + av <= 1.0
    if name == "triangle":  # apex up
        return (v <= 0.72) & (au <= 0.95 * (v + 1.0) / 1.72)
    if name == "cross":
        return (torch.minimum(au, av) <= 0.3) & (torch.maximum(au, av) <= 0.95)
    if name == "star":  # five points, one pointing up
        return _star_mask(u, v, inner=0.45)
    raise ValueError(f"no mask for shape {shape}")


def _star_mask(u: torch.Tensor, v: torch.Tensor, inner: float) -> torch.Tensor:
    # Fold the angle onto one half-spike: the outer tip at angle 0, the inner notch at 36 degrees;
    # the point is inside when it is on the centre's side of the edge tip -> notch.
    step = 2 * np.pi / 5
    angle = torch.atan2(v, u) + np.pi / 2  # tip straight up
    folded = torch.remainder(angle, step)
    folded = torch.minimum(folded, step - folded)
    radius = torch.sqrt(u * u + v * v)
    px, py = radius * torch.cos(folded), radius * torch.sin(folded)
    ax, ay = 1.0, 0.0
    bx, by = inner * np.cos(step / 2), inner * np.sin(step / 2)
    # sign of the cross product (b - a) x (p - a); the centre (0, 0) gives a positive value
    cross = (bx - ax) * (py - ay) - (by - ay) * (px - ax)
    return cross >= 0


def render_scenes(
    objects: np.ndarray, image_size: int, rng: np.random.Generator, chunk: int = 2048
) -> np.ndarray:
    """Draw the scenes: (N, image_size, image_size, 3) uint8 RGB.

    A lightly textured light-grey background; each object filled in its colour with a darker rim,
    jittered inside its grid cell.
    """
    if image_size < 24:
        raise ValueError(f"image_size must be at least 24 pixels to draw the shapes, got {image_size}")
    n, m = objects.shape[:2]
    cell = image_size / 3
    half = np.where(objects[..., SIZE] == 1, _HALF_EXTENT[1], _HALF_EXTENT[0]) * cell
    rim = max(1.0, image_size / 64)
    slack = np.maximum(cell / 2 - half - rim - 0.5, 0)
    jitter = (rng.random((n, m, 2)) * 2 - 1) * slack[..., None]
    cx = (objects[..., COLUMN] + 0.5) * cell + jitter[..., 0]
    cy = (objects[..., ROW] + 0.5) * cell + jitter[..., 1]
    brightness = rng.uniform(0.9, 1.08, size=(n, m, 1))
    fills = PALETTE[np.clip(objects[..., COLOUR], 0, None)] * brightness
    tints = rng.uniform(-12, 12, size=(n, 1, 1, 3)) + rng.uniform(200, 225, size=(n, 1, 1, 1))
    seeds = rng.integers(0, 2**62, size=(n + chunk - 1) // chunk)
    out = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    for c, start in enumerate(range(0, n, chunk)):
        sl = slice(start, start + chunk)
        gen = torch.Generator().manual_seed(int(seeds[c]))
        out[sl] = _render_chunk(
            objects[sl], cx[sl], cy[sl], half[sl], fills[sl], tints[sl], image_size, rim, gen
        )
    return out


def _render_chunk(
    objects: np.ndarray, cx: np.ndarray, cy: np.ndarray, half: np.ndarray, fills: np.ndarray,
    tints: np.ndarray, size: int, rim: float, gen: torch.Generator,
) -> np.ndarray:
    b = objects.shape[0]
    coarse = torch.randn(b, 1, 6, 6, generator=gen) * 7
    texture = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[:, 0]
    canvas = torch.from_numpy(tints).float().expand(b, size, size, 3) + texture[..., None]
    canvas = canvas.reshape(b, size * size, 3).clone()
    # Each object is drawn in a window around its cell, never over the whole image.
    win = int(np.ceil(size / 3)) + 2
    offs = torch.arange(win, dtype=torch.float32) + 0.5
    for k in range(objects.shape[1]):
        for shape in range(len(SHAPES)):
            rows = np.flatnonzero(objects[:, k, SHAPE] == shape)
            if rows.size == 0:
                continue
            x0 = np.clip(np.floor(cx[rows, k] - win / 2), 0, size - win).astype(np.int64)
            y0 = np.clip(np.floor(cy[rows, k] - win / 2), 0, size - win).astype(np.int64)
            r = torch.from_numpy(half[rows, k]).float()[:, None, None]
            u = (torch.from_numpy(x0).float()[:, None, None] + offs[None, None, :]
                 - torch.from_numpy(cx[rows, k]).float()[:, None, None]) / r
            v = (torch.from_numpy(y0).float()[:, None, None] + offs[None, :, None]
                 - torch.from_numpy(cy[rows, k]).float()[:, None, None]) / r
            inside = shape_mask(shape, u, v)
            scale = r / (r + rim)
            outline = shape_mask(shape, u * scale, v * scale)
            pix = ((torch.from_numpy(y0)[:, None, None] + torch.arange(win)[None, :, None]) * size
                   + torch.from_numpy(x0)[:, None, None] + torch.arange(win)[None, None, :])
            img = torch.as_tensor(rows)[:, None, None].expand_as(pix)
            fill = torch.from_numpy(fills[rows, k]).float()
            colour_of = fill[:, None, None, :].expand(*pix.shape, 3)
            canvas[img[outline], pix[outline]] = colour_of[outline] * 0.55
            canvas[img[inside], pix[inside]] = colour_of[inside]
    canvas += torch.randn(canvas.shape[:2], generator=gen)[..., None] * 3
    return canvas.reshape(b, size, size, 3).round().clamp(0, 255).to(torch.uint8).numpy()

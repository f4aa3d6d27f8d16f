"""Scenes of the shapes benchmark: the attribute vocabulary, random scene layouts and their pixels.

A scene places 1..``max_objects`` objects in distinct cells of a 3 × 3 grid.  Every object is five
attribute codes, in the order of :data:`ATTRIBUTES`; absent object slots hold ``-1`` everywhere.
"""
from __future__ import annotations

import numpy as np

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


def shape_mask(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Pixels inside ``shape`` at object-frame coordinates (u right, v down; the shape spans ~[-1, 1])."""
    au, av = np.abs(u), np.abs(v)
    name = SHAPES[shape]
    if name == "circle":
        return u * u + v * v <= 0.95**2
    if name == "square":
        return np.maximum(au, av) <= 0.78
    if name == "diamond":
        return au + av <= 1.0
    if name == "triangle":  # apex up
        return (v <= 0.72) & (au <= 0.95 * (v + 1.0) / 1.72)
    if name == "cross":
        return (np.minimum(au, av) <= 0.3) & (np.maximum(au, av) <= 0.95)
    if name == "star":  # five points, one pointing up
        return _star_mask(u, v, inner=0.5)
    raise ValueError(f"no mask for shape {shape}")


def _star_mask(u: np.ndarray, v: np.ndarray, inner: float) -> np.ndarray:
    # Fold the angle onto one half-spike: the outer tip at angle 0, the inner notch at 36 degrees;
    # the point is inside when it is on the centre's side of the edge tip -> notch.
    step = 2 * np.pi / 5
    folded = np.remainder(np.arctan2(v, u) + np.pi / 2, step)  # a tip straight up
    folded = np.minimum(folded, step - folded)
    radius = np.sqrt(u * u + v * v)
    px, py = radius * np.cos(folded), radius * np.sin(folded)
    bx, by = inner * np.cos(step / 2), inner * np.sin(step / 2)
    # sign of the cross product (b - a) x (p - a) with a = (1, 0); the centre gives a positive value
    return (bx - 1.0) * py - by * (px - 1.0) >= 0


def _smooth_upsample(size: int, coarse: int) -> np.ndarray:
    """(size, coarse) linear-interpolation matrix from a coarse grid to ``size`` pixels."""
    pos = (np.arange(size) + 0.5) / size * (coarse - 1)
    lo = np.clip(np.floor(pos).astype(np.int64), 0, coarse - 2)
    frac = pos - lo
    mat = np.zeros((size, coarse), dtype=np.float32)
    mat[np.arange(size), lo] = 1 - frac
    mat[np.arange(size), lo + 1] = frac
    return mat


def render_scenes(
    objects: np.ndarray, image_size: int, rng: np.random.Generator, chunk: int = 1024
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
    centres = np.stack([objects[..., COLUMN], objects[..., ROW]], axis=-1) + 0.5
    centres = centres * cell + jitter  # (n, m, 2) x, y
    brightness = rng.uniform(0.9, 1.08, size=(n, m, 1))
    fills = PALETTE[np.clip(objects[..., COLOUR], 0, None)] * brightness
    tints = (rng.uniform(-10, 10, size=(n, 1, 1, 3)) + rng.uniform(200, 225, size=(n, 1, 1, 1)))
    out = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    for start in range(0, n, chunk):
        sl = slice(start, start + chunk)
        out[sl] = _background(tints[sl].astype(np.float32), image_size, rng)
        _draw_objects(out[sl], objects[sl], centres[sl], half[sl], fills[sl], rim)
    return out


def _background(tints: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    up = _smooth_upsample(size, 6)
    coarse = rng.standard_normal((tints.shape[0], 6, 6), dtype=np.float32) * 8
    lum = np.einsum("ij,bjk,lk->bil", up, coarse, up, optimize=True)
    lum += rng.standard_normal(lum.shape, dtype=np.float32) * 3
    return np.clip(tints + lum[..., None], 0, 255).astype(np.uint8)


def _draw_objects(
    canvas: np.ndarray, objects: np.ndarray, centres: np.ndarray, half: np.ndarray,
    fills: np.ndarray, rim: float,
) -> None:
    """Paint every object into ``canvas`` (B, S, S, 3) in place, one (slot, shape) group at a time."""
    size = canvas.shape[1]
    flat = canvas.reshape(-1, 3)
    # each object is evaluated on a window around its centre, never over the whole image
    win = int(np.ceil(size / 3)) + 2
    offs = np.arange(win)
    for k in range(objects.shape[1]):
        for shape in range(len(SHAPES)):
            rows = np.flatnonzero(objects[:, k, SHAPE] == shape)
            if rows.size == 0:
                continue
            c = centres[rows, k]
            origin = np.clip(np.floor(c - win / 2), 0, size - win).astype(np.int64)  # x0, y0
            r = half[rows, k][:, None, None]
            u = ((origin[:, 0, None, None] + offs[None, None, :] + 0.5) - c[:, 0, None, None]) / r
            v = ((origin[:, 1, None, None] + offs[None, :, None] + 0.5) - c[:, 1, None, None]) / r
            inside = shape_mask(shape, u, v)
            scale = r / (r + rim)
            outline = shape_mask(shape, u * scale, v * scale)
            pix = (rows[:, None, None] * size * size
                   + (origin[:, 1, None, None] + offs[None, :, None]) * size
                   + origin[:, 0, None, None] + offs[None, None, :])
            fill = np.broadcast_to(fills[rows, k][:, None, None, :], (*pix.shape, 3))
            flat[pix[outline]] = (fill[outline] * 0.55).astype(np.uint8)
            flat[pix[inside]] = np.clip(fill[inside], 0, 255).astype(np.uint8)

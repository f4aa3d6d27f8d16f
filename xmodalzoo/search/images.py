"""The images of a folder: which files count, and reading one without a traceback."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import DataError

#: file name endings indexed (case-insensitive)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def list_images(folder: str | Path) -> list[str]:
    """Paths (relative to ``folder``, POSIX form, sorted) of every image file below ``folder``.

    Hidden files and folders (a name starting with ``.``) are left out.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: no such image folder")
    found = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            found.append(rel.as_posix())
    return sorted(found)


def try_read_image(path: str | Path) -> tuple[Any, str | None]:
    """``(RGB PIL image, None)``, fully decoded, or ``(None, reason)`` when the file cannot be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.convert("RGB"), None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        return None, (str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def read_image(path: str | Path) -> Any:
    """The image at ``path`` as an RGB PIL image; an unreadable file raises a one-line
    :class:`DataError` naming it and the reason."""
    image, reason = try_read_image(path)
    if image is None:
        raise DataError(f"{path}: unreadable image ({reason})")
    return image

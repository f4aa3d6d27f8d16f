"""Image transforms (PIL image -> normalised tensor) built from a config."""
from __future__ import annotations

from typing import Any, Callable, Literal, Sequence

import numpy as np
import torch
from PIL import Image
from pydantic import Field

from ..config import ComponentConfig


class ImageTransformConfig(ComponentConfig):
    """Training augmentation and evaluation resizing of images."""

    train_crop: Literal["random_resized", "resize_random"] = Field(
        "random_resized",
        description="random_resized: RandomResizedCrop; resize_random: resize the short side then RandomCrop",
    )
    crop_scale_min: float = Field(0.08, gt=0, le=1, description="smallest area share of a RandomResizedCrop")
    resize_ratio: float = Field(
        256 / 224, ge=1, description="short side before cropping = image_size * resize_ratio (eval, resize_random)"
    )
    horizontal_flip: bool = Field(False, description="random horizontal flips (off: captions mention left/right)")
    random_erasing: float = Field(0.0, ge=0, le=1, description="probability of RandomErasing (PCME: 0.2)")
    mean: tuple[float, float, float] | None = Field(None, description="normalisation mean (None: the model's)")
    std: tuple[float, float, float] | None = Field(None, description="normalisation std (None: the model's)")
    interpolation: Literal["bilinear", "bicubic", "nearest"] | None = Field(
        None, description="resize interpolation (None: the model's)"
    )


def to_rgb(image: Any) -> Image.Image:
    """A PIL RGB image from a PIL image or an (H, W[, C]) uint8 array."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL image or a uint8 array, got {type(image).__name__}")
    return image if image.mode == "RGB" else image.convert("RGB")


def build_image_transform(
    cfg: ImageTransformConfig,
    image_size: int,
    train: bool,
    mean: Sequence[float] = (0.485, 0.456, 0.406),
    std: Sequence[float] = (0.229, 0.224, 0.225),
    interpolation: str = "bicubic",
) -> Callable[[Any], torch.Tensor]:
    """Callable turning one image into a (3, image_size, image_size) float tensor.

    ``mean``/``std``/``interpolation`` are the model's defaults, overridden by the config when set.
    """
    from torchvision import transforms as T

    interp = T.InterpolationMode(cfg.interpolation or interpolation)
    resize = round(image_size * cfg.resize_ratio)
    steps: list[Any] = [to_rgb]
    if train:
        if cfg.train_crop == "random_resized":
            steps.append(T.RandomResizedCrop(image_size, scale=(cfg.crop_scale_min, 1.0), interpolation=interp))
        else:
            steps += [T.Resize(resize, interpolation=interp), T.RandomCrop(image_size)]
        if cfg.horizontal_flip:
            steps.append(T.RandomHorizontalFlip())
    else:
        steps += [T.Resize(resize, interpolation=interp), T.CenterCrop(image_size)]
    steps += [T.ToTensor(), T.Normalize(list(cfg.mean or mean), list(cfg.std or std))]
    if train and cfg.random_erasing > 0:
        steps.append(T.RandomErasing(p=cfg.random_erasing))
    return T.Compose(steps)

"""Image encoder wrapping any timm model: its pooled feature plus its grid cells / tokens."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from pydantic import Field

from ..config import ComponentConfig
from .base import EncoderOutput, ImageEncoder
from .pretrained import with_pretrained_weights
from .transforms import ImageTransformConfig, build_image_transform


class TimmImageEncoderConfig(ComponentConfig):
    """Options of the timm image encoder."""

    model: str = Field("resnet18", description="timm model name (timm.list_models() lists them)")
    pretrained: bool = Field(False, description="load timm's pretrained weights (downloads unless cached)")
    checkpoint: str | None = Field(None, description="local weights file loaded into the backbone")
    image_size: int = Field(224, gt=0, description="side of the square input image")
    local_stage: int | None = Field(
        None,
        description="take the local features (grid cells) from this feature stage instead of the final map: an "
        "index into the model's feature_info (e.g. 3 = stride 16 for MobileNetV3, a 4 x 4 grid at 64 px); the "
        "pooled feature still comes from the whole network. None: the final feature map (CNNs only)",
    )
    transform: ImageTransformConfig = Field(default_factory=ImageTransformConfig,
                                            description="training augmentation and eval resizing")


class TimmImageEncoder(ImageEncoder):
    """``pooled`` = the model's global pooling (B, C); ``local`` = feature map cells or tokens (B, L, C)."""

    def __init__(self, cfg: TimmImageEncoderConfig) -> None:
        super().__init__()
        import timm

        if not timm.is_model(cfg.model):
            close = timm.list_models(f"*{cfg.model}*")[:5]
            hint = f" Similar names: {', '.join(close)}." if close else ""
            raise ValueError(f"unknown timm model {cfg.model!r}.{hint}")
        self.cfg = cfg
        self.backbone = create_backbone(cfg)
        patch_embed = getattr(self.backbone, "patch_embed", None)
        if patch_embed is not None and tuple(getattr(patch_embed, "img_size", ())) != (cfg.image_size,) * 2:
            # transformers fix their position embeddings to one image size
            self.backbone = create_backbone(cfg, img_size=cfg.image_size)
        if cfg.checkpoint is not None:
            load_backbone_checkpoint(self.backbone, cfg.checkpoint)
        self.local_dim = self.input_dim = int(self.backbone.num_features)
        if cfg.local_stage is not None:
            self.local_dim = self.input_dim = self._stage_channels(cfg.local_stage)
        self.pooled_dim = int(getattr(self.backbone, "head_hidden_size", None) or self.backbone.num_features)
        self.data_config = timm.data.resolve_model_data_config(self.backbone)

    def _stage_channels(self, stage: int) -> int:
        """Channels of feature stage ``stage``; a clear error for models or indices that have none."""
        info = getattr(self.backbone, "feature_info", None)
        if not info or not hasattr(self.backbone, "forward_intermediates"):
            raise ValueError(f"local_stage: {self.cfg.model} exposes no feature stages")
        if not 0 <= stage < len(info):
            raise ValueError(f"local_stage {stage} is out of range: {self.cfg.model} has stages 0..{len(info) - 1} "
                             f"(channels {[f['num_chs'] for f in info]}, strides {[f['reduction'] for f in info]})")
        return int(info[stage]["num_chs"])

    def forward(self, images: torch.Tensor) -> EncoderOutput:
        if images.dim() != 4:
            raise ValueError(f"timm image encoder expects images (B, 3, H, W), got shape {tuple(images.shape)}")
        if self.cfg.local_stage is None:
            feats = self.backbone.forward_features(images)
            pooled = self.backbone.forward_head(feats, pre_logits=True)
        else:  # one pass: the final features for the pooled vector, an earlier map for the cells
            final, (feats,) = self.backbone.forward_intermediates(images, indices=[self.cfg.local_stage])
            pooled = self.backbone.forward_head(final, pre_logits=True)
        if feats.dim() == 4:
            # forward_intermediates gives NCHW maps whatever the model's own output format
            channels_last = self.cfg.local_stage is None and str(getattr(self.backbone, "output_fmt", "NCHW")) == "NHWC"
            local = feats.flatten(1, 2) if channels_last else feats.flatten(2).transpose(1, 2)
        elif feats.dim() == 3:
            local = feats
        else:
            raise ValueError(f"{self.cfg.model}: unexpected feature shape {tuple(feats.shape)}")
        mask = torch.ones(local.shape[:2], dtype=torch.bool, device=local.device)
        return EncoderOutput(pooled=pooled, local=local, mask=mask)

    def transform(self, train: bool) -> Callable[[Any], torch.Tensor]:
        """PIL image -> (3, image_size, image_size) tensor normalised with the model's mean/std."""
        return build_image_transform(
            self.cfg.transform, self.cfg.image_size, train,
            mean=self.data_config["mean"], std=self.data_config["std"],
            interpolation=self.data_config.get("interpolation", "bicubic"),
        )

    def backbone_parameters(self) -> list[str]:
        return ["backbone"]


def create_backbone(cfg: TimmImageEncoderConfig, **options: Any) -> torch.nn.Module:
    """The timm model of ``cfg`` without its classifier; with ``pretrained``, its weights come from the
    local cache, or are downloaded when the Hub can be reached (else a one-line error naming
    ``method.image_encoder.pretrained``, at once: :mod:`xmodalzoo.encoders.pretrained`)."""
    import timm

    def build() -> torch.nn.Module:
        return timm.create_model(cfg.model, pretrained=cfg.pretrained, num_classes=0, **options)

    if not cfg.pretrained:
        return build()
    return with_pretrained_weights(build, "method.image_encoder.pretrained", f"the timm weights of {cfg.model}")


def load_backbone_checkpoint(model: torch.nn.Module, path: str | Path) -> None:
    """Load a local weights file (.pth/.pt/.safetensors) into ``model``; classifier weights are ignored.

    Raises if a backbone weight is missing from the file, naming the first missing keys.
    """
    from ..weights import read_weights

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image encoder checkpoint {path} not found")
    state = read_weights(path)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    missing, _unexpected = model.load_state_dict(state, strict=False)
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ValueError(f"{path}: {len(missing)} backbone weights missing from the checkpoint: {shown}")


def build_timm_image_encoder(cfg: TimmImageEncoderConfig, **_: Any) -> TimmImageEncoder:
    """Any timm model as image encoder (pooled feature + feature-map cells / tokens)."""
    return TimmImageEncoder(cfg)

"""Losses shipped with the core."""
from .base import Loss, LossContext, LossOutput
from .triplet import TripletConfig, TripletLoss, build_triplet


def register_components(r) -> None:  # type: ignore[no-untyped-def]
    r.add("loss", "triplet", build_triplet, TripletConfig)


__all__ = ["Loss", "LossContext", "LossOutput", "TripletConfig", "TripletLoss", "register_components"]

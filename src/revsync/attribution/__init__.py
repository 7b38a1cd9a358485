"""Attribution: share a won deal's revenue across its journey's touchpoints, exactly."""

from revsync.attribution.markov import MarkovModel
from revsync.attribution.models import (
    MODEL_NAMES,
    AttributionModel,
    DataDriven,
    FirstTouch,
    LastNonDirect,
    LastTouch,
    Linear,
    PositionBased,
    TimeDecay,
    attribute,
    build_model,
    channel_path,
)
from revsync.attribution.money import allocate, minor_units

__all__ = [
    "MODEL_NAMES",
    "AttributionModel",
    "DataDriven",
    "FirstTouch",
    "LastNonDirect",
    "LastTouch",
    "Linear",
    "MarkovModel",
    "PositionBased",
    "TimeDecay",
    "allocate",
    "attribute",
    "build_model",
    "channel_path",
    "minor_units",
]

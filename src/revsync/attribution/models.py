"""Attribution models: how a deal's credit is shared across its journey's touchpoints.

Every model returns exact ``Fraction`` weights keyed by touchpoint id, one per touchpoint
(uncredited ones get 0), summing to exactly 1, in time order. Touchpoints are ordered
by ``(occurred_at, id)`` whatever order they arrive in, so results do not depend on input
order and simultaneous touchpoints are ordered by id.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from operator import attrgetter
from typing import ClassVar, Literal, Protocol, get_args

from revsync.attribution.markov import MarkovModel
from revsync.attribution.money import (
    as_money,
    common_numerators,
    minor_units,
    split_units,
    whole_units,
)
from revsync.domain import Credit, Journey, Touch

ModelName = Literal[
    "first_touch",
    "last_touch",
    "last_non_direct",
    "linear",
    "time_decay",
    "position_based",
    "data_driven",
]
MODEL_NAMES: tuple[str, ...] = get_args(ModelName)

_SECONDS_PER_DAY = 86_400
# Float weights are turned into exact fractions on this grid (relative to the largest).
_GRID_BITS = 53


class AttributionModel(Protocol):
    """Shares one conversion's credit across touchpoints."""

    @property
    def name(self) -> str: ...

    def weights(
        self, touchpoints: Sequence[Touch], conversion_time: datetime
    ) -> dict[str, Fraction]:
        """Exact weights per touchpoint id summing to 1; ``{}`` for no touchpoints."""
        ...


_TIME_ORDER = attrgetter("occurred_at", "id")


def ordered(touchpoints: Sequence[Touch]) -> list[Touch]:
    """Touchpoints sorted by ``(occurred_at, id)``; duplicate ids are rejected."""
    result = sorted(touchpoints, key=_TIME_ORDER)
    if len({tp.id for tp in result}) != len(result):
        raise ValueError("touchpoint ids must be unique within a journey")
    return result


def channel_path(touchpoints: Sequence[Touch]) -> tuple[str, ...]:
    """A journey's channels in time order: the path :meth:`MarkovModel.fit` takes."""
    return tuple(str(tp.channel) for tp in ordered(touchpoints))


def _single(touchpoints: Sequence[Touch], chosen: Touch) -> dict[str, Fraction]:
    return {tp.id: Fraction(int(tp is chosen)) for tp in touchpoints}


def _exact_shares(values: Sequence[float]) -> list[Fraction]:
    """Exact fractions proportional to non-negative ``values`` (not all 0), summing to 1.

    Each value is scaled to a whole number of 2**-53 units of the largest one, so equal
    values get equal shares, power-of-two ratios stay exact, and denominators stay small.
    """
    top = max(values)
    units = [round(math.ldexp(value / top, _GRID_BITS)) for value in values]
    total = sum(units)
    return [Fraction(n, total) for n in units]


class SingleTouch:
    """All credit to one touchpoint, the one ``chosen`` picks from the time-ordered ones."""

    name: ClassVar[str]

    def weights(
        self, touchpoints: Sequence[Touch], conversion_time: datetime
    ) -> dict[str, Fraction]:
        tps = ordered(touchpoints)
        return _single(tps, self.chosen(tps)) if tps else {}

    @staticmethod
    def chosen(tps: Sequence[Touch]) -> Touch:
        """The credited one of time-ordered, non-empty ``tps``."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class FirstTouch(SingleTouch):
    """All credit to the earliest touchpoint."""

    name: ClassVar[str] = "first_touch"

    @staticmethod
    def chosen(tps: Sequence[Touch]) -> Touch:
        return tps[0]


@dataclass(frozen=True, slots=True)
class LastTouch(SingleTouch):
    """All credit to the latest touchpoint."""

    name: ClassVar[str] = "last_touch"

    @staticmethod
    def chosen(tps: Sequence[Touch]) -> Touch:
        return tps[-1]


@dataclass(frozen=True, slots=True)
class LastNonDirect(SingleTouch):
    """All credit to the latest non-direct touchpoint; the latest one if all are direct."""

    name: ClassVar[str] = "last_non_direct"

    @staticmethod
    def chosen(tps: Sequence[Touch]) -> Touch:
        return next((tp for tp in reversed(tps) if not tp.is_direct), tps[-1])


@dataclass(frozen=True, slots=True)
class Linear:
    """Equal credit to every touchpoint."""

    name: ClassVar[str] = "linear"

    def weights(
        self, touchpoints: Sequence[Touch], conversion_time: datetime
    ) -> dict[str, Fraction]:
        tps = ordered(touchpoints)
        return {tp.id: Fraction(1, len(tps)) for tp in tps}


@dataclass(frozen=True, slots=True)
class TimeDecay:
    """Credit proportional to ``2 ** (-age / half_life_days)``, age in days to conversion.

    Touchpoints after ``conversion_time`` count as age 0. The float weights are made
    exact by :func:`_exact_shares`: a touchpoint one half-life older than another gets
    exactly half its weight.
    """

    half_life_days: float = 7.0
    name: ClassVar[str] = "time_decay"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.half_life_days) and self.half_life_days > 0):
            raise ValueError(f"half_life_days must be > 0, got {self.half_life_days}")

    def weights(
        self, touchpoints: Sequence[Touch], conversion_time: datetime
    ) -> dict[str, Fraction]:
        tps = ordered(touchpoints)
        if not tps:
            return {}
        ages = [
            max(0.0, (conversion_time - tp.occurred_at).total_seconds() / _SECONDS_PER_DAY)
            for tp in tps
        ]
        youngest = min(ages)  # relative to the youngest, so the largest raw weight is 1
        raw = [2.0 ** (-(age - youngest) / self.half_life_days) for age in ages]
        return dict(zip((tp.id for tp in tps), _exact_shares(raw), strict=True))


@dataclass(frozen=True, slots=True)
class PositionBased:
    """``first_share`` to the first, ``last_share`` to the last, the rest split evenly
    across the middle. One touchpoint gets everything; two split ``first_share :
    last_share`` rescaled to 1 (50/50 if both shares are 0)."""

    first_share: Fraction = Fraction(2, 5)
    last_share: Fraction = Fraction(2, 5)
    name: ClassVar[str] = "position_based"

    def __post_init__(self) -> None:
        if self.first_share < 0 or self.last_share < 0 or self.first_share + self.last_share > 1:
            raise ValueError(
                "position_based needs first_share, last_share >= 0 with a sum <= 1, "
                f"got {self.first_share} and {self.last_share}"
            )

    def weights(
        self, touchpoints: Sequence[Touch], conversion_time: datetime
    ) -> dict[str, Fraction]:
        tps = ordered(touchpoints)
        if len(tps) <= 1:
            return {tp.id: Fraction(1) for tp in tps}
        ends = self.first_share + self.last_share
        if len(tps) == 2:
            first = self.first_share / ends if ends else Fraction(1, 2)
            return {tps[0].id: first, tps[1].id: 1 - first}
        middle = (1 - ends) / (len(tps) - 2)
        result = {tp.id: middle for tp in tps}
        result[tps[0].id] = self.first_share
        result[tps[-1].id] = self.last_share
        return result


class DataDriven:
    """Markov removal-effect attribution.

    A journey's credit is split across its channels in proportion to their removal
    effects, then equally across each channel's touchpoints. Falls back to
    :class:`Linear` when a channel present was not fitted or all their effects are 0.
    """

    name: ClassVar[str] = "data_driven"
    __slots__ = ("_effects",)

    def __init__(self, markov: MarkovModel) -> None:
        self._effects = markov.removal_effects()

    def weights(
        self, touchpoints: Sequence[Touch], conversion_time: datetime
    ) -> dict[str, Fraction]:
        tps = ordered(touchpoints)
        by_channel: dict[str, list[str]] = {}
        for tp in tps:
            by_channel.setdefault(str(tp.channel), []).append(tp.id)
        effects = [self._effects.get(channel) for channel in by_channel]
        known = [effect for effect in effects if effect is not None]
        if not tps or len(known) < len(effects) or max(known) <= 0:
            return Linear().weights(tps, conversion_time)
        result: dict[str, Fraction] = {}
        for ids, share in zip(by_channel.values(), _exact_shares(known), strict=True):
            result.update({tp_id: share / len(ids) for tp_id in ids})
        return {tp.id: result[tp.id] for tp in tps}


def build_model(
    name: str,
    *,
    half_life_days: float = 7,
    first_share: Fraction = Fraction(2, 5),
    last_share: Fraction = Fraction(2, 5),
    markov: MarkovModel | None = None,
) -> AttributionModel:
    """The model called ``name`` (one of :data:`MODEL_NAMES`), configured.

    ``data_driven`` needs ``markov``, fitted on all journeys, converting and not.
    """
    match name:
        case "first_touch":
            return FirstTouch()
        case "last_touch":
            return LastTouch()
        case "last_non_direct":
            return LastNonDirect()
        case "linear":
            return Linear()
        case "time_decay":
            return TimeDecay(half_life_days)
        case "position_based":
            return PositionBased(first_share, last_share)
        case "data_driven":
            if markov is None:
                raise ValueError("the data_driven model needs a fitted MarkovModel (markov=)")
            return DataDriven(markov)
    raise ValueError(
        f"unknown attribution model {name!r}; expected one of {', '.join(MODEL_NAMES)}"
    )


# Models that give one touchpoint all the credit (weight 1) and every other one 0: their
# credit is the whole amount, with no weights to build or split. Exact types only, so a
# subclass overriding ``weights`` takes the general path.
_SINGLE_CREDIT: tuple[type, ...] = (FirstTouch, LastTouch, LastNonDirect)
_ONE = Fraction(1)


def attribute(
    journey: Journey, model: AttributionModel, conversion_time: datetime
) -> tuple[Credit, ...]:
    """Credits of the journey's touchpoints with a non-zero weight, in time order.

    Amounts split the deal amount (``None`` counts as 0) in the deal's currency minor
    units with :func:`allocate`, so they add up to it exactly.
    """
    deal = journey.deal
    if type(model) in _SINGLE_CREDIT:
        tps = ordered(journey.touchpoints)
        if not tps:
            return ()
        assert isinstance(model, SingleTouch)
        chosen = model.chosen(tps)
        places = minor_units(deal.currency)
        amount = as_money(whole_units(deal.amount or Decimal(0), places), places)
        return (Credit(touchpoint_id=chosen.id, weight=_ONE, amount=amount),)
    weights = model.weights(journey.touchpoints, conversion_time)
    if not weights:
        return ()
    ids = [tp.id for tp in ordered(journey.touchpoints)]
    numerators, total, denominator = common_numerators(list(weights.values()))
    if set(weights) - set(ids) or total != denominator:  # sum(weights) != 1, exactly
        raise ValueError(
            f"model {model.name} returned weights that do not sum to 1 over the journey"
        )
    places = minor_units(deal.currency)
    units = whole_units(deal.amount or Decimal(0), places)
    amounts = split_units(units, list(weights), numerators, total, places)
    return tuple(
        Credit(touchpoint_id=tp_id, weight=weights[tp_id], amount=amounts[tp_id])
        for tp_id in ids
        if weights.get(tp_id)  # a zero Fraction is false
    )

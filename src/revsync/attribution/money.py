"""Exact money splitting: shares that add up to the amount to the minor unit."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

# ISO 4217 currencies whose minor unit is not the usual two decimals.
_EXPONENTS: Mapping[str, int] = {
    **dict.fromkeys(
        (
            "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW",
            "PYG", "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF",
        ),
        0,
    ),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}  # fmt: skip


def minor_units(currency: str) -> int:
    """ISO 4217 exponent of ``currency`` (case-insensitive); 2 for any code not listed."""
    return _EXPONENTS.get(currency.strip().upper(), 2)


def allocate(
    amount: Decimal, weights: Mapping[str, Fraction], minor_units: int = 2
) -> dict[str, Decimal]:
    """Split ``amount`` across ``weights`` by the largest-remainder method.

    ``amount`` is first rounded half-up to ``minor_units`` decimals; the parts, each a
    whole number of minor units, add up to exactly that. Weights need not sum to 1 (they
    are normalised) but must be non-negative with a positive total. Every key gets its
    exact share rounded down, and the units left over go one each to the largest
    remainders, ties to the smaller key. A negative amount is split as its absolute value
    and negated, so ``allocate(-a, w) == -allocate(a, w)`` part by part. Keys keep the
    order of ``weights``; an empty ``weights`` is only allowed for a zero amount.
    """
    if minor_units < 0:
        raise ValueError(f"minor_units must be >= 0, got {minor_units}")
    units = whole_units(amount, minor_units)
    if not weights:
        if units:
            raise ValueError(f"cannot allocate {amount} across no weights")
        return {}
    numerators, total, _ = common_numerators(list(weights.values()))
    return split_units(units, list(weights), numerators, total, minor_units)


def split_units(
    units: int, keys: Sequence[str], numerators: Sequence[int], total: int, minor_units: int
) -> dict[str, Decimal]:
    """:func:`allocate` of ``units`` minor units over weights given as ``numerators`` of a
    common denominator (``total`` their sum), as :func:`common_numerators` returns them."""
    if any(n < 0 for n in numerators):  # a Fraction's sign is its numerator's
        raise ValueError("weights must be non-negative")
    if total == 0:
        raise ValueError("weights must have a positive total")
    sign, units = (-1 if units < 0 else 1), abs(units)
    # Exact integer arithmetic: weight_i / sum(weights) == numerators[i] / total, so the
    # share units * weight_i / sum is (units * numerators[i]) / total: its floor and its
    # remainder (over the common denominator ``total``) order exactly as the fractions do.
    parts: list[int] = []
    remainders: list[int] = []
    for numerator in numerators:
        part, remainder = divmod(units * numerator, total)
        parts.append(part)
        remainders.append(remainder)
    leftover = units - sum(parts)
    if leftover:
        order = sorted(range(len(keys)), key=lambda i: (-remainders[i], keys[i]))
        for i in order[:leftover]:
            parts[i] += 1
    return {key: as_money(sign * n, minor_units) for key, n in zip(keys, parts, strict=True)}


def whole_units(amount: Decimal, minor_units: int) -> int:
    """``amount`` rounded half-up to ``minor_units`` decimals, as a whole number of them."""
    quantum = Decimal(1).scaleb(-minor_units)
    return int(amount.quantize(quantum, rounding=ROUND_HALF_UP).scaleb(minor_units))


def as_money(units: int, minor_units: int) -> Decimal:
    """``units`` minor units as a Decimal with ``minor_units`` decimals."""
    return Decimal(units).scaleb(-minor_units)


def common_numerators(weights: Sequence[Fraction]) -> tuple[list[int], int, int]:
    """The weights over their least common denominator ``d``: ``([w * d ...], sum * d, d)``."""
    denominator = math.lcm(*(w.denominator for w in weights))
    numerators = [w.numerator * (denominator // w.denominator) for w in weights]
    return numerators, sum(numerators), denominator

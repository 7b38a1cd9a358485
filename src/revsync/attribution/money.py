"""Exact money splitting: shares that add up to the amount to the minor unit."""

from __future__ import annotations

from collections.abc import Mapping
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
    if any(w < 0 for w in weights.values()):
        raise ValueError("weights must be non-negative")
    quantum = Decimal(1).scaleb(-minor_units)
    units = int(amount.quantize(quantum, rounding=ROUND_HALF_UP).scaleb(minor_units))
    if not weights:
        if units:
            raise ValueError(f"cannot allocate {amount} across no weights")
        return {}
    total = sum(weights.values(), Fraction(0))
    if total == 0:
        raise ValueError("weights must have a positive total")
    sign, units = (-1 if units < 0 else 1), abs(units)
    parts: dict[str, int] = {}
    remainders: dict[str, Fraction] = {}
    for key, weight in weights.items():
        share = units * weight / total
        parts[key] = share.numerator // share.denominator
        remainders[key] = share - parts[key]
    leftover = units - sum(parts.values())
    for key in sorted(remainders, key=lambda k: (-remainders[k], k))[:leftover]:
        parts[key] += 1
    return {key: Decimal(sign * n).scaleb(-minor_units) for key, n in parts.items()}

from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from revsync.attribution.money import allocate, minor_units

THIRD = Fraction(1, 3)


def test_equal_thirds_give_the_spare_cent_to_the_smallest_key() -> None:
    # 100.00 = 10000 cents; each exact share 3333 1/3 -> floors 3333 x 3 = 9999, one cent
    # left; the remainders tie at 1/3, so the smallest key "a" gets it.
    parts = allocate(Decimal("100"), {"c": THIRD, "b": THIRD, "a": THIRD})
    assert parts == {"c": Decimal("33.33"), "b": Decimal("33.33"), "a": Decimal("33.34")}
    assert list(parts) == ["c", "b", "a"]


def test_negative_amount_mirrors_the_positive_split() -> None:
    parts = allocate(Decimal("-100"), {"c": THIRD, "b": THIRD, "a": THIRD})
    assert parts == {"c": Decimal("-33.33"), "b": Decimal("-33.33"), "a": Decimal("-33.34")}


def test_largest_remainder_wins() -> None:
    # 1000 JPY (0 decimals) at 1/3 : 2/3 -> 333 1/3 and 666 2/3 -> floors 333 + 666 = 999;
    # the spare yen goes to the larger remainder 2/3 ("x" would win a tie, but it has 1/3).
    assert allocate(Decimal("1000"), {"x": THIRD, "y": 2 * THIRD}, 0) == {
        "x": Decimal("333"),
        "y": Decimal("667"),
    }


def test_three_decimal_currency_and_unnormalised_weights() -> None:
    # 1.000 KWD at 1:1:1 (sum 3) -> 333 1/3 fils each; "a" gets the spare fils.
    parts = allocate(Decimal("1"), {"a": Fraction(1), "b": Fraction(1), "c": Fraction(1)}, 3)
    assert parts == {"a": Decimal("0.334"), "b": Decimal("0.333"), "c": Decimal("0.333")}


def test_amount_is_rounded_half_up_first_and_zero_weights_get_zero() -> None:
    parts = allocate(Decimal("10.005"), {"a": Fraction(1), "z": Fraction(0)})
    assert parts == {"a": Decimal("10.01"), "z": Decimal("0.00")}
    assert str(parts["z"]) == "0.00"


def test_zero_amount_and_empty_weights() -> None:
    assert allocate(Decimal("0.001"), {}) == {}
    assert allocate(Decimal("0"), {"a": THIRD}) == {"a": Decimal("0.00")}


@pytest.mark.parametrize(
    ("amount", "weights", "units", "message"),
    [
        (Decimal("1"), {}, 2, "no weights"),
        (Decimal("1"), {"a": Fraction(-1), "b": Fraction(2)}, 2, "non-negative"),
        (Decimal("1"), {"a": Fraction(0)}, 2, "positive total"),
        (Decimal("1"), {"a": Fraction(1)}, -1, "minor_units"),
    ],
)
def test_invalid_input(
    amount: Decimal, weights: dict[str, Fraction], units: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        allocate(amount, weights, units)


@pytest.mark.parametrize(
    ("currency", "expected"),
    [("JPY", 0), ("krw", 0), (" VND ", 0), ("ISK", 0), ("CLP", 0), ("KWD", 3), ("BHD", 3),
     ("TND", 3), ("CLF", 4), ("USD", 2), ("EUR", 2), ("XYZ", 2)],
)  # fmt: skip
def test_minor_units(currency: str, expected: int) -> None:
    assert minor_units(currency) == expected


amounts = st.decimals(
    min_value=-(10**9), max_value=10**9, places=4, allow_nan=False, allow_infinity=False
)
weight_maps = st.dictionaries(
    st.text("abcdefgh", min_size=1, max_size=3),
    st.fractions(min_value=0, max_value=5, max_denominator=50),
    min_size=1,
    max_size=8,
).filter(lambda w: sum(w.values()) > 0)


@given(amounts, weight_maps, st.integers(0, 4))
def test_parts_add_up_and_stay_within_one_unit_of_the_exact_share(
    amount: Decimal, weights: dict[str, Fraction], units: int
) -> None:
    quantum = Decimal(1).scaleb(-units)
    target = amount.quantize(quantum, rounding=ROUND_HALF_UP)
    parts = allocate(amount, weights, units)
    assert list(parts) == list(weights)
    assert sum(parts.values(), Decimal(0)) == target
    total = sum(weights.values(), Fraction(0))
    for key, part in parts.items():
        assert part == part.quantize(quantum)
        assert abs(Fraction(part) - Fraction(target) * weights[key] / total) < Fraction(quantum)


@given(amounts, weight_maps, st.integers(0, 4), st.data())
def test_split_ignores_key_order_and_mirrors_sign(
    amount: Decimal, weights: dict[str, Fraction], units: int, data: st.DataObject
) -> None:
    keys = data.draw(st.permutations(list(weights)))
    parts = allocate(amount, weights, units)
    assert allocate(amount, {key: weights[key] for key in keys}, units) == parts
    assert allocate(-amount, weights, units) == {key: -part for key, part in parts.items()}

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from revsync.attribution import (
    MODEL_NAMES,
    AttributionModel,
    MarkovModel,
    PositionBased,
    TimeDecay,
    attribute,
    build_model,
    channel_path,
    minor_units,
)
from revsync.domain import Channel, Deal, DealStatus, Journey, Touchpoint

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def tp(tp_id: str, days: float, channel: Channel = Channel.PAID_SEARCH) -> Touchpoint:
    return Touchpoint(
        id=tp_id, visitor_id="v1", occurred_at=T0 + timedelta(days=days), channel=channel
    )


def deal(amount: str | None, currency: str = "USD") -> Deal:
    return Deal(
        source="crm",
        id="D1",
        status=DealStatus.WON,
        amount=None if amount is None else Decimal(amount),
        currency=currency,
        close_at=T0 + timedelta(days=21),
        modified_at=T0 + timedelta(days=21),
    )


# A journey one week apart, converting on day 21 (the day of the direct visit "d").
JOURNEY = (
    tp("a", 0, Channel.PAID_SEARCH),
    tp("b", 7, Channel.EMAIL),
    tp("c", 14, Channel.ORGANIC_SEARCH),
    tp("d", 21, Channel.DIRECT),
)
CONVERTED = T0 + timedelta(days=21)

# The three-channel worked example of test_markov.py with channels A=Paid Search,
# B=Email, C=Display: removal effects A 2/3, B 2/3, C 1/6.
PS, EM, DI = Channel.PAID_SEARCH.value, Channel.EMAIL.value, Channel.DISPLAY.value
MARKOV = MarkovModel.fit(
    [((PS, DI, PS), True), ((PS, EM, EM), True), ((EM,), True), ((PS, DI), False)]
)


def weights_of(
    name: str,
    touchpoints: Sequence[Touchpoint],
    half_life_days: float = 7,
    shares: tuple[Fraction, Fraction] = (Fraction(2, 5), Fraction(2, 5)),
) -> list[Fraction]:
    """The weights of ``touchpoints`` under model ``name``, in time order."""
    model = build_model(
        name,
        half_life_days=half_life_days,
        first_share=shares[0],
        last_share=shares[1],
        markov=MARKOV,
    )
    return list(model.weights(touchpoints, CONVERTED).values())


def test_first_last_and_last_non_direct() -> None:
    assert weights_of("first_touch", JOURNEY) == [1, 0, 0, 0]
    assert weights_of("last_touch", JOURNEY) == [0, 0, 0, 1]
    # "d" is Direct, so the last non-direct touch is "c".
    assert weights_of("last_non_direct", JOURNEY) == [0, 0, 1, 0]
    all_direct = [tp("x", 1, Channel.DIRECT), tp("y", 2, Channel.UNASSIGNED)]
    assert weights_of("last_non_direct", all_direct) == [0, 1]


def test_linear() -> None:
    assert weights_of("linear", JOURNEY) == [Fraction(1, 4)] * 4


def test_time_decay() -> None:
    # Half-life 7 days, ages 21, 14, 7, 0 -> 1/8, 1/4, 1/2, 1 (sum 15/8) -> 1, 2, 4, 8 / 15.
    assert weights_of("time_decay", JOURNEY) == [Fraction(n, 15) for n in (1, 2, 4, 8)]
    # Half-life 3.5 days: 1/64, 1/16, 1/4, 1 (sum 85/64) -> 1, 4, 16, 64 / 85.
    half = weights_of("time_decay", JOURNEY, half_life_days=3.5)
    assert half == [Fraction(n, 85) for n in (1, 4, 16, 64)]


def test_time_decay_counts_touches_after_conversion_as_age_zero() -> None:
    # "late" is after the conversion: age 0, like "now"; "old" is one half-life older.
    touches = [tp("late", 22), tp("now", 21), tp("old", 14)]
    assert TimeDecay().weights(touches, CONVERTED) == {
        "old": Fraction(1, 5),
        "now": Fraction(2, 5),
        "late": Fraction(2, 5),
    }


def test_time_decay_weights_are_exact_for_irrational_ratios() -> None:
    # Ages 1 and 0 days with a 7-day half-life: ratio 2 ** (-1/7), irrational; still exact.
    weights = TimeDecay().weights([tp("a", 20), tp("b", 21)], CONVERTED)
    assert sum(weights.values()) == 1
    assert float(weights["a"] / weights["b"]) == pytest.approx(2 ** (-1 / 7), rel=1e-15)


def test_position_based() -> None:
    # 40/20/40: first 2/5, last 2/5, the middle 1/5 split over b and c -> 1/10 each.
    assert weights_of("position_based", JOURNEY) == [
        Fraction(2, 5),
        Fraction(1, 10),
        Fraction(1, 10),
        Fraction(2, 5),
    ]
    # 30/60: middle 1/10 over two -> 1/20 each.
    custom = (Fraction(3, 10), Fraction(3, 5))
    assert weights_of("position_based", JOURNEY, shares=custom) == [
        Fraction(3, 10),
        Fraction(1, 20),
        Fraction(1, 20),
        Fraction(3, 5),
    ]
    pair = JOURNEY[:2]
    # Two touches: 40:40 -> 1/2 : 1/2; 30:60 -> 1/3 : 2/3; 0:0 -> 1/2 : 1/2.
    assert weights_of("position_based", pair) == [Fraction(1, 2)] * 2
    assert weights_of("position_based", pair, shares=custom) == [Fraction(1, 3), Fraction(2, 3)]
    zero = (Fraction(0), Fraction(0))
    assert weights_of("position_based", pair, shares=zero) == [Fraction(1, 2)] * 2
    assert weights_of("position_based", JOURNEY[:1]) == [1]


def test_data_driven() -> None:
    # Channels present: Paid Search (a, c), Display (b), Email (d); removal effects
    # 2/3, 1/6, 2/3 -> shares 4/9, 1/9, 4/9; Paid Search's 4/9 over two touches -> 2/9 each.
    touches = [
        tp("a", 0, Channel.PAID_SEARCH),
        tp("b", 1, Channel.DISPLAY),
        tp("c", 2, Channel.PAID_SEARCH),
        tp("d", 3, Channel.EMAIL),
    ]
    assert weights_of("data_driven", touches) == [Fraction(n, 9) for n in (2, 1, 2, 4)]


def test_data_driven_falls_back_to_linear() -> None:
    unknown = [tp("a", 0, Channel.PAID_SEARCH), tp("b", 1, Channel.SMS)]
    assert weights_of("data_driven", unknown) == [Fraction(1, 2)] * 2
    never_won = MarkovModel.fit([((PS, EM), False)])
    model = build_model("data_driven", markov=never_won)
    known = [tp("a", 0, Channel.PAID_SEARCH), tp("b", 1, Channel.EMAIL), tp("c", 2)]
    assert list(model.weights(known, CONVERTED).values()) == [Fraction(1, 3)] * 3
    unfitted = build_model("data_driven", markov=MarkovModel())
    assert list(unfitted.weights(known, CONVERTED).values()) == [Fraction(1, 3)] * 3


def test_channel_path_feeds_the_markov_fit() -> None:
    shuffled = [JOURNEY[2], JOURNEY[0], JOURNEY[3], JOURNEY[1]]
    assert channel_path(shuffled) == ("Paid Search", "Email", "Organic Search", "Direct")
    model = MarkovModel.fit([(channel_path(JOURNEY), True), (channel_path(JOURNEY[:1]), False)])
    assert set(model.removal_effects()) == {t.channel.value for t in JOURNEY}


def test_simultaneous_touches_are_ordered_by_id() -> None:
    tied = [tp("m", 5), tp("b", 5), tp("x", 5)]
    assert build_model("first_touch").weights(tied, CONVERTED)["b"] == 1
    assert build_model("last_touch").weights(tied, CONVERTED)["x"] == 1
    assert list(build_model("linear").weights(tied, CONVERTED)) == ["b", "m", "x"]


def test_build_model() -> None:
    for name in MODEL_NAMES:
        assert build_model(name, markov=MARKOV).name == name
        assert build_model(name, markov=MARKOV).weights([], CONVERTED) == {}
    with pytest.raises(ValueError, match=r"unknown attribution model 'u_shaped'.*first_touch"):
        build_model("u_shaped")
    with pytest.raises(ValueError, match="needs a fitted MarkovModel"):
        build_model("data_driven")
    with pytest.raises(ValueError, match="half_life_days"):
        build_model("time_decay", half_life_days=0)
    with pytest.raises(ValueError, match="first_share"):
        PositionBased(Fraction(3, 5), Fraction(3, 5))


def test_duplicate_touchpoint_ids_are_rejected() -> None:
    with pytest.raises(ValueError, match="unique"):
        build_model("linear").weights([tp("a", 0), tp("a", 1)], CONVERTED)


def test_attribute_splits_the_deal_amount_in_time_order() -> None:
    shuffled = (JOURNEY[3], JOURNEY[1], JOURNEY[0], JOURNEY[2])
    credits = attribute(Journey(deal("1000"), shuffled), build_model("linear"), CONVERTED)
    # 100000 cents / 4 = 25000 each, exact.
    assert [(c.touchpoint_id, c.amount) for c in credits] == [
        (tp_id, Decimal("250.00")) for tp_id in "abcd"
    ]
    # Three ways: 333.33 x 3 + 1 cent to the smallest id of the tied remainders ("a").
    credits = attribute(Journey(deal("1000"), JOURNEY[:3]), build_model("linear"), CONVERTED)
    assert [c.amount for c in credits] == [Decimal("333.34"), Decimal("333.33"), Decimal("333.33")]


def test_attribute_uses_currency_minor_units() -> None:
    # 1000 JPY at 1/15, 2/15, 4/15, 8/15 -> 66 2/3, 133 1/3, 266 2/3, 533 1/3 -> floors sum
    # 998; the two spare yen go to the 2/3 remainders (a, c).
    credits = attribute(Journey(deal("1000", "JPY"), JOURNEY), TimeDecay(), CONVERTED)
    assert [c.amount for c in credits] == [Decimal(n) for n in ("67", "133", "267", "533")]
    assert [c.weight for c in credits] == [Fraction(n, 15) for n in (1, 2, 4, 8)]


def test_attribute_drops_uncredited_touches_and_treats_no_amount_as_zero() -> None:
    credits = attribute(Journey(deal(None), JOURNEY), build_model("last_non_direct"), CONVERTED)
    assert [(c.touchpoint_id, c.weight, c.amount) for c in credits] == [
        ("c", Fraction(1), Decimal("0.00"))
    ]
    assert attribute(Journey(deal("5"), ()), build_model("linear"), CONVERTED) == ()


class _Lopsided:
    """A model that breaks the contract: its weights sum to 2."""

    name = "lopsided"

    def weights(
        self, touchpoints: Sequence[Touchpoint], conversion_time: datetime
    ) -> dict[str, Fraction]:
        return {t.id: Fraction(1) for t in touchpoints[:2]}


def test_attribute_rejects_weights_that_do_not_sum_to_one() -> None:
    with pytest.raises(ValueError, match="lopsided"):
        attribute(Journey(deal("10"), JOURNEY), _Lopsided(), CONVERTED)


# Properties over random journeys: few ids and coarse times, so ties are frequent.
touchpoint_lists = st.lists(
    st.builds(
        tp,
        st.text("abcdefghij", min_size=1, max_size=2),
        st.integers(0, 12).map(lambda half_days: half_days / 2),
        st.sampled_from(Channel),
    ),
    max_size=12,
    unique_by=lambda t: t.id,
)
# Every channel pair as a path, converting for a third of them: data_driven over BROAD
# rarely falls back to linear, over MARKOV it mostly does.
BROAD = MarkovModel.fit(
    ((a.value, b.value), (i + 2 * j) % 3 == 0)
    for i, a in enumerate(Channel)
    for j, b in enumerate(Channel)
)
models = st.one_of(
    st.sampled_from(MODEL_NAMES).map(lambda name: build_model(name, markov=MARKOV)),
    st.just(build_model("data_driven", markov=BROAD)),
)


@given(models, touchpoint_lists, st.data())
def test_weights_are_exact_total_and_ignore_input_order(
    model: AttributionModel, touchpoints: list[Touchpoint], data: st.DataObject
) -> None:
    weights = model.weights(touchpoints, CONVERTED)
    assert set(weights) == {t.id for t in touchpoints}
    assert all(isinstance(w, Fraction) and w >= 0 for w in weights.values())
    assert sum(weights.values()) == (1 if touchpoints else 0)
    shuffled = data.draw(st.permutations(touchpoints))
    assert model.weights(shuffled, CONVERTED) == weights
    assert list(model.weights(shuffled, CONVERTED)) == list(weights)


@given(models, touchpoint_lists.filter(lambda tps: len(tps) == 1))
def test_a_single_touch_gets_everything(
    model: AttributionModel, touchpoints: list[Touchpoint]
) -> None:
    assert model.weights(touchpoints, CONVERTED) == {touchpoints[0].id: Fraction(1)}


amounts = st.decimals(
    min_value=-(10**7), max_value=10**7, places=3, allow_nan=False, allow_infinity=False
)


@given(models, touchpoint_lists.filter(bool), amounts, st.sampled_from(["USD", "JPY", "KWD"]))
def test_credits_add_up_to_the_deal_amount(
    model: AttributionModel, touchpoints: list[Touchpoint], amount: Decimal, currency: str
) -> None:
    credits = attribute(Journey(deal(str(amount), currency), tuple(touchpoints)), model, CONVERTED)
    quantum = Decimal(1).scaleb(-minor_units(currency))
    assert sum(c.amount for c in credits) == amount.quantize(quantum, rounding=ROUND_HALF_UP)
    assert sum(c.weight for c in credits) == 1
    by_id = {t.id: t for t in touchpoints}
    keys = [(by_id[c.touchpoint_id].occurred_at, c.touchpoint_id) for c in credits]
    assert keys == sorted(keys)

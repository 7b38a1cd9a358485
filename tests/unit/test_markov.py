from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from revsync.attribution.markov import MarkovModel

# Worked example 1 (a loop B -> A, so absorption needs a linear solve, not path products).
#   paths: A,B -> conv | A -> null | B -> conv | B,A -> null
#   counts: S->A 2, S->B 2 | A->B 1, A->null 2 | B->conv 2, B->A 1
#   transition matrix (rows from, columns to):
#            A     B    conv  null
#     S     1/2   1/2    0     0
#     A      0    1/3    0    2/3
#     B     1/3    0    2/3    0
#   x_A = 1/3 x_B,  x_B = 2/3 + 1/3 x_A  =>  x_B = 2/3 + 1/9 x_B  =>  x_B = 3/4, x_A = 1/4
#   P = 1/2 * 1/4 + 1/2 * 3/4 = 1/2
#   without A: x_B = 2/3 (B->A goes to null), P = 1/2 * 2/3 = 1/3, effect 1 - (1/3)/(1/2) = 1/3
#   without B: x_A = 0, P = 0, effect 1
LOOP = [(("A", "B"), True), (("A",), False), (("B",), True), (("B", "A"), False)]

# Worked example 2 (three channels, repeats collapsed: A,B,B is fitted as A,B).
#   paths: A,C,A -> conv | A,B,B -> conv | B -> conv | A,C -> null
#   counts: S->A 3, S->B 1 | A->C 2, A->conv 1, A->B 1 | C->A 1, C->null 1 | B->conv 2
#            A     B     C    conv  null
#     S     3/4   1/4    0     0     0
#     A      0    1/4   1/2   1/4    0
#     B      0     0     0     1     0
#     C     1/2    0     0     0    1/2
#   x_B = 1, x_C = 1/2 x_A, x_A = 1/4 + 1/4 + 1/4 x_A => x_A = 2/3; P = 3/4 * 2/3 + 1/4 = 3/4
#   without A: P = 1/4 * 1 = 1/4                       effect 1 - (1/4)/(3/4) = 2/3
#   without B: x_A = 1/4 + 1/4 x_A => 1/3, P = 1/4     effect 2/3
#   without C: x_A = 1/4 + 1/4 = 1/2, P = 3/8 + 1/4 = 5/8  effect 1 - (5/8)/(3/4) = 1/6
THREE = [
    (("A", "C", "A"), True),
    (("A", "B", "B"), True),
    (("B",), True),
    (("A", "C"), False),
]


def test_loop_example_matches_the_hand_computation() -> None:
    model = MarkovModel.fit(LOOP)
    assert model.channels == ("A", "B")
    assert model.conversion_probability() == Fraction(1, 2)
    assert model.conversion_probability(without="A") == Fraction(1, 3)
    assert model.conversion_probability(without="B") == 0
    assert model.removal_effects() == {"A": 1 / 3, "B": 1.0}


def test_three_channel_example_matches_the_hand_computation() -> None:
    model = MarkovModel.fit(THREE)
    assert model.conversion_probability() == Fraction(3, 4)
    assert [model.conversion_probability(c) for c in "ABC"] == [
        Fraction(1, 4),
        Fraction(1, 4),
        Fraction(5, 8),
    ]
    assert model.removal_effects() == {"A": 2 / 3, "B": 2 / 3, "C": 1 / 6}


def test_consecutive_repeats_are_collapsed() -> None:
    repeated = MarkovModel.fit([(("A", "A", "B", "B", "A"), True), (("B",), False)])
    collapsed = MarkovModel.fit([(("A", "B", "A"), True), (("B",), False)])
    assert repeated.conversion_probability() == collapsed.conversion_probability()
    assert repeated.removal_effects() == collapsed.removal_effects()


def test_empty_path_is_a_direct_step_from_start() -> None:
    # S->conv 1/3, S->A 2/3, A->conv 1/2: P = 1/3 + 1/3 = 2/3; without A P = 1/3, effect 1/2.
    model = MarkovModel.fit([((), True), (("A",), True), (("A",), False)])
    assert model.conversion_probability() == Fraction(2, 3)
    assert model.removal_effects() == {"A": 0.5}


def test_unfitted_and_never_converting_models() -> None:
    empty = MarkovModel()
    assert empty.channels == ()
    assert empty.conversion_probability() == 0
    assert empty.removal_effects() == {}
    lost = MarkovModel.fit([(("A", "B"), False), (("B",), False)])
    assert lost.removal_effects() == {"A": 0.0, "B": 0.0}


def test_channel_names_never_clash_with_internal_states() -> None:
    model = MarkovModel.fit([(("start", "conversion"), True), (("null",), False)])
    assert model.channels == ("conversion", "null", "start")
    assert model.conversion_probability() == Fraction(1, 2)
    assert model.removal_effects() == {"conversion": 1.0, "null": 0.0, "start": 1.0}


def test_removing_an_unknown_channel_is_an_error() -> None:
    with pytest.raises(ValueError, match="'Z' was not fitted"):
        MarkovModel.fit(LOOP).conversion_probability(without="Z")


paths = st.lists(
    st.tuples(st.lists(st.sampled_from("ABCDE"), max_size=6), st.booleans()),
    max_size=25,
)


@given(paths)
def test_removal_never_raises_the_conversion_probability(
    sample: list[tuple[list[str], bool]],
) -> None:
    model = MarkovModel.fit(sample)
    base = model.conversion_probability()
    assert 0 <= base <= 1
    assert set(model.channels) == {c for channels, _ in sample for c in channels}
    for channel in model.channels:
        assert 0 <= model.conversion_probability(channel) <= base
    assert all(0.0 <= effect <= 1.0 for effect in model.removal_effects().values())

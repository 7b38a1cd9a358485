"""First-order Markov-chain attribution over channel paths (removal effects).

States are a start state, one state per channel, and the absorbing states conversion
and null. Transition probabilities are the observed transition frequencies. The
conversion probability from the start state is solved exactly over Fractions by
Gaussian elimination; removing a channel turns every transition into it into a
transition to null.

Consecutive repeats of a channel are collapsed (``A, A, B`` is fitted as ``A, B``). In a
first-order chain this changes no absorption probability: a self-loop only delays the
next distinct step, whose probabilities are the remaining transitions renormalised,
which is exactly what the collapsed counts give.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Sequence
from enum import Enum
from fractions import Fraction


class _State(Enum):
    START = "start"
    CONVERSION = "conversion"
    NULL = "null"


_Node = str | _State


class MarkovModel:
    """A fitted chain: transition counts between start, channels, conversion and null.

    ``MarkovModel()`` is the unfitted model (no channels); build one with :meth:`fit`.
    """

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[_Node, Counter[_Node]] = {}

    @classmethod
    def fit(cls, paths: Iterable[tuple[Sequence[str], bool]]) -> MarkovModel:
        """Fit on ``(channels in time order, converted)`` for every journey, won or not.

        An empty channel sequence counts as a direct start -> conversion/null step.
        """
        model = cls()
        for channels, converted in paths:
            nodes: list[_Node] = [_State.START]
            for channel in channels:
                if channel != nodes[-1]:
                    nodes.append(channel)
            nodes.append(_State.CONVERSION if converted else _State.NULL)
            for src, dst in itertools.pairwise(nodes):
                model._counts.setdefault(src, Counter())[dst] += 1
        return model

    @property
    def channels(self) -> tuple[str, ...]:
        """The channels seen in fitting, sorted."""
        return tuple(sorted(node for node in self._counts if isinstance(node, str)))

    def conversion_probability(self, without: str | None = None) -> Fraction:
        """Exact probability of reaching conversion from start, optionally with the
        channel ``without`` removed (its inbound transitions go to null)."""
        if without is not None and without not in self._counts:
            raise ValueError(f"channel {without!r} was not fitted")
        states: list[_Node] = [_State.START, *(c for c in self.channels if c != without)]
        index = {state: i for i, state in enumerate(states)}
        size = len(states)
        # Rows of [I - Q | b]: x_s - sum_t P(s->t) x_t = P(s->conversion).
        rows = [[Fraction(int(i == j)) for j in range(size + 1)] for i in range(size)]
        for i, state in enumerate(states):
            out = self._counts.get(state, Counter())
            total = sum(out.values())
            for dst, count in out.items():
                if dst is _State.CONVERSION:
                    rows[i][size] += Fraction(count, total)
                elif dst in index:
                    rows[i][index[dst]] -= Fraction(count, total)
        return _solve(rows)[0]

    def removal_effects(self) -> dict[str, float]:
        """Removal effect per channel: ``1 - P(conversion without it) / P(conversion)``.

        All zero when nothing converted; empty for the unfitted model.
        """
        base = self.conversion_probability()
        if base == 0:
            return dict.fromkeys(self.channels, 0.0)
        return {c: float(1 - self.conversion_probability(c) / base) for c in self.channels}


def _solve(rows: list[list[Fraction]]) -> list[Fraction]:
    """Solve the augmented system ``rows`` by Gauss-Jordan elimination.

    The system here is never singular: every fitted state reaches an absorbing state.
    """
    size = len(rows)
    for col in range(size):
        pivot = next(r for r in range(col, size) if rows[r][col] != 0)
        rows[col], rows[pivot] = rows[pivot], rows[col]
        lead = rows[col][col]
        rows[col] = [value / lead for value in rows[col]]
        for r in range(size):
            factor = rows[r][col]
            if r != col and factor != 0:
                rows[r] = [a - factor * b for a, b in zip(rows[r], rows[col], strict=True)]
    return [row[size] for row in rows]

"""The fault bench's seeded subset: syncs against GA4 and Meta that fail after processing,
time out after processing or refuse with 429 lose nothing and never double GA4."""

from __future__ import annotations

from bench.faults import KINDS, main


def test_twenty_seeded_fault_trials_lose_nothing_and_double_nothing_at_ga4() -> None:
    rows = main(["--trials", "20", "--seed", "3"], out=lambda _line: None)
    assert {row["kind"] for row in rows} == set(KINDS)
    for row in rows:
        assert row["trials"] == 5 and row["expected"] > 0, row
        assert row["lost"] == 0 and row["doubled_ga4"] == 0 and row["stuck"] == 0, row

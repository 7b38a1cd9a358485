"""The fault bench's seeded subset: answers that fail, time out or reset after GA4, Meta or
Google processed them, 429 storms, SIGKILLed ``revsync`` processes, a PostgreSQL restart
under a running sync and three workers on one store, on SQLite and PostgreSQL: nothing
lost, nothing doubled at GA4 or Google, nothing stuck, the workers share the work."""

from __future__ import annotations

from bench.faults import KINDS, main


def test_twenty_one_seeded_fault_trials_lose_nothing_and_double_nothing() -> None:
    rows = main(["--trials", "21", "--seed", "3", "--process-visitors", "800"],
                out=lambda _line: None)  # fmt: skip
    assert {row["kind"] for row in rows} == set(KINDS)
    assert {row["store"] for row in rows} == {"sqlite", "postgresql"}
    assert sum(row["trials"] for row in rows) == 21
    for row in rows:
        assert row["expected"] > 0 and row["received"] == row["expected"], row
        assert row["lost"] == 0 and row["stuck"] == 0, row
        assert row["doubled_ga4"] == 0 and row["doubled_google"] == 0, row
        assert row["failed_restarts"] == 0, row
    assert sum(row["kills"] for row in rows if row["kind"] == "sigkill") > 0
    workers = next(row for row in rows if row["kind"] == "3-workers")
    assert workers["senders"] >= 2 * workers["trials"]  # the destinations were shared out

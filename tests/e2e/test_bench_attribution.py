"""The attribution benchmark runs end to end at a small scale on both backends, and its
engine and its SQL floor agree on the data: the same deals, the same credited total on
SQLite and PostgreSQL, and every journey touchpoint the floor finds is in a journey."""

from __future__ import annotations

import random
from pathlib import Path

from bench import attribution


def test_the_benchmark_runs_and_both_backends_agree(tmp_path: Path) -> None:
    deals = 300
    seed = random.randrange(10_000, 100_000)  # its own PostgreSQL database per run
    results = {}
    # One process on SQLite, three on PostgreSQL: the totals must agree all the same.
    for backend, workers in (("sqlite", 1), ("postgresql", 3)):
        args = ["--backend", backend, "--deals", str(deals), "--seed", str(seed),
                "--dir", str(tmp_path), "--rows-floor", "--workers", str(workers),
                "--json", str(tmp_path / f"{backend}.json")]  # fmt: skip
        results[backend] = attribution.main(args)
    sqlite, postgresql = results["sqlite"], results["postgresql"]
    assert (sqlite.workers, postgresql.workers) == (1, 3)
    for result in (sqlite, postgresql):
        assert result.won_deals == deals
        assert result.floor_touchpoints > 0
        # The engine adds click-ID links and CRM click touchpoints to what the floor reads.
        assert result.journey_touchpoints >= result.floor_touchpoints
        assert result.ratio > 0 and result.rows_floor_seconds is not None
        assert (tmp_path / f"{result.backend}.json").exists()
    assert sqlite.credited == postgresql.credited != "0"
    assert sqlite.journeys_with_touchpoints == postgresql.journeys_with_touchpoints
    assert sqlite.journey_touchpoints == postgresql.journey_touchpoints
    assert not list(tmp_path.glob("*.db"))  # removed without --keep

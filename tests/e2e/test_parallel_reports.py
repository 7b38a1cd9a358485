"""Won deals split into key ranges, and ``report models`` across processes, on SQLite and
PostgreSQL: every deal once, the same figures whatever the number of processes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Engine

from revsync.collect.importer import import_identities, import_touchpoints
from revsync.config.loader import load_config
from revsync.config.mapping import RevsyncConfig
from revsync.config.reports import ReportsConfig
from revsync.config.settings import Settings
from revsync.demo import DEMO_CONFIG, generate
from revsync.reports.models import as_dict, models_report
from revsync.store.deals import won_deal_pages, won_deal_ranges
from revsync.sync.factory import build_destinations, build_sources
from revsync.sync.job import SyncJob

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _demo_store(engine: Engine, tmp_path: Path) -> RevsyncConfig:
    """The demo's data synced into ``engine``; its mapping (reports in USD)."""
    files = generate(tmp_path, visitors=800, seed=5, now=NOW)
    (tmp_path / "revsync.yaml").write_text(DEMO_CONFIG)
    config = load_config(tmp_path / "revsync.yaml")
    import_touchpoints(engine, files.touchpoints)
    import_identities(engine, files.leads, "US")
    settings = Settings()
    SyncJob(engine, config, build_sources(config, settings),
            build_destinations(config, settings, lambda: NOW), clock=lambda: NOW).run()  # fmt: skip
    return config


def test_ranges_cover_every_won_deal_once_and_reports_agree(engine: Engine, tmp_path: Path) -> None:
    config = _demo_store(engine, tmp_path)

    with engine.connect() as conn:
        every = [(d.source, d.id) for page in won_deal_pages(conn, 7) for d in page]
        assert len(every) > 20
        for parts in (1, 2, 3, 5, len(every), len(every) + 4):
            ranges = won_deal_ranges(conn, parts)
            assert len(ranges) == min(parts, len(every))
            assert len(won_deal_ranges(conn, parts, at_least=10)) == min(parts, len(every) // 10)
            split = [(d.source, d.id) for bounds in ranges
                     for page in won_deal_pages(conn, 7, *bounds) for d in page]  # fmt: skip
            assert split == every, parts

    one = models_report(engine, config, NOW, workers=1)
    three = models_report(engine, config, NOW, workers=3, min_deals=1)
    assert one.matched == three.matched > 0 and one.data_driven_fitted
    assert {k: dict(v) for k, v in one.revenue.items()} == {
        k: dict(v) for k, v in three.revenue.items()
    }


def test_models_in_the_reporting_currency(engine: Engine, tmp_path: Path) -> None:
    """Each model's revenue per channel in USD is the per-currency revenue at the mapping's
    rates (EUR 1.08, GBP 1.27), also across processes; without a GBP rate, GBP stays apart
    and is named."""
    config = _demo_store(engine, tmp_path)
    reports = config.reports
    apart = models_report(engine, _with(config, reports.model_copy(update={"currency": None})), NOW)
    assert {cur for _, cur in apart.revenue} == {"EUR", "GBP", "USD"}
    expected: dict[str, dict[str, Decimal]] = {}
    for (channel, cur), by_model in apart.revenue.items():
        for model, value in by_model.items():
            got = expected.setdefault(channel, {})
            got[model] = got.get(model, Decimal(0)) + value * (reports.rates.get(cur) or 1)
    for workers in (1, 3):
        usd = models_report(engine, config, NOW, workers=workers, min_deals=1)
        assert (usd.currency, usd.unconverted) == ("USD", ())
        assert {cur for _, cur in usd.revenue} == {"USD"}
        assert {ch: dict(v) for (ch, _), v in usd.revenue.items()} == expected
    no_gbp = _with(config, reports.model_copy(update={"rates": {"EUR": Decimal("1.08")}}))
    mixed = as_dict(models_report(engine, no_gbp, NOW))
    assert (mixed["currency"], mixed["unconverted"]) == ("USD", ["GBP"])
    assert {row["currency"] for row in mixed["rows"]} == {"USD", "GBP"}
    gbp = {r["channel"]: r["linear"] for r in mixed["rows"] if r["currency"] == "GBP"}
    assert gbp == {ch: f"{v['linear']:.2f}" for (ch, cur), v in apart.revenue.items()
                   if cur == "GBP"}  # fmt: skip


def _with(config: RevsyncConfig, reports: ReportsConfig) -> RevsyncConfig:
    return config.model_copy(update={"reports": reports})


def test_an_in_memory_store_stays_in_this_process() -> None:
    from sqlalchemy import create_engine, insert

    from revsync.reports.parallel import map_won_deals
    from revsync.store.schema import deals, metadata

    memory = create_engine("sqlite://")
    metadata.create_all(memory)
    with memory.begin() as conn:
        conn.execute(insert(deals), [
            {"source": "crm", "id": f"D{n}", "status": "won", "amount": 10, "currency": "USD",
             "close_at": NOW, "modified_at": NOW, "click_ids": {}, "fields": {},
             "synced_at": NOW}
            for n in range(6)
        ])  # fmt: skip
    # One range, read here: another process would open an empty store of its own.
    assert map_won_deals(memory, _count_deals, workers=4, page_size=2, min_deals=1) == [6]


def _count_deals(_conn: object, pages: Iterator[list[object]]) -> int:
    return sum(len(page) for page in pages)

"""Revenue by channel under every attribution model, side by side.

With a reporting currency (``reports.currency``) each credit is converted at the rate of
its deal's close date, as in the other reports; a credit without a rate stays in its own
currency and the report names it (``unconverted``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from functools import partial
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine

from revsync.attribution import (
    MODEL_NAMES,
    AttributionModel,
    MarkovModel,
    attribute,
    build_model,
)
from revsync.attribution.money import minor_units
from revsync.config.mapping import RevsyncConfig
from revsync.domain import Deal
from revsync.matching.paths import visitor_paths
from revsync.matching.resolve import resolve_journeys
from revsync.reports.money import Converter
from revsync.reports.parallel import MIN_DEALS_PER_PROCESS, map_won_deals

# {(channel, currency): {model: revenue}}
ModelReport = dict[tuple[str, str], dict[str, Decimal]]


class ModelsReport(NamedTuple):
    """Revenue by (channel, currency) per model, the deals with a journey, and whether the
    data-driven model had converting paths to fit on (without, it credits like linear);
    the reporting currency, if any, and the currencies left unconverted."""

    revenue: ModelReport
    matched: int
    data_driven_fitted: bool
    currency: str | None = None
    unconverted: tuple[str, ...] = ()


def models_report(
    engine: Engine,
    config: RevsyncConfig,
    now: datetime | None = None,
    workers: int = 1,
    min_deals: int = MIN_DEALS_PER_PROCESS,
) -> ModelsReport:
    """Revenue by (channel, currency) for each model over every won deal in the store,
    streamed a page at a time, in up to ``workers`` processes over ranges of at least
    ``min_deals`` deals."""
    now = now or datetime.now(UTC)
    attribution = config.attribution
    with engine.connect() as conn:
        markov = MarkovModel.fit(
            visitor_paths(conn, now - timedelta(days=config.matching.lookback_days))
        )
        convert = Converter.load(conn, config.reports)
    fitted = max(markov.removal_effects().values(), default=0.0) > 0
    models = [
        build_model(
            name,
            half_life_days=attribution.half_life_days,
            first_share=Fraction(str(attribution.first_share)),
            last_share=Fraction(str(attribution.last_share)),
            markov=markov,
        )
        for name in MODEL_NAMES
    ]
    work = partial(
        _revenue, models=models, lookback_days=config.matching.lookback_days,
        keys=tuple(config.matching.keys), convert=convert,
    )  # fmt: skip
    report: ModelReport = defaultdict(lambda: defaultdict(Decimal))
    matched = 0
    for part, deals in map_won_deals(engine, work, workers, min_deals=min_deals):
        matched += deals
        for key, by_model in part.items():
            for name, amount in by_model.items():
                report[key][name] += amount
    if convert is None:
        return ModelsReport(report, matched, fitted)
    left = tuple(sorted({cur for _, cur in report} - {convert.currency}))
    return ModelsReport(report, matched, fitted, convert.currency, left)


def as_dict(report: ModelsReport) -> dict[str, Any]:
    """JSON-ready: a row per (channel, currency), each model's revenue as a string; by
    currency, then by the channel's revenue over the models."""
    rows = sorted(report.revenue.items(), key=lambda item: (item[0][1], -sum(item[1].values())))
    return {
        "deals": report.matched,
        "data_driven_fitted": report.data_driven_fitted,
        "currency": report.currency,
        "unconverted": list(report.unconverted),
        "rows": [
            {"channel": ch, "currency": cur,
             **{m: f"{v.get(m, Decimal(0)):.{minor_units(cur)}f}" for m in MODEL_NAMES}}
            for (ch, cur), v in rows
        ],
    }  # fmt: skip


def _revenue(
    conn: Connection,
    pages: Iterator[list[Deal]],
    models: Sequence[AttributionModel],
    lookback_days: int,
    keys: Sequence[str],
    convert: Converter | None = None,
) -> tuple[dict[tuple[str, str], dict[str, Decimal]], int]:
    """Revenue per (channel, currency) and model over ``pages``, and the deals with a
    journey; in the reporting currency where ``convert`` has a rate."""
    report: dict[tuple[str, str], dict[str, Decimal]] = {}
    matched = 0
    for page in pages:
        for journey in resolve_journeys(conn, page, lookback_days, keys):
            deal, closed = journey.deal, journey.deal.close_at
            if not journey.touchpoints or closed is None:
                continue
            matched += 1
            channel = {tp.id: tp.channel for tp in journey.touchpoints}
            for model in models:
                for credit in attribute(journey, model, closed):
                    amount, cur = (
                        convert(credit.amount, deal.currency, closed.date())
                        if convert else (credit.amount, deal.currency)
                    )  # fmt: skip
                    by_model = report.setdefault((channel[credit.touchpoint_id], cur), {})
                    by_model[model.name] = by_model.get(model.name, Decimal(0)) + amount
    return report, matched

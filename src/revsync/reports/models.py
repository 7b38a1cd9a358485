"""Revenue by channel under every attribution model, side by side."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import NamedTuple

from sqlalchemy import Connection

from revsync.attribution import MODEL_NAMES, MarkovModel, attribute, build_model
from revsync.config.mapping import RevsyncConfig
from revsync.matching.paths import visitor_paths
from revsync.matching.resolve import resolve_journeys
from revsync.store.deals import won_deal_pages

# {(channel, currency): {model: revenue}}
ModelReport = dict[tuple[str, str], dict[str, Decimal]]


class ModelsReport(NamedTuple):
    """Revenue by (channel, currency) per model, the deals with a journey, and whether the
    data-driven model had converting paths to fit on (without, it credits like linear)."""

    revenue: ModelReport
    matched: int
    data_driven_fitted: bool


def models_report(
    conn: Connection, config: RevsyncConfig, now: datetime | None = None
) -> ModelsReport:
    """Revenue by (channel, currency) for each model over every won deal in the store.
    Streams deals a page at a time."""
    now = now or datetime.now(UTC)
    attribution = config.attribution
    markov = MarkovModel.fit(
        visitor_paths(conn, now - timedelta(days=config.matching.lookback_days))
    )
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
    report: ModelReport = defaultdict(lambda: defaultdict(Decimal))
    matched = 0
    for page in won_deal_pages(conn):
        journeys = resolve_journeys(conn, page, config.matching.lookback_days, config.matching.keys)
        for journey in journeys:
            if not journey.touchpoints or journey.deal.close_at is None:
                continue
            matched += 1
            channel = {tp.id: tp.channel for tp in journey.touchpoints}
            for model in models:
                for credit in attribute(journey, model, journey.deal.close_at):
                    key = (channel[credit.touchpoint_id], journey.deal.currency)
                    report[key][model.name] += credit.amount
    return ModelsReport(report, matched, fitted)

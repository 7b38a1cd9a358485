"""Why a deal's revenue went where it went: its journey, the keys that matched each
visitor, each touchpoint's credit, and the conversions planned from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from sqlalchemy import Connection, select

from revsync.attribution import attribute, build_model
from revsync.config.mapping import RevsyncConfig
from revsync.domain import Deal, Journey, detailed
from revsync.matching.resolve import resolve_journeys, with_details
from revsync.store.deals import load_deals
from revsync.store.schema import conversions, deals


@dataclass
class Explanation:
    deal: Deal
    journey: Journey | None
    credits: dict[str, dict[str, tuple[Fraction, str]]] = field(default_factory=dict)
    conversions: list[dict[str, Any]] = field(default_factory=list)


def find_sources(conn: Connection, deal_id: str) -> list[str]:
    return list(conn.execute(select(deals.c.source).where(deals.c.id == deal_id)).scalars())


def explain(
    conn: Connection, config: RevsyncConfig, source: str, deal_id: str
) -> Explanation | None:
    """The explanation of one stored deal, or ``None`` if the store does not have it."""
    found = load_deals(conn, source, [deal_id])
    if not found:
        return None
    deal = found[0]
    result = Explanation(deal=deal, journey=None)
    if deal.close_at is not None:
        (journey,) = with_details(
            conn,
            resolve_journeys(conn, [deal], config.matching.lookback_days, config.matching.keys),
        )
        result.journey = journey
        attribution = config.attribution
        names = [config.attribution.model] + [
            d.model for d in config.destinations if d.model and d.model != attribution.model
        ]
        for name in dict.fromkeys(names):
            if name == "data_driven":
                continue  # needs every journey; shown by `revsync report models`
            model = build_model(
                name,
                half_life_days=attribution.half_life_days,
                first_share=Fraction(str(attribution.first_share)),
                last_share=Fraction(str(attribution.last_share)),
            )
            result.credits[name] = {
                c.touchpoint_id: (c.weight, f"{c.amount} {deal.currency}")
                for c in attribute(journey, model, deal.close_at)
            }
    query = (
        select(
            conversions.c.destination, conversions.c.kind, conversions.c.key,
            conversions.c.touchpoint_id, conversions.c.value, conversions.c.currency,
            conversions.c.state, conversions.c.error_code, conversions.c.error_message,
            conversions.c.updated_at,
        )
        .where(conversions.c.source == source, conversions.c.deal_id == deal_id)
        .order_by(conversions.c.created_at, conversions.c.key)
    )  # fmt: skip
    result.conversions = [dict(row) for row in conn.execute(query).mappings()]
    return result


def as_dict(result: Explanation) -> dict[str, Any]:
    """A JSON-ready form of an explanation (hashes shortened; no raw PII exists)."""
    deal = result.deal
    journey = result.journey
    return {
        "deal": {
            "source": deal.source, "id": deal.id, "status": deal.status.value,
            "amount": str(deal.amount), "currency": deal.currency,
            "close_at": deal.close_at.isoformat() if deal.close_at else None,
            "pipeline": deal.pipeline, "stage": deal.stage,
            "contacts": [c.crm_id for c in deal.contacts],
        },
        "matches": [
            {"visitor_id": m.visitor_id, "key_type": m.key_type, "key": m.key[:12] + "…"}
            for m in (journey.links if journey else ())
        ],
        "journey": [
            {
                "touchpoint_id": tp.id, "at": tp.occurred_at.isoformat(), "channel": tp.channel,
                "source": tp.source, "medium": tp.medium, "campaign": tp.campaign,
                "click": (tp.click_ids.google_click or (None, None))[0]
                or ("fbclid" if tp.click_ids.fbclid else None),
                "credits": {
                    model: {"share": str(credits[tp.id][0]), "amount": credits[tp.id][1]}
                    for model, credits in result.credits.items()
                    if tp.id in credits
                },
            }
            for tp in (detailed(t, deal) for t in (journey.touchpoints if journey else ()))
        ],
        "conversions": [
            {k: (v.isoformat() if isinstance(v, datetime) else str(v) if v is not None else None)
             for k, v in row.items()}
            for row in result.conversions
        ],
        "explained_at": datetime.now(UTC).isoformat(),
    }  # fmt: skip

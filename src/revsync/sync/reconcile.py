"""Deals deleted in the CRM past its recycle bin are never read again as deleted: a hard
delete, a purged recycle bin, a GDPR deletion. So once every ``reconcile_hours`` a run asks
each source which of its stored won deals with an upload still exist; those gone are stored
and planned as lost, so their uploads are retracted where the platform allows it.

A source that can answer implements ``missing(deal_ids) -> set[str]`` (HubSpot: batch read;
Salesforce: a query by Id). The time of the last check is kept in ``sync_state`` under the
source's name in capitals (names are lowercase, so it never meets a watermark).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from sqlalchemy import Connection, Engine, select, update

from revsync.domain import Deal, DealStatus
from revsync.store import queries
from revsync.store.deals import load_deals
from revsync.store.schema import conversions, deals
from revsync.sync.summary import RunSummary


@runtime_checkable
class ChecksExistence(Protocol):
    """A source that can say which of some deal IDs no longer exist in the CRM."""

    name: str

    def missing(self, deal_ids: Sequence[str]) -> set[str]: ...


def reconcile(
    engine: Engine,
    source: object,
    every_hours: int,
    now: datetime,
    summary: RunSummary,
    plan: Callable[[Connection, Sequence[Deal], RunSummary], None],
) -> None:
    """If due, plan the stored won deals with uploads that ``source`` no longer has as lost."""
    if not isinstance(source, ChecksExistence) or every_hours <= 0:
        return
    key = source.name.upper()
    with engine.connect() as conn:
        last = queries.get_watermark(conn, key)
        if last is not None and now - datetime.fromisoformat(last) < timedelta(hours=every_hours):
            return
        uploaded = _uploaded_won(conn, source.name)
    gone = sorted(source.missing(uploaded)) if uploaded else []
    with engine.begin() as conn:
        lost = [
            dataclasses.replace(deal, status=DealStatus.LOST, modified_at=now)
            for deal in load_deals(conn, source.name, gone)
        ]
        for deal in lost:
            conn.execute(
                update(deals)
                .where(deals.c.source == deal.source, deals.c.id == deal.id)
                .values(status=DealStatus.LOST.value, modified_at=now)
            )
        plan(conn, lost, summary)
        queries.set_watermark(conn, key, now.isoformat())
    if lost:
        summary.warnings.append(
            f"{source.name}: {len(lost)} deal(s) with uploads no longer exist in the CRM "
            "(deleted past its recycle bin): treated as lost"
        )


def _uploaded_won(conn: Connection, source: str) -> list[str]:
    query = (
        select(deals.c.id)
        .where(deals.c.source == source, deals.c.status == DealStatus.WON.value)
        .where(
            select(conversions.c.key)
            .where(conversions.c.source == source, conversions.c.deal_id == deals.c.id,
                   conversions.c.state == "sent")
            .exists()
        )
        .order_by(deals.c.id)
    )  # fmt: skip
    return list(conn.execute(query).scalars())

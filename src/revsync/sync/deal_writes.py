"""Store a page of deals as a source read it: the deals, their contacts and the links
between them, and the deals' stage history (``deal_stages``).

A deal's stage is recorded when it is new to the store or its stage differs from the
stored one, entered at the deal's ``modified_at`` (when the CRM says it changed: the
nearest a sync can tell); what the CRM itself recorded (``Deal.stage_history``) is stored
with ``origin = "crm"``, and wins when both name the same time and stage. Both are keyed by
deal, time and stage, so a page read again adds nothing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select

from revsync.domain import Deal
from revsync.store import queries
from revsync.store.schema import contacts, deal_contacts, deal_stages, deals
from revsync.sync.matches import by_source

_DEAL_UPDATES = ("status", "amount", "currency", "close_at", "modified_at", "stage",
                 "pipeline", "owner", "click_ids", "fields", "synced_at", "account_id",
                 "created_at")  # fmt: skip
_HASHES = ("email_sha256", "email_google_sha256", "phone_sha256", "phone_meta_sha256",
           "email_ga4_sha256", "click_ids")  # fmt: skip


def store_deals(conn: Connection, page: Sequence[Deal], now: datetime) -> None:
    """Upsert ``page`` with its contacts, links and stage changes, in ``conn``'s
    transaction."""
    stages = _stage_rows(conn, page)
    queries.upsert(conn, deals, [_deal_row(d, now) for d in page], update=_DEAL_UPDATES)
    contact_rows = {
        (d.source, c.crm_id): {
            "source": d.source, "crm_id": c.crm_id, "email_sha256": c.hashes.email,
            "email_google_sha256": c.hashes.email_google, "phone_sha256": c.hashes.phone,
            "phone_meta_sha256": c.hashes.phone_meta, "email_ga4_sha256": c.hashes.email_ga4,
            "click_ids": _present(c.click_ids),
        }
        for d in page
        for c in d.contacts
    }  # fmt: skip
    queries.upsert(conn, contacts, list(contact_rows.values()), update=_HASHES)
    for source, ids in by_source(page).items():
        conn.execute(
            delete(deal_contacts).where(
                deal_contacts.c.source == source, deal_contacts.c.deal_id.in_(ids)
            )
        )
    links = [{"source": d.source, "deal_id": d.id, "contact_id": c.crm_id,
              "is_primary": c.is_primary} for d in page for c in d.contacts]  # fmt: skip
    queries.upsert(conn, deal_contacts, links)
    queries.upsert(conn, deal_stages, stages)


def _deal_row(d: Deal, now: datetime) -> dict[str, Any]:
    return {
        "source": d.source, "id": d.id, "status": d.status.value, "amount": d.amount,
        "currency": d.currency, "close_at": d.close_at, "modified_at": d.modified_at,
        "stage": d.stage, "pipeline": d.pipeline, "owner": d.owner,
        "click_ids": _present(d.click_ids), "fields": dict(d.fields), "synced_at": now,
        "account_id": d.account_id, "created_at": d.created_at,
    }  # fmt: skip


def _stage_rows(conn: Connection, page: Sequence[Deal]) -> list[dict[str, Any]]:
    """The page's new stage entries: a stage the store did not hold for the deal, and
    every change the CRM recorded."""
    stored: dict[tuple[str, str], str | None] = {}
    for source, ids in by_source(page).items():
        query = select(deals.c.id, deals.c.stage).where(
            deals.c.source == source, deals.c.id.in_(ids)
        )
        stored.update({(source, deal_id): stage for deal_id, stage in conn.execute(query)})
    rows = []
    for d in page:
        key = (d.source, d.id)
        if d.stage and (key not in stored or stored[key] != d.stage):
            rows.append(_stage(d, d.modified_at, d.stage, "sync"))
        # after the sync's: the last row per key is stored, so the CRM's wins a tie
        rows += [_stage(d, entered_at, stage, "crm") for entered_at, stage in d.stage_history]
    return rows


def _stage(d: Deal, entered_at: datetime, stage: str, origin: str) -> dict[str, Any]:
    return {"source": d.source, "deal_id": d.id, "entered_at": entered_at,
            "stage": stage[:255], "origin": origin}  # fmt: skip


def _present(ids: Any) -> dict[str, str]:
    return {name: getattr(ids, name) for name in ids.__slots__ if getattr(ids, name)}

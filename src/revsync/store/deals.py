"""Read deals back from the store as domain objects (for explain, reports, re-planning)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from decimal import Decimal

from sqlalchemy import Connection, literal, select, tuple_

from revsync.attribution import minor_units
from revsync.domain import ClickIds, Contact, Deal, DealStatus, PersonHashes
from revsync.store.schema import contacts, deal_contacts, deals


def load_deals(conn: Connection, source: str, ids: Sequence[str]) -> list[Deal]:
    """The stored deals of ``source`` with these IDs, with their contacts (primary first)."""
    rows = conn.execute(
        select(deals).where(deals.c.source == source, deals.c.id.in_(list(ids)))
    ).mappings()
    found = {row["id"]: row for row in rows}
    people: dict[str, list[Contact]] = {}
    query = (
        select(deal_contacts.c.deal_id, deal_contacts.c.is_primary, contacts)
        .join(
            contacts,
            (contacts.c.source == deal_contacts.c.source)
            & (contacts.c.crm_id == deal_contacts.c.contact_id),
        )
        .where(deal_contacts.c.source == source, deal_contacts.c.deal_id.in_(list(found)))
    )
    for row in conn.execute(query).mappings():
        people.setdefault(row["deal_id"], []).append(
            Contact(
                crm_id=row["crm_id"],
                hashes=PersonHashes(
                    row["email_sha256"],
                    row["email_google_sha256"],
                    row["phone_sha256"],
                    row["phone_meta_sha256"],
                ),
                is_primary=row["is_primary"],
                click_ids=ClickIds(**row["click_ids"]),
            )
        )
    out = []
    for deal_id in ids:
        stored = found.get(deal_id)
        if stored is None:
            continue
        members = sorted(people.get(deal_id, []), key=lambda c: (not c.is_primary, c.crm_id))
        out.append(
            Deal(
                source=source,
                id=stored["id"],
                status=DealStatus(stored["status"]),
                amount=_money(stored["amount"], stored["currency"]),
                currency=stored["currency"],
                close_at=stored["close_at"],
                modified_at=stored["modified_at"],
                stage=stored["stage"],
                pipeline=stored["pipeline"],
                owner=stored["owner"],
                contacts=tuple(members),
                click_ids=ClickIds(**stored["click_ids"]),
                fields=stored["fields"],
            )
        )
    return out


def won_deal_pages(conn: Connection, page_size: int = 1_000) -> Iterator[list[Deal]]:
    """Every won deal with a close time, a page at a time, in (source, id) order."""
    last: tuple[str, str] = ("", "")
    while True:
        keys = conn.execute(
            select(deals.c.source, deals.c.id)
            .where(
                deals.c.status == DealStatus.WON.value,
                deals.c.close_at.is_not(None),
                # A row-value comparison: an index range scan from the last key on both
                # backends (the OR form re-scanned every earlier page: quadratic).
                tuple_(deals.c.source, deals.c.id) > tuple_(literal(last[0]), literal(last[1])),
            )
            .order_by(deals.c.source, deals.c.id)
            .limit(page_size)
        ).all()
        if not keys:
            return
        page: list[Deal] = []
        for source in dict.fromkeys(k[0] for k in keys):
            page += load_deals(conn, source, [k[1] for k in keys if k[0] == source])
        yield page
        last = (keys[-1][0], keys[-1][1])


def _money(value: Decimal | None, currency: str) -> Decimal | None:
    """The stored amount at the currency's precision (the column keeps 4 decimals)."""
    if value is None:
        return None
    return Decimal(value).quantize(Decimal(1).scaleb(-minor_units(currency)))

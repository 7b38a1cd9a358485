"""Read deals back from the store as domain objects (for explain, reports, re-planning).

Rows are read as the driver returns them (as ``matching.resolve`` does) and turned into
the values the store's column types would give: a page of 1,000 deals is two statements
and no per-row SQLAlchemy processing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection

from revsync.attribution import minor_units
from revsync.domain import ClickIds, Contact, Deal, DealStatus, PersonHashes
from revsync.matching.resolve import NO_CLICKS, time_parser

# Bound values per IN list: below SQLite's 32,766 parameters per statement.
_CHUNK = 10_000
_DEAL_COLUMNS = (
    "id, status, amount, currency, close_at, modified_at, stage, pipeline, owner, "
    "click_ids{text}, fields{text}"
)
_CONTACTS = (
    "SELECT dc.deal_id, dc.is_primary, c.crm_id, c.email_sha256, c.email_google_sha256, "
    "c.phone_sha256, c.phone_meta_sha256, c.click_ids{text}, c.email_ga4_sha256 "
    "FROM deal_contacts dc "
    "JOIN contacts c ON c.source = dc.source AND c.crm_id = dc.contact_id "
    "WHERE dc.source = {p} AND dc.deal_id {in_ids}"
)
_DEALS = "SELECT " + _DEAL_COLUMNS + " FROM deals WHERE source = {p} AND id {in_ids}"  # noqa: S608
# A row-value comparison: an index range scan from the last key on both backends (the
# OR form re-scanned every earlier page: quadratic).
_PAGE = (
    "SELECT source, " + _DEAL_COLUMNS + " FROM deals "  # noqa: S608
    "WHERE status = {p} AND close_at IS NOT NULL AND (source, id) > ({p}, {p}) {until}"
    "ORDER BY source, id LIMIT {p}"
)
_SPLIT = (
    "SELECT source, id FROM deals WHERE status = {p} AND close_at IS NOT NULL "
    "ORDER BY source, id LIMIT 1 OFFSET {p}"
)
_COUNT = "SELECT count(*) FROM deals WHERE status = {p} AND close_at IS NOT NULL"
_NO_CLICKS = NO_CLICKS
_STATUS = {status.value: status for status in DealStatus}


def load_deals(conn: Connection, source: str, ids: Sequence[str]) -> list[Deal]:
    """The stored deals of ``source`` with these IDs, with their contacts (primary first)."""
    found: dict[str, tuple[Any, ...]] = {}
    for chunk in _chunks(list(dict.fromkeys(ids))):
        for row in _fetch(conn, _DEALS, [source], chunk):
            found[row[0]] = row
    rows = [found[deal_id] for deal_id in ids if deal_id in found]
    return _deals(conn, source, rows)


def won_deal_pages(
    conn: Connection,
    page_size: int = 1_000,
    after: tuple[str, str] = ("", ""),
    until: tuple[str, str] | None = None,
) -> Iterator[list[Deal]]:
    """Every won deal with a close time (with ``(source, id)`` above ``after`` and up to
    ``until``), a page at a time, in (source, id) order."""
    last = after
    sql = _PAGE.replace("{until}", "AND (source, id) <= ({p}, {p}) " if until else "")
    while True:
        rows = _fetch(conn, sql, [DealStatus.WON.value, *last, *(until or ()), page_size])
        if not rows:
            return
        page: list[Deal] = []
        for source in dict.fromkeys(row[0] for row in rows):
            page += _deals(conn, source, [row[1:] for row in rows if row[0] == source])
        yield page
        last = (rows[-1][0], rows[-1][1])


def won_deal_ranges(
    conn: Connection, parts: int, at_least: int = 1
) -> list[tuple[tuple[str, str], tuple[str, str] | None]]:
    """``(after, until)`` bounds for :func:`won_deal_pages` cutting the won deals into at
    most ``parts`` ranges of about equal size and at least ``at_least`` deals, in order."""
    won = DealStatus.WON.value
    total = int(_fetch(conn, _COUNT, [won])[0][0])
    parts = max(1, min(parts, total // max(1, at_least)))
    edges: list[tuple[str, str]] = []
    for k in range(1, parts):  # the last deal of each range but the last
        [(source, deal_id)] = _fetch(conn, _SPLIT, [won, k * total // parts - 1])
        edges.append((str(source), str(deal_id)))
    starts: list[tuple[str, str]] = [("", ""), *edges]
    ends: list[tuple[str, str] | None] = [*edges, None]
    return list(zip(starts, ends, strict=True))


def _deals(conn: Connection, source: str, rows: Sequence[tuple[Any, ...]]) -> list[Deal]:
    """Deals from ``_DEAL_COLUMNS`` rows of ``source``, in that order, with contacts."""
    if not rows:
        return []
    parse = time_parser(conn)
    sqlite = conn.dialect.name == "sqlite"
    people: dict[str, list[Contact]] = {}
    for chunk in _chunks(list(dict.fromkeys(row[0] for row in rows))):
        for deal_id, primary, crm_id, email, email_g, phone, phone_m, clicks, email_ga4 in _fetch(
            conn, _CONTACTS, [source], chunk
        ):
            contact = Contact(
                crm_id,
                PersonHashes(email, email_g, phone, phone_m, email_ga4),
                bool(primary),
                _click_ids(clicks) if clicks and clicks != "{}" else _NO_CLICKS,
            )
            members = people.get(deal_id)
            if members is None:
                people[deal_id] = [contact]
            else:
                members.append(contact)
    quanta: dict[str, Decimal] = {}
    out = []
    for deal_id, status, amount, currency, close_at, modified_at, *rest in rows:
        stage, pipeline, owner, clicks, fields = rest
        members = people.get(deal_id, [])
        if len(members) > 1:
            members.sort(key=lambda c: (not c.is_primary, c.crm_id))
        if amount is not None:
            quantum = quanta.get(currency)
            if quantum is None:
                quantum = quanta[currency] = Decimal(1).scaleb(-minor_units(currency))
            # Numeric(18, 4) as SQLAlchemy returns it: SQLite stores a float, formatted to
            # the column's 4 decimals; psycopg returns a Decimal. Then the currency's
            # precision.
            amount = (Decimal("%.4f" % amount) if sqlite else amount).quantize(quantum)  # noqa: UP031
        out.append(
            Deal(
                source,
                deal_id,
                _STATUS.get(status) or DealStatus(status),
                amount,
                currency,
                None if close_at is None else parse(close_at),
                parse(modified_at),
                stage,
                pipeline,
                owner,
                tuple(members),
                _click_ids(clicks) if clicks and clicks != "{}" else _NO_CLICKS,
                {} if fields == "{}" else _json(fields),
            )
        )
    return out


def _fetch(
    conn: Connection, sql: str, params: list[Any], ids: Sequence[str] | None = None
) -> list[tuple[Any, ...]]:
    """Raw rows of ``sql`` (``{p}``: a placeholder, ``{in_ids}``: ``IN ids``).

    PostgreSQL gets the IDs as one array, unnested: an index probe per ID (``= ANY(array)``
    is planned as a sequential scan of the table, which grows with it). JSON columns come
    back as text on both backends (``{text}``), decoded here: most are ``{}``."""
    cursor = conn.connection.cursor()
    try:
        if conn.dialect.name == "postgresql":
            if ids is not None:
                params = [*params, list(ids)]
            in_ids = "IN (SELECT unnest(%b::text[]))"
            cursor.execute(sql.format(p="%s", in_ids=in_ids, text="::text"), params)
        else:
            in_ids = "" if ids is None else "IN (" + ", ".join("?" * len(ids)) + ")"
            cursor.execute(sql.format(p="?", in_ids=in_ids, text=""), [*params, *(ids or ())])
        return list(cursor.fetchall())
    finally:
        cursor.close()


def _chunks(values: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _json(value: str | None) -> Any:
    """A JSON column's value from its text (``json.loads``, as the store's JSON type)."""
    if value is None:
        return None
    return {} if value == "{}" else json.loads(value)


def _click_ids(value: str | None) -> ClickIds:
    decoded = _json(value)
    return ClickIds(**decoded) if decoded else _NO_CLICKS

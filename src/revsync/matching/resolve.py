"""Deterministic identity resolution and journey building.

deal -> contacts (CRM ids, email/phone hashes) and click IDs on the CRM record
     -> identities -> visitors -> touchpoints inside the lookback window.
Lookups are set-based per page of deals: one query per key kind, each on an index, and
one join of each deal's matched visitors with their touchpoints inside its window.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from revsync.domain import (
    Channel,
    ClickIds,
    Consent,
    Deal,
    Journey,
    MatchLink,
    Touch,
    Touchpoint,
)

# Keys per IN list: below SQLite's 32,766 parameters per statement.
_CHUNK = 10_000
_CLICK_KEYS = ("gclid", "gbraid", "wbraid", "fbclid", "ga_client_id")
_TIME_ORDER = attrgetter("occurred_at", "id")


_Found = dict[str, list[tuple[str, datetime]]]  # key -> [(visitor_id, observed_at)]


class _Keys(NamedTuple):
    """A deal's matching keys."""

    emails: set[str]
    phones: set[str]
    crm_ids: set[str]
    clicks: dict[str, set[str]]  # click kind -> values


NO_CLICKS = ClickIds()  # the one empty ClickIds that store.deals shares


def _deal_keys(deal: Deal, kinds: Sequence[str]) -> _Keys:
    emails: set[str] = set()
    phones: set[str] = set()
    crm_ids: set[str] = set()
    clicks: dict[str, set[str]] = {}
    by_email, by_phone, by_crm = "email" in kinds, "phone" in kinds, "crm_id" in kinds
    contacts = deal.contacts
    for contact in contacts:
        hashes = contact.hashes
        if by_email and hashes.email:
            emails.add(hashes.email)
        if by_phone and hashes.phone:
            phones.add(hashes.phone)
        if by_crm:
            crm_ids.add(contact.crm_id)
    # Looked up even when click IDs don't link visitors: a CRM click ID that no stored
    # touchpoint of the journey carries becomes a touchpoint of its own.
    for ids in (deal.click_ids, *(c.click_ids for c in contacts)):
        if ids is NO_CLICKS:
            continue
        for name in _CLICK_KEYS:
            value = getattr(ids, name)
            if value:
                clicks.setdefault(name, set()).add(value)
    return _Keys(emails, phones, crm_ids, clicks)


def resolve_journeys(
    conn: Connection,
    deals: Sequence[Deal],
    lookback_days: int,
    kinds: Sequence[str] = ("email", "phone", "crm_id", "click_id"),
) -> list[Journey]:
    """Journeys for ``deals`` (won deals with a close time), in the order given.

    A handful of set-based queries per call, whatever the number of deals: identities by
    key kind, touchpoints by CRM click ID, then one join of each deal's matched visitors
    with their touchpoints inside the deal's window (an index range scan on
    ``(visitor_id, occurred_at)`` per deal and visitor). Memory is one page of journeys.
    """
    return _resolve(conn, deals, lookback_days, kinds)


def _resolve(
    conn: Connection, deals: Sequence[Deal], lookback_days: int, kinds: Sequence[str]
) -> list[Journey]:
    per_deal = {(d.source, d.id): _deal_keys(d, kinds) for d in deals}
    keys = per_deal.values()
    emails: set[str] = set().union(*(k[0] for k in keys))
    phones: set[str] = set().union(*(k[1] for k in keys))
    crm_ids: set[str] = set().union(*(k[2] for k in keys))
    by_email, by_phone, by_crm = _identities(conn, emails, phones, crm_ids)
    clicks: dict[str, set[str]] = defaultdict(set)
    for k in keys:
        for name, values in k[3].items():
            clicks[name] |= values
    click_rows = _click_touchpoints(conn, clicks)
    link_clicks = "click_id" in kinds

    new_link = MatchLink
    links_of: dict[tuple[str, str], list[MatchLink]] = {}
    first_lead: dict[tuple[str, str], datetime] = {}
    for key, (deal_emails, deal_phones, deal_crm_ids, deal_clicks) in per_deal.items():
        found: list[tuple[str, str, str]] = []  # (visitor_id, key kind, key)
        lead: datetime | None = None
        for kind, values, index in (
            ("email", deal_emails, by_email),
            ("phone", deal_phones, by_phone),
            ("crm_id", deal_crm_ids, by_crm),
        ):
            for value in values:
                for visitor_id, when in index.get(value, ()):
                    found.append((visitor_id, kind, value))
                    if lead is None or when < lead:
                        lead = when
        if lead is not None:
            first_lead[key] = lead
        for name, values in deal_clicks.items() if link_clicks else ():
            for value in values:
                for _tp_id, visitor_id in click_rows.get((name, value), ()):
                    found.append((visitor_id, name, value))
        # Ordered by (visitor, kind, key), each link once.
        links_of[key] = [new_link(*link) for link in sorted(set(found))]

    # One (deal, visitor, window) row per matched visitor of each deal: the database
    # hands back each deal's window touchpoints, tagged with the deal's position.
    pairs: list[tuple[int, str, datetime, datetime]] = []
    for position, deal in enumerate(deals):
        key = (deal.source, deal.id)
        links = links_of[key]
        if not links:
            continue
        assert deal.close_at is not None
        start, end = _window(first_lead.get(key), deal.close_at, lookback_days)
        for visitor_id in dict.fromkeys(link.visitor_id for link in links):
            pairs.append((position, visitor_id, start, end))
    in_window = _window_touchpoints(conn, pairs)
    return [
        build_journey(
            deal, links_of[(deal.source, deal.id)], in_window.get(position, ()),
            first_lead.get((deal.source, deal.id)), click_rows, link_clicks,
        )
        for position, deal in enumerate(deals)
    ]  # fmt: skip


def _window(
    first_lead: datetime | None, close_at: datetime, lookback_days: int
) -> tuple[datetime, datetime]:
    """A journey's time window: ``[min(first lead, close) - lookback, close]``."""
    anchor = min(first_lead, close_at) if first_lead else close_at
    return anchor - timedelta(days=lookback_days), close_at


def build_journey(
    deal: Deal,
    links: Sequence[MatchLink],
    in_window: Iterable[Touch],
    first_lead: datetime | None,
    click_rows: Mapping[tuple[str, str], Sequence[tuple[str, str]]],
    link_clicks: bool,
) -> Journey:
    """The journey of ``deal`` from its matched visitors' touchpoints inside its window.

    A click ID on the CRM record becomes a touchpoint of its own at the first lead event
    (or just before close), so it can still be credited, unless a stored touchpoint
    carries it: any one when click IDs link visitors (``click_rows``: ``(touchpoint id,
    visitor)`` per click), else one of this journey.
    """
    assert deal.close_at is not None
    touchpoints = list(in_window)
    crm_clicks = [
        (name, value)
        for ids in (deal.click_ids, *(c.click_ids for c in deal.contacts))
        if ids is not NO_CLICKS
        for name in ("gclid", "gbraid", "wbraid", "fbclid")
        if (value := getattr(ids, name))
    ]
    if crm_clicks:
        anchor = min(first_lead, deal.close_at) if first_lead else deal.close_at
        ids_in_journey = {tp.id for tp in touchpoints}
        added: set[tuple[str, str]] = set()
        for click in crm_clicks:
            stored = click_rows.get(click, ())
            if click in added or any(
                link_clicks or tp_id in ids_in_journey for tp_id, _visitor in stored
            ):
                continue
            touchpoints.append(_crm_click(deal, *click, anchor))
            added.add(click)
    if len(touchpoints) > 1:
        touchpoints.sort(key=_TIME_ORDER)
    return Journey(deal, tuple(touchpoints), tuple(links))


def _crm_click(deal: Deal, name: str, value: str, when: datetime) -> Touchpoint:
    digest = hashlib.sha256(f"crm|{deal.source}|{deal.id}|{name}|{value}".encode()).hexdigest()
    at = min(when, deal.close_at - timedelta(seconds=1)) if deal.close_at else when
    channel = Channel.PAID_SOCIAL if name == "fbclid" else Channel.PAID_SEARCH
    return Touchpoint(
        id=digest[:40],
        visitor_id=f"crm:{deal.source}:{deal.id}",
        occurred_at=at,
        channel=channel,
        source="facebook" if name == "fbclid" else "google",
        medium="cpc",
        click_ids=ClickIds(**{name: value}),
    )


def _chunks(values: Iterable[str], size: int = _CHUNK) -> Iterable[list[str]]:
    items = sorted(values)
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _lookup(
    conn: Connection, table: str, columns: str, key: str, values: set[str]
) -> Iterator[Sequence[Any]]:
    """Raw rows of ``SELECT columns FROM table WHERE key IN values``: an index probe per
    value, one statement per 10,000 values (PostgreSQL: one array parameter, unnested)."""
    dialect = conn.dialect.name
    for chunk in _chunks(values):
        cursor = conn.connection.cursor()
        try:
            if dialect == "postgresql":
                # A join with the unnested array: an index probe per value. ``key =
                # ANY(array)`` of ~1,000 values is planned as a (parallel) sequential scan.
                # Arrays go in binary (%b): the text format quotes each element by regex.
                sql = (
                    f"SELECT {columns} FROM unnest(%b::text[]) AS k(v) "  # noqa: S608
                    f"JOIN {table} ON {table}.{key} = k.v"
                )
                cursor.execute(sql, (chunk,))
            else:
                marks = ", ".join("?" * len(chunk))
                sql = f"SELECT {columns} FROM {table} WHERE {key} IN ({marks})"  # noqa: S608
                cursor.execute(sql, chunk)
            yield from cursor.fetchall()
        finally:
            cursor.close()


def _identities(
    conn: Connection, emails: set[str], phones: set[str], crm_ids: set[str]
) -> tuple[_Found, _Found, _Found]:
    """``(visitor_id, observed_at)`` of the identities per email hash, phone hash and CRM
    ID asked for: one indexed lookup per kind."""
    found: tuple[_Found, _Found, _Found] = (defaultdict(list), defaultdict(list), defaultdict(list))
    parse = time_parser(conn)
    for index, column, values in zip(
        found, ("email_sha256", "phone_sha256", "crm_id"), (emails, phones, crm_ids), strict=True
    ):
        columns = f"{column}, visitor_id, observed_at"
        for value, visitor_id, observed_at in _lookup(conn, "identities", columns, column, values):
            index[value].append((visitor_id, parse(observed_at)))
    return found


def _click_touchpoints(
    conn: Connection, clicks: Mapping[str, set[str]]
) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """``(touchpoint id, visitor_id)`` per ``(click kind, value)`` on a CRM record."""
    found: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for name, values in clicks.items():
        if name not in _CLICK_KEYS:
            raise ValueError(f"unknown click ID kind {name!r}")
        columns = f"{name}, id, visitor_id"
        for value, tp_id, visitor_id in _lookup(conn, "touchpoints", columns, name, values):
            found[(name, value)].append((tp_id, visitor_id))
    return found


# Column order is the order of Touchpoint's, then ClickIds', fields (see _touchpoints).
_TP_COLUMNS = (
    "id", "visitor_id", "occurred_at", "channel", "source", "medium", "campaign", "term",
    "content", "landing_url", "referrer", "gclid", "gbraid", "wbraid", "fbclid", "fbc", "fbp",
    "ga_client_id", "msclkid", "ttclid", "li_fat_id", "consent_ad_user_data",
    "consent_ad_personalization", "user_agent", "ip",
)  # fmt: skip
# Journeys read a Touch's columns only: attribution needs no more, and the credited
# touchpoints' other columns are read by ``with_details``.
_TOUCH_SELECT = "t.id, t.visitor_id, t.occurred_at, t.channel"
# One index range scan on (visitor_id, occurred_at) per (deal, visitor) of the page, rows
# tagged with the deal's position. Only constants and placeholders are formatted in.
_WINDOW_JOIN = {
    "sqlite": (
        "WITH w(deal, visitor_id, lo, hi) AS (VALUES {values}) "  # noqa: S608
        f"SELECT w.deal, {_TOUCH_SELECT} FROM w JOIN touchpoints t "
        "ON t.visitor_id = w.visitor_id AND t.occurred_at >= w.lo AND t.occurred_at <= w.hi"
    ),
    "postgresql": (
        f"SELECT w.deal, {_TOUCH_SELECT} FROM "  # noqa: S608
        "unnest(%b::int8[], %b::text[], %b::timestamptz[], %b::timestamptz[]) "
        "AS w(deal, visitor_id, lo, hi) JOIN touchpoints t "
        "ON t.visitor_id = w.visitor_id AND t.occurred_at >= w.lo AND t.occurred_at <= w.hi"
    ),
}
# (deal, visitor, lo, hi) per statement: 4 bound values each, below SQLite's 32,766.
_PAIRS_PER_STATEMENT = 8_000
_CONSENT = {
    (a, b): Consent(a, b) for a in (None, False, True) for b in (None, False, True)
}  # SQLite hands back 0/1, which hash and compare equal to False/True


def sqlite_time(value: datetime) -> str:
    """A UTC time as the store keeps it in SQLite (SQLAlchemy's DATETIME text format)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _window_touchpoints(
    conn: Connection, pairs: Sequence[tuple[int, str, datetime, datetime]]
) -> dict[int, list[Touch]]:
    """Per deal position, the touches of its visitors inside its window, inclusive, from
    ``(deal position, visitor_id, start, end)`` rows."""
    out: dict[int, list[Touch]] = defaultdict(list)
    dialect = conn.dialect.name
    parse = time_parser(conn)
    new = Touch
    for first in range(0, len(pairs), _PAIRS_PER_STATEMENT):
        chunk = pairs[first : first + _PAIRS_PER_STATEMENT]
        cursor = conn.connection.cursor()
        try:
            if dialect == "sqlite":
                params: list[Any] = []
                for position, visitor, start, end in chunk:
                    params += (position, visitor, sqlite_time(start), sqlite_time(end))
                values = ", ".join(["(?, ?, ?, ?)"] * len(chunk))
                cursor.execute(_WINDOW_JOIN["sqlite"].format(values=values), params)
            elif dialect == "postgresql":
                columns = [list(column) for column in zip(*chunk, strict=True)]
                cursor.execute(_WINDOW_JOIN["postgresql"], columns)
            else:  # pragma: no cover - the store only runs on these two
                raise NotImplementedError(dialect)
            for position, tp_id, visitor_id, occurred_at, channel in cursor.fetchall():
                out[position].append(new(tp_id, visitor_id, parse(occurred_at), channel))
        finally:
            cursor.close()
    return out


def with_details(
    conn: Connection, journeys: Sequence[Journey], ids: Collection[str] | None = None
) -> list[Journey]:
    """``journeys`` with their touches in ``ids`` (default: all) as full ``Touchpoint``s,
    read from the store in one indexed lookup per 10,000."""
    out = list(journeys)
    changed: list[int] = []
    wanted: set[str] = set()
    for position, journey in enumerate(journeys):
        found = [
            tp.id
            for tp in journey.touchpoints
            if (ids is None or tp.id in ids) and not isinstance(tp, Touchpoint)
        ]
        if found:
            changed.append(position)
            wanted.update(found)
    if not wanted:
        return out
    rows = _lookup(conn, "touchpoints", ", ".join(_TP_COLUMNS), "id", wanted)
    full = {tp.id: tp for tp in _touchpoints(rows, time_parser(conn))}
    for position in changed:
        journey = out[position]
        touchpoints = tuple(full.get(tp.id, tp) for tp in journey.touchpoints)
        out[position] = Journey(journey.deal, touchpoints, journey.links)
    return out


def time_parser(conn: Connection) -> Callable[[Any], datetime]:
    """Raw driver value -> timezone-aware UTC, as the store's ``UtcDateTime`` returns it."""
    return _parse_sqlite_time if conn.dialect.name == "sqlite" else _parse_aware_time


def _parse_sqlite_time(
    value: str, _parse: Callable[[str], datetime] = datetime.fromisoformat
) -> datetime:
    # The stored text is UTC without an offset; parsing it with "+00:00" appended gives
    # ``tzinfo=UTC`` (the same ``timezone.utc`` object) ~5x faster than ``.replace``.
    try:
        parsed = _parse(value + "+00:00")
        if parsed.tzinfo is UTC:
            return parsed
    except ValueError:  # text with an offset of its own
        pass
    parsed = _parse(value)  # as UtcDateTime reads it
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


# Zones psycopg hands back for a UTC session: their offset is always 0, so the time only
# needs its tzinfo swapped for ``UTC`` (what ``astimezone(UTC)`` gives, but cheaper).
_UTC_ZONES = frozenset({ZoneInfo("UTC"), ZoneInfo("Etc/UTC")})


def _parse_aware_time(value: datetime) -> datetime:
    zone = value.tzinfo
    if zone is UTC:
        return value
    if zone is None or zone in _UTC_ZONES:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _touchpoints(
    rows: Iterable[Sequence[Any]], parse: Callable[[Any], datetime]
) -> Iterator[Touchpoint]:
    """Raw ``_TP_COLUMNS`` rows to Touchpoints; equal ClickIds and Consent values share
    one (immutable) instance."""
    click_ids: dict[tuple[Any, ...], ClickIds] = {(None,) * 10: NO_CLICKS}
    consent = _CONSENT
    for row in rows:
        key = tuple(row[11:21])
        ids = click_ids.get(key)
        if ids is None:
            ids = click_ids[key] = ClickIds(*key)
        yield Touchpoint(
            row[0], row[1], parse(row[2]), row[3], row[4], row[5], row[6], row[7], row[8],
            row[9], row[10], ids, consent[row[21], row[22]], row[23], row[24],
        )  # fmt: skip

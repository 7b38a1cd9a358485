"""Deterministic identity resolution and journey building.

deal -> contacts (CRM ids, email/phone hashes) and click IDs on the CRM record
     -> identities -> visitors -> touchpoints inside the lookback window.
Lookups are set-based per page of deals: one query per key kind, each on an index, and
one join of the matched visitors with their touchpoints inside the journey windows.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, RowMapping

from revsync.domain import (
    Channel,
    ClickIds,
    Consent,
    Deal,
    Journey,
    MatchLink,
    Touchpoint,
)

# Keys per IN list and visitors per window join: 3 bound values per visitor stays below
# SQLite's 32,766 parameters per statement.
_CHUNK = 10_000
_CLICK_KEYS = ("gclid", "gbraid", "wbraid", "fbclid", "ga_client_id")
_LINK_ORDER = attrgetter("visitor_id", "key_type", "key")
_TIME_ORDER = attrgetter("occurred_at", "id")


def touchpoint_from_row(row: Mapping[str, Any] | RowMapping) -> Touchpoint:
    return Touchpoint(
        id=row["id"],
        visitor_id=row["visitor_id"],
        occurred_at=row["occurred_at"],
        channel=row["channel"],
        source=row["source"],
        medium=row["medium"],
        campaign=row["campaign"],
        term=row["term"],
        content=row["content"],
        landing_url=row["landing_url"],
        referrer=row["referrer"],
        click_ids=ClickIds(
            gclid=row["gclid"],
            gbraid=row["gbraid"],
            wbraid=row["wbraid"],
            fbclid=row["fbclid"],
            fbc=row["fbc"],
            fbp=row["fbp"],
            ga_client_id=row["ga_client_id"],
            msclkid=row["msclkid"],
            ttclid=row["ttclid"],
            li_fat_id=row["li_fat_id"],
        ),
        consent=Consent(row["consent_ad_user_data"], row["consent_ad_personalization"]),
        user_agent=row["user_agent"],
        ip=row["ip"],
    )


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
    if "click_id" in kinds:
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
    key kind, touchpoints by CRM click ID, then one join of the matched visitors with
    their touchpoints inside the union of their deals' windows (an index range scan on
    ``(visitor_id, occurred_at)`` per visitor). Memory is one page of journeys.
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

    new_link = MatchLink
    links_of: dict[tuple[str, str], list[MatchLink]] = {}
    first_lead: dict[tuple[str, str], datetime] = {}
    for key, (deal_emails, deal_phones, deal_crm_ids, deal_clicks) in per_deal.items():
        links: list[MatchLink] = []
        lead: datetime | None = None
        for kind, values, index in (
            ("email", deal_emails, by_email),
            ("phone", deal_phones, by_phone),
            ("crm_id", deal_crm_ids, by_crm),
        ):
            for value in sorted(values) if len(values) > 1 else values:
                for visitor_id, when in index.get(value, ()):
                    links.append(new_link(visitor_id, kind, value))
                    if lead is None or when < lead:
                        lead = when
        if lead is not None:
            first_lead[key] = lead
        for name, values in deal_clicks.items():
            for value in sorted(values):
                for _tp_id, visitor_id in click_rows.get((name, value), ()):
                    links.append(new_link(visitor_id, name, value))
        links_of[key] = sorted(set(links), key=_LINK_ORDER) if len(links) > 1 else links

    # Each visitor is read once, over the union of the windows of its deals in this call.
    windows: dict[str, tuple[datetime, datetime]] = {}
    for deal in deals:
        key = (deal.source, deal.id)
        if not links_of[key]:
            continue
        assert deal.close_at is not None
        start, end = _window(first_lead.get(key), deal.close_at, lookback_days)
        for link in links_of[key]:
            known = windows.get(link.visitor_id)
            windows[link.visitor_id] = (
                (start, end) if known is None else (min(known[0], start), max(known[1], end))
            )
    by_visitor = _visitor_touchpoints(conn, windows)
    journeys = []
    for deal in deals:
        key = (deal.source, deal.id)
        journeys.append(
            build_journey(
                deal, links_of[key], by_visitor, first_lead.get(key), lookback_days, click_rows
            )
        )
    return journeys


def _window(
    first_lead: datetime | None, close_at: datetime, lookback_days: int
) -> tuple[datetime, datetime]:
    """A journey's time window: ``[min(first lead, close) - lookback, close]``."""
    anchor = min(first_lead, close_at) if first_lead else close_at
    return anchor - timedelta(days=lookback_days), close_at


def build_journey(
    deal: Deal,
    links: Sequence[MatchLink],
    by_visitor: Mapping[str, Sequence[Touchpoint]],
    first_lead: datetime | None,
    lookback_days: int,
    click_rows: Mapping[tuple[str, str], Sequence[Any]] | None = None,
) -> Journey:
    """The deal's touchpoints inside ``[first lead - lookback, close]``, time-ordered.

    A click ID on the CRM record that no stored touchpoint carries becomes a touchpoint of
    its own at the first lead event (or just before close), so it can still be credited.
    """
    assert deal.close_at is not None
    anchor = min(first_lead, deal.close_at) if first_lead else deal.close_at
    start, end = _window(first_lead, deal.close_at, lookback_days)
    seen: dict[str, Touchpoint] = {}
    for visitor in sorted({m.visitor_id for m in links}):
        for tp in by_visitor.get(visitor, ()):
            if start <= tp.occurred_at <= end:
                seen[tp.id] = tp
    crm_clicks = [
        (name, value)
        for ids in (deal.click_ids, *(c.click_ids for c in deal.contacts))
        for name in ("gclid", "gbraid", "wbraid", "fbclid")
        if (value := getattr(ids, name))
    ]
    if crm_clicks:
        known_clicks = {
            (name, value)
            for tp in seen.values()
            for name in _CLICK_KEYS
            if (value := getattr(tp.click_ids, name))
        }
        for name, value in crm_clicks:
            if (name, value) not in known_clicks and not (
                click_rows and click_rows.get((name, value))
            ):
                tp = _crm_click(deal, name, value, anchor)
                seen[tp.id] = tp
                known_clicks.add((name, value))
    ordered = sorted(seen.values(), key=_TIME_ORDER)
    return Journey(deal, tuple(ordered), tuple(links))


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
_TP_SELECT = ", ".join(f"t.{c}" for c in _TP_COLUMNS)
# One index range scan on (visitor_id, occurred_at) per visitor of the page. Only
# constants and placeholders are formatted into these statements.
_WINDOW_JOIN = {
    "sqlite": (
        "WITH w(visitor_id, lo, hi) AS (VALUES {values}) "  # noqa: S608
        f"SELECT {_TP_SELECT} FROM w JOIN touchpoints t ON t.visitor_id = w.visitor_id "
        "AND t.occurred_at >= w.lo AND t.occurred_at <= w.hi"
    ),
    "postgresql": (
        f"SELECT {_TP_SELECT} FROM "  # noqa: S608
        "unnest(%b::text[], %b::timestamptz[], %b::timestamptz[]) AS w(visitor_id, lo, hi) "
        "JOIN touchpoints t ON t.visitor_id = w.visitor_id "
        "AND t.occurred_at >= w.lo AND t.occurred_at <= w.hi"
    ),
}
_CONSENT = {
    (a, b): Consent(a, b) for a in (None, False, True) for b in (None, False, True)
}  # SQLite hands back 0/1, which hash and compare equal to False/True


def _sqlite_time(value: datetime) -> str:
    """A UTC time as the store keeps it in SQLite (SQLAlchemy's DATETIME text format)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _visitor_touchpoints(
    conn: Connection, windows: Mapping[str, tuple[datetime, datetime]]
) -> dict[str, list[Touchpoint]]:
    """The touchpoints of each visitor inside its ``(start, end)`` window, inclusive."""
    out: dict[str, list[Touchpoint]] = defaultdict(list)
    dialect = conn.dialect.name
    parse = time_parser(conn)
    for chunk in _chunks(windows):
        cursor = conn.connection.cursor()
        try:
            if dialect == "sqlite":
                params: list[Any] = []
                for visitor in chunk:
                    start, end = windows[visitor]
                    params += (visitor, _sqlite_time(start), _sqlite_time(end))
                values = ", ".join(["(?, ?, ?)"] * len(chunk))
                cursor.execute(_WINDOW_JOIN["sqlite"].format(values=values), params)
            elif dialect == "postgresql":
                starts = [windows[v][0] for v in chunk]
                ends = [windows[v][1] for v in chunk]
                cursor.execute(_WINDOW_JOIN["postgresql"], (chunk, starts, ends))
            else:  # pragma: no cover - the store only runs on these two
                raise NotImplementedError(dialect)
            _touchpoints(cursor.fetchall(), parse, out)
        finally:
            cursor.close()
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
    rows: Iterable[tuple[Any, ...]],
    parse: Callable[[Any], datetime],
    out: dict[str, list[Touchpoint]],
) -> None:
    """Raw ``_TP_COLUMNS`` rows to Touchpoints, as ``touchpoint_from_row`` builds them;
    equal ClickIds and Consent values share one (immutable) instance."""
    click_ids: dict[tuple[Any, ...], ClickIds] = {}
    consent = _CONSENT
    new = Touchpoint
    for row in rows:
        key = row[11:21]
        ids = click_ids.get(key)
        if ids is None:
            ids = click_ids[key] = ClickIds(*key)
        visitor_id = row[1]
        out[visitor_id].append(
            new(
                row[0], visitor_id, parse(row[2]), row[3], row[4], row[5], row[6], row[7],
                row[8], row[9], row[10], ids, consent[row[21], row[22]], row[23], row[24],
            )
        )  # fmt: skip

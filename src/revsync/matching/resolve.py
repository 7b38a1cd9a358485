"""Deterministic identity resolution and journey building.

deal -> contacts (CRM ids, email/phone hashes) and click IDs on the CRM record
     -> identities -> visitors -> touchpoints inside the lookback window.
Lookups are batched per page of deals: one query per key kind, each on an index.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, RowMapping, select

from revsync.domain import (
    Channel,
    ClickIds,
    Consent,
    Deal,
    Journey,
    MatchLink,
    Touchpoint,
)
from revsync.store.schema import identities, touchpoints

_CHUNK = 500
_CLICK_KEYS = ("gclid", "gbraid", "wbraid", "fbclid", "ga_client_id")


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


@dataclass(frozen=True, slots=True)
class _Keys:
    emails: set[str]
    phones: set[str]
    crm_ids: set[str]
    clicks: dict[str, set[str]]


def _deal_keys(deal: Deal, kinds: Sequence[str]) -> _Keys:
    keys = _Keys(set(), set(), set(), defaultdict(set))
    for contact in deal.contacts:
        if "email" in kinds and contact.hashes.email:
            keys.emails.add(contact.hashes.email)
        if "phone" in kinds and contact.hashes.phone:
            keys.phones.add(contact.hashes.phone)
        if "crm_id" in kinds:
            keys.crm_ids.add(contact.crm_id)
    if "click_id" in kinds:
        for ids in (deal.click_ids, *(c.click_ids for c in deal.contacts)):
            for name in _CLICK_KEYS:
                value = getattr(ids, name)
                if value:
                    keys.clicks[name].add(value)
    return keys


def resolve_journeys(
    conn: Connection,
    deals: Sequence[Deal],
    lookback_days: int,
    kinds: Sequence[str] = ("email", "phone", "crm_id", "click_id"),
) -> list[Journey]:
    """Journeys for ``deals`` (won deals with a close time), in the order given."""
    per_deal = {(d.source, d.id): _deal_keys(d, kinds) for d in deals}
    emails = set().union(*(k.emails for k in per_deal.values())) if per_deal else set()
    phones = set().union(*(k.phones for k in per_deal.values())) if per_deal else set()
    crm_ids = set().union(*(k.crm_ids for k in per_deal.values())) if per_deal else set()
    id_rows = _identities(conn, emails, phones, crm_ids)
    by_email: dict[str, list[RowMapping]] = defaultdict(list)
    by_phone: dict[str, list[RowMapping]] = defaultdict(list)
    by_crm: dict[str, list[RowMapping]] = defaultdict(list)
    for row in id_rows:
        if row["email_sha256"]:
            by_email[row["email_sha256"]].append(row)
        if row["phone_sha256"]:
            by_phone[row["phone_sha256"]].append(row)
        if row["crm_id"]:
            by_crm[row["crm_id"]].append(row)
    clicks: dict[str, set[str]] = defaultdict(set)
    for k in per_deal.values():
        for name, values in k.clicks.items():
            clicks[name] |= values
    click_rows = _click_touchpoints(conn, clicks)

    links_of: dict[tuple[str, str], list[MatchLink]] = {}
    first_lead: dict[tuple[str, str], datetime] = {}
    for key, k in per_deal.items():
        links: list[MatchLink] = []
        for kind, values, index in (
            ("email", k.emails, by_email),
            ("phone", k.phones, by_phone),
            ("crm_id", k.crm_ids, by_crm),
        ):
            for value in sorted(values):
                for row in index.get(value, ()):
                    links.append(MatchLink(row["visitor_id"], kind, value))
                    when = row["observed_at"]
                    if key not in first_lead or when < first_lead[key]:
                        first_lead[key] = when
        for name, values in k.clicks.items():
            for value in sorted(values):
                for row in click_rows.get((name, value), ()):
                    links.append(MatchLink(row["visitor_id"], name, value))
        links_of[key] = sorted(set(links), key=lambda m: (m.visitor_id, m.key_type, m.key))

    visitor_ids = {m.visitor_id for links in links_of.values() for m in links}
    by_visitor = _visitor_touchpoints(conn, visitor_ids)
    journeys = []
    for deal in deals:
        key = (deal.source, deal.id)
        journeys.append(
            build_journey(
                deal, links_of[key], by_visitor, first_lead.get(key), lookback_days, click_rows
            )
        )
    return journeys


def build_journey(
    deal: Deal,
    links: Sequence[MatchLink],
    by_visitor: Mapping[str, Sequence[Touchpoint]],
    first_lead: datetime | None,
    lookback_days: int,
    click_rows: Mapping[tuple[str, str], Sequence[RowMapping]] | None = None,
) -> Journey:
    """The deal's touchpoints inside ``[first lead - lookback, close]``, time-ordered.

    A click ID on the CRM record that no stored touchpoint carries becomes a touchpoint of
    its own at the first lead event (or just before close), so it can still be credited.
    """
    assert deal.close_at is not None
    anchor = min(first_lead, deal.close_at) if first_lead else deal.close_at
    start = anchor - timedelta(days=lookback_days)
    seen: dict[str, Touchpoint] = {}
    for visitor in sorted({m.visitor_id for m in links}):
        for tp in by_visitor.get(visitor, ()):
            if start <= tp.occurred_at <= deal.close_at:
                seen[tp.id] = tp
    known_clicks = {
        (name, value)
        for tp in seen.values()
        for name in _CLICK_KEYS
        if (value := getattr(tp.click_ids, name))
    }
    for ids in (deal.click_ids, *(c.click_ids for c in deal.contacts)):
        for name in ("gclid", "gbraid", "wbraid", "fbclid"):
            value = getattr(ids, name)
            if (
                value
                and (name, value) not in known_clicks
                and not (click_rows and click_rows.get((name, value)))
            ):
                tp = _crm_click(deal, name, value, anchor)
                seen[tp.id] = tp
                known_clicks.add((name, value))
    ordered = sorted(seen.values(), key=lambda t: (t.occurred_at, t.id))
    return Journey(deal=deal, touchpoints=tuple(ordered), links=tuple(links))


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


def _chunks(values: Iterable[str]) -> Iterable[list[str]]:
    items = sorted(values)
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _identities(
    conn: Connection, emails: set[str], phones: set[str], crm_ids: set[str]
) -> list[RowMapping]:
    rows: dict[str, RowMapping] = {}
    for column, values in (
        (identities.c.email_sha256, emails),
        (identities.c.phone_sha256, phones),
        (identities.c.crm_id, crm_ids),
    ):
        for chunk in _chunks(values):
            for row in conn.execute(select(identities).where(column.in_(chunk))).mappings():
                rows[row["id"]] = row
    return list(rows.values())


def _click_touchpoints(
    conn: Connection, clicks: Mapping[str, set[str]]
) -> dict[tuple[str, str], list[RowMapping]]:
    found: dict[tuple[str, str], list[RowMapping]] = defaultdict(list)
    for name, values in clicks.items():
        column = touchpoints.c[name]
        for chunk in _chunks(values):
            query = select(touchpoints.c.id, touchpoints.c.visitor_id, column).where(
                column.in_(chunk)
            )
            for row in conn.execute(query).mappings():
                found[(name, row[name])].append(row)
    return found


def _visitor_touchpoints(conn: Connection, visitor_ids: set[str]) -> dict[str, list[Touchpoint]]:
    out: dict[str, list[Touchpoint]] = defaultdict(list)
    for chunk in _chunks(visitor_ids):
        query = select(touchpoints).where(touchpoints.c.visitor_id.in_(chunk))
        for row in conn.execute(query).mappings():
            out[row["visitor_id"]].append(touchpoint_from_row(row))
    return out

"""Erasure of one person (``revsync forget``): their identities, visitors, touchpoints and
match links are deleted, their contacts keep no hash or click ID, the ledger's payloads
that name them are stripped of every identifier (rows not yet sent are skipped, never sent
after the erasure), and the identifiers are blanked in payload files. What stays is
non-personal: deal amounts, credits by channel, the ledger's keys, values and states."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import ColumnElement, Connection, Table, delete, or_, select, update

from revsync.domain import ClickIds, Conversion, PersonHashes
from revsync.store.schema import (
    contacts,
    conversions,
    deal_contacts,
    identities,
    match_links,
    touchpoints,
    visitors,
)
from revsync.store.schema import (
    deals as deals_table,
)

ERASED = "ERASED"
_UNSENT = ("planned", "failed", "unknown", "validated")
_NO_HASHES = dict.fromkeys(("email_sha256", "email_google_sha256", "email_ga4_sha256",
                            "phone_sha256", "phone_meta_sha256"))  # fmt: skip
_CLICK_COLUMNS = ("gclid", "gbraid", "wbraid", "fbclid", "fbc", "fbp", "ga_client_id",
                  "msclkid", "ttclid", "li_fat_id")  # fmt: skip


@dataclass
class Erased:
    """What ``forget`` removed, by kind, and the identifiers it blanked in files."""

    counts: dict[str, int] = field(default_factory=dict)
    identifiers: set[str] = field(default_factory=set)


def forget(
    conn: Connection,
    person: PersonHashes,
    visitor_ids: Sequence[str],
    crm_ids: Sequence[str],
    now: datetime,
) -> Erased:
    """Erase the person named by any of ``person``'s hashes, ``visitor_ids`` or CRM contact
    ``crm_ids``, within ``conn``'s transaction."""
    hashes = {h for h in dataclasses.astuple(person) if h}
    erased = Erased(identifiers=set(hashes))
    hash_columns = (identities.c.email_sha256, identities.c.email_google_sha256,
                    identities.c.phone_sha256, identities.c.phone_meta_sha256)  # fmt: skip
    matches = [column.in_(hashes) for column in hash_columns] if hashes else []
    if crm_ids:
        matches.append(identities.c.crm_id.in_(crm_ids))
    seen = set(visitor_ids)
    if matches:
        seen |= set(conn.execute(select(identities.c.visitor_id).where(or_(*matches))).scalars())
    contact_keys = _contacts(conn, hashes, crm_ids)
    if hashes:  # visitors matched to a deal by one of the person's own keys
        query = select(match_links.c.visitor_id).where(match_links.c.key.in_(hashes))
        seen |= set(conn.execute(query).scalars())
    deals = _deals(conn, seen, contact_keys)
    theirs = _only_theirs(conn, deals, contact_keys)
    for deal in theirs:  # a deal that is theirs alone: its journey and click IDs are theirs
        journey, clicks = _journey(conn, deal)
        seen |= journey
        erased.identifiers |= clicks
    erased.identifiers |= seen | _click_ids(conn, seen, contact_keys)
    found = [identities.c.visitor_id.in_(seen), *matches] if seen else matches
    erased.counts["identities"] = _delete(conn, identities, found)
    erased.counts["match links"] = _delete(conn, match_links, [match_links.c.visitor_id.in_(seen)]
                                           if seen else [])  # fmt: skip
    erased.counts["touchpoints"] = _delete(conn, touchpoints, [touchpoints.c.visitor_id.in_(seen)]
                                           if seen else [])  # fmt: skip
    erased.counts["visitors"] = _delete(conn, visitors, [visitors.c.id.in_(seen)] if seen else [])
    erased.counts["contacts"] = _blank_contacts(conn, contact_keys)
    for source, deal_id in theirs:
        where = (deals_table.c.source == source, deals_table.c.id == deal_id)
        conn.execute(update(deals_table).where(*where).values(click_ids={}))
    erased.counts["ledger payloads"] = _strip_payloads(conn, deals, now)
    return erased


def blank_files(paths: Iterable[Path], identifiers: set[str]) -> int:
    """Replace each identifier with ``[erased]`` in every file under ``paths``; the number
    of files changed."""
    changed = 0
    needles = sorted((i for i in identifiers if len(i) >= 8), key=len, reverse=True)
    for root in paths:
        for path in root.rglob("*") if root.is_dir() else []:
            if not path.is_file():
                continue
            text = path.read_text(encoding="utf-8", errors="surrogateescape")
            new = text
            for needle in needles:
                new = new.replace(needle, "[erased]")
            if new != text:
                path.write_text(new, encoding="utf-8", errors="surrogateescape")
                changed += 1
    return changed


def _journey(conn: Connection, deal: tuple[str, str]) -> tuple[set[str], set[str]]:
    """The visitors matched to ``deal`` and the click IDs on its CRM record."""
    link, record = match_links.c, deals_table.c
    query = (
        select(link.visitor_id, record.click_ids)
        .join(deals_table, (record.source == link.source) & (record.id == link.deal_id))
        .where(link.source == deal[0], link.deal_id == deal[1])
    )
    journey: set[str] = set()
    clicks: set[str] = set()
    for visitor_id, ids in conn.execute(query):
        journey.add(visitor_id)
        clicks |= {str(v) for v in (ids or {}).values() if v}
    return journey, clicks


def _only_theirs(
    conn: Connection, deals: set[tuple[str, str]], contact_keys: set[tuple[str, str]]
) -> set[tuple[str, str]]:
    """The deals whose only contacts are the person's."""
    found = set()
    for source, deal_id in deals:
        query = select(deal_contacts.c.contact_id).where(
            deal_contacts.c.source == source, deal_contacts.c.deal_id == deal_id
        )
        people = {(source, c) for c in conn.execute(query).scalars()}
        if people and people <= contact_keys:
            found.add((source, deal_id))
    return found


def _contacts(conn: Connection, hashes: set[str], crm_ids: Sequence[str]) -> set[tuple[str, str]]:
    c = contacts.c
    columns = (c.email_sha256, c.email_google_sha256, c.email_ga4_sha256, c.phone_sha256,
               c.phone_meta_sha256)  # fmt: skip
    matches = [column.in_(hashes) for column in columns] if hashes else []
    if crm_ids:
        matches.append(c.crm_id.in_(crm_ids))
    if not matches:
        return set()
    return {(s, i) for s, i in conn.execute(select(c.source, c.crm_id).where(or_(*matches)))}


def _deals(
    conn: Connection, seen: set[str], contact_keys: set[tuple[str, str]]
) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    if seen:
        query = select(match_links.c.source, match_links.c.deal_id).where(
            match_links.c.visitor_id.in_(seen)
        )
        found |= {(s, d) for s, d in conn.execute(query)}
    for source, crm_id in contact_keys:
        query = select(deal_contacts.c.deal_id).where(
            deal_contacts.c.source == source, deal_contacts.c.contact_id == crm_id
        )
        found |= {(source, d) for d in conn.execute(query).scalars()}
    return found


def _click_ids(conn: Connection, seen: set[str], contact_keys: set[tuple[str, str]]) -> set[str]:
    found: set[str] = set()
    if seen:
        columns = [touchpoints.c[name] for name in _CLICK_COLUMNS]
        for row in conn.execute(select(*columns).where(touchpoints.c.visitor_id.in_(seen))):
            found |= {value for value in row if value}
    for source, crm_id in contact_keys:
        query = select(contacts.c.click_ids).where(
            contacts.c.source == source, contacts.c.crm_id == crm_id
        )
        for ids in conn.execute(query).scalars():
            found |= {str(v) for v in (ids or {}).values() if v}
    return found


def _delete(conn: Connection, table: Table, matches: Sequence[ColumnElement[bool]]) -> int:
    if not matches:
        return 0
    return conn.execute(delete(table).where(or_(*matches))).rowcount or 0


def _blank_contacts(conn: Connection, keys: set[tuple[str, str]]) -> int:
    done = 0
    for source, crm_id in keys:
        where = (contacts.c.source == source, contacts.c.crm_id == crm_id)
        query = update(contacts).where(*where).values(**_NO_HASHES, click_ids={})
        done += conn.execute(query).rowcount or 0
    return done


def _strip_payloads(conn: Connection, deals: set[tuple[str, str]], now: datetime) -> int:
    done = 0
    for source, deal_id in deals:
        rows = conn.execute(
            select(conversions.c.key, conversions.c.state, conversions.c.payload).where(
                conversions.c.source == source, conversions.c.deal_id == deal_id
            )
        ).all()
        for key, state, payload in rows:
            stripped = dataclasses.replace(
                Conversion.from_json(payload), click_ids=ClickIds(), person=PersonHashes(),
                external_id=None, attributes={},
            )  # fmt: skip
            values: dict[str, object] = {"payload": stripped.to_json().decode()}
            if state in _UNSENT:  # never sent after the person asked to be forgotten
                values |= {"state": "skipped", "error_code": ERASED, "updated_at": now,
                           "error_message": "the person was erased (revsync forget)"}  # fmt: skip
            done += (
                conn.execute(
                    update(conversions).where(conversions.c.key == key).values(**values)
                ).rowcount
                or 0
            )
    return done

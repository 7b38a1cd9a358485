"""Bulk import of touchpoints (clicks, sessions) and identities (leads) from CSV/JSONL.

Every row is validated on its own: a bad row is written to the rejects file with its row
number and reason, and the rest is imported. Re-importing the same file changes nothing
(touchpoint and identity IDs are derived from their content).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, String, Table
from sqlalchemy.exc import (
    DataError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    StatementError,
)

from revsync.collect.parsing import (
    CLICK_PARAMS,
    ParseError,
    channel_of,
    click_id,
    fb_cookie,
    fbc_from_fbclid,
    ga_client_id,
    parse_landing,
)
from revsync.config.mapping import ChannelRule, PrivacyConfig
from revsync.destinations.pii import InvalidIdentifier, hash_person
from revsync.errors import ConfigError
from revsync.privacy import mask_text
from revsync.rows import RejectsWriter, RowError, boolean, read_rows, text, timestamp
from revsync.store.queries import analyze, upsert
from revsync.store.schema import identities, touchpoints, visitors

BATCH_ROWS = 5_000


@dataclass
class ImportReport:
    """What an import did; ``errors`` holds the first few rejects for display."""

    read: int = 0
    imported: int = 0
    rejected: int = 0
    rejects_file: Path | None = None
    errors: list[str] = field(default_factory=list)


def touchpoint_id(visitor_id: str, occurred_at: str, landing_url: str | None) -> str:
    digest = hashlib.sha256(f"{visitor_id}|{occurred_at}|{landing_url or ''}".encode())
    return digest.hexdigest()[:40]


def truncate_ip(value: str) -> str:
    """Zero the last octet of IPv4 and all but the first 48 bits of IPv6."""
    parts = value.split(".")
    if len(parts) == 4 and all(_OCTET.match(part) for part in parts):
        return f"{parts[0]}.{parts[1]}.{parts[2]}.0"  # the common case, without ipaddress
    address = ipaddress.ip_address(value)
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


_OCTET = re.compile(r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\Z")


def _limits(table: Table) -> dict[str, int]:
    return {
        c.name: c.type.length
        for c in table.columns
        if isinstance(c.type, String) and c.type.length is not None
    }


_TOUCHPOINT_LIMITS = _limits(touchpoints)
_IDENTITY_LIMITS = _limits(identities)
_TEXT_LIMIT = 255  # UTM fields: longer values are cut, not refused


def _cut(value: str | None) -> str | None:
    return value[:_TEXT_LIMIT] if value else value


def _fits(row: dict[str, Any], limits: dict[str, int]) -> dict[str, Any]:
    """``row`` if every text value fits its column and has no NUL character (the store
    would refuse it otherwise)."""
    for name, value in row.items():
        if type(value) is str:
            if "\x00" in value:
                raise RowError(name, "contains a NUL character")
            limit = limits.get(name)
            if limit is not None and len(value) > limit:
                raise RowError(name, f"is longer than {limit} characters")
    return row


def _texts(row: dict[str, Any]) -> Callable[[str], str | None]:
    """``rows.text`` for the fields of ``row``, each value stripped once."""
    clean: dict[str, str] = {}
    others = False
    for name, value in row.items():
        if type(value) is str:
            value = value.strip()
            if value:
                clean[name] = value
        elif value is not None:
            others = True  # JSON: read (and refused if need be) by ``text`` when asked for
    if not others:
        return clean.get
    return lambda name: clean.get(name) or text(row, name)


def touchpoint_row(
    row: dict[str, Any], rules: Sequence[ChannelRule], privacy: PrivacyConfig
) -> dict[str, Any]:
    """Validate one touchpoint row into a store row; raises ``RowError`` naming the field."""
    visitor = text(row, "visitor_id", required=True)
    occurred = timestamp(row, "occurred_at", required=True)
    assert visitor is not None and occurred is not None
    return visit_row(visitor, occurred, _texts(row), partial(boolean, row), rules, privacy)


def visit_row(
    visitor: str,
    occurred: datetime,
    read_text: Callable[[str], str | None],
    read_flag: Callable[[str], bool | None],
    rules: Sequence[ChannelRule],
    privacy: PrivacyConfig,
) -> dict[str, Any]:
    """The store row of a visit by ``visitor`` at ``occurred`` (aware UTC), its other
    fields read by name: ``read_text`` a text (stripped; None when empty), ``read_flag`` a
    true/false. Raises ``RowError`` naming the field."""
    landing_url, referrer = read_text("landing_url"), read_text("referrer")
    try:
        landing = parse_landing(landing_url, referrer)
    except ParseError as exc:
        raise RowError(exc.field or "landing_url", str(exc)) from None
    clicks = dict(landing.click_ids)
    for name in CLICK_PARAMS:
        given = read_text(name)
        if given is None:
            continue
        try:
            value = click_id(name, given)
        except ParseError as exc:
            raise RowError(name, str(exc)) from None
        if value:
            clicks[name] = value
    present = [n for n in ("gclid", "gbraid", "wbraid") if n in clicks]
    if len(present) > 1 and "gclid" not in present:
        raise RowError(present[1], "gbraid and wbraid are never both set on one click")
    try:
        client_id = ga_client_id(read_text("_ga") or read_text("ga_client_id"))
    except ParseError as exc:
        raise RowError("_ga", str(exc)) from None
    try:
        fbp = fb_cookie("_fbp", read_text("_fbp") or read_text("fbp"))
        fbc = fb_cookie("_fbc", read_text("_fbc") or read_text("fbc"))
    except ParseError as exc:
        raise RowError(str(exc).split(" ")[0], str(exc)) from None
    if fbc is None and "fbclid" in clicks:
        fbc = fbc_from_fbclid(clicks["fbclid"], occurred)
    source = (_cut(read_text("utm_source") or landing.source) or "").lower() or None
    medium = (_cut(read_text("utm_medium") or landing.medium) or "").lower() or None
    campaign = _cut(read_text("utm_campaign") or landing.campaign)
    ip = read_text("ip")
    if ip is not None:
        try:
            ip = ip if privacy.keep_full_ip else truncate_ip(ip)
        except ValueError:
            raise RowError("ip", f"{ip!r} is not an IP address") from None
    return _fits({
        "id": touchpoint_id(visitor, occurred.isoformat(), landing_url),
        "visitor_id": visitor,
        "occurred_at": occurred,
        "channel": str(channel_of(source, medium, campaign, rules)),
        "source": source,
        "medium": medium,
        "campaign": campaign,
        "term": _cut(read_text("utm_term") or landing.term),
        "content": _cut(read_text("utm_content") or landing.content),
        "landing_url": landing_url,
        "referrer": referrer,
        "gclid": clicks.get("gclid"),
        "gbraid": None if "gclid" in clicks else clicks.get("gbraid"),
        "wbraid": None if clicks.keys() & {"gclid", "gbraid"} else clicks.get("wbraid"),
        "fbclid": clicks.get("fbclid"),
        "fbc": fbc,
        "fbp": fbp,
        "ga_client_id": client_id,
        "msclkid": clicks.get("msclkid"),
        "ttclid": clicks.get("ttclid"),
        "li_fat_id": clicks.get("li_fat_id"),
        "consent_ad_user_data": read_flag("consent_ad_user_data"),
        "consent_ad_personalization": read_flag("consent_ad_personalization"),
        "user_agent": read_text("user_agent"),
        "ip": ip,
    }, _TOUCHPOINT_LIMITS)  # fmt: skip


def identity_row(row: dict[str, Any], default_region: str | None) -> dict[str, Any]:
    """Validate one identity (lead) row; raw email and phone are hashed and dropped here."""
    visitor = text(row, "visitor_id", required=True)
    observed = timestamp(row, "observed_at", required=True)
    assert visitor is not None and observed is not None
    email, phone, crm_id = text(row, "email"), text(row, "phone"), text(row, "crm_id")
    if not (email or phone or crm_id):
        raise RowError("email", "a lead needs an email, a phone or a crm_id")
    try:
        hashes = hash_person(email, phone, default_region)
    except InvalidIdentifier as exc:
        name, _, reason = str(exc).partition(": ")
        raise RowError(name, reason) from None
    key = f"{visitor}|{hashes.email}|{hashes.phone}|{crm_id}"
    return _fits({
        "id": hashlib.sha256(key.encode()).hexdigest()[:40],
        "visitor_id": visitor,
        "observed_at": observed,
        "event": text(row, "event") or "lead",
        "email_sha256": hashes.email,
        "email_google_sha256": hashes.email_google,
        "phone_sha256": hashes.phone,
        "phone_meta_sha256": hashes.phone_meta,
        "crm_id": crm_id,
    }, _IDENTITY_LIMITS)  # fmt: skip


def import_touchpoints(
    engine: Engine,
    path: Path,
    rules: Sequence[ChannelRule] = (),
    privacy: PrivacyConfig | None = None,
    rejects: Path | None = None,
) -> ImportReport:
    privacy = privacy or PrivacyConfig()
    return _import(
        engine, path, rejects, lambda row: touchpoint_row(row, rules, privacy),
        _store_touchpoints, (visitors, touchpoints),
    )  # fmt: skip


def import_identities(
    engine: Engine,
    path: Path,
    default_region: str | None = None,
    rejects: Path | None = None,
) -> ImportReport:
    return _import(
        engine, path, rejects, lambda row: identity_row(row, default_region),
        _store_identities, (visitors, identities),
    )  # fmt: skip


def _import(
    engine: Engine,
    path: Path,
    rejects: Path | None,
    validate: Callable[[dict[str, Any]], dict[str, Any]],
    store: Callable[[Any, list[dict[str, Any]]], None],
    tables: tuple[Table, ...],
) -> ImportReport:
    reader = read_rows(path)  # a file that cannot be read at all is refused here
    rejects = rejects or path.with_name(f"{path.stem}.rejects{path.suffix}")
    if rejects.is_dir():
        reader.close()
        raise ConfigError(f"{rejects}: is a directory; give a file for the rejects")
    report = ImportReport()
    batch = _Batch(engine, store)
    with RejectsWriter(rejects, reader.fmt, reader.columns) as writer:

        def reject(number: int, row: dict[str, Any] | None, error: RowError) -> None:
            writer.write(number, row, error)
            if len(report.errors) < 20:
                report.errors.append(f"{path.name}: row {number}: {mask_text(str(error))}")

        batch.reject = reject
        try:
            for number, row in reader:
                report.read += 1
                if isinstance(row, RowError):
                    reject(number, row.content, row)
                    continue
                try:
                    batch.add(number, row, validate(row))
                except RowError as exc:
                    reject(number, row, exc)
        finally:  # rows read before an error are kept
            batch.flush()
        if batch.stored:
            with engine.begin() as conn:
                analyze(conn, tables)
        report.imported = batch.stored
        report.rejected = writer.count
    report.rejects_file = rejects if report.rejected else None
    return report


class _Batch:
    """Validated rows stored ``BATCH_ROWS`` at a time; a chunk the store refuses is split
    until the refused row is found and rejected, so one bad row never costs the chunk."""

    def __init__(self, engine: Engine, store: Callable[[Any, list[dict[str, Any]]], None]) -> None:
        self.engine, self.store = engine, store
        self.rows: list[tuple[int, dict[str, Any], dict[str, Any]]] = []
        self.stored = 0
        self.reject: Callable[[int, dict[str, Any] | None, RowError], None] = _no_reject

    def add(self, number: int, row: dict[str, Any], stored: dict[str, Any]) -> None:
        self.rows.append((number, row, stored))
        if len(self.rows) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        rows, self.rows = self.rows, []
        if rows:
            self._store(rows)

    def _store(self, rows: list[tuple[int, dict[str, Any], dict[str, Any]]]) -> None:
        try:
            with self.engine.begin() as conn:
                self.store(conn, [stored for _, _, stored in rows])
        except (DataError, IntegrityError, StatementError) as exc:
            if isinstance(exc, OperationalError | InterfaceError):
                raise
            if len(rows) == 1:
                number, row, _ = rows[0]
                reason = f"the store refused it ({type(getattr(exc, 'orig', exc)).__name__})"
                self.reject(number, row, RowError("(row)", reason))
                return
            middle = len(rows) // 2
            self._store(rows[:middle])
            self._store(rows[middle:])
            return
        self.stored += len(rows)


def _no_reject(number: int, row: dict[str, Any] | None, error: RowError) -> None:
    raise error


def _ensure_visitors(conn: Any, rows: list[dict[str, Any]], time_field: str) -> None:
    upsert(conn, visitors, visitor_rows(rows, time_field))


def visitor_rows(rows: list[dict[str, Any]], time_field: str) -> list[dict[str, Any]]:
    """One ``visitors`` row per visitor in ``rows`` (first/last seen, first known IDs)."""
    seen: dict[str, dict[str, Any]] = {}
    for row in rows:
        current = seen.get(row["visitor_id"])
        when = row[time_field]
        if current is None:
            seen[row["visitor_id"]] = {
                "id": row["visitor_id"],
                "first_seen": when,
                "last_seen": when,
                "ga_client_id": row.get("ga_client_id"),
                "fbp": row.get("fbp"),
            }
        else:
            current["first_seen"] = min(current["first_seen"], when)
            current["last_seen"] = max(current["last_seen"], when)
            current["ga_client_id"] = current["ga_client_id"] or row.get("ga_client_id")
            current["fbp"] = current["fbp"] or row.get("fbp")
    return list(seen.values())


def _store_touchpoints(conn: Any, rows: list[dict[str, Any]]) -> None:
    _ensure_visitors(conn, rows, "occurred_at")
    upsert(conn, touchpoints, rows)


def _store_identities(conn: Any, rows: list[dict[str, Any]]) -> None:
    _ensure_visitors(conn, rows, "observed_at")
    upsert(conn, identities, rows)

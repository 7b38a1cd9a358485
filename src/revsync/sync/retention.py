"""Retention windows (``privacy.touchpoints_days``, ``privacy.payloads_days``), applied by
every run at most once a day (the last pass is kept in ``sync_state`` under
``RETENTION``, in capitals like reconcile's marks, so it never meets a source's watermark).

- **Touchpoints** older than the window are deleted, except those a deal's credits name
  (the reports group revenue by the credited touchpoint's campaign and keyword). Visitors
  left with no touchpoint, identity or match link go with them. The window may not be
  shorter than ``matching.lookback_days``, so a deal closing today still finds its journey.
- **Payloads** of ledger rows that are done (sent, rejected, skipped, already sent) and
  last changed before the window lose the person: hashed email and phone, external ID,
  attributes and every click ID except the ones a later retraction or restatement is
  built from (GA4's client ID; Google's gclid, gbraid and wbraid). Keys, values, states
  and times stay, so nothing is sent twice and the reports still add up.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, delete, exists, select, update

from revsync.config.mapping import PrivacyConfig
from revsync.domain import ClickIds, Conversion, PersonHashes
from revsync.store import queries
from revsync.store.schema import (
    conversions,
    credits,
    identities,
    match_links,
    touchpoints,
    visitors,
)

MARK = "RETENTION"
EVERY = timedelta(days=1)
DONE = ("sent", "rejected", "skipped", "already_sent")
_CHUNK = 1_000


def apply_retention(engine: Engine, privacy: PrivacyConfig, now: datetime) -> dict[str, int]:
    """Apply the windows if a day has passed since the last pass; what was removed."""
    if privacy.touchpoints_days is None and privacy.payloads_days is None:
        return {}
    with engine.begin() as conn:
        last = queries.get_watermark(conn, MARK)
        previous = datetime.fromisoformat(last) if last else None
        if previous is not None and now - previous < EVERY:
            return {}
        done: dict[str, int] = {}
        if privacy.touchpoints_days is not None:
            cutoff = now - timedelta(days=privacy.touchpoints_days)
            done |= _touchpoints(conn, cutoff)
        if privacy.payloads_days is not None:
            window = timedelta(days=privacy.payloads_days)
            since = previous - window if previous is not None else None
            done["payloads stripped"] = _payloads(conn, since, now - window)
        queries.set_watermark(conn, MARK, now.isoformat())
    return {what: n for what, n in done.items() if n}


def _touchpoints(conn: Connection, cutoff: datetime) -> dict[str, int]:
    t, v = touchpoints.c, visitors.c
    credited = select(credits.c.touchpoint_id).where(credits.c.touchpoint_id == t.id)
    gone = conn.execute(
        delete(touchpoints).where(t.occurred_at < cutoff, ~exists(credited))
    ).rowcount
    unused = (
        delete(visitors)
        .where(v.last_seen < cutoff)
        .where(~exists(select(t.id).where(t.visitor_id == v.id)))
        .where(~exists(select(identities.c.id).where(identities.c.visitor_id == v.id)))
        .where(~exists(select(match_links.c.key).where(match_links.c.visitor_id == v.id)))
    )
    return {
        "touchpoints deleted": gone or 0,
        "visitors deleted": conn.execute(unused).rowcount or 0,
    }


def _payloads(conn: Connection, since: datetime | None, until: datetime) -> int:
    """Strip the rows that became done in ``[since, until)`` (all before ``until`` on the
    first pass); a later pass never reads them again."""
    c = conversions.c
    query = select(c.key, c.payload).where(c.state.in_(DONE), c.updated_at < until)
    if since is not None:
        query = query.where(c.updated_at >= since)
    stripped = 0
    rows = conn.execute(query.order_by(c.key)).all()
    for start in range(0, len(rows), _CHUNK):
        for key, payload in rows[start : start + _CHUNK]:
            kept = _stripped(Conversion.from_json(payload))
            if kept != payload:
                conn.execute(update(conversions).where(c.key == key).values(payload=kept))
                stripped += 1
    return stripped


def _stripped(conversion: Conversion) -> str:
    ids = conversion.click_ids
    kept = ClickIds(gclid=ids.gclid, gbraid=ids.gbraid, wbraid=ids.wbraid,
                    ga_client_id=ids.ga_client_id)  # fmt: skip
    return (
        dataclasses.replace(
            conversion, click_ids=kept, person=PersonHashes(), external_id=None, attributes={}
        )
        .to_json()
        .decode()
    )

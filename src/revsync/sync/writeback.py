"""Attribution write-back: first and last touch onto the CRM records of identified people.

For each source with ``push_attribution: true``, every person the CRM knows (identities
carrying a ``crm_id`` the source owns: digits for HubSpot, a Salesforce Id for Salesforce)
gets the touchpoints of all visitors linked to that ``crm_id`` summed up as:

- first touch: the earliest touchpoint;
- last touch: the latest non-direct touchpoint, or the latest one when all are direct, so a
  direct return visit does not overwrite the campaign that brought the person (the
  ``last_non_direct`` rule);

each with its channel, utm source, medium and campaign, click ID (gclid, else gbraid, wbraid,
fbclid) and that ID's kind, and its time (ISO 8601 UTC). Equal times are ordered by
touchpoint id. The values go to the fields the source's ``attribution_fields`` names; an
empty value clears its field. A person without touchpoints is not written.

Idempotent: ``writebacks`` keeps, per (source, crm_id), the hash of the payload last
written, and a person is written again only when it changes (new touchpoints, another
mapping). A record the CRM refuses (deleted, a field missing) is quarantined (kind
``writeback``); the refusal is stored with the payload's hash and retried after
``RETRY_REFUSED`` or as soon as the payload changes. Records of a request that failed as a
whole (network, 5xx after retries, the API budget) are not stored: the next run sends them.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from sqlalchemy import Connection, Engine, select

from revsync.config.mapping import HubSpotSource, RevsyncConfig, SalesforceSource
from revsync.domain import AttributionPush, ClickIds, PushResult, Quarantined, Touchpoint
from revsync.errors import PermanentError, TransientError
from revsync.sources.base import DealSource
from revsync.store import queries
from revsync.store.schema import identities, touchpoints, writebacks

if TYPE_CHECKING:
    from revsync.sync.summary import RunSummary

PEOPLE_PER_QUERY = 500
PUSH_CHUNK = 1_000  # records handed to a writer at once (it splits them per API limit)
RETRY_REFUSED = timedelta(days=1)


@runtime_checkable
class AttributionWriter(Protocol):
    """A source that can write attribution onto its contacts and leads."""

    name: str

    def owns(self, crm_id: str) -> bool:
        """Whether ``crm_id`` has the shape of this CRM's record ids."""
        ...

    def push_attribution(self, records: Sequence[AttributionPush]) -> list[PushResult]:
        """Write ``records``; one result per record tried (records not tried: none)."""
        ...


def push(
    engine: Engine,
    config: RevsyncConfig,
    sources: Sequence[DealSource],
    summary: RunSummary,
    now: datetime,
) -> None:
    """Write attribution through every source that has ``push_attribution`` on; counts go to
    ``summary.writeback``, refusals to ``summary.quarantined``. A source whose requests fail
    stops writing for this run (transient: a warning; permanent: a run failure)."""
    blocks = {block.name: block for block in config.sources}
    for source in sources:
        block = blocks.get(source.name)
        if not isinstance(block, SalesforceSource | HubSpotSource) or not block.push_attribution:
            continue
        if not isinstance(source, AttributionWriter):
            continue
        tally = summary.writeback[source.name] = {"pushed": 0, "failed": 0}
        try:
            _push_source(engine, source, block.attribution_fields, summary, tally, now)
        except TransientError as exc:
            summary.warnings.append(
                f"{source.name}: attribution write-back stopped ({exc}); resuming next run"
            )
        except PermanentError as exc:
            summary.failures.append(f"{source.name}: attribution write-back: {exc}")


def _push_source(
    engine: Engine,
    writer: AttributionWriter,
    fields: Mapping[str, str],
    summary: RunSummary,
    tally: dict[str, int],
    now: datetime,
) -> None:
    with engine.connect() as conn:
        known = conn.execute(
            select(identities.c.crm_id).where(identities.c.crm_id.is_not(None)).distinct()
        ).scalars()
        crm_ids = sorted(crm_id for crm_id in known if writer.owns(crm_id))
    pending: list[tuple[AttributionPush, str]] = []
    for start in range(0, len(crm_ids), PEOPLE_PER_QUERY):
        with engine.connect() as conn:
            pending += _due(conn, writer.name, crm_ids[start : start + PEOPLE_PER_QUERY],
                            fields, now)  # fmt: skip
        if len(pending) >= PUSH_CHUNK or start + PEOPLE_PER_QUERY >= len(crm_ids):
            if not _send(engine, writer, pending, summary, tally, now):
                return
            pending = []


def _due(
    conn: Connection,
    source: str,
    crm_ids: Sequence[str],
    fields: Mapping[str, str],
    now: datetime,
) -> list[tuple[AttributionPush, str]]:
    """The pushes (with their payload hash) of the people in ``crm_ids`` not yet written."""
    visitors_of: dict[str, set[str]] = defaultdict(set)
    for crm_id, visitor_id in conn.execute(
        select(identities.c.crm_id, identities.c.visitor_id).where(identities.c.crm_id.in_(crm_ids))
    ):
        visitors_of[crm_id].add(visitor_id)
    touches = _touchpoints(conn, sorted(set().union(*visitors_of.values())))
    written = {
        row.crm_id: row
        for row in conn.execute(
            select(writebacks).where(
                writebacks.c.source == source, writebacks.c.crm_id.in_(crm_ids)
            )
        )
    }
    out = []
    for crm_id in crm_ids:
        journey = sorted(
            (tp for visitor in visitors_of[crm_id] for tp in touches.get(visitor, ())),
            key=lambda tp: (tp.occurred_at, tp.id),
        )
        if not journey:
            continue
        last = next((tp for tp in reversed(journey) if not tp.is_direct), journey[-1])
        values = _touch_values("first", journey[0]) | _touch_values("last", last)
        payload = {name: values[key] for key, name in fields.items()}
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        row = written.get(crm_id)
        if (
            row is None
            or row.payload_hash != digest
            or (row.error is not None and row.pushed_at <= now - RETRY_REFUSED)
        ):
            out.append((AttributionPush(crm_id, payload), digest))
    return out


def _touchpoints(conn: Connection, visitor_ids: Sequence[str]) -> dict[str, list[Touchpoint]]:
    tp = touchpoints.c
    out: dict[str, list[Touchpoint]] = defaultdict(list)
    for start in range(0, len(visitor_ids), PEOPLE_PER_QUERY):
        rows = conn.execute(
            select(tp.id, tp.visitor_id, tp.occurred_at, tp.channel, tp.source, tp.medium,
                   tp.campaign, tp.gclid, tp.gbraid, tp.wbraid, tp.fbclid)
            .where(tp.visitor_id.in_(visitor_ids[start : start + PEOPLE_PER_QUERY]))
        )  # fmt: skip
        for row in rows:
            clicks = ClickIds(gclid=row.gclid, gbraid=row.gbraid, wbraid=row.wbraid,
                              fbclid=row.fbclid)  # fmt: skip
            out[row.visitor_id].append(
                Touchpoint(row.id, row.visitor_id, row.occurred_at, row.channel, row.source,
                           row.medium, row.campaign, click_ids=clicks)
            )  # fmt: skip
    return out


def _touch_values(touch: str, tp: Touchpoint) -> dict[str, str | None]:
    click = tp.click_ids.google_click or (
        ("fbclid", tp.click_ids.fbclid) if tp.click_ids.fbclid else None
    )
    return {
        f"{touch}_touch_channel": tp.channel,
        f"{touch}_touch_source": tp.source,
        f"{touch}_touch_medium": tp.medium,
        f"{touch}_touch_campaign": tp.campaign,
        f"{touch}_touch_click_id": click[1] if click else None,
        f"{touch}_touch_click_id_type": click[0] if click else None,
        f"{touch}_touch_at": tp.occurred_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _send(
    engine: Engine,
    writer: AttributionWriter,
    pending: Sequence[tuple[AttributionPush, str]],
    summary: RunSummary,
    tally: dict[str, int],
    now: datetime,
) -> bool:
    """Write ``pending`` and record the answers; ``False`` when the writer stopped early."""
    if not pending:
        return True
    results = writer.push_attribution([push for push, _ in pending])
    digests = {push.crm_id: digest for push, digest in pending}
    rows: list[dict[str, Any]] = []
    refused: list[Quarantined] = []
    for result in results:
        error = None
        if result.ok:
            tally["pushed"] += 1
        else:
            tally["failed"] += 1
            error = f"{result.code or 'ERROR'}: {result.message or ''}".rstrip(": ")
            refused.append(Quarantined(
                "writeback", result.crm_id, (result.field or "Id")[:80], error, writer.name,
            ))  # fmt: skip
        rows.append({"source": writer.name, "crm_id": result.crm_id, "error": error,
                     "payload_hash": digests[result.crm_id], "pushed_at": now})  # fmt: skip
    with engine.begin() as conn:
        queries.upsert(conn, writebacks, rows, update=("payload_hash", "pushed_at", "error"))
        queries.add_quarantined(conn, summary.run_id, refused, now)
    summary.quarantined.extend(refused)
    if len(results) < len(pending):
        summary.warnings.append(
            f"{writer.name}: attribution write-back stopped early (API budget); "
            f"{len(pending) - len(results)} records resume next run"
        )
        return False
    return True

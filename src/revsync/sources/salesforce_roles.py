"""Salesforce Opportunities whose contact roles changed while the Opportunity did not.

Adding, editing or removing an OpportunityContactRole gives the role its own
SystemModstamp but leaves the Opportunity's alone, so a read of the Opportunities changed
since the watermark never sees a contact a rep adds at or after close (issue #12). Each
incremental read therefore first asks which roles changed since the watermark (minus the
overlap; deleted roles included, so a removed contact counts too), then reads those
Opportunities again by Id, with the same fields, in chunks of ``IDS_PER_QUERY``.

Only Opportunities the main read will not return are read here: the role query keeps
those whose own SystemModstamp is before ``since`` and the read by Id checks that again
(an Opportunity edited between the two queries is left to the main read), so no deal is
read twice in one run.

Watermark: these pages keep the incoming watermark, since they come before the main
read; a run cut short here resumes with the same roles. The role query runs before the
main read starts, so once that read has finished every Opportunity stamped up to the
newest role stamp seen (``RoleChanges.newest``) has been read, and the source may then
move the watermark there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from revsync.sources.salesforce_values import soql_time, timestamp

QueryAll = Callable[[str], list[dict[str, Any]]]
"""Runs one SOQL query (queryAll: deleted records included) and returns every record,
flattened to ``{lowercased dotted path: value}``."""

IDS_PER_QUERY = 200


@dataclass(frozen=True, slots=True)
class RoleChanges:
    """Opportunities (not changed themselves) whose contact roles changed at or after
    ``since``."""

    since: datetime
    opportunity_ids: tuple[str, ...]
    newest: datetime | None  # the newest role SystemModstamp seen

    def __bool__(self) -> bool:
        return bool(self.opportunity_ids)


def changed(query_all: QueryAll, since: datetime) -> RoleChanges:
    """The Opportunities whose roles changed at or after ``since`` while their own
    SystemModstamp stayed before it (the main read returns the others)."""
    at = soql_time(since)
    soql = (
        "SELECT OpportunityId, SystemModstamp FROM OpportunityContactRole "  # noqa: S608
        f"WHERE SystemModstamp >= {at} AND Opportunity.SystemModstamp < {at}"
    )
    rows = query_all(soql)
    ids = sorted({r["opportunityid"] for r in rows if r.get("opportunityid")})
    stamps = [timestamp(r["systemmodstamp"]) for r in rows if r.get("systemmodstamp")]
    return RoleChanges(since, tuple(ids), max(stamps, default=None))


def opportunities(
    query_all: QueryAll, select: list[str], roles: RoleChanges
) -> Iterator[dict[str, Any]]:
    """The Opportunities of ``roles`` still stamped before its ``since``, ``select``ed, by
    Id."""
    ids, before = roles.opportunity_ids, soql_time(roles.since)
    for start in range(0, len(ids), IDS_PER_QUERY):
        quoted = ", ".join(f"'{i}'" for i in ids[start : start + IDS_PER_QUERY])
        soql = (
            f"SELECT {', '.join(select)} FROM Opportunity "  # noqa: S608
            f"WHERE Id IN ({quoted}) AND SystemModstamp < {before}"
        )
        yield from query_all(soql)

"""What a run did: counts per stage, the ``--json`` output, and the run's status."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from revsync.domain import OutcomeStatus, Quarantined


@dataclass
class RunSummary:
    """What a run did; ``as_dict`` is the ``--json`` output."""

    run_id: int = 0
    status: str = "running"  # then ok, partial, stopped, busy, failed or config_error
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    seconds: float = 0.0
    deals_read: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    deals_won: int = 0
    deals_matched: int = 0
    planned: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    results: dict[str, dict[str, int]] = field(default_factory=dict)  # this run's sends
    writeback: dict[str, dict[str, int]] = field(default_factory=dict)  # pushed / failed
    ledger: dict[str, dict[str, int]] = field(default_factory=dict)  # all rows, by state
    revenue_by_channel: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    quarantined: list[Quarantined] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    notes: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # sent, with a caveat
    rejections: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    retention: dict[str, int] = field(default_factory=dict)  # privacy windows: what went
    platform_reads: list[str] = field(default_factory=list)  # spend and clicks read
    warnings: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # what made the run fail
    # seconds each batch's send took, retries within it included (for metrics, not --json)
    batch_seconds: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    @property
    def rejected(self) -> int:
        return sum(r.get(OutcomeStatus.REJECTED, 0) for r in self.results.values())

    def why_partial(self) -> str:
        """What made the run partial, for its log line."""
        counts = {"rows rejected": self.rejected, "records quarantined": len(self.quarantined),
                  "warnings": len(self.warnings)}  # fmt: skip
        found = [f"{n:,} {what}" for what, n in counts.items() if n]
        return ", ".join(found) or "rows not delivered"

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "started_at": self.started_at.isoformat(),
            "seconds": round(self.seconds, 3),
            "deals_read": dict(self.deals_read),
            "deals_won": self.deals_won,
            "deals_matched": self.deals_matched,
            "conversions_planned": dict(self.planned),
            "results": self.results,
            "writeback": self.writeback,
            "ledger": self.ledger,
            "revenue_by_channel": {
                channel: {cur: str(amount) for cur, amount in by_cur.items()}
                for channel, by_cur in self.revenue_by_channel.items()
            },
            "skipped": dict(self.skipped),
            "notes": dict(self.notes),
            "retention": self.retention,
            "platform_reads": self.platform_reads,
            "rejections": dict(self.rejections),
            "quarantined": [
                {
                    "kind": q.kind,
                    "source": q.source,
                    "record_id": q.record_id,
                    "field": q.field,
                    "reason": q.reason,
                    **dict(q.detail),
                }
                for q in self.quarantined
            ],
            "warnings": self.warnings,
            "failures": self.failures,
        }

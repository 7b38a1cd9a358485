"""The ``Destination`` protocol: plan -> build payload -> send batch -> per-row outcome."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from revsync.domain import Conversion, Credit, Journey, Quarantined, UploadOutcome


@dataclass(frozen=True, slots=True)
class Plan:
    """What a destination wants to upload for one deal, and what it left out and why."""

    conversions: tuple[Conversion, ...] = ()
    skipped: tuple[Quarantined, ...] = field(default=())


class Destination(Protocol):
    """One configured ad platform (or a file standing in for it).

    ``resend_safe`` says whether the platform deduplicates on the idempotency key, so a
    batch interrupted mid-send may be sent again (Google order_id, Meta event_id).
    """

    name: str
    platform: str
    model: str
    batch_size: int
    resend_safe: bool

    def plan(self, journey: Journey, credits: Sequence[Credit], now: datetime) -> Plan:
        """Turn a won deal's credits into conversions (pure)."""
        ...

    def build(self, batch: Sequence[Conversion]) -> list[dict[str, Any]]:
        """The exact request bodies that ``send`` would send for ``batch`` (pure)."""
        ...

    def send(self, batch: Sequence[Conversion]) -> list[UploadOutcome]:
        """Send one batch (at most ``batch_size``); one outcome per conversion, same order."""
        ...

    def close(self) -> None:
        """Release connections and flush files."""
        ...

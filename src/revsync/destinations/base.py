"""The ``Destination`` protocol: plan -> build payload -> send batch -> per-row outcome.

A destination is a platform's pure rules (which touchpoints are eligible, what the request
body looks like) joined to a ``Transport`` that delivers the bodies: the platform's API,
or a file that receives the exact bodies (``transport: file``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from revsync.config.mapping import DestinationBase
from revsync.domain import (
    Consent,
    Conversion,
    ConversionKind,
    Credit,
    Deal,
    Journey,
    Quarantined,
    Touchpoint,
    UploadOutcome,
    detailed,
)


@dataclass(frozen=True, slots=True)
class Plan:
    """What a destination wants to upload for one deal, and what it left out and why."""

    conversions: tuple[Conversion, ...] = ()
    skipped: tuple[Quarantined, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class ApiRequest:
    """One request body and the idempotency keys of its rows, in row order."""

    endpoint: str
    body: dict[str, Any]
    keys: tuple[str, ...]


class Transport(Protocol):
    """Delivers request bodies; answers one outcome per key of the request."""

    def send(self, request: ApiRequest) -> list[UploadOutcome]: ...

    def close(self) -> None: ...


@runtime_checkable
class ReadsRequestStatus(Protocol):
    """A transport whose platform processes requests later (Data Manager): rows are SENT
    with ``accepted_code`` and a request ID; ``check_status`` reads the verdict back."""

    accepted_code: str

    def check_status(self, request_ids: Iterable[str]) -> Mapping[str, RequestVerdict]: ...


@dataclass(frozen=True, slots=True)
class RequestVerdict:
    """What the platform made of one request: its state and record counts per reason."""

    request_id: str
    state: str  # PROCESSING | SUCCESS | PARTIAL_SUCCESS | FAILED | INVALID_REQUEST_ID | ...
    record_count: int = 0
    errors: Mapping[str, int] = field(default_factory=dict)
    warnings: Mapping[str, int] = field(default_factory=dict)


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

    def adjustment(
        self, original: Conversion, kind: ConversionKind, value: Decimal, now: datetime
    ) -> Conversion | None:
        """A restatement or retraction of a sent conversion; ``None`` if unsupported."""
        ...

    def build(self, batch: Sequence[Conversion]) -> list[ApiRequest]:
        """The exact requests that ``send`` sends for ``batch`` (pure)."""
        ...

    def send(self, batch: Sequence[Conversion]) -> list[UploadOutcome]:
        """Send one batch (at most ``batch_size``); one outcome per conversion."""
        ...

    def close(self) -> None: ...


def conversion_key(*parts: str | None) -> str:
    """A stable idempotency key: SHA-256 of the parts, 32 hex chars, no PII inside."""
    return hashlib.sha256("|".join(p or "" for p in parts).encode()).hexdigest()[:32]


ConfigT = TypeVar("ConfigT", bound=DestinationBase)


class PlatformDestination(Generic[ConfigT]):
    """Shared plumbing: the destination's mapping block, batching limits, the transport,
    consent enforcement and the clock."""

    platform = ""
    max_batch = 1
    resend_safe = False

    def __init__(
        self,
        config: ConfigT,
        model: str,
        transport: Transport,
        require_consent: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.model = model
        self.transport = transport
        self.require_consent = require_consent
        self.batch_size = min(config.batch_size or self.max_batch, self.max_batch)
        self.clock = clock or (lambda: datetime.now(UTC))

    def conversion(
        self,
        deal: Deal,
        action: str,
        value: Decimal,
        touchpoint: Touchpoint | None = None,
        **fields: Any,
    ) -> Conversion:
        """A conversion of a won ``deal`` (at its close time), keyed by destination,
        action, deal and touchpoint: the same inputs always give the same key."""
        assert deal.close_at is not None
        tp_id = touchpoint.id if touchpoint else None
        return Conversion(
            key=conversion_key(self.name, action, deal.source, deal.id, tp_id),
            destination=self.name,
            platform=self.platform,
            kind=ConversionKind.CONVERSION,
            source=deal.source,
            deal_id=deal.id,
            action=action,
            event_time=deal.close_at,
            value=value,
            currency=deal.currency,
            touchpoint_id=tp_id,
            consent=touchpoint.consent if touchpoint else Consent(),
            **fields,
        )

    def build(self, batch: Sequence[Conversion]) -> list[ApiRequest]:
        raise NotImplementedError

    def send(self, batch: Sequence[Conversion]) -> list[UploadOutcome]:
        outcomes: list[UploadOutcome] = []
        for request in self.build(batch):
            outcomes.extend(self.transport.send(request))
        return outcomes

    def close(self) -> None:
        self.transport.close()


def credited(
    journey: Journey, credits: Sequence[Credit], destination: str, require_consent: bool
) -> tuple[list[tuple[Touchpoint, Credit]], list[Quarantined]]:
    """The journey's touchpoints with a positive credit, consent-denied ones left out.

    Credited touchpoints must carry their details (``matching.resolve.with_details``).
    """
    by_id = {tp.id: tp for tp in journey.touchpoints}
    eligible: list[tuple[Touchpoint, Credit]] = []
    skipped: list[Quarantined] = []
    for credit in credits:
        tp = by_id.get(credit.touchpoint_id)
        if tp is None or credit.weight <= 0:
            continue
        tp = detailed(tp, journey.deal)
        if require_consent and tp.consent.denies_ads:
            skipped.append(
                Quarantined(
                    "conversion",
                    journey.deal.id,
                    "consent_ad_user_data",
                    f"{destination}: visitor denied ad consent; not uploaded",
                    journey.deal.source,
                    {"touchpoint": tp.id},
                )
            )
            continue
        eligible.append((tp, credit))
    return eligible, skipped


def upload_value(deal_amount: Decimal | None, credit: Credit, value_mode: str) -> Decimal:
    return (deal_amount or Decimal(0)) if value_mode == "full" else credit.amount

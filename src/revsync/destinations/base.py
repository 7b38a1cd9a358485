"""The ``Destination`` protocol: plan -> build payload -> send batch -> per-row outcome.

A destination is a platform's pure rules (which touchpoints are eligible, what the request
body looks like) joined to a ``Transport`` that delivers the bodies: the platform's API,
or a file that receives the exact bodies (``transport: file``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from revsync.config.destinations import DestinationBase
from revsync.destinations.people import People, Person
from revsync.domain import (
    ClickIds,
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
    key: str = ""  # the deal's idempotency key at this destination
    notes: tuple[str, ...] = ()  # what the platform will do differently (counted, not skipped)


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

NOT_CREDITED = "nothing credited to this platform's touchpoints"
CONSENT_DENIED = "visitor denied ad consent; not uploaded"
CONSENT_UNKNOWN = "no ad consent signal for this person (privacy.unknown_consent: deny)"
CLOSED_BEFORE_START = "closed before the destination's start date"


class PlatformDestination(Generic[ConfigT]):
    """Shared plumbing and the planning rules every platform follows: one conversion per
    deal, worth the model's credits on the platform's own touchpoints, carrying the
    identifiers of one person who has not denied ad consent, never dated in the future.

    A platform says which touchpoints are its own (``owns``), which identifier a touchpoint
    gives it (``identifier``), whether the person's hashed email/phone alone may identify a
    conversion (``person_only``) and how a row is filled (``fill``).
    """

    platform = ""
    max_batch = 1
    resend_safe = False
    identifier_name = "identifier"
    browser_ids = False  # identifiers are browser cookies: any visit of the visitor has them

    def __init__(
        self,
        config: ConfigT,
        model: str,
        transport: Transport,
        require_consent: bool = True,
        clock: Callable[[], datetime] | None = None,
        grant_unknown_consent: bool = False,
    ) -> None:
        self.config = config
        self.name = config.name
        self.model = model
        self.transport = transport
        self.require_consent = require_consent
        self.grant_unknown_consent = grant_unknown_consent
        self.batch_size = min(config.batch_size or self.max_batch, self.max_batch)
        self.clock = clock or (lambda: datetime.now(UTC))

    # --- what a platform decides ----------------------------------------------------

    def action_for(self, deal: Deal) -> str:
        raise NotImplementedError

    def owns(self, touchpoint: Touchpoint) -> bool:
        """Whether the touchpoint's credit belongs to this platform."""
        return True

    def identifier(self, touchpoint: Touchpoint, deal: Deal) -> ClickIds | None:
        """The platform's identifiers on this touchpoint, or ``None`` if it has none."""
        return None

    @property
    def person_only(self) -> bool:
        """Whether a person's hashed email/phone may identify a conversion alone."""
        return False

    def too_old(self, event_time: datetime, now: datetime) -> str | None:
        """Why a conversion at ``event_time`` can no longer be sent, if it cannot."""
        return None

    def fill(self, conversion: Conversion, person: Person, deal: Deal) -> Conversion:
        """Platform fields of a planned conversion (hashes, external IDs)."""
        return conversion

    # --- planning -------------------------------------------------------------------

    def deal_key(self, deal: Deal) -> str:
        """The one idempotency key of ``deal`` at this destination."""
        return conversion_key(self.name, self.action_for(deal), deal.source, deal.id, None)

    def plan(self, journey: Journey, credits: Sequence[Credit], now: datetime) -> Plan:
        deal = journey.deal
        assert deal.close_at is not None
        key = self.deal_key(deal)
        since = self.config.since
        if since is not None and deal.close_at.date() < since:
            return self._skip(deal, key, "close_date", CLOSED_BEFORE_START)
        event_time = min(deal.close_at, now)  # a close later today is not sent as future
        reason = self.too_old(event_time, now)
        if reason:
            return self._skip(deal, key, "close_date", reason)
        shares = credited(journey, credits)
        mine = [(tp, c) for tp, c in shares if self.owns(tp)]
        full = self.config.value_mode == "full"
        value = sum((c.amount for _, c in mine), Decimal(0))
        if full:
            value = deal.amount or Decimal(0)
        if value <= 0 or not (mine or full):
            return self._skip(deal, key, "amount", NOT_CREDITED)
        people = People(journey)
        # The platform's touchpoint with the largest credit, ties to the latest; under
        # ``full``, then the other credited touchpoints.
        ranked = _ranked(mine) + (_ranked([s for s in shares if s not in mine]) if full else [])
        candidates = [tp for tp, _ in ranked]
        if self.browser_ids:  # a cookie of the same browser, seen on another of its visits
            candidates += [
                detailed(tp, deal)
                for visitor in dict.fromkeys(tp.visitor_id for tp in candidates)
                for tp in reversed(journey.touchpoints)
                if tp.visitor_id == visitor
            ]
        refused: str | None = None
        for tp in candidates:
            ids = self.identifier(tp, deal)
            if ids is None:
                continue
            person = people.of_visitor(tp.visitor_id)
            refused = self._refusal(person)
            if refused is None:
                return self._planned(deal, key, value, event_time, person, tp, ids)
        if self.person_only:
            ranked_people = [people.of_visitor(tp.visitor_id) for tp, _ in ranked]
            for person in [*ranked_people, *people.contacts()]:
                if person.contact is None or not person.contact.hashes.any():
                    continue
                refusal = self._refusal(person)
                if refusal is None:
                    return self._planned(deal, key, value, event_time, person, None, ClickIds())
                refused = refused or refusal
        return self._skip(
            deal, key, "consent_ad_user_data" if refused else self.identifier_name,
            refused or f"no {self.identifier_name} on the platform's credited touchpoints",
        )  # fmt: skip

    def _refusal(self, person: Person) -> str | None:
        if not self.require_consent:
            return None
        stated = person.consent.ad_user_data
        if stated is False:
            return CONSENT_DENIED
        if stated is None and not self.grant_unknown_consent:
            return CONSENT_UNKNOWN
        return None

    def _planned(
        self,
        deal: Deal,
        key: str,
        value: Decimal,
        event_time: datetime,
        person: Person,
        touchpoint: Touchpoint | None,
        ids: ClickIds,
    ) -> Plan:
        consent = person.consent
        if consent.ad_user_data is None and self.require_consent:
            consent = Consent(True, consent.ad_personalization)  # granted by the mapping
        conversion = Conversion(
            key=key,
            destination=self.name,
            platform=self.platform,
            kind=ConversionKind.CONVERSION,
            source=deal.source,
            deal_id=deal.id,
            action=self.action_for(deal),
            event_time=event_time,
            value=value,
            currency=deal.currency,
            touchpoint_id=touchpoint.id if touchpoint else None,
            click_ids=ids,
            consent=consent,
        )
        return Plan((self.fill(conversion, person, deal),), key=key)

    def _skip(self, deal: Deal, key: str, field_name: str, reason: str) -> Plan:
        item = Quarantined(
            "conversion", deal.id, field_name, f"{self.name}: {reason}", deal.source, {"key": key}
        )
        return Plan(skipped=(item,), key=key)

    def adjusted_time(self, original: Conversion, now: datetime) -> datetime:
        """An adjustment's time: now, and always after the conversion it changes."""
        return max(now, original.event_time + timedelta(seconds=1))

    # --- sending --------------------------------------------------------------------

    def build(self, batch: Sequence[Conversion]) -> list[ApiRequest]:
        raise NotImplementedError

    def send(self, batch: Sequence[Conversion]) -> list[UploadOutcome]:
        outcomes: list[UploadOutcome] = []
        for request in self.build(batch):
            outcomes.extend(self.transport.send(request))
        return outcomes

    def close(self) -> None:
        self.transport.close()


def credited(journey: Journey, credits: Sequence[Credit]) -> list[tuple[Touchpoint, Credit]]:
    """The journey's touchpoints with a positive credit, as full ``Touchpoint``s.

    Credited touchpoints must carry their details (``matching.resolve.with_details``).
    """
    by_id = {tp.id: tp for tp in journey.touchpoints}
    return [
        (detailed(by_id[credit.touchpoint_id], journey.deal), credit)
        for credit in credits
        if credit.weight > 0 and credit.touchpoint_id in by_id
    ]


def _ranked(shares: list[tuple[Touchpoint, Credit]]) -> list[tuple[Touchpoint, Credit]]:
    """Largest credit first, ties to the latest touchpoint."""
    return sorted(shares, key=lambda pair: (pair[1].weight, pair[0].occurred_at), reverse=True)

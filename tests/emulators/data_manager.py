"""A local plain-HTTP emulator of the Data Manager API event ingestion (IngestionService, REST).

Serves the two routes the REST transport of ``google-ads-datamanager`` calls for events:
``POST /v1/events:ingest`` and ``GET /v1/requestStatus:retrieve``. Requests are parsed into the
package's own message types, so both enum encodings (names, or integers when the client asks
for ``$alt=json;enum-encoding=int``) and RFC 3339 timestamps behave as on the wire.

Ingestion is fast-fail: any invalid field rejects the whole request with ``400
INVALID_ARGUMENT`` and a ``BadRequest`` listing every violation. Accepted requests get a
``requestId``; each event is judged later (after ``processing_delay`` on the emulator clock)
and the outcome is visible only through the request status: per destination, a record count
and error counts per ``ProcessingErrorReason``. See docs/data-manager.md for what is confirmed.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
import threading
import uuid
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from google.ads import datamanager_v1 as dm
from google.protobuf import json_format

from tests.emulators.loopback import LoopbackServer, Response

INGEST_EVENTS_PATH = "/v1/events:ingest"
RETRIEVE_STATUS_PATH = "/v1/requestStatus:retrieve"
TOKEN_PATH = "/token"
MAX_EVENTS = 2000
MAX_USER_IDENTIFIERS = 10
MAX_DESTINATIONS = 10
DOMAIN = "datamanager.googleapis.com"

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_CLICK_ID = re.compile(r"^[A-Za-z0-9_-]+$")
_DIGITS = re.compile(r"^[0-9]+$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_HEX = re.compile(r"^[0-9a-fA-F]*$")
_AD_ID_KINDS = ("gclid", "gbraid", "wbraid")
_GOOGLE_ADS = dm.ProductAccount.AccountType.GOOGLE_ADS
_Status = dm.RequestStatusPerDestination.RequestStatus
_Reason = dm.ProcessingErrorReason


class EmulatorClock:
    """A frozen clock that moves only when told to (UTC)."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self._now = start or dt.datetime.now(dt.UTC).replace(microsecond=0)
        self._lock = threading.Lock()

    def now(self) -> dt.datetime:
        with self._lock:
            return self._now

    def set(self, when: dt.datetime) -> None:
        with self._lock:
            self._now = when

    def advance(self, delta: dt.timedelta) -> dt.datetime:
        with self._lock:
            self._now += delta
            return self._now


@dataclass(frozen=True)
class Click:
    """A seeded ad click: ``kind`` is gclid, gbraid or wbraid."""

    kind: str
    click_id: str
    customer_id: str
    at: dt.datetime


@dataclass(frozen=True)
class RowOutcome:
    """The emulator's verdict on one event for one destination (``reason`` None = ingested)."""

    destination_index: int
    event_index: int
    reason: str | None


@dataclass(frozen=True)
class StoredEvent:
    """An event that was processed successfully into a conversion action."""

    request_id: str
    customer_id: str
    conversion_action_id: str
    event: dm.Event


@dataclass
class IngestRecord:
    """An accepted ``IngestEventsRequest``; ``outcomes`` stays None while processing."""

    request_id: str
    request: dm.IngestEventsRequest
    received_at: dt.datetime
    outcomes: list[RowOutcome] | None = None


@dataclass
class _Fault:
    status: int
    times: int
    rpc: str | None


class ApiError(Exception):
    """An error answered as the Google JSON error envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        reason: str | None = None,
        domain: str = DOMAIN,
        violations: list[tuple[str, str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        self.domain = domain
        self.violations = violations or []

    def envelope(self) -> dict[str, Any]:
        trace = f"t-{uuid.uuid4()}"
        details: list[dict[str, Any]] = []
        if self.reason:
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": self.reason,
                    "domain": self.domain,
                    "metadata": {"requestId": trace},
                }
            )
        details.append({"@type": "type.googleapis.com/google.rpc.RequestInfo", "requestId": trace})
        if self.violations:
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [
                        {"field": f, "description": d, "reason": r} for f, d, r in self.violations
                    ],
                }
            )
        return {
            "error": {
                "code": self.status,
                "message": self.message,
                "status": _STATUS_NAMES.get(self.status, "UNKNOWN"),
                "details": details,
            }
        }


class _Violations:
    """Collects ``BadRequest`` field violations for one request."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, str]] = []

    def add(self, path: str, reason: str, description: str) -> None:
        self.items.append((path, description, reason))

    def raise_if_any(self) -> None:
        if self.items:
            raise ApiError(
                400,
                "There was a problem with the request.",
                reason="INVALID_ARGUMENT",
                violations=self.items,
            )


class DataManagerEmulator(LoopbackServer):
    """Data Manager API events emulator on 127.0.0.1; use as a context manager or start/stop."""

    methods = ("GET", "POST")

    def __init__(
        self,
        *,
        tokens: set[str] | frozenset[str] = frozenset({"test-token"}),
        refresh_tokens: set[str] | frozenset[str] = frozenset({"test-refresh-token"}),
        accept_issued_tokens: bool = True,
        clock: EmulatorClock | None = None,
        processing_delay: dt.timedelta = dt.timedelta(0),
        click_window: dt.timedelta = dt.timedelta(days=90),
        too_recent_click: dt.timedelta = dt.timedelta(0),
        rate_limit_per_minute: int | None = 300,
    ) -> None:
        super().__init__()
        self.tokens = set(tokens)
        self.refresh_tokens = set(refresh_tokens)
        self.accept_issued_tokens = accept_issued_tokens
        self.clock = clock or EmulatorClock()
        self.processing_delay = processing_delay
        self.click_window = click_window
        self.too_recent_click = too_recent_click
        self.rate_limit_per_minute = rate_limit_per_minute
        self.calls: Counter[str] = Counter()
        self.requests: dict[str, IngestRecord] = {}
        self.wire_bodies: list[Any] = []  # every IngestEvents JSON body, as received
        self._events: list[StoredEvent] = []
        self._actions: set[tuple[str, str]] = set()
        self._clicks: dict[tuple[str, str], Click] = {}
        self._transactions: set[tuple[str, str, str]] = set()
        self._pending: deque[IngestRecord] = deque()
        self._rpc_faults: list[_Fault] = []
        self._recent: deque[dt.datetime] = deque()

    @property
    def token_uri(self) -> str:
        """The OAuth token endpoint (refresh-token grant) to put in ``Credentials(token_uri=)``."""
        return f"http://{self.host}{TOKEN_PATH}"

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, as ``IngestionServiceRestTransport(host=...)`` takes it."""
        return f"127.0.0.1:{self.port}"

    # -- seeding, faults, inspection ---------------------------------------------------------

    def add_conversion_action(self, customer_id: str, conversion_action_id: str) -> None:
        with self._lock:
            self._actions.add((customer_id, conversion_action_id))

    def add_click(
        self, click_id: str, *, customer_id: str, at: dt.datetime, kind: str = "gclid"
    ) -> Click:
        if kind not in _AD_ID_KINDS:
            raise ValueError(f"kind must be one of {_AD_ID_KINDS}")
        click = Click(kind, click_id, customer_id, at)
        with self._lock:
            self._clicks[(kind, click_id)] = click
        return click

    def fail_next(self, status: int, *, times: int = 1, rpc: str | None = None) -> None:
        """Answer the next ``times`` calls (of ``rpc``, or any) with ``status`` (429, 503, ...)."""
        with self._lock:
            self._rpc_faults.append(_Fault(status, times, rpc))

    @property
    def events(self) -> list[StoredEvent]:
        """Successfully processed events, after processing whatever is due."""
        self.process_due()
        with self._lock:
            return list(self._events)

    def process_due(self) -> None:
        """Judge, in arrival order, every accepted request whose processing time has come."""
        with self._lock:
            now = self.clock.now()
            while self._pending and self._pending[0].received_at + self.processing_delay <= now:
                self._process(self._pending.popleft(), now)

    # -- request handling --------------------------------------------------------------------

    def respond(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        status, payload = self.handle(method, target, headers, body)
        response = Response.json(status, payload)
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="https://accounts.google.com/"'
        return response

    def handle(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        """Route one HTTP request; returns (status, JSON body)."""
        url = urlsplit(raw_path)
        if (method, url.path) == ("POST", TOKEN_PATH):
            with self._lock:
                self.calls["Token"] += 1
            return self._token(parse_qs(body.decode()))
        rpc = {
            ("POST", INGEST_EVENTS_PATH): "IngestEvents",
            ("GET", RETRIEVE_STATUS_PATH): "RetrieveRequestStatus",
        }.get((method, url.path))
        if rpc is None:
            return 404, ApiError(404, f"Method not found: {method} {url.path}").envelope()
        query = parse_qs(url.query)
        ints = "enum-encoding=int" in ";".join(query.get("$alt", []))
        with self._lock:
            self.calls[rpc] += 1
        try:
            self._authenticate(headers)
            self._admit(rpc)
            self.process_due()
            if rpc == "IngestEvents":
                return 200, self._ingest(body)
            request_id = (query.get("requestId") or [""])[0]
            return 200, self._retrieve(request_id, ints)
        except ApiError as err:
            return err.status, err.envelope()

    def _token(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        """OAuth 2 refresh-token grant, answered the way Google's token endpoint does."""
        grant = (form.get("grant_type") or [""])[0]
        refresh_token = (form.get("refresh_token") or [""])[0]
        if grant != "refresh_token" or refresh_token not in self.refresh_tokens:
            return 400, {
                "error": "invalid_grant",
                "error_description": "Token has been expired or revoked.",
            }
        token = f"ya29.emulated-{uuid.uuid4().hex}"
        if self.accept_issued_tokens:
            with self._lock:
                self.tokens.add(token)
        return 200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}

    def _authenticate(self, headers: dict[str, str]) -> None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApiError(
                401,
                "Request is missing required authentication credential. Expected OAuth 2 "
                "access token, login cookie or other valid authentication credential.",
                reason="CREDENTIALS_MISSING",
                domain="googleapis.com",
            )
        if token not in self.tokens:
            raise ApiError(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential.",
                reason="ACCESS_TOKEN_EXPIRED",
                domain="googleapis.com",
            )

    def _admit(self, rpc: str) -> None:
        with self._lock:
            for fault in self._rpc_faults:
                if fault.times > 0 and fault.rpc in (None, rpc):
                    fault.times -= 1
                    raise _fault_error(fault.status)
            if self.rate_limit_per_minute is None:
                return
            now = self.clock.now()
            while self._recent and now - self._recent[0] >= dt.timedelta(minutes=1):
                self._recent.popleft()
            if len(self._recent) >= self.rate_limit_per_minute:
                raise _fault_error(429)
            self._recent.append(now)

    def _ingest(self, body: bytes) -> dict[str, Any]:
        try:
            with self._lock:
                self.wire_bodies.append(json.loads(body))
            request = dm.IngestEventsRequest.from_json(body.decode("utf-8"))
        except (ValueError, json_format.ParseError) as err:
            raise ApiError(400, f"Invalid JSON payload received. {err}") from err
        self._validate(request)
        if request.validate_only:
            return {}
        with self._lock:
            record = IngestRecord(str(uuid.uuid4()), request, self.clock.now())
            self.requests[record.request_id] = record
            self._pending.append(record)
        self.process_due()
        return {"requestId": record.request_id}

    def _validate(self, request: dm.IngestEventsRequest) -> None:
        v = _Violations()
        references = self._validate_destinations(request.destinations, v)
        if not request.events:
            v.add("events", "REQUIRED_FIELD_MISSING", "Required field is missing.")
        elif len(request.events) > MAX_EVENTS:
            v.add("events", "TOO_MANY_EVENTS", f"At most {MAX_EVENTS} events per request.")
        else:
            now = self.clock.now()
            for j, event in enumerate(request.events):
                _validate_event(f"events.events[{j}]", event, request, references, now, v)
        v.raise_if_any()
        with self._lock:
            customers = {customer for customer, _ in self._actions}
            for i, dest in enumerate(request.destinations):
                customer = dest.operating_account.account_id
                if customer not in customers:
                    raise ApiError(
                        403,
                        "The caller does not have permission",
                        reason="PERMISSION_DENIED",
                    )
                if (customer, dest.product_destination_id) not in self._actions:
                    v.add(
                        f"destinations[{i}].product_destination_id",
                        "INVALID_CONVERSION_ACTION_ID",
                        "Conversion action ID is not valid.",
                    )
        v.raise_if_any()

    @staticmethod
    def _validate_destinations(destinations: list[dm.Destination], v: _Violations) -> set[str]:
        if not destinations:
            v.add("destinations", "REQUIRED_FIELD_MISSING", "Required field is missing.")
        if len(destinations) > MAX_DESTINATIONS:
            v.add("destinations", "TOO_MANY_DESTINATIONS", "At most 10 destinations.")
        references: set[str] = set()
        for i, dest in enumerate(destinations):
            path = f"destinations[{i}]"
            if dest.reference:
                if dest.reference in references:
                    v.add(
                        f"{path}.reference",
                        "DUPLICATE_DESTINATION_REFERENCE",
                        "Two or more destinations have the same reference.",
                    )
                references.add(dest.reference)
            for role in ("operating_account", "login_account", "linked_account"):
                if role in dest or role == "operating_account":
                    _validate_account(f"{path}.{role}", getattr(dest, role), v)
            if not dest.product_destination_id:
                v.add(
                    f"{path}.product_destination_id",
                    "REQUIRED_FIELD_MISSING",
                    "Required field is missing.",
                )
            elif not _DIGITS.match(dest.product_destination_id):
                v.add(
                    f"{path}.product_destination_id",
                    "INVALID_CONVERSION_ACTION_ID",
                    "Conversion action ID is not valid.",
                )
        return references

    def _retrieve(self, request_id: str, ints: bool) -> dict[str, Any]:
        if not request_id:
            raise ApiError(
                400,
                "There was a problem with the request.",
                reason="INVALID_ARGUMENT",
                violations=[("request_id", "Required field is missing.", "REQUIRED_FIELD_MISSING")],
            )
        with self._lock:
            record = self.requests.get(request_id)
        if record is None:
            raise ApiError(
                400,
                "There was a problem with the request.",
                reason="INVALID_ARGUMENT",
                violations=[("request_id", "The request ID is not valid.", "INVALID_REQUEST_ID")],
            )
        response = dm.RetrieveRequestStatusResponse(
            request_status_per_destination=[
                _destination_status(record, i) for i in range(len(record.request.destinations))
            ]
        )
        return json_format.MessageToDict(
            dm.RetrieveRequestStatusResponse.pb(response), use_integers_for_enums=ints
        )

    # -- asynchronous processing -------------------------------------------------------------

    def _process(self, record: IngestRecord, now: dt.datetime) -> None:
        request = record.request
        outcomes: list[RowOutcome] = []
        for i, dest in enumerate(request.destinations):
            customer = dest.operating_account.account_id
            action = dest.product_destination_id
            for j, event in enumerate(request.events):
                if event.destination_references and dest.reference not in (
                    event.destination_references
                ):
                    continue
                reason = self._judge(event, request, customer, action, now)
                outcomes.append(RowOutcome(i, j, reason))
                if reason is None:
                    if event.transaction_id:
                        self._transactions.add((customer, action, event.transaction_id))
                    self._events.append(StoredEvent(record.request_id, customer, action, event))
        record.outcomes = outcomes

    def _judge(
        self,
        event: dm.Event,
        request: dm.IngestEventsRequest,
        customer: str,
        action: str,
        now: dt.datetime,
    ) -> str | None:
        consent = event.consent if "consent" in event else request.consent
        if consent.ad_user_data == dm.ConsentStatus.CONSENT_DENIED:
            return _Reason.PROCESSING_ERROR_REASON_DENIED_CONSENT.name
        for kind in _AD_ID_KINDS:
            click_id = getattr(event.ad_identifiers, kind)
            if not click_id:
                continue
            if not _CLICK_ID.match(click_id):
                return f"PROCESSING_ERROR_REASON_INVALID_{kind.upper()}"
            click = self._clicks.get((kind, click_id))
            if click is None:
                return _Reason.PROCESSING_ERROR_REASON_CLICK_NOT_FOUND.name
            if click.customer_id != customer:
                return _Reason.PROCESSING_ERROR_REASON_INVALID_OPERATING_ACCOUNT_FOR_CLICK.name
            when = event.event_timestamp
            if when < click.at:
                return _Reason.PROCESSING_ERROR_REASON_CONVERSION_PRECEDES_CLICK.name
            if when - click.at > self.click_window:
                return _Reason.PROCESSING_ERROR_REASON_EVENT_TOO_OLD.name
            if now - click.at < self.too_recent_click:
                return _Reason.PROCESSING_ERROR_REASON_TOO_RECENT_CLICK.name
        if event.transaction_id and (customer, action, event.transaction_id) in self._transactions:
            return _Reason.PROCESSING_ERROR_REASON_DUPLICATE_TRANSACTION_ID.name
        return None


def _validate_account(path: str, account: dm.ProductAccount, v: _Violations) -> None:
    if not account.account_id:
        v.add(f"{path}.account_id", "REQUIRED_FIELD_MISSING", "Required field is missing.")
    elif not _DIGITS.match(account.account_id):
        v.add(f"{path}.account_id", "INVALID_NUMBER_FORMAT", "String is not a valid number.")
    account_type = account.account_type
    legacy = account.product
    if not account_type and not legacy:
        v.add(f"{path}.account_type", "REQUIRED_FIELD_MISSING", "Required field is missing.")
    elif account_type and legacy and account_type.name != legacy.name:
        v.add(f"{path}.account_type", "INVALID_ARGUMENT", "account_type and product differ.")
    elif (account_type or legacy).name != _GOOGLE_ADS.name:
        v.add(
            f"{path}.account_type",
            "INVALID_DESTINATION",
            "This emulator serves Google Ads destinations only.",
        )


def _validate_event(
    path: str,
    event: dm.Event,
    request: dm.IngestEventsRequest,
    references: set[str],
    now: dt.datetime,
    v: _Violations,
) -> None:
    for k, ref in enumerate(event.destination_references):
        if ref not in references:
            v.add(
                f"{path}.destination_references[{k}]",
                "INVALID_DESTINATION",
                "This Destination is not valid.",
            )
    if "event_timestamp" not in event:
        v.add(f"{path}.event_timestamp", "REQUIRED_FIELD_MISSING", "Required field is missing.")
    elif event.event_timestamp > now:
        v.add(
            f"{path}.event_timestamp",
            "EVENT_TIME_INVALID",
            "Event did not occur within the acceptable time window.",
        )
    ad_ids = [kind for kind in _AD_ID_KINDS if getattr(event.ad_identifiers, kind)]
    if len(ad_ids) > 1:
        v.add(
            f"{path}.ad_identifiers", "INVALID_EVENT", "Set at most one of gclid, gbraid, wbraid."
        )
    identifiers = event.user_data.user_identifiers
    if not ad_ids and not identifiers:
        v.add(
            path,
            "NO_IDENTIFIERS_PROVIDED",
            "Events data contains no user identifiers or ad identifiers.",
        )
    if len(identifiers) > MAX_USER_IDENTIFIERS:
        v.add(
            f"{path}.user_data.user_identifiers",
            "TOO_MANY_USER_IDENTIFIERS",
            f"At most {MAX_USER_IDENTIFIERS} user identifiers per event.",
        )
    for k, identifier in enumerate(identifiers):
        for name, value in _hashed_values(identifier):
            reason = _hash_problem(value, request.encoding)
            if reason:
                v.add(
                    f"{path}.user_data.user_identifiers[{k}]{name}", reason, _DESCRIPTIONS[reason]
                )
    if event.currency and not _CURRENCY.match(event.currency):
        v.add(f"{path}.currency", "INVALID_CURRENCY_CODE", "The currency code is not supported.")


def _hashed_values(identifier: dm.UserIdentifier) -> Iterator[tuple[str, str]]:
    kind = dm.UserIdentifier.pb(identifier).WhichOneof("identifier")
    if kind in ("email_address", "phone_number"):
        yield "", getattr(identifier, kind)
    elif kind == "address":
        yield ".address.given_name", identifier.address.given_name
        yield ".address.family_name", identifier.address.family_name


_DESCRIPTIONS = {
    "REQUIRED_FIELD_MISSING": "Required field is missing.",
    "INVALID_HEX_ENCODING": "The HEX encoded value is malformed.",
    "INVALID_BASE64_ENCODING": "The base64 encoded value is malformed.",
    "INVALID_SHA256_FORMAT": "The SHA256 encoded value is malformed.",
}


def _hash_problem(value: str, encoding: dm.Encoding) -> str | None:
    """The ErrorReason for a hashed identifier that is not a SHA-256 digest in ``encoding``."""
    if encoding == dm.Encoding.HEX:
        if len(value) % 2 or not _HEX.match(value):
            return "INVALID_HEX_ENCODING"
        return None if len(value) == 64 else "INVALID_SHA256_FORMAT"
    if encoding == dm.Encoding.BASE64:
        try:
            digest = base64.b64decode(value, validate=True)
        except binascii.Error:
            return "INVALID_BASE64_ENCODING"
        return None if len(digest) == 32 else "INVALID_SHA256_FORMAT"
    return "REQUIRED_FIELD_MISSING"


def _destination_status(record: IngestRecord, index: int) -> dm.RequestStatusPerDestination:
    destination = record.request.destinations[index]
    targeted = sum(
        1
        for e in record.request.events
        if not e.destination_references or destination.reference in e.destination_references
    )
    status = dm.RequestStatusPerDestination(
        destination=destination,
        events_ingestion_status=dm.RequestStatusPerDestination.IngestEventsStatus(
            record_count=targeted
        ),
    )
    if record.outcomes is None:
        status.request_status = _Status.PROCESSING
        return status
    failures = Counter(
        o.reason for o in record.outcomes if o.destination_index == index and o.reason
    )
    failed = sum(failures.values())
    if not failed:
        status.request_status = _Status.SUCCESS
        return status
    status.request_status = _Status.FAILED if failed == targeted else _Status.PARTIAL_SUCCESS
    status.error_info = dm.ErrorInfo(
        error_counts=[
            dm.ErrorCount(record_count=n, reason=_Reason[reason])
            for reason, n in sorted(failures.items())
        ]
    )
    return status


def _fault_error(status: int) -> ApiError:
    if status == 429:
        return ApiError(
            429,
            f"Quota exceeded for quota metric 'Requests' of service '{DOMAIN}'.",
            reason="RATE_LIMIT_EXCEEDED",
            domain="googleapis.com",
        )
    if status == 503:
        return ApiError(503, "The service is currently unavailable.")
    return ApiError(status, f"Injected fault {status}.")

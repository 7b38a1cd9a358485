"""Google Data Manager API transport: click conversions as ``IngestEvents`` over REST.

It takes the same ``UploadClickConversionsRequest`` bodies as the Ads API transport and
turns each row into a Data Manager ``Event`` (docs/data-manager.md). :func:`ingest_bodies`
is that conversion as a pure function, to the JSON bodies the REST client puts on the wire;
``transport: file`` with ``file_format: data_manager`` writes them
(:class:`DataManagerFileTransport`). Ingestion is fast-fail and asynchronous: a
request is refused whole (400, with field violations naming rows) or accepted with a
``request_id`` whose per-reason results :meth:`DataManagerTransport.check_status` reads
later. There is no per-row result, so accepted rows are SENT with code ``DM_ACCEPTED`` and
the request's ``request_id``. ``data_manager_endpoint`` may carry a scheme
(``http://127.0.0.1:8080`` for an emulator); the default is https.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import requests
from google.ads import datamanager_v1 as dm
from google.ads.datamanager_v1.services.ingestion_service.transports import (
    IngestionServiceRestTransport,
)
from google.api_core import exceptions as core_exceptions
from google.auth import exceptions as auth_exceptions
from google.protobuf import json_format

from revsync.config.destinations import GoogleAdsDestination as GoogleAdsConfig
from revsync.destinations.base import ApiRequest, RequestVerdict
from revsync.destinations.files import FileTransport
from revsync.destinations.google_ads_api import (
    ADJUSTMENTS,
    VALIDATED,
    VALIDATED_MESSAGE,
    GoogleOAuth,
    https_session,
    refreshed_credentials,
)
from revsync.destinations.retry import RetryPolicy
from revsync.domain import OutcomeStatus, UploadOutcome
from revsync.errors import PermanentError, RevsyncError, TransientError

if TYPE_CHECKING:
    from revsync.checks import CheckResult

DM_SCOPE = "https://www.googleapis.com/auth/datamanager"
MAX_EVENTS = 2_000
MAX_DESTINATIONS = 10
ACCEPTED = "DM_ACCEPTED"
ADJUSTMENTS_UNSUPPORTED = "DM_ADJUSTMENTS_UNSUPPORTED"
BATCH_REFUSED = "DM_BATCH_REFUSED"
INGEST_EVENTS = "IngestionService/IngestEvents"
_ACTION = re.compile(r"customers/(\d+)/conversionActions/(\d+)")
_EVENT_PATH = re.compile(r"events\.events\[(\d+)\]")
_DESTINATION_PATH = re.compile(r"destinations\[(\d+)\]")
_TRANSIENT = (
    core_exceptions.TooManyRequests,
    core_exceptions.ServiceUnavailable,
    core_exceptions.GatewayTimeout,
    core_exceptions.InternalServerError,
    core_exceptions.DeadlineExceeded,
    requests.ConnectionError,
    requests.Timeout,
    auth_exceptions.TransportError,
)
_CONSENT = {"GRANTED": dm.ConsentStatus.CONSENT_GRANTED, "DENIED": dm.ConsentStatus.CONSENT_DENIED}
_GOOGLE_ADS = dm.ProductAccount.AccountType.GOOGLE_ADS
_REASON_PREFIX = "PROCESSING_ERROR_REASON_"
_NO_TYPE = "Data Manager cannot show its type: it must be an 'Import from clicks' action"


@dataclass
class _Chunk:
    """One IngestEvents request: its events, their keys, and one destination per action."""

    actions: list[str] = field(default_factory=list)
    events: list[dm.Event] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    event_actions: list[str] = field(default_factory=list)


class DataManagerTransport:
    """Sends click conversion bodies to Data Manager ``IngestEvents``; reads status back."""

    accepted_code = ACCEPTED

    def __init__(
        self,
        config: GoogleAdsConfig,
        oauth: GoogleOAuth,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.config = config
        self.oauth = oauth
        self.retry = retry or RetryPolicy()
        scheme, _, host = config.data_manager_endpoint.rpartition("://")
        self._scheme, self._host = scheme or "https", host
        self._session = https_session(config.ca_bundle)
        self._client: dm.IngestionServiceClient | None = None

    def _connect(self) -> dm.IngestionServiceClient:
        if self._client is None:
            credentials = refreshed_credentials(
                self.oauth, self.config.token_uri, DM_SCOPE, self._session
            )
            transport = IngestionServiceRestTransport(
                host=self._host, url_scheme=self._scheme, credentials=credentials
            )
            # Trust ca_bundle for API calls. (Token refreshes that the session makes on its
            # own, after expiry or a 401, use its private session: REQUESTS_CA_BUNDLE.)
            transport._session.verify = self._session.verify
            transport._session.trust_env = self._session.trust_env
            self._client = dm.IngestionServiceClient(transport=transport)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.transport.close()  # type: ignore[no-untyped-call]
            self._client = None
        self._session.close()

    def check(self) -> Iterator[CheckResult]:
        """``revsync doctor``: OAuth, then one ``validate_only`` sample event per conversion
        action (account access and action ID; Data Manager cannot show an action's type)."""
        from revsync.checks import fail, ok, skip
        from revsync.destinations.google_ads import google_datetime

        config = self.config
        actions = sorted(
            {config.conversion_action, *config.conversion_actions_by_pipeline.values()}
        )
        try:
            self._connect()
        except RevsyncError as exc:
            yield fail("credentials", str(exc))
            yield skip("conversion actions", "not checked without working credentials")
            return
        yield ok("credentials", f"OAuth refresh token accepted by {config.token_uri}")
        when = google_datetime(datetime.now(UTC) - timedelta(minutes=5), "UTC")
        for action in actions:  # one request each: a refused action must not hide the others
            row = {
                "order_id": "revsync-doctor", "gclid": "revsync-doctor-sample-click",
                "conversion_action": f"customers/{config.customer_id}/conversionActions/{action}",
                "conversion_date_time": when, "conversion_value": 1.0, "currency_code": "USD",
            }  # fmt: skip
            check = f"conversion action {action}"
            try:
                [chunk] = _chunks([row], [action])
                [outcome] = self._ingest(chunk, config.customer_id, validate_only=True)
            except RevsyncError as exc:
                yield fail(check, str(exc))
                continue
            if outcome.status is OutcomeStatus.VALIDATED:
                yield ok(check, f"a validate_only sample event was accepted; {_NO_TYPE}")
            else:
                yield fail(check, f"sample event refused: {outcome.code}: {outcome.message}")

    # --- sending ---------------------------------------------------------------------

    def send(self, request: ApiRequest) -> list[UploadOutcome]:
        if request.endpoint == ADJUSTMENTS:
            return _adjustments_unsupported(request.keys)
        body = request.body
        outcomes: list[UploadOutcome] = []
        for chunk in _chunks(body["conversions"], request.keys):
            outcomes += self._ingest(chunk, body["customer_id"], bool(body.get("validate_only")))
        return outcomes

    def _ingest(self, chunk: _Chunk, customer: str, validate_only: bool) -> list[UploadOutcome]:
        client = self._connect()
        message = _ingest_request(chunk, customer, self.config.login_customer_id, validate_only)

        def call() -> dm.IngestEventsResponse:
            with self._classified():
                return client.ingest_events(
                    request=message, retry=None, timeout=self.config.timeout_seconds
                )

        try:
            response = self.retry.call(call)
        except core_exceptions.BadRequest as exc:
            return _refused(chunk, exc)
        if validate_only:
            return [
                UploadOutcome(k, OutcomeStatus.VALIDATED, VALIDATED, VALIDATED_MESSAGE)
                for k in chunk.keys
            ]
        request_id = response.request_id
        return [
            UploadOutcome(k, OutcomeStatus.SENT, ACCEPTED, request_id=request_id)
            for k in chunk.keys
        ]

    # --- status ----------------------------------------------------------------------

    def check_status(self, request_ids: Iterable[str]) -> dict[str, RequestVerdict]:
        """Read back what Google made of earlier ingest requests (call ~30 min later)."""
        client = self._connect()
        out: dict[str, RequestVerdict] = {}
        for request_id in request_ids:
            message = dm.RetrieveRequestStatusRequest(request_id=request_id)

            def call(message: Any = message) -> dm.RetrieveRequestStatusResponse:
                with self._classified():
                    return client.retrieve_request_status(
                        request=message, retry=None, timeout=self.config.timeout_seconds
                    )

            try:
                response = self.retry.call(call)
            except core_exceptions.BadRequest:
                out[request_id] = RequestVerdict(request_id, "INVALID_REQUEST_ID")
                continue
            out[request_id] = _summary(request_id, response.request_status_per_destination)
        return out

    # --- errors ----------------------------------------------------------------------

    @contextmanager
    def _classified(self) -> Iterator[None]:
        """Client errors as TransientError (retried) or PermanentError; a 400 passes."""
        where = f"destination {self.config.name!r}: Data Manager API"
        try:
            yield
        except core_exceptions.BadRequest:
            raise
        except _TRANSIENT as exc:
            raise TransientError(f"{where}: {_describe(exc)}") from None
        except (core_exceptions.Unauthorized, auth_exceptions.GoogleAuthError) as exc:
            raise PermanentError(
                f"{where} refused the credentials ({_describe(exc)}): check "
                "REVSYNC_GOOGLE_OAUTH_REFRESH_TOKEN and that its Google account may use the "
                "Data Manager API"
            ) from None
        except core_exceptions.Forbidden as exc:
            raise PermanentError(
                f"{where}: no access to Google Ads account {self.config.customer_id} "
                f"({_describe(exc)}); check customer_id and login_customer_id"
            ) from None
        except core_exceptions.GoogleAPICallError as exc:
            raise PermanentError(f"{where}: {_describe(exc)}") from None


class DataManagerFileTransport(FileTransport):
    """``transport: file`` with ``file_format: data_manager``: appends to
    ``<output_dir>/<destination>.data_manager.jsonl`` one ``{"endpoint", "body"}`` line per
    ``IngestEvents`` call that :class:`DataManagerTransport` would make, the body being the
    exact JSON it would send (:func:`ingest_bodies`). Adjustments are refused as that
    transport refuses them; nothing is written for them."""

    def __init__(self, config: GoogleAdsConfig) -> None:
        super().__init__(config.output_dir, config.name, "data_manager")
        self.login_customer_id = config.login_customer_id

    def send(self, request: ApiRequest) -> list[UploadOutcome]:
        if request.endpoint == ADJUSTMENTS:
            return _adjustments_unsupported(request.keys)
        for body in ingest_bodies(request, self.login_customer_id):
            self.write(INGEST_EVENTS, body)
        return [UploadOutcome(key, OutcomeStatus.SENT) for key in request.keys]


def ingest_bodies(
    request: ApiRequest, login_customer_id: str | None = None
) -> list[dict[str, Any]]:
    """The ``IngestEventsRequest`` JSON bodies, in order, that :class:`DataManagerTransport`
    sends for an ``UploadClickConversionsRequest``-style ``request`` (pure).

    One body per chunk of ≤ 2,000 events and ≤ 10 conversion actions, serialised as the REST
    client serialises it (``MessageToJson`` with integer enums: camelCase keys, RFC 3339
    timestamps, ``"encoding": 1``). An adjustments request has no Data Manager body: [].
    """
    if request.endpoint == ADJUSTMENTS:
        return []
    body = request.body
    validate_only = bool(body.get("validate_only"))
    return [
        _wire_body(_ingest_request(chunk, body["customer_id"], login_customer_id, validate_only))
        for chunk in _chunks(body["conversions"], request.keys)
    ]


def _wire_body(message: dm.IngestEventsRequest) -> dict[str, Any]:
    """``message`` as the REST transport's JSON body (``transcode_request`` with
    ``rest_numeric_enums=True``: the whole message, enums as integers)."""
    body: dict[str, Any] = json_format.MessageToDict(
        dm.IngestEventsRequest.pb(message), use_integers_for_enums=True
    )
    return body


def _ingest_request(
    chunk: _Chunk, customer: str, login_customer_id: str | None, validate_only: bool
) -> dm.IngestEventsRequest:
    return dm.IngestEventsRequest(
        destinations=[_destination(customer, login_customer_id, a) for a in chunk.actions],
        events=chunk.events,
        encoding=dm.Encoding.HEX,
        validate_only=validate_only,
    )


def _destination(customer: str, login_customer_id: str | None, action: str) -> dm.Destination:
    destination = dm.Destination(
        reference=action,
        operating_account=dm.ProductAccount(account_type=_GOOGLE_ADS, account_id=customer),
        product_destination_id=action,
    )
    if login_customer_id:
        destination.login_account = dm.ProductAccount(
            account_type=_GOOGLE_ADS, account_id=login_customer_id
        )
    return destination


def _adjustments_unsupported(keys: Sequence[str]) -> list[UploadOutcome]:
    return [
        UploadOutcome(
            key,
            OutcomeStatus.REJECTED,
            ADJUSTMENTS_UNSUPPORTED,
            "Data Manager IngestEvents cannot restate or retract a conversion",
        )
        for key in keys
    ]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, core_exceptions.GoogleAPICallError):
        return f"HTTP {exc.code} {exc.reason or ''} {exc.message}".replace("  ", " ")
    return type(exc).__name__


def _chunks(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> list[_Chunk]:
    """Rows in order, ≤ 2,000 events and ≤ 10 destinations (conversion actions) a chunk."""
    chunks = [_Chunk()]
    for row, key in zip(rows, keys, strict=True):
        match = _ACTION.fullmatch(row["conversion_action"])
        if match is None:
            raise PermanentError(f"not a conversion action resource: {row['conversion_action']}")
        action = match.group(2)
        chunk = chunks[-1]
        new_action = action not in chunk.actions
        if len(chunk.events) >= MAX_EVENTS or (
            new_action and len(chunk.actions) >= MAX_DESTINATIONS
        ):
            chunk = _Chunk()
            chunks.append(chunk)
        if action not in chunk.actions:
            chunk.actions.append(action)
        chunk.events.append(_event(row, action))
        chunk.keys.append(key)
        chunk.event_actions.append(action)
    return [c for c in chunks if c.events]


def _event(row: dict[str, Any], action: str) -> dm.Event:
    """A ``ClickConversion`` body row as a Data Manager ``Event`` for destination ``action``."""
    event = dm.Event(
        destination_references=[action],
        transaction_id=row["order_id"],
        event_timestamp=datetime.strptime(row["conversion_date_time"], "%Y-%m-%d %H:%M:%S%z"),
        conversion_value=row["conversion_value"],
        currency=row["currency_code"],
        event_source=dm.EventSource.OTHER,
    )
    ad_ids = {name: row[name] for name in ("gclid", "gbraid", "wbraid") if row.get(name)}
    if ad_ids:
        event.ad_identifiers = dm.AdIdentifiers(**ad_ids)
    identifiers = [
        dm.UserIdentifier(email_address=i["hashed_email"])
        if "hashed_email" in i
        else dm.UserIdentifier(phone_number=i["hashed_phone_number"])
        for i in row.get("user_identifiers", [])
    ]
    if identifiers:
        event.user_data = dm.UserData(user_identifiers=identifiers)
    consent = row.get("consent", {}).get("ad_user_data")
    if consent in _CONSENT:
        event.consent = dm.Consent(ad_user_data=_CONSENT[consent])
    event.custom_variables = [
        dm.CustomVariable(
            variable=variable["conversion_custom_variable"].rsplit("/", 1)[-1],
            value=variable["value"],
            destination_references=[action],
        )
        for variable in row.get("custom_variables", [])
    ]
    return event


def _refused(chunk: _Chunk, exc: core_exceptions.BadRequest) -> list[UploadOutcome]:
    """Map a fast-fail 400 to rows: named rows REJECTED; if some were, the rest RETRY.

    Nothing of the request was processed, so rows without a violation of their own are
    resent in a later batch without the bad ones; a violation that names no row or
    destination rejects every row.
    """
    violations = [
        (v.get("field", ""), v.get("reason", "INVALID_ARGUMENT"), v.get("description", ""))
        for detail in exc.details or []
        if isinstance(detail, dict) and detail.get("@type", "").endswith("google.rpc.BadRequest")
        for v in detail.get("fieldViolations", [])
    ] or [("", exc.reason or "INVALID_ARGUMENT", exc.message)]
    by_row: dict[int, tuple[str, str]] = {}
    everyone: tuple[str, str] | None = None
    for path, reason, description in violations:
        text = f"{path}: {description}" if path else description
        if event := _EVENT_PATH.match(path):
            by_row.setdefault(int(event.group(1)), (reason, text))
        elif (dest := _DESTINATION_PATH.match(path)) and int(dest.group(1)) < len(chunk.actions):
            action = chunk.actions[int(dest.group(1))]
            for i, row_action in enumerate(chunk.event_actions):
                if row_action == action:
                    by_row.setdefault(i, (reason, text))
        else:
            everyone = everyone or (reason, text)
    outcomes = []
    for i, key in enumerate(chunk.keys):
        if i in by_row or everyone:
            reason, text = by_row.get(i) or everyone or ("", "")
            outcomes.append(UploadOutcome(key, OutcomeStatus.REJECTED, reason, text))
        else:
            outcomes.append(
                UploadOutcome(
                    key,
                    OutcomeStatus.RETRY,
                    BATCH_REFUSED,
                    "another row of the request was invalid; nothing was processed",
                )
            )
    return outcomes


def _summary(
    request_id: str, per_destination: Sequence[dm.RequestStatusPerDestination]
) -> RequestVerdict:
    states = {d.request_status.name for d in per_destination}
    if "PROCESSING" in states:
        state = "PROCESSING"
    elif len(states) == 1:
        state = states.pop()
    else:
        state = "PARTIAL_SUCCESS"
    errors: dict[str, int] = {}
    warnings: dict[str, int] = {}
    for d in per_destination:
        for count in d.error_info.error_counts:
            name = count.reason.name.removeprefix(_REASON_PREFIX)
            errors[name] = errors.get(name, 0) + count.record_count
        for count in d.warning_info.warning_counts:
            name = count.reason.name.removeprefix(_REASON_PREFIX)
            warnings[name] = warnings.get(name, 0) + count.record_count
    records = sum(d.events_ingestion_status.record_count for d in per_destination)
    return RequestVerdict(request_id, state, records, errors, warnings)

"""Google Ads API transport: click conversions and adjustments over gRPC (``google-ads``).

The client is built by hand, never from ``google-ads.yaml``/``load_from_dict`` (those
refresh the token against a hard-coded Google URL). The gRPC channel is ours too, because
``GoogleAdsClient.get_service`` offers no way to pass ``ssl_credentials``: we open a
``secure_authorized_channel`` that trusts ``ca_bundle`` and attach the library's own
metadata, logging and exception interceptors, exactly as ``get_service`` does.

Row verdicts come from the partial-failure ``GoogleAdsFailure`` (each error's
``location.field_path_elements[0].index`` is the row); whole-request failures become
``PermanentError`` or, after bounded retries, ``TransientError``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import import_module
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import requests
from google.ads.googleads.client import GoogleAdsClient
from google.ads.googleads.errors import GoogleAdsException
from google.ads.googleads.interceptors import (
    ExceptionInterceptor,
    LoggingInterceptor,
    MetadataInterceptor,
)
from google.api_core import exceptions as core_exceptions
from google.auth import exceptions as auth_exceptions
from google.auth.transport.grpc import secure_authorized_channel
from google.auth.transport.requests import Request
from google.oauth2.credentials import Credentials
from pydantic import SecretStr

from revsync.config.destinations import GoogleAdsDestination as GoogleAdsConfig
from revsync.destinations.base import ApiRequest
from revsync.destinations.retry import RetryPolicy
from revsync.domain import OutcomeStatus, UploadOutcome
from revsync.errors import PermanentError, RevsyncError, TransientError

if TYPE_CHECKING:
    from revsync.checks import CheckResult

log = logging.getLogger(__name__)

API_VERSION = "v26"  # the bodies of GoogleAdsDestination follow this version
ADS_SCOPE = "https://www.googleapis.com/auth/adwords"
CLICKS = "ConversionUploadService/UploadClickConversions"
ADJUSTMENTS = "ConversionAdjustmentUploadService/UploadConversionAdjustments"
VALIDATED = "VALIDATED"
VALIDATED_MESSAGE = "validate_only: accepted by Google, nothing stored; sent for real later"
TRANSIENT_CODES = frozenset(
    {
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    }
)
_GRPC_OPTIONS = [
    ("grpc.max_metadata_size", 16 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]

# Row error name -> (status, wait before retrying); anything else is REJECTED.
_CLICK_ROWS: dict[str, tuple[OutcomeStatus, timedelta | None]] = {
    "CLICK_CONVERSION_ALREADY_EXISTS": (OutcomeStatus.ALREADY_SENT, None),
    "ORDER_ID_ALREADY_IN_USE": (OutcomeStatus.ALREADY_SENT, None),
    "TOO_RECENT_EVENT": (OutcomeStatus.RETRY, timedelta(hours=6)),
    "TOO_RECENT_CONVERSION_ACTION": (OutcomeStatus.RETRY, timedelta(hours=6)),
}
_ADJUSTMENT_ROWS: dict[str, tuple[OutcomeStatus, timedelta | None]] = {
    "TOO_RECENT_CONVERSION": (OutcomeStatus.RETRY, timedelta(hours=24)),
    "RESTATEMENT_ALREADY_EXISTS": (OutcomeStatus.ALREADY_SENT, None),
}

# Row errors a made-up sample click may get; anything else about the sample is a problem.
_SAMPLE_CLICK_ERRORS = frozenset(
    {"UNPARSEABLE_GCLID", "CLICK_NOT_FOUND", "EVENT_NOT_FOUND", "EXPIRED_EVENT",
     "CONVERSION_PRECEDES_EVENT", "TOO_RECENT_EVENT"}
)  # fmt: skip

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class GoogleOAuth:
    """The OAuth client and the admin's refresh token (from ``REVSYNC_GOOGLE_OAUTH_*``)."""

    client_id: str
    client_secret: str
    refresh_token: str

    def __repr__(self) -> str:
        return f"GoogleOAuth(client_id={self.client_id!r}, client_secret=***, refresh_token=***)"


def https_session(ca_bundle: object | None) -> requests.Session:
    """A requests session that trusts ``ca_bundle`` (env CA variables cannot override it)."""
    session = requests.Session()
    if ca_bundle is not None:
        session.verify = str(ca_bundle)
        session.trust_env = False
    return session


def refreshed_credentials(
    oauth: GoogleOAuth, token_uri: str, scope: str, session: requests.Session
) -> Credentials:
    """User credentials with a fresh access token; a refused refresh is a PermanentError."""
    credentials = Credentials(  # type: ignore[no-untyped-call]
        token=None,
        refresh_token=oauth.refresh_token,
        client_id=oauth.client_id,
        client_secret=oauth.client_secret,
        token_uri=token_uri,
        scopes=[scope],
    )
    refresh(credentials, session)
    return credentials


def refresh(credentials: Credentials, session: requests.Session) -> None:
    """Fetch a new access token; name the settings to fix, never their values."""
    try:
        credentials.refresh(Request(session))  # type: ignore[no-untyped-call]
    except auth_exceptions.RefreshError as exc:
        if getattr(exc, "retryable", False):
            raise TransientError(f"Google OAuth token endpoint: {_oauth_reason(exc)}") from None
        raise PermanentError(
            f"Google OAuth refused the refresh token ({_oauth_reason(exc)}): set a valid "
            "REVSYNC_GOOGLE_OAUTH_REFRESH_TOKEN issued to REVSYNC_GOOGLE_OAUTH_CLIENT_ID / "
            "REVSYNC_GOOGLE_OAUTH_CLIENT_SECRET"
        ) from None
    except auth_exceptions.TransportError:
        raise TransientError("Google OAuth token endpoint unreachable") from None


def _oauth_reason(exc: auth_exceptions.RefreshError) -> str:
    """The OAuth ``error`` code (``invalid_grant``), without the raw response."""
    data = exc.args[1] if len(exc.args) > 1 else None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return str(data["error"])
    return "refresh failed"


def error_name(error: Any) -> str:
    """The enum name of a ``GoogleAdsError`` (``CLICK_NOT_FOUND``), whatever its kind."""
    code = error.error_code
    kind = type(code).pb(code).WhichOneof("error_code")
    return str(getattr(code, kind).name) if kind else "UNKNOWN"


class GoogleAdsApiTransport:
    """Sends ``GoogleAdsDestination`` bodies to the Google Ads API; one outcome per key.

    ``validate_only`` rows that pass come back VALIDATED: Google stored nothing, so the
    ledger keeps them due for a real send.
    """

    def __init__(
        self,
        config: GoogleAdsConfig,
        developer_token: str,
        oauth: GoogleOAuth,
        retry: RetryPolicy | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.config = config
        self.developer_token = SecretStr(developer_token)
        self.oauth = oauth
        self.retry = retry or RetryPolicy()
        self.clock = clock or (lambda: datetime.now(UTC))
        self._session = https_session(config.ca_bundle)
        self._client: GoogleAdsClient | None = None
        self._channel: grpc.Channel | None = None
        self._services: dict[str, Any] = {}

    # --- connection ------------------------------------------------------------------

    def _connect(self) -> GoogleAdsClient:
        if self._client is None:
            credentials = refreshed_credentials(
                self.oauth, self.config.token_uri, ADS_SCOPE, self._session
            )
            self._client = GoogleAdsClient(
                credentials=credentials,
                developer_token=self.developer_token.get_secret_value(),
                login_customer_id=self.config.login_customer_id,
                endpoint=self.config.endpoint,
                use_proto_plus=True,
                version=API_VERSION,
            )
            roots = self.config.ca_bundle.read_bytes() if self.config.ca_bundle else None
            self._channel = secure_authorized_channel(  # type: ignore[no-untyped-call]
                credentials,
                Request(self._session),  # type: ignore[no-untyped-call]
                self.config.endpoint,
                ssl_credentials=grpc.ssl_channel_credentials(roots),
                options=_GRPC_OPTIONS,
            )
        return self._client

    def _service(self, name: str) -> Any:
        """The ``<name>Client`` on our channel, with the library's interceptors."""
        client = self._connect()
        if name not in self._services:
            package = f"google.ads.googleads.{API_VERSION}.services.services"
            module = import_module(f"{package}.{_snake(name)}")
            service_class = getattr(module, f"{name}Client")
            channel = grpc.intercept_channel(
                self._channel,
                MetadataInterceptor(client.developer_token, client.login_customer_id),
                LoggingInterceptor(
                    logging.getLogger("google.ads.googleads.client"), API_VERSION, client.endpoint
                ),
                ExceptionInterceptor(API_VERSION, use_proto_plus=True),
            )
            transport = service_class.get_transport_class("grpc")(channel=channel)
            self._services[name] = service_class(transport=transport)
        return self._services[name]

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self._session.close()
        self._channel = self._client = None
        self._services.clear()

    def check(self) -> Iterator[CheckResult]:
        """``revsync doctor``: OAuth + developer token, each conversion action's type and
        status, and a ``validate_only`` sample upload (is this token allowed to upload?)."""
        from revsync.checks import fail, ok, skip, warn
        from revsync.destinations.google_ads import google_datetime

        config = self.config
        actions = sorted(
            {config.conversion_action, *config.conversion_actions_by_pipeline.values()}
        )
        fields = "conversion_action." + ", conversion_action.".join(
            ("id", "name", "type", "status")
        )
        ids = ", ".join(actions)  # digits only: the mapping validates them
        query = f"SELECT {fields} FROM conversion_action WHERE conversion_action.id IN ({ids})"  # noqa: S608
        try:
            self._connect()
            search = self._service("GoogleAdsService").search
            with self._classified():
                pager = search(
                    request={"customer_id": config.customer_id, "query": query},
                    timeout=config.timeout_seconds,
                )
                found = {str(r.conversion_action.id): r.conversion_action for r in pager}
        except RevsyncError as exc:
            yield fail("credentials", str(exc))
            yield skip("conversion actions", "not checked without working credentials")
            return
        yield ok("credentials", f"OAuth and developer token accepted for {config.customer_id}")
        for action_id in actions:
            check, action = f"conversion action {action_id}", found.get(action_id)
            if action is None or action.status.name == "REMOVED":
                yield fail(check, f"not found in customer {config.customer_id} (or removed)")
            elif action.type_.name != "UPLOAD_CLICKS":
                yield fail(
                    check,
                    f"{action.name!r} is of type {action.type_.name}: click conversions need "
                    "an action of type UPLOAD_CLICKS (Conversions > Import > from clicks)",
                )
            elif action.status.name != "ENABLED":
                yield warn(check, f"{action.name!r} is UPLOAD_CLICKS but {action.status.name}")
            else:
                yield ok(check, f"{action.name!r}: UPLOAD_CLICKS, ENABLED")
        row = {
            "gclid": "revsync-doctor-sample-click",
            "conversion_action": f"customers/{config.customer_id}/conversionActions/"
            f"{config.conversion_action}",
            "conversion_date_time": google_datetime(self.clock(), config.account_timezone),
            "conversion_value": 1.0,
            "currency_code": "USD",
        }
        body = {"customer_id": config.customer_id, "conversions": [row],
                "partial_failure": True, "validate_only": True}  # fmt: skip
        try:
            [outcome] = self.send(ApiRequest(CLICKS, body, ("doctor",)))
        except RevsyncError as exc:
            yield fail("upload access", str(exc))
            return
        if outcome.code in _SAMPLE_CLICK_ERRORS or outcome.status is OutcomeStatus.VALIDATED:
            yield ok("upload access", "a validate_only sample upload was accepted")
        else:
            yield fail("upload access", f"sample upload refused: {outcome.code}: {outcome.message}")

    def search_stream(self, query: str) -> Iterator[Any]:
        """The ``GoogleAdsRow`` results of a GAQL query, batch after batch
        (``GoogleAdsService.SearchStream``); errors as ``PermanentError``/``TransientError``."""
        self._connect()
        stream = self._service("GoogleAdsService").search_stream
        with self._classified():
            batches = stream(
                request={"customer_id": self.config.customer_id, "query": query},
                timeout=self.config.timeout_seconds,
            )
            for batch in batches:
                yield from batch.results

    # --- sending ---------------------------------------------------------------------

    def send(self, request: ApiRequest) -> list[UploadOutcome]:
        client = self._connect()
        service_name, method = request.endpoint.split("/")
        rows_field = "conversions" if request.endpoint == CLICKS else "conversion_adjustments"
        proto = client.get_type(f"{method}Request")
        message = type(proto)(request.body)
        call = getattr(self._service(service_name), _snake(method))
        what = f"google ads destination {self.config.name!r}"
        response = self.retry.call(lambda: self._call(call, message), what)
        return self._outcomes(request, rows_field, response)

    def _call(self, call: Callable[..., Any], message: Any) -> Any:
        """One RPC, refreshing an expired token once; errors classified for retrying."""
        with self._classified():
            try:
                return call(request=message, timeout=self.config.timeout_seconds)
            except GoogleAdsException as exc:
                if "OAUTH_TOKEN_EXPIRED" not in _names(exc):
                    raise
            assert self._client is not None
            refresh(self._client.credentials, self._session)
            return call(request=message, timeout=self.config.timeout_seconds)

    @contextmanager
    def _classified(self) -> Iterator[None]:
        try:
            yield
        except GoogleAdsException as exc:
            names = _names(exc)
            where = f"(request_id={exc.request_id})"
            if "CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE" in names:
                raise PermanentError(
                    f"destination {self.config.name!r}: this developer token may not upload "
                    "conversions through the Google Ads API (CUSTOMER_NOT_ALLOWLISTED_FOR_THIS"
                    "_FEATURE); Google requires the Data Manager API: set `transport: "
                    f"data_manager` on this destination {where}"
                ) from None
            text = ", ".join(f"{name}: {error.message}" for name, error in names.items())
            if exc.error.code() in TRANSIENT_CODES:
                raise TransientError(f"Google Ads API {where}: {text}") from None
            raise PermanentError(f"Google Ads API refused the request {where}: {text}") from None
        except core_exceptions.GoogleAPICallError as exc:
            code = exc.grpc_status_code
            text = f"Google Ads API: {code.name if code else exc.code}: {exc.message}"
            if code in TRANSIENT_CODES:
                raise TransientError(text) from None
            raise PermanentError(text) from None

    def _outcomes(self, request: ApiRequest, rows_field: str, response: Any) -> list[UploadOutcome]:
        assert self._client is not None
        rules = _CLICK_ROWS if rows_field == "conversions" else _ADJUSTMENT_ROWS
        rows = request.body[rows_field]
        now = self.clock()
        failure_type = type(self._client.get_type("GoogleAdsFailure"))
        by_row: dict[int, UploadOutcome] = {}
        unplaced: list[str] = []
        for detail in response.partial_failure_error.details:
            for error in failure_type.deserialize(detail.value).errors:
                name = error_name(error)
                path = error.location.field_path_elements
                if not path or path[0].field_name != rows_field or "index" not in path[0]:
                    unplaced.append(f"{name}: {error.message}")
                    continue
                index = path[0].index
                if index in by_row or not 0 <= index < len(request.keys):
                    continue
                status, wait = rules.get(name, (OutcomeStatus.REJECTED, None))
                if name == "CONVERSION_ALREADY_RETRACTED":
                    retraction = rows[index].get("adjustment_type") == "RETRACTION"
                    status = OutcomeStatus.ALREADY_SENT if retraction else OutcomeStatus.REJECTED
                by_row[index] = UploadOutcome(
                    request.keys[index], status, name, error.message, now + wait if wait else None
                )
        outcomes = []
        for index, key in enumerate(request.keys):
            if index in by_row:
                outcomes.append(by_row[index])
            elif unplaced:
                # A failure without a row index: resend, order_id makes it safe.
                outcomes.append(
                    UploadOutcome(key, OutcomeStatus.RETRY, "UNPLACED_ERROR", "; ".join(unplaced))
                )
            elif request.body.get("validate_only"):
                outcomes.append(
                    UploadOutcome(key, OutcomeStatus.VALIDATED, VALIDATED, VALIDATED_MESSAGE)
                )
            else:
                outcomes.append(UploadOutcome(key, OutcomeStatus.SENT))
        return outcomes


def _names(exc: GoogleAdsException) -> dict[str, Any]:
    return {error_name(error): error for error in exc.failure.errors}


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")

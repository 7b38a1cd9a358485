"""A Google Ads API emulator: the gRPC services revsync calls, over TLS, with the API's rules.

Serves ``ConversionUploadService/UploadClickConversions``,
``ConversionAdjustmentUploadService/UploadConversionAdjustments`` and
``GoogleAdsService/Search`` + ``SearchStream`` (``FROM conversion_action`` only) for one
API version, with the google-ads package's own proto-plus types. Bearer tokens are checked
against an :class:`~tests.emulators.oauth.OAuthEmulator`. Time windows use ``now``, which
tests set: a ``conversion_date_time`` or ``adjustment_date_time`` later than ``now`` is a
row error (``DateError.LATER_THAN_MAXIMUM_DATE``), and an adjustment not after its
conversion's ``conversion_date_time`` is ``ADJUSTMENT_PRECEDES_CONVERSION``.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import threading
import uuid
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, NoReturn, Self

import grpc
from google.ads.googleads.client import _DEFAULT_VERSION
from google.protobuf import any_pb2
from google.rpc import status_pb2

from tests.emulators.oauth import OAuthEmulator, TokenStatus
from tests.emulators.tls import TlsFiles

DEFAULT_VERSION = _DEFAULT_VERSION
MAX_ROWS_PER_REQUEST = 2000
MAX_USER_IDENTIFIERS = 5
TOO_RECENT_CLICK = dt.timedelta(hours=6)
MAX_CLICK_AGE = dt.timedelta(days=90)
TOO_RECENT_FOR_ADJUSTMENT = dt.timedelta(hours=24)
MAX_ADJUSTMENT_AGE = dt.timedelta(days=54)
CLICK_ID_FIELDS = ("gclid", "gbraid", "wbraid")

_CLICK_ID = re.compile(r"[A-Za-z0-9_-]{1,512}")
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}")
_ACTION_NAME = re.compile(r"customers/(\d+)/conversionActions/(\d+)")
_CURRENCY = re.compile(r"[A-Z]{3}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_FROM = re.compile(r"\bFROM\s+(\w+)", re.IGNORECASE)

_INVALID = grpc.StatusCode.INVALID_ARGUMENT
_UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
_REFUSALS: dict[str, tuple[grpc.StatusCode, str, str]] = {
    # error name: (gRPC status, ErrorCode oneof field, message)
    "DEVELOPER_TOKEN_PARAMETER_MISSING": (
        _INVALID,
        "request_error",
        "The developer-token header is missing.",
    ),
    "DEVELOPER_TOKEN_INVALID": (
        _UNAUTHENTICATED,
        "authentication_error",
        "The developer token is not valid.",
    ),
    "OAUTH_TOKEN_EXPIRED": (
        _UNAUTHENTICATED,
        "authentication_error",
        "The OAuth access token has expired.",
    ),
    "OAUTH_TOKEN_INVALID": (
        _UNAUTHENTICATED,
        "authentication_error",
        "Authorization: Bearer <token> is invalid.",
    ),
    "CLIENT_CUSTOMER_ID_INVALID": (
        _INVALID,
        "authentication_error",
        "login-customer-id must be digits only.",
    ),
    "INVALID_CUSTOMER_ID": (_INVALID, "request_error", "customer_id must be digits only."),
    "CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE": (
        grpc.StatusCode.PERMISSION_DENIED,
        "not_allowlisted_error",
        "This developer token may not upload conversions; use the Data Manager API.",
    ),
    "PARTIAL_FAILURE_MODE_REQUIRED": (
        _INVALID,
        "partial_failure_error",
        "partial_failure must be true.",
    ),
    "TOO_MANY_CONVERSIONS_IN_REQUEST": (
        _INVALID,
        "conversion_upload_error",
        "At most 2000 conversions per request.",
    ),
    "TOO_MANY_ADJUSTMENTS_IN_REQUEST": (
        _INVALID,
        "conversion_adjustment_upload_error",
        "At most 2000 adjustments per request.",
    ),
    "EXPECTED_FROM": (_INVALID, "query_error", "The query has no FROM clause."),
    "BAD_RESOURCE_TYPE_IN_FROM_CLAUSE": (
        _INVALID,
        "query_error",
        "The emulator answers only FROM conversion_action.",
    ),
}


@dataclass(frozen=True)
class ConversionAction:
    """A seeded conversion action; only ``UPLOAD_CLICKS`` accepts click conversions."""

    customer_id: str
    id: int
    name: str
    type: str = "UPLOAD_CLICKS"
    status: str = "ENABLED"
    click_through_lookback_window_days: int = 90

    @property
    def resource_name(self) -> str:
        return f"customers/{self.customer_id}/conversionActions/{self.id}"


@dataclass
class StoredConversion:
    """An accepted click conversion, with the effect of later adjustments."""

    customer_id: str
    conversion_action: str
    click_id_field: str
    click_id: str
    conversion_time: dt.datetime
    value: float | None
    currency_code: str
    order_id: str
    user_identifiers: tuple[tuple[str, str], ...]
    ad_user_data: str
    uploaded_at: dt.datetime
    retracted: bool = False
    restated_at: dt.datetime | None = None


@dataclass(frozen=True)
class StoredAdjustment:
    """An accepted RETRACTION or RESTATEMENT."""

    conversion: StoredConversion
    adjustment_type: str
    adjustment_time: dt.datetime
    adjusted_value: float | None


@dataclass(frozen=True)
class _Error:
    """One GoogleAdsError: ``kind`` is the ErrorCode oneof field, ``name`` its enum value."""

    kind: str
    name: str
    message: str
    path: tuple[tuple[str, int | None], ...] = ()


class _RowError(Exception):
    """The first rule a row breaks; ``kind`` defaults to the method's own upload error."""

    def __init__(self, name: str, message: str, at: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.name, self.message, self.at, self.kind = name, message, at, kind

    def at_row(self, rows: str, index: int) -> _Error:
        kind = self.kind or (
            "conversion_upload_error"
            if rows == "conversions"
            else "conversion_adjustment_upload_error"
        )
        return _Error(kind, self.name, self.message, ((rows, index), (self.at, None)))


@dataclass
class _Request:
    """Per-call state: the request id, row errors so far, and keys of the rows accepted."""

    request_id: str
    errors: list[_Error] = field(default_factory=list)
    seen: set[tuple[Any, ...]] = field(default_factory=set)


class GoogleAdsEmulator:
    """A TLS gRPC server answering as ``googleads.googleapis.com`` for one API version.

    Seed it with :meth:`add_conversion_action` and :meth:`add_click`; set ``now`` to move
    its clock; :meth:`fail_next` injects transport-level errors; developer tokens in
    ``not_allowlisted_tokens`` get ``CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE`` on uploads.
    """

    def __init__(
        self,
        tls: TlsFiles,
        oauth: OAuthEmulator,
        *,
        developer_tokens: Sequence[str] = ("test-dev-token",),
        version: str = DEFAULT_VERSION,
        now: dt.datetime | None = None,
    ) -> None:
        self.tls = tls
        self.oauth = oauth
        self.version = version
        self.developer_tokens = set(developer_tokens)
        self.not_allowlisted_tokens: set[str] = set()
        self.now = now or dt.datetime.now(dt.UTC)
        self.actions: dict[str, ConversionAction] = {}
        self.clicks: dict[str, dt.datetime] = {}
        self.uploads: list[StoredConversion] = []
        self.adjustments: list[StoredAdjustment] = []
        self.calls: Counter[str] = Counter()
        self.reporting: Any = None  # tests.emulators.google_ads_reporting, when registered
        self.stream_batch_size = 10_000  # rows per SearchStream response, as the API
        self._by_order: dict[tuple[str, str], StoredConversion] = {}
        self._by_click: dict[tuple[str, str, dt.datetime], StoredConversion] = {}
        self._faults: deque[grpc.StatusCode] = deque()
        self._after_processing: deque[grpc.StatusCode] = deque()
        self._job_ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._port = 0
        base = f"google.ads.googleads.{version}"
        self._upload = import_module(f"{base}.services.types.conversion_upload_service")
        self._adjust = import_module(f"{base}.services.types.conversion_adjustment_upload_service")
        self._search = import_module(f"{base}.services.types.google_ads_service")
        self._errors = import_module(f"{base}.errors.types.errors")
        self._resources = import_module(f"{base}.resources.types.conversion_action")
        self._adjustment_type = import_module(
            f"{base}.enums.types.conversion_adjustment_type"
        ).ConversionAdjustmentTypeEnum.ConversionAdjustmentType

    # --- lifecycle -------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """``host:port`` to pass as ``GoogleAdsClient(endpoint=...)``."""
        if self._server is None:
            raise RuntimeError("GoogleAdsEmulator is not started")
        return f"localhost:{self._port}"

    def start(self) -> Self:
        """Listen with TLS on an ephemeral localhost port."""
        self._executor = ThreadPoolExecutor(max_workers=8)
        server = grpc.server(self._executor)
        services = f"google.ads.googleads.{self.version}.services"
        upload, adjust, search = self._upload, self._adjust, self._search
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    f"{services}.ConversionUploadService",
                    {
                        "UploadClickConversions": _unary(
                            self._upload_click_conversions,
                            upload.UploadClickConversionsRequest,
                            upload.UploadClickConversionsResponse,
                        )
                    },
                ),
                grpc.method_handlers_generic_handler(
                    f"{services}.ConversionAdjustmentUploadService",
                    {
                        "UploadConversionAdjustments": _unary(
                            self._upload_conversion_adjustments,
                            adjust.UploadConversionAdjustmentsRequest,
                            adjust.UploadConversionAdjustmentsResponse,
                        )
                    },
                ),
                grpc.method_handlers_generic_handler(
                    f"{services}.GoogleAdsService",
                    {
                        "Search": _unary(
                            self._search_rows,
                            search.SearchGoogleAdsRequest,
                            search.SearchGoogleAdsResponse,
                        ),
                        "SearchStream": grpc.unary_stream_rpc_method_handler(
                            self._search_stream,
                            request_deserializer=search.SearchGoogleAdsStreamRequest.deserialize,
                            response_serializer=search.SearchGoogleAdsStreamResponse.serialize,
                        ),
                    },
                ),
            )
        )
        credentials = grpc.ssl_server_credentials([(self.tls.key_pem, self.tls.cert_pem)])
        self._port = server.add_secure_port("localhost:0", credentials)
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        """Stop serving at once."""
        if self._server is not None:
            self._server.stop(grace=None).wait(timeout=5)
            self._server = None
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- seeding and test switches ---------------------------------------------------

    def add_conversion_action(
        self,
        customer_id: str,
        action_id: int,
        name: str,
        *,
        type: str = "UPLOAD_CLICKS",
        status: str = "ENABLED",
        click_through_lookback_window_days: int = 90,
    ) -> str:
        """Seed a conversion action; returns its resource name."""
        action = ConversionAction(
            customer_id, action_id, name, type, status, click_through_lookback_window_days
        )
        with self._lock:
            self.actions[action.resource_name] = action
        return action.resource_name

    def add_click(self, click_id: str, clicked_at: dt.datetime) -> None:
        """Seed a gclid, gbraid or wbraid and the time of its click."""
        if not _CLICK_ID.fullmatch(click_id):
            raise ValueError(f"the API could not parse click id {click_id!r}")
        if clicked_at.tzinfo is None:
            raise ValueError("clicked_at must be timezone-aware")
        with self._lock:
            self.clicks[click_id] = clicked_at

    def fail_next(self, code: grpc.StatusCode, times: int = 1) -> None:
        """Abort the next ``times`` calls with ``code`` (e.g. RESOURCE_EXHAUSTED)."""
        with self._lock:
            self._faults.extend([code] * times)

    def process_then_abort(self, code: grpc.StatusCode, times: int = 1) -> None:
        """Store the next ``times`` click-conversion uploads, then abort each with ``code``
        (the conversions are recorded; the client sees only the error)."""
        with self._lock:
            self._after_processing.extend([code] * times)

    # --- request plumbing ------------------------------------------------------------

    def _begin(
        self, method: str, request: Any, context: grpc.ServicerContext, *, upload: bool
    ) -> _Request:
        """Count the call, apply injected faults, then check credentials and customer id."""
        call = _Request(uuid.uuid4().hex)
        context.set_trailing_metadata((("request-id", call.request_id),))
        with self._lock:
            self.calls[method] += 1
            fault = self._faults.popleft() if self._faults else None
        if fault is not None:
            context.abort(fault, f"injected {fault.name}")
        metadata = {item.key: item.value for item in context.invocation_metadata()}
        token = metadata.get("developer-token")
        bearer = self.oauth.bearer_status(metadata.get("authorization"))
        login = metadata.get("login-customer-id")
        if not token:
            self._refuse(context, call, "DEVELOPER_TOKEN_PARAMETER_MISSING")
        if token not in self.developer_tokens:
            self._refuse(context, call, "DEVELOPER_TOKEN_INVALID")
        if bearer is TokenStatus.EXPIRED:
            self._refuse(context, call, "OAUTH_TOKEN_EXPIRED")
        if bearer is TokenStatus.INVALID:
            self._refuse(context, call, "OAUTH_TOKEN_INVALID")
        if login is not None and not login.isdigit():
            self._refuse(context, call, "CLIENT_CUSTOMER_ID_INVALID")
        if not request.customer_id.isdigit():
            self._refuse(context, call, "INVALID_CUSTOMER_ID", "customer_id")
        if upload and token in self.not_allowlisted_tokens:
            self._refuse(context, call, "CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE")
        return call

    def _check_upload(
        self,
        context: grpc.ServicerContext,
        call: _Request,
        rows: Sequence[Any],
        too_many: str,
        partial_failure: bool,
    ) -> None:
        """Whole-request rules shared by both upload methods."""
        if not partial_failure:
            self._refuse(context, call, "PARTIAL_FAILURE_MODE_REQUIRED", "partial_failure")
        if len(rows) > MAX_ROWS_PER_REQUEST:
            self._refuse(context, call, too_many)

    def _refuse(
        self, context: grpc.ServicerContext, call: _Request, name: str, at: str | None = None
    ) -> NoReturn:
        """Fail the whole call with a GoogleAdsFailure in the trailers, as the real API does."""
        code, kind, message = _REFUSALS[name]
        path = () if at is None else ((at, None),)
        self.abort(context, call, code, _Error(kind, name, message, path))

    def abort(
        self, context: grpc.ServicerContext, call: _Request, code: grpc.StatusCode, error: _Error
    ) -> NoReturn:
        """Abort with ``error`` as the GoogleAdsFailure of the call."""
        message = error.message
        failure = self._failure([error], call.request_id)
        key = f"google.ads.googleads.{self.version}.errors.googleadsfailure-bin"
        context.set_trailing_metadata(
            ((key, type(failure).serialize(failure)), ("request-id", call.request_id))
        )
        context.abort(code, message)

    def _failure(self, errors: list[_Error], request_id: str) -> Any:
        types = self._errors
        enum_fields = types.ErrorCode.meta.fields
        return types.GoogleAdsFailure(
            request_id=request_id,
            errors=[
                types.GoogleAdsError(
                    error_code=types.ErrorCode(
                        **{e.kind: getattr(enum_fields[e.kind].enum, e.name)}
                    ),
                    message=e.message,
                    location=types.ErrorLocation(
                        field_path_elements=[
                            types.ErrorLocation.FieldPathElement(field_name=name, index=index)
                            for name, index in e.path
                        ]
                    ),
                )
                for e in errors
            ],
        )

    def _partial_failure(self, call: _Request) -> status_pb2.Status | None:
        """``google.rpc.Status(code=3, details=[Any(GoogleAdsFailure)])`` or None."""
        if not call.errors:
            return None
        failure = self._failure(call.errors, call.request_id)
        detail = any_pb2.Any()
        detail.Pack(type(failure).pb(failure))
        message = ", ".join(f"{e.message} at {'.'.join(_path_text(e.path))}" for e in call.errors)
        return status_pb2.Status(
            code=grpc.StatusCode.INVALID_ARGUMENT.value[0], message=message, details=[detail]
        )

    def _action(
        self, customer_id: str, resource_name: str, allowed_type: str
    ) -> ConversionAction | str:
        """The seeded action, or the name of the row error."""
        action = self.actions.get(resource_name)
        match = _ACTION_NAME.fullmatch(resource_name)
        if (
            action is None
            or action.status == "REMOVED"
            or match is None
            or (match.group(1) != customer_id)
        ):
            return "NO_CONVERSION_ACTION_FOUND"
        if action.type != allowed_type:
            return "INVALID_CONVERSION_ACTION_TYPE"
        return action

    # --- ConversionUploadService -----------------------------------------------------

    def _upload_click_conversions(self, request: Any, context: grpc.ServicerContext) -> Any:
        call = self._begin("UploadClickConversions", request, context, upload=True)
        self._check_upload(
            context,
            call,
            request.conversions,
            "TOO_MANY_CONVERSIONS_IN_REQUEST",
            request.partial_failure,
        )
        results = []
        with self._lock:
            accepted: list[StoredConversion] = []
            for index, conversion in enumerate(request.conversions):
                try:
                    stored = self._check_click_conversion(request.customer_id, conversion, call)
                except _RowError as error:
                    call.errors.append(error.at_row("conversions", index))
                    results.append(self._upload.ClickConversionResult())
                    continue
                accepted.append(stored)
                results.append(
                    self._upload.ClickConversionResult(
                        conversion_action=conversion.conversion_action,
                        conversion_date_time=conversion.conversion_date_time,
                        user_identifiers=conversion.user_identifiers,
                        **({stored.click_id_field: stored.click_id} if stored.click_id else {}),
                    )
                )
            if not request.validate_only:
                for stored in accepted:
                    self._store(stored)
            after = self._after_processing.popleft() if self._after_processing else None
        if after is not None:
            context.abort(after, f"injected {after.name} after processing")
        return self._upload.UploadClickConversionsResponse(
            partial_failure_error=self._partial_failure(call),
            results=[] if request.validate_only else results,
            job_id=request.job_id if "job_id" in request else next(self._job_ids),
        )

    def _check_click_conversion(
        self, customer_id: str, conversion: Any, call: _Request
    ) -> StoredConversion:
        """Apply the per-row rules in order; raise :class:`_RowError` on the first failure."""
        id_fields = [name for name in CLICK_ID_FIELDS if getattr(conversion, name)]
        if len(id_fields) > 1:
            raise _RowError(
                "GBRAID_WBRAID_BOTH_SET", "Set only one of gclid, gbraid, wbraid.", id_fields[1]
            )
        if not id_fields and not conversion.user_identifiers:
            raise _RowError(
                "REQUIRED", "A click id or user identifiers are required.", "gclid", "field_error"
            )
        id_field = id_fields[0] if id_fields else ""
        click_id = getattr(conversion, id_field) if id_field else ""
        if click_id and not _CLICK_ID.fullmatch(click_id):
            raise _RowError(
                f"UNPARSEABLE_{id_field.upper()}", "The click id could not be decoded.", id_field
            )
        if click_id and click_id not in self.clicks:
            raise _RowError("CLICK_NOT_FOUND", "No click with this id.", id_field)
        action = self._action(customer_id, conversion.conversion_action, "UPLOAD_CLICKS")
        if isinstance(action, str):
            raise _RowError(
                action, "The conversion action cannot take click uploads.", "conversion_action"
            )
        converted_at = _date_time(conversion.conversion_date_time, "conversion_date_time")
        self._not_future(converted_at, "conversion_date_time")
        if click_id:
            clicked_at = self.clicks[click_id]
            window = dt.timedelta(days=action.click_through_lookback_window_days)
            if converted_at <= clicked_at:
                raise _RowError(
                    "CONVERSION_PRECEDES_EVENT",
                    "The conversion precedes the click.",
                    "conversion_date_time",
                )
            if self.now - clicked_at < TOO_RECENT_CLICK:
                raise _RowError(
                    "TOO_RECENT_EVENT", "The click is under 6 hours old; retry later.", id_field
                )
            if converted_at - clicked_at > window or self.now - clicked_at > MAX_CLICK_AGE:
                raise _RowError(
                    "EXPIRED_EVENT", "The click is outside the click-through window.", id_field
                )
        if conversion.currency_code and not _CURRENCY.fullmatch(conversion.currency_code):
            raise _RowError(
                "UNSUPPORTED",
                "Not an ISO 4217 currency code.",
                "currency_code",
                "currency_code_error",
            )
        order_id = conversion.order_id
        if "@" in order_id:
            raise _RowError(
                "ORDER_ID_CONTAINS_PII", "The order id looks like an email.", "order_id"
            )
        if order_id and ("order", action.resource_name, order_id) in call.seen:
            raise _RowError(
                "DUPLICATE_ORDER_ID", "The order id repeats in this request.", "order_id"
            )
        if order_id and (action.resource_name, order_id) in self._by_order:
            raise _RowError(
                "ORDER_ID_ALREADY_IN_USE", "The order id was uploaded before.", "order_id"
            )
        identifiers = conversion.user_identifiers
        if len(identifiers) > MAX_USER_IDENTIFIERS:
            raise _RowError(
                "TOO_MANY",
                f"At most {MAX_USER_IDENTIFIERS} user identifiers.",
                "user_identifiers",
                "collection_size_error",
            )
        hashed = []
        for identifier in identifiers:
            kind = type(identifier).pb(identifier).WhichOneof("identifier")
            if kind not in ("hashed_email", "hashed_phone_number"):
                raise _RowError(
                    "UNSUPPORTED_USER_IDENTIFIER",
                    "Use hashed_email or hashed_phone_number.",
                    "user_identifiers",
                )
            if not _SHA256_HEX.fullmatch(getattr(identifier, kind)):
                raise _RowError(
                    "INVALID_USER_IDENTIFIER",
                    "Not a lowercase hex SHA-256 digest.",
                    "user_identifiers",
                )
            hashed.append((kind, getattr(identifier, kind)))
        if click_id:
            key = (action.resource_name, click_id, converted_at)
            if key in self._by_click:
                raise _RowError(
                    "CLICK_CONVERSION_ALREADY_EXISTS",
                    "This click already converted at this time.",
                    id_field,
                )
            if ("click", *key) in call.seen:
                raise _RowError(
                    "DUPLICATE_CLICK_CONVERSION_IN_REQUEST",
                    "The click conversion repeats in this request.",
                    id_field,
                )
        if order_id:
            call.seen.add(("order", action.resource_name, order_id))
        if click_id:
            call.seen.add(("click", action.resource_name, click_id, converted_at))
        return StoredConversion(
            customer_id=customer_id,
            conversion_action=action.resource_name,
            click_id_field=id_field,
            click_id=click_id,
            conversion_time=converted_at,
            value=conversion.conversion_value if "conversion_value" in conversion else None,
            currency_code=conversion.currency_code,
            order_id=order_id,
            user_identifiers=tuple(hashed),
            ad_user_data=conversion.consent.ad_user_data.name,
            uploaded_at=self.now,
        )

    def _store(self, stored: StoredConversion) -> None:
        self.uploads.append(stored)
        if stored.order_id:
            self._by_order[(stored.conversion_action, stored.order_id)] = stored
        if stored.click_id:
            key = (stored.conversion_action, stored.click_id, stored.conversion_time)
            self._by_click[key] = stored

    # --- ConversionAdjustmentUploadService -------------------------------------------

    def _upload_conversion_adjustments(self, request: Any, context: grpc.ServicerContext) -> Any:
        call = self._begin("UploadConversionAdjustments", request, context, upload=True)
        self._check_upload(
            context,
            call,
            request.conversion_adjustments,
            "TOO_MANY_ADJUSTMENTS_IN_REQUEST",
            request.partial_failure,
        )
        results = []
        with self._lock:
            accepted: list[StoredAdjustment] = []
            for index, adjustment in enumerate(request.conversion_adjustments):
                try:
                    stored = self._check_adjustment(request.customer_id, adjustment, call)
                except _RowError as error:
                    call.errors.append(error.at_row("conversion_adjustments", index))
                    results.append(self._adjust.ConversionAdjustmentResult())
                    continue
                accepted.append(stored)
                results.append(
                    self._adjust.ConversionAdjustmentResult(
                        gclid_date_time_pair=adjustment.gclid_date_time_pair,
                        order_id=adjustment.order_id,
                        conversion_action=adjustment.conversion_action,
                        adjustment_date_time=adjustment.adjustment_date_time,
                        adjustment_type=adjustment.adjustment_type,
                    )
                )
            if not request.validate_only:
                for stored in accepted:
                    self._apply(stored)
        return self._adjust.UploadConversionAdjustmentsResponse(
            partial_failure_error=self._partial_failure(call),
            results=[] if request.validate_only else results,
            job_id=request.job_id if "job_id" in request else next(self._job_ids),
        )

    def _check_adjustment(
        self, customer_id: str, adjustment: Any, call: _Request
    ) -> StoredAdjustment:
        """Apply the per-row adjustment rules in order; raise :class:`_RowError` on failure."""
        pair = adjustment.gclid_date_time_pair
        if adjustment.order_id and pair.gclid:
            raise _RowError(
                "GCLID_DATE_TIME_PAIR_AND_ORDER_ID_BOTH_SET",
                "Identify the conversion by order_id or gclid pair, not both.",
                "order_id",
            )
        action = self._action(customer_id, adjustment.conversion_action, "UPLOAD_CLICKS")
        if isinstance(action, str):
            raise _RowError(
                action, "The conversion action cannot take adjustments.", "conversion_action"
            )
        kinds = self._adjustment_type
        if adjustment.adjustment_type not in (kinds.RETRACTION, kinds.RESTATEMENT):
            raise _RowError(
                "CONVERSION_ACTION_NOT_ELIGIBLE_FOR_ENHANCEMENT",
                "Only RETRACTION and RESTATEMENT are emulated.",
                "adjustment_type",
            )
        adjusted_at = _date_time(adjustment.adjustment_date_time, "adjustment_date_time")
        self._not_future(adjusted_at, "adjustment_date_time")
        conversion = self._find_conversion(action.resource_name, adjustment.order_id, pair)
        if conversion is None:
            raise _RowError("CONVERSION_NOT_FOUND", "No uploaded conversion matches.", "order_id")
        if conversion.retracted:
            raise _RowError(
                "CONVERSION_ALREADY_RETRACTED", "The conversion was retracted.", "adjustment_type"
            )
        if ("adjusted", id(conversion)) in call.seen:
            raise _RowError(
                "DUPLICATE_ADJUSTMENT_IN_REQUEST",
                "The conversion is adjusted twice in this request.",
                "order_id",
            )
        if self.now - conversion.uploaded_at < TOO_RECENT_FOR_ADJUSTMENT:
            raise _RowError(
                "TOO_RECENT_CONVERSION",
                "The conversion was uploaded under 24 hours ago; retry later.",
                "order_id",
            )
        if self.now - conversion.conversion_time > MAX_ADJUSTMENT_AGE:
            raise _RowError(
                "CONVERSION_EXPIRED", "The conversion is older than 54 days.", "order_id"
            )
        if adjusted_at <= conversion.conversion_time:
            raise _RowError(
                "ADJUSTMENT_PRECEDES_CONVERSION",
                "The adjustment must be after the conversion.",
                "adjustment_date_time",
            )
        value = None
        if adjustment.adjustment_type == kinds.RESTATEMENT:
            if "adjusted_value" not in adjustment.restatement_value:
                raise _RowError(
                    "REQUIRED",
                    "A restatement needs restatement_value.adjusted_value.",
                    "restatement_value",
                    "field_error",
                )
            if conversion.restated_at is not None and adjusted_at == conversion.restated_at:
                raise _RowError(
                    "RESTATEMENT_ALREADY_EXISTS",
                    "A restatement at this time exists.",
                    "adjustment_date_time",
                )
            if conversion.restated_at is not None and adjusted_at < conversion.restated_at:
                raise _RowError(
                    "MORE_RECENT_RESTATEMENT_FOUND",
                    "A later restatement exists.",
                    "adjustment_date_time",
                )
            value = adjustment.restatement_value.adjusted_value
        call.seen.add(("adjusted", id(conversion)))
        return StoredAdjustment(conversion, adjustment.adjustment_type.name, adjusted_at, value)

    def _not_future(self, moment: dt.datetime, at: str) -> None:
        """A date-time later than the emulator clock is refused (``DateError``).

        No conversion error names this case; Google answers ``LATER_THAN_MAXIMUM_DATE``
        ("Date is after allowed maximum") in the field, and nothing documents a tolerance.
        """
        if moment > self.now:
            raise _RowError(
                "LATER_THAN_MAXIMUM_DATE",
                "The date-time is in the future.",
                at,
                "date_error",
            )

    def _find_conversion(
        self, action_name: str, order_id: str, pair: Any
    ) -> StoredConversion | None:
        if order_id:
            return self._by_order.get((action_name, order_id))
        converted_at = _date_time(pair.conversion_date_time, "gclid_date_time_pair")
        return self._by_click.get((action_name, pair.gclid, converted_at))

    def _apply(self, adjustment: StoredAdjustment) -> None:
        self.adjustments.append(adjustment)
        conversion = adjustment.conversion
        if adjustment.adjustment_type == "RETRACTION":
            conversion.retracted = True
        else:
            conversion.value = adjustment.adjusted_value
            conversion.restated_at = adjustment.adjustment_time

    # --- GoogleAdsService ------------------------------------------------------------

    def _rows(self, method: str, request: Any, context: grpc.ServicerContext) -> list[Any]:
        """Every seeded conversion action of the customer, for a FROM conversion_action query."""
        call = self._begin(method, request, context, upload=False)
        match = _FROM.search(request.query)
        if match is None:
            self._refuse(context, call, "EXPECTED_FROM", "query")
        if match.group(1).lower() != "conversion_action":
            if self.reporting is None:
                self._refuse(context, call, "BAD_RESOURCE_TYPE_IN_FROM_CLAUSE", "query")
            return list(self.reporting.rows(call, request, context))
        resources = self._resources
        with self._lock:
            actions = [a for a in self.actions.values() if a.customer_id == request.customer_id]
        return [
            self._search.GoogleAdsRow(
                conversion_action=resources.ConversionAction(
                    resource_name=a.resource_name,
                    id=a.id,
                    name=a.name,
                    type_=a.type,
                    status=a.status,
                )
            )
            for a in actions
        ]

    def _search_rows(self, request: Any, context: grpc.ServicerContext) -> Any:
        rows = self._rows("Search", request, context)
        return self._search.SearchGoogleAdsResponse(results=rows)

    def _search_stream(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        rows = self._rows("SearchStream", request, context)
        size = self.stream_batch_size
        for start in range(0, max(len(rows), 1), size):
            yield self._search.SearchGoogleAdsStreamResponse(results=rows[start : start + size])


def _date_time(value: str, at: str) -> dt.datetime:
    """Parse ``yyyy-mm-dd hh:mm:ss+|-hh:mm`` or raise the API's date error for field ``at``."""
    if not _DATE_TIME.fullmatch(value):
        raise _RowError(
            "INVALID_STRING_DATE_TIME_SECONDS_WITH_OFFSET",
            "Use 'yyyy-mm-dd hh:mm:ss+|-hh:mm'.",
            at,
            "date_error",
        )
    try:
        return dt.datetime.strptime(value, "%Y-%m-%d %H:%M:%S%z")
    except ValueError:
        raise _RowError(
            "INVALID_FIELD_VALUES_IN_DATE_TIME", "The date-time does not exist.", at, "date_error"
        ) from None


def _unary(handler: Any, request_type: Any, response_type: Any) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(
        handler,
        request_deserializer=request_type.deserialize,
        response_serializer=response_type.serialize,
    )


def _path_text(path: tuple[tuple[str, int | None], ...]) -> Iterator[str]:
    for name, index in path:
        yield name if index is None else f"{name}[{index}]"

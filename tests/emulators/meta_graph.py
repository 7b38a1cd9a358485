"""Meta Graph API emulator for the Conversions API: ``POST /vNN.N/{pixel_id}/events``
(and ``GET /vNN.N/{pixel_id}``, the pixel node).

Accepts what the facebook-business SDK sends: token in the query string (or body, or an
``Authorization: Bearer`` header), a form body whose ``data`` is a JSON array of JSON
*strings* (sync SDK) or of objects; a JSON body works too. Errors use the Graph envelope
with HTTP 400. Usage::

    with MetaGraphEmulator(tokens={"tok"}, pixels={"123"}) as meta:
        FacebookSession.GRAPH = meta.url
        ...
        meta.events          # accepted unique events (ServerEvent)
        meta.duplicates      # same (pixel, event_name, event_id) within 48 h
        meta.test_events     # events sent with test_event_code
        meta.throttle_next(2, code=17)   # Graph rate-limit error, is_transient=true
        meta.fail_next(1)                # HTTP 500, Graph "unexpected error" envelope

Error codes and the subcode of "too old" are from Meta's documentation and observed answers;
message texts are close to Graph's but not guaranteed identical.

Event times are judged on the emulator clock (``set_time``/``advance``): older than 7 days
rejects the whole request (documented, subcode 2804003); later than the clock also rejects
it (code 100). Meta documents no tolerance and no error for a future ``event_time``, and
field reports differ (an error, or a warning in ``messages``), so the emulator takes the less
forgiving reading: ``max_future_seconds=0``.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tests.emulators.http_base import EmulatorServer, Request, Response
from tests.emulators.tls import TlsFiles

EVENTS_PATH = re.compile(r"^/v\d+\.\d+/(?P<pixel>[^/]+)/events/?$")
OBJECT_PATH = re.compile(r"^/v\d+\.\d+/(?P<object>[^/]+)/?$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
FB_COOKIE = re.compile(r"^fb\.[0-2]\.\d{13}\.\S+$")  # fb.<subdomain index>.<ms>.<id>
CURRENCY = re.compile(r"^[A-Za-z]{3}$")

MAX_EVENTS = 1000
MAX_AGE_SECONDS = 7 * 86400
DEDUP_WINDOW_SECONDS = 48 * 3600
SUBCODE_EVENT_TOO_OLD = 2804003
SUBCODE_UNKNOWN_OBJECT = 33
SUBCODE_TOKEN_EXPIRED = 463

ACTION_SOURCES = frozenset({
    "email", "website", "app", "phone_call", "chat", "physical_store",
    "system_generated", "business_messaging", "other",
})
#: user_data keys Meta requires SHA-256 hashed (the SDK hashes these); external_id is held
#: to the same rule here because revsync always hashes it.
HASHED_KEYS = frozenset({
    "em", "ph", "fn", "ln", "ge", "db", "ct", "st", "zp", "country",
    "f5first", "f5last", "fi", "dobd", "dobm", "doby", "external_id",
})
UNHASHED_KEYS = frozenset({
    "client_ip_address", "client_user_agent", "fbc", "fbp", "subscription_id",
    "fb_login_id", "lead_id", "madid", "anon_id", "ctwa_clid", "page_id",
})
THROTTLE_MESSAGES = {
    4: "Application request limit reached",
    17: "User request limit reached",
    32: "Page request limit reached",
    613: "Calls to this api have exceeded the rate limit.",
}


@dataclass(frozen=True)
class ServerEvent:
    """One accepted event as Meta received it."""

    pixel_id: str
    data: dict[str, Any]
    received_at: float
    test_event_code: str | None = None


class GraphError(Exception):
    """A Graph error envelope to answer with."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        type_: str = "OAuthException",
        subcode: int | None = None,
        user_msg: str | None = None,
        transient: bool = False,
        status: int = 400,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error: dict[str, Any] = {
            "message": message, "type": type_, "code": code, "is_transient": transient,
        }
        if subcode is not None:
            self.error["error_subcode"] = subcode
        if user_msg is not None:
            self.error["error_user_msg"] = user_msg


def _invalid(user_msg: str, subcode: int | None = None) -> GraphError:
    return GraphError(100, "Invalid parameter", subcode=subcode, user_msg=user_msg)


class MetaGraphEmulator(EmulatorServer):
    """Conversions API endpoint with seeded tokens and pixels."""

    def __init__(
        self,
        *,
        tokens: Iterable[str] = (),
        pixels: Iterable[str] = (),
        max_future_seconds: int = 0,
        tls: TlsFiles | None = None,
    ) -> None:
        super().__init__(tls=tls)
        self.tokens = set(tokens)
        self.expired_tokens: set[str] = set()
        self.pixels = set(pixels)
        self.max_future_seconds = max_future_seconds
        self.events: list[ServerEvent] = []
        self.duplicates: list[ServerEvent] = []
        self.test_events: list[ServerEvent] = []
        self._first_seen: dict[tuple[str, str, str], float] = {}

    def expire_token(self, token: str) -> None:
        """Make ``token`` answer code 190 / subcode 463 (session expired)."""
        self.tokens.discard(token)
        self.expired_tokens.add(token)

    def throttle_next(self, times: int = 1, code: int = 17) -> None:
        """Answer the next requests with a Graph rate-limit error (HTTP 400, transient)."""
        error = GraphError(code, THROTTLE_MESSAGES[code], transient=True)
        self.inject(self._error_response(error), times)

    def fault_payload(self, status: int) -> Any:
        """Graph's envelope for server-side failures (code 2, transient)."""
        return {"error": {
            "message": "An unexpected error has occurred. Please retry your request later.",
            "type": "OAuthException", "code": 2, "is_transient": True,
            "fbtrace_id": _trace_id(),
        }}

    def handle(self, request: Request) -> Response:
        """Route, authenticate and validate one request."""
        try:
            if request.method == "GET" and OBJECT_PATH.match(request.path):
                return self._object(request)
            return self._events(request)
        except GraphError as error:
            return self._error_response(error)

    # -- internals -----------------------------------------------------------------------

    def _error_response(self, error: GraphError) -> Response:
        trace = _trace_id()
        headers = {"x-fb-trace-id": trace}
        if error.error["code"] == 190:
            headers["WWW-Authenticate"] = (
                f'OAuth "Facebook Platform" "invalid_token" "{error.error["message"]}"'
            )
        return Response.json(error.status, {"error": {**error.error, "fbtrace_id": trace}},
                             headers)

    def _events(self, request: Request) -> Response:
        match = EVENTS_PATH.match(request.path)
        if request.method != "POST" or match is None:
            raise GraphError(100, f"Unsupported {request.method.lower()} request.",
                             type_="GraphMethodException")
        params = _params(request)
        self._authenticate(request, params)
        pixel_id = match["pixel"]
        if pixel_id not in self.pixels:
            raise GraphError(
                100,
                f"Unsupported post request. Object with ID '{pixel_id}' does not exist, cannot "
                "be loaded due to missing permissions, or does not support this operation.",
                type_="GraphMethodException", subcode=SUBCODE_UNKNOWN_OBJECT,
            )
        events = _parse_data(params.get("data"))
        now = request.received_at
        for index, event in enumerate(events):
            self._validate_event(index, event, now)
        test_code = params.get("test_event_code") or None
        for event in events:
            self._store(ServerEvent(pixel_id, event, now, test_code))
        trace = _trace_id()
        return Response.json(
            200, {"events_received": len(events), "messages": [], "fbtrace_id": trace},
            {"x-fb-trace-id": trace},
        )

    def _object(self, request: Request) -> Response:
        """``GET /vNN.N/{pixel_id}``: the pixel (dataset) node, ``id`` and ``name``."""
        match = OBJECT_PATH.match(request.path)
        assert match is not None
        self._authenticate(request, _params(request))
        pixel_id = match["object"]
        if pixel_id not in self.pixels:
            raise GraphError(
                100,
                f"Unsupported get request. Object with ID '{pixel_id}' does not exist, cannot "
                "be loaded due to missing permissions, or does not support this operation.",
                type_="GraphMethodException", subcode=SUBCODE_UNKNOWN_OBJECT,
            )
        return Response.json(200, {"id": pixel_id, "name": f"Pixel {pixel_id}"})

    def _authenticate(self, request: Request, params: dict[str, Any]) -> None:
        token = params.get("access_token")
        authorization = request.headers.get("authorization", "")
        if not token and authorization.split(" ")[0].lower() in ("bearer", "oauth"):
            token = authorization.partition(" ")[2].strip()
        if not token:
            raise GraphError(104, "An access token is required to request this resource.")
        if token in self.expired_tokens:
            raise GraphError(190, "Error validating access token: Session has expired.",
                             subcode=SUBCODE_TOKEN_EXPIRED)
        if token not in self.tokens:
            raise GraphError(190, "Invalid OAuth access token - Cannot parse access token")

    def _validate_event(self, index: int, event: Any, now: float) -> None:
        if not isinstance(event, dict):
            raise _invalid(f"data[{index}] must be a JSON object.")
        where = (f"data[{index}] (event_name={event.get('event_name')!r}, "
                 f"event_id={event.get('event_id')!r})")
        event_time = event.get("event_time")
        if type(event_time) is not int:
            raise _invalid(f"{where}: event_time must be an integer Unix time in seconds.")
        if event_time < now - MAX_AGE_SECONDS:
            raise _invalid(
                f"{where}: the timestamp for this event is too far in the past. Events need to "
                "be sent within 7 days of when they occurred.",
                SUBCODE_EVENT_TOO_OLD,
            )
        problem = _event_problem(event, now + self.max_future_seconds)
        if problem:
            raise _invalid(f"{where}: {problem}")

    def _store(self, received: ServerEvent) -> None:
        if received.test_event_code:
            self.test_events.append(received)
            return
        event_id = received.data.get("event_id")
        if event_id is not None:
            key = (received.pixel_id, received.data["event_name"], str(event_id))
            first = self._first_seen.get(key)
            if first is not None and received.received_at - first < DEDUP_WINDOW_SECONDS:
                self.duplicates.append(received)
                return
            self._first_seen[key] = received.received_at
        self.events.append(received)


def _trace_id() -> str:
    return secrets.token_urlsafe(8)


def _params(request: Request) -> dict[str, Any]:
    """Query-string parameters overlaid with the form or JSON body."""
    params: dict[str, Any] = {key: values[0] for key, values in request.query.items()}
    if not request.body:
        return params
    if request.content_type == "application/json":
        try:
            body = request.json()
        except ValueError:
            raise _invalid("The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise _invalid("The JSON body must be an object.")
        params.update(body)
    else:
        params.update(request.form())
    return params


def _parse_data(raw: Any) -> list[Any]:
    """``data`` as a list of decoded events (JSON-string items are decoded)."""
    if raw is None:
        raise GraphError(100, "(#100) The parameter data is required")
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
        if not isinstance(data, list):
            raise ValueError
        events = [json.loads(item) if isinstance(item, str) else item for item in data]
    except ValueError:
        raise _invalid("data must be a JSON array of events.") from None
    if not events:
        raise _invalid("data must contain at least one event.")
    if len(events) > MAX_EVENTS:
        raise _invalid(f"data holds {len(events)} events; at most {MAX_EVENTS} are allowed.")
    return events


def _event_problem(event: dict[str, Any], latest_time: float) -> str | None:
    """What makes one event invalid, or ``None``."""
    if not isinstance(event.get("event_name"), str) or not event["event_name"]:
        return "event_name is required."
    if event["event_time"] > latest_time:
        return "event_time is in the future."
    action_source = event.get("action_source")
    if action_source is None:
        return "action_source is required."
    if action_source not in ACTION_SOURCES:
        return f"action_source {action_source!r} is not valid."
    problem = _user_data_problem(event.get("user_data"))
    if problem:
        return problem
    if action_source == "website" and not event.get("event_source_url"):
        return "event_source_url is required for website events."
    if action_source == "website" and not event["user_data"].get("client_user_agent"):
        return "user_data.client_user_agent is required for website events."
    return _custom_data_problem(event.get("custom_data"))


def _user_data_problem(user_data: Any) -> str | None:
    if not isinstance(user_data, dict):
        return "user_data is required."
    present = {key for key, value in user_data.items() if value not in (None, "", [])}
    if not present & (HASHED_KEYS | UNHASHED_KEYS):
        return "user_data must contain at least one customer information parameter."
    for key in sorted(present & HASHED_KEYS):
        values = user_data[key] if isinstance(user_data[key], list) else [user_data[key]]
        if not all(isinstance(v, str) and SHA256_HEX.match(v) for v in values):
            return f"user_data.{key} must be SHA-256 hashed (64 lowercase hex characters)."
    for key in ("fbc", "fbp"):
        value = user_data.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or SHA256_HEX.match(value):
            return f"user_data.{key} must not be hashed."
        if not FB_COOKIE.match(value):
            return f"user_data.{key} {value!r} is malformed; expected fb.1.<ms>.<id>."
    return None


def _custom_data_problem(custom_data: Any) -> str | None:
    if custom_data is None:
        return None
    if not isinstance(custom_data, dict):
        return "custom_data must be an object."
    value = custom_data.get("value")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "custom_data.value must be a number."
    if not isinstance(custom_data.get("currency"), str) or not CURRENCY.match(
        custom_data["currency"]
    ):
        return "custom_data.currency must be a 3-letter ISO 4217 code when value is set."
    return None

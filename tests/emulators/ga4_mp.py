"""GA4 Measurement Protocol emulator: ``POST /mp/collect`` and ``POST /debug/mp/collect``.

Production (``/mp/collect``) answers 204 to everything, as Google does; a valid payload's
events land in ``events`` (or ``duplicates``), an invalid payload lands whole in ``invalid``
with the messages the debug endpoint would have given. The debug endpoint records nothing
and answers ``{"validationMessages": [...]}``. Usage::

    with GA4MPEmulator(streams={"G-TEST": "secret"}) as ga4:
        httpx.post(f"{ga4.url}/mp/collect", params={"measurement_id": "G-TEST",
                   "api_secret": "secret"}, json=payload)
        ga4.events, ga4.invalid, ga4.duplicates
        ga4.fail_next(1, status=429, retry_after=2)

Google's validation server does not check ``api_secret`` (it says so in its docs); pass
``debug_checks_api_secret=True`` to have it report a wrong secret anyway.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tests.emulators.http_base import EmulatorServer, Request, Response
from tests.emulators.tls import TlsFiles

MAX_BODY_BYTES = 130_000
MAX_EVENTS = 25
MAX_PARAMS = 25
MAX_NAME_LENGTH = 40
MAX_PARAM_VALUE_LENGTH = 100
MAX_USER_ID_LENGTH = 256
MAX_BACKDATE_MICROS = 72 * 3600 * 1_000_000

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
WEB_CLIENT_ID = re.compile(r"^\d+\.\d+$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
CURRENCY = re.compile(r"^[A-Z]{3}$")
RESERVED_PREFIXES = ("google_", "ga_", "firebase_")
RESERVED_EVENT_NAMES = frozenset({
    "ad_activeview", "ad_click", "ad_exposure", "ad_impression", "ad_query", "ad_reward",
    "adunit_exposure", "app_background", "app_clear_data", "app_exception", "app_remove",
    "app_store_refund", "app_store_subscription_cancel", "app_store_subscription_convert",
    "app_store_subscription_renew", "app_update", "app_upgrade", "dynamic_link_app_open",
    "dynamic_link_app_update", "dynamic_link_first_open", "error", "first_open",
    "first_visit", "in_app_purchase", "notification_dismiss", "notification_foreground",
    "notification_open", "notification_receive", "os_update", "session_start",
    "session_start_with_rollout", "user_engagement",
})
RESERVED_PARAM_NAMES = frozenset({"firebase_conversion"})
CONSENT_KEYS = frozenset({"ad_user_data", "ad_personalization"})
CONSENT_VALUES = frozenset({"GRANTED", "DENIED"})
USER_DATA_HASH_LISTS = ("sha256_email_address", "sha256_phone_number")


@dataclass(frozen=True)
class Message:
    """One validation message, as the debug endpoint reports it."""

    field_path: str
    description: str
    validation_code: str

    def as_json(self) -> dict[str, str]:
        return {"fieldPath": self.field_path, "description": self.description,
                "validationCode": self.validation_code}


@dataclass(frozen=True)
class CollectedEvent:
    """One event accepted by the production endpoint, with its payload's context."""

    measurement_id: str
    client_id: str
    name: str
    params: dict[str, Any]
    payload: dict[str, Any]
    received_at: float


@dataclass(frozen=True)
class InvalidPayload:
    """A production request GA4 would silently drop, and why."""

    query: dict[str, str]
    body: bytes
    messages: list[Message]


class GA4MPEmulator(EmulatorServer):
    """Measurement Protocol endpoints with seeded measurement ids and api secrets."""

    def __init__(
        self,
        *,
        streams: Mapping[str, str | Iterable[str]] | None = None,
        dedup_event_names: Iterable[str] = ("purchase", "close_convert_lead"),
        debug_checks_api_secret: bool = False,
        tls: TlsFiles | None = None,
    ) -> None:
        super().__init__(tls=tls)
        self.secrets: dict[str, set[str]] = {}
        for measurement_id, secret in (streams or {}).items():
            for one in [secret] if isinstance(secret, str) else secret:
                self.add_stream(measurement_id, one)
        self.dedup_event_names = frozenset(dedup_event_names)
        self.debug_checks_api_secret = debug_checks_api_secret
        self.events: list[CollectedEvent] = []
        self.duplicates: list[CollectedEvent] = []
        self.invalid: list[InvalidPayload] = []
        self._transactions: set[tuple[str, str, str]] = set()

    def add_stream(self, measurement_id: str, api_secret: str) -> None:
        """Seed a web data stream and one of its api secrets."""
        self.secrets.setdefault(measurement_id, set()).add(api_secret)

    def handle(self, request: Request) -> Response:
        """Serve the production and debug collect endpoints."""
        if request.method != "POST" or request.path not in ("/mp/collect", "/debug/mp/collect"):
            return Response(404)
        debug = request.path.startswith("/debug/")
        messages = self._validate(request, check_secret=not debug or self.debug_checks_api_secret)
        if debug:
            return Response.json(200, {"validationMessages": [m.as_json() for m in messages]})
        if messages:
            query = {key: values[0] for key, values in request.query.items()}
            self.invalid.append(InvalidPayload(query, request.body, messages))
        else:
            self._record(request)
        return Response(204)

    def _validate(self, request: Request, *, check_secret: bool = True) -> list[Message]:
        """All validation messages for one request (empty when valid)."""
        messages = self._check_credentials(request, check_secret)
        if len(request.body) >= MAX_BODY_BYTES:
            messages.append(Message("", f"Payload must be smaller than {MAX_BODY_BYTES} bytes.",
                                    "VALUE_OUT_OF_BOUNDS"))
            return messages
        try:
            payload = request.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            messages.append(Message("", "Unable to parse the payload as a JSON object.",
                                    "VALUE_INVALID"))
            return messages
        now_micros = int(request.received_at * 1_000_000)
        messages += _check_client(payload)
        messages += _check_timestamp("timestamp_micros", payload.get("timestamp_micros"),
                                     now_micros)
        messages += _check_consent(payload.get("consent"))
        messages += _check_user_data(payload.get("user_data"))
        messages += _check_events(payload.get("events"), now_micros)
        return messages

    def _check_credentials(self, request: Request, check_secret: bool) -> list[Message]:
        measurement_id = request.arg("measurement_id")
        secret = request.arg("api_secret")
        if not measurement_id:
            return [Message("measurement_id", "measurement_id is required.", "VALUE_REQUIRED")]
        if measurement_id not in self.secrets:
            return [Message("measurement_id", f"Unknown measurement_id [{measurement_id}].",
                            "VALUE_INVALID")]
        if not check_secret:
            return []
        if not secret:
            return [Message("api_secret", "api_secret is required.", "VALUE_REQUIRED")]
        if secret not in self.secrets[measurement_id]:
            return [Message("api_secret", "api_secret is not valid for this measurement_id.",
                            "VALUE_INVALID")]
        return []

    def _record(self, request: Request) -> None:
        payload = request.json()
        measurement_id = request.arg("measurement_id") or ""
        for event in payload["events"]:
            collected = CollectedEvent(measurement_id, payload["client_id"], event["name"],
                                       dict(event.get("params") or {}), payload,
                                       request.received_at)
            transaction_id = collected.params.get("transaction_id")
            if collected.name in self.dedup_event_names and transaction_id:
                key = (measurement_id, collected.name, str(transaction_id))
                if key in self._transactions:
                    self.duplicates.append(collected)
                    continue
                self._transactions.add(key)
            self.events.append(collected)


def _check_client(payload: dict[str, Any]) -> list[Message]:
    messages = []
    client_id = payload.get("client_id")
    if client_id in (None, ""):
        messages.append(Message("client_id", "client_id is required.", "VALUE_REQUIRED"))
    elif not isinstance(client_id, str) or not WEB_CLIENT_ID.match(client_id):
        messages.append(Message("client_id", f"client_id [{client_id}] is not of the form "
                                "<number>.<number>.", "VALUE_INVALID"))
    user_id = payload.get("user_id")
    if user_id is not None and (not isinstance(user_id, str) or
                                not 0 < len(user_id) <= MAX_USER_ID_LENGTH):
        messages.append(Message("user_id", f"user_id must be a string of 1 to "
                                f"{MAX_USER_ID_LENGTH} characters.", "VALUE_INVALID"))
    return messages


def _check_timestamp(path: str, value: Any, now_micros: int) -> list[Message]:
    if value is None:
        return []
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        return [Message(path, f"{path} must be an integer number of microseconds.",
                        "VALUE_INVALID")]
    micros = int(value)
    if micros > now_micros:
        return [Message(path, f"{path} [{micros}] is in the future.", "VALUE_OUT_OF_BOUNDS")]
    if micros < now_micros - MAX_BACKDATE_MICROS:
        return [Message(path, f"{path} [{micros}] is more than 72 hours in the past.",
                        "VALUE_OUT_OF_BOUNDS")]
    return []


def _check_consent(consent: Any) -> list[Message]:
    if consent is None:
        return []
    if not isinstance(consent, dict):
        return [Message("consent", "consent must be an object.", "VALUE_INVALID")]
    messages = []
    for key, value in consent.items():
        if key not in CONSENT_KEYS:
            messages.append(Message(f"consent.{key}", f"Unknown consent field [{key}].",
                                    "NAME_INVALID"))
        elif value not in CONSENT_VALUES:
            messages.append(Message(f"consent.{key}", f"consent.{key} [{value}] must be "
                                    "GRANTED or DENIED.", "VALUE_INVALID"))
    return messages


def _check_user_data(user_data: Any) -> list[Message]:
    if user_data is None:
        return []
    if not isinstance(user_data, dict):
        return [Message("user_data", "user_data must be an object.", "VALUE_INVALID")]
    messages = []
    for key, value in user_data.items():
        path = f"user_data.{key}"
        if key == "address":
            continue
        if key not in USER_DATA_HASH_LISTS:
            messages.append(Message(path, f"Unknown user_data field [{key}].", "NAME_INVALID"))
        elif not isinstance(value, list) or not all(
            isinstance(item, str) and SHA256_HEX.match(item) for item in value
        ):
            messages.append(Message(path, f"{path} must be a list of SHA-256 hex digests.",
                                    "VALUE_INVALID"))
    return messages


def _check_events(events: Any, now_micros: int) -> list[Message]:
    if not isinstance(events, list) or not events:
        return [Message("events", "events must be a non-empty list.", "VALUE_REQUIRED")]
    if len(events) > MAX_EVENTS:
        return [Message("events", f"A request can hold at most {MAX_EVENTS} events; got "
                        f"{len(events)}.", "EXCEEDED_MAX_ENTITIES")]
    messages = []
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            messages.append(Message("events", f"Event at index: [{index}] must be an object.",
                                    "VALUE_INVALID"))
            continue
        messages += _check_event_name(index, event.get("name"))
        messages += _check_timestamp(f"events[{index}].timestamp_micros",
                                     event.get("timestamp_micros"), now_micros)
        messages += _check_params(index, event.get("params"))
    return messages


def _check_event_name(index: int, name: Any) -> list[Message]:
    where = f"Event at index: [{index}]"
    if not isinstance(name, str) or not name:
        return [Message("events", f"{where} has no name.", "VALUE_REQUIRED")]
    if len(name) > MAX_NAME_LENGTH:
        return [Message("events", f"{where} has name [{name}] longer than {MAX_NAME_LENGTH} "
                        "characters.", "VALUE_OUT_OF_BOUNDS")]
    if not NAME.match(name):
        return [Message("events", f"{where} has invalid name [{name}]. Names must start with "
                        "a letter and use only letters, digits and underscores.", "NAME_INVALID")]
    if name in RESERVED_EVENT_NAMES or name.startswith(RESERVED_PREFIXES):
        return [Message("events", f"{where} has reserved name [{name}].", "NAME_RESERVED")]
    return []


def _check_params(index: int, params: Any) -> list[Message]:
    path = f"events[{index}].params"
    if params is None:
        return []
    if not isinstance(params, dict):
        return [Message(path, f"{path} must be an object.", "VALUE_INVALID")]
    if len(params) > MAX_PARAMS:
        return [Message(path, f"Event at index: [{index}] has {len(params)} params; at most "
                        f"{MAX_PARAMS} are allowed.", "EXCEEDED_MAX_ENTITIES")]
    messages = []
    for name, value in params.items():
        if len(name) > MAX_NAME_LENGTH:
            messages.append(Message(f"{path}.{name}", f"Param name [{name}] is longer than "
                                    f"{MAX_NAME_LENGTH} characters.", "VALUE_OUT_OF_BOUNDS"))
        elif not NAME.match(name):
            messages.append(Message(f"{path}.{name}", f"Param name [{name}] is invalid.",
                                    "NAME_INVALID"))
        elif name in RESERVED_PARAM_NAMES or name.startswith(RESERVED_PREFIXES):
            messages.append(Message(f"{path}.{name}", f"Param name [{name}] is reserved.",
                                    "NAME_RESERVED"))
        elif isinstance(value, str) and len(value) > MAX_PARAM_VALUE_LENGTH:
            messages.append(Message(f"{path}.{name}", f"Param [{name}] value is longer than "
                                    f"{MAX_PARAM_VALUE_LENGTH} characters.",
                                    "VALUE_OUT_OF_BOUNDS"))
    messages += _check_value_currency(path, params)
    return messages


def _check_value_currency(path: str, params: dict[str, Any]) -> list[Message]:
    if "value" not in params:
        return []
    value = params["value"]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return [Message(f"{path}.value", "value must be a number.", "VALUE_INVALID")]
    currency = params.get("currency")
    if currency is None:
        return [Message(f"{path}.currency", "currency is required when value is set.",
                        "VALUE_REQUIRED")]
    if not isinstance(currency, str) or not CURRENCY.match(currency):
        return [Message(f"{path}.currency", f"currency [{currency}] must be an ISO 4217 "
                        "code.", "VALUE_INVALID")]
    return []

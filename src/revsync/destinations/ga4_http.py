"""GA4 Measurement Protocol transport over httpx.

The ``api_secret`` can only travel in the query string, and httpx logs every request URL
at INFO: a filter on the ``httpx`` logger masks ``api_secret=`` values before any handler
sees the record.

Production (``/mp/collect``) answers 2xx even to events it drops, so SENT there means
"delivered", not "valid": run ``validate_only`` first. Validate mode (``/debug/mp/collect``)
stores nothing; see ``Ga4HttpTransport`` for how its answers map to outcomes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import SecretStr

from revsync.config.destinations import Ga4Destination as Ga4Config
from revsync.destinations.base import ApiRequest
from revsync.destinations.retry import (
    RejectedCall,
    RetryableCall,
    RetryPolicy,
    UncertainCall,
    failure_outcomes,
    retry_after,
    scrub,
)
from revsync.domain import OutcomeStatus, UploadOutcome

if TYPE_CHECKING:
    from revsync.checks import CheckResult

_API_SECRET = re.compile(r"(api_secret=)[^&\s\"']*")
# Failures that prove the request was not sent; any other may have reached GA4, which does
# not deduplicate: such rows are held as unknown, never sent again by revsync itself.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
_UNCERTAIN = "GA4 may have recorded the events: held as unknown (revsync ledger settle)"
# What an uncertain failure says of the request: how much of it GA4 may have read
_HOW_FAR = (
    (httpx.WriteTimeout, "the request was partly written, then the write timed out"),
    (httpx.WriteError, "the connection broke while the request was being written"),
    (httpx.ReadTimeout, "the request was written; no answer came within the timeout"),
    (httpx.TransportError, "the request was written; the connection closed before the answer"),
)
_EVENT_PATH = re.compile(r"^events\[(\d+)\]")
_EVENT_DESCRIPTION = re.compile(r"Event at index: \[(\d+)\]")


class _MaskApiSecret(logging.Filter):
    """Masks ``api_secret=...`` in records of the logger it is attached to."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "api_secret=" in message:
            record.msg, record.args = _API_SECRET.sub(r"\1***", message), None
        return True


def _mask_httpx_logs() -> None:
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _MaskApiSecret) for f in logger.filters):
        logger.addFilter(_MaskApiSecret())


class Ga4HttpTransport:
    """Posts ``Ga4Destination`` request bodies to the Measurement Protocol.

    Production: 2xx -> SENT for every row; 429 and failures to connect -> retried, then
    RETRY; a 5xx, a timeout or a reset after the request was sent -> UNKNOWN at once (GA4
    may have recorded the events and does not deduplicate: an operator settles them);
    other 4xx -> REJECTED for every row (``GA4_HTTP_<status>``).

    Validate mode: each validation message is mapped to the event it names (``fieldPath``
    ``events[i]...`` or a description "Event at index: [i]"), else to every row; a row with
    messages is REJECTED with the first ``validationCode`` as code and the descriptions as
    message. A clean row is VALIDATED: GA4 stored nothing, and the ledger keeps it due for a
    real send once ``validate_only`` is off.
    """

    def __init__(
        self,
        config: Ga4Config,
        api_secret: SecretStr,
        client: httpx.Client | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.config = config
        self._secret = api_secret
        self._client = client or httpx.Client()
        self._owns_client = client is None
        self._retry = retry or RetryPolicy()
        _mask_httpx_logs()

    def send(self, request: ApiRequest) -> list[UploadOutcome]:
        url = httpx.URL(self.config.base_url.rstrip("/") + request.endpoint).copy_add_param(
            "api_secret", self._secret.get_secret_value()
        )
        try:
            response = self._retry.call(
                lambda: self._post(url, request.body), f"ga4 destination {self.config.name!r}"
            )
        except (RetryableCall, RejectedCall, UncertainCall) as error:
            return failure_outcomes(request.keys, error)
        if self.config.validate_only:
            return self._validation_outcomes(request.keys, response)
        return [UploadOutcome(key, OutcomeStatus.SENT) for key in request.keys]

    def check(self) -> Iterator[CheckResult]:
        """``revsync doctor``: stream ID format, a sample event through the validation
        server. The api_secret cannot be verified: that server does not check it."""
        from revsync.checks import fail, ok, warn

        config = self.config
        yield ok("measurement ID", f"{config.measurement_id} has the web stream format G-…")
        yield warn(
            "api secret",
            "set, but not verifiable: Google's validation server does not check api_secret; "
            "compare it with Admin > Data streams > Measurement Protocol API secrets",
        )
        url = httpx.URL(config.base_url.rstrip("/") + "/debug/mp/collect").copy_merge_params(
            {"measurement_id": config.measurement_id, "api_secret": self._secret.get_secret_value()}
        )
        body = {
            "client_id": "1234567890.1234567890",
            "events": [{"name": config.event_name, "params": {
                "transaction_id": "revsync-doctor", "value": 1.0, "currency": "USD"}}],
        }  # fmt: skip
        try:
            messages = self._post(url, body).json().get("validationMessages")
        except (RetryableCall, RejectedCall) as exc:
            yield fail("validation server", str(exc))
            return
        except (ValueError, AttributeError):
            yield fail("validation server", "the answer is not a validation result")
            return
        if messages:
            text = "; ".join(f"{m.get('fieldPath') or 'request'}: {m.get('description')}"
                             for m in messages)  # fmt: skip
            yield fail("validation server", f"sample {config.event_name!r} event refused: {text}")
        else:
            yield ok("validation server", f"sample {config.event_name!r} event valid")

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def _post(self, url: httpx.URL, body: dict[str, Any]) -> httpx.Response:
        secret = self._secret.get_secret_value()
        try:
            response = self._client.post(url, json=body, timeout=self.config.timeout_seconds)
        except _NOT_SENT as error:  # the request never reached GA4: safe to send again
            message = scrub(f"{type(error).__name__} reaching {self.config.base_url}", secret)
            raise RetryableCall("GA4_NETWORK", message) from None
        except httpx.TransportError as error:  # sent, or partly: GA4 may hold the events
            how_far = next(text for kind, text in _HOW_FAR if isinstance(error, kind))
            message = scrub(f"{how_far} ({type(error).__name__}, {self.config.base_url}); "
                            f"{_UNCERTAIN}", secret)  # fmt: skip
            raise UncertainCall("GA4_UNCERTAIN", message) from None
        status = response.status_code
        if status == 429:  # refused before processing
            message = scrub(f"HTTP {status}: {response.text[:200]}", secret)
            raise RetryableCall(
                f"GA4_HTTP_{status}", message, retry_after(response.headers.get("Retry-After"))
            )
        if status >= 500:
            message = scrub(f"HTTP {status}: {response.text[:200]}; {_UNCERTAIN}", secret)
            raise UncertainCall(f"GA4_HTTP_{status}", message)
        if not response.is_success:
            raise RejectedCall(
                f"GA4_HTTP_{status}", scrub(f"HTTP {status}: {response.text[:200]}", secret)
            )
        return response

    def _validation_outcomes(
        self, keys: Sequence[str], response: httpx.Response
    ) -> list[UploadOutcome]:
        secret = self._secret.get_secret_value()
        try:
            messages = response.json()["validationMessages"]
        except (ValueError, KeyError, TypeError):
            error = RetryableCall("GA4_BAD_RESPONSE", "validation answer is not understood")
            return failure_outcomes(keys, error)
        per_row: list[list[dict[str, Any]]] = [[] for _ in keys]
        for message in messages:
            index = _event_index(message)
            for row in [index] if index is not None and index < len(keys) else range(len(keys)):
                per_row[row].append(message)
        outcomes = []
        for key, found in zip(keys, per_row, strict=True):
            if not found:
                outcomes.append(
                    UploadOutcome(
                        key,
                        OutcomeStatus.VALIDATED,
                        "VALIDATED",
                        "valid; validate_only: GA4 stored nothing",
                    )
                )
                continue
            text = "; ".join(
                f"{m.get('fieldPath') or 'request'}: {m.get('description', '')}" for m in found
            )
            code = str(found[0].get("validationCode") or "VALIDATION_FAILED")
            outcomes.append(UploadOutcome(key, OutcomeStatus.REJECTED, code, scrub(text, secret)))
        return outcomes


def _event_index(message: dict[str, Any]) -> int | None:
    """The index of the event a validation message concerns, or ``None`` for the request."""
    for pattern, text in (
        (_EVENT_PATH, str(message.get("fieldPath", ""))),
        (_EVENT_DESCRIPTION, str(message.get("description", ""))),
    ):
        match = pattern.search(text)
        if match:
            return int(match[1])
    return None

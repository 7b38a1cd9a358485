"""Retry policy shared by the API transports, and the hygiene of their error text.

A transport turns every failed call into a ``RetryableCall`` (HTTP 429 and 5xx, errors the
platform marks transient or as throttling, connection errors, timeouts) or a
``RejectedCall`` (everything else). ``RetryPolicy.call`` retries only the first kind: a
bounded number of attempts, exponential waits with jitter, and at least as long as the
server's ``Retry-After``. A ``Retry-After`` longer than ``max_wait`` is not waited for in
process: the rows go back to the ledger carrying it as ``retry_after``.

Error messages are built by the transports from parsed fields, never from an SDK's own
exception text (which carries request parameters and URLs), and pass through ``scrub``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_after_attempt,
    stop_any,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base

from revsync.domain import OutcomeStatus, UploadOutcome
from revsync.errors import PermanentError, TransientError

log = logging.getLogger(__name__)

T = TypeVar("T")

_SHA256_HEX = re.compile(r"\b[0-9a-f]{64}\b")
_EMAIL = re.compile(r"[^@\s'\"<>(),;:\[\]]+@[^@\s'\"<>(),;:\[\]]+\.[A-Za-z]{2,}")
_E164 = re.compile(r"\+\d{8,15}\b")
MAX_MESSAGE = 500


class RetryableCall(TransientError):
    """A transient failure of one API call; ``code`` goes to the ledger, the text is clean."""

    def __init__(self, code: str, message: str, retry_after: datetime | None = None) -> None:
        super().__init__(message, retry_after)
        self.code = code


class UncertainCall(TransientError):
    """A call whose request may have been processed though no good answer came (a 5xx, a
    timeout or a reset after the body was sent). A platform that deduplicates retries it
    as a ``RetryableCall``; one that does not (GA4) must never send it again by itself:
    the rows become ``unknown`` for an operator to settle. Never retried in process."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class RejectedCall(PermanentError):
    """A permanent failure of one API call: the whole request was refused."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def failure_outcomes(
    keys: Sequence[str], error: RetryableCall | RejectedCall | UncertainCall
) -> list[UploadOutcome]:
    """The same outcome for every row of a request that failed as a whole."""
    if isinstance(error, UncertainCall):
        return [UploadOutcome(key, OutcomeStatus.UNKNOWN, error.code, str(error)) for key in keys]
    if isinstance(error, RetryableCall):
        return [
            UploadOutcome(key, OutcomeStatus.RETRY, error.code, str(error), error.retry_after)
            for key in keys
        ]
    return [UploadOutcome(key, OutcomeStatus.REJECTED, error.code, str(error)) for key in keys]


def scrub(text: str, *secrets: str) -> str:
    """``text`` without the given secrets, SHA-256 hashes, emails or phone numbers; shortened."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _SHA256_HEX.sub("<sha256>", text)
    text = _EMAIL.sub("<email>", text)
    text = _E164.sub("<phone>", text)
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def retry_after(value: str | None, now: datetime | None = None) -> datetime | None:
    """A ``Retry-After`` header (seconds or an HTTP date) as an aware UTC time."""
    if not value:
        return None
    now = now or datetime.now(UTC)
    value = value.strip()
    if value.isdigit():
        return now + timedelta(seconds=int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long a transport retries one request in process.

    Attributes:
        attempts: Calls at most, the first included.
        initial_wait: Seconds before the first retry; doubles per retry.
        max_wait: Longest single wait; a longer ``Retry-After`` ends the retries.
        jitter: Up to this many random seconds added to each wait.
        sleep: How to wait (tests pass a recorder).
    """

    attempts: int = 4
    initial_wait: float = 1.0
    max_wait: float = 30.0
    jitter: float = 1.0
    sleep: Callable[[float], None] = time.sleep

    def call(self, fn: Callable[[], T], what: str = "call") -> T:
        """``fn()``, retried on a ``TransientError``; the last error is re-raised."""
        retrying = Retrying(
            stop=stop_any(stop_after_attempt(self.attempts), _ServerWaitOver(self.max_wait)),
            wait=self._wait,
            retry=retry_if_exception_type(TransientError)
            & retry_if_not_exception_type(UncertainCall),
            sleep=self.sleep,
            reraise=True,
            before_sleep=lambda state: _log_retry(what, state),
        )
        return retrying(fn)

    def _wait(self, state: RetryCallState) -> float:
        backoff = wait_exponential_jitter(
            multiplier=self.initial_wait, max=self.max_wait, jitter=self.jitter
        )
        return min(self.max_wait, max(backoff(state), _server_wait(state)))


class _ServerWaitOver(stop_base):
    """Stop when the server asks for a longer wait than ``limit`` seconds."""

    def __init__(self, limit: float) -> None:
        self.limit = limit

    def __call__(self, state: RetryCallState) -> bool:
        return _server_wait(state) > self.limit


def _server_wait(state: RetryCallState) -> float:
    """Seconds the server asked to wait (``Retry-After``) before the next attempt."""
    error = state.outcome.exception() if state.outcome else None
    if isinstance(error, TransientError) and error.retry_after is not None:
        return max(0.0, (error.retry_after - datetime.now(UTC)).total_seconds())
    return 0.0


def _log_retry(what: str, state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    log.warning(
        "%s: %s; attempt %d failed, retrying in %.2fs",
        what,
        f"{getattr(error, 'code', '')} {error}".strip(),
        state.attempt_number,
        wait,
    )

"""Values of HubSpot's API as revsync reads them: numbers, instants, the two-part watermark,
errors and their retry policy, and the client-side search throttle."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import urllib3
from hubspot.crm import associations, contacts, deals

from revsync.errors import PermanentError, RevsyncError, TransientError

MODIFIED = "hs_lastmodifieddate"
_ARCHIVED = ";archived="  # joins the two positions of a watermark
API_ERRORS = (deals.ApiException, contacts.ApiException, associations.v4.ApiException)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Throttle:
    """At most ``per_second`` calls a second, spaced evenly (blocks the caller)."""

    def __init__(self, per_second: float) -> None:
        self.interval = 1.0 / per_second
        self.next_at = 0.0

    def wait(self) -> None:
        now = time.monotonic()
        if now < self.next_at:
            time.sleep(self.next_at - now)
            now = self.next_at
        self.next_at = now + self.interval


class BadValue(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


def retryable(exc: BaseException) -> bool:
    if isinstance(exc, urllib3.exceptions.HTTPError):
        return True
    status = getattr(exc, "status", None) if isinstance(exc, API_ERRORS) else None
    return isinstance(status, int) and (status in (0, 429) or status >= 500)


def retry_after_seconds(exc: BaseException | None) -> float | None:
    headers = getattr(exc, "headers", None)
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def api_error(what: str, exc: Exception) -> RevsyncError:
    """A revsync error for an SDK exception: its status and HubSpot's category and message."""
    status = getattr(exc, "status", None)
    try:
        body = json.loads(getattr(exc, "body", None) or b"{}")
    except ValueError:
        body = {}
    category = body.get("category", "") if isinstance(body, dict) else ""
    if status in (401, 403):
        return PermanentError(
            f"HubSpot {what}: HTTP {status} {category}; check REVSYNC_HUBSPOT_ACCESS_TOKEN "
            "and the private app's scopes (crm.objects.deals.read, crm.objects.contacts.read; "
            "crm.objects.contacts.write with push_attribution)"
        )
    message = str(body.get("message", ""))[:300] if isinstance(body, dict) else ""
    text = f"HubSpot {what}: HTTP {status} {category}: {message}".rstrip(": ")
    if retryable(exc):
        seconds = retry_after_seconds(exc)
        retry_at = datetime.now(UTC) + timedelta(seconds=seconds) if seconds else None
        return TransientError(text, retry_at)
    return PermanentError(text)


def is_true(value: Any) -> bool:
    return str(value).strip().lower() == "true"


def parse_amount(value: Any) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise BadValue("amount", f"{value!r} is not a number") from None
    if not amount.is_finite():
        raise BadValue("amount", f"{value!r} is not a number")
    if amount < 0:
        raise BadValue("amount", f"{amount} is negative")
    return amount


def parse_instant(value: str) -> datetime | date:
    """Epoch milliseconds or ISO 8601 as aware UTC; a bare ISO date stays a ``date``."""
    text = value.strip()
    if text.lstrip("-").isdigit():
        return datetime.fromtimestamp(int(text) / 1000, UTC)
    if len(text) == 10:
        return date.fromisoformat(text)
    moment = datetime.fromisoformat(text)
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def after_time(cursor: datetime | None, strict: bool) -> tuple[datetime, str] | None:
    """The search's lower bound on ``hs_lastmodifieddate``: from ``cursor`` on, or after it."""
    return None if cursor is None else (cursor, "GT" if strict else "GTE")


def millis(moment: datetime) -> str:
    return str((moment - _EPOCH) // timedelta(milliseconds=1))


def split_watermark(watermark: str | None) -> tuple[str | None, str | None]:
    """``(last hs_lastmodifieddate read, newest archivedAt seen)`` of a watermark: the
    first alone is written as before (an ISO time), so older watermarks still read."""
    if not watermark:
        return None, None
    modified, _, archived = watermark.partition(_ARCHIVED)
    return modified or None, archived or None


def join_watermark(modified: str | None, archived: str | None) -> str | None:
    if archived is None:
        return modified
    return f"{modified or ''}{_ARCHIVED}{archived}"


def iso_or_none(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def aware(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def modified_of(raw: Any) -> datetime:
    """A search result's ``hs_lastmodifieddate`` (its ``updatedAt`` if absent), aware UTC."""
    value = (raw.properties or {}).get(MODIFIED)
    if value:
        moment = parse_instant(str(value))
        if isinstance(moment, datetime):
            return moment
    return aware(raw.updated_at)


def created_of(props: dict[str, Any]) -> datetime | None:
    """A deal's ``createdate``, aware UTC; ``None`` if absent or not a date-time."""
    return _moment(props.get("createdate"))


def entered_stages(
    props: dict[str, Any], stages: dict[str, str]
) -> tuple[tuple[datetime, str], ...]:
    """(entered at, stage id), oldest first, from the ``hs_v2_date_entered_<stage id>``
    properties named in ``stages`` (property -> stage id); unset or bad values are left out."""
    entries = ((_moment(props.get(name)), stage) for name, stage in stages.items())
    return tuple(sorted((at, stage) for at, stage in entries if at is not None))


def _moment(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        moment = parse_instant(str(value))
    except ValueError:
        return None
    return moment if isinstance(moment, datetime) else None

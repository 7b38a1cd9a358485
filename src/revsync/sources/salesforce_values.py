"""Salesforce record values: flattening, typed reads, click IDs, validation, errors."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import requests
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceOperationError,
)

from revsync.collect.parsing import ParseError, click_id, fb_cookie, ga_client_id
from revsync.currencies import ISO_4217
from revsync.domain import PushResult
from revsync.errors import PermanentError, TransientError


def push_result(crm_id: str, answer: dict[str, Any]) -> PushResult:
    """One entry of a composite/sobjects answer (the answers follow the request's order)."""
    if answer.get("success"):
        return PushResult(crm_id, True)
    error = (answer.get("errors") or [{}])[0]
    return PushResult(
        crm_id, False, error.get("statusCode"), error.get("message"),
        ", ".join(error.get("fields") or []) or None,
    )  # fmt: skip


def invalid(
    won: bool, amount: Decimal | None, currency: str | None, close: str | None
) -> tuple[str, str] | None:
    """The field and reason that make a deal unusable, if any."""
    if won and amount is None:
        return "Amount", "a won deal needs an amount"
    if amount is not None and amount < 0:
        return "Amount", f"{amount} is negative"
    if not currency or currency.upper() not in ISO_4217:
        return "CurrencyIsoCode", f"{currency or '(empty)'} is not an ISO 4217 code"
    if won and not close:
        return "CloseDate", "a won deal needs a close date"
    return None


def click_ids(
    record: dict[str, Any], fields: dict[str, str], reject: Callable[[str, str], None]
) -> dict[str, str]:
    """Click IDs from ``{kind: field}``; an invalid one is rejected (field, reason) and left out."""
    out = {}
    for kind, field in fields.items():
        try:
            value = click_value(kind, text(record.get(field.lower())))
        except ParseError as exc:
            reject(field, str(exc))
            continue
        if value:
            out[kind] = value
    return out


def click_value(kind: str, raw: str | None) -> str | None:
    if kind == "ga_client_id":
        return ga_client_id(raw)
    if kind in ("fbc", "fbp"):
        return fb_cookie(kind, raw)
    return click_id(kind, raw)


def flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A REST record as ``{lowercased dotted path: value}``, like a Bulk CSV row."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if key == "attributes":
            continue
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key.lower()}."))
        else:
            out[f"{prefix}{key.lower()}"] = value
    return out


def unique(names: Iterable[str]) -> list[str]:
    seen: dict[str, str] = {}
    for name in names:
        seen.setdefault(name.lower(), name)
    return list(seen.values())


def boolean(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


def soql_time(moment: datetime) -> str:
    """A SOQL datetime literal (unquoted, UTC, whole seconds)."""
    return f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def error_code(exc: SalesforceError) -> str:
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return str(content[0].get("errorCode", ""))
    return ""


def translate(exc: Exception) -> Exception:
    """SDK and network failures as revsync errors (no token or URL query in the text)."""
    if isinstance(exc, requests.RequestException):
        return TransientError(f"Salesforce unreachable: {type(exc).__name__}")
    if isinstance(exc, SalesforceOperationError):
        return TransientError(f"Salesforce Bulk API job failed: {exc}")
    assert isinstance(exc, SalesforceError)
    content = exc.content
    message = ""
    if isinstance(content, list) and content and isinstance(content[0], dict):
        message = str(content[0].get("message", ""))
    summary = f"Salesforce HTTP {exc.status} {error_code(exc) or type(exc).__name__}: {message}"
    if isinstance(exc, SalesforceGeneralError) and exc.status >= 500:
        return TransientError(summary)
    if isinstance(exc, SalesforceExpiredSession):
        return PermanentError(f"{summary} (even with a fresh token)")
    return PermanentError(summary)

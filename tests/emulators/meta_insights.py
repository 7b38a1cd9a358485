"""Meta Graph ads insights on top of :class:`~tests.emulators.meta_graph.MetaGraphEmulator`:
``GET /vNN.N/act_{id}/insights`` with ``level``, ``time_increment``, ``time_range``,
``fields``, ``limit`` and cursor paging (``paging.cursors.after``; ``paging.next`` only when
another page follows). Usage::

    with MetaInsightsEmulator(tokens={"tok"}) as meta:
        meta.add_account("123", "EUR")
        meta.add_day("123", date(2026, 11, 1), "9", "Retargeting", "12.34", clicks=5)

Figures are strings, as Graph sends them; re-seeding a day restates it. Unknown fields,
levels other than ``campaign``, a bad ``time_range`` or an unknown account are Graph
error 100; tokens are checked as for the Conversions API (190).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from typing import Any

from tests.emulators.http_base import Request, Response
from tests.emulators.meta_graph import (
    SUBCODE_UNKNOWN_OBJECT,
    GraphError,
    MetaGraphEmulator,
    _invalid,
    _params,
)

INSIGHTS_PATH = re.compile(r"^/v\d+\.\d+/act_(?P<account>\d+)/insights/?$")
FIELDS = frozenset({
    "account_currency", "account_id", "campaign_id", "campaign_name", "spend", "clicks",
    "impressions", "date_start", "date_stop", "cpc", "ctr",
})  # fmt: skip
MAX_LIMIT = 5000


class MetaInsightsEmulator(MetaGraphEmulator):
    """The Conversions API emulator plus daily campaign insights of seeded ad accounts."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.accounts: dict[str, str] = {}
        self.days: dict[tuple[str, dt.date, str], dict[str, str]] = {}
        self.max_page = MAX_LIMIT  # rows per page at most, whatever the limit asked
        self.insight_requests: list[dict[str, Any]] = []

    def add_account(self, account_id: str, currency: str) -> None:
        self.accounts[account_id] = currency

    def add_day(
        self, account_id: str, day: dt.date, campaign_id: str, name: str, spend: str,
        clicks: int = 0, impressions: int = 0,
    ) -> None:  # fmt: skip
        """Seed (or restate) one campaign's figures for a day."""
        self.days[(account_id, day, campaign_id)] = {
            "campaign_id": campaign_id, "campaign_name": name, "spend": spend,
            "clicks": str(clicks), "impressions": str(impressions),
        }  # fmt: skip

    def remove_day(self, account_id: str, day: dt.date, campaign_id: str) -> None:
        self.days.pop((account_id, day, campaign_id), None)

    def handle(self, request: Request) -> Response:
        match = INSIGHTS_PATH.match(request.path)
        if request.method != "GET" or match is None:
            return super().handle(request)
        try:
            return self._insights(request, match["account"])
        except GraphError as error:
            return self._error_response(error)

    def _insights(self, request: Request, account: str) -> Response:
        params = _params(request)
        self._authenticate(request, params)
        self.insight_requests.append(params)
        if account not in self.accounts:
            raise GraphError(
                100,
                f"Unsupported get request. Object with ID 'act_{account}' does not exist, "
                "cannot be loaded due to missing permissions, or does not support this "
                "operation.",
                type_="GraphMethodException",
                subcode=SUBCODE_UNKNOWN_OBJECT,
            )
        fields = _list(params.get("fields", ""))
        unknown = [f for f in fields if f not in FIELDS]
        if unknown:
            raise GraphError(100, f"(#100) {unknown[0]} is not valid for fields param.")
        if params.get("level", "account") != "campaign":
            raise _invalid("The emulator answers level=campaign only.")
        if str(params.get("time_increment", "")) != "1":
            raise _invalid("The emulator answers time_increment=1 only.")
        since, until = _time_range(params.get("time_range"))
        limit = int(params.get("limit", 25))  # Graph's default page size
        if not 0 < limit <= MAX_LIMIT:
            raise _invalid(f"limit must be between 1 and {MAX_LIMIT}.")
        limit = min(limit, self.max_page)
        rows = [
            {**figures, "date_start": day.isoformat(), "date_stop": day.isoformat(),
             "account_currency": self.accounts[account], "account_id": account}
            for (acc, day, _), figures in sorted(self.days.items())
            if acc == account and since <= day <= until
        ]  # fmt: skip
        offset = _offset(params.get("after"))
        page = [{f: r[f] for f in (*fields, "date_start", "date_stop")} for r in rows][
            offset : offset + limit
        ]
        body: dict[str, Any] = {"data": page}
        if page:
            body["paging"] = {
                "cursors": {"before": _cursor(offset), "after": _cursor(offset + len(page))}
            }
            if offset + len(page) < len(rows):
                body["paging"]["next"] = (
                    f"{self.url}{request.path}?after={_cursor(offset + len(page))}"
                )
        return Response.json(200, body)


def _list(raw: Any) -> list[str]:
    if isinstance(raw, str) and raw.startswith("["):
        raw = json.loads(raw)
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    return [str(item).strip() for item in items if str(item).strip()]


def _time_range(raw: Any) -> tuple[dt.date, dt.date]:
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
        since, until = dt.date.fromisoformat(value["since"]), dt.date.fromisoformat(value["until"])
    except (TypeError, KeyError, ValueError):
        raise _invalid("time_range must be {'since':'YYYY-MM-DD','until':'YYYY-MM-DD'}.") from None
    if since > until:
        raise _invalid("time_range: since must not be after until.")
    return since, until


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _offset(after: Any) -> int:
    if not after:
        return 0
    try:
        text = base64.urlsafe_b64decode(str(after).encode()).decode()
        return int(text.removeprefix("offset:"))
    except ValueError:
        raise _invalid("Invalid cursor: after.") from None

"""GAQL reporting for the Google Ads emulator: ``FROM campaign``, ``keyword_view`` and
``click_view`` through ``GoogleAdsService/Search`` and ``SearchStream``.

Register it onto a started :class:`~tests.emulators.google_ads.GoogleAdsEmulator` and seed
rows as flat dicts keyed by GAQL field names::

    reporting = AdsReporting(ads)
    reporting.add_campaign_day(CUSTOMER, date(2026, 11, 1), 1, "Brand", 12_340_000, 10, 100)

Queries are held to the API's rules: a field unknown to GAQL is ``UNRECOGNIZED_FIELD``; a
known field not selectable with the resource is ``PROHIBITED_FIELD_IN_SELECT_CLAUSE``; any
other resource is ``BAD_RESOURCE_TYPE_IN_FROM_CLAUSE``; ``segments.date`` selected without
a finite date filter is ``EXPECTED_FILTERS_ON_DATE_RANGE``; ``click_view`` needs a filter on
a single day (``EXPECTED_FILTER_ON_A_SINGLE_DAY``) no older than 90 days before ``now``
(``DATE_TOO_OLD``). Only the selected fields come back. Re-seeding a day restates it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from importlib import import_module
from typing import Any, NoReturn

import grpc

from tests.emulators.google_ads import GoogleAdsEmulator, _Error, _Request

_ATTRIBUTES = {"customer.currency_code", "customer.id", "customer.time_zone"}
_METRICS = {"metrics.cost_micros", "metrics.clicks", "metrics.impressions"}
_CAMPAIGN = {"campaign.id", "campaign.name", "campaign.status", "segments.date"}
_AD_GROUP = {"ad_group.id", "ad_group.name"}
RESOURCES: dict[str, set[str]] = {
    "campaign": _CAMPAIGN | _METRICS | _ATTRIBUTES,
    "keyword_view": _CAMPAIGN | _AD_GROUP | _METRICS | _ATTRIBUTES
    | {"ad_group_criterion.keyword.text", "ad_group_criterion.keyword.match_type",
       "ad_group_criterion.criterion_id"},
    "click_view": _CAMPAIGN | _AD_GROUP | _ATTRIBUTES | {"metrics.clicks"}
    | {"click_view.gclid", "click_view.keyword_info.text",
       "click_view.keyword_info.match_type", "click_view.ad_group_ad"},
}  # fmt: skip
_KNOWN = set().union(*RESOURCES.values()) | {"metrics.conversions", "ad_group_ad.ad.id"}
_ENUMS = {
    "ad_group_criterion.keyword.match_type": "keyword_match_type",
    "click_view.keyword_info.match_type": "keyword_match_type",
}
CLICK_DAYS = 90

_QUERY = re.compile(
    r"\s*SELECT\s+(?P<fields>.+?)\s+FROM\s+(?P<resource>\w+)"
    r"(?:\s+WHERE\s+(?P<where>.+?))?(?:\s+LIMIT\s+(?P<limit>\d+))?\s*",
    re.IGNORECASE | re.DOTALL,
)
_VALUE = r"(?:'[^'\n]*'|-?\d+)"
_CONDITION = (
    rf"(?P<field>[a-z_.]+)\s*(?:(?P<op>=|!=)\s*(?P<value>{_VALUE})"
    rf"|(?i:BETWEEN)\s+(?P<low>{_VALUE})\s+(?i:AND)\s+(?P<high>{_VALUE})"
    rf"|(?i:IN)\s*\((?P<list>\s*{_VALUE}(?:\s*,\s*{_VALUE})*\s*)\))"
)
_CONDITION_RE = re.compile(_CONDITION)
_AND = re.compile(r"\s+AND\s+", re.IGNORECASE)
_ITEM = re.compile(_VALUE)


class AdsReporting:
    """Campaign, keyword and click rows of an emulated Google Ads account."""

    def __init__(self, ads: GoogleAdsEmulator) -> None:
        self.ads = ads
        self.currencies: dict[str, str] = {}
        self.tables: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {
            name: {} for name in RESOURCES
        }
        self.queries: list[str] = []
        base = f"google.ads.googleads.{ads.version}"
        self._row_type = import_module(f"{base}.services.types.google_ads_service").GoogleAdsRow
        self._enums = {
            name: import_module(f"{base}.enums.types.{name}").KeywordMatchTypeEnum
            for name in set(_ENUMS.values())
        }
        ads.reporting = self

    # --- seeding ---------------------------------------------------------------------

    def add_campaign_day(
        self, customer: str, day: dt.date, campaign_id: int, name: str,
        cost_micros: int, clicks: int, impressions: int, currency: str = "EUR",
    ) -> None:  # fmt: skip
        """Seed (or restate) one campaign's figures for a day."""
        self.currencies[customer] = currency
        self.tables["campaign"][(customer, day, campaign_id)] = {
            "segments.date": day.isoformat(), "campaign.id": campaign_id, "campaign.name": name,
            "campaign.status": "ENABLED", "metrics.cost_micros": cost_micros,
            "metrics.clicks": clicks, "metrics.impressions": impressions,
        }  # fmt: skip

    def remove_campaign_day(self, customer: str, day: dt.date, campaign_id: int) -> None:
        self.tables["campaign"].pop((customer, day, campaign_id), None)

    def add_keyword_day(
        self, customer: str, day: dt.date, campaign: tuple[int, str], ad_group: tuple[int, str],
        keyword: str, match_type: str, cost_micros: int, clicks: int, impressions: int,
    ) -> None:  # fmt: skip
        """Seed one keyword's figures for a day."""
        self.currencies.setdefault(customer, "EUR")
        self.tables["keyword_view"][(customer, day, ad_group[0], keyword, match_type)] = {
            "segments.date": day.isoformat(), "campaign.id": campaign[0],
            "campaign.name": campaign[1], "campaign.status": "ENABLED",
            "ad_group.id": ad_group[0], "ad_group.name": ad_group[1],
            "ad_group_criterion.keyword.text": keyword,
            "ad_group_criterion.keyword.match_type": match_type,
            "metrics.cost_micros": cost_micros, "metrics.clicks": clicks,
            "metrics.impressions": impressions,
        }  # fmt: skip

    def add_click(
        self, customer: str, gclid: str, day: dt.date, campaign: tuple[int, str],
        ad_group: tuple[int, str], keyword: str | None = None, match_type: str = "BROAD",
    ) -> None:  # fmt: skip
        """Seed one click (a row of click_view)."""
        self.currencies.setdefault(customer, "EUR")
        row = {
            "click_view.gclid": gclid, "segments.date": day.isoformat(),
            "campaign.id": campaign[0], "campaign.name": campaign[1],
            "campaign.status": "ENABLED", "ad_group.id": ad_group[0],
            "ad_group.name": ad_group[1], "metrics.clicks": 1,
        }  # fmt: skip
        if keyword is not None:
            row["click_view.keyword_info.text"] = keyword
            row["click_view.keyword_info.match_type"] = match_type
        self.tables["click_view"][(customer, gclid)] = row

    # --- answering -------------------------------------------------------------------

    def rows(self, call: _Request, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        """The rows answering ``request.query``, or an abort with the API's error."""
        self.queries.append(request.query)

        def fail(kind: str, name: str, message: str) -> NoReturn:
            code = grpc.StatusCode.INVALID_ARGUMENT
            self.ads.abort(context, call, code, _Error(kind, name, message, (("query", None),)))

        match = _QUERY.fullmatch(request.query)
        if match is None:
            fail("query_error", "UNEXPECTED_INPUT", "The query could not be parsed.")
        resource = match["resource"].lower()
        if resource not in RESOURCES:
            fail("query_error", "BAD_RESOURCE_TYPE_IN_FROM_CLAUSE", f"{resource!r}.")
        fields = [f.strip() for f in match["fields"].split(",")]
        for name in fields:
            if name not in _KNOWN:
                fail("query_error", "UNRECOGNIZED_FIELD", f"Unrecognized field: {name}.")
            if name not in RESOURCES[resource]:
                fail(
                    "query_error", "PROHIBITED_FIELD_IN_SELECT_CLAUSE",
                    f"{name} cannot be selected with {resource}.",
                )  # fmt: skip
        parsed = _conditions(match["where"] or "")
        if parsed is None:
            fail("query_error", "UNEXPECTED_INPUT", "The WHERE clause could not be parsed.")
        days: tuple[dt.date, dt.date] | None = None
        tests = []
        for c in parsed:
            if c["field"] not in _KNOWN:
                fail("query_error", "UNRECOGNIZED_FIELD", f"Unrecognized field: {c['field']}.")
            values = _values(c)
            if c["field"] == "segments.date":
                try:
                    dates = [dt.date.fromisoformat(v) for v in values]
                except ValueError:
                    fail("query_error", "INVALID_DATE_FORMAT", "Use 'YYYY-MM-DD'.")
                if c["low"] is not None or c["op"] == "=":
                    days = (min(dates), max(dates))
            tests.append((c["field"], c["op"] == "!=", set(values)))
        if "segments.date" in fields and days is None:
            fail(
                "query_error", "EXPECTED_FILTERS_ON_DATE_RANGE",
                "segments.date in the SELECT clause needs a finite date range in WHERE.",
            )  # fmt: skip
        if resource == "click_view":
            if days is None or days[0] != days[1]:
                fail(
                    "click_view_error", "EXPECTED_FILTER_ON_A_SINGLE_DAY",
                    "Missing filter on a single day.",
                )  # fmt: skip
            if days[0] < self.ads.now.date() - dt.timedelta(days=CLICK_DAYS):
                fail("click_view_error", "DATE_TOO_OLD", "The requested date is too old.")
        customer = request.customer_id
        extra = {"customer.currency_code": self.currencies.get(customer, "EUR"),
                 "customer.id": int(customer), "customer.time_zone": "UTC"}  # fmt: skip
        for key, row in sorted(self.tables[resource].items(), key=lambda kv: str(kv[0])):
            full = {**row, **extra}
            if key[0] != customer or not all(
                (str(full.get(f)) in values) != negated for f, negated, values in tests
            ):
                continue
            yield self._row({name: full[name] for name in fields if name in full})

    def _row(self, flat: dict[str, Any]) -> Any:
        nested: dict[str, Any] = {}
        for name, value in flat.items():
            *path, last = name.split(".")
            into = nested
            for part in path:
                into = into.setdefault(part, {})
            if name in _ENUMS:
                value = getattr(self._enums[_ENUMS[name]].KeywordMatchType, value)
            into[last] = value
        return self._row_type(nested)


def _conditions(where: str) -> list[re.Match[str]] | None:
    """The ``AND``-joined conditions of a WHERE clause, or None if it does not parse."""
    out: list[re.Match[str]] = []
    at, where = 0, where.strip()
    while at < len(where):
        condition = _CONDITION_RE.match(where, at)
        if condition is None:
            return None
        out.append(condition)
        joint = _AND.match(where, condition.end())
        at = joint.end() if joint else condition.end()
        if not joint and at < len(where):
            return None
    return out


def _values(condition: re.Match[str]) -> list[str]:
    if condition["list"] is not None:
        raw = _ITEM.findall(condition["list"])
    elif condition["low"] is not None:
        low, high = (v.strip("'") for v in (condition["low"], condition["high"]))
        if condition["field"] == "segments.date":
            try:
                first, last = dt.date.fromisoformat(low), dt.date.fromisoformat(high)
            except ValueError:
                return [low, high]
            count = (last - first).days + 1
            return [(first + dt.timedelta(days=n)).isoformat() for n in range(max(count, 0))] or [
                low, high
            ]  # fmt: skip
        raw = [low, high]
    else:
        raw = [condition["value"]]
    return [v.strip("'") for v in raw]

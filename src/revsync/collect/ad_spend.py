"""``revsync import spend --from google_ads|meta``: daily spend read through the platforms'
SDKs, and ``revsync import clicks``: gclids resolved to campaign, ad group and keyword.

Spend is read by day. The first read of an account covers ``days`` days up to today (the
account's day); later reads start ``lookback`` days before the last stored day, because
platforms restate recent spend. The days read replace their stored rows, rows that
vanished included, in one transaction after the whole read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import Engine

from revsync.config.destinations import GoogleAdsDestination, MetaDestination
from revsync.config.mapping import RevsyncConfig
from revsync.config.settings import Settings, for_credentials
from revsync.errors import ConfigError
from revsync.store.schema import gclid_clicks, spend, touchpoints

FIRST_DAYS = 30
LOOKBACK_DAYS = 3
CLICK_DAYS = 90  # click_view answers for the last 90 days only
LANDING_AFTER_CLICK = time(0, 10)  # landed before 00:10: the click may be the day before
_GCLID = re.compile(r"[A-Za-z0-9_-]{1,255}")
_GCLIDS_PER_QUERY = 1000
_METRICS = "metrics.cost_micros, metrics.clicks, metrics.impressions, customer.currency_code"
_DAYS = "WHERE segments.date BETWEEN '{first}' AND '{last}'"
CAMPAIGN_QUERY = (
    f"SELECT segments.date, campaign.id, campaign.name, {_METRICS} FROM campaign {_DAYS}"  # noqa: S608
)
KEYWORD_QUERY = (
    "SELECT segments.date, campaign.id, campaign.name, ad_group.id, ad_group.name, "  # noqa: S608
    f"ad_group_criterion.keyword.text, ad_group_criterion.keyword.match_type, {_METRICS} "
    f"FROM keyword_view {_DAYS}"
)
CLICK_QUERY = (
    "SELECT click_view.gclid, segments.date, campaign.id, campaign.name, ad_group.id, "
    "ad_group.name, click_view.keyword_info.text, click_view.keyword_info.match_type "
    "FROM click_view WHERE segments.date = '{day}' AND click_view.gclid IN ({gclids})"
)


class AdsSearch(Protocol):
    def search_stream(self, query: str) -> Iterator[Any]: ...


class MetaInsights(Protocol):
    def insights(self, account_id: str, since: str, until: str) -> Iterator[dict[str, Any]]: ...


@dataclass(frozen=True, slots=True)
class SpendRead:
    """One account's read: the days replaced and the rows stored for them."""

    platform: str
    account: str
    first: date
    last: date
    rows: int


def window(
    engine: Engine, platform: str, account: str, today: date, days: int, lookback: int
) -> tuple[date, date]:
    """The days to read: ``days`` up to ``today`` the first time, else from ``lookback``
    days before the last stored day."""
    query = sa.select(sa.func.max(spend.c.day)).where(
        spend.c.platform == platform, spend.c.account == account
    )
    with engine.connect() as conn:
        last = conn.execute(query).scalar()
    first = today - timedelta(days=days - 1) if last is None else last - timedelta(days=lookback)
    return min(first, today), today


def replace_days(
    engine: Engine, platform: str, account: str, first: date, last: date, rows: list[dict[str, Any]]
) -> None:
    """Store ``rows`` as the whole of ``first``..``last`` for the account."""
    with engine.begin() as conn:
        conn.execute(
            spend.delete().where(
                spend.c.platform == platform,
                spend.c.account == account,
                spend.c.day.between(first, last),
            )
        )
        if rows:
            conn.execute(spend.insert(), rows)


def _merged(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per key (two keywords' match types, two campaigns of one name add up)."""
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = (row["day"], row["campaign"], row["ad_group"], row["keyword"])
        if key not in merged:
            merged[key] = row
            continue
        into = merged[key]
        for name in ("cost", "clicks", "impressions"):
            into[name] += row[name]
    return list(merged.values())


def google_spend_rows(
    ads: AdsSearch, customer_id: str, first: date, last: date, now: datetime
) -> list[dict[str, Any]]:
    """Campaign rows (``ad_group`` and ``keyword`` empty) and keyword rows."""
    rows = []
    for query in (CAMPAIGN_QUERY, KEYWORD_QUERY):
        for r in ads.search_stream(query.format(first=first, last=last)):
            keyword = query is KEYWORD_QUERY
            rows.append({
                "platform": "google_ads", "account": customer_id,
                "day": date.fromisoformat(r.segments.date),
                "campaign": r.campaign.name, "campaign_id": str(r.campaign.id),
                "ad_group": r.ad_group.name if keyword else "",
                "keyword": r.ad_group_criterion.keyword.text if keyword else "",
                "cost": Decimal(r.metrics.cost_micros).scaleb(-6),
                "currency": r.customer.currency_code,
                "clicks": r.metrics.clicks, "impressions": r.metrics.impressions,
                "updated_at": now,
            })  # fmt: skip
    return _merged(rows)


def meta_spend_rows(
    meta: MetaInsights, account_id: str, first: date, last: date, now: datetime
) -> list[dict[str, Any]]:
    """Campaign rows from daily campaign insights (``spend`` is in the account currency)."""
    rows = []
    for r in meta.insights(account_id, first.isoformat(), last.isoformat()):
        rows.append({
            "platform": "meta", "account": account_id,
            "day": date.fromisoformat(r["date_start"]),
            "campaign": r.get("campaign_name") or r["campaign_id"],
            "campaign_id": r["campaign_id"], "ad_group": "", "keyword": "",
            "cost": Decimal(r.get("spend") or "0"),
            "currency": str(r["account_currency"]).upper(),
            "clicks": int(r.get("clicks") or 0), "impressions": int(r.get("impressions") or 0),
            "updated_at": now,
        })  # fmt: skip
    return _merged(rows)


@dataclass(frozen=True, slots=True)
class ClicksRead:
    asked: int
    resolved: int
    unknown: int


def resolve_clicks(
    engine: Engine, ads: AdsSearch, customer_id: str, tz: str, now: datetime
) -> ClicksRead:
    """Resolve each stored gclid of the last 90 days not yet in ``gclid_clicks`` through
    ``click_view``, one day (the day of the landing in the account's zone) per query. A
    landing in the first ``LANDING_AFTER_CLICK`` after the account's midnight may follow a
    click of the day before: a gclid not found on its day is asked on that one too. A
    gclid Google does not know is stored with NULL campaign, so it is not asked again."""
    zone = ZoneInfo(tz)
    oldest = now.astimezone(zone).date() - timedelta(days=CLICK_DAYS - 1)
    since = datetime.combine(oldest, time.min, zone)
    t = touchpoints.c
    query = (
        sa.select(t.gclid, sa.func.min(t.occurred_at))
        .where(
            t.gclid.is_not(None),
            t.occurred_at >= since,
            ~sa.exists().where(gclid_clicks.c.gclid == t.gclid),
        )
        .group_by(t.gclid)
    )
    with engine.connect() as conn:
        pending = conn.execute(query).all()
    by_day: dict[date, list[str]] = {}
    early: set[str] = set()  # landed just after midnight
    for gclid, at in pending:
        local = at.astimezone(zone)
        by_day.setdefault(local.date(), []).append(gclid)
        if local.time() < LANDING_AFTER_CLICK and local.date() > oldest:
            early.add(gclid)
    found: dict[str, dict[str, Any]] = {}
    for day, gclids in sorted(by_day.items()):
        found |= _clicks_of(ads, day, gclids)
    for day, gclids in sorted(by_day.items()):
        if late := [g for g in gclids if g in early and g not in found]:
            found |= _clicks_of(ads, day - timedelta(days=1), late)
    rows = [
        found.get(g) or {"gclid": g, "day": day, "campaign_id": None, "campaign": None,
                         "ad_group_id": None, "ad_group": None, "keyword": None,
                         "match_type": None}
        for day, gclids in sorted(by_day.items()) for g in gclids
    ]  # fmt: skip
    if rows:
        with engine.begin() as conn:
            conn.execute(
                gclid_clicks.insert(),
                [{**r, "customer_id": customer_id, "resolved_at": now} for r in rows],
            )
    return ClicksRead(len(pending), len(found), len(pending) - len(found))


def _clicks_of(ads: AdsSearch, day: date, gclids: list[str]) -> dict[str, dict[str, Any]]:
    """The clicks of ``day`` among ``gclids`` (well-formed ones only), 1,000 a query."""
    valid = [g for g in gclids if _GCLID.fullmatch(g)]
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(valid), _GCLIDS_PER_QUERY):
        found |= _click_rows(ads, day, valid[start : start + _GCLIDS_PER_QUERY])
    return found


def _click_rows(ads: AdsSearch, day: date, gclids: list[str]) -> dict[str, dict[str, Any]]:
    listed = ", ".join(f"'{g}'" for g in gclids)  # the pattern allows no quote
    found = {}
    for r in ads.search_stream(CLICK_QUERY.format(day=day, gclids=listed)):
        keyword = r.click_view.keyword_info
        found[r.click_view.gclid] = {
            "gclid": r.click_view.gclid, "day": date.fromisoformat(r.segments.date),
            "campaign_id": str(r.campaign.id), "campaign": r.campaign.name,
            "ad_group_id": str(r.ad_group.id) if r.ad_group.id else None,
            "ad_group": r.ad_group.name or None, "keyword": keyword.text or None,
            "match_type": keyword.match_type.name if keyword.text else None,
        }  # fmt: skip
    return found


def _accounts(mapping: RevsyncConfig, platform: str) -> list[Any]:
    """The destination blocks naming an account of ``platform``, one per account."""
    seen: dict[str, Any] = {}
    for block in mapping.destinations:
        if platform == "google_ads" and isinstance(block, GoogleAdsDestination):
            seen.setdefault(block.customer_id, block)
        elif platform == "meta" and isinstance(block, MetaDestination) and block.ad_account_id:
            seen.setdefault(block.ad_account_id, block)
    if not seen:
        what = (
            "google_ads destination"
            if platform == "google_ads"
            else ("meta destination with ad_account_id")
        )
        raise ConfigError(f"import {platform}: the mapping has no {what}")
    return list(seen.values())


def _google(block: GoogleAdsDestination, settings: Settings) -> Any:
    """The Ads API transport of ``block`` (also when it uploads through another one)."""
    from revsync.sync.factory import google_transport

    ads_api = block.model_copy(update={"transport": "ads_api"})
    return google_transport(ads_api, for_credentials(settings, block.credentials))


def _meta(block: MetaDestination, settings: Settings) -> Any:
    from revsync.destinations.meta_api import MetaApiTransport

    token = for_credentials(settings, block.credentials).meta_access_token
    if token is None:
        raise ConfigError(f"destination {block.name!r}: set REVSYNC_META_ACCESS_TOKEN")
    return MetaApiTransport(block, token)


def read_spend(
    engine: Engine,
    mapping: RevsyncConfig,
    settings: Settings,
    platform: str,
    now: datetime,
    days: int = FIRST_DAYS,
    lookback: int = LOOKBACK_DAYS,
) -> list[SpendRead]:
    """Read and store the spend of every account of ``platform`` in the mapping."""
    reads = []
    for block in _accounts(mapping, platform):
        google = isinstance(block, GoogleAdsDestination)
        account = block.customer_id if google else block.ad_account_id
        transport = _google(block, settings) if google else _meta(block, settings)
        try:
            today = now.astimezone(ZoneInfo(block.account_timezone)).date()
            first, last = window(engine, platform, account, today, days, lookback)
            reader = google_spend_rows if google else meta_spend_rows
            rows = reader(transport, account, first, last, now)
        finally:
            transport.close()
        replace_days(engine, platform, account, first, last, rows)
        reads.append(SpendRead(platform, account, first, last, len(rows)))
    return reads


def read_clicks(
    engine: Engine, mapping: RevsyncConfig, settings: Settings, now: datetime
) -> list[ClicksRead]:
    """``resolve_clicks`` against every Google Ads account of the mapping."""
    reads = []
    for block in _accounts(mapping, "google_ads"):
        transport = _google(block, settings)
        try:
            reads.append(
                resolve_clicks(engine, transport, block.customer_id, block.account_timezone, now)
            )
        finally:
            transport.close()
    return reads

"""``report sources`` by campaign, ad group, keyword and landing page: UTMs else resolved
gclids, spend joins, leads by type, new customers and CAC, on hand-computed data. Every
time is relative to the fixed ``T0``."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, insert

from revsync.reports.sources import Period, as_dict, sources_report
from revsync.store.schema import (
    credits,
    deals,
    gclid_clicks,
    identities,
    spend,
    touchpoints,
    visitors,
)

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
MARCH = Period.of_dates(date(2026, 3, 1), date(2026, 3, 31), UTC)
# visitor: (utm_campaign, utm_content, utm_term, landing URL, gclid, lead event,
#           won deal amount, CRM account)
VISITS: dict[str, tuple[Any, ...]] = {
    "v1": ("spring", "crm-group", "crm software",
           "https://x.example/pricing?utm_source=google&gclid=g1#top", "g1", "form", 1000, "acme"),
    "v2": (None, None, None, "https://x.example/pricing?gclid=g2", "g2", "call", 500, "acme"),
    "v3": ("42", None, None, "https://x.example/demo", "g3", "chat", 300, None),
    "v4": (None, None, None, "https://x.example/demo?x=1", "g4", "form", None, None),
}  # fmt: skip
CLICKS = {  # gclid: campaign, ad group, keyword (g3 unknown to Google, g4 not asked yet)
    "g1": ("other", "other group", "other keyword"),  # the UTMs win
    "g2": ("spring", "CRM", "crm software"),
    "g3": (None, None, None),
}
SPEND = [  # campaign, campaign_id, ad group, keyword, cost
    ("spring", "41", "", "", 200), ("autumn", "42", "", "", 100),
    ("spring", "41", "CRM", "crm software", 150), ("spring", "41", "CRM", "crm tool", 20),
]  # fmt: skip


@pytest.fixture
def report(engine: Engine) -> Any:
    rows: dict[Any, list[dict[str, Any]]] = {
        visitors: [], touchpoints: [], identities: [], deals: [], credits: [], gclid_clicks: [],
        spend: [],
    }  # fmt: skip
    for n, (vid, (campaign, content, term, url, gclid, event, won, account)) in enumerate(
        VISITS.items()
    ):
        at = T0 + timedelta(hours=n)
        rows[visitors].append({"id": vid, "first_seen": at, "last_seen": at})
        rows[touchpoints].append({
            "id": f"{vid}-t", "visitor_id": vid, "occurred_at": at, "channel": "Paid Search",
            "source": "google", "campaign": campaign, "content": content, "term": term,
            "landing_url": url, "gclid": gclid,
        })  # fmt: skip
        rows[identities].append({"id": f"{vid}-i", "visitor_id": vid, "event": event,
                                 "observed_at": at + timedelta(minutes=5),
                                 "email_sha256": f"{vid}@hash"})  # fmt: skip
        if won is None:
            continue
        closed = T0 + timedelta(days=5 + n)
        rows[deals].append({
            "source": "crm", "id": f"{vid}-d", "status": "won", "amount": Decimal(won),
            "currency": "GBP", "close_at": closed, "modified_at": closed, "click_ids": {},
            "fields": {}, "synced_at": closed, "account_id": account,
        })  # fmt: skip
        rows[credits].append({
            "source": "crm", "deal_id": f"{vid}-d", "model": "last_non_direct",
            "touchpoint_id": f"{vid}-t", "weight": "1", "amount": Decimal(won),
            "currency": "GBP", "channel": "Paid Search",
        })  # fmt: skip
    for gclid, (campaign, group, keyword) in CLICKS.items():
        rows[gclid_clicks].append({
            "gclid": gclid, "customer_id": "1", "campaign": campaign, "ad_group": group,
            "keyword": keyword, "campaign_id": None if campaign is None else "1",
            "resolved_at": T0,
        })  # fmt: skip
    for campaign, campaign_id, group, keyword, cost in SPEND:
        rows[spend].append({
            "platform": "google_ads", "account": "1", "day": date(2026, 3, 2),
            "campaign": campaign, "campaign_id": campaign_id, "ad_group": group,
            "keyword": keyword, "cost": Decimal(cost), "currency": "GBP", "updated_at": T0,
        })  # fmt: skip
    with engine.begin() as conn:
        for table, values in rows.items():
            conn.execute(insert(table), values)

    def run(by: Any) -> dict[str, Any]:
        with engine.connect() as conn:
            data = as_dict(sources_report(conn, by, "last_non_direct", MARCH))
        return {**{r[by]: r for r in data["rows"]}, "total": data["total"]}

    return run


def test_by_campaign_utm_else_gclid_and_the_campaign_id_joins_spend(report: Any) -> None:
    rows = report("campaign")
    assert set(rows) == {"spring", "autumn", "(none)", "total"}  # "42" is autumn's ID
    spring, autumn = rows["spring"], rows["autumn"]
    assert (spring["visits"], spring["leads"], spring["leads_by_type"]) == (
        2, 2, {"call": 1, "form": 1},
    )  # fmt: skip
    # acme's first won deal (v1's) makes it new; its second deal (v2's) does not
    assert spring["new_customers"] == 1
    gbp = spring["currencies"]["GBP"]
    # spend 200: CPL 200 / 2 = 100; CAC 200 / 1; ROAS 1,500 / 200 = 7.5; ROI 1,300 / 200
    assert (gbp["revenue"], gbp["spend"], gbp["cpl"], gbp["cac"], gbp["roas"], gbp["roi"]) == (
        "1500.00", "200.00", "100.00", "200.00", "7.5000", "6.5000",
    )  # fmt: skip
    assert autumn["leads_by_type"] == {"chat": 1} and autumn["new_customers"] == 1
    assert (autumn["currencies"]["GBP"]["spend"], autumn["currencies"]["GBP"]["cac"]) == (
        "100.00", "100.00",
    )  # fmt: skip
    assert rows["(none)"]["leads_by_type"] == {"form": 1}  # g4 is not resolved yet
    total = rows["total"]
    assert (total["leads"], total["new_customers"]) == (4, 2)
    t = total["currencies"]["GBP"]
    # 300 spent (campaign rows), 4 leads, 2 new customers, 1,800 revenue
    assert (t["spend"], t["cpl"], t["cac"], t["roas"]) == ("300.00", "75.00", "150.00", "6.0000")
    assert total["leads_by_type"] == {"call": 1, "chat": 1, "form": 2}


def test_by_keyword_and_ad_group_join_keyword_rows(report: Any) -> None:
    rows = report("keyword")
    crm = rows["crm software"]  # v1 by utm_term, v2 by its gclid
    assert (crm["visits"], crm["leads"], crm["new_customers"]) == (2, 2, 1)
    gbp = crm["currencies"]["GBP"]
    assert (gbp["revenue"], gbp["spend"], gbp["cpl"], gbp["cac"], gbp["roas"]) == (
        "1500.00", "150.00", "75.00", "150.00", "10.0000",
    )  # fmt: skip
    assert rows["crm tool"]["visits"] == 0 and rows["crm tool"]["currencies"]["GBP"]["spend"] == (
        "20.00"
    )  # fmt: skip
    assert (rows["(none)"]["visits"], rows["(none)"]["currencies"]["GBP"]["revenue"]) == (
        2, "300.00",
    )  # fmt: skip
    assert rows["total"]["currencies"]["GBP"]["spend"] == "300.00"  # campaign rows

    groups = report("ad_group")
    assert groups["crm-group"]["currencies"]["GBP"]["revenue"] == "1000.00"  # utm_content
    assert groups["crm-group"]["currencies"]["GBP"]["spend"] is None
    crm_group = groups["CRM"]["currencies"]["GBP"]  # v2's gclid; 150 + 20 spent
    assert (crm_group["revenue"], crm_group["spend"], crm_group["roas"]) == (
        "500.00", "170.00", "2.9412",
    )  # fmt: skip


def test_by_landing_page_without_query_string(report: Any) -> None:
    rows = report("landing_page")
    assert set(rows) == {"https://x.example/pricing", "https://x.example/demo", "total"}
    pricing = rows["https://x.example/pricing"]
    assert (pricing["visits"], pricing["leads"], pricing["currencies"]["GBP"]["revenue"]) == (
        2, 2, "1500.00",
    )  # fmt: skip
    demo = rows["https://x.example/demo"]
    assert (demo["visits"], demo["leads"], demo["leads_by_type"]) == (2, 2, {"chat": 1, "form": 1})

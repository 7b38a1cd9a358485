"""A seeded, realistic synthetic dataset: visitors, sessions with click IDs, form leads,
and a CRM export in which a share of deals is won.

Used by ``revsync demo`` and by the benchmarks. The same seed and ``now`` give the same
files byte for byte.
"""

from __future__ import annotations

import csv
import random
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from revsync.store.schema import conversions, deals

CHANNEL_MIX = (
    # (weight, kind)
    (30, "google_ads"),
    (18, "organic_search"),
    (14, "meta_ads"),
    (12, "direct"),
    (8, "email"),
    (7, "referral"),
    (5, "linkedin_ads"),
    (4, "display"),
    (2, "organic_social"),
)
CURRENCIES = ((80, "USD"), (12, "EUR"), (8, "GBP"))
TERMS = ("crm+attribution", "offline+conversions", "revenue+tracking")
STAGES = {"won": "Closed Won", "lost": "Closed Lost", "open": "Negotiation"}
PIPELINES = ("new_business", "expansion")
FIRST_NAMES = "ana ben chloe dev emma felix gita hugo ines jon kai lena max nora omar pia".split()
DOMAINS = ("gmail.com", "acme.io", "example.org", "outlook.com", "globex.com", "initech.net")
FREE_MAIL = ("gmail.com", "outlook.com")
LEAD_FIELDS = ["visitor_id", "observed_at", "email", "phone", "event"]
LANDINGS = ("/", "/pricing", "/demo", "/features", "/blog/attribution", "/case-studies")


# What a click costs in the demo, per platform and campaign (USD); the platforms count
# more clicks than the site records sessions (blocked scripts, bounces before the tag).
CPC = {"brand": 9.0, "generic": 38.0, "competitor": 46.0, "retargeting": 7.0}
PLATFORM_CPC = {"google_ads": 1.0, "meta": 0.5, "linkedin": 1.6}
ACCOUNTS = {"google_ads": "1234567890", "meta": "act_1234567890", "linkedin": "508912345"}
_PAID = {"google": "google_ads", "facebook": "meta", "linkedin": "linkedin"}
_UTM = re.compile(r"utm_(source|campaign|term)=([^&]+)")


@dataclass(frozen=True)
class DemoFiles:
    touchpoints: Path
    leads: Path
    deals: Path
    counts: dict[str, int]
    spend: Path | None = None


def _clicks(row: dict[str, Any], day: date, counts: dict[tuple[str, ...], int]) -> None:
    """Count a paid session under (platform, day, campaign[, keyword])."""
    utm = dict(_UTM.findall(row["landing_url"]))
    platform = _PAID.get(utm.get("source", ""))
    if platform is None:
        return
    key = (platform, day.isoformat(), utm["campaign"])
    counts[key] = counts.get(key, 0) + 1
    if "term" in utm:
        keyword = (*key, utm["term"].replace("+", " "))
        counts[keyword] = counts.get(keyword, 0) + 1


def _write_spend(path: Path, counts: dict[tuple[str, ...], int], seed: int) -> None:
    """Daily spend per campaign (and per keyword on Google Ads) in USD, from the sessions
    each drew: ``revsync import spend``'s columns."""
    rng = random.Random(seed)
    fields = ["date", "platform", "account", "campaign", "ad_group", "keyword", "cost",
              "currency", "clicks", "impressions"]  # fmt: skip
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=fields)
        writer.writeheader()
        for key in sorted(counts):
            platform, day, campaign, *keyword = key
            clicks = round(counts[key] * rng.uniform(1.2, 1.5))
            base = campaign.removeprefix("fb_").removeprefix("li_")
            cost = clicks * CPC[base] * PLATFORM_CPC[platform] * rng.uniform(0.85, 1.15)
            writer.writerow({
                "date": day, "platform": platform, "account": ACCOUNTS[platform],
                "campaign": campaign, "ad_group": f"{campaign} – search" if keyword else "",
                "keyword": keyword[0] if keyword else "", "cost": f"{cost:.2f}",
                "currency": "USD", "clicks": clicks,
                "impressions": round(clicks * rng.uniform(12, 40)),
            })  # fmt: skip


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _token(rng: random.Random, n: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
    return "".join(rng.choice(alphabet) for _ in range(n))


def _pick(
    rng: random.Random, weighted: tuple[tuple[Any, int], ...] | tuple[tuple[int, Any], ...]
) -> Any:
    items = [(w, v) if isinstance(w, int) else (v, w) for w, v in weighted]
    total = sum(w for w, _ in items)
    roll = rng.uniform(0, total)
    for weight, value in items:
        roll -= weight
        if roll <= 0:
            return value
    return items[-1][1]


def _session(rng: random.Random, kind: str, at: datetime, ios: bool) -> dict[str, Any]:
    base = "https://www.example-saas.com" + rng.choice(LANDINGS)
    row: dict[str, Any] = {"landing_url": base, "referrer": ""}
    campaign = rng.choice(("brand", "generic", "competitor", "retargeting"))
    if kind == "google_ads":
        param = "gclid"
        if ios:
            param = rng.choice(("gbraid", "wbraid"))
        row["landing_url"] = (
            f"{base}?{param}={_token(rng, 40)}&utm_source=google&utm_medium=cpc"
            f"&utm_campaign={campaign}&utm_term={rng.choice(TERMS)}"
        )
    elif kind == "meta_ads":
        row["landing_url"] = (
            f"{base}?fbclid={_token(rng, 60)}&utm_source=facebook&utm_medium=paid_social"
            f"&utm_campaign=fb_{campaign}"
        )
        row["referrer"] = "https://l.facebook.com/"
    elif kind == "linkedin_ads":
        row["landing_url"] = (
            f"{base}?li_fat_id={_token(rng, 30)}&utm_source=linkedin&utm_medium=paid_social"
            f"&utm_campaign=li_{campaign}"
        )
    elif kind == "organic_search":
        row["referrer"] = rng.choice(("https://www.google.com/", "https://www.bing.com/"))
    elif kind == "email":
        row["landing_url"] = f"{base}?utm_source=newsletter&utm_medium=email&utm_campaign=nov"
    elif kind == "referral":
        row["referrer"] = rng.choice(("https://www.g2.com/", "https://news.ycombinator.com/"))
    elif kind == "display":
        row["landing_url"] = f"{base}?utm_source=gdn&utm_medium=display&utm_campaign={campaign}"
    elif kind == "organic_social":
        row["referrer"] = rng.choice(("https://www.linkedin.com/", "https://t.co/"))
    return row


def generate(
    directory: Path, visitors: int = 5_000, seed: int = 7, now: datetime | None = None
) -> DemoFiles:
    """Write ``touchpoints.csv``, ``leads.csv``, ``deals.csv`` and ``spend.csv`` into
    ``directory``."""
    rng = random.Random(seed)
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    start = now - timedelta(days=90)
    directory.mkdir(parents=True, exist_ok=True)
    paths = DemoFiles(
        directory / "touchpoints.csv", directory / "leads.csv", directory / "deals.csv", {},
        directory / "spend.csv",
    )  # fmt: skip
    clicks: dict[tuple[str, ...], int] = {}
    tp_fields = [
        "visitor_id", "occurred_at", "landing_url", "referrer", "_ga", "_fbp",
        "consent_ad_user_data", "consent_ad_personalization", "user_agent", "ip",
    ]  # fmt: skip
    deal_fields = [
        "deal_id", "status", "stage", "amount", "currency", "close_date", "modified_at",
        "pipeline", "owner", "contact_id", "email", "phone", "is_primary", "gclid",
        "account_id", "created_at", "stage_history",
    ]  # fmt: skip
    counts = {"visitors": 0, "touchpoints": 0, "leads": 0, "deals": 0, "won": 0}
    with (
        paths.touchpoints.open("w", newline="") as tp_file,
        paths.leads.open("w", newline="") as lead_file,
        paths.deals.open("w", newline="") as deal_file,
    ):
        tps = csv.DictWriter(tp_file, fieldnames=tp_fields)
        leads = csv.DictWriter(
            lead_file, fieldnames=["visitor_id", "observed_at", "email", "phone", "event"]
        )
        crm = csv.DictWriter(deal_file, fieldnames=deal_fields)
        tps.writeheader()
        leads.writeheader()
        crm.writeheader()
        deal_number = 0
        for v in range(visitors):
            visitor_id = f"v{v:06d}"
            first = start + timedelta(seconds=rng.uniform(0, 80 * 86_400))
            ga = f"GA1.1.{rng.randint(10**8, 10**10 - 1)}.{int(first.timestamp())}"
            fbp = f"fb.1.{int(first.timestamp() * 1000)}.{rng.randint(10**9, 10**10 - 1)}"
            consent = rng.random() > 0.08
            ios = rng.random() < 0.2
            sessions = min(1 + int(rng.expovariate(0.7)), 8)
            at = first
            times = []
            for _ in range(sessions):
                kind = _pick(rng, CHANNEL_MIX)
                row = _session(rng, kind, at, ios)
                row.update(
                    visitor_id=visitor_id,
                    occurred_at=_iso(at),
                    _ga=ga,
                    _fbp=fbp,
                    consent_ad_user_data="granted" if consent else "denied",
                    consent_ad_personalization="granted" if consent else "denied",
                    user_agent="Mozilla/5.0 (iPhone)" if ios else "Mozilla/5.0 (Macintosh)",
                    ip=f"203.0.113.{rng.randint(1, 254)}",
                )
                tps.writerow(row)
                _clicks(row, at.date(), clicks)
                times.append(at)
                counts["touchpoints"] += 1
                at += timedelta(hours=rng.uniform(2, 24 * 9))
                if at > now - timedelta(hours=1):
                    break
            counts["visitors"] += 1
            if rng.random() > 0.14:
                continue
            lead_at = times[-1] + timedelta(minutes=rng.uniform(1, 20))
            if lead_at > now:
                continue
            name = rng.choice(FIRST_NAMES)
            domain = rng.choice(DOMAINS)
            email = f"{name}.{visitor_id}@{domain}"
            phone = f"+1 (415) 555-{rng.randint(0, 9999):04d}"
            leads.writerow(
                {
                    "visitor_id": visitor_id,
                    "observed_at": lead_at.isoformat().replace("+00:00", "Z"),
                    "email": email,
                    "phone": phone,
                    "event": "demo_request",
                }
            )
            counts["leads"] += 1
            if rng.random() > 0.65:
                continue
            deal_number += 1
            status = _pick(rng, ((40, "won"), (30, "lost"), (30, "open")))
            close = lead_at + timedelta(days=rng.uniform(3, 45))
            if status == "won" and close > now:
                close = now - timedelta(hours=rng.uniform(1, 72))
            if close > now:
                status = "open"
            currency = _pick(rng, CURRENCIES)
            amount = round(rng.lognormvariate(8.6, 0.8), 2)
            # The CRM shows the address the way the rep typed it: case and gmail dots vary.
            crm_email = email.upper() if rng.random() < 0.2 else email
            if domain == "gmail.com" and rng.random() < 0.5:
                local, _, host = crm_email.partition("@")
                crm_email = local.replace(".", "") + "@" + host
            counts["deals"] += 1
            counts["won"] += status == "won"
            crm.writerow(
                {
                    "deal_id": f"D-{deal_number:05d}",
                    "status": status,
                    "stage": {"won": "Closed Won", "lost": "Closed Lost"}.get(
                        status, "Negotiation"
                    ),
                    "amount": f"{amount:.2f}",
                    "currency": currency,
                    "close_date": close.date().isoformat() if status != "open" else "",
                    "modified_at": min(close + timedelta(hours=2), now)
                    .isoformat()
                    .replace("+00:00", "Z"),
                    "pipeline": rng.choice(PIPELINES),
                    "owner": rng.choice(("alex", "sam", "robin")),
                    "contact_id": f"C-{visitor_id}",
                    "email": crm_email,
                    "phone": phone if rng.random() < 0.6 else "",
                    "is_primary": "true",
                    "gclid": "",
                    # companies buy again; a free-mail buyer is a customer of their own
                    "account_id": "" if domain in FREE_MAIL else f"ACC-{domain}",
                    "created_at": _iso(lead_at + timedelta(hours=1)),
                    "stage_history": _stages(
                        status, lead_at + timedelta(hours=1), min(close, now), deal_number
                    ),
                }
            )
        _bad_rows(crm, now)
    assert paths.spend is not None
    _write_spend(paths.spend, clicks, seed + 1)
    return DemoFiles(paths.touchpoints, paths.leads, paths.deals, counts, paths.spend)


def _stages(status: str, created: datetime, end: datetime, number: int) -> str:
    """The CRM's stage history of a demo deal: Qualified, then Proposal and Negotiation
    over the deal's life, then its close; every third lost deal is lost from Qualified.
    No draw from the generator, so the rest of the data is as before."""
    path = {"won": ["Qualified", "Proposal", "Negotiation", "Closed Won"],
            "open": ["Qualified", "Proposal", "Negotiation"],
            "lost": ["Qualified", "Closed Lost"] if number % 3 == 0
            else ["Qualified", "Proposal", "Closed Lost"]}[status]  # fmt: skip
    shares = {4: (0.0, 0.3, 0.65, 1.0), 2: (0.0, 1.0),
              3: (0.0, 0.4, 1.0) if status == "lost" else (0.0, 0.35, 0.8)}[len(path)]  # fmt: skip
    start = min(created, end - timedelta(days=1))  # a deal won within hours of its lead
    return ";".join(f"{stage}@{_iso(start + (end - start) * share)}" for stage, share in
                    zip(path, shares, strict=True))  # fmt: skip


def _bad_rows(crm: csv.DictWriter[str], now: datetime) -> None:
    """A few malformed CRM rows, as real exports have: each is quarantined with a reason."""
    stamp = _iso(now)
    base = {
        "status": "won", "stage": "Closed Won", "amount": "1200.00", "currency": "USD",
        "close_date": now.date().isoformat(), "modified_at": stamp, "pipeline": "new_business",
        "owner": "sam", "is_primary": "true", "gclid": "", "phone": "",
    }  # fmt: skip
    crm.writerow({**base, "deal_id": "D-BAD-1", "amount": "", "contact_id": "C-bad1",
                  "email": "no-amount@example.org"})  # fmt: skip
    crm.writerow({**base, "deal_id": "D-BAD-2", "currency": "XXY", "contact_id": "C-bad2",
                  "email": "odd-currency@example.org"})  # fmt: skip
    crm.writerow({**base, "deal_id": "D-BAD-3", "contact_id": "C-bad3",
                  "email": "not-an-email"})  # fmt: skip
    crm.writerow({**base, "deal_id": "D-BAD-4", "close_date": "31/12/2026", "contact_id": "C-bad4",
                  "email": "bad-date@example.org"})  # fmt: skip


DEMO_CONFIG = """\
# revsync mapping for the demo dataset: every destination writes the exact request
# bodies it would send to files under out/ (transport: file), so no credentials are needed.
# Each destination gets one conversion per won deal at most, worth the revenue the model
# credits to that platform's own touchpoints (GA4, the cross-channel view: all of it); a
# person who denied ad consent, or gave no consent signal, is uploaded nowhere.
version: 1
sources:
  - name: crm
    type: file
    path: deals.csv
    timezone: America/New_York
    close_time: "17:00"
matching:
  lookback_days: 90
  default_phone_region: US
attribution:
  model: last_non_direct
destinations:
  - name: google-ads
    type: google_ads
    transport: file
    output_dir: out
    customer_id: "123-456-7890"
    conversion_action: "987654321"
    account_timezone: America/New_York
    enhanced_conversions: true   # hashed email/phone when no click ID: still only with consent
  - name: ga4
    type: ga4
    transport: file
    output_dir: out
    measurement_id: G-DEMO12345
    event_name: close_convert_lead
  - name: meta
    type: meta
    transport: file
    output_dir: out
    pixel_id: "1234567890"
    event_name: Purchase
# Reports in one currency: EUR and GBP revenue converted at these rates (a daily rates file
# imported with `revsync import rates` takes precedence).
reports:
  currency: USD
  rates: {EUR: 1.08, GBP: 1.27}
# `revsync serve` with this file records a local test page's sessions into the demo store.
collector:
  sites:
    - key: demo-site-0001
      origins: [http://localhost:8000]
"""


def told(engine: Engine) -> list[tuple[str, int, int, dict[str, Decimal], dict[str, Decimal]]]:
    """What each destination was told, from the ledger: (destination, conversions, won deals,
    value sent per currency, won revenue per currency)."""
    c = conversions.c
    sent = (
        select(c.destination, c.currency, func.count(), func.sum(c.value))
        .where(c.kind == "conversion", c.state == "sent")
        .group_by(c.destination, c.currency)
    )
    won = (
        select(deals.c.currency, func.count(), func.sum(deals.c.amount))
        .where(deals.c.status == "won")
        .group_by(deals.c.currency)
    )
    with engine.connect() as conn:
        won_rows = conn.execute(won).all()
        sent_rows = conn.execute(sent).all()
    won_count = sum(count for _, count, _ in won_rows)
    revenue = {cur: Decimal(str(total)) for cur, _, total in won_rows}
    out: dict[str, tuple[int, dict[str, Decimal]]] = {}
    for destination, currency, count, total in sent_rows:
        n, values = out.get(destination, (0, {}))
        out[destination] = (n + count, {**values, currency: Decimal(str(total))})
    return [(d, n, won_count, values, revenue) for d, (n, values) in sorted(out.items())]

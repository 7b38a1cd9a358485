"""Files for ``bench.loop``: a CRM export, touchpoints and leads for ``n`` won deals.

Shaped like ``bench.generate`` (1-2 contacts per deal, half of them seen on the website on
1-2 devices with 1+ lead events each, ~10 touchpoints per deal on uniformly drawn visitors
over 90 days, the demo channel mix), written as the files a user imports, with raw emails
and phones (the import hashes them). A share of deals (``REPEAT``) is a repeat purchase
of an earlier deal's contact, so one browser can carry several conversions, as expansion
deals do. Times are relative to ``now`` so that GA4's 72-hour and Meta's 7-day windows
apply as in production.
"""

from __future__ import annotations

import bisect
import csv
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

REPEAT = 0.3
TOUCHPOINTS_PER_DEAL = 10
IDENTIFIED = 0.5
SECOND_DEVICE = 0.1
EXTRA_EVENT = 0.55
CHANNELS = (  # (weight, landing query, referrer)
    (30, "utm_source=google&utm_medium=cpc&utm_campaign={campaign}&utm_term={keyword}"
         "&gclid={token}", ""),
    (18, "", "https://www.google.com/"),
    (14, "utm_source=facebook&utm_medium=paid_social&utm_campaign=generic&fbclid={token}",
     "https://l.facebook.com/"),
    (12, "", ""),
    (8, "utm_source=newsletter&utm_medium=email&utm_campaign=nov", ""),
    (7, "", "https://www.g2.com/"),
    (5, "utm_source=linkedin&utm_medium=paid_social&utm_campaign=generic&li_fat_id={token}", ""),
    (4, "utm_source=gdn&utm_medium=display&utm_campaign=retargeting", ""),
    (2, "", "https://www.linkedin.com/"),
)  # fmt: skip
# Google Ads keywords (utm_term) and campaigns, by visitor: bench.reports joins them to spend.
KEYWORDS = tuple(f"crm+keyword+{n:03d}" for n in range(250))
CAMPAIGNS = ("brand", "generic", "competitor", "retargeting")
_CUMULATIVE = [sum(c[0] for c in CHANNELS[: i + 1]) for i in range(len(CHANNELS))]
LANDINGS = ("/", "/pricing", "/demo", "/features", "/blog/attribution", "/case-studies")
DEAL_HEADER = ("deal_id,status,stage,amount,currency,close_date,modified_at,pipeline,owner,"
               "contact_id,email,phone,is_primary,gclid")
CONFIG = """\
version: 1
sources:
  - name: crm
    type: file
    path: deals.csv
    timezone: UTC
    close_time: "12:00"
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
    account_timezone: UTC
  - name: ga4
    type: ga4
    transport: file
    output_dir: out
    measurement_id: G-BENCH12345
    event_name: close_convert_lead
  - name: meta
    type: meta
    transport: file
    output_dir: out
    pixel_id: "1234567890"
    event_name: Purchase
"""


@dataclass
class LoopFiles:
    touchpoints: Path
    leads: Path
    deals: Path
    config: Path
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def quiet_config(self) -> Path:
        """The mapping whose source export has no rows (see ``generate``)."""
        return self.config.with_name("revsync-quiet.yaml")


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def generate(directory: Path, deals: int, seed: int, now: datetime) -> LoopFiles:
    """Write ``touchpoints.csv``, ``leads.csv``, ``deals.csv`` and ``revsync.yaml``."""
    rng = random.Random(seed)
    now = now.replace(microsecond=0)
    directory.mkdir(parents=True, exist_ok=True)
    files = LoopFiles(directory / "touchpoints.csv", directory / "leads.csv",
                      directory / "deals.csv", directory / "revsync.yaml")  # fmt: skip
    files.config.write_text(CONFIG, encoding="utf-8")
    # The same mapping over an export with no rows: a run whose source has nothing new and
    # costs nothing to read, as an API source's empty page past its watermark.
    (directory / "deals-none.csv").write_text(DEAL_HEADER + "\n", encoding="utf-8")
    files.quiet_config.write_text(CONFIG.replace("deals.csv", "deals-none.csv"), encoding="utf-8")
    visitors: list[str] = []
    counts = {"won deals": deals, "deal rows": 0, "leads": 0, "touchpoints": 0}
    people: list[list[tuple[str, str, str]]] = []  # per deal: (contact id, email, phone)
    with files.leads.open("w", newline="") as lead_file, files.deals.open("w", newline="") as d:
        leads = csv.writer(lead_file)
        leads.writerow(["visitor_id", "observed_at", "email", "phone", "event"])
        crm = csv.writer(d)
        crm.writerow(DEAL_HEADER.split(","))
        for k in range(deals):
            first_lead: datetime | None = None
            if people and rng.random() < REPEAT:
                contacts = people[rng.randrange(len(people))]  # an expansion deal
                first_lead = now - timedelta(days=rng.uniform(2, 85))
            else:
                contacts = []
                for j in range(1 + (rng.random() < 0.5)):
                    email = f"person{k}.{j}@example.com"
                    phone = f"+1 415 {k % 10_000_000:07d}"[:15] if rng.random() < 0.5 else ""
                    contacts.append((f"C{k:09d}-{j}", email, phone))
                    if rng.random() >= IDENTIFIED:
                        continue
                    lead = now - timedelta(days=rng.uniform(2, 85))
                    first_lead = lead if first_lead is None else min(first_lead, lead)
                    for _device in range(1 + (rng.random() < SECOND_DEVICE)):
                        visitor = f"{rng.getrandbits(128):032x}"
                        visitors.append(visitor)
                        events = 1
                        while rng.random() < EXTRA_EVENT:
                            events += 1
                        for _ in range(events):
                            at = min(lead + timedelta(days=rng.uniform(0, 10)),
                                     now - timedelta(hours=1))  # fmt: skip
                            # a lead has an email or a phone
                            shown = email if rng.random() < 0.9 or not phone else ""
                            event = rng.choice(("lead", "chat"))
                            leads.writerow([visitor, _iso(at), shown, phone, event])
                            counts["leads"] += 1
                people.append(contacts)
            if first_lead is None:
                close = now - timedelta(days=rng.uniform(1 / 24, 90))
            else:
                close = min(first_lead + timedelta(days=rng.uniform(1, 60)),
                            now - timedelta(hours=rng.uniform(1, 72)))  # fmt: skip
            amount = round(rng.lognormvariate(8.6, 0.8), 2)
            currency = rng.choice(("USD",) * 8 + ("EUR", "GBP"))
            pipeline = rng.choice(("new_business", "expansion"))
            for j, (contact_id, email, phone) in enumerate(contacts):
                crm.writerow([f"D{k:09d}", "won", "Closed Won", f"{amount:.2f}", currency,
                              close.date().isoformat(), _iso(close + timedelta(hours=1)),
                              pipeline, "sam", contact_id, email, phone,
                              "true" if j == 0 else "false", ""])  # fmt: skip
                counts["deal rows"] += 1
    while len(visitors) < deals:  # anonymous visitors up to ~n
        visitors.append(f"{rng.getrandbits(128):032x}")
    counts["touchpoints"] = _touchpoints(files.touchpoints, visitors, deals, rng, now)
    files.counts = counts
    return files


def _touchpoints(
    path: Path, visitors: list[str], deals: int, rng: random.Random, now: datetime
) -> int:
    total = deals * TOUCHPOINTS_PER_DEAL
    start = now - timedelta(days=90)
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["visitor_id", "occurred_at", "landing_url", "referrer", "_ga", "_fbp",
                      "consent_ad_user_data", "consent_ad_personalization", "user_agent",
                      "ip"])  # fmt: skip
        for _ in range(total):
            v = rng.randrange(len(visitors))
            at = start + timedelta(seconds=rng.uniform(0, 90 * 86_400 - 7_200))
            _, query, referrer = CHANNELS[
                bisect.bisect_right(_CUMULATIVE, rng.random() * _CUMULATIVE[-1])
            ]
            query = query.format(token=f"{rng.getrandbits(160):040x}",
                                 campaign=CAMPAIGNS[v % len(CAMPAIGNS)],
                                 keyword=KEYWORDS[v % len(KEYWORDS)])  # fmt: skip
            landing = "https://www.example-saas.com" + LANDINGS[v % 6]
            landing += "?" + query if query else ""
            consent = "granted" if (v * 2654435761) % 100 >= 8 else "denied"
            out.writerow([visitors[v], _iso(at), landing, referrer,
                          f"GA1.1.{v + 10**9}.1700000000", f"fb.1.1700000000000.{v + 10**9}",
                          consent, consent, "Mozilla/5.0 (Macintosh)",
                          f"203.0.113.{v % 254 + 1}"])  # fmt: skip
    return total

"""What every fault trial shares: recording emulators, a won-deal dataset in a fresh store
(a SQLite file or a new PostgreSQL database), the operator's settlement from GA4's log, and
the count of what each platform received."""

from __future__ import annotations

import csv
import os
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import sqlalchemy as sa
from sqlalchemy.pool import NullPool
from tests.emulators.ga4_mp import GA4MPEmulator
from tests.emulators.google_ads import GoogleAdsEmulator
from tests.emulators.meta_graph import MetaGraphEmulator
from tests.emulators.oauth import OAuthEmulator
from tests.emulators.tls import TlsFiles, make_tls_files

from revsync.collect.importer import import_identities, import_touchpoints
from revsync.demo import DemoFiles, generate
from revsync.store.engine import open_store
from revsync.store.schema import conversions
from revsync.sync import ledger

MEASUREMENT_ID, API_SECRET, PIXEL, TOKEN = "G-FAULTS1", "mp-secret", "777", "meta-token"
CUSTOMER, ACTION = "1234567890", "111"
DEV_TOKEN, CLIENT_ID, CLIENT_SECRET, REFRESH = "dev-token", "client", "client-secret", "1//r"
SECRETS = {
    "ga4_api_secret": API_SECRET, "meta_access_token": TOKEN,
    "google_ads_developer_token": DEV_TOKEN, "google_oauth_client_id": CLIENT_ID,
    "google_oauth_client_secret": CLIENT_SECRET, "google_oauth_refresh_token": REFRESH,
}  # fmt: skip
TIMEOUT = 0.5
POSTGRES_ADMIN_URL = os.environ.get(
    "REVSYNC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
COLUMNS = ("kind", "store", "trials", "kills", "expected", "received", "lost", "doubled_ga4",
           "doubled_google", "resent_meta", "stuck", "refused", "settled", "senders",
           "failed_restarts")  # fmt: skip


@dataclass
class Trial:
    """What one trial found (summed per fault kind and store in the table)."""

    kind: str
    store: str
    kills: int = 0
    expected: int = 0
    received: int = 0
    lost: int = 0
    doubled_ga4: int = 0
    doubled_google: int = 0
    resent_meta: int = 0
    stuck: int = 0
    refused: int = 0
    settled: int = 0
    senders: int = 0
    failed_restarts: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class Platforms:
    """The recording emulators of one trial: GA4, Meta, Google Ads (and its OAuth server)."""

    ga4: GA4MPEmulator
    meta: MetaGraphEmulator
    ads: GoogleAdsEmulator
    oauth: OAuthEmulator
    tls: TlsFiles


@contextmanager
def platforms(latency: float = 0.0) -> Iterator[Platforms]:
    """Emulators that record every event before they answer."""
    with (
        tempfile.TemporaryDirectory() as tls_dir,
        GA4MPEmulator(streams={MEASUREMENT_ID: API_SECRET}) as ga4,
        MetaGraphEmulator(tokens={TOKEN}, pixels={PIXEL}) as meta,
        OAuthEmulator(
            clients={CLIENT_ID: CLIENT_SECRET}, refresh_tokens={REFRESH: CLIENT_ID}
        ) as oauth,
    ):
        tls = make_tls_files(Path(tls_dir))
        later = datetime.now(UTC) + timedelta(days=1)  # the bench's later runs stay before it
        with GoogleAdsEmulator(tls, oauth, developer_tokens=(DEV_TOKEN,), now=later) as ads:
            ads.add_conversion_action(CUSTOMER, int(ACTION), "Closed won")
            ga4.latency = meta.latency = latency
            yield Platforms(ga4, meta, ads, oauth, tls)


def mapping(p: Platforms) -> str:
    return f"""
sources:
  - {{name: crm, type: file, path: deals.csv, timezone: America/New_York}}
matching: {{default_phone_region: US}}
attribution: {{model: linear}}
privacy: {{unknown_consent: grant}}
destinations:
  - {{name: ga4, type: ga4, transport: http, measurement_id: {MEASUREMENT_ID},
     base_url: "{p.ga4.url}", event_name: purchase, timeout_seconds: {TIMEOUT}}}
  - {{name: meta, type: meta, transport: api, pixel_id: "{PIXEL}", graph_url: "{p.meta.url}",
     timeout_seconds: {TIMEOUT}, value_mode: full}}
  - {{name: google, type: google_ads, transport: ads_api, customer_id: "{CUSTOMER}",
     conversion_action: "{ACTION}", endpoint: "{p.ads.endpoint}", token_uri: "{p.oauth.token_url}",
     ca_bundle: "{p.tls.ca_cert}", timeout_seconds: 5}}
"""


def write_dataset(workdir: Path, seed: int, visitors: int, p: Platforms) -> DemoFiles:
    """Demo data closed in the last days (Meta takes them), its Google clicks known to the
    Google Ads emulator, and the mapping file."""
    now = datetime.now(UTC).replace(microsecond=0)
    files = generate(workdir, visitors=visitors, seed=seed, now=now)
    with files.touchpoints.open(newline="") as rows:
        for row in csv.DictReader(rows):
            query = parse_qs(urlsplit(row["landing_url"]).query)
            for name in ("gclid", "gbraid", "wbraid"):
                for click in query.get(name, []):
                    p.ads.add_click(click, datetime.fromisoformat(row["occurred_at"]))
    (workdir / "revsync.yaml").write_text(mapping(p))
    return files


def import_dataset(url: str, files: DemoFiles) -> None:
    engine = open_store(url)
    import_touchpoints(engine, files.touchpoints)
    import_identities(engine, files.leads, "US")
    engine.dispose()


@contextmanager
def store(kind: str, workdir: Path, admin_url: str = POSTGRES_ADMIN_URL) -> Iterator[str]:
    """The URL of a new, empty store: a SQLite file, or a PostgreSQL database dropped after."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'revsync.db'}"
        return
    name = f"revsync_faults_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield sa.engine.make_url(admin_url).set(database=name).render_as_string(False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def ga4_ids(ga4: GA4MPEmulator) -> Counter[str]:
    """How many times GA4 recorded each transaction_id."""
    return Counter(str(e.params.get("transaction_id")) for e in ga4.events + ga4.duplicates)


def settle_by_log(url: str, ga4: GA4MPEmulator) -> int:
    """The operator: a GA4 ``unknown`` row is sent if GA4 shows its transaction_id, else
    planned again. Returns the number of rows settled."""
    seen = ga4_ids(ga4)
    now = datetime.now(UTC)
    engine = open_store(url)
    with engine.begin() as conn:
        rows = conn.execute(
            conversions.select().where(conversions.c.state == ledger.State.UNKNOWN.value)
        ).mappings().all()  # fmt: skip
        for row in rows:
            target = ledger.State.SENT if seen[row["key"]] else ledger.State.PLANNED
            ledger.settle(conn, row["destination"], ledger.State.UNKNOWN, target, now,
                          key=row["key"])  # fmt: skip
    engine.dispose()
    return len(rows)


def count(trial: Trial, url: str, p: Platforms) -> Trial:
    """Every planned conversion against what the platforms recorded. A row the platform
    refused for its data (Google: a click outside the action's window) is counted apart:
    a run without faults ends the same way."""
    engine = open_store(url)
    with engine.connect() as conn:
        rows = conn.execute(
            conversions.select().where(conversions.c.kind == "conversion",
                                       conversions.c.state != "skipped")
        ).mappings().all()  # fmt: skip
    engine.dispose()
    trial.refused += sum(1 for r in rows if r["state"] == "rejected")
    rows = [r for r in rows if r["state"] != "rejected"]
    expected = {r["key"]: r["destination"] for r in rows}
    at = {
        "ga4": ga4_ids(p.ga4),
        "meta": Counter(str(e.data.get("event_id")) for e in p.meta.events + p.meta.duplicates),
        "google": Counter(u.order_id for u in p.ads.uploads),
    }
    received = {k for k, d in expected.items() if at[d][k]}
    trial.expected += len(expected)
    trial.received += len(received)
    trial.lost += len(expected) - len(received)
    trial.doubled_ga4 += sum(n - 1 for n in at["ga4"].values() if n > 1)
    trial.doubled_google += sum(n - 1 for n in at["google"].values() if n > 1)
    trial.resent_meta += len(p.meta.duplicates)
    stuck = [r for r in rows if r["state"] != "sent"]
    trial.stuck += len(stuck)
    trial.notes += [f"{r['destination']} {r['deal_id']} stuck {r['state']}: {r['error_code']} "
                    f"{r['error_message']}" for r in stuck]  # fmt: skip
    return trial


def as_row(trial: Trial) -> dict[str, Any]:
    return {k: v for k, v in vars(trial).items() if k != "notes"}

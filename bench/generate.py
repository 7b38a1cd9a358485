"""Fast, deterministic bulk generator for the attribution benchmark.

For ``n`` deals it writes straight into a migrated revsync store:

- ``n`` won deals (source ``crm``) with 1-2 contacts each (hashes only; ~5% of deals carry
  a gclid on the CRM record, half of them one that no stored touchpoint has);
- ~``n`` visitors and ~``2n`` identities: about half of the contacts were identified on the
  website (a form, chat or call per identity row, 10% of them on a second device), each
  identity carrying the email and/or phone hash and sometimes the CRM contact ID; a few
  identities belong to people who never became a contact;
- ``10n`` touchpoints over the last 90 days, in time order (as the collector writes them),
  each on a uniformly drawn visitor, with the demo channel mix and click IDs.

SQLite: ``executemany`` in large transactions with journaling off, secondary indexes and
foreign keys dropped during the load and rebuilt afterwards. PostgreSQL: ``COPY`` through
psycopg's ``cursor.copy`` with constraints and indexes dropped and re-created afterwards,
then ``VACUUM ANALYZE``. The same ``n`` and seed give the same data on both backends.

    python -m bench.generate --backend sqlite --deals 100000
"""

from __future__ import annotations

import argparse
import base64
import bisect
import hashlib
import random
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from revsync.store.engine import open_store

NOW = datetime(2026, 11, 1, tzinfo=UTC)
EPOCH_NOW = NOW.timestamp()
DAY = 86_400.0
SOURCE = "crm"
DEFAULT_DIR = Path("/tmp/revsync-bench")
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"

TOUCHPOINTS_PER_DEAL = 10
IDENTIFIED_CONTACT = 0.5  # share of contacts seen on the website
SECOND_DEVICE = 0.1
EXTRA_EVENT = 0.55  # each (person, visitor) link has 1 + Geometric(EXTRA_EVENT) identity rows
STRANGER_IDENTITIES = 0.1  # per deal: identities of people who are not contacts
CRM_GCLID = 0.05

# (weight, channel, source, medium, click parameter)
CHANNELS = (
    (30, "Paid Search", "google", "cpc", "gclid"),
    (18, "Organic Search", "google", "organic", None),
    (14, "Paid Social", "facebook", "paid_social", "fbclid"),
    (12, "Direct", None, None, None),
    (8, "Email", "newsletter", "email", None),
    (7, "Referral", "g2.com", "referral", None),
    (5, "Paid Social", "linkedin", "paid_social", "li_fat_id"),
    (4, "Display", "gdn", "display", None),
    (2, "Organic Social", "linkedin.com", "referral", None),
)
_CUMULATIVE = [sum(c[0] for c in CHANNELS[: i + 1]) for i in range(len(CHANNELS))]
CAMPAIGNS = ("brand", "generic", "competitor", "retargeting")
LANDINGS = ("/", "/pricing", "/demo", "/features", "/blog/attribution", "/case-studies")
CURRENCIES = ("USD",) * 8 + ("EUR",) + ("GBP",)

TOUCHPOINT_COLUMNS = (
    "id", "visitor_id", "occurred_at", "channel", "source", "medium", "campaign", "term",
    "content", "landing_url", "referrer", "gclid", "gbraid", "wbraid", "fbclid", "fbc", "fbp",
    "ga_client_id", "msclkid", "ttclid", "li_fat_id", "consent_ad_user_data",
    "consent_ad_personalization", "user_agent", "ip",
)  # fmt: skip
IDENTITY_COLUMNS = (
    "id", "visitor_id", "observed_at", "event", "email_sha256", "email_google_sha256",
    "phone_sha256", "phone_meta_sha256", "crm_id",
)  # fmt: skip
VISITOR_COLUMNS = ("id", "first_seen", "last_seen", "ga_client_id", "fbp")
DEAL_COLUMNS = (
    "source", "id", "status", "amount", "currency", "close_at", "modified_at", "stage",
    "pipeline", "owner", "click_ids", "fields", "synced_at",
)  # fmt: skip
CONTACT_COLUMNS = (
    "source", "crm_id", "email_sha256", "email_google_sha256", "phone_sha256",
    "phone_meta_sha256", "click_ids",
)  # fmt: skip
DEAL_CONTACT_COLUMNS = ("source", "deal_id", "contact_id", "is_primary")
TABLES = ("visitors", "touchpoints", "identities", "deals", "contacts", "deal_contacts")


@dataclass(frozen=True)
class Format:
    """How one backend wants timestamps and booleans as text."""

    ts: Callable[[float], str]
    true: Any
    false: Any


def _ts_sqlite(epoch: float) -> str:
    # SQLAlchemy's SQLite DATETIME storage format: naive UTC with microseconds.
    return datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _ts_pg(epoch: float) -> str:
    return _ts_sqlite(epoch) + "+00"


SQLITE = Format(_ts_sqlite, 1, 0)
POSTGRES = Format(_ts_pg, "t", "f")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _token(rng: random.Random, nbytes: int) -> str:
    return base64.urlsafe_b64encode(rng.randbytes(nbytes)).decode().rstrip("=")


@dataclass
class Counts:
    deals: int = 0
    contacts: int = 0
    visitors: int = 0
    identities: int = 0
    touchpoints: int = 0


class Dataset:
    """Generates the rows table by table; the seed fixes every value."""

    def __init__(self, deals: int, seed: int, fmt: Format) -> None:
        self.n = deals
        self.seed = seed
        self.fmt = fmt
        self.counts = Counts()
        self.visitors: list[str] = []
        self.identity_rows: list[tuple[Any, ...]] = []
        self.crm_gclids: dict[int, str] = {}  # deal number -> gclid planted on a touchpoint

    # --- people: deals, contacts, identities ---------------------------------------

    def people(
        self,
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        rng = random.Random(self.seed)
        ts, true, false = self.fmt.ts, self.fmt.true, self.fmt.false
        deals, contacts, links = [], [], []
        visitors = self.visitors
        identities = self.identity_rows
        for k in range(self.n):
            deal_id = f"D{k:09d}"
            first_lead: float | None = None
            for j in range(1 + (rng.random() < 0.5)):
                crm_id = f"C{k:09d}-{j}"
                email = _sha(f"person{k}.{j}@example.com")
                email_google = email
                phone = _sha(f"+1415{k:07d}{j}") if rng.random() < 0.5 else None
                phone_meta = _sha(f"1415{k:07d}{j}") if phone else None
                contacts.append((SOURCE, crm_id, email, email_google, phone, phone_meta, "{}"))
                links.append((SOURCE, deal_id, crm_id, true if j == 0 else false))
                if rng.random() >= IDENTIFIED_CONTACT:
                    continue
                lead = EPOCH_NOW - rng.uniform(2, 85) * DAY
                first_lead = lead if first_lead is None else min(first_lead, lead)
                for _device in range(1 + (rng.random() < SECOND_DEVICE)):
                    visitor = f"{rng.getrandbits(128):032x}"
                    visitors.append(visitor)
                    events = 1
                    while rng.random() < EXTRA_EVENT:
                        events += 1
                    for _ in range(events):
                        at = min(lead + rng.uniform(0, 10) * DAY, EPOCH_NOW - 3600)
                        identities.append(
                            (
                                f"{rng.getrandbits(160):040x}",
                                visitor,
                                ts(at),
                                rng.choice(("lead", "lead", "chat", "call")),
                                email if rng.random() < 0.9 else None,
                                email_google,
                                phone if rng.random() < 0.5 else None,
                                phone_meta,
                                crm_id if rng.random() < 0.3 else None,
                            )
                        )
            if first_lead is None:
                close = EPOCH_NOW - rng.uniform(1 / 24, 90) * DAY
            else:
                close = min(first_lead + rng.uniform(1, 60) * DAY, EPOCH_NOW - 3600)
            click_ids = "{}"
            if rng.random() < CRM_GCLID:
                gclid = _token(rng, 30)
                click_ids = f'{{"gclid": "{gclid}"}}'
                if first_lead is not None and rng.random() < 0.5:
                    self.crm_gclids[k] = gclid
            deals.append(
                (
                    SOURCE, deal_id, "won", round(rng.lognormvariate(8.6, 0.8), 2),
                    CURRENCIES[rng.randrange(len(CURRENCIES))], ts(close), ts(close + 3600),
                    "Closed Won", rng.choice(("new_business", "expansion")),
                    rng.choice(("alex", "sam", "robin")), click_ids, "{}", ts(EPOCH_NOW),
                )
            )  # fmt: skip
        # Identities of people who never became a contact, on their own visitors.
        for s in range(int(self.n * STRANGER_IDENTITIES)):
            visitor = f"{rng.getrandbits(128):032x}"
            visitors.append(visitor)
            identities.append(
                (
                    f"{rng.getrandbits(160):040x}", visitor,
                    ts(EPOCH_NOW - rng.uniform(1, 90) * DAY), "lead",
                    _sha(f"stranger{s}@example.net"), None, None, None, None,
                )
            )  # fmt: skip
        # Anonymous visitors up to ~n in all.
        while len(visitors) < self.n:
            visitors.append(f"{rng.getrandbits(128):032x}")
        self.counts.deals = len(deals)
        self.counts.contacts = len(contacts)
        self.counts.identities = len(identities)
        self.counts.visitors = len(visitors)
        return deals, contacts, links

    # --- visitors and touchpoints ---------------------------------------------------

    def visitor_rows(self) -> Iterator[tuple[Any, ...]]:
        ts = self.fmt.ts
        first, last = ts(EPOCH_NOW - 90 * DAY), ts(EPOCH_NOW)
        for number, visitor in enumerate(self.visitors):
            yield (visitor, first, last, f"GA1.1.{number + 10**9}.1700000000", None)

    def touchpoint_rows(self) -> Iterator[tuple[Any, ...]]:
        """``10n`` touchpoints in time order over the last 90 days."""
        rng = random.Random(self.seed + 1)
        ts, true, false = self.fmt.ts, self.fmt.true, self.fmt.false
        visitors = self.visitors
        nv = len(visitors)
        # Visitors of deals whose CRM record carries a gclid that a touchpoint has too.
        planted: dict[int, str] = {}
        for crm_gclid in self.crm_gclids.values():
            planted[rng.randrange(nv)] = crm_gclid  # any visitor: the CRM click links it
        total = self.n * TOUCHPOINTS_PER_DEAL
        days = 90
        start = EPOCH_NOW - days * DAY
        made = 0
        consent_cache: dict[int, bool] = {}
        for day in range(days):
            count = total * (day + 1) // days - made
            times = sorted(start + (day + rng.random()) * DAY for _ in range(count))
            for at in times:
                v = rng.randrange(nv)
                visitor = visitors[v]
                pick = CHANNELS[bisect.bisect_right(_CUMULATIVE, rng.random() * _CUMULATIVE[-1])]
                _, channel, source, medium, param = pick
                campaign = CAMPAIGNS[v & 3] if param or medium == "display" else None
                gclid = gbraid = wbraid = fbclid = fbc = li = None
                landing = "https://www.example-saas.com" + LANDINGS[rng.randrange(6)]
                if param == "gclid":
                    if v in planted:
                        gclid = planted.pop(v)
                    elif v % 5 == 0:  # iOS
                        if rng.random() < 0.5:
                            gbraid = _token(rng, 30)
                        else:
                            wbraid = _token(rng, 30)
                    else:
                        gclid = _token(rng, 30)
                elif param == "fbclid":
                    fbclid = _token(rng, 45)
                    fbc = f"fb.1.{int(at * 1000)}.{fbclid}"
                elif param == "li_fat_id":
                    li = _token(rng, 22)
                consent = consent_cache.get(v)
                if consent is None:
                    consent = consent_cache[v] = (v * 2654435761) % 100 >= 8
                flag = true if consent else false
                yield (
                    f"{rng.getrandbits(160):040x}", visitor, ts(at), channel, source, medium,
                    campaign, None, None, landing,
                    "https://www.google.com/" if medium == "organic" else None,
                    gclid, gbraid, wbraid, fbclid, fbc, None, f"GA1.1.{v + 10**9}.1700000000",
                    None, None, li, flag, flag,
                    "Mozilla/5.0 (iPhone)" if v % 5 == 0 else "Mozilla/5.0 (Macintosh)",
                    f"203.0.113.{v % 254 + 1}",
                )  # fmt: skip
            made += count
        self.counts.touchpoints = made


# --- loaders ---------------------------------------------------------------------------


def sqlite_path(directory: Path, deals: int, seed: int) -> Path:
    return directory / f"attribution-{deals}-s{seed}.db"


def pg_database(deals: int, seed: int) -> str:
    return f"revsync_bench_{deals}_s{seed}"


def pg_url(deals: int, seed: int) -> str:
    url = sa.engine.make_url(PG_ADMIN_URL).set(database=pg_database(deals, seed))
    return url.render_as_string(hide_password=False)


def _batches(rows: Iterator[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def load_sqlite(path: Path, deals: int, seed: int, log: Callable[[str], None]) -> Counts:
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    open_store(f"sqlite:///{path}").dispose()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA foreign_keys=OFF")
    db.execute("PRAGMA cache_size=-2000000")
    db.execute("PRAGMA temp_store=MEMORY")
    db.execute("PRAGMA locking_mode=EXCLUSIVE")
    indexes = db.execute(
        "SELECT name, sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL"
        f" AND tbl_name IN ({','.join('?' * len(TABLES))})",
        TABLES,
    ).fetchall()
    for name, _sql in indexes:
        db.execute(f'DROP INDEX "{name}"')
    data = Dataset(deals, seed, SQLITE)

    def insert(table: str, columns: Sequence[str], rows: Iterator[tuple[Any, ...]]) -> None:
        started = time.perf_counter()
        quoted = ", ".join(f'"{c}"' for c in columns)
        sql = f"INSERT INTO {table} ({quoted}) VALUES ({', '.join('?' * len(columns))})"
        n = 0
        for batch in _batches(rows, 200_000):
            db.execute("BEGIN")
            db.executemany(sql, batch)
            db.execute("COMMIT")
            n += len(batch)
        log(f"  {table}: {n:,} rows in {time.perf_counter() - started:.1f}s")

    started = time.perf_counter()
    deal_rows, contact_rows, link_rows = data.people()
    log(f"  people generated in {time.perf_counter() - started:.1f}s")
    insert("deals", DEAL_COLUMNS, iter(deal_rows))
    insert("contacts", CONTACT_COLUMNS, iter(contact_rows))
    insert("deal_contacts", DEAL_CONTACT_COLUMNS, iter(link_rows))
    del deal_rows, contact_rows, link_rows
    insert("visitors", VISITOR_COLUMNS, data.visitor_rows())
    insert("identities", IDENTITY_COLUMNS, iter(data.identity_rows))
    data.identity_rows.clear()
    insert("touchpoints", TOUCHPOINT_COLUMNS, data.touchpoint_rows())
    started = time.perf_counter()
    for _name, sql in indexes:
        db.execute(sql)
    db.execute("ANALYZE")
    log(f"  indexes and ANALYZE in {time.perf_counter() - started:.1f}s")
    db.execute("PRAGMA journal_mode=WAL")
    db.close()
    return data.counts


def load_postgresql(deals: int, seed: int, log: Callable[[str], None]) -> Counts:
    name = pg_database(deals, seed)
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = pg_url(deals, seed)
    open_store(url).dispose()
    engine = sa.create_engine(url)
    data = Dataset(deals, seed, POSTGRES)
    raw = engine.raw_connection()
    try:
        db = raw.driver_connection
        assert db is not None
        cur = db.cursor()
        cur.execute("SET maintenance_work_mem = '1GB'")
        cur.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), contype "
            "FROM pg_constraint WHERE conrelid::regclass::text = ANY(%s) "
            "AND contype IN ('p', 'f') ORDER BY contype DESC",
            (list(TABLES),),
        )
        constraints = cur.fetchall()  # primary keys first when re-adding
        for table, con, _definition, _type in sorted(constraints, key=lambda c: c[3]):
            cur.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{con}"')  # FKs first
        cur.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = ANY(%s)",
            (list(TABLES),),
        )
        indexes = cur.fetchall()
        for index, _definition in indexes:
            cur.execute(f'DROP INDEX "{index}"')
        db.commit()

        def copy(table: str, columns: Sequence[str], rows: Iterator[tuple[Any, ...]]) -> None:
            started = time.perf_counter()
            n = 0
            quoted = ", ".join(f'"{c}"' for c in columns)
            with cur.copy(f"COPY {table} ({quoted}) FROM STDIN") as out:
                for batch in _batches(rows, 50_000):
                    out.write(
                        "".join(
                            "\t".join(["\\N" if v is None else str(v) for v in row]) + "\n"
                            for row in batch
                        )
                    )
                    n += len(batch)
            db.commit()
            log(f"  {table}: {n:,} rows in {time.perf_counter() - started:.1f}s")

        started = time.perf_counter()
        deal_rows, contact_rows, link_rows = data.people()
        log(f"  people generated in {time.perf_counter() - started:.1f}s")
        copy("deals", DEAL_COLUMNS, iter(deal_rows))
        copy("contacts", CONTACT_COLUMNS, iter(contact_rows))
        copy("deal_contacts", DEAL_CONTACT_COLUMNS, iter(link_rows))
        del deal_rows, contact_rows, link_rows
        copy("visitors", VISITOR_COLUMNS, data.visitor_rows())
        copy("identities", IDENTITY_COLUMNS, iter(data.identity_rows))
        data.identity_rows.clear()
        copy("touchpoints", TOUCHPOINT_COLUMNS, data.touchpoint_rows())
        started = time.perf_counter()
        for table, con, definition, _type in sorted(constraints, key=lambda c: c[3], reverse=True):
            cur.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT "{con}" {definition}')
        for index, definition in indexes:
            if not any(index == c[1] for c in constraints):
                cur.execute(definition)
        db.commit()
        db.autocommit = True
        cur.execute(f"VACUUM (ANALYZE) {', '.join(TABLES)}")
        log(f"  constraints, indexes and VACUUM ANALYZE in {time.perf_counter() - started:.1f}s")
    finally:
        raw.close()
        engine.dispose()
    return data.counts


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--deals", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="SQLite files go here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.backend == "sqlite":
        path = sqlite_path(args.dir, args.deals, args.seed)
        counts = load_sqlite(path, args.deals, args.seed, print)
        where = str(path)
    else:
        counts = load_postgresql(args.deals, args.seed, print)
        where = pg_database(args.deals, args.seed)
    print(f"generated {counts} into {where} in {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()

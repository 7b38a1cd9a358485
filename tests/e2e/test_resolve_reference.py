"""``resolve_journeys`` (set-based, windowed in SQL) gives exactly the journeys of the
straightforward per-key implementation it replaced, kept here as the reference, on
SQLite and PostgreSQL: touchpoints on window boundaries, visitors shared by deals of one
page, CRM click IDs known and unknown, every key kind."""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, RowMapping, select

from revsync.destinations.base import credited
from revsync.domain import (
    Channel,
    ClickIds,
    Consent,
    Contact,
    Credit,
    Deal,
    DealStatus,
    Journey,
    MatchLink,
    PersonHashes,
    Touch,
    Touchpoint,
)
from revsync.matching.resolve import (
    _CLICK_KEYS,
    _deal_keys,
    resolve_journeys,
    with_details,
)
from revsync.store.schema import identities, touchpoints, visitors

_CHUNK = 500
BASE = datetime(2026, 6, 1, tzinfo=UTC)
CHANNELS = ("Paid Search", "Direct", "Organic Search", "Paid Social", "Email", "Unassigned")


def _at(rng: random.Random) -> datetime:
    # On a coarse grid, so touchpoints fall exactly on window starts and close times.
    return BASE + timedelta(hours=12 * rng.randrange(0, 400))


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _dataset(engine: Engine, seed: int) -> list[Deal]:
    rng = random.Random(seed)
    visitor_ids = [f"v{n:03d}" for n in range(60)]
    people = [(_hash(f"p{n}@x.com"), _hash(f"+1555{n:04d}"), f"C{n}") for n in range(45)]
    gclids = [f"G{n}" for n in range(20)]
    with engine.begin() as conn:
        conn.execute(
            visitors.insert(),
            [{"id": v, "first_seen": BASE, "last_seen": BASE} for v in visitor_ids],
        )
        tps = []
        for n in range(700):
            v = rng.choice(visitor_ids)
            click = rng.random()
            tps.append(
                {
                    "id": _hash(f"tp{n}")[:40],
                    "visitor_id": v,
                    "occurred_at": _at(rng),
                    "channel": rng.choice(CHANNELS),
                    "source": rng.choice((None, "google")),
                    "medium": rng.choice((None, "cpc")),
                    "campaign": rng.choice((None, "brand")),
                    "landing_url": "https://x.com/",
                    "gclid": rng.choice(gclids) if click < 0.2 else None,
                    "gbraid": f"B{n}" if 0.2 <= click < 0.25 else None,
                    "fbclid": f"F{n}" if 0.25 <= click < 0.35 else None,
                    "fbc": f"fb.1.1.F{n}" if 0.25 <= click < 0.35 else None,
                    "ga_client_id": f"GA1.1.{v}" if rng.random() < 0.7 else None,
                    "consent_ad_user_data": rng.choice((None, True, False)),
                    "consent_ad_personalization": rng.choice((None, True, False)),
                    "user_agent": "Mozilla/5.0",
                    "ip": rng.choice((None, "203.0.113.0")),
                }
            )
        conn.execute(touchpoints.insert(), tps)
        ids = []
        for n in range(150):
            email, phone, crm_id = rng.choice(people)
            ids.append(
                {
                    "id": _hash(f"id{n}")[:40],
                    "visitor_id": rng.choice(visitor_ids),
                    "observed_at": _at(rng),
                    "event": "lead",
                    "email_sha256": email if rng.random() < 0.7 else None,
                    "phone_sha256": phone if rng.random() < 0.4 else None,
                    "crm_id": crm_id if rng.random() < 0.3 else None,
                }
            )
        conn.execute(identities.insert(), ids)
    deals = []
    for n in range(80):
        contacts = []
        for j in range(rng.choice((0, 1, 1, 2, 3))):
            email, phone, crm_id = rng.choice(people)
            contacts.append(
                Contact(
                    crm_id=crm_id if rng.random() < 0.8 else f"X{n}-{j}",
                    hashes=PersonHashes(email=email, phone=phone if rng.random() < 0.6 else None),
                    is_primary=j == 0,
                    click_ids=ClickIds(gclid=rng.choice(gclids))
                    if rng.random() < 0.1
                    else ClickIds(),
                )
            )
        roll = rng.random()
        deal_clicks = ClickIds(
            gclid=rng.choice([*gclids, "unknown-1", "unknown-2"]) if roll < 0.2 else None,
            fbclid=f"F{rng.randrange(700)}" if 0.2 <= roll < 0.3 else None,
            wbraid="W-not-stored" if 0.3 <= roll < 0.35 else None,
            ga_client_id=f"GA1.1.{rng.choice(visitor_ids)}" if 0.35 <= roll < 0.45 else None,
        )
        deals.append(
            Deal(
                source=rng.choice(("crm", "hubspot")),
                id=f"D{n}",
                status=DealStatus.WON,
                amount=Decimal("100.00"),
                currency="USD",
                close_at=_at(rng),
                modified_at=BASE,
                contacts=tuple(contacts),
                click_ids=deal_clicks,
            )
        )
    return deals


@pytest.mark.parametrize("page", [1, 7, 80])
@pytest.mark.parametrize("lookback_days", [90, 30, 1])
def test_journeys_equal_the_reference(engine: Engine, page: int, lookback_days: int) -> None:
    deals = _dataset(engine, seed=page * 100 + lookback_days)
    with engine.connect() as conn:
        for start in range(0, len(deals), page):
            chunk = deals[start : start + page]
            got = with_details(conn, resolve_journeys(conn, chunk, lookback_days))
            want = reference_resolve(conn, chunk, lookback_days)
            assert got == want
    assert any(j.touchpoints for j in want)


@pytest.mark.parametrize(
    "kinds", [("email",), ("phone", "crm_id"), ("click_id",), ("email", "phone", "crm_id")]
)
def test_key_kinds_equal_the_reference(engine: Engine, kinds: tuple[str, ...]) -> None:
    deals = _dataset(engine, seed=len(kinds))
    with engine.connect() as conn:
        got = with_details(conn, resolve_journeys(conn, deals, 90, kinds))
        assert got == reference_resolve(conn, deals, 90, kinds)


def test_a_visitor_of_two_deals_keeps_each_deals_window(engine: Engine) -> None:
    """One visitor, two deals of one page with disjoint windows: each journey only has
    its own touchpoints, including the ones exactly on its window's edges."""
    close_a, close_b = BASE + timedelta(days=10), BASE + timedelta(days=200)
    times = [close_a - timedelta(days=5), close_a, close_a + timedelta(seconds=1),
             close_b - timedelta(days=5), close_b, close_b + timedelta(days=1)]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(visitors.insert().values(id="v", first_seen=BASE, last_seen=BASE))
        conn.execute(
            touchpoints.insert(),
            [{"id": f"t{n}", "visitor_id": "v", "occurred_at": at, "channel": "Direct"}
             for n, at in enumerate(times)],
        )  # fmt: skip
        conn.execute(
            identities.insert(),
            [
                {"id": "ia", "visitor_id": "v", "observed_at": close_a - timedelta(days=5),
                 "event": "lead", "email_sha256": "a"},
                {"id": "ib", "visitor_id": "v", "observed_at": close_b - timedelta(days=5),
                 "event": "lead", "email_sha256": "b"},
            ],
        )  # fmt: skip
    deals = [
        Deal("crm", name, DealStatus.WON, Decimal(1), "USD", close, BASE,
             contacts=(Contact(name, PersonHashes(email=name)),))
        for name, close in (("a", close_a), ("b", close_b))
    ]  # fmt: skip
    with engine.connect() as conn:
        got = with_details(conn, resolve_journeys(conn, deals, lookback_days=10))
        assert got == reference_resolve(conn, deals, 10)
    assert [tp.id for tp in got[0].touchpoints] == ["t0", "t1"]
    assert [tp.id for tp in got[1].touchpoints] == ["t3", "t4"]
    assert got[0].touchpoints[0].occurred_at.tzinfo is UTC


# --- the reference: the implementation before the set-based rewrite ---------------------


def touchpoint_from_row(row: Mapping[str, Any] | RowMapping) -> Touchpoint:
    """A Touchpoint from a ``touchpoints`` row, column by column."""
    return Touchpoint(
        id=row["id"],
        visitor_id=row["visitor_id"],
        occurred_at=row["occurred_at"],
        channel=row["channel"],
        source=row["source"],
        medium=row["medium"],
        campaign=row["campaign"],
        term=row["term"],
        content=row["content"],
        landing_url=row["landing_url"],
        referrer=row["referrer"],
        click_ids=ClickIds(
            gclid=row["gclid"],
            gbraid=row["gbraid"],
            wbraid=row["wbraid"],
            fbclid=row["fbclid"],
            fbc=row["fbc"],
            fbp=row["fbp"],
            ga_client_id=row["ga_client_id"],
            msclkid=row["msclkid"],
            ttclid=row["ttclid"],
            li_fat_id=row["li_fat_id"],
        ),
        consent=Consent(row["consent_ad_user_data"], row["consent_ad_personalization"]),
        user_agent=row["user_agent"],
        ip=row["ip"],
    )


def reference_resolve(
    conn: Connection,
    deals: Sequence[Deal],
    lookback_days: int,
    kinds: Sequence[str] = ("email", "phone", "crm_id", "click_id"),
) -> list[Journey]:
    """Journeys for ``deals`` (won deals with a close time), in the order given."""
    per_deal = {(d.source, d.id): _deal_keys(d, kinds) for d in deals}
    emails = set().union(*(k.emails for k in per_deal.values())) if per_deal else set()
    phones = set().union(*(k.phones for k in per_deal.values())) if per_deal else set()
    crm_ids = set().union(*(k.crm_ids for k in per_deal.values())) if per_deal else set()
    id_rows = _identities(conn, emails, phones, crm_ids)
    by_email: dict[str, list[RowMapping]] = defaultdict(list)
    by_phone: dict[str, list[RowMapping]] = defaultdict(list)
    by_crm: dict[str, list[RowMapping]] = defaultdict(list)
    for row in id_rows:
        if row["email_sha256"]:
            by_email[row["email_sha256"]].append(row)
        if row["phone_sha256"]:
            by_phone[row["phone_sha256"]].append(row)
        if row["crm_id"]:
            by_crm[row["crm_id"]].append(row)
    clicks: dict[str, set[str]] = defaultdict(set)
    for k in per_deal.values() if "click_id" in kinds else ():
        for name, values in k.clicks.items():
            clicks[name] |= values
    click_rows = _click_touchpoints(conn, clicks)

    links_of: dict[tuple[str, str], list[MatchLink]] = {}
    first_lead: dict[tuple[str, str], datetime] = {}
    for key, k in per_deal.items():
        links: list[MatchLink] = []
        for kind, values, index in (
            ("email", k.emails, by_email),
            ("phone", k.phones, by_phone),
            ("crm_id", k.crm_ids, by_crm),
        ):
            for value in sorted(values):
                for row in index.get(value, ()):
                    links.append(MatchLink(row["visitor_id"], kind, value))
                    when = row["observed_at"]
                    if key not in first_lead or when < first_lead[key]:
                        first_lead[key] = when
        for name, values in k.clicks.items() if "click_id" in kinds else ():
            for value in sorted(values):
                for row in click_rows.get((name, value), ()):
                    links.append(MatchLink(row["visitor_id"], name, value))
        links_of[key] = sorted(set(links), key=lambda m: (m.visitor_id, m.key_type, m.key))

    visitor_ids = {m.visitor_id for links in links_of.values() for m in links}
    by_visitor = _visitor_touchpoints(conn, visitor_ids)
    journeys = []
    for deal in deals:
        key = (deal.source, deal.id)
        journeys.append(
            reference_build_journey(
                deal, links_of[key], by_visitor, first_lead.get(key), lookback_days, click_rows
            )
        )
    return journeys


def reference_build_journey(
    deal: Deal,
    links: Sequence[MatchLink],
    by_visitor: Mapping[str, Sequence[Touchpoint]],
    first_lead: datetime | None,
    lookback_days: int,
    click_rows: Mapping[tuple[str, str], Sequence[RowMapping]] | None = None,
) -> Journey:
    """The deal's touchpoints inside ``[first lead - lookback, close]``, time-ordered.

    A click ID on the CRM record that no stored touchpoint carries becomes a touchpoint of
    its own at the first lead event (or just before close), so it can still be credited.
    """
    assert deal.close_at is not None
    anchor = min(first_lead, deal.close_at) if first_lead else deal.close_at
    start = anchor - timedelta(days=lookback_days)
    seen: dict[str, Touchpoint] = {}
    for visitor in sorted({m.visitor_id for m in links}):
        for tp in by_visitor.get(visitor, ()):
            if start <= tp.occurred_at <= deal.close_at:
                seen[tp.id] = tp
    known_clicks = {
        (name, value)
        for tp in seen.values()
        for name in _CLICK_KEYS
        if (value := getattr(tp.click_ids, name))
    }
    for ids in (deal.click_ids, *(c.click_ids for c in deal.contacts)):
        for name in ("gclid", "gbraid", "wbraid", "fbclid"):
            value = getattr(ids, name)
            if (
                value
                and (name, value) not in known_clicks
                and not (click_rows and click_rows.get((name, value)))
            ):
                tp = _crm_click(deal, name, value, anchor)
                seen[tp.id] = tp
                known_clicks.add((name, value))
    ordered = sorted(seen.values(), key=lambda t: (t.occurred_at, t.id))
    return Journey(deal=deal, touchpoints=tuple(ordered), links=tuple(links))


def _crm_click(deal: Deal, name: str, value: str, when: datetime) -> Touchpoint:
    digest = hashlib.sha256(f"crm|{deal.source}|{deal.id}|{name}|{value}".encode()).hexdigest()
    at = min(when, deal.close_at - timedelta(seconds=1)) if deal.close_at else when
    channel = Channel.PAID_SOCIAL if name == "fbclid" else Channel.PAID_SEARCH
    return Touchpoint(
        id=digest[:40],
        visitor_id=f"crm:{deal.source}:{deal.id}",
        occurred_at=at,
        channel=channel,
        source="facebook" if name == "fbclid" else "google",
        medium="cpc",
        click_ids=ClickIds(**{name: value}),
    )


def _chunks(values: Iterable[str]) -> Iterable[list[str]]:
    items = sorted(values)
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _identities(
    conn: Connection, emails: set[str], phones: set[str], crm_ids: set[str]
) -> list[RowMapping]:
    rows: dict[str, RowMapping] = {}
    for column, values in (
        (identities.c.email_sha256, emails),
        (identities.c.phone_sha256, phones),
        (identities.c.crm_id, crm_ids),
    ):
        for chunk in _chunks(values):
            for row in conn.execute(select(identities).where(column.in_(chunk))).mappings():
                rows[row["id"]] = row
    return list(rows.values())


def _click_touchpoints(
    conn: Connection, clicks: Mapping[str, set[str]]
) -> dict[tuple[str, str], list[RowMapping]]:
    found: dict[tuple[str, str], list[RowMapping]] = defaultdict(list)
    for name, values in clicks.items():
        column = touchpoints.c[name]
        for chunk in _chunks(values):
            query = select(touchpoints.c.id, touchpoints.c.visitor_id, column).where(
                column.in_(chunk)
            )
            for row in conn.execute(query).mappings():
                found[(name, row[name])].append(row)
    return found


def _visitor_touchpoints(conn: Connection, visitor_ids: set[str]) -> dict[str, list[Touchpoint]]:
    out: dict[str, list[Touchpoint]] = defaultdict(list)
    for chunk in _chunks(visitor_ids):
        query = select(touchpoints).where(touchpoints.c.visitor_id.in_(chunk))
        for row in conn.execute(query).mappings():
            out[row["visitor_id"]].append(touchpoint_from_row(row))
    return out


def test_journeys_carry_touches_and_with_details_reads_the_ones_asked_for(
    engine: Engine,
) -> None:
    """Resolution reads what attribution needs (``Touch``); ``with_details`` swaps in the
    stored ``Touchpoint`` of the IDs asked for, and planning refuses a bare ``Touch``."""
    deals = _dataset(engine, seed=5)
    with engine.connect() as conn:
        journeys = resolve_journeys(conn, deals, 90)
        stored = [tp for j in journeys for tp in j.touchpoints if tp.visitor_id[:4] != "crm:"]
        assert stored and all(type(tp) is Touch for tp in stored)
        # CRM click IDs with no stored touchpoint are full touchpoints from the start.
        assert all(
            type(tp) is Touchpoint for j in journeys for tp in j.touchpoints
            if tp.visitor_id.startswith("crm:")
        )  # fmt: skip
        journey = next(j for j in journeys if len(j.touchpoints) > 1)
        wanted = journey.touchpoints[0]
        (detailed_journey,) = with_details(conn, [journey], {wanted.id})
        reference = {
            tp.id: tp for j in reference_resolve(conn, [journey.deal], 90) for tp in j.touchpoints
        }
    first, *rest = detailed_journey.touchpoints
    assert first == reference[wanted.id] and type(first) is Touchpoint
    assert rest == list(journey.touchpoints[1:])  # untouched
    credit = Credit(journey.touchpoints[1].id, Fraction(1), Decimal(100))
    if type(journey.touchpoints[1]) is Touch:
        with pytest.raises(TypeError, match=f"deal {journey.deal.source}/{journey.deal.id}"):
            credited(detailed_journey, [credit])
    eligible = credited(detailed_journey, [Credit(first.id, Fraction(1), Decimal(1))])
    assert eligible[0][0] is first

"""Benchmark: build conversions and send them through each destination to its emulator.

Run from the repository root (``--json`` prints the results as JSON)::

    PYTHONPATH=src:. .venv/bin/python -m bench.destinations                     # all four, 100k
    PYTHONPATH=src:. .venv/bin/python -m bench.destinations --destination google_ads
    PYTHONPATH=src:. .venv/bin/python -m bench.destinations --destination ga4 --ga4-clients 60000
    PYTHONPATH=src:. .venv/bin/python -m bench.destinations --conversions 100000 --json

Destinations (each the real ``*Destination`` with its real transport and SDK):

* ``google_ads``: ``GoogleAdsDestination`` + ``GoogleAdsApiTransport`` (google-ads, gRPC over
  TLS) against ``GoogleAdsEmulator`` + ``OAuthEmulator``; every gclid is seeded as a click.
* ``data_manager``: ``GoogleAdsDestination`` + ``DataManagerTransport``
  (google-ads-datamanager, REST) against ``DataManagerEmulator`` (clicks seeded, events
  processed at once, its default 300 requests/minute limit on).
* ``ga4``: ``Ga4Destination`` + ``Ga4HttpTransport`` (httpx) against ``GA4MPEmulator``.
* ``meta``: ``MetaDestination`` + ``MetaApiTransport`` (facebook-business) against
  ``MetaGraphEmulator``.

Conversions: one won deal per conversion with one fully credited touchpoint, planned by the
destination's own ``plan()`` (keys, values, eligibility). Google: a distinct gclid per
deal, clicked 9-30 days before now and closed 2-8 days after the click. Meta: ``fbc`` and
``fbp`` cookies, closed within the last 6 days (inside the 7-day limit), contacts with
hashed email and phone. GA4: ``--ga4-clients`` client_ids (default 60% of the
conversions): each client converts once, and the rest of the conversions go to clients
drawn with weight 1/sqrt(rank) (a few browsers convert dozens of times), in random order,
as a ledger would hand them over; a client_id's conversions share one person (contact
hashes) and consent. Conversions are sent in ``batch_size`` batches, as the
sync job does, and every one must come back SENT and be stored by the emulator.

Reported per destination:

* ``build s``: CPU time of ``plan()`` for all conversions (journey generation excluded);
  ``send s``: wall time of sending all batches; ``conv/s``: conversions / (build + send);
* ``req/1k`` vs ``min/1k``: requests the emulator received per 1,000 conversions, and the
  least the platform's limits allow: Google 2,000 rows a request (0.5), Meta 1,000 events
  (1.0), GA4 one client_id (with its user_data and consent, request-level fields) and at
  most 25 events a request (the sum over client_ids of ceil(conversions/25)). OAuth token
  requests are listed apart in ``--json``;
* ``peak MiB``: ``getrusage(RUSAGE_SELF).ru_maxrss`` of the bench process (revsync, the
  SDKs and the 100k built conversions; the emulator lives in a spawned child process,
  ``bench/_emulated.py``, and its peak is ``emu MiB``). ``base MiB`` is the RSS after
  imports and ``built MiB`` after building the conversions, so peak - built is what
  sending added. With ``--destination all`` each destination runs in a fresh process;
* ``cpu s``: revsync's CPU seconds while sending (the machine may be shared: compare CPU
  seconds when the load average is high).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from bench._emulated import (
    EmulatedProcess,
    cpu_seconds,
    current_rss_mb,
    peak_rss_mb,
    render_table,
)

DESTINATIONS = ("google_ads", "data_manager", "ga4", "meta")
CUSTOMER, ACTION = "1234567890", "111"
DEV_TOKEN = "bench-dev-token"
CLIENT_ID, CLIENT_SECRET, REFRESH = "bench.apps.googleusercontent.com", "bench-secret", "1//r"
META_TOKEN, PIXEL = "EAAB-bench-token", "1234567890"
MEASUREMENT_ID, API_SECRET = "G-BENCH01", "bench-api-secret"
MINIMUM_PER_REQUEST = {"google_ads": 2000, "data_manager": 2000, "meta": 1000}


def _gclid(i: int) -> str:
    return f"Cj0KCQiA{i:08d}-bench_gclid"


def _clicked_at(i: int, now: datetime) -> datetime:
    """Clicks 30 to ~9 days ago, 10 s apart per 1,000 (deterministic: seeded in the child)."""
    return now - timedelta(days=30) + timedelta(seconds=(i * 18) % (21 * 86400))


# --- emulator factories (run in the spawned child) ------------------------------------------


class _Served:
    info: dict[str, Any]
    emulators: list[Any]

    def stop(self) -> None:
        for emulator in self.emulators:
            emulator.stop()


class _ServedGoogleAds(_Served):
    def __init__(self, conversions: int, now: str, directory: str) -> None:
        from tests.emulators.google_ads import GoogleAdsEmulator
        from tests.emulators.oauth import OAuthEmulator
        from tests.emulators.tls import make_tls_files

        moment = datetime.fromisoformat(now)
        tls = make_tls_files(Path(directory))
        oauth = OAuthEmulator(
            clients={CLIENT_ID: CLIENT_SECRET}, refresh_tokens={REFRESH: CLIENT_ID}
        )
        self.ads = GoogleAdsEmulator(tls, oauth, developer_tokens=(DEV_TOKEN,), now=moment)
        self.ads.add_conversion_action(CUSTOMER, int(ACTION), "Closed won")
        for i in range(conversions):
            self.ads.add_click(_gclid(i), _clicked_at(i, moment))
        self.oauth = oauth.start()
        self.ads.start()
        self.emulators = [self.ads, self.oauth]
        self.info = {
            "endpoint": self.ads.endpoint,
            "token_uri": oauth.token_url,
            "ca_cert": str(tls.ca_cert),
        }

    def stats(self) -> dict[str, Any]:
        return {
            "requests": sum(self.ads.calls.values()),
            "by_kind": dict(self.ads.calls),
            "token_requests": len(self.oauth.issued),
            "stored": len(self.ads.uploads),
        }


class _ServedDataManager(_Served):
    def __init__(self, conversions: int, now: str) -> None:
        from tests.emulators.data_manager import DataManagerEmulator, EmulatorClock

        moment = datetime.fromisoformat(now)
        self.dm = DataManagerEmulator(
            tokens=set(), refresh_tokens={REFRESH}, clock=EmulatorClock(moment)
        )
        self.dm.add_conversion_action(CUSTOMER, ACTION)
        for i in range(conversions):
            self.dm.add_click(_gclid(i), customer_id=CUSTOMER, at=_clicked_at(i, moment))
        self.dm.start()
        self.emulators = [self.dm]
        self.info = {"host": self.dm.host, "token_uri": self.dm.token_uri}

    def stats(self) -> dict[str, Any]:
        calls = dict(self.dm.calls)
        tokens = calls.pop("Token", 0)
        return {
            "requests": sum(calls.values()),
            "by_kind": calls,
            "token_requests": tokens,
            "stored": len(self.dm.events),
        }


class _ServedGa4(_Served):
    def __init__(self, now: str) -> None:
        from tests.emulators.ga4_mp import GA4MPEmulator

        self.ga4 = GA4MPEmulator(streams={MEASUREMENT_ID: API_SECRET})
        self.ga4.set_time(datetime.fromisoformat(now))
        self.ga4.start()
        self.emulators = [self.ga4]
        self.info = {"url": self.ga4.url}

    def stats(self) -> dict[str, Any]:
        with self.ga4._lock:
            statuses = Counter(x.response.status for x in self.ga4.log)
            return {
                "requests": self.ga4.calls,
                "by_kind": {f"HTTP {k}": v for k, v in statuses.items()},
                "token_requests": 0,
                "stored": len(self.ga4.events),
                "invalid": len(self.ga4.invalid),
            }


class _ServedMeta(_Served):
    def __init__(self, now: str) -> None:
        from tests.emulators.meta_graph import MetaGraphEmulator

        self.meta = MetaGraphEmulator(tokens={META_TOKEN}, pixels={PIXEL})
        self.meta.set_time(datetime.fromisoformat(now))
        self.meta.start()
        self.emulators = [self.meta]
        self.info = {"url": self.meta.url}

    def stats(self) -> dict[str, Any]:
        with self.meta._lock:
            statuses = Counter(x.response.status for x in self.meta.log)
            return {
                "requests": self.meta.calls,
                "by_kind": {f"HTTP {k}": v for k, v in statuses.items()},
                "token_requests": 0,
                "stored": len(self.meta.events),
            }


def serve(destination: str, conversions: int, now: str, directory: str) -> _Served:
    if destination == "google_ads":
        return _ServedGoogleAds(conversions, now, directory)
    if destination == "data_manager":
        return _ServedDataManager(conversions, now)
    return _ServedGa4(now) if destination == "ga4" else _ServedMeta(now)


# --- building (this process) ----------------------------------------------------------------


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _ga4_clients(conversions: int, clients: int, rng: random.Random) -> list[str]:
    """``conversions`` client_ids over ``clients`` distinct ones (see the module docstring)."""
    clients = max(1, min(clients, conversions))
    ids = [f"{rng.randint(10**8, 10**10 - 1)}.{1_700_000_000 + k}" for k in range(clients)]
    weights = [1 / math.sqrt(rank + 1) for rank in range(clients)]
    chosen = ids + rng.choices(ids, weights=weights, k=conversions - clients)
    rng.shuffle(chosen)
    return chosen


def _journeys(destination: str, conversions: int, now: datetime, ga4_clients: int) -> Iterator[Any]:
    """(journey, credits) per conversion, generated lazily (only conversions are kept)."""
    from revsync.domain import (
        Channel,
        ClickIds,
        Consent,
        Contact,
        Credit,
        Deal,
        DealStatus,
        Journey,
        PersonHashes,
        Touchpoint,
    )

    rng = random.Random(11)
    clients = _ga4_clients(conversions, ga4_clients, rng) if destination == "ga4" else []
    for i in range(conversions):
        amount = Decimal(rng.randint(500, 50_000))
        if destination in ("google_ads", "data_manager"):
            occurred = _clicked_at(i, now)
            close = occurred + timedelta(days=2 + i % 7, hours=rng.randint(0, 23))
            ids, channel = ClickIds(gclid=_gclid(i)), Channel.PAID_SEARCH
        else:
            close = now - timedelta(hours=rng.randint(1, 6 * 24 - 1), minutes=rng.randint(0, 59))
            occurred = close - timedelta(days=rng.randint(1, 20))
            if destination == "meta":
                ms = int(occurred.timestamp() * 1000)
                fbp = f"fb.1.{ms}.{rng.randint(10**9, 10**10)}"
                ids = ClickIds(fbc=f"fb.1.{ms}.IwAR{i:010d}bench", fbp=fbp)
                channel = Channel.PAID_SOCIAL
            else:
                ids, channel = ClickIds(ga_client_id=clients[i]), Channel.ORGANIC_SEARCH
        # GA4 client_ids are browsers: a browser's conversions are one person's
        who = clients[i] if destination == "ga4" else str(i)
        email = f"person{who}@example.com"
        phone = f"1415{2_000_000 + int(_sha(who)[:12], 16) % 8_000_000}"
        person = PersonHashes(
            email=_sha(email),
            email_google=_sha(email),
            phone=_sha(f"+{phone}"),
            phone_meta=_sha(phone),
        )
        touchpoint = Touchpoint(
            id=f"tp-{i}",
            visitor_id=f"v-{i}",
            occurred_at=occurred,
            channel=channel,
            click_ids=ids,
            consent=Consent(ad_user_data=True, ad_personalization=True),
        )
        deal = Deal(
            source="crm",
            id=f"deal-{i}",
            status=DealStatus.WON,
            amount=amount,
            currency="USD",
            close_at=close,
            modified_at=close,
            contacts=(Contact(f"c-{i}", person, True),),
        )
        yield Journey(deal, (touchpoint,)), [Credit(touchpoint.id, Fraction(1), amount)]


def _destination(name: str, info: dict[str, Any], now: datetime) -> Any:
    from revsync.config.destinations import Ga4Destination as Ga4Config
    from revsync.config.destinations import GoogleAdsDestination as GoogleAdsConfig
    from revsync.config.destinations import MetaDestination as MetaConfig
    from revsync.destinations.data_manager import DataManagerTransport
    from revsync.destinations.ga4 import Ga4Destination
    from revsync.destinations.ga4_http import Ga4HttpTransport
    from revsync.destinations.google_ads import GoogleAdsDestination
    from revsync.destinations.google_ads_api import GoogleAdsApiTransport, GoogleOAuth
    from revsync.destinations.meta import MetaDestination
    from revsync.destinations.meta_api import MetaApiTransport

    clock = lambda: now  # noqa: E731
    oauth = GoogleOAuth(CLIENT_ID, CLIENT_SECRET, REFRESH)
    if name == "google_ads":
        block = GoogleAdsConfig(
            type="google_ads",
            name="gads",
            transport="ads_api",
            customer_id=CUSTOMER,
            conversion_action=ACTION,
            endpoint=info["endpoint"],
            token_uri=info["token_uri"],
            ca_bundle=info["ca_cert"],
        )
        transport: Any = GoogleAdsApiTransport(block, DEV_TOKEN, oauth, clock=clock)
        return GoogleAdsDestination(block, "last_touch", transport, clock=clock)
    if name == "data_manager":
        block = GoogleAdsConfig(
            type="google_ads",
            name="gads",
            transport="data_manager",
            customer_id=CUSTOMER,
            conversion_action=ACTION,
            data_manager_endpoint=f"http://{info['host']}",
            token_uri=info["token_uri"],
        )
        transport = DataManagerTransport(block, oauth)
        return GoogleAdsDestination(block, "last_touch", transport, clock=clock)
    if name == "ga4":
        ga4 = Ga4Config(type="ga4", name="ga4", measurement_id=MEASUREMENT_ID, base_url=info["url"])
        return Ga4Destination(
            ga4, "last_touch", Ga4HttpTransport(ga4, SecretStr(API_SECRET)), clock=clock
        )
    meta = MetaConfig(type="meta", name="meta", pixel_id=PIXEL, graph_url=info["url"])
    return MetaDestination(
        meta, "last_touch", MetaApiTransport(meta, SecretStr(META_TOKEN)), clock=clock
    )


def _minimum_requests(name: str, conversions: list[Any]) -> int:
    if name in MINIMUM_PER_REQUEST:
        return math.ceil(len(conversions) / MINIMUM_PER_REQUEST[name])
    # client_id, user_data and consent are request-level in the Measurement Protocol
    per_client = Counter(
        (c.click_ids.ga_client_id, c.person.email_google, c.person.phone, c.consent)
        for c in conversions
    )
    return sum(math.ceil(count / 25) for count in per_client.values())


def run_one(name: str, args: argparse.Namespace) -> dict[str, Any]:
    from revsync.domain import OutcomeStatus

    now = datetime.now(UTC).replace(microsecond=0)
    with tempfile.TemporaryDirectory() as directory:
        kwargs = {
            "destination": name,
            "conversions": args.conversions,
            "now": now.isoformat(),
            "directory": directory,
        }
        with EmulatedProcess("bench.destinations:serve", **kwargs) as emulator:
            destination = _destination(name, emulator.info, now)
            base = current_rss_mb()
            conversions: list[Any] = []
            build = 0.0
            for journey, credits in _journeys(name, args.conversions, now, args.ga4_clients):
                started = time.process_time()
                plan = destination.plan(journey, credits, now)
                build += time.process_time() - started
                conversions.extend(plan.conversions)
            built = current_rss_mb()
            if len(conversions) != args.conversions:
                raise SystemExit(f"{name}: planned {len(conversions)} of {args.conversions}")
            statuses: Counter[str] = Counter()
            cpu0, started = cpu_seconds(), time.perf_counter()
            size = destination.batch_size
            for start in range(0, len(conversions), size):
                for outcome in destination.send(conversions[start : start + size]):
                    code = f" {outcome.code}" if outcome.code else ""
                    statuses[f"{outcome.status.name}{code}"] += 1
            send = time.perf_counter() - started
            cpu = cpu_seconds() - cpu0
            destination.close()
            stats = emulator.stats()
    sent = sum(v for k, v in statuses.items() if k.startswith(OutcomeStatus.SENT.name))
    if sent != args.conversions or stats["stored"] != args.conversions:
        raise SystemExit(
            f"{name}: {dict(statuses)}; the emulator stored {stats['stored']} of {args.conversions}"
        )
    minimum = _minimum_requests(name, conversions)
    n = args.conversions
    result: dict[str, Any] = {
        "destination": name,
        "conversions": n,
        "batch_size": size,
        "build_cpu_seconds": round(build, 2),
        "send_seconds": round(send, 2),
        "conversions_per_second": round(n / (build + send), 1),
        "send_conversions_per_second": round(n / send, 1),
        "requests": stats["requests"],
        "requests_per_1000": round(stats["requests"] * 1000 / n, 2),
        "minimum_requests": minimum,
        "minimum_requests_per_1000": round(minimum * 1000 / n, 2),
        "requests_by_kind": stats["by_kind"],
        "token_requests": stats["token_requests"],
        "outcomes": dict(statuses),
        "revsync_send_cpu_seconds": round(cpu, 2),
        "revsync_base_rss_mib": round(base, 1),
        "revsync_built_rss_mib": round(built, 1),
        "revsync_peak_rss_mib": round(peak_rss_mb(), 1),
        "emulator_peak_rss_mib": round(stats["peak_rss_mb"], 1),
        "emulator_cpu_seconds": round(stats["cpu_seconds"], 2),
        "emulator_setup_seconds": round(emulator.info["setup_seconds"], 1),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    if name == "ga4":
        result["ga4_client_ids"] = len({c.click_ids.ga_client_id for c in conversions})
    return result


def _table(results: list[dict[str, Any]]) -> str:
    columns = [
        ("destination", "destination", "{}"),
        ("conv", "conversions", "{:,}"),
        ("build s", "build_cpu_seconds", "{}"),
        ("send s", "send_seconds", "{}"),
        ("conv/s", "conversions_per_second", "{:,.0f}"),
        ("send conv/s", "send_conversions_per_second", "{:,.0f}"),
        ("req", "requests", "{:,}"),
        ("req/1k", "requests_per_1000", "{}"),
        ("min/1k", "minimum_requests_per_1000", "{}"),
        ("cpu s", "revsync_send_cpu_seconds", "{}"),
        ("base MiB", "revsync_base_rss_mib", "{}"),
        ("built MiB", "revsync_built_rss_mib", "{}"),
        ("peak MiB", "revsync_peak_rss_mib", "{}"),
        ("emu MiB", "emulator_peak_rss_mib", "{}"),
        ("emu cpu s", "emulator_cpu_seconds", "{}"),
    ]
    lines = render_table(columns, results)
    for r in results:
        extra = f", {r['ga4_client_ids']:,} client_ids" if "ga4_client_ids" in r else ""
        lines.append(
            f"{r['destination']}: batch_size {r['batch_size']}{extra};"
            f" requests {r['requests_by_kind']}"
            f" + {r['token_requests']} OAuth token; outcomes {r['outcomes']};"
            f" load average {r['load_average_1m']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversions", type=int, default=100_000)
    parser.add_argument("--destination", choices=(*DESTINATIONS, "all"), default="all")
    parser.add_argument(
        "--ga4-clients",
        type=int,
        default=None,
        help="distinct GA4 client_ids (default: 60%% of --conversions)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.ga4_clients is None:
        args.ga4_clients = int(args.conversions * 0.6)
    if args.destination == "all":
        results = []
        for name in DESTINATIONS:  # each in a fresh process: separate peak RSS
            command = [
                sys.executable,
                "-m",
                "bench.destinations",
                "--destination",
                name,
                "--json",
                "--conversions",
                str(args.conversions),
                "--ga4-clients",
                str(args.ga4_clients),
            ]
            done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
            results += json.loads(done.stdout)
    else:
        results = [run_one(args.destination, args)]
    print(json.dumps(results, indent=2) if args.json else _table(results))


if __name__ == "__main__":
    main()

"""Benchmark: drain the CRM deal sources against their emulators.

Run from the repository root (one line each; ``--json`` prints the results as JSON)::

    PYTHONPATH=src:. .venv/bin/python -m bench.sources                      # both, 100k deals
    PYTHONPATH=src:. .venv/bin/python -m bench.sources --source salesforce --deals 100000
    PYTHONPATH=src:. .venv/bin/python -m bench.sources --source hubspot --deals 100000 --json
    PYTHONPATH=src:. .venv/bin/python -m bench.sources --source salesforce --salesforce-read rest
    PYTHONPATH=src:. .venv/bin/python -m bench.sources --source hubspot --deals 30000 \
        --hubspot-tie 25000 --hubspot-edits 200       # ties and edits mid-run: all deals read

What is measured: ``--deals`` deals with two contacts each (one primary) are seeded into the
emulator in memory (``SalesforceEmulator.add`` / ``HubSpotEmulator.add_contact`` /
``add_deal``, not over HTTP), then ``SalesforceDealSource.pages()`` /
``HubSpotDealSource.pages()`` is drained from no watermark with the real SDKs
(simple-salesforce over TLS; hubspot-api-client over HTTP). Reported per source:

* ``wall s`` / ``deals/s``: the drain only (first token request to last page), not seeding;
* ``req/1k``: requests the emulator received per 1,000 deals (its own request log, the
  OAuth token request included), with the per-endpoint breakdown in ``--json``;
* ``peak MiB``: ``getrusage(RUSAGE_SELF).ru_maxrss`` of the bench process, which holds
  revsync and the SDKs only: the emulator (and all seeded records) lives in a spawned child
  process (``bench/_emulated.py``) whose own peak RSS and CPU are reported apart
  (``emu MiB``, ``emu cpu s``). ``base MiB`` is the RSS just before the drain (interpreter,
  imports), so peak - base is what reading the deals added. With ``--source all`` each
  source runs in its own fresh process, so one source's peak never inflates the other's;
* ``cpu s``: revsync's CPU seconds (user + system) during the drain. The machine may have
  few cores, shared by the client and the emulator child, so wall time is the larger of
  the two CPU loads and a bit more.

Seeded data: deals modified one second apart (distinct watermarks); Salesforce: 85%
Closed Won, 10% Closed Lost, 5% open, ``GCLID__c`` on 40% of opportunities and 20% of
contacts, every contact an email and 60% a US phone (hashing and phone parsing are part of
what is measured); HubSpot: the same mix as deal stages, contacts with email, 60% phone,
20% ``hs_google_click_id``. Every deal must come back (the run fails otherwise).

Settings that differ from production defaults, stated so the figures can be judged:

* Salesforce: ``bulk_poll_seconds`` is 0 (the default 5 s first poll is a fixed sleep that
  would dominate nothing but the latency); ``--salesforce-read auto`` keeps the default
  ``bulk_threshold`` of 50,000, so 100k deals are read with Bulk API 2.0; ``rest`` / ``bulk``
  force one path. The emulator's daily API budget is Salesforce's default 15,000 calls and
  the calls used are reported (revsync stops at ``api_budget_share`` 0.8).
* HubSpot: the emulator's search rate limit (5/s) and 10-second burst limit (100) are
  DISABLED, and revsync's own search throttle is set explicitly with
  ``--searches-per-second`` (default 1000, i.e. effectively off). Both are printed. The
  ``api floor s`` column is the time the same request counts would need at least against
  the real API with revsync's default throttle (4 searches/s) and HubSpot's burst limit of
  190 requests / 10 s (Professional/Enterprise; 100 on Free/Starter).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
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

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
SOURCES = ("salesforce", "hubspot")
HUBSPOT_TOKEN = "pat-bench"
SF_CLIENT, SF_SECRET, SF_REFRESH = "bench-client", "bench-secret", "bench-refresh"
HUBSPOT_DEFAULT_SEARCHES_PER_SECOND = 4.0  # HubSpotSource.searches_per_second default
HUBSPOT_BURST = (190, 10.0)  # requests per seconds, Professional/Enterprise private apps


def _stage(rng: random.Random) -> str:
    roll = rng.random()
    return "won" if roll < 0.85 else "lost" if roll < 0.95 else "open"


def _phone(rng: random.Random) -> str | None:
    if rng.random() >= 0.6:
        return None
    return f"({rng.randint(201, 989)}) {rng.randint(200, 999)}-{rng.randint(0, 9999):04d}"


def _gclid(kind: str, n: int) -> str:
    return f"Cj0KCQiA{kind}{n:08d}_bench-GCLID"


# --- emulator factories (run in the spawned child) ------------------------------------------


class _ServedSalesforce:
    def __init__(self, deals: int, directory: str) -> None:
        from tests.emulators.salesforce import SalesforceEmulator
        from tests.emulators.tls import make_tls_files

        tls = make_tls_files(Path(directory))
        custom = {obj: {"GCLID__c": "string"} for obj in ("Opportunity", "Contact")}
        emu = SalesforceEmulator(tls, custom_fields=custom)
        rng = random.Random(7)
        started = time.perf_counter()
        stages = {"won": "Closed Won", "lost": "Closed Lost", "open": "Prospecting"}
        for i in range(deals):
            emu.set_clock(T0 + timedelta(seconds=i))
            extra = {"GCLID__c": _gclid("opp", i)} if rng.random() < 0.4 else {}
            opp = emu.add(
                "Opportunity",
                StageName=stages[_stage(rng)],
                Amount=float(rng.randint(500, 50_000)),
                CloseDate=date(2026, 1, 1) + timedelta(days=i % 28),
                **extra,
            )
            for k in range(2):
                fields: dict[str, Any] = {
                    "LastName": f"Contact{i}-{k}",
                    "Email": f"person{i}.{k}@example.com",
                }
                if phone := _phone(rng):
                    fields["Phone"] = phone
                if rng.random() < 0.2:
                    fields["GCLID__c"] = _gclid("con", 2 * i + k)
                contact = emu.add("Contact", **fields)
                emu.add(
                    "OpportunityContactRole",
                    OpportunityId=opp,
                    ContactId=contact,
                    IsPrimary=k == 0,
                    Role="Decision Maker",
                )
        seeded = time.perf_counter() - started
        emu.set_clock(None)
        emu.add_connected_app(SF_CLIENT, client_secret=SF_SECRET, refresh_token=SF_REFRESH)
        emu.start()
        self.emu = emu
        self.info = {"url": emu.base_url, "ca_cert": str(tls.ca_cert), "seed_seconds": seeded}

    def stats(self) -> dict[str, Any]:
        kinds: Counter[str] = Counter()
        with self.emu._lock:
            requests = list(self.emu.requests)
        for request in requests:
            kinds[_salesforce_kind(request.path, request.query.get("q", ""))] += 1
        return {
            "requests": len(requests),
            "by_kind": dict(kinds),
            "api_usage": self.emu.api_usage,
            "api_limit": self.emu.api_limit,
        }

    def stop(self) -> None:
        self.emu.stop()


def _salesforce_kind(path: str, soql: str) -> str:
    if path.endswith("/oauth2/token"):
        return "oauth token"
    if "/jobs/query" in path:
        return (
            "bulk job create"
            if path.rstrip("/").endswith("/jobs/query")
            else ("bulk results" if path.endswith("/results") else "bulk job status")
        )
    if "/describe" in path:
        return "describe"
    if not path.rstrip("/").endswith(("/query", "/queryAll")):
        return "query more" if ("/query/" in path or "/queryAll/" in path) else "other"
    if "COUNT()" in soql:
        return "count"
    if "OpportunityContactRole" in soql:
        return "contact roles"
    if "FROM Lead" in soql:
        return "leads"
    if "FROM Opportunity" in soql:
        return "opportunities"
    return "other"


def serve_salesforce(deals: int, directory: str) -> _ServedSalesforce:
    return _ServedSalesforce(deals, directory)


class _ServedHubSpot:
    def __init__(self, deals: int, tie: int = 0, edits: int = 0) -> None:
        from tests.emulators.hubspot import HubSpotEmulator

        emu = HubSpotEmulator(tokens={HUBSPOT_TOKEN}, search_per_second=None, burst_limit=None)
        rng = random.Random(7)
        started = time.perf_counter()
        stages = {"won": "closedwon", "lost": "closedlost", "open": "contractsent"}
        ids: list[str] = []
        for i in range(deals):
            # the first ``tie`` deals share one timestamp (an import or a workflow)
            emu.set_clock(T0 + timedelta(seconds=max(0, i - tie + 1)))
            contacts = []
            for k in range(2):
                props: dict[str, Any] = {
                    "email": f"person{i}.{k}@example.com",
                    "lastname": f"Contact{i}-{k}",
                    "hs_analytics_source": "PAID_SEARCH",
                }
                if phone := _phone(rng):
                    props["phone"] = phone
                if rng.random() < 0.2:
                    props["hs_google_click_id"] = _gclid("con", 2 * i + k)
                contacts.append(emu.add_contact(**props))
            ids.append(emu.add_deal(
                contacts=contacts,
                dealstage=stages[_stage(rng)],
                amount=str(rng.randint(500, 50_000)),
                closedate=T0 - timedelta(days=i % 28),
                deal_currency_code="USD",
            ))  # fmt: skip
        seeded = time.perf_counter() - started
        emu.set_clock(None)
        self.edited = 0
        if edits:
            self._edit_during_searches(emu, ids, edits, rng)
        emu.start()
        self.emu = emu
        self.info = {"url": emu.base_url, "seed_seconds": seeded}

    def _edit_during_searches(
        self, emu: Any, ids: list[str], edits: int, rng: random.Random
    ) -> None:
        """A user edits one random deal right after each deal search, ``edits`` in all: the
        deal moves to the end of the sort (and out of any tie) while the source reads."""
        search = emu._search

        def searching(object_type: str, request: Any) -> Any:
            response = search(object_type, request)
            if object_type == "deals" and self.edited < edits:
                emu.update("deals", rng.choice(ids), amount=str(rng.randint(500, 50_000)))
                self.edited += 1
            return response

        emu._search = searching

    def stats(self) -> dict[str, Any]:
        kinds: Counter[str] = Counter()
        with self.emu._lock:
            requests = list(self.emu.requests)
        for request in requests:
            path = request.path
            kinds[
                "deal search"
                if path.endswith("/search")
                else "associations"
                if "/associations/" in path
                else "contact batch read"
                if "/contacts/batch/read" in path
                else path
            ] += 1
        return {"requests": len(requests), "by_kind": dict(kinds), "edits": self.edited}

    def stop(self) -> None:
        self.emu.stop()


def serve_hubspot(deals: int, tie: int = 0, edits: int = 0) -> _ServedHubSpot:
    return _ServedHubSpot(deals, tie, edits)


# --- the bench (runs in this process) --------------------------------------------------------


def _source(name: str, info: dict[str, Any], args: argparse.Namespace) -> Any:
    from revsync.config.mapping import HubSpotSource, SalesforceSource
    from revsync.config.settings import Settings
    from revsync.sources.hubspot import HubSpotDealSource
    from revsync.sources.salesforce import SalesforceDealSource

    if name == "salesforce":
        threshold = {"auto": 50_000, "rest": 10**9, "bulk": 1}[args.salesforce_read]
        config = SalesforceSource.model_validate(
            {
                "type": "salesforce",
                "name": "sf",
                "instance_url": info["url"],
                "token_url": f"{info['url']}/services/oauth2/token",
                "ca_bundle": info["ca_cert"],
                "currency": "USD",
                "bulk_threshold": threshold,
                "bulk_poll_seconds": 0,
                "click_id_fields": {"gclid": "GCLID__c"},
                "contact_click_id_fields": {"gclid": "GCLID__c"},
            }
        )
        settings = Settings(
            salesforce_client_id=SF_CLIENT,
            salesforce_client_secret=SecretStr(SF_SECRET),
            salesforce_refresh_token=SecretStr(SF_REFRESH),
        )
        return SalesforceDealSource(config, settings, "US"), {
            "read": "bulk" if args.deals > threshold else "rest",
            "page_size": config.page_size,
            "bulk_threshold": config.bulk_threshold,
            "bulk_poll_seconds": config.bulk_poll_seconds,
        }
    config_hs = HubSpotSource(
        type="hubspot",
        name="hs",
        host=info["url"],
        searches_per_second=args.searches_per_second,
    )
    settings = Settings(hubspot_access_token=SecretStr(HUBSPOT_TOKEN))
    return HubSpotDealSource(config_hs, settings, "US"), {
        "page_size": config_hs.page_size,
        "revsync_searches_per_second": config_hs.searches_per_second,
        "emulator_search_rate_limit": "disabled (HubSpot: 5/s)",
        "emulator_burst_limit": "disabled (HubSpot: 100-190 per 10 s)",
    }


def run_one(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Seed the emulator in a child process, drain the source here, measure."""
    with tempfile.TemporaryDirectory() as directory:
        factory = f"bench.sources:serve_{name}"
        kwargs: dict[str, Any] = {"deals": args.deals}
        if name == "salesforce":
            kwargs["directory"] = directory
        else:
            kwargs.update(tie=args.hubspot_tie, edits=args.hubspot_edits)
        with EmulatedProcess(factory, **kwargs) as emulator:
            source, settings = _source(name, emulator.info, args)
            base = current_rss_mb()
            cpu0, started = cpu_seconds(), time.perf_counter()
            deals = pages = quarantined = exhausted = 0
            deal_ids: set[str] = set()
            for page in source.pages(None, datetime.now(UTC)):
                pages += 1
                deals += len(page.deals)
                deal_ids.update(d.id for d in page.deals)
                quarantined += len(page.quarantined)
                exhausted += page.budget_exhausted
            wall = time.perf_counter() - started
            cpu = cpu_seconds() - cpu0
            source.close()
            stats = emulator.stats()
            setup = emulator.info
    if len(deal_ids) != args.deals or exhausted:
        raise SystemExit(
            f"{name}: read {len(deal_ids)} distinct deals of {args.deals} "
            f"(budget exhausted: {bool(exhausted)})"
        )
    result: dict[str, Any] = {
        "source": name,
        "deals": args.deals,
        "contacts_per_deal": 2,
        "deals_read": deals,
        "pages": pages,
        "quarantined": quarantined,
        "wall_seconds": round(wall, 2),
        "deals_per_second": round(args.deals / wall, 1),
        "requests": stats["requests"],
        "requests_per_1000_deals": round(stats["requests"] * 1000 / args.deals, 2),
        "requests_by_kind": stats["by_kind"],
        "revsync_cpu_seconds": round(cpu, 2),
        "revsync_peak_rss_mib": round(peak_rss_mb(), 1),
        "revsync_base_rss_mib": round(base, 1),
        "emulator_peak_rss_mib": round(stats["peak_rss_mb"], 1),
        "emulator_cpu_seconds": round(stats["cpu_seconds"], 2),
        "emulator_seed_seconds": round(setup["seed_seconds"], 1),
        "settings": settings,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    if name == "salesforce":
        result["api_calls_of_daily_budget"] = f"{stats['api_usage']}/{stats['api_limit']}"
    else:
        result["deals_sharing_one_timestamp"] = args.hubspot_tie
        result["deals_edited_mid_run"] = stats["edits"]
        searches = stats["by_kind"].get("deal search", 0)
        burst, window = HUBSPOT_BURST
        result["api_floor_seconds"] = round(
            max(searches / HUBSPOT_DEFAULT_SEARCHES_PER_SECOND, stats["requests"] * window / burst),
            1,
        )
    return result


def _table(results: list[dict[str, Any]]) -> str:
    columns = [
        ("source", "source", "{}"),
        ("deals", "deals", "{:,}"),
        ("wall s", "wall_seconds", "{}"),
        ("deals/s", "deals_per_second", "{:,.0f}"),
        ("req/1k", "requests_per_1000_deals", "{}"),
        ("cpu s", "revsync_cpu_seconds", "{}"),
        ("base MiB", "revsync_base_rss_mib", "{}"),
        ("peak MiB", "revsync_peak_rss_mib", "{}"),
        ("emu MiB", "emulator_peak_rss_mib", "{}"),
        ("emu cpu s", "emulator_cpu_seconds", "{}"),
        ("seed s", "emulator_seed_seconds", "{}"),
    ]
    lines = render_table(columns, results)
    for r in results:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(r["requests_by_kind"].items()))
        lines.append(f"{r['source']}: {r['requests']} requests ({kinds})")
        lines.append(f"{r['source']}: settings {r['settings']}")
        lines.append(f"{r['source']}: load average (1 min) at the end: {r['load_average_1m']}")
        if "api_calls_of_daily_budget" in r:
            lines.append(f"{r['source']}: API calls used {r['api_calls_of_daily_budget']}")
        if "api_floor_seconds" in r:
            lines.append(
                f"{r['source']}: real-API floor for these requests at revsync's default 4 "
                f"searches/s and 190 requests/10 s: {r['api_floor_seconds']} s"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=100_000)
    parser.add_argument("--source", choices=(*SOURCES, "all"), default="all")
    parser.add_argument("--salesforce-read", choices=("auto", "rest", "bulk"), default="auto")
    parser.add_argument("--searches-per-second", type=float, default=1000.0)
    parser.add_argument("--hubspot-tie", type=int, default=0,
                        help="HubSpot: this many deals share one hs_lastmodifieddate")
    parser.add_argument("--hubspot-edits", type=int, default=0,
                        help="HubSpot: edit a random deal after each search, this many in all")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.source == "all":
        results = []
        for name in SOURCES:  # each in a fresh process: separate peak RSS
            command = [
                sys.executable,
                "-m",
                "bench.sources",
                "--source",
                name,
                "--json",
                "--deals",
                str(args.deals),
                "--salesforce-read",
                args.salesforce_read,
                "--searches-per-second",
                str(args.searches_per_second),
                "--hubspot-tie",
                str(args.hubspot_tie),
                "--hubspot-edits",
                str(args.hubspot_edits),
            ]
            done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
            results += json.loads(done.stdout)
    else:
        results = [run_one(args.source, args)]
    print(json.dumps(results, indent=2) if args.json else _table(results))


if __name__ == "__main__":
    main()

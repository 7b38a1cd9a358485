"""One sync run: read deals, match, attribute, plan into the ledger, upload, summarise.

Each page of deals is stored, matched, attributed and planned in one transaction, and the
source's watermark advances in that same transaction: a crash loses no deal and plans no
conversion twice. Uploads then drain the ledger per destination in batches.

Runs may overlap (a cron run that outlasts its interval, a manual run): a run reads a
source, and uploads to a destination, only while it holds that one's lease
(``store.leases``); another run skips it with a warning.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from sqlalchemy import Connection, Engine, insert, update
from sqlalchemy.exc import SQLAlchemyError

from revsync import logs
from revsync.attribution import AttributionModel, MarkovModel, attribute, build_model
from revsync.config.mapping import RevsyncConfig
from revsync.config.settings import Settings
from revsync.destinations.base import Destination
from revsync.domain import (
    Credit,
    Deal,
    DealStatus,
)
from revsync.errors import ConfigError, RevsyncError
from revsync.matching.paths import visitor_paths
from revsync.matching.resolve import resolve_journeys, with_details
from revsync.sources.base import DealSource, vetted
from revsync.store import queries
from revsync.store.deals import won_deal_pages
from revsync.store.leases import DEFAULT_TTL, Heartbeat, Lease, in_progress, run_owner
from revsync.store.schema import (
    contacts,
    conversions,
    credits,
    deal_contacts,
    deals,
    match_links,
    runs,
)
from revsync.sync import ledger, writeback
from revsync.sync.deal_writes import store_deals
from revsync.sync.ledger import State
from revsync.sync.matches import store_credits, store_links
from revsync.sync.planning import plan_destination
from revsync.sync.platform_reads import read_platforms, reads_due
from revsync.sync.reconcile import reconcile
from revsync.sync.retention import apply_retention
from revsync.sync.summary import RunSummary
from revsync.sync.upload import Progress, upload

log = logging.getLogger(__name__)


class SyncJob:
    """One run of the loop over every configured source and destination."""

    def __init__(
        self,
        engine: Engine,
        config: RevsyncConfig,
        sources: Sequence[DealSource],
        destinations: Sequence[Destination],
        clock: Callable[[], datetime] | None = None,
        progress: Progress | None = None,
        replan: bool = False,
        lease_ttl: timedelta = DEFAULT_TTL,
        stop: threading.Event | None = None,
        settings: Settings | None = None,
    ) -> None:
        """``replan``: match and plan every stored won deal again, not only changed ones
        (after importing touchpoints or leads for deals synced earlier). ``lease_ttl``: how
        long a source or destination stays this run's without a renewal (one per page or
        batch) before another run may take it over. ``stop``: once set (SIGTERM), the run
        ends after the page or batch in progress, with status ``stopped``; the next run
        carries on from there. ``settings``: the credentials for the mapping's platform
        reads (``reports.spend_from``, ``reports.resolve_clicks``); without, none is made."""
        self.replan = replan
        self.settings = settings
        self.lease_ttl = lease_ttl
        self.stop = stop or threading.Event()
        self.engine = engine
        self.config = config
        self.sources = sources
        self.destinations = destinations
        self.clock = clock or (lambda: datetime.now(UTC))
        self.progress = progress or (lambda _stage, _done, _total: None)
        self._models: dict[str, AttributionModel] = {}
        self._default_model = config.attribution.model

    def run(self) -> RunSummary:
        started = time.perf_counter()
        summary = RunSummary(started_at=self.clock())
        try:
            with self.engine.begin() as conn:
                result = conn.execute(
                    insert(runs).values(started_at=summary.started_at, status="running")
                )
                summary.run_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        except SQLAlchemyError as exc:
            summary.status = "failed"
            summary.failures.append(f"the store is unreachable ({_store_error(exc)})")
            log.error("run not started: the store is unreachable (%s)", _store_error(exc))
            return summary
        with in_progress(summary.run_id), logs.in_run(summary.run_id):
            self._run(summary)
            if summary.status == "partial":
                log.warning("run %s partial: %s", summary.run_id, summary.why_partial())
        summary.seconds = time.perf_counter() - started
        self._record(summary)
        return summary

    def _run(self, summary: RunSummary) -> None:
        held: list[Lease] = []
        heartbeat = Heartbeat(held, self.lease_ttl).start()
        try:
            self._prepare_models()
            readable = []
            for source in self.sources:
                if self.stop.is_set():
                    break
                lease = self._take(f"source:{source.name}", summary, held)
                if lease is not None:
                    self._read_source(source, summary, lease)
                    every = next((getattr(b, "reconcile_hours", 0) for b in self.config.sources
                                  if b.name == source.name), 0)  # fmt: skip
                    reconcile(self.engine, source, every, self.clock(), summary, self._plan)
                    readable.append(source)
            if self.replan and not self.stop.is_set():
                self._replan_stored(summary, {source.name for source in readable})
            if not self.stop.is_set():
                writeback.push(self.engine, self.config, readable, summary, self.clock())
            for destination in self.destinations:
                if self.stop.is_set():
                    break
                lease = self._take(f"destination:{destination.name}", summary, held)
                if lease is not None:
                    upload(self.engine, destination, summary, self.clock, self.progress, lease,
                           self.stop.is_set)  # fmt: skip
            busy = not held and bool(self.sources or self.destinations)
            if not self.stop.is_set():
                self._read_platforms(summary, held)
                summary.retention = apply_retention(self.engine, self.config.privacy, self.clock())
            if summary.failures:
                summary.status = "failed"
            elif self.stop.is_set():
                summary.status = "stopped"
                summary.warnings.append(
                    "stopped on request after the page or batch in progress; "
                    "the next run carries on from there"
                )
            elif busy:
                summary.status = "busy"  # every source and destination held by other runs
                summary.warnings.append(
                    "nothing done: other runs hold every source and destination; "
                    "the next run carries on"
                )
            elif summary.rejected or summary.quarantined or self._undelivered(summary):
                summary.status = "partial"
            else:
                summary.status = "ok"
        except ConfigError as exc:
            summary.status = "config_error"
            summary.failures.append(str(exc))
            log.error("run %s stopped: %s", summary.run_id, exc)
        except RevsyncError as exc:
            summary.status = "failed"
            summary.failures.append(f"{type(exc).__name__}: {exc}")
            log.error("run %s failed: %s", summary.run_id, exc)
        except SQLAlchemyError as exc:  # the store went away mid-run
            summary.status = "failed"
            summary.failures.append(f"store error ({_store_error(exc)}); the next run resumes")
            log.error("run %s failed: store error (%s)", summary.run_id, _store_error(exc))
        except Exception as exc:
            summary.status = "failed"
            summary.failures.append(f"internal error: {type(exc).__name__}")
            log.exception("run %s failed with an internal error", summary.run_id)
        finally:
            heartbeat.stop()
            for lease in held:
                self._drop(lease)
            for source in self.sources:
                source.close()
            for destination in self.destinations:
                destination.close()

    def _undelivered(self, summary: RunSummary) -> bool:
        """Warn about rows still ``failed`` (sent again by a later run) or ``unknown`` (an
        operator settles them) at this run's destinations; whether there are any."""
        names = {d.name for d in self.destinations}
        with self.engine.connect() as conn:
            summary.ledger = ledger.counts(conn, None)  # nothing changes after the uploads
        found = False
        for name, states in sorted(summary.ledger.items()):
            failed, unknown = states.get(State.FAILED, 0), states.get(State.UNKNOWN, 0)
            if name not in names or not (failed or unknown):
                continue
            found = True
            summary.warnings.append(
                f"{name}: {failed} row(s) failed, sent again by a later run; {unknown} "
                "unknown (may have reached the platform): see revsync ledger show --state"
            )
        return found

    def _record(self, summary: RunSummary) -> None:
        """Store the run's summary; a store gone away fails the run, it does not raise."""
        try:
            with self.engine.begin() as conn:
                summary.ledger = summary.ledger or ledger.counts(conn, None)
                conn.execute(
                    update(runs)
                    .where(runs.c.id == summary.run_id)
                    .values(
                        finished_at=self.clock(),
                        status=summary.status,
                        summary=_jsonable(summary.as_dict()),
                    )
                )
        except SQLAlchemyError as exc:
            summary.status = "failed"
            summary.failures.append(f"the run's summary was not stored ({_store_error(exc)})")
            log.error("run %s: summary not stored (%s)", summary.run_id, _store_error(exc))

    # --- leases ---------------------------------------------------------------------

    def _take(self, name: str, summary: RunSummary, held: list[Lease]) -> Lease | None:
        """The lease ``name`` for this run, or ``None`` (and a warning) while another run
        holds it."""
        owner = run_owner(summary.run_id or 0)
        lease = Lease(self.engine, name, owner, self.lease_ttl, self.clock)
        holder = lease.take()
        if holder is None:
            held.append(lease)
            return lease
        summary.warnings.append(f"{name}: skipped, another run is at it ({holder})")
        log.warning("run %s skipped %s: held by %s", summary.run_id, name, holder)
        return None

    def _read_platforms(self, summary: RunSummary, held: list[Lease]) -> None:
        """The mapping's spend and click reads, when due and no other run is at them."""
        if self.settings is None or not reads_due(self.engine, self.config, self.clock()):
            return
        if self._take("platform reads", summary, held) is not None:
            read_platforms(self.engine, self.config, self.settings, self.clock(), summary)

    @staticmethod
    def _drop(lease: Lease) -> None:
        try:
            lease.drop()
        except Exception as exc:  # the store is gone: the lease expires on its own
            log.warning("could not give up %s (%s); it expires after %s",
                        lease.name, type(exc).__name__, lease.ttl)  # fmt: skip

    # --- models ---------------------------------------------------------------------

    def _model_names(self) -> set[str]:
        return {d.model for d in self.destinations} | {self._default_model}

    def _prepare_models(self) -> None:
        attribution = self.config.attribution
        markov = self._fit_markov() if "data_driven" in self._model_names() else None
        for name in self._model_names():
            self._models[name] = build_model(
                name,
                half_life_days=attribution.half_life_days,
                first_share=Fraction(str(attribution.first_share)),
                last_share=Fraction(str(attribution.last_share)),
                markov=markov,
            )

    def _fit_markov(self) -> MarkovModel:
        """Fit on every visitor path in the lookback window, converting or not."""
        since = self.clock() - timedelta(days=self.config.matching.lookback_days)
        with self.engine.connect() as conn:
            return MarkovModel.fit(visitor_paths(conn, since))

    # --- reading and planning -------------------------------------------------------

    def _read_source(self, source: DealSource, summary: RunSummary, lease: Lease) -> None:
        with self.engine.connect() as conn:
            watermark = queries.get_watermark(conn, source.name)
        done = 0
        limit = next((b.max_amount for b in self.config.sources if b.name == source.name), 10**12)
        pages = 0
        for page in source.pages(watermark, self.clock()):
            page = vetted(page, limit, self.clock())
            with self.engine.begin() as conn:
                lease.renew(conn)
                store_deals(conn, page.deals, self.clock())
                queries.add_quarantined(conn, summary.run_id, page.quarantined, self.clock())
                self._plan(conn, page.deals, summary)
                queries.set_watermark(conn, source.name, page.watermark)
                pages += 1
                if pages & (pages - 1) == 0:  # pages 1, 2, 4, 8…: as the tables double
                    queries.analyze(conn, _WRITTEN)
            summary.deals_read[source.name] += len(page.deals)
            summary.quarantined.extend(page.quarantined)
            done += len(page.deals)
            self.progress(f"read {source.name}", done, None)
            if self.stop.is_set():
                break
            if page.budget_exhausted:
                summary.warnings.append(f"{source.name}: API budget reached; resuming next run")
                break

    def _replan_stored(self, summary: RunSummary, sources: set[str]) -> None:
        """Plan every stored won deal of ``sources`` (those whose lease this run holds)
        again; the ledger keeps what is already there."""
        done = 0
        with self.engine.connect() as reader:
            for page in won_deal_pages(reader):
                mine = [deal for deal in page if deal.source in sources]
                with self.engine.begin() as conn:
                    self._plan(conn, mine, summary)
                done += len(page)
                self.progress("replan", done, None)
                if self.stop.is_set():
                    break

    def _plan(self, conn: Connection, page: Sequence[Deal], summary: RunSummary) -> None:
        now = self.clock()
        won = [d for d in page if d.status is DealStatus.WON and d.close_at is not None]
        summary.deals_won += len(won)
        journeys = resolve_journeys(
            conn, won, self.config.matching.lookback_days, self.config.matching.keys
        )
        store_links(conn, journeys)
        credited: dict[str, dict[tuple[str, str], tuple[Credit, ...]]] = {}
        for name in self._model_names():
            credited[name] = {
                (j.deal.source, j.deal.id): attribute(j, self._models[name], j.deal.close_at or now)
                for j in journeys
            }
        store_credits(conn, journeys, credited)
        for journey in journeys:
            if journey.touchpoints:
                summary.deals_matched += 1
            by_id = {tp.id: tp for tp in journey.touchpoints}
            for credit in credited[self._default_model][(journey.deal.source, journey.deal.id)]:
                channel = by_id[credit.touchpoint_id].channel
                per_currency = summary.revenue_by_channel.setdefault(channel, {})
                per_currency[journey.deal.currency] = (
                    per_currency.get(journey.deal.currency, Decimal(0)) + credit.amount
                )
        journeys = with_details(conn, journeys)  # consent of every visitor of each person
        planned = []
        for destination in self.destinations:
            allowed = self._destination_sources(destination)
            mine = [j for j in journeys if allowed is None or j.deal.source in allowed]
            not_won = [d for d in page if d.status is not DealStatus.WON
                       and (allowed is None or d.source in allowed)]  # fmt: skip
            planned += plan_destination(
                conn, destination, mine, credited[destination.model], not_won, now, summary
            )
        for conversion in ledger.add_planned(conn, planned, summary.run_id, now):
            summary.planned[conversion.destination] += 1

    def _destination_sources(self, destination: Destination) -> set[str] | None:
        for block in self.config.destinations:
            if block.name == destination.name:
                return set(block.sources) or None
        return None


# The tables a page of deals writes: their statistics are refreshed as they grow.
_WRITTEN = (deals, contacts, deal_contacts, match_links, credits, conversions)


def _store_error(exc: SQLAlchemyError) -> str:
    """The driver's error class, e.g. ``OperationalError``: never its text, which can hold
    SQL parameters or connection details."""
    return type(getattr(exc, "orig", None) or exc).__name__


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))

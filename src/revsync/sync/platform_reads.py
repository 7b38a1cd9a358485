"""Spend and clicks read from the ad platforms by the sync itself (``reports.spend_from``,
``reports.resolve_clicks``), at most every ``reports.read_every_hours``, so a worker keeps
the reports' spend and keywords current without a scheduled import of its own.

The last pass in which every read succeeded is kept in ``sync_state`` under
``PLATFORM_READS`` (in capitals, like retention's mark, so it never meets a source's
watermark). A platform that fails is a warning of the run, which goes on: the conversions
are not held up by a report's figures, and the next run tries the reads again."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import Engine

from revsync.config.mapping import RevsyncConfig
from revsync.config.settings import Settings
from revsync.errors import RevsyncError
from revsync.store import queries
from revsync.sync.summary import RunSummary

MARK = "PLATFORM_READS"
log = logging.getLogger(__name__)


def reads_due(engine: Engine, config: RevsyncConfig, now: datetime) -> bool:
    """Whether the mapping asks for platform reads and the last full pass is old enough."""
    reports = config.reports
    if not reports.spend_from and not reports.resolve_clicks:
        return False
    with engine.connect() as conn:
        last = queries.get_watermark(conn, MARK)
    every = timedelta(hours=reports.read_every_hours)
    return last is None or now - datetime.fromisoformat(last) >= every


def read_platforms(
    engine: Engine, config: RevsyncConfig, settings: Settings, now: datetime, summary: RunSummary
) -> None:
    """Read the spend of each platform in ``reports.spend_from``, then resolve new gclids;
    each read's outcome goes into ``summary.platform_reads``, each failure into its
    warnings."""
    from revsync.collect.ad_spend import read_clicks, read_spend

    failed = False
    for platform in config.reports.spend_from:
        try:
            for read in read_spend(engine, config, settings, platform, now):
                summary.platform_reads.append(
                    f"{read.platform} {read.account}: {read.rows} spend rows for "
                    f"{read.first}..{read.last}"
                )
        except RevsyncError as exc:
            failed = True
            _warn(summary, f"spend from {platform}", exc)
    if config.reports.resolve_clicks:
        try:
            for clicks in read_clicks(engine, config, settings, now):
                summary.platform_reads.append(
                    f"google_ads clicks: {clicks.asked} gclids asked, {clicks.resolved} "
                    f"resolved, {clicks.unknown} unknown to Google"
                )
        except RevsyncError as exc:
            failed = True
            _warn(summary, "clicks from google_ads", exc)
    if not failed:
        with engine.begin() as conn:
            queries.set_watermark(conn, MARK, now.isoformat())


def _warn(summary: RunSummary, what: str, exc: RevsyncError) -> None:
    message = f"{what}: {exc}; the reports lack it until a later run reads it"
    summary.warnings.append(message)
    log.warning("run %s: %s", summary.run_id, message)

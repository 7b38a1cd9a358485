"""Won deals across worker processes: the deals are cut into key ranges of about equal
size, and each process reads its range a page at a time on a store connection of its own.

``work(conn, pages)`` runs once per range and returns what the caller merges; it must be
a module-level function (or a ``functools.partial`` of one) so it reaches the processes.
Processes are spawned, not forked: a forked child would share the parent's connections.
"""

from __future__ import annotations

import gc
import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from sqlalchemy import Connection, Engine

from revsync.domain import Deal
from revsync.store.deals import won_deal_pages, won_deal_ranges
from revsync.store.engine import create_store_engine

T = TypeVar("T")
# Below this many deals a process costs more to start (~0.5 s of imports) than it saves.
MIN_DEALS_PER_PROCESS = 10_000
Work = Callable[[Connection, Iterator[list[Deal]]], T]
_Range = tuple[tuple[str, str], tuple[str, str] | None]


def map_won_deals(
    engine: Engine,
    work: Work[T],
    workers: int,
    page_size: int = 1_000,
    min_deals: int = MIN_DEALS_PER_PROCESS,
) -> list[T]:
    """``work`` over every won deal, split into up to ``workers`` ranges of at least
    ``min_deals`` deals in as many processes (one range runs in this process); the
    results in range order."""
    # An in-memory SQLite store exists only in this process.
    if engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:"):
        workers = 1
    with engine.connect() as conn:
        ranges = won_deal_ranges(conn, workers, min_deals)
    if len(ranges) == 1:
        with engine.connect() as conn:
            return [work(conn, won_deal_pages(conn, page_size))]
    url = engine.url.render_as_string(hide_password=False)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(len(ranges), mp_context=context) as pool:
        jobs = [pool.submit(_in_process, url, work, bounds, page_size) for bounds in ranges]
        return [job.result() for job in jobs]


def _in_process(url: str, work: Work[T], bounds: _Range, page_size: int) -> T:
    gc.freeze()  # as the revsync command does: import-time objects out of the cyclic GC
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            return work(conn, won_deal_pages(conn, page_size, *bounds))
    finally:
        engine.dispose()

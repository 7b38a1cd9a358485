"""The two cheap passes that let a CRM export be read a page at a time.

Pass one (``scan``) reads every row but keeps only each deal's newest ``modified_at``: no
contact is parsed or hashed. Deals older than the run's ``since`` are left there, so a run
over an unchanged export costs one read of the file. Pass two (``Spool``) copies the rows
of the deals that are read into a temporary SQLite file, numbered by page, so each page's
rows come back on their own: memory holds one page, never the export.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from revsync.rows import RowError, read_rows, text, timestamp

ID_LIMIT = 64  # the store's deal and contact ID columns


@dataclass
class Scan:
    """Per deal, its order key: newest ``modified_at`` of its rows, or the run's time when
    none has one (such a deal is read on every run); and the rows that are no deal's."""

    newest: dict[str, datetime | None] = field(default_factory=dict)
    bad_rows: list[tuple[int, str, str]] = field(default_factory=list)  # number, field, why

    def ordered(self, since: datetime | None, now: datetime) -> list[tuple[datetime, str]]:
        """(key, deal ID) of the deals to read, in reading order."""
        keys = ((moment or now, deal_id) for deal_id, moment in self.newest.items())
        return sorted(key for key in keys if since is None or key[0] >= since)


def deal_id_of(row: dict[str, Any]) -> str:
    """The row's ``deal_id``; ``RowError`` if it has none or one too long to store."""
    deal_id = text(row, "deal_id", required=True)
    assert deal_id is not None
    if len(deal_id) > ID_LIMIT:
        raise RowError("deal_id", f"is longer than {ID_LIMIT} characters")
    return deal_id


def scan(path: Path) -> Scan:
    """Pass one over the export (see the module docstring)."""
    found = Scan()
    parsed: dict[str, datetime | None] = {}
    for number, row in read_rows(path):
        if isinstance(row, RowError):
            found.bad_rows.append((number, row.field, str(row)))
            continue
        try:
            deal_id = deal_id_of(row)
        except RowError as exc:
            found.bad_rows.append((number, exc.field, str(exc)))
            continue
        raw = row.get("modified_at")
        key = raw if isinstance(raw, str) else json.dumps(raw)
        if key not in parsed:
            try:
                parsed[key] = timestamp(row, "modified_at")
            except RowError:
                parsed[key] = None
        moment = parsed[key]
        current = found.newest.get(deal_id)
        if moment is not None and (current is None or moment > current):
            found.newest[deal_id] = moment
        elif deal_id not in found.newest:
            found.newest[deal_id] = None
    return found


class Spool:
    """Pass two: the rows of the deals to read, by page, in a temporary SQLite file that
    is deleted on ``close``."""

    def __init__(self, path: Path, pages: dict[str, tuple[int, int]], one_page: bool) -> None:
        """``pages``: deal ID -> (page, rank in the reading order). ``one_page``: the rows
        fit one page, so they are held in memory instead."""
        self.held: list[tuple[Any, ...]] | None = None
        self.file = ""
        if one_page:
            self.held = sorted(self._rows(path, pages), key=lambda r: (r[1], r[2]))
            return
        handle, self.file = tempfile.mkstemp(prefix="revsync-spool-", suffix=".db")
        os.close(handle)
        self.db = sqlite3.connect(self.file)
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute("CREATE TABLE spool (page INTEGER, rank INTEGER, number INTEGER, row TEXT)")
        self.db.executemany("INSERT INTO spool VALUES (?, ?, ?, ?)", self._rows(path, pages))
        self.db.execute("CREATE INDEX spool_page ON spool (page, rank, number)")
        self.db.commit()

    @staticmethod
    def _rows(path: Path, pages: dict[str, tuple[int, int]]) -> Iterator[tuple[Any, ...]]:
        for number, row in read_rows(path):
            if isinstance(row, RowError):
                continue
            try:
                place = pages.get(deal_id_of(row))
            except RowError:
                continue
            if place is not None:
                yield (*place, number, json.dumps(row, ensure_ascii=False))

    def page(self, page: int) -> Iterator[tuple[int, dict[str, Any]]]:
        """(row number, row) of one page, deal by deal in reading order, rows in file order."""
        if self.held is not None:
            rows: Any = ((number, row) for _, _, number, row in self.held)
        else:
            query = "SELECT number, row FROM spool WHERE page = ? ORDER BY rank, number"
            rows = self.db.execute(query, (page,))
        for number, row in rows:
            yield number, json.loads(row)

    def close(self) -> None:
        if self.file:
            self.db.close()
            Path(self.file).unlink(missing_ok=True)

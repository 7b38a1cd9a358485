"""Issue 18, the file CRM source at scale: a run over an unchanged export reads the file
once and parses or hashes no contact; a changed export is read a page at a time, in
(modified_at, id) order, with each page's watermark; the temporary spool never outlives
the read."""

from __future__ import annotations

import csv
import glob
import os
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from revsync.config.mapping import FileSource
from revsync.domain import Deal, Quarantined
from revsync.errors import TransientError
from revsync.sources import files
from revsync.sources.files import FileDealSource

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
COLUMNS = ["deal_id", "status", "amount", "currency", "close_date", "modified_at",
           "contact_id", "email", "phone"]  # fmt: skip


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def export(path: Path, deals: int) -> Path:
    """``deals`` won deals, two contacts each, modified one minute apart in a shuffled
    file order; D0007 has an older version on top of its newest (the same minute as D0003's
    newest), and one row is unreadable."""
    rows: list[dict[str, Any]] = []
    for n in reversed(range(deals)) if deals % 2 else range(deals):
        modified = NOW - timedelta(days=3) + timedelta(minutes=(n * 7) % deals)
        for c in range(2):
            rows.append({
                "deal_id": f"D{n:04d}", "status": "won", "amount": f"{100 + n}.00",
                "currency": "USD", "close_date": (NOW - timedelta(days=4)).date().isoformat(),
                "modified_at": _iso(modified), "contact_id": f"C{n % 40}-{c}",
                "email": f"p{n % 40}.{c}@example.com", "phone": "+1 415 555 0100" if c else "",
            })  # fmt: skip
    older = dict(rows[-1], deal_id="D0007", amount="1.00",
                 modified_at=_iso(NOW - timedelta(days=30)))  # fmt: skip
    rows.append(older)
    rows.append({**rows[0], "deal_id": "", "contact_id": "X"})
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def read(source: FileDealSource, watermark: str | None) -> tuple[list[list[Deal]], list[str]]:
    pages, marks = [], []
    for page in source.pages(watermark, NOW):
        pages.append(list(page.deals))
        marks.append(page.watermark or "")
    return pages, marks


def _source(path: Path) -> FileDealSource:
    return FileDealSource(FileSource(name="crm", type="file", path=path), "US")


def test_pages_come_in_modified_order_with_each_pages_watermark(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _source(export(tmp_path / "deals.csv", 95))
    whole, _ = read(source, None)  # one page
    monkeypatch.setattr(files, "PAGE_SIZE", 10)
    pages, marks = read(source, None)
    assert len(whole) == 1 and len(pages) == 10
    flat = [deal for page in pages for deal in page]
    assert flat == whole[0]  # the same deals, equal in every field, in the same order
    assert [(d.modified_at, d.id) for d in flat] == sorted((d.modified_at, d.id) for d in flat)
    assert marks == [page[-1].modified_at.isoformat() for page in pages]
    newest = next(d for d in flat if d.id == "D0007")
    assert newest.amount == 107  # the newer version; the older one is quarantined


def test_a_run_over_an_unchanged_export_parses_and_hashes_no_contact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _source(export(tmp_path / "deals.csv", 95))
    monkeypatch.setattr(files, "PAGE_SIZE", 10)
    _, marks = read(source, None)
    hashed: list[Any] = []
    real = files.hash_person
    monkeypatch.setattr(files, "hash_person", lambda *a: hashed.append(a) or real(*a))
    source = _source(source.config.path)
    past = (datetime.fromisoformat(marks[-1]) + timedelta(hours=1)).isoformat()
    pages = list(source.pages(past, NOW))
    assert [p.deals for p in pages] == [()] and pages[0].watermark == past
    assert [q.field for q in pages[0].quarantined] == ["deal_id"]  # the unreadable row
    assert hashed == []
    # Within the overlap window: only the newest deals again, each distinct contact
    # hashed once.
    again, _ = read(source, marks[-1])
    ids = [d.id for page in again for d in page]
    assert 0 < len(ids) <= 11
    assert len(hashed) == len(set(hashed))


def test_versions_that_straddle_the_watermark_keep_the_newest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """D0007's older version is before the watermark and its newest after: read, with
    the newest version's values; the older row is quarantined as before."""
    source = _source(export(tmp_path / "deals.csv", 95))
    monkeypatch.setattr(files, "PAGE_SIZE", 10)
    problems: list[Quarantined] = []
    mark = _iso(NOW - timedelta(days=10))
    deals = []
    for page in source.pages(mark, NOW):
        deals += page.deals
        problems += page.quarantined
    assert {d.id: d.amount for d in deals}["D0007"] == 107
    assert any(q.record_id == "D0007" and q.field == "modified_at" for q in problems)


def _spools() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "revsync-spool-*")))


def test_the_spool_is_removed_after_the_read_and_when_it_stops_early(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _source(export(tmp_path / "deals.csv", 95))
    monkeypatch.setattr(files, "PAGE_SIZE", 10)
    before = _spools()
    read(source, None)
    assert _spools() == before
    pages = source.pages(None, NOW)
    next(pages)
    assert len(_spools() - before) == 1  # pages are read back from it
    pages.close()
    assert _spools() == before


def test_an_export_replaced_between_the_two_reads_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spool takes the rows of the deals the first read chose: an export replaced in
    between would mix two files, so the read starts over (and gives up after three)."""
    path = export(tmp_path / "deals.csv", 30)
    replaced = export(tmp_path / "next.csv", 31)
    real_scan = files.scan
    scans: list[int] = []

    def scan_then_replace(given: Path) -> Any:
        found = real_scan(given)
        scans.append(1)
        if len(scans) == 1:  # replaced once, right after the first read
            os.replace(replaced, path)
        return found

    monkeypatch.setattr(files, "scan", scan_then_replace)
    pages, _ = read(_source(path), None)
    assert len(scans) == 2 and len([d for p in pages for d in p]) == 31

    def always_replace(given: Path) -> Any:
        found = real_scan(given)
        path.write_text(path.read_text() + "\n")  # touched on every read
        return found

    monkeypatch.setattr(files, "scan", always_replace)
    with pytest.raises(TransientError, match="kept changing"):
        read(_source(path), None)

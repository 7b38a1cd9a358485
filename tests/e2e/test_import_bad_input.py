"""Issue 14, imports: a row that cannot be read is rejected with its row number and reason,
every other row of the file is stored, rejects keep their columns and mask PII."""

from __future__ import annotations

import csv
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from revsync.collect import importer
from revsync.collect.importer import import_identities, import_touchpoints
from revsync.store.schema import identities, touchpoints

OK = "2026-11-01T10:00:00Z"


def count(engine: Engine, table: Any = touchpoints) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def tp_line(visitor: str, **extra: Any) -> str:
    return json.dumps({"visitor_id": visitor, "occurred_at": OK, **extra})


def test_timestamp_out_of_range_after_conversion_rejects_only_its_row(
    engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "tp.csv"
    path.write_text(
        f"visitor_id,occurred_at\nv1,{OK}\nv2,0001-01-01T00:00:00+05:00\n"
        f"v3,9999-12-31T23:00:00-05:00\nv4,{OK}\n"
    )
    report = import_touchpoints(engine, path)
    assert (report.imported, report.rejected) == (2, 2)
    assert (
        "tp.csv: row 3: occurred_at: '0001-01-01T00:00:00+05:00' is out of range"
        in (report.errors[0])
    )
    assert report.errors[1].startswith("tp.csv: row 4: occurred_at:")
    assert count(engine) == 2


@pytest.mark.parametrize("url", ["http://[::1/p", "http://[abc]/", "http://ex＃ample.com/"])
@pytest.mark.parametrize("column", ["landing_url", "referrer"])
def test_malformed_url_rejects_its_row_naming_the_field(
    engine: Engine, tmp_path: Path, url: str, column: str
) -> None:
    path = write_jsonl(
        tmp_path / "tp.jsonl", [tp_line("v1"), tp_line("v2", **{column: url}), tp_line("v3")]
    )
    report = import_touchpoints(engine, path)
    assert (report.imported, report.rejected) == (2, 1)
    assert report.errors == [f"tp.jsonl: row 2: {column}: {column} is not a valid URL" + (
        report.errors[0].split("is not a valid URL", 1)[1]
    )]  # fmt: skip
    assert count(engine) == 2


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        ('{"visitor_id": "v\\ud800", "occurred_at": "' + OK + '"}', "visitor_id: contains a lone"),
        ("[" * 100_000 + "]" * 100_000, "(row): invalid JSON: nested too deeply"),
        ('{"visitor_id": ' + "9" * 4_400 + "}", "(row): invalid JSON: Exceeds the limit"),
        ('{"visitor_id": "v\\u0000", "occurred_at": "' + OK + '"}', "visitor_id: contains a NUL"),
    ],
    ids=["surrogate", "nested", "long-integer", "nul"],
)
def test_unreadable_jsonl_line_rejects_only_that_row(
    engine: Engine, tmp_path: Path, bad_line: str, reason: str
) -> None:
    path = write_jsonl(tmp_path / "tp.jsonl", [tp_line("v1"), bad_line, tp_line("v3")])
    report = import_touchpoints(engine, path)
    assert (report.imported, report.rejected) == (2, 1)
    assert report.errors[0].startswith(f"tp.jsonl: row 2: {reason}")
    rejects = (tmp_path / "tp.rejects.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(rejects[0])["_row"] == 2
    assert count(engine) == 2


def test_field_over_128_kib_rejects_only_its_row_and_keeps_the_rows_before(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "BATCH_ROWS", 2)
    path = tmp_path / "tp.csv"
    before = "".join(f"v{i},{OK}\n" for i in range(3))
    after = "".join(f"w{i},{OK}\n" for i in range(3))
    path.write_text(f"visitor_id,occurred_at,user_agent\n{before}x,{OK},{'a' * 140_000}\n{after}"
                    .replace(f"{OK}\n", f"{OK},\n"))  # fmt: skip
    report = import_touchpoints(engine, path)
    assert (report.read, report.imported, report.rejected) == (7, 6, 1)
    assert report.errors == ["tp.csv: row 5: user_agent: is longer than 131,072 characters"]
    assert count(engine) == 6


def test_non_utf8_byte_in_jsonl_rejects_its_row(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "tp.jsonl"
    path.write_bytes(
        (tp_line("v1") + "\n").encode()
        + b'{"visitor_id": "v\xff", "occurred_at": "'
        + OK.encode()
        + b'"}\n'
        + (tp_line("v3") + "\n").encode()
    )
    report = import_touchpoints(engine, path)
    assert (report.imported, report.rejected) == (2, 1)
    assert report.errors == ["tp.jsonl: row 2: visitor_id: is not UTF-8 text (byte 0xFF)"]


def test_rejects_csv_keeps_its_columns_and_the_structural_rows_content(
    engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "leads.csv"
    path.write_text(
        "visitor_id,observed_at,email,crm_id\n"
        f"v1,{OK},ann@example.com,C1,EXTRA\n"
        f"v2,{OK}\n"
        f"v3,{OK},bad-email,C3\n"
        f"v4,{OK},dan@example.com,C4\n"
    )
    report = import_identities(engine, path)
    assert (report.imported, report.rejected) == (1, 3)
    with (tmp_path / "leads.rejects.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["_row", "_field", "_error", "visitor_id", "observed_at", "email",
                             "crm_id", "_extra", "_raw"]  # fmt: skip
    assert [(r["_row"], r["_field"], r["visitor_id"], r["crm_id"]) for r in rows] == [
        ("2", "(row)", "v1", "C1"), ("3", "(row)", "v2", ""), ("4", "email", "v3", "C3"),
    ]  # fmt: skip
    assert rows[0]["_extra"] == '["EXTRA"]'
    assert rows[0]["observed_at"] == OK and rows[2]["observed_at"] == OK
    assert "more values than header columns" in rows[0]["_error"]


@pytest.mark.parametrize(
    ("field", "value", "kind"),
    [("email", ["a@b.com"], "a JSON array"), ("visitor_id", True, "true/false"),
     ("crm_id", {"id": 1}, "a JSON object"), ("phone", 1.5, "a number")],
)  # fmt: skip
def test_jsonl_non_text_values_are_rejected_naming_the_field(
    engine: Engine, tmp_path: Path, field: str, value: Any, kind: str
) -> None:
    row = {"visitor_id": "v2", "observed_at": OK, "crm_id": "C2", field: value}
    good = {"visitor_id": "v1", "observed_at": OK, "crm_id": "C1"}
    path = write_jsonl(tmp_path / "leads.jsonl", [json.dumps(good), json.dumps(row)])
    report = import_identities(engine, path)
    assert (report.imported, report.rejected) == (1, 1)
    assert report.errors == [f"leads.jsonl: row 2: {field}: must be text, not {kind}"]
    assert count(engine, identities) == 1


def test_rejects_mask_email_and_phone_and_are_private(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    path.write_text(
        "visitor_id,observed_at,email,phone,event\n"
        "v1,yesterday,jane.doe@example.com,+1 650 555 1212,form\n"
        f"v2,{OK},john@example.com,+44 20 7946 0958,form,extra\n"
        f"v3,{OK},not-an-email,,note from mary@example.org tel 650-555-0199\n"
        f"v4,{OK},,,form\n"
    )
    report = import_identities(engine, path)
    assert report.rejected == 4  # v4 has neither email, phone nor crm_id
    written = (tmp_path / "leads.rejects.csv").read_text()
    for raw in ("jane.doe", "john@", "mary@", "555 1212", "7946", "555-0199", "not-an-email"):
        assert raw not in written, raw
        assert raw not in "\n".join(report.errors)
    assert "yesterday" in written  # the reason and the other fields stay
    mode = stat.S_IMODE((tmp_path / "leads.rejects.csv").stat().st_mode)
    assert mode == 0o600


def test_a_row_the_store_refuses_is_rejected_alone(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence in depth: if the store refuses a row validation let through, the chunk is
    split until that row is found; the others are stored."""
    from sqlalchemy.exc import DataError

    store = importer._store_touchpoints

    def picky(conn: Any, rows: list[dict[str, Any]]) -> None:
        if any(r["visitor_id"] == "v5" for r in rows):
            raise DataError("INSERT", {}, ValueError("refused"))
        store(conn, rows)

    monkeypatch.setattr(importer, "_store_touchpoints", picky)
    path = tmp_path / "tp.csv"
    path.write_text("visitor_id,occurred_at\n" + "".join(f"v{i},{OK}\n" for i in range(9)))
    report = import_touchpoints(engine, path)
    assert (report.imported, report.rejected) == (8, 1)
    assert report.errors == ["tp.csv: row 7: (row): the store refused it (ValueError)"]
    assert count(engine) == 8


def test_values_longer_than_their_column_are_rejected_not_sent_to_the_store(
    engine: Engine, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "tp.jsonl", [
        tp_line("v" * 129), tp_line("v2", gclid="G" * 300), tp_line("v3", utm_content="c" * 300),
    ])  # fmt: skip
    report = import_touchpoints(engine, path)
    assert (report.imported, report.rejected) == (1, 2)
    assert [e.split(": ")[2] for e in report.errors] == ["visitor_id", "gclid"]


def test_reimporting_a_mixed_file_changes_nothing(engine: Engine, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "tp.jsonl", [tp_line("v1"), "{bad", tp_line("v2")])
    first = import_touchpoints(engine, path)
    rejects = (tmp_path / "tp.rejects.jsonl").read_text()
    second = import_touchpoints(engine, path)
    assert (first.imported, first.rejected) == (second.imported, second.rejected) == (2, 1)
    assert (tmp_path / "tp.rejects.jsonl").read_text() == rejects
    assert count(engine) == 2

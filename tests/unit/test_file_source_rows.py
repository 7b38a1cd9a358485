"""Issue 14, CRM export: a bad deal row is quarantined with its row number and reason and
the rest of the export is read; amounts are sane and in the currency's minor unit."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from revsync.config.mapping import FileSource
from revsync.domain import Deal, Quarantined
from revsync.sources.files import FileDealSource

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
COLUMNS = ["deal_id", "status", "amount", "currency", "close_date", "modified_at",
           "contact_id", "email"]  # fmt: skip


def row(deal: str, **values: Any) -> dict[str, Any]:
    base = {"deal_id": deal, "status": "won", "amount": "100", "currency": "USD",
            "close_date": (NOW - timedelta(days=2)).date().isoformat(),
            "modified_at": "2026-11-18T10:00:00Z", "contact_id": f"C{deal}",
            "email": f"{deal.lower()}@example.com"}  # fmt: skip
    return {**base, **values}


def read(tmp_path: Path, rows: list[dict[str, Any]] | list[str], fmt: str = "csv",
         **config: Any) -> tuple[dict[str, Deal], list[Quarantined]]:  # fmt: skip
    path = tmp_path / f"deals.{fmt}"
    if fmt == "csv":
        columns = list(dict.fromkeys(k for r in rows if isinstance(r, dict) for k in r))
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(r for r in rows if isinstance(r, dict))
    else:
        lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
        path.write_text("\n".join(lines) + "\n")
    source = FileDealSource(FileSource(name="crm", type="file", path=path, **config))
    deals: dict[str, Deal] = {}
    problems: list[Quarantined] = []
    for page in source.pages(None, NOW):
        deals.update((d.id, d) for d in page.deals)
        problems.extend(page.quarantined)
    return deals, problems


def reasons(problems: list[Quarantined]) -> list[tuple[str, str, int]]:
    return [(q.record_id, q.field, q.detail["row"]) for q in problems]


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"close_date": "0001-01-01T00:00:00+05:00"}, "close_date"),
        ({"modified_at": "9999-12-31T23:59:59-05:00"}, "modified_at"),
        ({"close_date": "0001-01-01"}, "close_date"),
    ],
)
def test_out_of_range_date_quarantines_the_deal_and_the_rest_is_read(
    tmp_path: Path, bad: dict[str, str], field: str
) -> None:
    deals, problems = read(tmp_path, [row("D1"), row("D2", **bad), row("D3")])
    assert sorted(deals) == ["D1", "D3"]
    assert reasons(problems) == [("D2", field, 3)]


def test_surrogate_and_deep_nesting_rows_are_quarantined(tmp_path: Path) -> None:
    lines = [json.dumps(row("D1")), '{"deal_id": "D2\\udc00", "status": "won"}',
             "[" * 100_000, json.dumps(row("D4")), '{"deal_id": "D5", "amount": ' + "9" * 5000 + "}"]  # fmt: skip
    deals, problems = read(tmp_path, lines, fmt="jsonl")
    assert sorted(deals) == ["D1", "D4"]
    assert [(q.field, q.detail["row"]) for q in problems] == [
        ("deal_id", 2), ("(row)", 3), ("(row)", 5),
    ]  # fmt: skip


def test_duplicate_deal_ids_older_modified_at_loses_with_a_reason(tmp_path: Path) -> None:
    deals, problems = read(tmp_path, [
        row("D1", amount="100", modified_at="2026-11-17T10:00:00Z"),
        row("D1", amount="250", modified_at="2026-11-18T10:00:00Z", contact_id="C2"),
    ])  # fmt: skip
    assert deals["D1"].amount == Decimal("250.00")
    assert [c.crm_id for c in deals["D1"].contacts] == ["C2"]
    assert reasons(problems) == [("D1", "modified_at", 2)]
    assert "older version of this deal than row 3" in problems[0].reason


def test_duplicate_deal_ids_conflicting_without_newer_version_quarantine_the_deal(
    tmp_path: Path,
) -> None:
    deals, problems = read(tmp_path, [row("D1", amount="100"), row("D1", amount="999"), row("D2")])
    assert sorted(deals) == ["D2"]
    assert reasons(problems) == [("D1", "amount", 2)]
    assert "rows 2 and 3 disagree on amount" in problems[0].reason


def test_rows_of_one_deal_per_contact_are_not_a_conflict(tmp_path: Path) -> None:
    deals, problems = read(tmp_path, [row("D1"), row("D1", contact_id="C2", email="b@x.com")])
    assert problems == [] and len(deals["D1"].contacts) == 2


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [("100.999", "JPY", "101"), ("10.005", "USD", "10.01"), ("1.0005", "KWD", "1.001"),
     ("1,234.5", "EUR", "1234.50")],
)  # fmt: skip
def test_amounts_are_rounded_to_the_currencys_minor_unit(
    tmp_path: Path, amount: str, currency: str, expected: str
) -> None:
    deals, problems = read(tmp_path, [row("D1", amount=amount, currency=currency)])
    assert problems == []
    assert str(deals["D1"].amount) == expected


@pytest.mark.parametrize(
    ("amount", "reason"),
    [("1e400", "above the largest believable amount"), ("1e20", "above the largest"),
     ("Infinity", "not a finite number"), ("NaN", "not a finite number"), ("-5", "negative"),
     ("0", "a won deal worth 0 is not uploaded"), ("0.001", "a won deal worth 0")],
)  # fmt: skip
def test_insane_or_zero_won_amounts_are_quarantined(
    tmp_path: Path, amount: str, reason: str
) -> None:
    deals, problems = read(tmp_path, [row("D1", amount=amount), row("D2")])
    assert sorted(deals) == ["D2"]
    assert reasons(problems) == [("D1", "amount", 2)] and reason in problems[0].reason


def test_max_amount_is_configurable_and_json_infinity_is_refused(tmp_path: Path) -> None:
    lines = [json.dumps(row("D1", amount=5000)), json.dumps(row("D2", amount=50)),
             '{"deal_id": "D3", "status": "won", "amount": 1e400, "currency": "USD"}']  # fmt: skip
    deals, problems = read(tmp_path, lines, fmt="jsonl", max_amount=1000)
    assert sorted(deals) == ["D2"]
    assert reasons(problems) == [("D1", "amount", 1), ("D3", "amount", 3)]


def test_a_won_deal_closing_after_the_runs_time_is_quarantined(tmp_path: Path) -> None:
    deals, problems = read(tmp_path, [
        row("D1", close_date=(NOW + timedelta(days=3 * 365)).date().isoformat()),
        row("D2", close_date=(NOW + timedelta(hours=1)).isoformat()),
        row("D3", close_date=NOW.date().isoformat()),  # today: placed at the run's time
        row("D4", status="open", close_date="2029-01-01"),  # an open deal may close later
    ])  # fmt: skip
    assert sorted(deals) == ["D3", "D4"]
    assert reasons(problems) == [("D1", "close_date", 2), ("D2", "close_date", 3)]
    assert deals["D3"].close_at == NOW


def test_only_the_columns_the_mapping_names_are_kept_and_names_are_case_insensitive(
    tmp_path: Path,
) -> None:
    rows = [{**{k.title(): v for k, v in row("D1").items()},
             "Notes": "call jane at +1 650 555 1212", "Region": "EMEA"}]  # fmt: skip
    deals, problems = read(tmp_path, rows, fields=["region"])
    assert problems == []
    deal = deals["D1"]
    assert deal.fields == {"region": "EMEA"}
    assert deal.contacts[0].hashes.email is not None


def test_quarantine_reasons_carry_no_raw_pii(tmp_path: Path) -> None:
    deals, problems = read(tmp_path, [row("D1", close_date="jane@example.com"),
                                      row("D2", amount="+1 650 555 1212")])  # fmt: skip
    assert not deals
    text = repr(problems)
    assert "jane@" not in text and "555 1212" not in text


def test_a_stage_history_column_gives_each_deal_the_stages_it_entered(tmp_path: Path) -> None:
    """``Stage@date-time;…`` in any order comes out in time order; a malformed entry
    quarantines its deal (row and field named) and the rest is read."""
    history = "Closed Won@2026-11-18T09:00:00Z; Qualified@2026-11-01T08:00:00+01:00;"
    deals, problems = read(tmp_path, [
        row("D1", stage_history=history), row("D2", stage_history="Qualified 2026-11-01"),
        row("D3", stage_history="Proposal@yesterday"), row("D4", stage_history=""),
    ])  # fmt: skip
    assert deals["D1"].stage_history == (
        (datetime(2026, 11, 1, 7, tzinfo=UTC), "Qualified"),
        (datetime(2026, 11, 18, 9, tzinfo=UTC), "Closed Won"),
    )
    assert deals["D4"].stage_history == ()
    assert reasons(problems) == [("D2", "stage_history", 3), ("D3", "stage_history", 4)]
    assert "a stage name, an at sign and an ISO 8601 date-time" in problems[0].reason

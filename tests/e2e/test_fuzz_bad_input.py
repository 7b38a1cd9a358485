"""Issue 14: seeded fuzzing of imports and CRM exports through the CLI.

Every generated file mixes valid and invalid rows (see ``fuzz_files``). For each: the exit
code is 2 or 3 (never 1, never a traceback); the messages name the file, row and field;
every valid row is stored; every invalid row is rejected (imports) or quarantined (CRM)
with its row number; doing it again changes nothing; and no raw email or phone reaches
an output file, the CLI's output or the store. Dates are relative to the clock read once
at the start (a sync reads the real clock).
"""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from revsync.cli import app
from revsync.store.engine import open_store
from revsync.store.schema import deals, identities, metadata, quarantine, touchpoints
from tests.e2e import fuzz_files
from tests.e2e.fuzz_files import Case

SEED = 14
CASES = {"touchpoints": 100, "identities": 100, "deals": 80}
runner = CliRunner()
TALLY: Counter[str] = Counter()  # what the suite generated, for the closing note


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("fuzz")
    (root / "revsync.yaml").write_text("sources: []\nmatching: {default_phone_region: US}\n")
    url = f"sqlite:///{root / 'revsync.db'}"
    engine = open_store(url)
    yield {"root": root, "url": url, "engine": engine, "now": datetime.now(UTC)}
    engine.dispose()


def cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    output = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert "Traceback" not in output, output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{args}: {result.exception!r}") from result.exception
    assert result.exit_code in (0, 2, 3), (result.exit_code, output)
    return result.exit_code, output


def store_text(engine: Engine) -> str:
    with engine.connect() as conn:
        return "\n".join(
            json.dumps([list(r) for r in conn.execute(select(table))], default=str)
            for table in metadata.sorted_tables
        )


def assert_no_pii(case: Case, *texts: str) -> None:
    for raw in case.pii:
        digits = "".join(c for c in raw if c.isdigit())
        for text in texts:
            assert raw not in text, (case.name, case.kinds, raw)
            if "@" not in raw:
                assert digits not in text, (case.name, case.kinds, raw)


def rejected_rows(path: Path, fmt: str) -> list[int]:
    if not path.exists():
        return []
    with path.open(encoding="utf-8", newline="") as handle:
        if fmt == "csv":
            return [int(r["_row"]) for r in csv.DictReader(handle)]
        return [json.loads(line)["_row"] for line in handle]


def stored(engine: Engine, table: Any, prefix: str) -> int:
    with engine.connect() as conn:
        query = select(func.count()).where(table.c.visitor_id.like(f"{prefix}%"))
        return int(conn.execute(query.select_from(table)).scalar_one())


@pytest.mark.parametrize("kind", ["touchpoints", "identities"])
def test_fuzzed_imports(world: dict[str, Any], kind: str) -> None:
    rng = random.Random(f"{SEED}-{kind}")
    root, engine = world["root"], world["engine"]
    make = fuzz_files.touchpoints if kind == "touchpoints" else fuzz_files.identities
    table = touchpoints if kind == "touchpoints" else identities
    for number in range(CASES[kind]):
        case = make(rng, number, "csv" if number % 2 else "jsonl", world["now"])
        path = root / case.name
        path.write_bytes(case.data)
        where = ["--config", str(root / "revsync.yaml"), "--database-url", world["url"]]
        code, output = cli("import", kind, str(path), *where)
        rejects = path.with_name(f"{path.stem}.rejects.{case.fmt}")
        prefix = f"{kind[0]}{number}r"
        assert code == 3, (case.name, case.kinds, output)
        assert stored(engine, table, prefix) == case.valid, (case.name, case.kinds)
        assert rejected_rows(rejects, case.fmt) == sorted(case.invalid), (case.name, case.kinds)
        first = min(case.invalid)
        assert f"{case.name}: row {first}: " in " ".join(output.split()), (case.kinds, output)
        before, written = store_text(engine), rejects.read_bytes()
        assert cli("import", kind, str(path), *where)[0] == 3
        assert store_text(engine) == before and rejects.read_bytes() == written
        assert_no_pii(case, written.decode(), output, before)
        TALLY[f"{kind} cases"] += 1
        TALLY[f"{kind} valid expected"] += case.valid
        TALLY[f"{kind} valid stored"] += stored(engine, table, prefix)
        TALLY[f"{kind} invalid rejected"] += len(case.invalid)
    print(f"\nfuzz {kind}: {dict(TALLY)}")


def test_fuzzed_crm_exports(world: dict[str, Any]) -> None:
    rng = random.Random(f"{SEED}-deals")
    root, engine = world["root"], world["engine"]
    for number in range(CASES["deals"]):
        case = fuzz_files.deals(rng, number, "csv" if number % 2 else "jsonl", world["now"])
        (root / case.name).write_bytes(case.data)
        name = f"crm{number}"
        config = root / f"{name}.yaml"
        config.write_text(f"sources:\n  - {{name: {name}, type: file, path: {case.name}}}\n")
        runs, codes = [], []
        for _ in range(2):
            code, output = cli("sync", "--json", "--config", str(config), "--database-url",
                               world["url"])  # fmt: skip
            codes.append(code)
            runs.append(json.JSONDecoder().raw_decode(output, output.index("{"))[0])
        assert codes[0] == 3, (case.name, case.kinds, runs[0])
        with engine.connect() as conn:
            held = conn.execute(select(deals.c.id).where(deals.c.source == name)).all()
            problems = conn.execute(select(quarantine).where(quarantine.c.source == name))
            by_run: dict[int, list[tuple[Any, ...]]] = {}
            for p in problems:
                by_run.setdefault(p.run_id, []).append(
                    (p.detail["row"], p.field, p.reason, p.record_id)
                )
        first_run, second_run = (by_run.get(run["run_id"], []) for run in runs)
        rows = [row[:3] for row in first_run]
        assert len(held) == case.valid, (case.name, case.kinds, rows)
        expected = sorted([*case.invalid, *(a for a, _ in case.ties)])
        assert sorted(row for row, _, _ in rows) == expected, (case.name, case.kinds, rows)
        # The second run reads the export once more: rows that are no deal's are reported
        # again; a deal's own problems only if the deal is read again (changed since the
        # watermark, less the overlap), never anything new.
        assert set(second_run) <= set(first_run), (case.name, second_run)
        assert {r for r in first_run if r[3].startswith("row ")} <= set(second_run)
        assert codes[1] == (3 if second_run else 0), (case.name, runs[1])  # partial or ok
        for first, second in case.ties:
            assert any(f"rows {first} and {second}" in reason for _, _, reason in rows)
        quarantined = runs[0]["quarantined"]
        assert all(q["row"] and q["field"] and q["reason"] for q in quarantined)
        assert_no_pii(case, store_text(engine), json.dumps(runs))
        TALLY["deal cases"] += 1
        TALLY["deal valid expected"] += case.valid
        TALLY["deal valid stored"] += len(held)
        TALLY["deal invalid quarantined"] += len(case.invalid) + len(case.ties)
    print(f"\nfuzz deals: {dict(TALLY)}")


@pytest.mark.parametrize("kind", ["touchpoints", "identities"])
def test_a_file_that_cannot_be_read_at_all_is_refused_with_nothing_written(
    world: dict[str, Any], kind: str
) -> None:
    root = world["root"]
    where = ["--config", str(root / "revsync.yaml"), "--database-url", world["url"]]
    wide = root / f"wide-{kind}.csv"
    wide.write_text("visitor_id,occurred_at\nw1,2026-11-01T00:00:00Z\n", encoding="utf-16")
    before = store_text(world["engine"])
    for path in (wide, root / "missing.csv", root / f"wide-{kind}.txt", root):
        code, output = cli("import", kind, str(path), *where)
        assert code == 2 and str(path.name) in output, output
    assert store_text(world["engine"]) == before
    assert not list(root.glob("wide-*.rejects.*"))


def test_real_processes_exit_2_or_3_without_a_traceback(world: dict[str, Any]) -> None:
    """A few cases through the installed command, as an operator runs it."""
    rng = random.Random(f"{SEED}-process")
    root = world["root"]
    where = ["--config", str(root / "revsync.yaml"), "--database-url", world["url"]]
    command = [str(Path(sys.executable).with_name("revsync"))]
    for number, fmt in ((900, "csv"), (901, "jsonl")):
        case = fuzz_files.identities(rng, number, fmt, world["now"])
        path = root / case.name
        path.write_bytes(case.data)
        done = subprocess.run([*command, "import", "identities", str(path), *where],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == 3 and "Traceback" not in done.stderr, done.stderr
        assert f"row {min(case.invalid)}:" in " ".join(done.stderr.split())
        assert_no_pii(case, done.stdout, done.stderr)
    done = subprocess.run([*command, "import", "touchpoints", str(root / "nope.csv"), *where],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr

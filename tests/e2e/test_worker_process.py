"""``revsync worker`` as ops run it: a process on a schedule, stopped by SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select
from typer.testing import CliRunner

from revsync.cli import app
from revsync.store.engine import open_store
from revsync.store.schema import leases, runs

REVSYNC = str(Path(sys.executable).parent / "revsync")


def test_worker_runs_on_its_schedule_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    assert CliRunner().invoke(app, ["demo", str(demo), "--visitors", "300"]).exit_code == 0
    url = f"sqlite:///{demo / 'revsync.db'}"
    worker = subprocess.Popen(
        [REVSYNC, "worker", "--every", "1s", "--json", "-c", str(demo / "revsync.yaml"),
         "--database-url", url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert worker.stdout is not None
        lines = [worker.stdout.readline(), worker.stdout.readline()]  # two runs, a second apart
        worker.send_signal(signal.SIGTERM)
        started = time.monotonic()
        rest, errors = worker.communicate(timeout=30)
    finally:
        worker.kill()
    assert worker.returncode == 0, errors
    assert time.monotonic() - started < 10
    summaries = [json.loads(line) for line in lines + rest.splitlines()]
    # The demo already synced everything: every worker run finds nothing new to plan (its
    # export's four malformed rows, inside the overlap, are quarantined again: partial).
    assert len(summaries) >= 2
    assert all(
        s["status"] == "partial" and not sum(s["conversions_planned"].values()) for s in summaries
    )
    assert "revsync worker: every 1s; SIGTERM or SIGINT stops it" in errors
    assert f"revsync worker: stopped after {len(summaries)} run(s)" in errors
    engine = open_store(url)
    with engine.connect() as conn:
        statuses = conn.execute(select(runs.c.status)).scalars().all()
        held = conn.execute(select(func.count()).select_from(leases)).scalar_one()
    engine.dispose()
    assert "running" not in statuses and held == 0


def test_worker_refuses_a_bad_schedule(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["worker", "--every", "soon"])
    assert result.exit_code == 2
    assert "--every 'soon': a whole number and a unit" in result.output


def test_a_broken_mapping_file_skips_runs_until_it_is_fixed(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    assert CliRunner().invoke(app, ["demo", str(demo), "--visitors", "300"]).exit_code == 0
    mapping = demo / "revsync.yaml"
    good = mapping.read_text()
    worker = subprocess.Popen(
        [REVSYNC, "worker", "--every", "1s", "--json", "-c", str(mapping),
         "--database-url", f"sqlite:///{demo / 'revsync.db'}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert worker.stdout is not None and worker.stderr is not None
        assert json.loads(worker.stdout.readline())["status"] == "partial"  # the first run
        mapping.write_text(good.replace("sources:", "sauces:", 1))  # an admin's typo
        while "run skipped" not in (line := worker.stderr.readline()):
            assert line, "the worker ended"
        assert "revsync.yaml:1: sources: Field required" in line  # file, line, key
        mapping.write_text(good)
        statuses = [json.loads(worker.stdout.readline())["status"]]
        while statuses[-1] == "skipped":  # a skipped run says so on stdout too
            statuses.append(json.loads(worker.stdout.readline())["status"])
        assert statuses[-1] == "partial" and "skipped" in statuses  # runs again
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=30)
    finally:
        worker.kill()
    assert worker.returncode == 0


def test_a_worker_whose_runs_keep_failing_exits_for_a_human(tmp_path: Path) -> None:
    """A mapping broken for good (or credentials gone) must not loop silently forever."""
    demo = tmp_path / "demo"
    assert CliRunner().invoke(app, ["demo", str(demo), "--visitors", "100"]).exit_code == 0
    mapping = demo / "revsync.yaml"
    worker = subprocess.Popen(
        [REVSYNC, "worker", "--every", "1s", "--json", "--max-failures", "2", "-c",
         str(mapping), "--database-url", f"sqlite:///{demo / 'revsync.db'}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert worker.stdout is not None
        assert json.loads(worker.stdout.readline())["status"] == "partial"
        mapping.write_text(mapping.read_text().replace("sources:", "sauces:", 1))
        out, errors = worker.communicate(timeout=30)
    finally:
        worker.kill()
    assert worker.returncode == 1, errors
    skipped = [json.loads(line) for line in out.splitlines()]
    assert [s["status"] for s in skipped] == ["skipped", "skipped"]
    assert "sources: Field required" in skipped[0]["problems"][0]
    assert "2 runs in a row failed or could not start" in errors

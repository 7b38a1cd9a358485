"""A running worker whose mapping an admin breaks logs why and skips the run, then runs
again once the file is fixed (issue #14: a region for a zone used to kill it)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

REVSYNC = str(Path(sys.executable).parent / "revsync")
MAPPING = """\
sources:
  - name: crm
    type: file
    path: deals.csv
    timezone: America/New_York
"""


def test_a_worker_skips_runs_while_its_mapping_is_broken(tmp_path: Path) -> None:
    mapping = tmp_path / "revsync.yaml"
    mapping.write_text(MAPPING)
    (tmp_path / "deals.csv").write_text("deal_id,status,amount,currency,close_date\n")
    broken = {  # what each breakage logs: file, line, key
        MAPPING.replace("America/New_York", "America").encode(): ":5: sources[0].timezone",
        MAPPING.replace("crm", "crmé").encode("latin-1"): ":2: not UTF-8",
        MAPPING.replace("deals.csv", "[" * 5000 + "]" * 5000).encode(): ":4: sources[0].path",
    }
    worker = subprocess.Popen(
        [REVSYNC, "worker", "--every", "1s", "--json", "--max-failures", "0", "-c", str(mapping),
         "--database-url", f"sqlite:///{tmp_path / 'revsync.db'}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert worker.stdout is not None and worker.stderr is not None
        assert json.loads(worker.stdout.readline())["status"] == "ok"
        for data, where in broken.items():
            mapping.write_bytes(data)
            while "run skipped" not in (line := worker.stderr.readline()):
                assert line, "the worker ended"
            assert f"{mapping}{where}" in line
        mapping.write_text(MAPPING)
        while (line := worker.stdout.readline()) and json.loads(line)["status"] == "skipped":
            pass
        assert json.loads(line)["status"] == "ok"  # runs again
        worker.send_signal(signal.SIGTERM)
        _, errors = worker.communicate(timeout=30)
    finally:
        worker.kill()
    assert worker.returncode == 0, errors
    assert "Traceback" not in errors

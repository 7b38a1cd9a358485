"""The snippet in a real browser (``browser_cases.py``: Debian chromium via Playwright),
run in a process of its own with a deadline. A chromium that stops answering (seen once
in six CI runs; the cause is not known yet) ends that attempt instead of hanging the
suite, and is tried once more; any failing case fails this test with its output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
CASES = Path(__file__).with_name("browser_cases.py")
DEADLINE = 180  # seconds; the cases take about 5


def test_the_snippet_captures_visits_leads_and_consent_in_a_real_browser() -> None:
    # .ci/run installs Debian's chromium: the cases must run, never skip, in CI
    assert Path("/usr/bin/chromium").exists(), "apt-get install -y chromium"
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(CASES)]
    for _attempt in range(2):
        cases = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
        try:
            output, _ = cases.communicate(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            os.killpg(cases.pid, signal.SIGKILL)  # pytest, the driver and chromium
            cases.communicate()
            continue
        assert cases.returncode == 0, output[-4000:]
        return
    pytest.fail(f"the browser cases hung twice (no answer within {DEADLINE} s)")

"""``python -m revsync`` runs the same command as the ``revsync`` script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import revsync


def test_python_dash_m_revsync_runs_the_command(tmp_path: Path) -> None:
    src = str(Path(revsync.__file__).parents[1])  # this checkout's code, not an install
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "revsync", "--help"],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Usage: revsync" in done.stdout and "sync" in done.stdout
    url = f"sqlite:///{tmp_path / 'store.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "revsync", "db", "upgrade", "--database-url", url],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "store.db").exists()

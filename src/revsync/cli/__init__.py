"""The ``revsync`` command.

Exit codes: 0 success, 1 run failed, 2 configuration error, 3 partial (rows rejected or
quarantined), 4 stopped by a signal, 5 busy (other runs hold everything).
"""

from revsync.cli import dashboard, data, inspect, ledger, ops, privacy, reports, run, serve
from revsync.cli.base import app

__all__ = [
    "app",
    "dashboard",
    "data",
    "inspect",
    "ledger",
    "ops",
    "privacy",
    "reports",
    "run",
    "serve",
]

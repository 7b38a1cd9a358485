"""Process logging: text for a terminal, one JSON object per line for a log collector
(``REVSYNC_LOG_FORMAT=json``); every record made during a run carries its ``run_id``."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_RUN: ContextVar[int | None] = ContextVar("revsync_run", default=None)
TEXT = "%(asctime)s %(levelname)s %(name)s:%(run)s %(message)s"


class _RunId(logging.Filter):
    """Adds ``run_id`` (``None`` outside a run) and ``run`` (`` [run N]`` or empty)."""

    def filter(self, record: logging.LogRecord) -> bool:
        run_id = _RUN.get()
        record.run_id = run_id
        record.run = f" [run {run_id}]" if run_id is not None else ""
        return True


def configure(level: str, fmt: str = "text") -> None:
    """One handler on the root logger, to stderr, in ``fmt`` (``text`` or ``json``)."""
    from pythonjsonlogger.json import JsonFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RunId())
    if fmt == "json":
        handler.setFormatter(JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(run_id)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        ))  # fmt: skip
    else:
        handler.setFormatter(logging.Formatter(TEXT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    if level != "DEBUG":
        logging.getLogger("alembic").setLevel(logging.WARNING)


def current_run() -> int | None:
    """The run this code works for (``None`` outside a run)."""
    return _RUN.get()


@contextmanager
def in_run(run_id: int) -> Iterator[None]:
    """Records made in this block (this thread, or a context copied from it) name the run."""
    token = _RUN.set(run_id)
    try:
        yield
    finally:
        _RUN.reset(token)

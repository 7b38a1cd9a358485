"""Run a test emulator in a child process, so the bench process's memory is revsync's alone.

The child is started with the ``spawn`` method (a fresh interpreter: nothing of the parent
is copied into it, and nothing of the emulator's seeded data ever lives in the parent). It
calls a *factory* ``"module:function"`` with keyword arguments; the factory seeds an
emulator in memory, starts it and returns an object with::

    info: dict[str, Any]          # URLs, ports, paths the parent needs (picklable)
    def stats(self) -> dict       # request counters and the like (picklable)
    def stop(self) -> None

The parent talks to the child over a pipe: :meth:`EmulatedProcess.stats` answers the
factory's stats plus the child's own peak RSS and CPU seconds (``getrusage(RUSAGE_SELF)``
taken inside the child), so the emulator's footprint is reported separately instead of
being mixed into the parent's ``ru_maxrss``.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import resource
import sys
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any, Self

_READY_TIMEOUT = 600.0


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident set size in MiB (Linux reports ``ru_maxrss`` in KiB)."""
    kib = resource.getrusage(who).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 1024 / 1024


def current_rss_mb() -> float:
    """Resident set size now, in MiB (from /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * resource.getpagesize() / 1024 / 1024


def cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _child(factory: str, kwargs: dict[str, Any], conn: Connection) -> None:
    try:
        module, _, name = factory.partition(":")
        started = time.perf_counter()
        served = getattr(importlib.import_module(module), name)(**kwargs)
        info = dict(served.info, setup_seconds=time.perf_counter() - started)
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        return
    conn.send(("ready", info))
    try:
        while True:
            command = conn.recv()
            if command == "stats":
                conn.send(
                    dict(
                        served.stats(),
                        peak_rss_mb=peak_rss_mb(),
                        rss_mb=current_rss_mb(),
                        cpu_seconds=cpu_seconds(),
                    )
                )
            elif command == "stop":
                break
    except EOFError:
        pass
    finally:
        served.stop()


class EmulatedProcess:
    """An emulator served by a spawned child process; use as a context manager."""

    def __init__(self, factory: str, **kwargs: Any) -> None:
        self.factory = factory
        self.kwargs = kwargs
        self.info: dict[str, Any] = {}
        self._conn: Connection | None = None
        self._process: Any = None

    def start(self) -> Self:
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        self._process = context.Process(
            target=_child, args=(self.factory, self.kwargs, child), daemon=True
        )
        self._process.start()
        child.close()
        self._conn = parent
        if not parent.poll(_READY_TIMEOUT):
            self.stop()
            raise RuntimeError(f"emulator {self.factory} did not start in {_READY_TIMEOUT}s")
        kind, payload = parent.recv()
        if kind != "ready":
            self.stop()
            raise RuntimeError(f"emulator {self.factory} failed to start:\n{payload}")
        self.info = payload
        return self

    def stats(self) -> dict[str, Any]:
        assert self._conn is not None, "not started"
        self._conn.send("stats")
        answer: dict[str, Any] = self._conn.recv()
        return answer

    def stop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(BrokenPipeError, OSError):
                self._conn.send("stop")
            self._conn.close()
            self._conn = None
        if self._process is not None:
            self._process.join(timeout=10)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join(timeout=5)
            self._process = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def render_table(
    columns: list[tuple[str, str, str]], results: list[dict[str, Any]]
) -> list[str]:
    """Right-aligned text table: ``columns`` are (title, result key, format)."""
    rows = [[title for title, _, _ in columns]]
    rows += [[fmt.format(r[key]) for _, key, fmt in columns] for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines

"""``revsync serve --workers N``: N collector processes on one port.

The collector keeps no state between requests, so each worker is a whole collector (its
own event loop, store connections and batch writer). Each listens on its own socket bound
with ``SO_REUSEPORT``: the kernel spreads new connections over the workers. The parent
only supervises: it forwards SIGTERM/SIGINT to the workers as SIGTERM, and each worker
stops as ``revsync serve`` does — it answers what it has read, commits every pending
batch, then exits. A worker that dies on its own is replaced.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from types import FrameType

import uvicorn

from revsync.collect.server import UVICORN, Collector

log = logging.getLogger(__name__)
_STOP = (signal.SIGTERM, signal.SIGINT)


def listen(host: str, port: int) -> socket.socket:
    """A listening socket that other processes may bind on the same port as well."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    sock.listen(2048)
    return sock


def serve_workers(make: Callable[[], Collector], host: str, port: int, workers: int) -> int:
    """Run ``workers`` processes, each serving ``make()``'s collector, until SIGTERM or
    SIGINT; the exit code: 0 when every worker stopped cleanly then, 1 otherwise."""
    sockets = [listen(host, port) for _ in range(workers)]
    children: dict[int, int] = {}  # pid -> its socket's index
    state = {"stopping": False, "failed": False}

    def stop(_signum: int, _frame: FrameType | None) -> None:
        if state["stopping"]:
            return
        state["stopping"] = True
        for sock in sockets:  # no new connection waits on a socket nobody serves
            sock.close()
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):  # already gone
                os.kill(pid, signal.SIGTERM)

    def start(index: int) -> None:
        # Signals wait until the worker is in `children`, so a stop reaches each worker.
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP)
        try:
            pid = os.fork()
            if pid == 0:
                _worker(make, sockets, index)  # never returns
            children[pid] = index
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP)

    for sig in _STOP:
        signal.signal(sig, stop)
    sys.stdout.flush()  # not written again by each worker
    sys.stderr.flush()
    for index in range(workers):
        start(index)
    while children:
        pid, status = os.wait()
        index = children.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        if state["stopping"]:
            state["failed"] |= code not in (0, -signal.SIGTERM, -signal.SIGINT)
            continue
        log.error("collector worker %d exited (%s); starting another", pid, code)
        time.sleep(1)  # no tight loop when workers die on start
        if not state["stopping"]:
            start(index)
    return 1 if state["failed"] else 0


def _worker(make: Callable[[], Collector], sockets: list[socket.socket], index: int) -> None:
    """The forked worker: serve on ``sockets[index]`` until told to stop, then exit."""
    code = 1
    try:
        for sig in _STOP:  # the parent's handlers are not the worker's
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP)
        for other, sock in enumerate(sockets):
            if other != index:
                sock.close()
        collector = make()
        _Worker(uvicorn.Config(collector.app, **UVICORN)).run(sockets=[sockets[index]])
        code = 0
    except BaseException:
        log.exception("collector worker %d failed", os.getpid())
    finally:
        logging.shutdown()
        os._exit(code)


class _Worker(uvicorn.Server):
    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A worker always stops gracefully: Ctrl-C reaches it as well as the parent's
        # SIGTERM, and uvicorn takes a SIGINT after another signal as "quit now".
        super().handle_exit(signal.SIGTERM, frame)

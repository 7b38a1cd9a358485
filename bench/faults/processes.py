"""Trials that stop ``revsync`` processes: SIGKILL at random moments (during migrations,
imports and syncs, 1-4 times), or a restart of the PostgreSQL server under a running sync
(a cluster of the bench's own on a free port, never the shared server). Each trial then
completes the work the way an operator would and counts what the platforms received."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

import revsync
from bench.faults.world import (
    SECRETS,
    Platforms,
    Trial,
    count,
    import_dataset,
    platforms,
    settle_by_log,
    store,
    write_dataset,
)
from revsync.store.engine import open_store
from revsync.store.schema import conversions

REVSYNC = str(Path(sys.executable).parent / "revsync")
SOURCE = str(Path(revsync.__file__).parents[1])  # the processes run the bench's own code
LATENCY = 0.05  # each platform answer waits this long: kills land while requests fly
DONE = {0, 3}  # ok, or partial (GA4 rows held unknown after a kill)
# how long each step runs (seconds): a guess, then what the last complete run took
_TYPICAL = {"import": 1.2, "sync": 2.0}


def _env(url: str) -> dict[str, str]:
    secrets = {f"REVSYNC_{name.upper()}": value for name, value in SECRETS.items()}
    return {**os.environ, "PYTHONPATH": SOURCE, "REVSYNC_DATABASE_URL": url, **secrets}


def _start(args: list[str], url: str, workdir: Path) -> subprocess.Popen[bytes]:
    command = [REVSYNC, *args, "--config", str(workdir / "revsync.yaml")]
    return subprocess.Popen(
        command, cwd=workdir, env=_env(url), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _finish(args: list[str], url: str, workdir: Path, trial: Trial) -> None:
    """Run a step to its end; an exit other than ok/partial is a failed restart."""
    started = time.monotonic()
    process = _start(args, url, workdir)
    _, err = process.communicate(timeout=300)
    step = args[0]
    _TYPICAL[step] = time.monotonic() - started
    if process.returncode not in DONE:
        trial.failed_restarts += 1
        trial.notes.append(f"{' '.join(args)} exit {process.returncode}: {err.decode()[-300:]}")


def _complete(url: str, workdir: Path, trial: Trial, p: Platforms) -> None:
    """What an operator does after the faults: sync, settle GA4 unknowns by its log, sync."""
    _finish(["sync"], url, workdir, trial)
    trial.settled += settle_by_log(url, p.ga4)
    _finish(["sync"], url, workdir, trial)


def run_kills(store_kind: str, seed: int, visitors: int, workdir: Path) -> Trial:
    """Kill ``revsync`` 1-4 times at random moments of import touchpoints, import
    identities and sync (the first command migrates the fresh store), then complete."""
    rng = random.Random(seed)
    trial = Trial("sigkill", store_kind)
    with platforms(LATENCY) as p, store(store_kind, workdir) as url:
        files = write_dataset(workdir, seed, visitors, p)
        steps = [["import", "touchpoints", str(files.touchpoints)],
                 ["import", "identities", str(files.leads)], ["sync"]]  # fmt: skip
        kills: dict[int, list[float]] = {}
        for _ in range(rng.randint(1, 4)):
            step = rng.choice((0, 1, 2, 2, 2))
            kills.setdefault(step, []).append(rng.uniform(0.3, _TYPICAL[steps[step][0]]))
        for index, args in enumerate(steps):
            for delay in kills.get(index, []):
                with _start(args, url, workdir) as process:
                    try:
                        process.communicate(timeout=delay)
                        break  # it finished first: the step is done
                    except subprocess.TimeoutExpired:
                        process.kill()
                        trial.kills += 1
            else:
                _finish(args, url, workdir, trial)
        _complete(url, workdir, trial, p)
        count(trial, url, p)
    return trial


class Cluster:
    """A PostgreSQL cluster of the bench's own (initdb, a free port, a socket directory
    in its data directory), run as the ``postgres`` user when the bench runs as root."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="revsync-faults-pg-"))
        self.data = self.root / "data"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.admin_url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        binary = next(Path("/usr/lib/postgresql").glob(f"*/bin/{args[0]}"), None)
        command = [str(binary or args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> Cluster:
        _stop_orphans(self)
        (self.root / "bench.pid").write_text(str(os.getpid()))
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run("pg_ctl", "-D", str(self.data), "-w", "-l", str(self.root / "log"), "-o",
                  options, "start")  # fmt: skip
        return self

    def restart(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-l", str(self.root / "log"), "-m", "fast",
                  "restart")  # fmt: skip

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


def _stop_orphans(own: Cluster) -> None:
    """Stop the clusters of earlier benches that were killed (SIGKILL leaves no chance to
    clean up): those whose ``bench.pid`` names a process that is gone."""
    for root in Path(tempfile.gettempdir()).glob("revsync-faults-pg-*"):
        try:
            pid = int((root / "bench.pid").read_text())
            stat = Path(f"/proc/{pid}/stat").read_text()
            if stat.rpartition(")")[2].split()[0] != "Z":
                continue  # its bench still runs (a zombie is gone but not yet reaped)
        except FileNotFoundError:
            if not (root / "bench.pid").exists():
                continue  # a cluster still starting
        except (OSError, ValueError):
            continue
        if (root / "data" / "postmaster.pid").exists():
            own._run("pg_ctl", "-D", str(root / "data"), "-w", "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def cluster() -> Iterator[Cluster]:
    """A cluster of the bench's own, stopped on the way out, SIGTERM included (a SIGKILLed
    bench's cluster is stopped by the next bench's start)."""
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    own = Cluster().start()
    try:
        yield own
    finally:
        own.stop()
        signal.signal(signal.SIGTERM, previous)


def run_pg_restart(own: Cluster, seed: int, visitors: int, workdir: Path) -> Trial:
    """Restart the store's PostgreSQL server at a random moment of a sync, then complete."""
    rng = random.Random(seed)
    trial = Trial("pg-restart", "postgresql")
    with platforms(LATENCY) as p, store("postgresql", workdir, own.admin_url) as url:
        files = write_dataset(workdir, seed, visitors, p)
        import_dataset(url, files)
        process = _start(["sync"], url, workdir)
        time.sleep(rng.uniform(0.5, _TYPICAL["sync"]))
        trial.kills += process.poll() is None  # the restart hit a running sync
        own.restart()
        _, err = process.communicate(timeout=300)
        if b"Traceback" in err:  # the run may fail, but with a message, not a traceback
            trial.failed_restarts += 1
            trial.notes.append(f"sync during the restart: {err.decode()[-300:]}")
        _complete(url, workdir, trial, p)
        count(trial, url, p)
    return trial


def run_workers(seed: int, visitors: int, workdir: Path, workers: int = 3) -> Trial:
    """``workers`` ``revsync worker --every 1s`` processes on one PostgreSQL store, GA4
    slowed down (each answer waits 0.2 s): every conversion must arrive exactly once, and
    the destinations are shared out by their leases (a worker finding one held moves on to
    the next). Then SIGTERM: each worker must exit 0."""
    trial = Trial("3-workers", "postgresql")
    with platforms(LATENCY) as p, store("postgresql", workdir) as url:
        p.ga4.latency = 0.2
        files = write_dataset(workdir, seed, visitors, p)
        import_dataset(url, files)
        outputs = [workdir / f"worker-{n}.jsonl" for n in range(workers)]
        processes = []
        for output in outputs:
            with output.open("wb") as sink:
                command = [REVSYNC, "worker", "--every", "1s", "--json", "--config",
                           str(workdir / "revsync.yaml")]  # fmt: skip
                process = subprocess.Popen(
                    command, cwd=workdir, env=_env(url), stdout=sink, stderr=subprocess.DEVNULL
                )
                processes.append(process)
        _wait_until_settled(url, deadline=time.monotonic() + 180)
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                trial.failed_restarts += process.wait(timeout=30) != 0
            except subprocess.TimeoutExpired:
                process.kill()
                trial.failed_restarts += 1
        for n, output in enumerate(outputs):
            sent: Counter[str] = Counter()
            for line in output.read_text().splitlines():
                for destination, results in json.loads(line).get("results", {}).items():
                    sent[destination] += results.get("sent", 0)
            trial.senders += bool(sent)
            trial.notes.append(f"worker {n} sent {dict(sent) or 'nothing'}")
        count(trial, url, p)
    return trial


def _wait_until_settled(url: str, deadline: float) -> None:
    """Until the ledger has rows and none waits to be sent, for two seconds in a row."""
    engine = open_store(url)
    calm_since = None
    waiting = ("planned", "sending", "failed", "unknown")
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            query = sa.select(conversions.c.state, sa.func.count()).group_by(conversions.c.state)
            states = {state: n for state, n in conn.execute(query)}
        if states and not any(states.get(state) for state in waiting):
            calm_since = calm_since or time.monotonic()
            if time.monotonic() - calm_since >= 2:
                break
        else:
            calm_since = None
        time.sleep(0.2)
    engine.dispose()

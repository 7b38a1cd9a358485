"""``revsync doctor``: check every configured source and destination, and the store,
before a sync does.

Each source and transport has a ``check()`` method that yields :class:`CheckResult` rows
(credentials, mapped fields, API budget, conversion actions, pixel, GA4 stream, …) using
its own clients and auth. :func:`run_doctor` builds each target on its own, runs all
targets at once in daemon threads and gives every check ``timeout`` seconds: a target that
fails to build, raises or hangs yields a failed row and never stops the other targets.
Every detail is scrubbed of the configured secrets before it leaves this module.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from pydantic import SecretStr

from revsync.checks import CheckResult, Status, fail, warn
from revsync.config.mapping import RevsyncConfig
from revsync.config.settings import Settings
from revsync.destinations.retry import scrub
from revsync.errors import ConfigError, RevsyncError

SYMBOLS = {Status.PASS: "✓", Status.WARN: "!", Status.FAIL: "✗", Status.SKIP: "–"}


# --- orchestration -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Target:
    name: str
    build: Callable[[], Any]  # -> an object with check() and close()


def _targets(config: RevsyncConfig, settings: Settings) -> list[_Target]:
    from revsync.sync.factory import build_destinations, build_sources

    targets = []
    for source in config.sources:
        only = config.model_copy(update={"sources": [source], "destinations": []})

        def deal_source(only: RevsyncConfig = only) -> Any:
            return build_sources(only, settings)[0]

        targets.append(_Target(f"source {source.name}", deal_source))
    for block in config.destinations:
        one = config.model_copy(update={"destinations": [block]})

        def transport(one: RevsyncConfig = one) -> Any:
            return getattr(build_destinations(one, settings)[0], "transport", None)

        targets.append(_Target(f"destination {block.name}", transport))

    def store() -> Any:
        from revsync.store.health import StoreHealth

        return StoreHealth(settings.database_url)

    targets.append(_Target("store", store))
    return targets


def _work(target: _Target, out: queue.Queue[CheckResult | None]) -> None:
    """Build the target and run its checks, putting each result on ``out``; None ends."""
    checked: Any = None
    try:
        try:
            checked = target.build()
        except ConfigError as exc:
            for problem in exc.problems:
                out.put(fail("configuration", problem))
            return
        check = getattr(checked, "check", None)
        if check is None:
            out.put(warn("checks", f"{type(checked).__name__} has no checks"))
            return
        for result in check():
            out.put(result)
    except RevsyncError as exc:
        out.put(fail("error", str(exc)))
    except Exception as exc:  # a check must never take the others down
        out.put(fail("error", f"unexpected {type(exc).__name__}: {exc}"))
    finally:
        close = getattr(checked, "close", None)
        try:
            if close is not None:
                close()
        except Exception:  # noqa: S110 - closing after a failed check is best effort
            pass
        out.put(None)


def run_doctor(
    config: RevsyncConfig, settings: Settings, timeout: float = 30.0
) -> list[CheckResult]:
    """Check every source and destination; results in configuration order.

    All targets run at once; each check gets ``timeout`` seconds (a hung one is reported
    and the rest of its target's checks are not run).
    """
    targets = _targets(config, settings)
    queues: list[queue.Queue[CheckResult | None]] = []
    for target in targets:
        results: queue.Queue[CheckResult | None] = queue.Queue()
        queues.append(results)
        threading.Thread(
            target=_work, args=(target, results), name=f"doctor {target.name}", daemon=True
        ).start()
    secrets = _secrets(settings)
    report: list[CheckResult] = []
    for target, results in zip(targets, queues, strict=True):
        for result in _drain(results, timeout):
            detail = scrub(result.detail, *secrets)
            report.append(replace(result, target=target.name, detail=detail))
    return report


def _drain(results: queue.Queue[CheckResult | None], timeout: float) -> Iterator[CheckResult]:
    last = None
    while True:
        try:
            result = results.get(timeout=timeout)
        except queue.Empty:
            after = f" after {last!r}" if last else ""
            yield fail(
                "timeout",
                f"no answer within {timeout:g}s{after}; the target's remaining checks did not run",
            )
            return
        if result is None:
            return
        last = result.check
        yield result


def _secrets(settings: Settings) -> list[str]:
    values = (getattr(settings, name) for name in type(settings).model_fields)
    return [
        v.get_secret_value() for v in values if isinstance(v, SecretStr) and v.get_secret_value()
    ]


def failed(results: Iterable[CheckResult]) -> bool:
    return any(r.status is Status.FAIL for r in results)

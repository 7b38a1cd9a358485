"""The result of a setup check (``revsync doctor``): every source, destination and the
store yields these from ``check()``; it sits below them all, the doctor above them."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol


class Status(enum.StrEnum):
    PASS = "pass"  # noqa: S105 - a status, not a password
    WARN = "warn"  # works, but something deserves a look; does not fail the doctor
    FAIL = "fail"
    SKIP = "skip"  # not checked because an earlier check of the target failed


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One row of the doctor's report; ``target`` is filled in by :func:`run_doctor`."""

    check: str
    status: Status
    detail: str
    target: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "target": self.target,
            "check": self.check,
            "status": str(self.status),
            "detail": self.detail,
        }


def ok(check: str, detail: str) -> CheckResult:
    return CheckResult(check, Status.PASS, detail)


def warn(check: str, detail: str) -> CheckResult:
    return CheckResult(check, Status.WARN, detail)


def fail(check: str, detail: str) -> CheckResult:
    return CheckResult(check, Status.FAIL, detail)


def skip(check: str, detail: str) -> CheckResult:
    return CheckResult(check, Status.SKIP, detail)


class Checkable(Protocol):
    """A source or transport that can check its own setup."""

    def check(self) -> Iterable[CheckResult]: ...


def budget(
    check: str, used: int, limit: int, fail_at: float, what: str, consequence: str
) -> CheckResult:
    """Usage against a daily limit: fail at ``fail_at`` of it, warn at 90 % of that."""
    if limit <= 0:
        return warn(check, f"the API reported no {what} limit")
    share = used / limit
    text = f"{used:,} of {limit:,} {what} used today ({share:.0%})"
    if share >= fail_at:
        return fail(check, f"{text}; {consequence}")
    if share >= 0.9 * fail_at:
        return warn(check, f"{text}; close to {fail_at:.0%}, where {consequence}")
    return ok(check, f"{limit - used:,} left; {text}")

"""Errors revsync raises; each one says whether retrying can help.

RevsyncError
├── ConfigError           bad settings or mapping file (exit 2)
├── PermanentError        retrying cannot help (bad credentials, rejected request)
└── TransientError        retry later (429, 5xx, UNAVAILABLE, quota)
"""

from __future__ import annotations

from datetime import datetime


class RevsyncError(Exception):
    """Root of every error revsync raises on purpose."""

    retryable: bool = False


class ConfigError(RevsyncError):
    """The settings or the mapping file are wrong; ``problems`` lists each one."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class PermanentError(RevsyncError):
    """A failure that will happen again on retry."""


class TransientError(RevsyncError):
    """A failure that may pass: rate limits, server errors, timeouts."""

    retryable = True

    def __init__(self, message: str, retry_after: datetime | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

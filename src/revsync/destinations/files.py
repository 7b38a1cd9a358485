"""The file transport: writes the exact request bodies as JSONL, one line per request.

For a Google destination with ``file_format: data_manager`` the factory uses
``revsync.destinations.data_manager.DataManagerFileTransport`` instead, which writes the
``IngestEvents`` bodies the Data Manager transport would send.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from revsync.destinations.base import ApiRequest
from revsync.domain import OutcomeStatus, UploadOutcome
from revsync.privacy import open_private

if TYPE_CHECKING:
    from revsync.checks import CheckResult


class FileTransport:
    """Appends ``{"endpoint", "body"}`` lines to ``<dir>/<destination>.<platform>.jsonl``."""

    def __init__(self, directory: Path, destination: str, platform: str) -> None:
        self.path = directory / f"{destination}.{platform}.jsonl"
        self._handle: TextIO | None = None

    def send(self, request: ApiRequest) -> list[UploadOutcome]:
        self.write(request.endpoint, request.body)
        return [UploadOutcome(key, OutcomeStatus.SENT) for key in request.keys]

    def write(self, endpoint: str, body: dict[str, Any]) -> None:
        """Append one ``{"endpoint", "body"}`` line (a subclass writes a body of its own)."""
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open_private(self.path, "a", encoding="utf-8")
        line = {"endpoint": endpoint, "body": body}
        self._handle.write(json.dumps(line, separators=(",", ":"), sort_keys=True) + "\n")
        self._handle.flush()

    def check(self) -> Iterator[CheckResult]:
        """``revsync doctor``: the output directory exists (or can be made) and is writable."""
        from revsync.checks import fail, ok

        directory = self.path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=directory, prefix=".revsync-doctor-"):
                pass
        except OSError as exc:
            yield fail("output dir writable", f"{directory}: {exc.strerror or exc}")
            return
        yield ok("output dir writable", f"{directory} (writes {self.path.name})")

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

"""The contract every destination passes, for each of its transports, in one suite.

Each scenario runs against the adapters in ``tests/contract/harness/destinations.py``: the
real destination class with its real transport against its emulator, or with the file
transport. Scenarios that need what a transport cannot observe are parametrised only over
the adapters that can (``test_exclusions_are_declared_with_their_reason`` pins it):

===============================  =========  =======  ========  ========  ====
scenario                         ads_api    data_m.  ga4 http  meta api  file
===============================  =========  =======  ========  ========  ====
batch limits                     yes        yes      yes       yes       yes (x3)
partial failure on its row       row        fast-    validate  local     written
                                 results    fail     mode      filter    verbatim
transient: retried, bounded      yes        yes      yes       yes       --
permanent: never retried         yes        yes      yes       yes       --
refused credentials stop         yes        yes      --        yes       --
no raw PII or secret anywhere    yes        yes      yes       yes       yes (x3)
===============================  =========  =======  ========  ========  ====
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from revsync.destinations.base import PlatformDestination
from revsync.domain import Conversion, OutcomeStatus, UploadOutcome
from revsync.errors import PermanentError, TransientError
from tests.contract.harness.destinations import (
    ATTEMPTS,
    HASHES,
    RAW_PII,
    DataManagerAdapter,
    DestinationAdapter,
    FileAdapter,
    Ga4HttpAdapter,
    GoogleAdsApiAdapter,
    MetaApiAdapter,
)
from tests.emulators.tls import TlsFiles

NAMES = [
    "google_ads-ads_api", "google_ads-data_manager", "ga4-http", "meta-api",
    "google_ads-file", "ga4-file", "meta-file",
]  # fmt: skip
NETWORK = NAMES[:4]
CREDENTIALS = ["google_ads-ads_api", "google_ads-data_manager", "meta-api"]
OK = {OutcomeStatus.SENT, OutcomeStatus.VALIDATED}
SHA256 = re.compile(r"\b[0-9a-f]{64}\b")


def build(name: str, tmp: Path, tls: TlsFiles) -> DestinationAdapter:
    platform, transport = name.split("-")
    if transport == "file":
        return FileAdapter(tmp, platform)
    if transport == "ads_api":
        return GoogleAdsApiAdapter(tmp, tls)
    if transport == "data_manager":
        return DataManagerAdapter(tmp)
    if transport == "http":
        return Ga4HttpAdapter(tmp)
    return MetaApiAdapter(tmp)


@pytest.fixture(params=NAMES)
def adapter(
    request: pytest.FixtureRequest, tmp_path: Path, tls: TlsFiles
) -> Iterator[DestinationAdapter]:
    built = build(request.param, tmp_path, tls)
    built.start()
    yield built
    built.stop()


def attempt(dest: PlatformDestination, rows: Sequence[Conversion]) -> list[UploadOutcome]:
    """One ``send`` as the sync job sees it: a ``TransientError`` leaves every row to retry;
    a ``PermanentError`` stops the destination (code ``STOPPED``; the job releases rows)."""
    try:
        return dest.send(rows)
    except TransientError as exc:
        return [UploadOutcome(r.key, OutcomeStatus.RETRY, "TRANSIENT", str(exc)) for r in rows]
    except PermanentError as exc:
        return [UploadOutcome(r.key, OutcomeStatus.REJECTED, "STOPPED", str(exc)) for r in rows]


def send_in_batches(dest: PlatformDestination, rows: Sequence[Conversion]) -> list[UploadOutcome]:
    """Send ``rows`` in ``batch_size`` batches, as the sync job drains the ledger."""
    outcomes: list[UploadOutcome] = []
    for start in range(0, len(rows), dest.batch_size):
        outcomes += dest.send(rows[start : start + dest.batch_size])
    return outcomes


def by_key(outcomes: list[UploadOutcome], rows: Sequence[Conversion]) -> dict[str, UploadOutcome]:
    """Outcomes by key, after checking there is exactly one per row."""
    assert sorted(o.key for o in outcomes) == sorted(r.key for r in rows)
    return {o.key: o for o in outcomes}


# --- the matrix ------------------------------------------------------------------------


def test_exclusions_are_declared_with_their_reason(tmp_path: Path, tls: TlsFiles) -> None:
    adapters = {name: build(name, tmp_path, tls) for name in NAMES}
    assert [n for n, a in adapters.items() if a.caps.network] == NETWORK
    assert [n for n, a in adapters.items() if a.caps.credentials] == CREDENTIALS
    for name, a in adapters.items():
        gaps = [c for c in ("network", "credentials") if not getattr(a.caps, c)]
        if a.caps.row_verdicts != "always":
            gaps.append("row_verdicts")
        for gap in gaps:
            assert len(a.caps.why_not[gap]) > 20, (name, gap)
        assert a.name == name


# --- batch limits ----------------------------------------------------------------------


def test_requests_never_exceed_the_platform_limit(adapter: DestinationAdapter) -> None:
    dest = adapter.destination()
    limit = adapter.caps.platform_limit
    assert dest.batch_size <= dest.max_batch and dest.max_batch >= limit
    rows = adapter.conversions(dest, limit + 1)

    outcomes = by_key(send_in_batches(dest, rows), rows)
    dest.close()

    assert adapter.rows_per_request() == [limit, 1]
    assert {o.status for o in outcomes.values()} == {OutcomeStatus.SENT}
    assert adapter.stored() == set(outcomes)


def test_a_configured_batch_size_is_honoured(adapter: DestinationAdapter) -> None:
    dest = adapter.destination(batch_size=3)
    assert dest.batch_size == 3
    rows = adapter.conversions(dest, 7)

    outcomes = by_key(send_in_batches(dest, rows), rows)
    dest.close()

    assert adapter.rows_per_request() == [3, 3, 1]
    assert {o.status for o in outcomes.values()} == {OutcomeStatus.SENT}
    big = adapter.destination(batch_size=10**6)
    assert big.batch_size == big.max_batch  # clamped to the platform's limit
    big.close()


# --- partial failures ------------------------------------------------------------------


def test_each_partial_failure_lands_on_its_own_row(adapter: DestinationAdapter) -> None:
    validate = adapter.caps.row_verdicts == "validate_only"
    dest = adapter.destination(validate=validate)
    rows = adapter.conversions(dest, 6)
    expected: dict[str, str] = {}
    for index in (1, 4):
        rows[index], code = adapter.spoil(rows[index])
        if code is not None:
            expected[rows[index].key] = code

    outcomes = by_key(attempt(dest, rows), rows)
    refused = (OutcomeStatus.REJECTED, OutcomeStatus.SKIPPED)  # by the platform, or locally
    rejected = {k: o.code for k, o in outcomes.items() if o.status in refused}
    assert rejected == expected  # exactly the spoiled rows, with the platform's reason
    assert all(outcomes[k].message for k in expected)
    # Rows refused only because a neighbour was bad (fast-fail) come back to retry, and go.
    retry = [r for r in rows if outcomes[r.key].status is OutcomeStatus.RETRY]
    if retry:
        outcomes |= by_key(attempt(dest, retry), retry)
    dest.close()

    accepted = {k for k, o in outcomes.items() if o.status in OK}
    assert accepted == {r.key for r in rows} - set(expected)
    assert adapter.stored() == (set() if validate else accepted)
    if adapter.caps.row_verdicts == "local":  # answered by the destination, never sent
        assert not [w for w in adapter.wire() for k in expected if k in w]


# --- retries -----------------------------------------------------------------------------


@pytest.mark.parametrize("adapter", NETWORK, indirect=True)
def test_transient_failures_are_retried_in_process_then_succeed(
    adapter: DestinationAdapter,
) -> None:
    dest = adapter.destination()
    rows = adapter.conversions(dest, 2)
    adapter.fail_transient(ATTEMPTS - 1)

    outcomes = by_key(attempt(dest, rows), rows)
    dest.close()

    assert {o.status for o in outcomes.values()} == {OutcomeStatus.SENT}
    assert adapter.upload_calls() == ATTEMPTS
    assert adapter.stored() == set(outcomes)


@pytest.mark.parametrize("adapter", NETWORK, indirect=True)
def test_transient_failures_that_persist_leave_every_row_to_retry(
    adapter: DestinationAdapter,
) -> None:
    dest = adapter.destination()
    rows = adapter.conversions(dest, 2)
    adapter.fail_transient(ATTEMPTS)

    outcomes = by_key(attempt(dest, rows), rows)
    dest.close()

    assert {o.status for o in outcomes.values()} == {OutcomeStatus.RETRY}
    assert adapter.upload_calls() == ATTEMPTS  # bounded
    assert adapter.stored() == set()


@pytest.mark.parametrize("adapter", NETWORK, indirect=True)
def test_a_permanent_refusal_is_never_retried(adapter: DestinationAdapter) -> None:
    dest = adapter.destination()
    rows = adapter.conversions(dest, 2)
    adapter.fail_permanent(len(rows))

    outcomes = by_key(attempt(dest, rows), rows)

    assert {o.status for o in outcomes.values()} == {OutcomeStatus.REJECTED}
    assert adapter.upload_calls() == adapter.refusal_calls(len(rows)) and adapter.sleeps == []
    assert adapter.stored() == set()
    # The refusal was one request's: the next batch goes through.
    more = adapter.conversions(dest, 1, start=50)
    assert {o.status for o in attempt(dest, more)} == {OutcomeStatus.SENT}
    dest.close()


@pytest.mark.parametrize("adapter", CREDENTIALS, indirect=True)
def test_refused_credentials_stop_the_destination_without_rejecting_rows(
    adapter: DestinationAdapter,
) -> None:
    """Bad or expired credentials say nothing about the rows: the destination stops with a
    ``PermanentError`` (the job puts the batch back to planned and fails the run), instead
    of answering every row ``REJECTED``, which the ledger would never send again."""
    dest = adapter.destination()
    rows = adapter.conversions(dest, 2)
    adapter.refuse_credentials()

    with pytest.raises(PermanentError) as stopped:
        dest.send(rows)
    dest.close()

    assert adapter.upload_calls() == 1 + adapter.refresh_retries and adapter.sleeps == []
    assert not [s for s in adapter.secrets if s in str(stopped.value)]
    assert adapter.stored() == set()


# --- privacy -----------------------------------------------------------------------------


def test_no_payload_log_line_or_outcome_holds_raw_pii_or_a_secret(
    adapter: DestinationAdapter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("urllib3", "httpx", "httpcore", "google", "grpc"):
        caplog.set_level(logging.DEBUG, logger=name)  # other SDKs lower these globally
    dest = adapter.destination()
    texts: list[str] = []

    def run(rows: list[Conversion]) -> None:
        texts.extend(f"{o.code} {o.message}" for o in attempt(dest, rows))

    run([adapter.pii_conversion(dest), *adapter.conversions(dest, 2)])
    spoiled, _ = adapter.spoil(adapter.conversions(dest, 1, start=10)[0])
    run([spoiled])
    if adapter.caps.network:
        adapter.fail_transient(ATTEMPTS)
        run(adapter.conversions(dest, 1, start=20))
        adapter.fail_permanent()
        run(adapter.conversions(dest, 1, start=30))
    if adapter.caps.credentials:
        adapter.refuse_credentials()
        run(adapter.conversions(dest, 1, start=40))
    dest.close()

    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    logged = [formatter.format(r) for r in caplog.records]
    wire = adapter.wire()
    forbidden = [*RAW_PII, *adapter.secrets]
    assert not [t for t in logged + texts if any(f in t for f in forbidden)]
    assert not [t for t in texts if SHA256.search(t)]  # outcomes and errors echo no hash
    # The platform itself must get the credential; never a raw email or phone.
    assert not [w for w in wire if any(p in w for p in RAW_PII)]
    # The checks saw what they guard: hashed identifiers went out, and calls were logged.
    hashed = (HASHES.email, HASHES.email_google)
    assert any(h and h in w for w in wire for h in hashed)
    assert not adapter.caps.network or logged

"""Each destination's requests at their floor: GA4 groups a client's rows into requests of
up to 25 events, whatever order they were planned in; Meta and Google fill their batches."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Engine

from revsync.config.destinations import Ga4Destination as Ga4Config
from revsync.config.destinations import MetaDestination as MetaConfig
from revsync.destinations.files import FileTransport
from revsync.destinations.ga4 import Ga4Destination
from revsync.destinations.meta import MetaDestination
from revsync.domain import ClickIds, Consent, Conversion, ConversionKind, PersonHashes
from revsync.store.leases import Lease
from revsync.sync import ledger
from revsync.sync.summary import RunSummary
from revsync.sync.upload import upload

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _row(platform: str, n: int, client: str, email: str) -> Conversion:
    return Conversion(
        f"{platform}{n:029d}", platform, platform, ConversionKind.CONVERSION, "crm", f"D{n}",
        "purchase", NOW - timedelta(hours=1), Decimal(10), "USD",
        click_ids=ClickIds(ga_client_id=client), consent=Consent(True, True),
        person=PersonHashes(email=email, email_google=email, email_ga4=email),
    )  # fmt: skip


def _upload(engine: Engine, destination: Ga4Destination | MetaDestination) -> RunSummary:
    summary = RunSummary(started_at=NOW)
    lease = Lease(engine, f"destination:{destination.name}", "run 1", timedelta(minutes=10),
                  lambda: NOW)  # fmt: skip
    assert lease.take() is None
    upload(engine, destination, summary, lambda: NOW, lambda *_: None, lease)
    return summary


def _requests(path: Path) -> list[dict[str, object]]:
    return [json.loads(line)["body"] for line in path.read_text().splitlines()]


def test_ga4_sends_a_clients_rows_together_across_batches(engine: Engine, tmp_path: Path) -> None:
    # 3 clients x 20 rows, planned interleaved (as deal pages plan them), sent in batches
    # of 25 rows: the floor is one request per client.
    planned = [_row("ga4", n, f"{n % 3}.1700000000", f"{'e' * 63}{n % 3}") for n in range(60)]
    with engine.begin() as conn:
        ledger.add_planned(conn, planned, 1, NOW)
    config = Ga4Config(name="ga4", type="ga4", transport="file", output_dir=tmp_path,
                       measurement_id="G-TEST12345", batch_size=25)  # fmt: skip
    destination = Ga4Destination(config, "linear", FileTransport(tmp_path, "ga4", "ga4"),
                                 clock=lambda: NOW)  # fmt: skip
    summary = _upload(engine, destination)
    destination.close()
    bodies = _requests(tmp_path / "ga4.ga4.jsonl")
    assert summary.results["ga4"] == {"sent": 60}
    assert len(bodies) == 3  # was 9: each batch of 25 held ~8 rows of each client
    assert sorted(len(b["events"]) for b in bodies) == [20, 20, 20]  # type: ignore[arg-type]
    assert len({b["client_id"] for b in bodies}) == 3


def test_ga4_keeps_different_people_of_one_client_apart(engine: Engine, tmp_path: Path) -> None:
    planned = [_row("ga4", n, "1.1700000000", f"{'e' * 63}{n % 2}") for n in range(30)]
    with engine.begin() as conn:
        ledger.add_planned(conn, planned, 1, NOW)
    config = Ga4Config(name="ga4", type="ga4", transport="file", output_dir=tmp_path,
                       measurement_id="G-TEST12345")  # fmt: skip
    destination = Ga4Destination(config, "linear", FileTransport(tmp_path, "ga4", "ga4"),
                                 clock=lambda: NOW)  # fmt: skip
    _upload(engine, destination)
    destination.close()
    bodies = _requests(tmp_path / "ga4.ga4.jsonl")
    assert sorted(len(b["events"]) for b in bodies) == [15, 15]  # type: ignore[arg-type]


def test_meta_fills_requests_of_1000_events(engine: Engine, tmp_path: Path) -> None:
    planned = [_row("meta", n, "", f"{n:064d}") for n in range(1_826)]
    with engine.begin() as conn:
        ledger.add_planned(conn, planned, 1, NOW)
    config = MetaConfig(name="meta", type="meta", transport="file", output_dir=tmp_path,
                        pixel_id="1234567890", event_name="Purchase")  # fmt: skip
    destination = MetaDestination(config, "linear", FileTransport(tmp_path, "meta", "meta"),
                                  clock=lambda: NOW)  # fmt: skip
    summary = _upload(engine, destination)
    destination.close()
    bodies = _requests(tmp_path / "meta.meta.jsonl")
    assert summary.results["meta"] == {"sent": 1_826}
    assert [len(b["data"]) for b in bodies] == [1_000, 826]  # type: ignore[arg-type]

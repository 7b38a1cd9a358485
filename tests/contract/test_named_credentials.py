"""Several accounts of one platform: each block names its credentials, read from
REVSYNC_<NAME>_<VARIABLE>; two GA4 streams with their own API secrets both receive their
events, and a missing named credential is reported under its own variable."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from revsync.config.loader import load_config
from revsync.config.settings import load_settings
from revsync.errors import ConfigError
from revsync.sync.factory import build_destinations, build_sources
from revsync.sync.job import SyncJob
from tests.e2e.test_sync import one_won_deal
from tests.emulators.ga4_mp import GA4MPEmulator


def mapping(path: Path, ga4: GA4MPEmulator) -> Path:
    path.write_text(f"""
sources:
  - {{name: crm, type: file, path: deals.csv}}
privacy: {{unknown_consent: grant}}
destinations:
  - {{name: brand-a, type: ga4, transport: http, measurement_id: G-AAAA1111,
     base_url: "{ga4.url}", event_name: purchase, credentials: acme}}
  - {{name: brand-b, type: ga4, transport: http, measurement_id: G-BBBB2222,
     base_url: "{ga4.url}", event_name: purchase, credentials: globex}}
""")
    return path


def test_two_ga4_streams_each_get_their_own_secret(
    engine: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    one_won_deal(engine, tmp_path, now)  # type: ignore[arg-type]
    with GA4MPEmulator(streams={"G-AAAA1111": "secret-a", "G-BBBB2222": "secret-b"}) as ga4:
        path = mapping(tmp_path / "named.yaml", ga4)
        config = load_config(path)
        monkeypatch.setenv("REVSYNC_ACME_GA4_API_SECRET", "secret-a")
        monkeypatch.delenv("REVSYNC_GA4_API_SECRET", raising=False)
        with pytest.raises(ConfigError, match="REVSYNC_GLOBEX_GA4_API_SECRET"):
            build_destinations(config, load_settings())
        monkeypatch.setenv("REVSYNC_GLOBEX_GA4_API_SECRET", "secret-b")
        settings = load_settings()
        clock = lambda: now  # noqa: E731
        summary = SyncJob(
            engine, config, build_sources(config, settings),  # type: ignore[arg-type]
            build_destinations(config, settings, clock), clock=clock,
        ).run()  # fmt: skip
        assert summary.status == "ok", summary.failures
        streams = {x.request.arg("measurement_id") for x in ga4.log}
        assert streams == {"G-AAAA1111", "G-BBBB2222"}
        assert {x.request.arg("api_secret") for x in ga4.log} == {"secret-a", "secret-b"}
        assert len(ga4.events) == 2 and ga4.invalid == []

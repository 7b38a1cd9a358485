"""Retention windows: old touchpoints go except credited ones, old payloads lose the
person but keep what a retraction is built from, at most one pass a day, and a window
shorter than the journey lookback is refused. Times are relative to the demo's data."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from revsync.cli import app
from revsync.config.loader import load_config
from revsync.config.mapping import PrivacyConfig
from revsync.domain import Conversion
from revsync.errors import ConfigError
from revsync.store.schema import conversions, credits, identities, touchpoints, visitors
from revsync.sync.retention import apply_retention

runner = CliRunner()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("retention") / "demo"
    done = runner.invoke(app, ["demo", str(root), "--visitors", "400"])
    assert done.exit_code == 0, done.output
    return root


def test_windows_remove_old_data_but_keep_credits_and_retraction_ids(demo: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{demo / 'revsync.db'}")
    with engine.connect() as conn:
        last = conn.execute(sa.select(sa.func.max(conversions.c.updated_at))).scalar_one()
        credited = set(conn.execute(sa.select(credits.c.touchpoint_id).join(
            touchpoints, touchpoints.c.id == credits.c.touchpoint_id)).scalars())  # fmt: skip
        before = {r.key: Conversion.from_json(r.payload) for r in conn.execute(
            sa.select(conversions).where(conversions.c.state == "sent"))}  # fmt: skip
        with_identity = set(conn.execute(sa.select(identities.c.visitor_id)).scalars())
    later = last + timedelta(days=400)
    privacy = PrivacyConfig(touchpoints_days=90, payloads_days=30)

    done = apply_retention(engine, privacy, later)
    assert done["touchpoints deleted"] > 0 and done["payloads stripped"] == len(before)
    assert apply_retention(engine, privacy, later + timedelta(hours=23)) == {}  # once a day
    with engine.connect() as conn:
        kept = set(conn.execute(sa.select(touchpoints.c.id)).scalars())
        left = set(conn.execute(sa.select(visitors.c.id)).scalars())
        after = {r.key: Conversion.from_json(r.payload) for r in conn.execute(
            sa.select(conversions).where(conversions.c.state == "sent"))}  # fmt: skip
    assert kept == credited  # the reports still group revenue by campaign and keyword
    assert with_identity <= left
    assert after.keys() == before.keys()
    for key, original in before.items():
        stripped = after[key]
        assert stripped.person.email is None and stripped.person.phone is None
        assert stripped.click_ids.fbc is None and stripped.click_ids.fbp is None
        assert stripped.external_id is None and not stripped.attributes
        # what a GA4 refund or a Google adjustment is built from stays
        assert stripped.click_ids.ga_client_id == original.click_ids.ga_client_id
        assert stripped.click_ids.gclid == original.click_ids.gclid
        assert (stripped.value, stripped.currency, stripped.event_time) == (
            original.value, original.currency, original.event_time)  # fmt: skip
    assert any(c.person.email for c in before.values())
    # a day on, only rows done since the last pass's window are read: none here
    assert apply_retention(engine, privacy, later + timedelta(days=1, hours=1)) == {}
    engine.dispose()


def test_a_touchpoint_window_shorter_than_the_lookback_is_refused(tmp_path: Path) -> None:
    mapping = tmp_path / "revsync.yaml"
    mapping.write_text(
        "version: 1\nsources: [{name: crm, type: file, path: deals.csv}]\n"
        "matching: {lookback_days: 90}\nprivacy: {touchpoints_days: 30}\n"
    )
    with pytest.raises(ConfigError) as refused:
        load_config(mapping)
    assert any("touchpoints_days (30) is shorter than" in p for p in refused.value.problems)


def test_a_run_reports_what_retention_removed(demo: Path) -> None:
    config = (demo / "revsync.yaml").read_text()
    (demo / "kept.yaml").write_text(
        config + "privacy:\n  touchpoints_days: 90\n  payloads_days: 1\n"
    )
    result = runner.invoke(app, ["sync", "--config", str(demo / "kept.yaml"),
                                 "--database-url", f"sqlite:///{demo / 'revsync.db'}",
                                 "--json"])  # fmt: skip
    assert result.exit_code in (0, 3), result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert "retention" in summary

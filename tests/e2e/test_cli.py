"""The ``revsync`` command as users run it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from revsync.cli import app

runner = CliRunner()


def test_demo_writes_payloads_for_all_three_platforms(tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", str(tmp_path / "demo"), "--visitors", "400"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "demo" / "out"
    assert {p.name for p in out.glob("*.jsonl")} == {
        "google-ads.google_ads.jsonl", "ga4.ga4.jsonl", "meta.meta.jsonl",
    }  # fmt: skip
    for name in ("Revenue by channel", "Conversions by destination", "Quarantined records",
                 "Second sync on the same store: 0 new conversions planned"):  # fmt: skip
        assert name in result.output
    assert "revsync serve --config" in " ".join(result.output.split())  # capture, next


def test_the_demo_mapping_serves_the_collector(tmp_path: Path) -> None:
    """Issue 15: the demo's own mapping has a collector site, as the demo's last lines say."""
    from revsync.config.loader import load_config
    from revsync.demo import DEMO_CONFIG

    (tmp_path / "revsync.yaml").write_text(DEMO_CONFIG)
    mapping = load_config(tmp_path / "revsync.yaml")
    assert mapping.collector is not None
    assert [site.key for site in mapping.collector.sites] == ["demo-site-0001"]


def test_sync_json_summary_and_exit_codes(tmp_path: Path, store_url: str) -> None:
    demo = tmp_path / "demo"
    assert runner.invoke(app, ["demo", str(demo), "--visitors", "200"]).exit_code == 0
    where = ["--config", str(demo / "revsync.yaml"), "--database-url", store_url]
    for kind, name in (("touchpoints", "touchpoints.csv"), ("identities", "leads.csv")):
        assert runner.invoke(app, ["import", kind, str(demo / name), *where]).exit_code == 0
    args = ["sync", "--json", *where]
    first = runner.invoke(app, args)
    summary = json.loads(first.stdout)
    assert first.exit_code == 3  # partial: malformed CRM rows were quarantined
    assert summary["status"] == "partial"
    assert {q["record_id"] for q in summary["quarantined"]} >= {"D-BAD-1", "D-BAD-2", "D-BAD-4"}
    assert sum(summary["conversions_planned"].values()) > 0
    second = json.loads(runner.invoke(app, args).stdout)
    assert sum(second["conversions_planned"].values()) == 0


def test_config_error_exits_2_with_line_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "revsync.yaml"
    bad.write_text("sources:\n  - name: crm\n    type: file\n    path: d.csv\n    colour: red\n")
    result = runner.invoke(app, ["config", "validate", str(bad)])
    assert result.exit_code == 2
    assert "revsync.yaml:5: sources[0].colour" in result.output
    sync = runner.invoke(app, ["sync", "--config", str(bad), "--database-url", "sqlite://"])
    assert sync.exit_code == 2


def test_init_writes_a_valid_starter(tmp_path: Path) -> None:
    path = tmp_path / "revsync.yaml"
    assert runner.invoke(app, ["init", str(path)]).exit_code == 0
    assert runner.invoke(app, ["config", "validate", str(path)]).exit_code == 0
    assert runner.invoke(app, ["init", str(path)]).exit_code == 2  # no silent overwrite


@pytest.mark.parametrize("kind", ["touchpoints", "identities"])
def test_import_reports_rejects_and_exits_3(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.csv"
    path.write_text("visitor_id,occurred_at,observed_at,email\nv1,,,\n")
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = runner.invoke(app, ["import", kind, str(path), "--database-url", url])
    assert result.exit_code == 3
    assert "row 2" in result.output
    assert (tmp_path / f"{kind}.rejects.csv").exists()


def test_bad_database_url_is_a_config_error() -> None:
    result = runner.invoke(app, ["db", "upgrade", "--database-url", "mysql://x/y"])
    assert result.exit_code == 2
    assert "unsupported database" in result.output


def test_explain_and_models_report(tmp_path: Path) -> None:
    from decimal import Decimal
    from fractions import Fraction

    demo = tmp_path / "demo"
    assert runner.invoke(app, ["demo", str(demo), "--visitors", "400"]).exit_code == 0
    where = [
        "--config",
        str(demo / "revsync.yaml"),
        "--database-url",
        f"sqlite:///{demo / 'revsync.db'}",
    ]

    report = json.loads(runner.invoke(app, ["report", "models", "--json", *where]).stdout)
    assert report["deals"] > 0 and report["data_driven_fitted"]
    assert "credits like linear" not in runner.invoke(app, ["report", "models", *where]).stdout
    models = ["first_touch", "last_touch", "last_non_direct", "linear", "time_decay",
              "position_based", "data_driven"]  # fmt: skip
    for currency in {row["currency"] for row in report["rows"]}:
        rows = [r for r in report["rows"] if r["currency"] == currency]
        totals = {m: sum(Decimal(r[m]) for r in rows) for m in models}
        assert len(set(totals.values())) == 1, totals  # every model splits the same revenue

    from revsync.store.engine import open_store
    from revsync.store.schema import conversions, match_links

    engine = open_store(f"sqlite:///{demo / 'revsync.db'}")
    with engine.connect() as conn:
        deal_id = conn.execute(
            conversions.select().with_only_columns(conversions.c.deal_id).limit(1)
        ).scalar_one()
    engine.dispose()
    result = runner.invoke(app, ["explain", deal_id, "--json", *where])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["matches"] and data["conversions"]
    shares = [Fraction(tp["credits"]["last_non_direct"]["share"]) for tp in data["journey"]
              if "last_non_direct" in tp["credits"]]  # fmt: skip
    assert sum(shares) == 1
    amounts = sum(Decimal(tp["credits"]["last_non_direct"]["amount"].split()[0])
                  for tp in data["journey"] if "last_non_direct" in tp["credits"])  # fmt: skip
    assert amounts == Decimal(data["deal"]["amount"])
    assert runner.invoke(app, ["explain", "NOPE", *where]).exit_code == 1

    # A store whose deals were never matched by a sync: nothing to fit the Markov model on.
    engine = open_store(f"sqlite:///{demo / 'revsync.db'}")
    with engine.begin() as conn:
        conn.execute(match_links.delete())
    engine.dispose()
    report = json.loads(runner.invoke(app, ["report", "models", "--json", *where]).stdout)
    assert not report["data_driven_fitted"]
    assert all(row["data_driven"] == row["linear"] for row in report["rows"])
    text = runner.invoke(app, ["report", "models", *where]).stdout
    assert "data driven: no visitor path of the last 90 days led to a won deal" in text
    assert "…" not in text  # figures are never cut off the table


def test_unreachable_store_names_it_without_the_password(tmp_path: Path) -> None:
    url = "postgresql://revsync:s3cret-pw@127.0.0.1:1/nowhere"
    result = runner.invoke(app, ["db", "upgrade", "--database-url", url])
    assert result.exit_code == 1
    assert "127.0.0.1:1/nowhere" in result.output and "s3cret-pw" not in result.output


def test_the_image_refuses_to_sync_on_a_sqlite_file_that_dies_with_the_container(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The image sets REVSYNC_REQUIRE_DATABASE_URL: a forgotten REVSYNC_DATABASE_URL must not
    put the ledger in a file lost on exit (the next run would re-send everything)."""
    demo = tmp_path / "demo"
    assert runner.invoke(app, ["demo", str(demo), "--visitors", "50"]).exit_code == 0
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REVSYNC_REQUIRE_DATABASE_URL", "true")
    monkeypatch.delenv("REVSYNC_DATABASE_URL", raising=False)
    config = ["--config", str(demo / "revsync.yaml")]
    for command in (["sync"], ["worker", "--every", "1h"]):
        refused = runner.invoke(app, [*command, *config])
        assert refused.exit_code == 2, refused.output
        assert "REVSYNC_DATABASE_URL is not set" in refused.output
    assert not (tmp_path / "revsync.db").exists()
    on_a_volume = f"sqlite:///{tmp_path / 'volume' / 'revsync.db'}"
    kept = runner.invoke(app, ["sync", *config, "--database-url", on_a_volume])
    assert kept.exit_code in (0, 3), kept.output

"""``revsync doctor`` end to end: the CLI with every real SDK against the local emulators.

One configuration holds every kind of target: a file, Salesforce and HubSpot source; Google
Ads through the Ads API and through Data Manager, GA4, Meta, and a file destination. Each
test breaks one thing and checks that exactly the right rows fail, with a clear detail,
that the other targets are still checked, and that no secret reaches the output.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from revsync.cli import app
from revsync.store.engine import open_store
from tests.emulators.data_manager import DataManagerEmulator
from tests.emulators.ga4_mp import GA4MPEmulator
from tests.emulators.google_ads import GoogleAdsEmulator
from tests.emulators.hubspot import HubSpotEmulator
from tests.emulators.meta_graph import MetaGraphEmulator
from tests.emulators.oauth import OAuthEmulator
from tests.emulators.salesforce import SalesforceEmulator
from tests.emulators.tls import TlsFiles

CUSTOMER, ACTION, WEB_ACTION, MISSING_ACTION = "1234567890", "111", "222", "999"
PIXEL, MEASUREMENT_ID = "1234567890123", "G-DOCTOR1"
SF_CLIENT_ID, SF_SECRET, SF_REFRESH = "sf-client", "sf-secret-31d", "sf-refresh-7e2"
HS_TOKEN = "pat-na1-hubspot-secret-4c1"
G_CLIENT_ID, G_SECRET, G_REFRESH = "g.apps.googleusercontent.com", "GOCSPX-g-9a", "1//g-refresh-5b"
DEV_TOKEN = "devtoken-secret-77f"
GA4_SECRET = "mp-secret-doctor-2d"
META_TOKEN = "EAAB-meta-secret-6a0"
SECRETS = (SF_SECRET, SF_REFRESH, HS_TOKEN, G_SECRET, G_REFRESH, DEV_TOKEN, GA4_SECRET, META_TOKEN)
ENV = {
    "REVSYNC_SALESFORCE_CLIENT_ID": SF_CLIENT_ID,
    "REVSYNC_SALESFORCE_CLIENT_SECRET": SF_SECRET,
    "REVSYNC_SALESFORCE_REFRESH_TOKEN": SF_REFRESH,
    "REVSYNC_HUBSPOT_ACCESS_TOKEN": HS_TOKEN,
    "REVSYNC_GOOGLE_OAUTH_CLIENT_ID": G_CLIENT_ID,
    "REVSYNC_GOOGLE_OAUTH_CLIENT_SECRET": G_SECRET,
    "REVSYNC_GOOGLE_OAUTH_REFRESH_TOKEN": G_REFRESH,
    "REVSYNC_GOOGLE_ADS_DEVELOPER_TOKEN": DEV_TOKEN,
    "REVSYNC_GA4_API_SECRET": GA4_SECRET,
    "REVSYNC_META_ACCESS_TOKEN": META_TOKEN,
}
DEALS_CSV = (
    "deal_id,status,amount,currency,close_date,modified_at,contact_id,email,gclid\n"
    "D-1,won,1200,USD,2026-03-01,2026-03-01T10:00:00Z,C-1,a@example.com,\n"
)
runner = CliRunner()


@dataclass
class World:
    tmp: Path
    tls: TlsFiles
    sf: SalesforceEmulator
    hs: HubSpotEmulator
    oauth: OAuthEmulator
    ads: GoogleAdsEmulator
    dm: DataManagerEmulator
    ga4: GA4MPEmulator
    meta: MetaGraphEmulator

    def mapping(self, **changes: dict[str, Any]) -> dict[str, Any]:
        """The healthy configuration; ``changes`` updates the block of that name."""
        sources = [
            {"type": "file", "name": "crm-file", "path": "deals.csv"},
            {
                "type": "salesforce", "name": "sf", "instance_url": self.sf.base_url,
                "token_url": f"{self.sf.base_url}/services/oauth2/token",
                "ca_bundle": str(self.tls.ca_cert), "currency": "USD",
                "contact_click_id_fields": {"gclid": "GCLID__c"}, "timeout_seconds": 10,
            },
            {"type": "hubspot", "name": "hs", "host": self.hs.base_url, "max_attempts": 1},
        ]  # fmt: skip
        destinations = [
            {
                "type": "google_ads", "name": "gads", "transport": "ads_api",
                "customer_id": CUSTOMER, "conversion_action": ACTION,
                "endpoint": self.ads.endpoint, "token_uri": self.oauth.token_url,
                "ca_bundle": str(self.tls.ca_cert), "timeout_seconds": 10,
            },
            {
                "type": "google_ads", "name": "gads-dm", "transport": "data_manager",
                "customer_id": CUSTOMER, "conversion_action": ACTION,
                "data_manager_endpoint": f"http://{self.dm.host}", "token_uri": self.dm.token_uri,
                "timeout_seconds": 10,
            },
            {"type": "ga4", "name": "ga4", "measurement_id": MEASUREMENT_ID,
             "base_url": self.ga4.url, "timeout_seconds": 10},
            {"type": "meta", "name": "meta", "pixel_id": PIXEL, "graph_url": self.meta.url,
             "timeout_seconds": 10},
            {"type": "meta", "name": "meta-file", "pixel_id": PIXEL, "transport": "file",
             "output_dir": "out"},
        ]  # fmt: skip
        for block in sources + destinations:
            block.update(changes.get(block["name"], {}))
        return {"sources": sources, "destinations": destinations}

    def doctor(self, mapping: dict[str, Any] | None = None, *args: str) -> Result:
        path = self.tmp / "revsync.yaml"
        path.write_text(json.dumps(mapping or self.mapping()), encoding="utf-8")
        store = f"sqlite:///{self.tmp / 'revsync.db'}"
        open_store(store).dispose()  # an empty store: its checks pass
        result = runner.invoke(
            app, ["doctor", "--config", str(path), *args], env={"REVSYNC_DATABASE_URL": store}
        )
        for secret in SECRETS:
            assert secret not in result.output, f"secret {secret!r} printed"
        return result


def rows(result: Result) -> dict[tuple[str, str], tuple[str, str]]:
    """(target, check) -> (status, detail) from ``--json`` output."""
    payload = json.loads(result.stdout)
    assert payload["ok"] is (result.exit_code == 0)
    return {(r["target"], r["check"]): (r["status"], r["detail"]) for r in payload["checks"]}


def failing(report: dict[tuple[str, str], tuple[str, str]]) -> set[tuple[str, str]]:
    return {key for key, (status, _) in report.items() if status == "fail"}


@pytest.fixture
def world(tmp_path: Path, tls: TlsFiles, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("REVSYNC_SECRETS_DIR", raising=False)
    (tmp_path / "deals.csv").write_text(DEALS_CSV, encoding="utf-8")
    sf = SalesforceEmulator(tls, custom_fields={"Contact": {"GCLID__c": "string"}}, api_limit=1000)
    sf.start()
    sf.add_connected_app(SF_CLIENT_ID, client_secret=SF_SECRET, refresh_token=SF_REFRESH)
    hs = HubSpotEmulator(tokens={HS_TOKEN}, search_per_second=None, burst_limit=None)
    oauth = OAuthEmulator(clients={G_CLIENT_ID: G_SECRET}, refresh_tokens={G_REFRESH: G_CLIENT_ID})
    dm = DataManagerEmulator(tokens=set(), refresh_tokens={G_REFRESH})
    dm.add_conversion_action(CUSTOMER, ACTION)
    ga4 = GA4MPEmulator(streams={MEASUREMENT_ID: GA4_SECRET})
    meta = MetaGraphEmulator(tokens={META_TOKEN}, pixels={PIXEL})
    ads_emulator = GoogleAdsEmulator(tls, oauth, developer_tokens=(DEV_TOKEN,))
    with hs, oauth, dm, ga4, meta, ads_emulator as ads:
        ads.add_conversion_action(CUSTOMER, int(ACTION), "Closed won")
        ads.add_conversion_action(CUSTOMER, int(WEB_ACTION), "Web form", type="WEBPAGE")
        try:
            yield World(tmp_path, tls, sf, hs, oauth, ads, dm, ga4, meta)
        finally:
            sf.stop()


def test_a_healthy_setup_passes_every_check(world: World) -> None:
    result = world.doctor(None, "--json")
    assert result.exit_code == 0, result.output
    report = rows(result)
    assert {key for key, (status, _) in report.items() if status != "pass"} == {
        ("destination ga4", "api secret")
    }
    assert set(report) == {
        ("source crm-file", "file readable"), ("source crm-file", "columns"),
        ("source sf", "credentials"), ("source sf", "API budget"),
        ("source sf", "fields: Opportunity"), ("source sf", "fields: OpportunityContactRole"),
        ("source sf", "fields: Contact"),
        ("source hs", "credentials"), ("source hs", "API budget"), ("source hs", "currency"),
        ("source hs", "properties: deals"), ("source hs", "properties: contacts"),
        ("destination gads", "credentials"), ("destination gads", f"conversion action {ACTION}"),
        ("destination gads", "upload access"),
        ("destination gads-dm", "credentials"),
        ("destination gads-dm", f"conversion action {ACTION}"),
        ("destination ga4", "measurement ID"), ("destination ga4", "api secret"),
        ("destination ga4", "validation server"),
        ("destination meta", "credentials"), ("destination meta", "pixel"),
        ("destination meta-file", "output dir writable"),
        ("store", "store"), ("store", "last run"), ("store", "ledger"),
    }  # fmt: skip
    status, detail = report[("destination ga4", "api secret")]
    assert status == "warn" and "not verifiable" in detail and "does not check" in detail
    assert "UPLOAD_CLICKS" in report[("destination gads", f"conversion action {ACTION}")][1]
    assert (
        "cannot show its type" in report[("destination gads-dm", f"conversion action {ACTION}")][1]
    )
    assert not world.ga4.events and not world.ads.uploads and not world.dm.requests  # dry only
    assert (world.tmp / "out").is_dir() and not list((world.tmp / "out").iterdir())


def test_the_table_shows_symbols_and_the_secret_caveat(world: World) -> None:
    result = world.doctor()
    assert result.exit_code == 0, result.output
    for text in ("check", "target", "result", "detail", "✓", "!", "verifiable"):
        assert text in result.stdout
    assert "✗" not in result.stdout


def test_bad_credentials_fail_each_target_and_never_stop_the_others(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, wrong in (
        ("REVSYNC_SALESFORCE_REFRESH_TOKEN", "sf-wrong-refresh"),
        ("REVSYNC_HUBSPOT_ACCESS_TOKEN", "pat-wrong"),
        ("REVSYNC_GOOGLE_OAUTH_REFRESH_TOKEN", "1//wrong-refresh"),
        ("REVSYNC_META_ACCESS_TOKEN", "EAAB-wrong"),
    ):
        monkeypatch.setenv(name, wrong)
    result = world.doctor(None, "--json")
    assert result.exit_code == 1
    report = rows(result)
    assert failing(report) == {
        ("source sf", "credentials"), ("source hs", "credentials"),
        ("destination gads", "credentials"), ("destination gads-dm", "credentials"),
        ("destination meta", "credentials"),
    }  # fmt: skip
    assert "invalid_grant" in report[("source sf", "credentials")][1]
    assert "HTTP 401" in report[("source hs", "credentials")][1]
    assert "REVSYNC_GOOGLE_OAUTH_REFRESH_TOKEN" in report[("destination gads", "credentials")][1]
    assert "META_190" in report[("destination meta", "credentials")][1]
    assert report[("destination meta", "pixel")][0] == "skip"
    assert report[("destination ga4", "validation server")][0] == "pass"  # others still ran
    for wrong in ("sf-wrong-refresh", "pat-wrong", "1//wrong-refresh", "EAAB-wrong"):
        assert wrong not in result.output


def test_a_wrong_developer_token_fails_the_google_ads_credentials(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REVSYNC_GOOGLE_ADS_DEVELOPER_TOKEN", "devtoken-wrong")
    report = rows(world.doctor(None, "--json"))
    assert failing(report) == {("destination gads", "credentials")}
    assert "DEVELOPER_TOKEN_INVALID" in report[("destination gads", "credentials")][1]
    assert report[("destination gads", "conversion actions")][0] == "skip"


def test_missing_mapped_fields_are_named(world: World) -> None:
    mapping = world.mapping(
        sf={"click_id_fields": {"gclid": "GCLID__c"}, "fields": ["Type"]},
        hs={"deal_click_id_properties": {"gclid": "gclid"}, "deal_properties": ["dealname"]},
    )
    result = world.doctor(mapping, "--json")
    assert result.exit_code == 1
    report = rows(result)
    assert failing(report) == {
        ("source sf", "fields: Opportunity"),
        ("source hs", "properties: deals"),
    }
    detail = report[("source sf", "fields: Opportunity")][1]
    assert detail.startswith("GCLID__c not found on Opportunity") and "field-level" in detail
    assert report[("source sf", "fields: Contact")][0] == "pass"  # GCLID__c exists there
    assert report[("source hs", "properties: deals")][1].startswith("gclid not found on deals")


def test_a_single_currency_org_needs_a_currency(world: World) -> None:
    report = rows(world.doctor(world.mapping(sf={"currency": None}), "--json"))
    assert failing(report) == {("source sf", "fields: Opportunity")}
    assert "single-currency" in report[("source sf", "fields: Opportunity")][1]


def test_unknown_hubspot_won_stages_fail(world: World) -> None:
    mapping = world.mapping(hs={"won_stages": {"default": ["closedwon", "Won!"], "other": ["x"]}})
    report = rows(world.doctor(mapping, "--json"))
    assert failing(report) == {("source hs", "won stages")}
    assert "default/Won!" in report[("source hs", "won stages")][1]
    assert "pipeline other" in report[("source hs", "won stages")][1]


def test_stage_history_needs_the_crm_s_history_fields(world: World) -> None:
    """With ``stage_history``: Salesforce's OpportunityHistory fields, and HubSpot's entry
    date property of every stage, which a portal may lack for some stages."""
    mapping = world.mapping(sf={"stage_history": True}, hs={"stage_history": True})
    report = rows(world.doctor(mapping, "--json"))
    assert not failing(report)
    assert report[("source sf", "fields: OpportunityHistory")] == (
        "pass",
        "3 mapped fields present",
    )
    status, detail = report[("source hs", "stage history")]
    assert status == "pass" and "all 7 deal stages" in detail
    del world.hs.properties["deals"]["hs_v2_date_entered_closedwon"]
    report = rows(world.doctor(mapping, "--json"))
    assert failing(report) == {("source hs", "stage history")}
    detail = report[("source hs", "stage history")][1]
    assert detail.startswith("hs_v2_date_entered_closedwon not found") and "false" in detail


def test_an_almost_used_api_budget_fails(world: World) -> None:
    world.sf.api_usage = 850  # of 1,000; revsync stops at 80 %
    world.hs.daily_usage = 480_000  # of 500,000
    result = world.doctor(None, "--json")
    assert result.exit_code == 1
    report = rows(result)
    assert failing(report) == {("source sf", "API budget"), ("source hs", "API budget")}
    assert "api_budget_share 80%" in report[("source sf", "API budget")][1]
    assert "480,002 of 500,000" in report[("source hs", "API budget")][1]


def test_an_exhausted_salesforce_budget_skips_the_field_checks(world: World) -> None:
    world.sf.api_usage = world.sf.api_limit
    report = rows(world.doctor(None, "--json"))
    assert report[("source sf", "credentials")][0] == "pass"
    assert report[("source sf", "API budget")][0] == "fail"
    assert "REQUEST_LIMIT_EXCEEDED" in report[("source sf", "API budget")][1]
    assert report[("source sf", "fields")][0] == "skip"


def test_conversion_actions_of_the_wrong_type_or_missing_fail(world: World) -> None:
    by_pipeline = {"conversion_actions_by_pipeline": {"web": WEB_ACTION, "gone": MISSING_ACTION}}
    result = world.doctor(world.mapping(gads=by_pipeline, **{"gads-dm": by_pipeline}), "--json")
    assert result.exit_code == 1
    report = rows(result)
    assert failing(report) == {
        ("destination gads", f"conversion action {WEB_ACTION}"),
        ("destination gads", f"conversion action {MISSING_ACTION}"),
        ("destination gads-dm", f"conversion action {WEB_ACTION}"),
        ("destination gads-dm", f"conversion action {MISSING_ACTION}"),
    }
    assert "type WEBPAGE" in report[("destination gads", f"conversion action {WEB_ACTION}")][1]
    assert "not found" in report[("destination gads", f"conversion action {MISSING_ACTION}")][1]
    dm_detail = report[("destination gads-dm", f"conversion action {MISSING_ACTION}")][1]
    assert "INVALID_CONVERSION_ACTION_ID" in dm_detail
    assert report[("destination gads-dm", f"conversion action {ACTION}")][0] == "pass"


def test_a_token_not_allowed_to_upload_points_to_data_manager(world: World) -> None:
    world.ads.not_allowlisted_tokens.add(DEV_TOKEN)
    report = rows(world.doctor(None, "--json"))
    assert failing(report) == {("destination gads", "upload access")}
    assert "transport: data_manager" in report[("destination gads", "upload access")][1]


def test_an_unknown_pixel_fails_the_pixel_check(world: World) -> None:
    result = world.doctor(world.mapping(meta={"pixel_id": "999000999"}), "--json")
    assert result.exit_code == 1
    report = rows(result)
    assert failing(report) == {("destination meta", "pixel")}
    assert report[("destination meta", "credentials")][0] == "pass"
    assert "999000999 not reachable" in report[("destination meta", "pixel")][1]
    assert "does not exist" in report[("destination meta", "pixel")][1]


def test_the_ga4_validation_server_refusing_the_sample_fails(world: World) -> None:
    report = rows(world.doctor(world.mapping(ga4={"measurement_id": "G-UNKNOWN9"}), "--json"))
    assert failing(report) == {("destination ga4", "validation server")}
    assert "Unknown measurement_id" in report[("destination ga4", "validation server")][1]


def test_file_source_and_file_destination_problems(world: World) -> None:
    (world.tmp / "no-currency.csv").write_text("deal_id,status,amount,close_date,email\n")
    (world.tmp / "blocker").write_text("a file where a directory should be")
    mapping = world.mapping(**{"crm-file": {"path": "no-currency.csv"},
                               "meta-file": {"output_dir": "blocker/out"}})  # fmt: skip
    report = rows(world.doctor(mapping, "--json"))
    assert failing(report) == {
        ("source crm-file", "columns"),
        ("destination meta-file", "output dir writable"),
    }
    assert report[("source crm-file", "columns")][1].startswith("missing currency")
    report = rows(world.doctor(world.mapping(**{"crm-file": {"path": "gone.csv"}}), "--json"))
    assert failing(report) == {("source crm-file", "file readable")}
    assert "No such file" in report[("source crm-file", "file readable")][1]


def test_a_missing_secret_fails_that_target_only(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REVSYNC_META_ACCESS_TOKEN")
    result = world.doctor(None, "--json")
    assert result.exit_code == 1
    report = rows(result)
    assert failing(report) == {("destination meta", "configuration")}
    assert "REVSYNC_META_ACCESS_TOKEN" in report[("destination meta", "configuration")][1]


def test_a_hung_check_times_out_and_the_others_finish(world: World) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        port = silent.getsockname()[1]
        mapping = world.mapping(ga4={"base_url": f"http://127.0.0.1:{port}"})
        started = time.monotonic()
        result = world.doctor(mapping, "--json", "--timeout", "1")
        assert time.monotonic() - started < 15
    report = rows(result)
    assert failing(report) == {("destination ga4", "timeout")}
    assert "no answer within 1s after 'api secret'" in report[("destination ga4", "timeout")][1]
    assert report[("destination meta", "pixel")][0] == "pass"


def test_a_bad_mapping_file_exits_2(world: World) -> None:
    path = world.tmp / "revsync.yaml"
    path.write_text("sources:\n  - name: crm\n    type: file\n    colour: red\n")
    result = runner.invoke(app, ["doctor", "--config", str(path)])
    assert result.exit_code == 2
    assert "colour" in result.output

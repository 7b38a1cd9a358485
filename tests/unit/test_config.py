from __future__ import annotations

from pathlib import Path

import pytest

from revsync.config.destinations import GoogleAdsDestination
from revsync.config.loader import load_config
from revsync.config.mapping import FileSource
from revsync.config.settings import Settings
from revsync.errors import ConfigError

EXAMPLE = Path(__file__).parents[2] / "config" / "revsync.example.yaml"


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "revsync.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.problems


def test_example_file_is_valid_and_paths_resolve_next_to_it() -> None:
    config = load_config(EXAMPLE)
    source = config.sources[0]
    assert isinstance(source, FileSource)
    assert source.path == EXAMPLE.parent / "deals.csv"
    google = config.destinations[0]
    assert isinstance(google, GoogleAdsDestination)
    assert google.customer_id == "1234567890"


def test_every_problem_names_line_key_path_and_hint(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "version: 1\n"
        "sources:\n"
        "  - name: crm\n"
        "    type: file\n"
        "    pathh: deals.csv\n"
        "destinations:\n"
        "  - name: g\n"
        "    type: google_ads\n"
        "    customer_id: abc\n"
        "    conversion_action: '1'\n"
        "attribution:\n"
        "  model: lineer\n",
    )
    text = "\n".join(found)
    assert "revsync.yaml:3: sources[0].path: Field required" in text
    assert "revsync.yaml:5: sources[0].pathh: Extra inputs are not permitted" in text
    assert "did you mean `path`?" in text
    assert "revsync.yaml:9: destinations[0].customer_id" in text
    assert "revsync.yaml:12: attribution.model" in text
    assert len(found) == 4


def test_unknown_block_type_lists_the_choices(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, "sources:\n  - name: crm\n    type: pipedrive\n")
    assert ":3: sources[0].type" in problem
    assert "'file', 'salesforce', 'hubspot'" in problem


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, "sources:\n  - name: [unclosed\n")
    assert "revsync.yaml:" in problem
    assert "invalid YAML" in problem


def test_missing_file_says_how_to_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="revsync init"):
        load_config(tmp_path / "nope.yaml")


def test_cross_block_rules(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "sources:\n"
        "  - {name: crm, type: file, path: a.csv, timezone: Mars/Olympus}\n"
        "  - {name: crm, type: file, path: b.csv}\n",
    )
    text = "\n".join(found)
    assert "unknown IANA time zone 'Mars/Olympus'" in text


def test_duplicate_names_rejected(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "sources:\n  - {name: crm, type: file, path: a.csv}\n  - {name: crm, type: file, path: b.csv}\n",
    )
    (problem,) = found  # at the second block's name, not line 1
    assert problem.endswith("revsync.yaml:3: sources[1].name: duplicate name 'crm' (sources[0])")


def test_secrets_are_secretstr_and_never_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVSYNC_META_ACCESS_TOKEN", "EAAB-super-secret")
    settings = Settings()
    assert settings.meta_access_token is not None
    assert settings.meta_access_token.get_secret_value() == "EAAB-super-secret"
    assert "EAAB-super-secret" not in repr(settings)
    assert "EAAB-super-secret" not in str(settings.model_dump())


def test_secrets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from revsync.config.settings import load_settings

    (tmp_path / "revsync_hubspot_access_token").write_text("pat-123")
    monkeypatch.setenv("REVSYNC_SECRETS_DIR", str(tmp_path))
    token = load_settings().hubspot_access_token
    assert token is not None and token.get_secret_value() == "pat-123"


def test_the_example_documents_every_key() -> None:
    from pydantic import BaseModel

    from revsync.config import destinations, mapping
    from revsync.config.collector import CollectorConfig, CollectorSite
    from revsync.config.reports import ReportsConfig

    text = EXAMPLE.read_text()
    blocks: list[type[BaseModel]] = [
        mapping.FileSource, mapping.SalesforceSource, mapping.HubSpotSource,
        destinations.GoogleAdsDestination, destinations.Ga4Destination,
        destinations.MetaDestination, mapping.MatchingConfig, mapping.AttributionConfig,
        mapping.ChannelRule, mapping.PrivacyConfig, mapping.RevsyncConfig, CollectorConfig,
        CollectorSite, ReportsConfig,
    ]  # fmt: skip
    missing = sorted(
        f"{block.__name__}.{name}"
        for block in blocks
        for name in block.model_fields
        if f"{name}:" not in text
    )
    assert missing == []


def test_lease_seconds_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    assert Settings().lease_seconds == 600
    monkeypatch.setenv("REVSYNC_LEASE_SECONDS", "45")
    assert Settings().lease_seconds == 45
    monkeypatch.setenv("REVSYNC_LEASE_SECONDS", "5")  # shorter than a page or a batch takes
    with pytest.raises(ValidationError, match="lease_seconds"):
        Settings()


@pytest.mark.parametrize(
    ("auth", "extra", "message"),
    [
        ("client_credentials", {"token_url": "https://login.salesforce.com/services/oauth2/token"},
         "only on your My Domain"),
        ("client_credentials", {"token_url": "https://test.salesforce.com/services/oauth2/token"},
         "only on your My Domain"),
        ("jwt", {"jwt_audience": "https://acme.my.salesforce.com"}, "not the My Domain"),
    ],
)  # fmt: skip
def test_salesforce_flows_that_cannot_work_are_refused_with_a_hint(
    auth: str, extra: dict[str, str], message: str
) -> None:
    from pydantic import ValidationError

    from revsync.config.mapping import SalesforceSource

    values = {"type": "salesforce", "name": "sf", "auth": auth,
              "instance_url": "https://acme.my.salesforce.com", **extra}  # fmt: skip
    with pytest.raises(ValidationError, match=message):
        SalesforceSource(**values)
    ok = {**values, "token_url": "https://acme.my.salesforce.com/services/oauth2/token",
          "jwt_audience": "https://login.salesforce.com"}  # fmt: skip
    assert SalesforceSource(**ok).auth == auth

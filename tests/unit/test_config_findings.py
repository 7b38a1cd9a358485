"""Issue #14, mapping file and settings: each finding of the fuzzing pass, as the admin
meets it. Every command that loads a broken mapping exits 2 with ``file:line: key.path:
problem``; none ends in a traceback, none accepts what sync would crash on or misread."""

from __future__ import annotations

import codecs
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from revsync.cli import app

EXAMPLE = (Path(__file__).parents[2] / "config" / "revsync.example.yaml").read_text()


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line containing ``needle``."""
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def swap(old: str, new: str, below: int = 0) -> Callable[[Path], tuple[bytes, int]]:
    """The example with its first ``old`` replaced; the problem is ``below`` lines under
    the replacement's first line."""

    def make(folder: Path) -> tuple[bytes, int]:
        assert old in EXAMPLE, old
        line = EXAMPLE[: EXAMPLE.index(old)].count("\n") + 1 + below
        return EXAMPLE.replace(old, new, 1).encode(), line

    return make


def raw(data: bytes, line: int) -> Callable[[Path], tuple[bytes, int]]:
    return lambda folder: (data, line)


def _output_dir_is_a_file(folder: Path) -> tuple[bytes, int]:
    (folder / "out.txt").write_text("not a folder")
    text = EXAMPLE.replace("output_dir: out", "output_dir: out.txt", 1)
    return text.encode(), line_of(text, "output_dir: out.txt")


def _export_is_a_folder(folder: Path) -> tuple[bytes, int]:
    (folder / "deals.csv").mkdir()
    return EXAMPLE.encode(), line_of(EXAMPLE, "path: deals.csv")


_CRM = "  - name: crm"
_MERGE = "defaults: &defaults {overlap_minutes: 5, bogus: 1}\n"
FINDINGS: dict[str, tuple[Callable[[Path], tuple[bytes, int]], str, str]] = {
    # traceback instead of exit 2
    "zone_is_a_region": (
        swap("timezone: America/New_York", "timezone: America"),
        "sources[0].timezone", "'America' is a region, not a zone"),
    "zone_name_over_255_chars": (
        swap("timezone: America/New_York", "timezone: " + "Z" * 300),
        "sources[0].timezone", "not an IANA time zone name"),
    "latin1_e_acute": (
        lambda folder: (EXAMPLE.replace("# unique", "# uniqué").encode("latin-1"),
                        line_of(EXAMPLE, "# unique")),
        "not UTF-8 (byte 0xe9", "save the file as UTF-8"),
    "utf16": (raw(EXAMPLE.encode("utf-16"), 1), "the file is UTF-16", "save it as UTF-8"),
    "utf16_without_bom": (raw(EXAMPLE.encode("utf-16-le"), 1), "control character U+0000", "UTF-16"),
    "nul_character": (swap(_CRM, _CRM + "\0"), "control character U+0000", "remove it"),
    "bel_character": (swap(_CRM, _CRM + "\a"), "control character U+0007", "remove it"),
    "5000_levels_of_flow_nesting": (
        swap("won_stages: []", "won_stages: " + "[" * 5000 + "]" * 5000),
        "sources[0].won_stages", "nested deeper than 32 levels"),
    "300_levels_of_block_nesting": (
        swap("won_stages: []", "won_stages:\n" + "".join(
            " " * (6 + 2 * i) + "-\n" for i in range(300)), below=30),
        "sources[0].won_stages", "nested deeper than 32 levels"),
    "bad_key_inside_a_merge": (
        lambda folder: ((_MERGE + EXAMPLE.replace(_CRM, _CRM + "\n    <<: *defaults", 1))
                        .encode(), 1),
        "sources[0].bogus", "Extra inputs are not permitted"),
    "bad_key_inside_a_tagged_node": (
        swap("sources:\n  - name: crm", "sources: !list\n  - !block\n    bogus: 1\n    name: crm", 2),
        "sources[0].bogus", "Extra inputs are not permitted"),
    # accepted by validate, then crash or misread at sync
    "account_timezone_nowhere": (
        swap("account_timezone: America/New_York", "account_timezone: Nowhere/Land"),
        "destinations[0].account_timezone", "unknown IANA time zone 'Nowhere/Land'"),
    "huge_overlap_minutes": (
        swap("overlap_minutes: 10", "overlap_minutes: 99999999999999"),
        "sources[0].overlap_minutes", "less than or equal to 525600"),
    "output_dir_is_a_file": (
        _output_dir_is_a_file, "destinations[0].output_dir", "is a file, not a folder"),
    "close_time_1700": (
        swap('close_time: "17:00"', "close_time: 1700"),
        "sources[0].close_time", 'quoted "HH:MM" string'),
    "close_time_yaml11_sexagesimal": (
        lambda folder: (("%YAML 1.1\n---\n" + EXAMPLE.replace('"17:00"', "17:00")).encode(),
                        line_of(EXAMPLE, "close_time") + 2),
        "sources[0].close_time", 'quoted "HH:MM" string'),
    "overlap_minutes_true": (
        swap("overlap_minutes: 10", "overlap_minutes: true"),
        "sources[0].overlap_minutes", "valid integer"),
    "phone_region_usa": (
        swap("default_phone_region: US", "default_phone_region: USA"),
        "matching.default_phone_region", "not a 2-letter region"),
    "meta_api_version_banana": (
        swap("api_version: v26.0", "api_version: banana"),
        "destinations[2].api_version", 'looks like "v26.0"'),
    "ga4_base_url_not_a_url": (
        swap("base_url: https://www.google-analytics.com", "base_url: www.google-analytics"),
        "destinations[1].base_url", "an http:// or https:// URL"),
    "meta_graph_url_not_a_url": (
        swap("graph_url: https://graph.facebook.com", "graph_url: graph.facebook.com"),
        "destinations[2].graph_url", "an http:// or https:// URL"),
    "data_processing_options_xyz": (
        swap("data_processing_options: []", "data_processing_options: [XYZ]"),
        "destinations[2].data_processing_options[0]", "'LDU'"),
    "no_match_keys": (
        swap("keys: [email, phone, crm_id, click_id]", "keys: []"),
        "matching.keys", "at least 1 item"),
    "export_is_a_folder": (_export_is_a_folder, "sources[0].path", "is a folder"),
    "export_of_unknown_type": (
        swap("path: deals.csv", "path: deals.xlsx"),
        "sources[0].path", "unknown file type '.xlsx'"),
    # cross-block errors at their own line and key, a duplicate key without its values
    "duplicate_destination_name": (
        swap("  - name: ga4", "  - name: google-ads"),
        "destinations[1].name", "duplicate name 'google-ads' (destinations[0])"),
    "unknown_source": (
        swap("sources: []   ", "sources: [nope]"),
        "destinations[0].sources[0]", "unknown source 'nope'; known: crm"),
    "duplicate_yaml_key": (
        swap("  default_phone_region: US", "  default_phone_region: US\n  lookback_days: 30", 1),
        "matching.lookback_days: duplicate key (first at line", "keep one"),
    # found by tests/unit/test_config_fuzz.py and the property tests
    "markup_in_a_quoted_value": (
        swap("sources: []   ", 'sources: ["[/red]"]'),
        "destinations[0].sources[0]", "unknown source '[/red]'"),
    "a_problem_at_line_100_is_not_an_emoji": (
        lambda folder: (("\n" * 99 + "bogus: 1\nsources: []\n").encode(), 100),
        "bogus", "Extra inputs are not permitted"),
    "an_impossible_date": (
        swap("start_date: null", "start_date: 2026-13-01"),
        "start_date", "not a valid timestamp value"),
    "a_core_tag_on_the_wrong_text": (
        swap("version: 1", "version: !!int one"), "version", "not a valid int value"),
    "version_true": (swap("version: 1", "version: true"), "version", "Input should be 1"),
    # found in review: accepted, then a crash at sync
    "export_name_over_255_bytes": (
        swap("path: deals.csv", "path: " + "d" * 300 + ".csv"),
        "sources[0].path", "longer than 255 bytes"),
    "output_dir_with_nul": (
        swap("output_dir: out", 'output_dir: "out\\0"'),
        "destinations[0].output_dir", "NUL character"),
    "timeout_too_long_for_a_socket": (
        swap("    timeout_seconds: 30\n    sources", "    timeout_seconds: 1e300\n    sources"),
        "destinations[0].timeout_seconds", "less than or equal to 3600"),
    "a_bad_block_type_at_its_type_line": (
        swap("    type: ga4", "    type: ga5"), "destinations[1].type", "'google_ads', 'ga4'"),
}  # fmt: skip


@pytest.mark.parametrize("finding", FINDINGS)
def test_a_broken_mapping_exits_2_naming_file_line_and_key(tmp_path: Path, finding: str) -> None:
    make, where, problem = FINDINGS[finding]
    data, line = make(tmp_path)
    path = tmp_path / "revsync.yaml"
    path.write_bytes(data)
    result = CliRunner().invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.output
    assert f"{path}:{line}: {where}" in result.output
    assert problem in result.output


def test_the_duplicate_key_message_names_both_lines_and_no_values(tmp_path: Path) -> None:
    path = tmp_path / "revsync.yaml"
    path.write_text("sources: []\nmatching:\n  keys: [email, phone]\nmatching:\n  keys: [email]\n")
    result = CliRunner().invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error {path}:4: matching: duplicate key (first at line 2); keep one"
    )


def test_sync_refuses_a_region_for_a_zone_before_touching_the_store(tmp_path: Path) -> None:
    path = tmp_path / "revsync.yaml"
    path.write_text(EXAMPLE.replace("timezone: America/New_York", "timezone: America", 1))
    url = f"sqlite:///{tmp_path / 'revsync.db'}"
    result = CliRunner().invoke(app, ["sync", "-c", str(path), "--database-url", url])
    assert result.exit_code == 2, result.output
    assert f"{path}:{line_of(EXAMPLE, 'timezone:')}: sources[0].timezone" in result.output
    assert not (tmp_path / "revsync.db").exists()


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("REVSYNC_LOG_LEVEL", "LOUD", "REVSYNC_LOG_LEVEL: Value error, use one of DEBUG, INFO"),
        ("REVSYNC_LEASE_SECONDS", "abc", "REVSYNC_LEASE_SECONDS: Input should be a valid integer"),
        ("REVSYNC_LEASE_SECONDS", "5", "REVSYNC_LEASE_SECONDS: Input should be greater than or"),
    ],
)
@pytest.mark.parametrize("command", [["config", "validate"], ["sync"], ["doctor"]])
def test_a_bad_setting_exits_2_naming_the_variable(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
    variable: str,
    value: str,
    problem: str,
) -> None:
    (tmp_path / "revsync.yaml").write_text(EXAMPLE)
    monkeypatch.setenv("REVSYNC_CONFIG", str(tmp_path / "revsync.yaml"))
    monkeypatch.setenv("REVSYNC_META_ACCESS_TOKEN", "EAAB-secret-token-value")
    monkeypatch.setenv(variable, value)
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.output.startswith(f"error {problem}")
    assert "EAAB-secret-token-value" not in result.output


def test_log_level_is_read_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    from revsync.config.settings import load_settings

    monkeypatch.setenv("REVSYNC_LOG_LEVEL", " debug ")
    assert load_settings().log_level == "DEBUG"


def test_what_the_rules_still_accept(tmp_path: Path) -> None:
    """Plain (YAML 1.2) HH:MM, a lower-case region, a legacy zone name, a localhost URL
    with a port, a UTF-8 BOM, and a merge of valid keys."""
    from revsync.config.loader import load_config

    text = (
        EXAMPLE.replace('close_time: "17:00"', "close_time: 17:30", 1)
        .replace("default_phone_region: US", "default_phone_region: gb")
        .replace("account_timezone: America/New_York", "account_timezone: US/Eastern")
        .replace("base_url: https://www.google-analytics.com", "base_url: http://127.0.0.1:8080")
        .replace(_CRM, "  - &crm\n    name: crm", 1)
        .replace(
            "\n# How a deal", "  - <<: *crm\n    name: crm-2\n    path: more.jsonl\n# How a deal"
        )
    )
    path = tmp_path / "revsync.yaml"
    path.write_bytes(codecs.BOM_UTF8 + text.encode())
    config = load_config(path)
    first, second = config.sources
    assert first.close_time is not None and first.close_time.isoformat() == "17:30:00"
    assert (second.name, second.timezone, second.close_time) == (
        "crm-2",
        first.timezone,
        first.close_time,
    )
    assert config.matching.default_phone_region == "GB"


def test_a_mapping_path_too_long_to_look_up_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found in review: ``import`` asked whether the file exists, and crashed on the answer."""
    (tmp_path / "ids.csv").write_text("visitor_id,observed_at,email\n")
    monkeypatch.setenv("REVSYNC_CONFIG", str(tmp_path / ("m" * 300 + ".yaml")))
    url = f"sqlite:///{tmp_path / 'revsync.db'}"
    for command in (["import", "identities", str(tmp_path / "ids.csv"), "--database-url", url],
                    ["config", "validate"], ["sync", "--database-url", url]):  # fmt: skip
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2, (command, result.output, result.exception)
        assert "File name too long" in result.output

"""``config validate`` shows every problem in one pass: field errors and cross-block errors
together, each at its own line; Google IDs are checked as Google defines them."""

from __future__ import annotations

from pathlib import Path

import pytest

from revsync.config.loader import load_config
from revsync.errors import ConfigError

MAPPING = """\
sources:
  - {name: crm, type: file, path: deals.csv, overlap_minutes: abc}
destinations:
  - {name: g, type: google_ads, customer_id: "123-456-78901", conversion_action: "Closed won",
     sources: [nope]}
  - {name: g, type: ga4, measurement_id: G-ABCDEFG}
"""


def test_field_and_cross_block_errors_come_together_each_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "deals.csv").write_text("deal_id\n")
    path = tmp_path / "revsync.yaml"
    path.write_text(MAPPING)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    problems = "\n".join(caught.value.problems)
    assert f"{path}:2: sources[0].overlap_minutes:" in problems
    assert (
        f"{path}:4: destinations[0].customer_id: Value error, a customer ID is 10 digits"
        in problems
    )
    assert "'Closed won' is not a conversion action ID: use the action's number" in problems
    assert f"{path}:5: destinations[0].sources[0]: unknown source 'nope'" in problems
    assert f"{path}:6: destinations[1].name: duplicate name 'g'" in problems
    assert len(caught.value.problems) == 5


def test_a_meta_test_event_code_left_on_is_a_warning_at_its_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from revsync.cli import app

    (tmp_path / "deals.csv").write_text("deal_id\n")
    path = tmp_path / "revsync.yaml"
    path.write_text("sources:\n  - {name: crm, type: file, path: deals.csv}\ndestinations:\n"
                    "  - name: m\n    type: meta\n    pixel_id: '123'\n"
                    "    test_event_code: TEST123\n")  # fmt: skip
    result = CliRunner().invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 0
    assert f"warning {path}:7: destinations[0].test_event_code: set, so Meta" in result.output


def test_the_starter_files_placeholders_are_warned_about_once_a_destination_is_live(
    tmp_path: Path,
) -> None:
    from typer.testing import CliRunner

    from revsync.cli import app

    (tmp_path / "deals.csv").write_text("deal_id\n")
    path = tmp_path / "revsync.yaml"
    live = ("sources:\n  - {name: crm, type: file, path: deals.csv}\ndestinations:\n"
            "  - {name: ga4, type: ga4, transport: http, measurement_id: G-XXXXXXXXXX}\n"
            "  - {name: try, type: ga4, transport: file, measurement_id: G-XXXXXXXXXX}\n")  # fmt: skip
    path.write_text(live)
    result = CliRunner().invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 0
    warnings = [line for line in result.output.splitlines() if line.startswith("warning")]
    assert warnings == [f"warning {path}:4: destinations[0].measurement_id: still the starter "
                        "file's placeholder: use your account's own"]  # fmt: skip

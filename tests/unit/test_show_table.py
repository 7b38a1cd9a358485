"""Tables never cut a figure: on a narrow terminal labels wrap, and a table whose figures
alone are wider than the screen prints wider (the terminal wraps lines, nothing is lost)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.table import Table

from revsync.cli import base


@pytest.mark.parametrize("figures", [3, 9])
def test_no_figure_is_cut_on_an_80_column_terminal(
    figures: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    screen = io.StringIO()
    monkeypatch.setattr(base, "out", Console(file=screen, width=80, force_terminal=True,
                                             color_system=None))  # fmt: skip
    table = Table()
    table.add_column("campaign")
    values = [f"{1_234_567.89 * (n + 1):,.2f}" for n in range(figures)]
    for n in range(figures):
        table.add_column(f"figure {n}", justify="right")
    table.add_row("a campaign name long enough to need wrapping on a small screen", *values)
    base.show_table(table)
    printed = screen.getvalue()
    assert "…" not in printed
    for value in values:
        assert value in printed
    for word in ("campaign", "wrapping", "screen"):  # the label wraps, whole
        assert word in printed

"""The dashboard (``revsync report all --html``) in a real browser: Debian's chromium via
Playwright, the file opened from disk with every network request refused. Run by
``test_browser.py`` in a process of its own, with a deadline."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from revsync.cli import app
from tests.e2e.collector_site import CHROMIUM_ARGS

CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists() and not os.environ.get("CI"):
    pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)", allow_module_level=True)

from playwright.sync_api import Page, sync_playwright  # noqa: E402

CHARTS = (
    "kpis",
    "revenue-by-source",
    "funnel",
    "spend-vs-revenue",
    "pipeline",
    "models",
    "upload-health",
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``revsync demo`` (its store, spend and report.html) and the reports' JSON."""
    root = tmp_path_factory.mktemp("demo")
    runner = CliRunner()
    done = runner.invoke(app, ["demo", str(root / "d"), "--visitors", "1500"])
    assert done.exit_code == 0, done.output
    store = ["--config", str(root / "d" / "revsync.yaml"),
             "--database-url", f"sqlite:///{root / 'd' / 'revsync.db'}"]  # fmt: skip

    def report(*args: str) -> Any:
        result = runner.invoke(app, ["report", *args, *store, "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    return {
        "report": report,
        "html": root / "d" / "report.html",
        "source": report("sources", "--by", "source"),
        "campaign": report("sources", "--by", "campaign"),
        "models": report("models", "--workers", "1"),
        "uploads": report("uploads"),
        "pipeline": report("pipeline"),
    }


@pytest.fixture(scope="module")
def page(demo: dict[str, Any]) -> Iterator[tuple[Page, list[str], list[str]]]:
    # The browser keeps the real clock (.ci/clock-ahead preloads libfaketime, under which
    # chromium crawls).
    faked = {k: os.environ.pop(k) for k in ("LD_PRELOAD", "FAKETIME") if k in os.environ}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            requests: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))

            def refuse(route: Any) -> None:
                if not route.request.url.startswith("file://"):
                    requests.append(route.request.url)
                    route.abort()
                else:
                    route.continue_()

            page.route("**/*", refuse)
            page.goto(demo["html"].as_uri())
            page.wait_for_function(
                f"document.querySelectorAll('.chart .main-svg').length >= {len(CHARTS)}"
            )
            yield page, errors, requests
            browser.close()
    finally:
        os.environ.update(faked)


def _trace(page: Page, chart: str, index: int, axis: str) -> list[Any]:
    return page.evaluate(f"document.getElementById({chart!r}).data[{index}].{axis}")


def test_every_chart_renders_offline_without_console_errors(page: Any) -> None:
    view, errors, requests = page
    for chart in CHARTS:
        drawn = view.evaluate(
            f"document.getElementById({chart!r}).querySelectorAll('.main-svg').length"
        )
        assert drawn > 0, chart
        assert view.evaluate(f"document.getElementById({chart!r}).data.length") > 0, chart
    assert errors == []
    assert requests == []  # plotly.js is inlined: the file opens offline


def test_the_charts_show_the_numbers_of_the_json_reports(page: Any, demo: dict[str, Any]) -> None:
    view, _, _ = page
    rows = demo["source"]["rows"]
    currency = view.evaluate("document.getElementById('revenue-by-source').data[0].name")
    cur = currency.split("(")[1].rstrip(")")
    assert _trace(view, "revenue-by-source", 0, "x") == [r["source"] for r in rows]
    assert _trace(view, "revenue-by-source", 0, "y") == [
        float(r["currencies"][cur]["revenue"]) if cur in r["currencies"] else None for r in rows
    ]
    assert _trace(view, "revenue-by-source", 1, "y") == [
        float(r["currencies"][cur]["lead_value"]) if cur in r["currencies"] else None for r in rows
    ]
    total = demo["source"]["total"]
    funnel = _trace(view, "funnel", 0, "x")
    won = sum(float(m["won_deals"]) for m in total["currencies"].values())
    deals = demo["pipeline"]["total"]["deals"]
    assert funnel == [total["visits"], total["leads"], deals, won]
    stages = demo["pipeline"]["stages"]
    assert _trace(view, "pipeline", 0, "x") == [s["stage"] for s in stages]
    assert _trace(view, "pipeline", 0, "y") == [s["entered"] for s in stages]
    spent = [r for r in demo["campaign"]["rows"] if r["currencies"].get("USD", {}).get("spend")]
    assert _trace(view, "spend-vs-revenue", 0, "x") == [r["campaign"] for r in spent]
    assert _trace(view, "spend-vs-revenue", 0, "y") == [
        float(r["currencies"]["USD"]["spend"]) for r in spent
    ]
    models = [r for r in demo["models"]["rows"] if r["currency"] == "USD"]
    assert _trace(view, "models", 0, "x") == [r["channel"] for r in models]
    assert _trace(view, "models", 0, "y") == [float(r["first_touch"]) for r in models]
    uploads = demo["uploads"]["destinations"]
    assert _trace(view, "upload-health", 0, "x") == [d["destination"] for d in uploads]
    for index, state in enumerate(("sent", "rejected", "pending", "skipped")):
        assert _trace(view, "upload-health", index, "y") == [d[state] for d in uploads]
    # the tables under the charts hold the same figures
    cells = view.locator("#spend-vs-revenue + table tbody tr").first.locator("td")
    first = spent[0]
    assert cells.nth(0).inner_text() == first["campaign"]


def test_each_kpi_chart_shows_the_kpis_report_of_its_period(
    page: Any, demo: dict[str, Any]
) -> None:
    """The dashboard's KPIs (the last 30 days against the 30 before) are those of
    ``revsync report kpis`` for the same days: a small chart per KPI, previous then this
    period, its change in the title."""
    view, _, _ = page
    embedded = view.evaluate("data.reports.kpis")
    first, last = (date.fromisoformat(d) for d in embedded["previous_period"])
    start = last + timedelta(days=1)
    kpis = demo["report"]("kpis", "--from", f"{start}", "--to", f"{start + (last - first)}")
    assert kpis["previous_period"] == embedded["previous_period"]
    cur = kpis["currency"]
    now, before = kpis["current"], kpis["previous"]
    expected = {name: [before[name], now[name]] for name in
                ("visits", "leads", "won_deals", "customers", "new_customers")}  # fmt: skip
    for name in ("revenue", "spend", "lead_value", "average_deal", "arpc", "cltv", "cpl", "cac"):
        expected[name] = [float(m["currencies"][cur][name]) for m in (before, now)]
    traces = view.evaluate("document.getElementById('kpis').data")
    assert [t["name"] for t in traces] == [n.replace("_", " ") for n in expected]
    assert {t["name"]: t["y"] for t in traces} == {
        n.replace("_", " "): v for n, v in expected.items()
    }
    layout = view.evaluate("document.getElementById('kpis').layout")
    revenue = layout[f"xaxis{list(expected).index('revenue') + 1}"]["title"]["text"]
    change = (expected["revenue"][1] - expected["revenue"][0]) / expected["revenue"][0]
    assert revenue == f"revenue ({cur}) {change:+.1%}"

"""The dashboard: every report's figures in one HTML file that opens offline (plotly.js is
inlined once; no request at view time), charts first, the exact figures in tables below
each, and the reports' JSON embedded as ``#revsync-data`` for anyone who wants the numbers.

Money is charted in one currency per chart (the reporting currency when the figures were
converted, else the one with the most revenue) and the chart says which; the tables show
every currency."""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

Rows = Sequence[dict[str, Any]]


@dataclass
class Dashboard:
    """The reports' JSON forms (``as_dict`` of each); a missing one is left out."""

    title: str
    subtitle: str
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)  # by -> report
    models: dict[str, Any] | None = None
    kpis: dict[str, Any] | None = None
    uploads: dict[str, Any] | None = None
    pipeline: dict[str, Any] | None = None


@dataclass
class Chart:
    """One chart: its element ID, heading and plotly figure (``data`` + ``layout``)."""

    id: str
    heading: str
    data: list[dict[str, Any]]
    layout: dict[str, Any]
    table: str = ""
    tall: bool = False  # a grid of small charts


def render(board: Dashboard) -> str:
    """The whole page."""
    from plotly.offline import get_plotlyjs

    charts = list(charts_of(board))
    body = "\n".join(_section(chart) for chart in charts) or "<p>No figures yet.</p>"
    payload = json.dumps(
        {"charts": {c.id: c.data for c in charts}, "reports": _reports(board)}
    ).replace("</", "<\\/")
    plots = "\n".join(
        f"Plotly.newPlot({json.dumps(c.id)}, data.charts[{json.dumps(c.id)}], "
        f"{json.dumps(c.layout)}, {{responsive: true, displaylogo: false}});"
        for c in charts
    )
    return _PAGE.format(
        title=html.escape(board.title),
        subtitle=html.escape(board.subtitle),
        plotly=get_plotlyjs(),
        body=body,
        payload=payload,
        plots=plots,
    )


def charts_of(board: Dashboard) -> Iterable[Chart]:
    """The charts the reports at hand allow, in reading order."""
    for build in _BUILDERS:
        chart = build(board)
        if chart is not None:
            yield chart


def _reports(board: Dashboard) -> dict[str, Any]:
    named = {
        "models": board.models,
        "kpis": board.kpis,
        "uploads": board.uploads,
        "pipeline": board.pipeline,
    }
    return {"sources": board.sources, **{k: v for k, v in named.items() if v is not None}}


def main_currency(rows: Rows) -> str | None:
    """The currency with the most revenue over ``rows`` (sources report rows)."""
    revenue: dict[str, Decimal] = {}
    for row in rows:
        for cur, money in row["currencies"].items():
            revenue[cur] = revenue.get(cur, Decimal(0)) + Decimal(money["revenue"])
    return max(sorted(revenue), key=lambda cur: revenue[cur], default=None)


def _number(value: str | int | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, str) and "/" in value:
        numerator, denominator = value.split("/")
        return int(numerator) / int(denominator)
    return float(value)


def _money(rows: Rows, cur: str, name: str) -> list[float | None]:
    return [_number(row["currencies"].get(cur, {}).get(name)) for row in rows]


def _revenue_by_source(board: Dashboard) -> Chart | None:
    groupings: list[str] = [*("source", "channel"), *board.sources]
    by = next((b for b in groupings if b in board.sources), "channel")
    report = board.sources.get(by)
    if not report or not report["rows"]:
        return None
    rows = report["rows"]
    cur = main_currency(rows) or ""
    keys = [row[by] for row in rows]
    return Chart(
        "revenue-by-source",
        f"Revenue and lead value by {by} ({cur}, model {report['model']})",
        [
            {
                "type": "bar",
                "name": f"revenue ({cur})",
                "x": keys,
                "y": _money(rows, cur, "revenue"),
                "offsetgroup": 1,
            },
            {
                "type": "bar",
                "name": f"lead value ({cur})",
                "x": keys,
                "y": _money(rows, cur, "lead_value"),
                "yaxis": "y2",
                "offsetgroup": 2,
            },
        ],
        {
            "barmode": "group",
            "legend": {"orientation": "h", "y": 1.1},
            "yaxis": {"title": {"text": f"revenue ({cur})"}},
            "yaxis2": {
                "title": {"text": f"lead value ({cur})"},
                "overlaying": "y",
                "side": "right",
            },
        },
        _table(by, rows),
    )


def _funnel(board: Dashboard) -> Chart | None:
    report = next(iter(board.sources.values()), None)
    if not report:
        return None
    total = report["total"]
    won = sum(_number(m["won_deals"]) or 0 for m in total["currencies"].values())
    stages = ["visits", "leads"]
    values: list[float] = [total["visits"], total["leads"]]
    if board.pipeline and "deals" in board.pipeline.get("total", {}):
        stages.append("deals")
        values.append(board.pipeline["total"]["deals"])
    stages.append("won deals")
    values.append(won)
    return Chart(
        "funnel",
        "Funnel: " + " → ".join(stages),
        [{"type": "funnel", "y": stages, "x": values, "textinfo": "value+percent previous"}],
        {},
    )


def _spend_vs_revenue(board: Dashboard) -> Chart | None:
    report = board.sources.get("campaign")
    if not report:
        return None
    rows = [row for row in report["rows"] if any(
        m.get("spend") is not None for m in row["currencies"].values()
    )]  # fmt: skip
    if not rows:
        return None
    cur = main_currency(rows) or ""
    keys = [row["campaign"] for row in rows]
    return Chart(
        "spend-vs-revenue",
        f"Spend and revenue per campaign ({cur})",
        [
            {"type": "bar", "name": "spend", "x": keys, "y": _money(rows, cur, "spend")},
            {"type": "bar", "name": "revenue", "x": keys, "y": _money(rows, cur, "revenue")},
        ],
        {"barmode": "group", "yaxis": {"title": {"text": cur}}},
        _table("campaign", rows),
    )


def _models(board: Dashboard) -> Chart | None:
    if not board.models or not board.models["rows"]:
        return None
    rows = board.models["rows"]
    cur = max(
        sorted({r["currency"] for r in rows}),
        key=lambda c: sum(Decimal(r["last_non_direct"]) for r in rows if r["currency"] == c),
    )
    shown = [r for r in rows if r["currency"] == cur]
    names = [k for k in shown[0] if k not in ("channel", "currency")]
    return Chart(
        "models",
        f"Revenue by channel under each attribution model ({cur})",
        [
            {
                "type": "bar",
                "name": name.replace("_", " "),
                "x": [r["channel"] for r in shown],
                "y": [float(r[name]) for r in shown],
            }
            for name in names
        ],
        {"barmode": "group", "yaxis": {"title": {"text": cur}}},
        _plain_table(["channel", "currency", *names], rows),
    )


def _table(by: str, rows: Rows) -> str:
    names = ["visits", "leads"]
    money = ["won_deals", "revenue", "lead_value", "average_deal", "spend", "cpl", "roas", "roi"]
    flat = [
        {by: row[by], **{n: row[n] for n in names}, "currency": cur,
         **{n: m.get(n) for n in money}}
        for row in rows for cur, m in (row["currencies"] or {"": {}}).items()
    ]  # fmt: skip
    return _plain_table([by, *names, "currency", *money], flat)


def _amounts(money: dict[str, str]) -> str:
    """``{"USD": "1.00", "EUR": "2.00"}`` as ``1.00 USD, 2.00 EUR``."""
    return ", ".join(f"{value} {cur}" for cur, value in money.items()) or "0"


def _plain_table(columns: Sequence[str], rows: Rows) -> str:
    head = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape('—' if r.get(c) is None else str(r[c]))}</td>" for c in columns
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _section(chart: Chart) -> str:
    return (
        f"<section><h2>{html.escape(chart.heading)}</h2>"
        f'<div class="chart{" tall" if chart.tall else ""}" id="{chart.id}"></div>'
        f"{chart.table}</section>"
    )


def _upload_health(board: Dashboard) -> Chart | None:
    if not board.uploads or not board.uploads["destinations"]:
        return None
    rows = board.uploads["destinations"]
    names = [d["destination"] for d in rows]
    states = ("sent", "rejected", "pending", "skipped")
    return Chart(
        "upload-health",
        f"Upload health: {board.uploads['won_deals']:,} won deals, per destination",
        [
            {"type": "bar", "name": state, "x": names, "y": [d[state] for d in rows]}
            for state in states
        ],
        {"barmode": "stack", "yaxis": {"title": {"text": "conversions"}}},
        _plain_table(
            [
                "destination",
                *states,
                "match_rate",
                "matched_deals",
                "won_deals",
                "revenue_uploaded",
                "revenue_won",
            ],
            [
                {**d, **{k: _amounts(d[k]) for k in ("revenue_uploaded", "revenue_won")}}
                for d in rows
            ],
        ),
    )


def _kpis(board: Dashboard) -> Chart | None:
    """A small chart per KPI (each on its own scale: revenue would flatten CPL), the
    previous period beside this one and the change in each title."""
    if not board.kpis:
        return None
    now, before = board.kpis["current"], board.kpis["previous"]
    cur = board.kpis["currency"] or next(iter(sorted(now["currencies"])), None)
    if cur is None:
        return None
    money = now["currencies"].get(cur, {}), before["currencies"].get(cur, {})
    first, last = board.kpis["previous_period"]
    figures = [(n, now[n], before[n]) for n in _KPI_COUNTS] + [
        (n, money[0].get(n), money[1].get(n)) for n in _KPI_MONEY
    ]
    data: list[dict[str, Any]] = []
    layout: dict[str, Any] = {
        "grid": {"rows": 3, "columns": 5, "pattern": "independent"},
        "showlegend": False, "margin": {"t": 30},
    }  # fmt: skip
    for n, (name, this, previous) in enumerate(figures, start=1):
        values = [_number(previous), _number(this)]
        data.append({"type": "bar", "x": ["previous", "this period"], "y": values,
                     "name": name.replace("_", " "), "xaxis": f"x{n}", "yaxis": f"y{n}",
                     "marker": {"color": ["#9aa5b1", "#1f77b4"]}})  # fmt: skip
        suffix = "" if name in _KPI_COUNTS else f" ({cur})"
        layout[f"xaxis{n}"] = {"title": {"text": name.replace("_", " ") + suffix
                                         + _change(*values)}}  # fmt: skip
    rows = [{"kpi": name.replace("_", " "), "this period": this, "previous": previous}
            for name, this, previous in figures]  # fmt: skip
    return Chart(
        "kpis",
        f"KPIs against the previous period ({first} to {last}), {cur}",
        data,
        layout,
        _plain_table(["kpi", "this period", "previous"], rows),
        tall=True,
    )


_KPI_COUNTS = ("visits", "leads", "won_deals", "customers", "new_customers")
_KPI_MONEY = ("revenue", "spend", "lead_value", "average_deal", "arpc", "cltv", "cpl", "cac")


def _change(previous: float | None, this: float | None) -> str:
    """`` +12.5%`` from the previous period, or nothing where there is no base."""
    if previous is None or this is None or previous == 0:
        return ""
    return f" {(this - previous) / abs(previous):+.1%}"


def _pipeline(board: Dashboard) -> Chart | None:
    if not board.pipeline or not board.pipeline["stages"]:
        return None
    stages = board.pipeline["stages"]
    names = [s["stage"] for s in stages]
    return Chart(
        "pipeline",
        f"Pipeline: {board.pipeline['total']['deals']:,} deals by stage",
        [
            {
                "type": "bar",
                "name": "entered the stage",
                "x": names,
                "y": [s["entered"] for s in stages],
            },
            {"type": "bar", "name": "in it now", "x": names, "y": [s["deals"] for s in stages]},
        ],
        {"barmode": "group", "yaxis": {"title": {"text": "deals"}}},
        _plain_table(
            ["stage", "deals", "open", "won", "lost", "entered", "to_next", "median_days"], stages
        ),
    )


_BUILDERS: list[Callable[[Dashboard], Chart | None]] = [
    _kpis,
    _revenue_by_source,
    _funnel,
    _spend_vs_revenue,
    _pipeline,
    _models,
    _upload_health,
]

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem;
       color: #1f2933; padding: 0 1rem; }}
h1 {{ margin-bottom: 0; }} .sub {{ color: #52606d; margin-top: .25rem; }}
section {{ margin: 2.5rem 0; }} .chart {{ height: 26rem; }} .chart.tall {{ height: 40rem; }}
table {{ border-collapse: collapse; font-size: .85rem; margin-top: .5rem; }}
th, td {{ border-bottom: 1px solid #e4e7eb; padding: .25rem .6rem; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
</style>
<script>{plotly}</script>
</head><body>
<h1>{title}</h1><p class="sub">{subtitle}</p>
{body}
<script type="application/json" id="revsync-data">{payload}</script>
<script>
const data = JSON.parse(document.getElementById("revsync-data").textContent);
{plots}
</script>
</body></html>
"""

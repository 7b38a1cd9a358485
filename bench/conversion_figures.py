"""What each destination was told on a demo store, against what its touchpoints were credited.

Run from the repository root after ``revsync demo`` (one line)::

    PYTHONPATH=src:. .venv/bin/python -m bench.conversion_figures revsync-demo [MODEL]

``MODEL`` is the attribution model the store was synced with (default last_non_direct).
Printed per destination: conversions sent (at most one per won deal), the value sent and
the revenue the model credited to that platform's own touchpoints (all currencies summed);
then how many consent-denied visitors have a cookie in the request bodies (must be 0).
"""

from __future__ import annotations

import csv
import sqlite3
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

from revsync.destinations.ownership import is_google, is_meta
from revsync.domain import ClickIds, Touchpoint


def main(root: Path, model: str = "last_non_direct") -> None:
    db = sqlite3.connect(root / "revsync.db")
    won = db.execute("select count(*) from deals where status = 'won'").fetchone()[0]
    touchpoints = {}
    for row in db.execute(
        "select id, channel, source, gclid, gbraid, wbraid, fbclid, fbc from touchpoints"
    ):
        ids = dict(zip(("gclid", "gbraid", "wbraid", "fbclid", "fbc"), row[3:], strict=True))
        touchpoints[row[0]] = Touchpoint(row[0], "", None, row[1], row[2],  # type: ignore[arg-type]
                                         click_ids=ClickIds(**ids))  # fmt: skip
    credited: dict[str, Decimal] = defaultdict(Decimal)
    for tp_id, amount in db.execute(
        "select touchpoint_id, amount from credits where model = ?", (model,)
    ):
        tp, value = touchpoints.get(tp_id), Decimal(str(amount))
        credited["ga4"] += value
        if tp is not None and is_google(tp):
            credited["google-ads"] += value
        if tp is not None and is_meta(tp):
            credited["meta"] += value
    sent: dict[str, list[Decimal]] = defaultdict(list)
    for destination, value in db.execute(
        "select destination, value from conversions where kind = 'conversion' and state = 'sent'"
    ):
        sent[destination].append(Decimal(str(value)))
    print(f"won deals: {won}")
    for destination, values in sorted(sent.items()):
        print(f"{destination}: {len(values)} conversions, value sent {sum(values):,.2f}, "
              f"credited to its touchpoints {credited[destination]:,.2f}")  # fmt: skip
    denied = [r for r in csv.DictReader((root / "touchpoints.csv").open())
              if r["consent_ad_user_data"] == "denied"]  # fmt: skip
    wire = "".join(p.read_text() for p in (root / "out").glob("*.jsonl"))
    leaked = {r["visitor_id"] for r in denied
              if (r["_fbp"] and r["_fbp"] in wire)
              or (r["_ga"] and r["_ga"].split(".", 2)[-1] in wire)}  # fmt: skip
    print(f"consent-denied visitors: {len({r['visitor_id'] for r in denied})}, "
          f"with a cookie on the wire: {len(leaked)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), *sys.argv[2:3])

"""Seeded generators of import files and CRM exports mixing valid and invalid rows, for
``test_fuzz_bad_input``. Each generated case knows which rows are valid and the row number
of every invalid one, and every email and phone it wrote (to look for in the outputs)."""

from __future__ import annotations

import csv
import io
import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

LONG = "a" * 140_000  # over the 128 KiB a field may hold


@dataclass
class Case:
    """One generated file: its bytes, the valid row count and the invalid rows' numbers."""

    name: str
    fmt: str
    data: bytes = b""
    valid: int = 0
    invalid: set[int] = field(default_factory=set)
    pii: set[str] = field(default_factory=set)
    kinds: list[str] = field(default_factory=list)
    good: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    ties: list[tuple[int, int]] = field(default_factory=list)  # (first row, second row)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# Each mutation turns a valid row into an invalid one; "@csv"/"@jsonl" kinds exist in one
# format only. A mutation returns the row, or a raw line (str) for rows that do not parse.
TOUCHPOINT_BAD: dict[str, Any] = {
    "no-visitor": lambda r: {**r, "visitor_id": ""},
    "words-time": lambda r: {**r, "occurred_at": "yesterday"},
    "naive-time": lambda r: {**r, "occurred_at": "2026-11-01T10:00:00"},
    "far-time": lambda r: {**r, "occurred_at": "0001-01-01T00:00:00+05:00"},
    "bad-ipv6-url": lambda r: {**r, "landing_url": "http://[::1/p"},
    "bad-host-url": lambda r: {**r, "landing_url": "http://[abc]/"},
    "nfkc-referrer": lambda r: {**r, "referrer": "http://ex＃ample.com/"},
    "bad-gclid": lambda r: {**r, "landing_url": "https://x.example/?gclid=%3Cbad%3E"},
    "bad-consent": lambda r: {**r, "consent_ad_user_data": "maybe"},
    "bad-ip": lambda r: {**r, "ip": "not-an-ip"},
    "long-visitor": lambda r: {**r, "visitor_id": "v" * 129},
    "nul": lambda r: {**r, "visitor_id": r["visitor_id"] + "\x00"},
    "bad-byte": lambda r: {**r, "visitor_id": r["visitor_id"] + "\udcff"},
    "huge-field": lambda r: {**r, "user_agent": LONG},
    "extra-value@csv": lambda r: [*r.values(), "surplus"],
    "few-values@csv": lambda r: list(r.values())[:2],
    "broken-json@jsonl": lambda r: json.dumps(r)[:-3],
    "surrogate@jsonl": lambda r: json.dumps({**r, "visitor_id": r["visitor_id"] + "\ud800"}),
    "deep@jsonl": lambda r: "[" * 100_000 + "]" * 100_000,
    "huge-int@jsonl": lambda r: json.dumps(r)[:-1] + ', "n": ' + "7" * 4_400 + "}",
    "list-value@jsonl": lambda r: {**r, "visitor_id": [r["visitor_id"]]},
    "true-value@jsonl": lambda r: {**r, "visitor_id": True},
}
IDENTITY_BAD: dict[str, Any] = {
    "half-email": lambda r: {**r, "email": r["email"].split(".")[0] + "@", "phone": ""},
    "spaced-email": lambda r: {**r, "email": r["email"].replace("@", " at "), "phone": ""},
    "short-phone": lambda r: {**r, "phone": "12", "email": ""},
    "no-person": lambda r: {**r, "email": "", "phone": "", "crm_id": ""},
    "words-time": lambda r: {**r, "observed_at": "last week"},
    "far-time": lambda r: {**r, "observed_at": "9999-12-31T23:00:00-05:00"},
    "long-crm-id": lambda r: {**r, "crm_id": "C" * 65},
    "long-event": lambda r: {**r, "event": "e" * 41},
    "bad-byte": lambda r: {**r, "email": r["email"] + "\udce9"},
    "nul": lambda r: {**r, "crm_id": "C\x00"},
    "extra-value@csv": lambda r: [r["visitor_id"], "x", *list(r.values())[1:]],
    "few-values@csv": lambda r: list(r.values())[:3],
    "broken-json@jsonl": lambda r: json.dumps(r).replace(":", "", 1),
    "list-email@jsonl": lambda r: {**r, "email": [r["email"]]},
    "true-visitor@jsonl": lambda r: {**r, "visitor_id": True},
    "surrogate@jsonl": lambda r: json.dumps({**r, "email": r["email"] + "\ud83d"}),
}
DEAL_BAD: dict[str, Any] = {
    "inf-amount": lambda r: {**r, "amount": "1e400"},
    "huge-amount": lambda r: {**r, "amount": "1e20"},
    "words-amount": lambda r: {**r, "amount": "lots"},
    "negative": lambda r: {**r, "amount": "-5"},
    "zero-won": lambda r: {**r, "status": "won", "amount": "0"},
    "future-won": lambda r: {**r, "status": "won", "close_date": "2999-06-01"},
    "far-date": lambda r: {**r, "close_date": "0001-01-01T00:00:00+05:00"},
    "bad-currency": lambda r: {**r, "currency": "XYZ"},
    "bad-status": lambda r: {**r, "status": "maybe"},
    "no-id": lambda r: {**r, "deal_id": ""},
    "long-id": lambda r: {**r, "deal_id": "D" * 65},
    "bad-byte": lambda r: {**r, "deal_id": r["deal_id"] + "\udcfe"},
    "few-values@csv": lambda r: list(r.values())[:3],
    "surrogate@jsonl": lambda r: json.dumps({**r, "deal_id": r["deal_id"] + "\udc00"}),
    "deep@jsonl": lambda r: "{" + '"a":[' * 50_000,
    "huge-int@jsonl": lambda r: json.dumps(r)[:-1] + ', "amount": ' + "9" * 4_400 + "}",
    "list-id@jsonl": lambda r: {**r, "deal_id": [r["deal_id"]]},
}


def _line(fmt: str, columns: list[str], row: Any) -> bytes:
    if isinstance(row, str):
        text = row
    elif fmt == "jsonl":
        text = json.dumps(row, ensure_ascii=False)
    else:
        buffer = io.StringIO()
        values = row if isinstance(row, list) else [row.get(c, "") for c in columns]
        csv.writer(buffer, lineterminator="").writerow(values)
        text = buffer.getvalue()
    return (text + "\n").encode("utf-8", "surrogateescape")


def build(rng: random.Random, case: Case, columns: list[str], good: Any, bad: dict[str, Any],
          rows: int) -> Case:  # fmt: skip
    """Fill ``case`` with ``rows`` rows, about a third invalid (at least one)."""
    kinds = [k for k in bad if "@" not in k or k.endswith("@" + case.fmt)]
    kinds = [k for k in kinds if k != "huge-field" or rng.random() < 0.15]  # slow: some cases
    lines = [_line("csv", columns, columns)] if case.fmt == "csv" else []
    first = 2 if case.fmt == "csv" else 1
    must_fail = rng.randrange(rows)
    for index in range(rows):
        row = good(rng, index)
        case.pii |= _pii(row)
        if index == must_fail or rng.random() < 0.3:
            kind = rng.choice(kinds)
            case.kinds.append(kind)
            row = bad[kind](row)
            case.pii |= _pii(row) if isinstance(row, dict) else set()
            case.invalid.add(first + index)
        else:
            case.valid += 1
            case.good.append((first + index, row))
        lines.append(_line(case.fmt, columns, row))
    case.data = b"".join(lines)
    return case


def _pii(row: dict[str, Any]) -> set[str]:
    found = set()
    for name in ("email", "phone"):
        value = row.get(name)
        if isinstance(value, str) and ("@" in value or sum(c.isdigit() for c in value) >= 7):
            found.add(value.replace("\udce9", "").replace("\ud83d", ""))
    return found


def duplicate(rng: random.Random, case: Case, columns: list[str]) -> None:
    """Append another version of a valid deal: older (it loses, with a reason) or with the
    same ``modified_at`` (the deal is left out; the first row's number is quarantined)."""
    if not case.good:
        return
    number, row = rng.choice(case.good)
    first = 2 if case.fmt == "csv" else 1
    new_number = first + len(case.data.splitlines()) - (1 if case.fmt == "csv" else 0)
    copy = {**row, "amount": "7777", "contact_id": row["contact_id"] + "b"}
    if rng.random() < 0.5:
        copy["modified_at"] = "2001-01-01T00:00:00Z"
        case.kinds.append("older-version")
        case.invalid.add(new_number)
    else:
        case.kinds.append("tied-version")
        case.ties.append((number, new_number))
        case.valid -= 1
        case.good.remove((number, row))
    case.data += _line(case.fmt, columns, copy)


def touchpoints(rng: random.Random, number: int, fmt: str, now: datetime) -> Case:
    columns = ["visitor_id", "occurred_at", "landing_url", "referrer", "consent_ad_user_data",
               "ip", "user_agent"]  # fmt: skip

    def good(rng: random.Random, index: int) -> dict[str, str]:
        at = now - timedelta(days=rng.randint(1, 60), seconds=rng.randint(0, 86_399))
        query = rng.choice(["gclid=Cj0KCQiA" + f"{number}x{index}", "utm_source=news&utm_medium=email", ""])  # fmt: skip
        return {"visitor_id": f"t{number}r{index}", "occurred_at": iso(at),
                "landing_url": f"https://shop.example/p?{query}",
                "referrer": rng.choice(["", "https://www.google.com/", "https://news.example/a"]),
                "consent_ad_user_data": rng.choice(["granted", "denied", ""]),
                "ip": rng.choice(["203.0.113.9", "", "2001:db8::1"]), "user_agent": "Mozilla/5.0"}  # fmt: skip

    case = Case(f"tp{number}.{fmt}", fmt)
    return build(rng, case, columns, good, TOUCHPOINT_BAD, rng.randint(3, 14))


def identities(rng: random.Random, number: int, fmt: str, now: datetime) -> Case:
    columns = ["visitor_id", "observed_at", "email", "phone", "crm_id", "event"]

    def good(rng: random.Random, index: int) -> dict[str, str]:
        at = now - timedelta(days=rng.randint(1, 60), seconds=rng.randint(0, 86_399))
        email = f"person.{number}x{index}@example.com"
        phone = f"+1 202 555 {rng.randint(1000, 9999)}"
        return {"visitor_id": f"i{number}r{index}", "observed_at": iso(at),
                "email": email, "phone": rng.choice([phone, ""]),
                "crm_id": rng.choice(["", f"C{number}x{index}"]), "event": "form"}  # fmt: skip

    case = Case(f"leads{number}.{fmt}", fmt)
    return build(rng, case, columns, good, IDENTITY_BAD, rng.randint(3, 14))


def deals(rng: random.Random, number: int, fmt: str, now: datetime) -> Case:
    columns = ["deal_id", "status", "amount", "currency", "close_date", "modified_at",
               "contact_id", "email", "phone", "notes"]  # fmt: skip

    def good(rng: random.Random, index: int) -> dict[str, str]:
        closed = now - timedelta(days=rng.randint(2, 30), hours=rng.randint(0, 23))
        status = rng.choice(["won", "won", "lost", "open"])
        return {"deal_id": f"D{number}-{index}", "status": status,
                "amount": rng.choice(["1200", "99.95", "1,500.50", "100.999"]),
                "currency": rng.choice(["USD", "EUR", "JPY", "KWD"]),
                "close_date": closed.date().isoformat(), "modified_at": iso(closed),
                "contact_id": f"C{number}-{index}", "email": f"buyer.{number}x{index}@example.org",
                "phone": f"+44 20 7946 {rng.randint(1000, 9999)}",
                "notes": f"call buyer.{number}x{index}@example.org"}  # fmt: skip

    case = build(rng, Case(f"deals{number}.{fmt}", fmt), columns, good, DEAL_BAD,
                 rng.randint(3, 12))  # fmt: skip
    if rng.random() < 0.5:
        duplicate(rng, case, columns)
    return case

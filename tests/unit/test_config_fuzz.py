"""Seeded fuzzing of the mapping file (issue #14): a few hundred broken mutations of the
starter file, each through ``revsync config validate``. Every one must exit 2 with
``file:line:`` problems, no traceback, and no secret in the output."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from revsync.cli import app

EXAMPLE = (Path(__file__).parents[2] / "config" / "revsync.example.yaml").read_text()
LINES = EXAMPLE.splitlines(keepends=True)
SECRET = "EAAB-fuzz-secret-7f3a9c51"
SECRETS = {"REVSYNC_META_ACCESS_TOKEN": SECRET, "REVSYNC_GA4_API_SECRET": SECRET + "-ga4",
           "REVSYNC_HUBSPOT_ACCESS_TOKEN": SECRET + "-hs"}  # fmt: skip
CASES = 320
_INLINE = re.compile(r"^(\s*(?:- )?)([a-z_0-9]+):( +)([^#\n]+?)(\s*#.*)?\n$")
_NUMBER_BAD = ["true", "-1", "ten", "[]", "{a: 1}", ".inf", ".nan", "99999999999999", SECRET]
# key -> values that are wrong wherever the key appears in the starter file
BAD: dict[str, list[str]] = {
    "name": ["Bad Name", "''", "5", "'[/red]'", "x" * 41, "[a]"],
    "type": ["pipedrive", "5", "null", "'[b]'"],
    "path": ["deals.xlsx", "deals", "'.'", "5", "x" * 300 + ".csv", '"a\\0.csv"'],
    "timezone": ["America", "Nowhere/Land", "Z" * 300, "5", "Europe", "UTC+1", "'a\\0b'"],
    "close_time": ["1700", "'25:00'", "5pm", "true", "17:00:00:00", "'17:0'", "[17]"],
    "overlap_minutes": [*_NUMBER_BAD, "1.5", "1000000"],
    "won_stages": ["5", "{a: 1}", "won"],
    "lookback_days": ["0", "541", "true", "x", SECRET],
    "default_phone_region": ["USA", "XX", "1", "[US]", "'U S'"],
    "keys": ["[]", "[fax]", "email", "[email, 5]"],
    "model": ["lineer", "5", "[x]"],
    "half_life_days": ["0", "-1", "true", ".inf", "x", SECRET],
    "first_share": ["2", "-0.1", "true", ".nan"],
    "last_share": ["2", "-0.1", "false"],
    "keep_full_ip": ["maybe", "[1]", "2"],
    "require_consent": ["maybe", "{}"],
    "unknown_consent": ["maybe", "true", "5"],
    "start_date": ["yesterday", "2026-13-01", "[1]", "'2026-02-30'"],
    "transport": ["pigeon", "5", "[file]"],
    "value_mode": ["half", "true"],
    "since": ["yesterday", "'2026-00-01'"],
    "batch_size": ["0", "true", "-5", "x"],
    "timeout_seconds": ["0", "-1", "true", ".inf", "1e300", SECRET],
    "retry_budget_seconds": ["-1", "true", ".nan", "1e300"],
    "customer_id": ["abc", "'12a'", "[1]", SECRET],
    "login_customer_id": ["abc", "[1]"],
    "conversion_action": ["abc", "{}"],
    "conversion_actions_by_pipeline": ["[1]", "5", "x"],
    "enhanced_conversions": ["maybe", "[1]"],
    "custom_variables": ["{abc: stage}", "5", "[1]"],
    "click_window_days": ["0", "91", "true"],
    "account_timezone": ["Nowhere/Land", "America", "5", "''"],
    "endpoint": ["[1]", "{}"],
    "data_manager_endpoint": ["[1]"],
    "token_uri": ["not a url", "ftp://x", "'http://'", "5"],
    "ca_bundle": ["[1]", "{}"],
    "validate_only": ["maybe", "[1]"],
    "file_format": ["xml", "5"],
    "measurement_id": ["UA-1", "5", "g-lower", SECRET],
    "event_name": ["[1]", "{}", "5"],
    "base_url": ["www.x.com", "'http://'", "'https://a b.com'", "5", "'http://x:99999'"],
    "pixel_id": ["abc", "[1]", SECRET],
    "graph_url": ["graph.facebook.com", "mailto:a@b.c"],
    "api_version": ["banana", "26", "'26.0'", "v26"],
    "test_event_code": ["[1]", "{}"],
    "data_processing_options": ["[XYZ]", "LDU", "[LDU, 1]"],
    "data_processing_country": ["x", "true", "1.5"],
    "data_processing_state": ["x", "[1]"],
    "version": ["2", "'one'", "true"],
    "sources": ["5", "[5]", "{a: b}", "[nope]"],
    "output_dir": ["[1]", "{}", '"a\\0b"', "o" * 256],
}
# validators on a whole block report at the block, not the key's own line
_BLOCK_LEVEL = {"first_share", "last_share", "source", "medium", "campaign", "auth"}


@dataclass
class Case:
    kind: str
    data: bytes
    line: int | None = None  # where the problem must be reported, when known
    text: str | None = None  # what the report must say


def _inline_lines() -> list[tuple[int, re.Match[str]]]:
    return [(i, m) for i, line in enumerate(LINES) if (m := _INLINE.match(line))]


INLINE = _inline_lines()


def _with(lines: list[str]) -> bytes:
    return "".join(lines).encode()


def bad_value(rng: random.Random) -> Case:
    i, m = rng.choice([(i, m) for i, m in INLINE if m.group(2) in BAD])
    value = rng.choice(BAD[m.group(2)])
    lines = list(LINES)
    lines[i] = f"{m.group(1)}{m.group(2)}:{m.group(3)}{value}{m.group(5) or ''}\n"
    exact = m.group(2) not in _BLOCK_LEVEL and value != "[nope]"
    return Case("bad value", _with(lines), i + 1 if exact else None)


def unknown_key(rng: random.Random) -> Case:
    i, m = rng.choice(INLINE)
    indent = len(m.group(1))  # "  - name:" -> siblings at 4
    key = f"bogus_{rng.randrange(1000)}"
    value = rng.choice([SECRET, "1", "[a, b]", "{x: 1}", "null"])
    lines = list(LINES)
    lines.insert(i + 1, f"{' ' * indent}{key}: {value}\n")
    return Case("unknown key", _with(lines), i + 2, key)


def deep_nesting(rng: random.Random) -> Case:
    i, m = rng.choice([(i, m) for i, m in INLINE if "- " not in m.group(1)])
    depth = rng.randint(33, 6000)
    lines = list(LINES)
    if rng.random() < 0.7:
        opener, closer = rng.choice([("[", "]"), ("{a: ", "}")])
        lines[i] = f"{m.group(1)}{m.group(2)}: {opener * depth}1{closer * depth}\n"
        return Case("flow nesting", _with(lines), i + 1, "nested deeper than 32 levels")
    depth = min(depth, 400)
    indent = len(m.group(1))
    block = "".join(" " * (indent + 2 + 2 * k) + "-\n" for k in range(depth))
    lines[i] = f"{m.group(1)}{m.group(2)}:\n{block}"
    return Case("block nesting", _with(lines), None, "nested deeper than 32 levels")


_CONTROLS = [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F, *range(0x80, 0x85),
             *range(0x86, 0xA0), 0xFFFE, 0xFFFF]  # fmt: skip


def bad_encoding(rng: random.Random) -> Case:
    choice = rng.randrange(5)
    i = rng.randrange(len(LINES))
    if choice == 0:  # one latin-1 character
        lines = list(LINES)
        lines[i] = lines[i].rstrip("\n") + " # café\n"
        return Case("latin-1", "".join(lines).encode("latin-1"), i + 1, "not UTF-8")
    if choice == 1:
        encoding = rng.choice(["utf-16", "utf-32", "utf-16-be", "utf-32-le"])
        return Case(encoding, EXAMPLE.encode(encoding), 1)
    if choice == 2:
        lines = list(LINES)
        column = rng.randrange(len(lines[i]))  # before the line break
        char = chr(rng.choice(_CONTROLS))
        lines[i] = lines[i][:column] + char + lines[i][column:]
        return Case("control character", _with(lines), i + 1, f"U+{ord(char):04X}")
    if choice == 3:  # a byte sequence that is not UTF-8 at all
        lines = [line.encode() for line in LINES]
        bad = rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80"])
        lines[i] = bad + lines[i]
        return Case("invalid UTF-8", b"".join(lines), i + 1, "not UTF-8")
    return Case("empty or binary", rng.choice([b"", b"\x00" * 10, os.urandom(0) + b"\xfe"]), 1)


def duplicate_key(rng: random.Random) -> Case:
    i, _ = rng.choice([(i, m) for i, m in INLINE if "- " not in m.group(1)])
    lines = list(LINES)
    lines.insert(i + 1, lines[i])
    return Case("duplicate key", _with(lines), i + 2, f"duplicate key (first at line {i + 1})")


def cross_block(rng: random.Random) -> Case:
    names = [(i, m) for i, m in INLINE if m.group(2) == "name" and "- " in m.group(1)]
    choice = rng.randrange(3)
    lines = list(LINES)
    if choice == 0:  # two destinations with one name
        (i, m), (j, _) = sorted(rng.sample(names[1:], 2))
        lines[j] = lines[j].replace(lines[j].split("name: ")[1].split()[0], m.group(4), 1)
        return Case("duplicate name", _with(lines), j + 1, f"duplicate name {m.group(4)!r}")
    if choice == 1:  # a second source named like the first
        i, _ = names[0]
        extra = "  - name: crm\n    type: file\n    path: more.jsonl\n"
        lines.insert(i + 8, extra)
        return Case("duplicate source", _with(lines), i + 9, "duplicate name 'crm'")
    i, m = next((i, m) for i, m in INLINE if m.group(2) == "sources")
    unknown = rng.choice(["nope", "'[/x]'", "CRM", "crm2"])
    lines[i] = f"{m.group(1)}sources: [crm, {unknown}]\n"
    return Case("unknown source", _with(lines), i + 1, "destinations[0].sources[1]")


def yaml_syntax(rng: random.Random) -> Case:
    i = rng.randrange(len(LINES))
    piece = rng.choice(["  bad: [unclosed\n", "\tindented: tab\n", "x: 'unterminated\n",
                        "  - : :\n", "*undefined\n", "a: b: c\n", "]\n", "---\nb: 2\n"])  # fmt: skip
    lines = list(LINES)
    lines.insert(i, piece)
    return Case("syntax", _with(lines))


def merge_or_tag(rng: random.Random) -> Case:
    i = next(i for i, m in INLINE if m.group(2) == "name")
    lines = list(LINES)
    if rng.random() < 0.5:
        lines.insert(0, f"defaults: &d {{overlap_minutes: 5, bogus_merged: {SECRET}}}\n")
        lines.insert(i + 2, "    <<: *d\n")
        return Case("merge", _with(lines), 1, "bogus_merged")
    lines[i] = f"  - !block\n    bogus_tagged: {SECRET}\n    name: crm\n"
    return Case("tag", _with(lines), i + 2, "bogus_tagged")


def shape(rng: random.Random) -> Case:
    data = rng.choice(["- a\n- b\n", "just text\n", "42\n", "null\n", "# only a comment\n",
                       "%YAML 1.1\n---\n" + EXAMPLE.replace('"17:00"', "17:00")])  # fmt: skip
    return Case("shape", data.encode())


MUTATIONS: list[Callable[[random.Random], Case]] = [
    bad_value, bad_value, bad_value, unknown_key, deep_nesting, bad_encoding, bad_encoding,
    duplicate_key, cross_block, yaml_syntax, merge_or_tag, shape,
]  # fmt: skip


def generate(seed: int = 14, count: int = CASES) -> list[Case]:
    rng = random.Random(seed)
    return [rng.choice(MUTATIONS)(rng) for _ in range(count)]


def check(case: Case, path: Path, code: int, output: str) -> None:
    where = f"{case.kind}: {case.data[:200]!r}\n{output}"
    assert code == 2, where
    assert "Traceback" not in output, where
    assert SECRET not in output, where
    problems = [line for line in output.splitlines() if line.strip()]
    assert problems, where
    located = re.compile(rf"^error {re.escape(str(path))}:\d+: ")
    assert all(located.match(p) for p in problems), where
    if case.line is not None:
        assert f"{path}:{case.line}: " in output, where
    if case.text is not None:
        assert case.text in output, where


def test_a_few_hundred_broken_mapping_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    cases = generate()
    assert len(cases) == CASES and len({c.kind for c in cases}) >= 15
    runner = CliRunner()
    for n, case in enumerate(cases):
        folder = tmp_path / str(n)
        folder.mkdir()
        path = folder / "revsync.yaml"
        path.write_bytes(case.data)
        result = runner.invoke(app, ["config", "validate", str(path)])
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            case.kind, result.exception)  # fmt: skip
        check(case, path, result.exit_code, result.output)


def test_some_of_them_through_the_real_command(tmp_path: Path) -> None:
    revsync = str(Path(sys.executable).parent / "revsync")
    rng = random.Random(1414)
    cases = [rng.choice(generate(seed=s, count=40)) for s in range(6)]
    for n, case in enumerate(cases):
        path = tmp_path / f"{n}.yaml"
        path.write_bytes(case.data)
        done = subprocess.run(
            [revsync, "config", "validate", str(path)], capture_output=True, text=True,
            env={**os.environ, **SECRETS, "COLUMNS": "80"}, timeout=60,
        )  # fmt: skip
        check(case, path, done.returncode, done.stdout + done.stderr)

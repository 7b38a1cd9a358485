"""Property tests over the mapping loader and the settings: whatever the bytes, text or
values, the only exception out is ``ConfigError``, and each of its problems names the file
and a line."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from revsync.config import destinations, mapping
from revsync.config.loader import load_config
from revsync.config.mapping import RevsyncConfig
from revsync.config.settings import load_settings
from revsync.errors import ConfigError

EXAMPLE = (Path(__file__).parents[2] / "config" / "revsync.example.yaml").read_text()
EXAMPLES = int(os.environ.get("REVSYNC_PROPERTY_EXAMPLES", "150"))  # more to hunt, locally
FAST = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)


def check(data: bytes) -> RevsyncConfig | None:
    """Load ``data`` as a mapping file; a ``ConfigError`` must name file and line."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "revsync.yaml"
        path.write_bytes(data)
        try:
            return load_config(path)
        except ConfigError as exc:
            located = re.compile(rf"^{re.escape(str(path))}:\d+: ")
            assert exc.problems
            for problem in exc.problems:
                assert located.match(problem), problem
            return None


@FAST
@given(st.binary(max_size=3000))
def test_any_bytes(data: bytes) -> None:
    check(data)


@FAST
@given(st.text(max_size=3000))
def test_any_text(text: str) -> None:
    check(text.encode("utf-8", "surrogatepass"))


@FAST
@given(
    st.lists(
        st.tuples(st.integers(0, 10_000), st.text(max_size=40) | st.sampled_from(
            [": ", "- ", "[", "{", "}", "]", "&a ", "*a", "<<: *a", "!tag ", "\t", "\n  ",
             "%YAML 1.1\n---\n", "? ", "|", ">", "'", '"', "#", "\0", "\x85", "\ufeff"])),
        max_size=6,
    )
)  # fmt: skip
def test_the_example_with_text_spliced_in(splices: list[tuple[int, str]]) -> None:
    text = EXAMPLE
    for at, piece in splices:
        at %= len(text)
        text = text[:at] + piece + text[at:]
    check(text.encode("utf-8", "surrogatepass"))


_KEYS = sorted(
    {name for block in (mapping.FileSource, mapping.SalesforceSource, mapping.HubSpotSource,
                        destinations.GoogleAdsDestination, destinations.Ga4Destination,
                        destinations.MetaDestination, mapping.MatchingConfig,
                        mapping.AttributionConfig, mapping.RevsyncConfig)
     for name in block.model_fields}
)  # fmt: skip
_SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
    | st.sampled_from(["file", "salesforce", "hubspot", "google_ads", "ga4", "meta", "UTC",
                       "America", "17:00", "1700", "LDU", "https://x.test", "deals.csv", "."])
)  # fmt: skip
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=10), inner, max_size=6)
    ),
    max_leaves=30,
)
_BLOCK = st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=8)


@FAST
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "sources": st.lists(_BLOCK, max_size=3) | _VALUES,
            "destinations": st.lists(_BLOCK, max_size=3) | _VALUES,
            "matching": _BLOCK,
            "attribution": _BLOCK,
            "version": _VALUES,
            "start_date": _VALUES,
        },
    )
)
def test_mappings_of_every_shape(document: dict[str, object]) -> None:
    """JSON is YAML: blocks whose keys are real ones, with values of any type."""
    check(json.dumps(document).encode())


_ENV_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0"), max_size=40)


@pytest.mark.parametrize("variable", ["LOG_LEVEL", "LEASE_SECONDS", "CONFIG", "DATABASE_URL"])
@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(value=_ENV_TEXT)
def test_any_setting_value(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(f"REVSYNC_{variable}", value)
    try:
        load_settings()
    except ConfigError as exc:
        assert all(p.startswith(f"REVSYNC_{variable}: ") for p in exc.problems), exc.problems
        assert value not in " ".join(exc.problems) or len(value) < 4  # never echoed

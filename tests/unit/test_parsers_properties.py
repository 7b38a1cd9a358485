"""Issue 14: every parser and reader, fed arbitrary text, bytes and JSON, lets out only
the project's own validation errors (``RowError``, ``ParseError``, ``InvalidIdentifier``,
``ConfigError`` for a file that cannot be read at all)."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from revsync.collect.importer import identity_row, touchpoint_row, truncate_ip
from revsync.collect.parsing import (
    ParseError,
    _query_pairs,
    channel_of,
    click_id,
    fb_cookie,
    ga_client_id,
    parse_landing,
)
from revsync.config.mapping import FileSource, PrivacyConfig
from revsync.destinations.pii import (
    InvalidIdentifier,
    hash_person,
    normalize_email_ga4,
    normalize_email_google,
    normalize_phone_meta,
)
from revsync.errors import ConfigError
from revsync.privacy import mask_text
from revsync.rows import (
    RowError,
    boolean,
    date_or_timestamp,
    decimal,
    read_rows,
    text,
    timestamp,
)
from revsync.sources.files import FileDealSource

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # fmt: skip

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3),
    max_leaves=10,
)  # fmt: skip
URLISH = st.one_of(
    st.text(),
    st.builds(lambda host, rest: f"http://{host}/{rest}", st.text(max_size=20), st.text(max_size=40)),
    st.sampled_from(["http://[::1/p", "http://[abc]/", "http://ex＃ample.com/", "//[", "http://[::1]:x/"]),
)  # fmt: skip
FIELDS = ["visitor_id", "occurred_at", "observed_at", "landing_url", "referrer", "gclid", "gbraid",
          "wbraid", "fbclid", "_ga", "_fbp", "_fbc", "utm_source", "utm_medium", "email",
          "phone", "crm_id", "ip", "consent_ad_user_data", "amount", "close_date"]  # fmt: skip
rows = st.dictionaries(st.sampled_from(FIELDS), json_values | st.text() | URLISH, max_size=12)


@FAST
@given(row=rows, name=st.sampled_from(FIELDS))
def test_row_values_raise_only_row_errors(row: dict[str, Any], name: str) -> None:
    for read in (text, timestamp, date_or_timestamp, decimal, boolean):
        with contextlib.suppress(RowError):
            read(row, name)


@FAST
@given(row=rows)
def test_import_rows_raise_only_row_errors(row: dict[str, Any]) -> None:
    for validate in (
        lambda r: touchpoint_row(r, (), PrivacyConfig()),
        lambda r: identity_row(r, "US"),
    ):
        with contextlib.suppress(RowError):
            validate(row)


@FAST
@given(value=st.text(), url=URLISH, referrer=st.none() | URLISH)
def test_parsing_raises_only_parse_errors(value: str, url: str, referrer: str | None) -> None:
    for parse in (lambda: click_id("gclid", value), lambda: ga_client_id(value),
                  lambda: fb_cookie("_fbp", value), lambda: parse_landing(url, referrer)):  # fmt: skip
        with contextlib.suppress(ParseError):
            parse()
    assert channel_of(value[:255], value[:255], value[:255])


@FAST
@given(email=st.text(), phone=st.text(), region=st.none() | st.sampled_from(["US", "GB", "DE"]))
def test_pii_raises_only_invalid_identifier(email: str, phone: str, region: str | None) -> None:
    for normalise in (lambda: hash_person(email, phone, region), lambda: normalize_email_ga4(email),
                      lambda: normalize_email_google(email),
                      lambda: normalize_phone_meta(phone, region)):  # fmt: skip
        try:
            normalise()
        except InvalidIdentifier as exc:
            if "@" in email and len(email) >= 12:  # an address, never echoed in the error
                assert email not in str(exc)
    assert isinstance(mask_text(email + phone), str)


def _file(directory: Path, suffix: str, content: bytes) -> Path:
    path = Path(tempfile.mkstemp(suffix=suffix, dir=directory)[1])
    path.write_bytes(content)
    return path


bytes_files = st.one_of(
    st.binary(max_size=400),
    st.lists(st.text(max_size=30), max_size=8).map(lambda lines: "\n".join(lines).encode("utf-8", "surrogatepass")),
    st.lists(json_values, max_size=6).map(lambda values: "\n".join(json.dumps(v) for v in values).encode()),
)  # fmt: skip


@FAST
@given(content=bytes_files, suffix=st.sampled_from([".csv", ".jsonl"]))
def test_reader_yields_rows_or_row_errors_for_any_bytes(
    tmp_path_factory: Any, content: bytes, suffix: str
) -> None:
    directory = tmp_path_factory.mktemp("any")
    header = (
        b"deal_id,status,amount,currency,close_date,contact_id,email\n" if suffix == ".csv" else b""
    )
    path = _file(directory, suffix, header + content)
    try:
        reader = read_rows(path)
    except ConfigError:
        return
    numbers = [number for number, row in reader if isinstance(row, dict | RowError)]
    assert numbers == sorted(numbers)


@FAST
@given(content=bytes_files, suffix=st.sampled_from([".csv", ".jsonl"]))
def test_file_source_quarantines_or_reads_any_export(
    tmp_path_factory: Any, content: bytes, suffix: str
) -> None:
    directory = tmp_path_factory.mktemp("crm")
    header = (b"deal_id,status,amount,currency,close_date,modified_at,contact_id,email,phone\n"
              if suffix == ".csv" else b"")  # fmt: skip
    path = _file(directory, suffix, header + content)
    source = FileDealSource(FileSource(name="crm", type="file", path=path), "US")
    try:
        pages = list(source.pages(None, NOW))
    except ConfigError:
        return
    for page in pages:
        for deal in page.deals:
            assert deal.amount.is_finite() and deal.amount >= 0


moments = st.datetimes(timezones=st.timezones()).map(lambda m: m.isoformat())
deal_values = st.fixed_dictionaries({
    "deal_id": st.text(min_size=1, max_size=70), "status": st.sampled_from(["won", "lost", "open", "?"]),
    "amount": st.decimals().map(str) | st.floats().map(str) | st.text(max_size=8),
    "currency": st.sampled_from(["USD", "JPY", "KWD", "usd", "XYZ", ""]),
    "close_date": moments | st.dates().map(str) | st.text(max_size=12),
    "modified_at": moments, "contact_id": st.text(max_size=70), "email": st.emails() | st.text(),
})  # fmt: skip


@FAST
@given(rows=st.lists(deal_values, min_size=1, max_size=6), fmt=st.sampled_from(["csv", "jsonl"]))
def test_file_source_with_any_values_keeps_only_sane_deals(
    tmp_path_factory: Any, rows: list[dict[str, str]], fmt: str
) -> None:
    import csv

    path = tmp_path_factory.mktemp("values") / f"deals.{fmt}"
    with path.open("w", newline="", encoding="utf-8", errors="surrogatepass") as handle:
        if fmt == "csv":
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        else:
            handle.write("\n".join(json.dumps(row) for row in rows))
    source = FileDealSource(FileSource(name="crm", type="file", path=path), "US")
    for page in source.pages(None, NOW):
        for deal in page.deals:
            assert 0 <= deal.amount <= 10**12 and deal.amount == round(deal.amount, 3)
            assert deal.status != "won" or (deal.amount > 0 and deal.close_at is not None
                                             and deal.close_at <= NOW)  # fmt: skip


@given(st.text(alphabet=st.sampled_from("ab=&%+;# 1é"), max_size=40))
def test_the_plain_query_split_equals_parse_qsl(query: str) -> None:
    """Issue 18: the importer's fast query split gives ``parse_qsl``'s pairs exactly."""
    assert _query_pairs(query) == parse_qsl(query)


@given(st.one_of(
    st.tuples(*[st.integers(0, 300)] * 4).map(lambda t: ".".join(map(str, t))),
    st.text(alphabet=st.sampled_from("0123456789.:abf"), max_size=20),
    st.sampled_from(["01.2.3.4", "1.2.3.04", "٣.1.1.1", "1.2.3", "::1", "2001:db8::7:1"]),
))  # fmt: skip
def test_ip_truncation_agrees_with_ipaddress(value: str) -> None:
    """Issue 18: the IPv4 fast path truncates (and refuses) exactly as ``ipaddress`` does."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        with pytest.raises(ValueError):
            truncate_ip(value)
        return
    prefix = 24 if address.version == 4 else 48
    network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    assert truncate_ip(value) == str(network.network_address)

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from revsync.collect.parsing import (
    ParseError,
    channel_of,
    fb_cookie,
    fbc_from_fbclid,
    ga_client_id,
    parse_landing,
)
from revsync.config.mapping import ChannelRule
from revsync.domain import Channel


def test_ga_cookie_to_client_id() -> None:
    assert ga_client_id("GA1.1.1234567890.1700000000") == "1234567890.1700000000"
    assert ga_client_id("GA1.2.55.66") == "55.66"
    assert ga_client_id("123.456") == "123.456"
    assert ga_client_id("") is None
    with pytest.raises(ParseError):
        ga_client_id("GA1.1.abc")


def test_fbc_keeps_fbclid_case_and_uses_click_ms() -> None:
    at = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    assert fbc_from_fbclid("IwAR2xYz", at) == "fb.1.1793534400000.IwAR2xYz"
    assert fb_cookie("_fbp", "fb.1.1700000000000.123456789") == "fb.1.1700000000000.123456789"
    with pytest.raises(ParseError, match="_fbc"):
        fb_cookie("_fbc", "IwAR2xYz")


def test_landing_click_ids_and_utm() -> None:
    landing = parse_landing(
        "https://x.com/p?gclid=Cj0KCQiA_abc-123&utm_source=Google&utm_medium=CPC&utm_campaign=Brand",
        None,
    )
    assert landing.click_ids == {"gclid": "Cj0KCQiA_abc-123"}
    assert (landing.source, landing.medium, landing.campaign) == ("google", "cpc", "Brand")


def test_autotagged_click_without_utm_is_google_cpc() -> None:
    landing = parse_landing("https://x.com/?wbraid=WBabc12345", None)
    assert (landing.source, landing.medium) == ("google", "cpc")


def test_referrer_implies_source() -> None:
    assert parse_landing("https://x.com/", "https://www.google.com/").medium == "organic"
    assert parse_landing("https://x.com/", "https://l.facebook.com/").medium == "social"
    assert parse_landing("https://x.com/", "https://www.g2.com/x").source == "g2.com"


def test_garbage_click_id_is_an_error() -> None:
    with pytest.raises(ParseError, match="gclid"):
        parse_landing("https://x.com/?gclid=%3Cscript%3E", None)


@pytest.mark.parametrize(
    ("source", "medium", "campaign", "channel"),
    [
        (None, None, None, Channel.DIRECT),
        ("(direct)", "(none)", None, Channel.DIRECT),
        ("google", "cpc", "brand", Channel.PAID_SEARCH),
        ("bing", "ppc", None, Channel.PAID_SEARCH),
        ("facebook", "paid_social", None, Channel.PAID_SOCIAL),
        ("google", "cpc", "shopping-q4", Channel.PAID_SHOPPING),
        ("youtube", "cpv", None, Channel.PAID_VIDEO),
        ("gdn", "display", None, Channel.DISPLAY),
        ("google", "organic", None, Channel.ORGANIC_SEARCH),
        ("linkedin", "social", None, Channel.ORGANIC_SOCIAL),
        ("newsletter", "email", None, Channel.EMAIL),
        ("g2.com", "referral", None, Channel.REFERRAL),
        ("partner", "affiliate", None, Channel.AFFILIATES),
        ("x", "y", "cross-network-pmax", Channel.CROSS_NETWORK),
        ("weird", "thing", None, Channel.UNASSIGNED),
    ],
)
def test_ga4_default_channel_group(
    source: str | None, medium: str | None, campaign: str | None, channel: Channel
) -> None:
    assert channel_of(source, medium, campaign) == channel


def test_admin_rules_come_first() -> None:
    rules = [ChannelRule(channel="Partners", source="^partner-")]
    assert channel_of("partner-acme", "cpc", None, rules) == "Partners"
    assert channel_of("google", "cpc", None, rules) == Channel.PAID_SEARCH

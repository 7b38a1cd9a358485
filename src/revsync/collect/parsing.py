"""Parse click IDs, browser cookies and UTM fields, and derive the channel of a landing.

Channel grouping follows GA4's default channel group rules (source/medium/campaign
patterns), with admin rules from the mapping applied first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from urllib.parse import SplitResult, parse_qs, urlsplit

from revsync.config.mapping import ChannelRule
from revsync.domain import Channel

_CLICK_ID = re.compile(r"^[A-Za-z0-9_\-.~]{8,512}$")
_GA_COOKIE = re.compile(r"^GA\d\.\d+\.(\d+\.\d+)$")
_CLIENT_ID = re.compile(r"^\d+\.\d+$")
_FB_COOKIE = re.compile(r"^fb\.\d\.(\d{10,13})\.(\S+)$")

CLICK_PARAMS = ("gclid", "gbraid", "wbraid", "fbclid", "msclkid", "ttclid", "li_fat_id")
UTM_PARAMS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")


class ParseError(ValueError):
    """A value that is not what its field says; the message names the problem and
    ``field`` (when known) the field."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def _split(name: str, url: str) -> SplitResult:
    """``urlsplit`` that raises ``ParseError`` naming ``name`` for a malformed URL."""
    try:
        parts = urlsplit(url)
        parts.hostname  # noqa: B018 - a bracketed host is checked when read
    except ValueError as exc:
        raise ParseError(f"{name} is not a valid URL ({str(exc)[:100]})", name) from None
    return parts


def click_id(name: str, value: str | None) -> str | None:
    """A click ID as given (case matters), or ``None`` if empty; rejects garbage."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if not _CLICK_ID.match(value):
        raise ParseError(f"{name} has characters or a length a click ID never has")
    return value


def ga_client_id(value: str | None) -> str | None:
    """GA4 client_id from an ``_ga`` cookie (``GA1.1.<a>.<b>`` -> ``<a>.<b>``) or as is."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    match = _GA_COOKIE.match(value)
    if match:
        return match.group(1)
    if _CLIENT_ID.match(value):
        return value
    raise ParseError("_ga is neither a GA cookie (GA1.1.<n>.<n>) nor a client_id (<n>.<n>)")


def fb_cookie(name: str, value: str | None) -> str | None:
    """A Meta ``_fbp``/``_fbc`` cookie value (``fb.<subdomain>.<ms>.<value>``), unchanged."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if not _FB_COOKIE.match(value):
        raise ParseError(f"{name} is not of the form fb.1.<creation ms>.<value>")
    return value


def fbc_from_fbclid(fbclid: str, clicked_at: datetime) -> str:
    """Meta's ``fbc`` for a click: ``fb.1.<click time in ms>.<fbclid>`` (fbclid verbatim)."""
    return f"fb.1.{int(clicked_at.timestamp() * 1000)}.{fbclid}"


@dataclass(frozen=True, slots=True)
class Landing:
    """What a landing URL and referrer say about a session."""

    source: str | None
    medium: str | None
    campaign: str | None
    term: str | None
    content: str | None
    click_ids: dict[str, str]


def parse_landing(url: str | None, referrer: str | None) -> Landing:
    """Read UTM fields and click IDs from a landing URL; fill source/medium from the
    referrer (or auto-tagging) when UTM fields are absent."""
    params: dict[str, list[str]] = parse_qs(_split("landing_url", url).query) if url else {}
    if referrer:
        _split("referrer", referrer)

    def first(name: str) -> str | None:
        values = params.get(name)
        return values[0].strip() if values and values[0].strip() else None

    try:
        clicks = {
            name: value
            for name in CLICK_PARAMS
            if name in params and (value := click_id(name, first(name)))
        }
    except ParseError as exc:
        raise ParseError(str(exc), "landing_url") from None
    source, medium = first("utm_source"), first("utm_medium")
    if source is None and medium is None:
        source, medium = _implied_source_medium(clicks, referrer)
    return Landing(
        source=source.lower() if source else None,
        medium=medium.lower() if medium else None,
        campaign=first("utm_campaign"),
        term=first("utm_term"),
        content=first("utm_content"),
        click_ids=clicks,
    )


def _implied_source_medium(
    clicks: dict[str, str], referrer: str | None
) -> tuple[str | None, str | None]:
    if clicks.keys() & {"gclid", "gbraid", "wbraid"}:
        return "google", "cpc"
    if "msclkid" in clicks:
        return "bing", "cpc"
    host = (_split("referrer", referrer).hostname or "") if referrer else ""
    host = host.removeprefix("www.").removeprefix("m.").removeprefix("l.").removeprefix("lm.")
    if not host:
        return None, None
    name = host.split(".")[-2] if host.count(".") >= 1 else host
    if name in _SEARCH_SITES:
        return name, "organic"
    if name in _SOCIAL_SITES or host in _SOCIAL_SITES:
        return name, "social"
    return host, "referral"


_SEARCH_SITES = frozenset(
    [
        "google",
        "bing",
        "yahoo",
        "duckduckgo",
        "baidu",
        "yandex",
        "ecosia",
        "ask",
        "naver",
        "seznam",
        "qwant",
        "startpage",
        "brave",
    ]
)
_SOCIAL_SITES = frozenset(
    [
        "facebook",
        "fb",
        "instagram",
        "ig",
        "linkedin",
        "lnkd",
        "twitter",
        "x",
        "t.co",
        "reddit",
        "pinterest",
        "tiktok",
        "snapchat",
        "threads",
        "quora",
        "tumblr",
        "vk",
        "whatsapp",
        "messenger",
    ]
)
_VIDEO_SITES = frozenset(["youtube", "vimeo", "twitch", "dailymotion", "wistia"])
_SHOPPING_SITES = frozenset(["amazon", "ebay", "etsy", "shopify", "walmart", "google_shopping"])
_PAID_MEDIUM = re.compile(r"^(.*cp.*|ppc|retargeting|paid.*)$")
_DISPLAY_MEDIUM = frozenset({"display", "banner", "expandable", "interstitial", "cpm"})
_EMAIL = re.compile(r"email|e-mail|e_mail|e mail")
_VALUE_LIMIT = 255


def channel_of(
    source: str | None,
    medium: str | None,
    campaign: str | None,
    rules: Sequence[ChannelRule] = (),
) -> str:
    """The channel of a session: the first matching admin rule, else GA4's default group.

    Only the first 255 characters of each value count (the store keeps no more, and the
    patterns stay linear)."""
    source, medium, campaign = (v[:_VALUE_LIMIT] if v else v for v in (source, medium, campaign))
    for rule in rules:
        if _rule_matches(rule, source, medium, campaign):
            return rule.channel
    return _default_channel(source, medium, campaign)


@lru_cache(maxsize=4096)  # sessions share few source/medium/campaign combinations
def _default_channel(source: str | None, medium: str | None, campaign: str | None) -> str:
    """GA4's default channel group."""
    src = (source or "").lower()
    med = (medium or "").lower()
    camp = (campaign or "").lower()
    if (not src or src == "(direct)") and med in ("", "(none)", "(not set)"):
        return Channel.DIRECT
    if "cross-network" in camp:
        return Channel.CROSS_NETWORK
    paid = bool(_PAID_MEDIUM.match(med))
    if (src in _SHOPPING_SITES or re.search(r"(^|[^a-df-z])shop|shopping", camp)) and paid:
        return Channel.PAID_SHOPPING
    if src in _SEARCH_SITES and paid:
        return Channel.PAID_SEARCH
    if src in _SOCIAL_SITES and paid:
        return Channel.PAID_SOCIAL
    if src in _VIDEO_SITES and paid:
        return Channel.PAID_VIDEO
    if med in _DISPLAY_MEDIUM:
        return Channel.DISPLAY
    if paid:
        return Channel.PAID_OTHER
    if src in _SHOPPING_SITES or re.search(r"(^|[^a-df-z])shop|shopping", camp):
        return Channel.ORGANIC_SHOPPING
    if src in _SOCIAL_SITES or med in ("social", "social-network", "social-media", "sm"):
        return Channel.ORGANIC_SOCIAL
    if src in _VIDEO_SITES or "video" in med:
        return Channel.ORGANIC_VIDEO
    if src in _SEARCH_SITES or med == "organic":
        return Channel.ORGANIC_SEARCH
    if _EMAIL.search(src) or _EMAIL.search(med):
        return Channel.EMAIL
    if med == "affiliate":
        return Channel.AFFILIATES
    if med in ("referral", "app", "link"):
        return Channel.REFERRAL
    if med == "audio":
        return Channel.AUDIO
    if src == "sms" or med == "sms":
        return Channel.SMS
    if med.endswith("push") or "mobile" in med or "notification" in med:
        return Channel.MOBILE_PUSH
    return Channel.UNASSIGNED


def _rule_matches(
    rule: ChannelRule, source: str | None, medium: str | None, campaign: str | None
) -> bool:
    for pattern, value in ((rule.source, source), (rule.medium, medium), (rule.campaign, campaign)):
        if pattern is not None and not re.search(pattern, value or "", re.IGNORECASE):
            return False
    return True

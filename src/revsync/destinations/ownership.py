"""Which touchpoints belong to which ad platform: the credit a platform is paid for.

Google: a Google click ID (gclid, gbraid, wbraid) or a paid Google source. Meta: fbclid,
an ``_fbc`` cookie or a paid Facebook/Instagram source, unless the landing is Google's. A
touchpoint belongs to at most one of them, so their credited values never add up to more
than the deal amount. GA4, the cross-channel view, is credited with every touchpoint.
"""

from __future__ import annotations

import re

from revsync.domain import Channel, Touchpoint

PAID_CHANNELS = frozenset(
    {
        Channel.PAID_SEARCH,
        Channel.PAID_SOCIAL,
        Channel.PAID_SHOPPING,
        Channel.PAID_VIDEO,
        Channel.DISPLAY,
        Channel.CROSS_NETWORK,
        Channel.PAID_OTHER,
    }
)
_GOOGLE = re.compile(r"^(google|googleads|adwords|youtube|gdn|dv360)\b", re.IGNORECASE)
_META = re.compile(r"^(facebook|fb|instagram|ig|meta|messenger|audience_network)\b", re.I)


def _paid_from(touchpoint: Touchpoint, source: re.Pattern[str]) -> bool:
    return touchpoint.channel in PAID_CHANNELS and bool(source.match(touchpoint.source or ""))


def is_google(touchpoint: Touchpoint) -> bool:
    return touchpoint.click_ids.google_click is not None or _paid_from(touchpoint, _GOOGLE)


def is_meta(touchpoint: Touchpoint) -> bool:
    if is_google(touchpoint):
        return False
    ids = touchpoint.click_ids
    return bool(ids.fbclid or ids.fbc) or _paid_from(touchpoint, _META)

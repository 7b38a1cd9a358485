"""Normalise and SHA-256 hash email and phone per each platform's documented rules.

Email:

* Google Ads API and Data Manager API (``email_google``; Data Manager "Format user data",
  https://developers.google.com/data-manager/api/devguides/concepts/formatting, and the
  Google Ads API enhanced-conversions normalisation): remove leading, trailing and
  intermediate whitespace; lowercase; for ``gmail.com`` and ``googlemail.com`` only, remove
  every ``.`` of the local part and the first ``+`` with everything after it
  (``cloudy.sanfrancisco+shopping@gmail.com`` -> ``cloudysanfrancisco@gmail.com``); other
  domains keep their dots and ``+`` suffix (``user.name+NYC@Example.com`` ->
  ``user.name+nyc@example.com``).
* GA4 Measurement Protocol (``email_ga4``; "Send user-provided data with User-ID using the
  Measurement Protocol", ``user_data.sha256_email_address``,
  https://developers.google.com/analytics/devguides/collection/ga4/uid-data): lowercase;
  remove the periods before ``@`` for gmail.com/googlemail.com addresses; remove all
  spaces. The page documents no ``+`` suffix removal, so the suffix is kept.
* Meta Conversions API (``email``; "Customer Information Parameters", ``em``): trim leading
  and trailing spaces and lowercase. This is also revsync's matching key. Intermediate
  whitespace (never part of a valid address, and rejected before this module accepted it)
  is removed too, so an address typed with a stray space still hashes to the address.

Phone:

* Google Ads, Data Manager and GA4 (``phone``): E.164 with the leading ``+`` and country
  code (Data Manager: ``(800)555-0100`` in the US -> ``+18005550100``; GA4: digits only
  with a ``+`` prefix).
* Meta (``phone_meta``, ``ph``): digits only with the country code, no symbols, letters or
  leading zeros (``(650)555-1212`` in the US -> ``16505551212``).

A value that is already a SHA-256 hex digest passes through unchanged. Exception messages
never contain the value.
"""

from __future__ import annotations

import hashlib
import re

import phonenumbers

from revsync.domain import PersonHashes

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})
_EMAIL_LIMIT = 254  # RFC 5321's longest address; also keeps the pattern linear


class InvalidIdentifier(ValueError):
    """An email or phone that cannot be normalised; the message says why (never the value)."""


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def is_sha256_hex(value: str) -> bool:
    return bool(_SHA256_HEX.match(value))


def _checked(email: str) -> str:
    if len(email) > _EMAIL_LIMIT:
        raise InvalidIdentifier(f"longer than {_EMAIL_LIMIT} characters")
    if not _EMAIL.match(email):
        raise InvalidIdentifier("not an email address")
    return email


def _base_email(raw: str) -> str:
    """Whitespace removed (leading, trailing and intermediate) and lower-cased."""
    return _checked("".join(raw.split()).lower())


def normalize_email(raw: str) -> str:
    """Meta ``em`` and the matching key: trimmed and lower-cased.

    Raises ``InvalidIdentifier`` unless the result looks like an address.
    """
    return _base_email(raw)


def normalize_email_ga4(raw: str) -> str:
    """GA4 ``sha256_email_address``: ``normalize_email`` plus removing the dots of the
    local part for gmail.com/googlemail.com; a ``+`` suffix is kept."""
    local, _, domain = _base_email(raw).partition("@")
    if domain in _GMAIL_DOMAINS:
        local = local.replace(".", "")
    return _checked(f"{local}@{domain}")


def normalize_email_google(raw: str) -> str:
    """Google Ads API and Data Manager API: ``normalize_email`` plus, for gmail.com and
    googlemail.com only, removing the dots of the local part and its ``+`` suffix."""
    local, _, domain = _base_email(raw).partition("@")
    if domain in _GMAIL_DOMAINS:
        local = local.partition("+")[0].replace(".", "")
    return _checked(f"{local}@{domain}")


def normalize_phone_e164(raw: str, default_region: str | None = None) -> str:
    """E.164 with leading ``+``; a number without country code needs ``default_region``."""
    text = raw.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, None if text.startswith("+") else default_region)
    except phonenumbers.NumberParseException:
        raise InvalidIdentifier("not a phone number") from None
    if not phonenumbers.is_possible_number(number):
        raise InvalidIdentifier("not a possible phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_phone_meta(raw: str, default_region: str | None = None) -> str:
    """Meta ``ph``: the E.164 number as digits only (country code, no ``+``)."""
    return normalize_phone_e164(raw, default_region).lstrip("+")


def hash_person(
    email: str | None, phone: str | None, default_region: str | None = None
) -> PersonHashes:
    """Hash one person's email and phone under every platform's rules.

    Raises ``InvalidIdentifier`` naming the field (``email`` or ``phone``) that is bad.
    """
    email_hash = email_google = email_ga4 = phone_hash = phone_meta = None
    if email and email.strip():
        if is_sha256_hex(email.strip()):
            email_hash = email_google = email_ga4 = email.strip()
        else:
            try:
                email_hash = sha256_hex(normalize_email(email))
                email_google = sha256_hex(normalize_email_google(email))
                email_ga4 = sha256_hex(normalize_email_ga4(email))
            except InvalidIdentifier as exc:
                raise InvalidIdentifier(f"email: {exc}") from None
    if phone and phone.strip():
        if is_sha256_hex(phone.strip()):
            phone_hash = phone_meta = phone.strip()
        else:
            try:
                e164 = normalize_phone_e164(phone, default_region)
            except InvalidIdentifier as exc:
                raise InvalidIdentifier(f"phone: {exc}") from None
            phone_hash = sha256_hex(e164)
            phone_meta = sha256_hex(e164.lstrip("+"))
    return PersonHashes(
        email=email_hash,
        email_google=email_google,
        phone=phone_hash,
        phone_meta=phone_meta,
        email_ga4=email_ga4,
    )

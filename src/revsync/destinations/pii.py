"""Normalise and SHA-256 hash email and phone per each platform's documented rules.

Google Ads and GA4 (user-provided data guides): trim and lowercase the email; for
``gmail.com`` and ``googlemail.com`` remove the dots of the local part; phone in E.164
with its leading ``+``. Meta (Conversions API customer information parameters): trim and
lowercase the email; phone as digits only with the country code, no ``+`` or ``00``.
A value that is already a SHA-256 hex digest passes through unchanged.
"""

from __future__ import annotations

import hashlib
import re

import phonenumbers

from revsync.domain import PersonHashes

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_GOOGLE_DOT_DOMAINS = frozenset({"gmail.com", "googlemail.com"})


class InvalidIdentifier(ValueError):
    """An email or phone that cannot be normalised; the message says why (never the value)."""


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def is_sha256_hex(value: str) -> bool:
    return bool(_SHA256_HEX.match(value))


def normalize_email(raw: str) -> str:
    """Trim and lowercase; raise ``InvalidIdentifier`` unless it looks like an address."""
    email = raw.strip().lower()
    if not _EMAIL.match(email):
        raise InvalidIdentifier("not an email address")
    return email


def normalize_email_google(raw: str) -> str:
    """``normalize_email`` plus Google's dot rule for gmail.com and googlemail.com."""
    local, _, domain = normalize_email(raw).partition("@")
    if domain in _GOOGLE_DOT_DOMAINS:
        local = local.replace(".", "")
    return f"{local}@{domain}"


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


def hash_person(
    email: str | None, phone: str | None, default_region: str | None = None
) -> PersonHashes:
    """Hash one person's email and phone under every platform's rules.

    Raises ``InvalidIdentifier`` naming the field (``email`` or ``phone``) that is bad.
    """
    email_hash = email_google = phone_hash = phone_meta = None
    if email and email.strip():
        if is_sha256_hex(email.strip()):
            email_hash = email_google = email.strip()
        else:
            try:
                email_hash = sha256_hex(normalize_email(email))
                email_google = sha256_hex(normalize_email_google(email))
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
        email=email_hash, email_google=email_google, phone=phone_hash, phone_meta=phone_meta
    )

"""PII normalisation against the examples in the platforms' own documentation."""

from __future__ import annotations

import hashlib

import pytest

from revsync.destinations.pii import (
    InvalidIdentifier,
    hash_person,
    normalize_email,
    normalize_email_google,
    normalize_phone_e164,
)


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def test_google_gmail_dot_rule_only_for_gmail_and_googlemail() -> None:
    # Google Ads enhanced conversions guide: remove periods before the domain for
    # gmail.com and googlemail.com only; lowercase; trim.
    assert normalize_email_google(" Jane.Doe@Gmail.com ") == "janedoe@gmail.com"
    assert normalize_email_google("jane.doe@googlemail.com") == "janedoe@googlemail.com"
    assert normalize_email_google("jane.doe@example.com") == "jane.doe@example.com"
    assert normalize_email_google("jane.doe+tag@example.com") == "jane.doe+tag@example.com"


def test_meta_email_is_trimmed_and_lowercased_only() -> None:
    assert normalize_email("  Jane.Doe@Gmail.com") == "jane.doe@gmail.com"


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("+1 (650) 555-1212", None, "+16505551212"),
        ("650-555-1212", "US", "+16505551212"),
        ("0044 20 7946 0958", None, "+442079460958"),
        ("030 1234567", "DE", "+49301234567"),
    ],
)
def test_phone_e164(raw: str, region: str | None, e164: str) -> None:
    assert normalize_phone_e164(raw, region) == e164


def test_hashes_per_platform() -> None:
    person = hash_person("Jane.Doe@Gmail.com", "+1 650 555 1212")
    assert person.email == sha("jane.doe@gmail.com")
    assert person.email_google == sha("janedoe@gmail.com")
    assert person.phone == sha("+16505551212")  # Google / GA4: E.164 with +
    assert person.phone_meta == sha("16505551212")  # Meta: digits only


def test_already_hashed_values_pass_through() -> None:
    digest = sha("jane@example.com")
    assert hash_person(digest, None).email == digest


def test_errors_name_the_field_and_never_the_value() -> None:
    with pytest.raises(InvalidIdentifier) as info:
        hash_person("not-an-email", None)
    assert str(info.value).startswith("email:")
    assert "not-an-email" not in str(info.value)
    with pytest.raises(InvalidIdentifier, match="^phone:"):
        hash_person(None, "12")

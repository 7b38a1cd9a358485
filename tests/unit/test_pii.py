"""PII normalisation against the examples in the platforms' own documentation.

Sources:
* Data Manager API, "Format user data":
  https://developers.google.com/data-manager/api/devguides/concepts/formatting
* Google Ads API, enhanced conversions "Normalize and hash user-provided data":
  https://developers.google.com/google-ads/api/docs/conversions/upload-offline
* GA4 Measurement Protocol, "Send user-provided data with User-ID":
  https://developers.google.com/analytics/devguides/collection/ga4/uid-data
* Meta Conversions API, "Customer Information Parameters":
  https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/customer-information-parameters
"""

from __future__ import annotations

import hashlib

import pytest

from revsync.destinations.pii import (
    InvalidIdentifier,
    hash_person,
    normalize_email,
    normalize_email_ga4,
    normalize_email_google,
    normalize_phone_e164,
    normalize_phone_meta,
)


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# --- Google Ads API and Data Manager API -------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        # Data Manager "Format user data" examples, verbatim.
        ("cloudy.sanfrancisco+shopping@gmail.com", "cloudysanfrancisco@gmail.com"),
        ("user.name+NYC@Example.com", "user.name+nyc@example.com"),
        # The same rules: gmail.com and googlemail.com only, dots and "+" suffix.
        (" Jane.Doe@Gmail.com ", "janedoe@gmail.com"),
        ("jane.doe@googlemail.com", "janedoe@googlemail.com"),
        ("J.a.n.e.Doe+Shop.Ping+x@GoogleMail.COM", "janedoe@googlemail.com"),
        ("jane.doe@example.com", "jane.doe@example.com"),
        ("jane.doe+tag@example.com", "jane.doe+tag@example.com"),
        ("jane.doe+tag@gmail.co.uk", "jane.doe+tag@gmail.co.uk"),
        # Data Manager: trim leading, trailing and intermediate whitespace.
        ("\t cloudy.san francisco + shopping @ gmail.com \n", "cloudysanfrancisco@gmail.com"),
        ("user.name +NYC@Example .com", "user.name+nyc@example.com"),
    ],
)
def test_google_email(raw: str, normalised: str) -> None:
    assert normalize_email_google(raw) == normalised


def test_google_email_hash_of_the_data_manager_example() -> None:
    person = hash_person("cloudy.sanfrancisco+shopping@gmail.com", None)
    assert person.email_google == sha("cloudysanfrancisco@gmail.com")
    assert person.email_google == (
        "223ebda6f6889b1494551ba902d9d381daf2f642bae055888e96343d53e9f9c4"
    )


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        # Data Manager example: US (800)555-0100 -> +18005550100.
        ("(800)555-0100", "US", "+18005550100"),
        # Google Ads API forum answer's E.164 examples.
        ("+1 212 565 0000", None, "+12125650000"),
        ("+44 20 7031 3000", None, "+442070313000"),
        ("+1 (650) 555-1212", None, "+16505551212"),
        ("650-555-1212", "US", "+16505551212"),
        ("0044 20 7946 0958", None, "+442079460958"),
        ("030 1234567", "DE", "+49301234567"),
        ("  +1 800 555 0100  ", None, "+18005550100"),
    ],
)
def test_phone_e164(raw: str, region: str | None, e164: str) -> None:
    # Google Ads, Data Manager and GA4 (GA4: digits only with a "+" prefix).
    assert normalize_phone_e164(raw, region) == e164


# --- GA4 Measurement Protocol -----------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        # Dots before "@" removed for gmail.com/googlemail.com only; no "+" rule documented.
        ("cloudy.sanfrancisco+shopping@gmail.com", "cloudysanfrancisco+shopping@gmail.com"),
        ("Jane.Doe@GoogleMail.com", "janedoe@googlemail.com"),
        ("jane.doe+tag@example.com", "jane.doe+tag@example.com"),
        # "remove all spaces"
        (" jane doe @ gmail.com ", "janedoe@gmail.com"),
    ],
)
def test_ga4_email(raw: str, normalised: str) -> None:
    assert normalize_email_ga4(raw) == normalised


# --- Meta Conversions API ---------------------------------------------------------------


def test_meta_email_example() -> None:
    # em: "Input: John_Smith@gmail.com, Normalized: john_smith@gmail.com".
    assert normalize_email("John_Smith@gmail.com") == "john_smith@gmail.com"
    assert hash_person("John_Smith@gmail.com", None).email == (
        "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"
    )


def test_meta_email_is_trimmed_and_lowercased_only() -> None:
    assert normalize_email("  Jane.Doe@Gmail.com") == "jane.doe@gmail.com"
    assert normalize_email("Jane.Doe+Tag@Gmail.com ") == "jane.doe+tag@gmail.com"


def test_meta_phone_example() -> None:
    # ph: "US phone number (650)555-1212, Normalized: 16505551212".
    assert normalize_phone_meta("(650)555-1212", "US") == "16505551212"
    assert hash_person(None, "(650)555-1212", "US").phone_meta == (
        "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"
    )


def test_meta_phone_has_no_plus_or_leading_zeros() -> None:
    assert normalize_phone_meta("0044 (0)20 7946 0958") == "442079460958"
    assert normalize_phone_meta("030 1234567", "DE") == "49301234567"


# --- hash_person ------------------------------------------------------------------------


def test_hashes_per_platform() -> None:
    person = hash_person(" Jane.Doe+Shop@Gmail.com", "+1 650 555 1212")
    assert person.email == sha("jane.doe+shop@gmail.com")  # Meta and matching key
    assert person.email_google == sha("janedoe@gmail.com")  # Google Ads, Data Manager
    assert person.email_ga4 == sha("janedoe+shop@gmail.com")  # GA4
    assert person.phone == sha("+16505551212")  # Google Ads, Data Manager, GA4
    assert person.phone_meta == sha("16505551212")  # Meta


def test_matching_key_is_unchanged_for_addresses_without_inner_whitespace() -> None:
    for raw in ("Jane.Doe@Gmail.com", " jane.doe+x@example.com\t", "a_b@c.io"):
        assert hash_person(raw, None).email == sha(raw.strip().lower())


def test_email_with_intermediate_whitespace_is_normalised_not_rejected() -> None:
    person = hash_person("cloudy.sanfrancisco +shopping@ gmail.com", None)
    assert person.email_google == sha("cloudysanfrancisco@gmail.com")
    assert person.email_ga4 == sha("cloudysanfrancisco+shopping@gmail.com")
    assert person.email == sha("cloudy.sanfrancisco+shopping@gmail.com")


def test_non_gmail_email_is_the_same_for_every_platform() -> None:
    person = hash_person("User.Name+NYC@Example.com", None)
    expected = sha("user.name+nyc@example.com")
    assert person.email == person.email_google == person.email_ga4 == expected


def test_already_hashed_values_pass_through() -> None:
    digest = sha("jane@example.com")
    person = hash_person(digest, digest)
    assert person.email == person.email_google == person.email_ga4 == digest
    assert person.phone == person.phone_meta == digest


@pytest.mark.parametrize(
    "raw", ["not-an-email", "jane@", "@gmail.com", "+shopping@gmail.com", "a@b@c.com"]
)
def test_bad_emails_name_the_field_and_never_the_value(raw: str) -> None:
    with pytest.raises(InvalidIdentifier) as info:
        hash_person(raw, None)
    assert str(info.value).startswith("email:")
    assert raw not in str(info.value)
    assert info.value.__cause__ is None


@pytest.mark.parametrize("raw", ["12", "call me", "+999 123"])
def test_bad_phones_name_the_field_and_never_the_value(raw: str) -> None:
    with pytest.raises(InvalidIdentifier) as info:
        hash_person(None, raw)
    assert str(info.value).startswith("phone:")
    assert raw not in str(info.value)

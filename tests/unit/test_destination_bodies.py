"""Request bodies built by the platform rules (pure), checked field by field."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

from revsync.config.destinations import Ga4Destination as Ga4Config
from revsync.config.destinations import GoogleAdsDestination as GoogleAdsConfig
from revsync.config.destinations import MetaDestination as MetaConfig
from revsync.destinations.files import FileTransport
from revsync.destinations.ga4 import Ga4Destination
from revsync.destinations.google_ads import GoogleAdsDestination, google_datetime
from revsync.destinations.meta import MetaDestination
from revsync.destinations.pii import hash_person, sha256_hex
from revsync.domain import (
    ClickIds,
    Consent,
    Contact,
    ConversionKind,
    Credit,
    Deal,
    DealStatus,
    Journey,
    MatchLink,
    OutcomeStatus,
    Touchpoint,
)

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def journey(n: int, clicks: ClickIds, consent: bool | None = True, email: str = "a@b.co",
            closed: timedelta = timedelta(hours=2)) -> tuple[Journey, list[Credit]]:  # fmt: skip
    """Deal D{n}, closed ``closed`` ago, whose contact (linked by ``email``) clicked an ad
    three days before now: Meta's (Paid Social) when ``clicks`` has a Meta ID, else Google's."""
    meta = bool(clicks.fbc or clicks.fbp or clicks.fbclid)
    tp = Touchpoint(f"tp{n}", f"v{n}", NOW - timedelta(days=3),
                    "Paid Social" if meta else "Paid Search", "facebook" if meta else "google",
                    click_ids=clicks, consent=Consent(consent, consent))  # fmt: skip
    hashes = hash_person(email, None)
    deal = Deal("crm", f"D{n}", DealStatus.WON, Decimal("100.00"), "EUR", NOW - closed, NOW,
                contacts=(Contact(f"C{n}", hashes, True),))  # fmt: skip
    links = (MatchLink(tp.visitor_id, "email", hashes.email or ""),)
    return Journey(deal, (tp,), links), [Credit(tp.id, Fraction(1), Decimal("100.00"))]


def test_google_datetime_has_the_accounts_offset() -> None:
    at = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    assert google_datetime(at, "America/New_York") == "2026-07-01 08:00:00-04:00"
    assert google_datetime(at, "Asia/Kolkata") == "2026-07-01 17:30:00+05:30"
    assert google_datetime(NOW, "UTC") == "2026-11-20 12:00:00+00:00"


def test_google_body_one_click_id_and_batches_split_by_kind(tmp_path: Path) -> None:
    config = GoogleAdsConfig(name="g", type="google_ads", transport="file", customer_id="1230000000",
                             conversion_action="9", output_dir=tmp_path)  # fmt: skip
    destination = GoogleAdsDestination(config, "last_touch", FileTransport(tmp_path, "g", "x"))
    j, credits = journey(1, ClickIds(gclid="CjwGclid1234", gbraid="GBbraid12345"))
    [conversion] = destination.plan(j, credits, NOW).conversions
    retraction = destination.adjustment(conversion, ConversionKind.RETRACTION, Decimal(0), NOW)
    assert retraction is not None
    clicks, adjustments = destination.build([conversion, retraction])
    row = clicks.body["conversions"][0]
    assert row["gclid"] == "CjwGclid1234" and "gbraid" not in row
    assert row["conversion_action"] == "customers/1230000000/conversionActions/9"
    assert clicks.body["partial_failure"] is True
    assert adjustments.body["conversion_adjustments"][0] == {
        "conversion_action": "customers/1230000000/conversionActions/9",
        "adjustment_type": "RETRACTION",
        "adjustment_date_time": "2026-11-20 12:00:00+00:00",
        "order_id": conversion.key,
    }


def test_google_custom_variables_from_deal_attributes(tmp_path: Path) -> None:
    from google.ads.googleads.v26.services.types.conversion_upload_service import (
        UploadClickConversionsRequest,
    )

    config = GoogleAdsConfig(name="g", type="google_ads", transport="file", customer_id="1230000000",
                             conversion_action="9",
                             custom_variables={"55": "pipeline", "56": "Region__c", "57": "owner"})  # fmt: skip
    destination = GoogleAdsDestination(config, "last_touch", FileTransport(tmp_path, "g", "x"))
    j, credits = journey(1, ClickIds(gclid="CjwGclid1234"))
    deal = dataclasses.replace(j.deal, pipeline="expansion", fields={"Region__c": "EMEA"})
    [conversion] = destination.plan(dataclasses.replace(j, deal=deal), credits, NOW).conversions
    [request] = destination.build([conversion])
    row = request.body["conversions"][0]
    assert row["custom_variables"] == [
        {
            "conversion_custom_variable": "customers/1230000000/conversionCustomVariables/55",
            "value": "expansion",
        },
        {
            "conversion_custom_variable": "customers/1230000000/conversionCustomVariables/56",
            "value": "EMEA",
        },
    ]  # no owner on the deal: nothing sent for 57
    # The body is a valid request for the google-ads client, field for field.
    proto = UploadClickConversionsRequest(request.body)
    assert proto.conversions[0].custom_variables[1].value == "EMEA"


def test_ga4_splits_requests_by_person_and_backdates_per_event(tmp_path: Path) -> None:
    block = Ga4Config(name="ga4", type="ga4", transport="file", measurement_id="G-T1")
    destination = Ga4Destination(block, "last_touch", FileTransport(tmp_path, "ga4", "ga4"),
                                 clock=lambda: NOW)  # fmt: skip
    same_client = ClickIds(ga_client_id="111.222")
    plans = [
        journey(1, same_client, email="ann@x.co"),
        journey(2, same_client, email="bob@x.co", closed=timedelta(days=5)),
        journey(3, same_client, email="ann@x.co", closed=timedelta(hours=3)),
    ]
    batch = [c for j, credits in plans for c in destination.plan(j, credits, NOW).conversions]
    requests = destination.build(batch)
    assert [len(r.keys) for r in requests] == [2, 1]  # Ann's two events, then Bob's
    ann, bob = (r.body for r in requests)
    assert ann["user_data"]["sha256_email_address"] == [hash_person("ann@x.co", None).email_google]
    assert all("timestamp_micros" in e for e in ann["events"])
    assert "timestamp_micros" not in bob["events"][0]  # 5 days old: beyond 72 h
    assert all(len(r.body["events"]) <= 25 for r in requests)


def test_meta_never_sends_old_events_and_hashes_user_data(tmp_path: Path) -> None:
    block = MetaConfig(name="meta", type="meta", transport="file", pixel_id="42",
                       output_dir=tmp_path)  # fmt: skip
    transport = FileTransport(tmp_path, "meta", "meta")
    destination = MetaDestination(block, "last_touch", transport, clock=lambda: NOW)
    fresh, fresh_credits = journey(1, ClickIds(fbc="fb.1.1763000000000.AbC", fbp="fb.1.1.2"))
    aging, aging_credits = journey(2, ClickIds(fbp="fb.1.1.3"), closed=timedelta(days=6))
    old, old_credits = journey(3, ClickIds(fbp="fb.1.1.4"), closed=timedelta(days=8))
    # Closed 8 days ago: revsync's own decision when planning, not a platform rejection.
    [skipped] = destination.plan(old, old_credits, NOW).skipped
    assert skipped.field == "close_date" and "7 days" in skipped.reason
    batch = [
        *destination.plan(fresh, fresh_credits, NOW).conversions,
        *destination.plan(aging, aging_credits, NOW).conversions,
    ]
    destination.clock = lambda: NOW + timedelta(days=1)  # the second row aged past 7 days
    outcomes = {o.key: o for o in destination.send(batch)}
    destination.close()
    assert outcomes[batch[1].key].status is OutcomeStatus.SKIPPED
    assert outcomes[batch[1].key].code == "EVENT_TOO_OLD"
    assert outcomes[batch[0].key].status is OutcomeStatus.SENT
    [line] = (tmp_path / "meta.meta.jsonl").read_text().splitlines()
    [event] = json.loads(line)["body"]["data"]
    assert event["event_id"] == batch[0].key
    assert event["user_data"]["fbc"] == "fb.1.1763000000000.AbC"  # never hashed
    assert len(event["user_data"]["em"][0]) == 64 and "@" not in json.dumps(event)


def test_denied_consent_is_never_planned(tmp_path: Path) -> None:
    block = MetaConfig(name="meta", type="meta", transport="file", pixel_id="42")
    destination = MetaDestination(block, "last_touch", FileTransport(tmp_path, "m", "meta"))
    j, credits = journey(1, ClickIds(fbp="fb.1.1.2"), consent=False)
    plan = destination.plan(j, credits, NOW)
    assert plan.conversions == ()
    assert [s.field for s in plan.skipped] == ["consent_ad_user_data"]


def test_ga4_and_google_each_get_their_own_gmail_normalisation(tmp_path: Path) -> None:
    """Google strips a gmail +suffix (Data Manager's formatting guide), GA4 keeps it (its
    user-provided data guide removes only the dots)."""
    email = "Ann.Lee+crm@gmail.com"
    j, credits = journey(1, ClickIds(gclid="CjwGclid1234", ga_client_id="111.222"), email=email)
    ga4 = Ga4Destination(Ga4Config(name="ga4", type="ga4", transport="file", measurement_id="G-T1"),
                         "last_touch", FileTransport(tmp_path, "ga4", "ga4"), clock=lambda: NOW)  # fmt: skip
    google = GoogleAdsDestination(
        GoogleAdsConfig(name="g", type="google_ads", transport="file", customer_id="1230000000",
                        conversion_action="9", enhanced_conversions=True),
        "last_touch", FileTransport(tmp_path, "g", "x"),
    )  # fmt: skip
    [event_request] = ga4.build(ga4.plan(j, credits, NOW).conversions)
    [click_request] = google.build(google.plan(j, credits, NOW).conversions)
    assert event_request.body["user_data"]["sha256_email_address"] == [
        sha256_hex("annlee+crm@gmail.com")
    ]
    assert click_request.body["conversions"][0]["user_identifiers"] == [
        {"hashed_email": sha256_hex("annlee@gmail.com")}]  # fmt: skip

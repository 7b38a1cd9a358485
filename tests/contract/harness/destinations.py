"""One adapter per destination x transport: the real destination class, the real transport.

Network transports talk to their emulator (google-ads over TLS gRPC, google-ads-datamanager
over REST, httpx to the GA4 MP emulator, facebook-business to the Graph emulator); the file
transports write JSONL under a temporary directory. Every adapter plans its conversions
through the destination's own ``plan`` from the same kind of won deal: one paid touchpoint
carrying a gclid, an ``fbc`` and a GA4 client id, and a contact whose raw email and phone
(``EMAIL``, ``PHONE``) only ever leave as hashes.

Capabilities say what a transport can observe: ``network`` (False for files: nothing fails,
nothing to retry), ``row_verdicts`` (``"always"``, ``"validate_only"`` for GA4 whose
production endpoint answers 2xx to anything, ``"local"`` for platforms that judge a batch
whole so the destination filters what it knows is bad, ``"none"`` for files) and
``credentials`` (False for GA4: a wrong api_secret is silently accepted).
"""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import grpc
from google.protobuf import json_format
from pydantic import SecretStr

from revsync.config.destinations import Ga4Destination as Ga4Config
from revsync.config.destinations import GoogleAdsDestination as GoogleAdsConfig
from revsync.config.destinations import MetaDestination as MetaConfig
from revsync.destinations.base import PlatformDestination
from revsync.destinations.data_manager import DataManagerTransport
from revsync.destinations.files import FileTransport
from revsync.destinations.ga4 import Ga4Destination
from revsync.destinations.ga4_http import Ga4HttpTransport
from revsync.destinations.google_ads import GoogleAdsDestination
from revsync.destinations.google_ads_api import GoogleAdsApiTransport, GoogleOAuth
from revsync.destinations.meta import MetaDestination
from revsync.destinations.meta_api import MetaApiTransport
from revsync.destinations.pii import hash_person
from revsync.destinations.retry import RetryPolicy
from revsync.domain import (
    Channel,
    ClickIds,
    Consent,
    Contact,
    Conversion,
    Credit,
    Deal,
    DealStatus,
    Journey,
    MatchLink,
    Touchpoint,
)
from tests.emulators.data_manager import DataManagerEmulator, EmulatorClock
from tests.emulators.ga4_mp import GA4MPEmulator
from tests.emulators.google_ads import GoogleAdsEmulator
from tests.emulators.http_base import Response
from tests.emulators.meta_graph import MetaGraphEmulator
from tests.emulators.oauth import OAuthEmulator
from tests.emulators.tls import TlsFiles

NOW = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
EMAIL = "Jane.Doe@Example.com"
PHONE = "+1 415 555 0100"
RAW_PII = (EMAIL, EMAIL.lower(), "+14155550100", "14155550100", "4155550100", "415 555 0100")
HASHES = hash_person(EMAIL, PHONE)
ATTEMPTS = 3  # in-process attempts of every network transport here
CUSTOMER, ACTION = "1234567890", "111"
CLIENT_ID = "revsync-client.apps.googleusercontent.com"
CLIENT_SECRET = "GOCSPX-contract-secret-3b7"
REFRESH = "1//contract-refresh-91d"
DEV_TOKEN = "devtok-contract-Zq81"
META_TOKEN = "EAAB-contract-token-0c3a"
PIXEL = "1234567890"
MEASUREMENT_ID = "G-CONTRACT9"
API_SECRET = "mp-contract-secret-77f"
GA_CLIENT = "1234567890.1700000000"
Verdicts = Literal["always", "validate_only", "local", "none"]


@dataclass(frozen=True)
class DestCaps:
    """What a destination x transport can observe; ``why_not`` explains each gap."""

    platform_limit: int  # rows one request may carry
    network: bool
    row_verdicts: Verdicts
    credentials: bool
    why_not: dict[str, str]


def journey(
    n: int, age: timedelta = timedelta(hours=2), platform: str = "google_ads"
) -> tuple[Journey, list[Credit]]:
    """A won deal closed ``age`` ago; its one touchpoint (a day earlier) is a click on the
    ``platform``'s ad (Meta: fbclid and _fbc; otherwise a gclid) with a GA client ID, by the
    deal's contact (linked by email), who granted ad consent."""
    close = NOW - age
    clicks = (
        ClickIds(fbclid=f"IwAR{n}", fbc=f"fb.1.1794999000000.IwAR{n}", ga_client_id=GA_CLIENT)
        if platform == "meta"
        else ClickIds(gclid=f"gclid-{n}", ga_client_id=GA_CLIENT)
    )
    touchpoint = Touchpoint(
        id=f"tp-{n}", visitor_id=f"v-{n}", occurred_at=close - timedelta(days=1),
        channel=Channel.PAID_SOCIAL if platform == "meta" else Channel.PAID_SEARCH,
        source="facebook" if platform == "meta" else "google", medium="cpc", click_ids=clicks,
        consent=Consent(ad_user_data=True, ad_personalization=True),
    )  # fmt: skip
    deal = Deal(
        source="crm", id=f"deal-{n}", status=DealStatus.WON, amount=Decimal("1250.50"),
        currency="EUR", close_at=close, modified_at=close,
        contacts=(Contact(f"contact-{n}", HASHES, is_primary=True),),
    )  # fmt: skip
    link = MatchLink(touchpoint.visitor_id, "email", HASHES.email or "")
    credits = [Credit(touchpoint.id, Fraction(1), Decimal("1250.50"))]
    return Journey(deal, (touchpoint,), (link,)), credits


class DestinationAdapter(ABC):
    """The operations every destination scenario uses (see the module docstring)."""

    name: str
    platform: str
    caps: DestCaps
    secrets: tuple[str, ...] = ()
    refresh_retries = 0  # calls an SDK repeats after refreshing the token on a 401

    def refusal_calls(self, rows: int) -> int:
        """Requests a batch of ``rows`` takes when every request is refused."""
        return 1

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.sleeps: list[float] = []

    # --- lifecycle and building ----------------------------------------------------

    def start(self) -> None:  # noqa: B027 - a file transport has nothing to start
        """Start the emulator, if any."""

    def stop(self) -> None:  # noqa: B027
        """Stop the emulator, if any."""

    @abstractmethod
    def destination(
        self, batch_size: int | None = None, validate: bool = False
    ) -> PlatformDestination: ...

    def conversions(
        self, dest: PlatformDestination, count: int, start: int = 0
    ) -> list[Conversion]:
        """``count`` conversions planned by ``dest`` itself (the platform knows their clicks)."""
        out: list[Conversion] = []
        for n in range(start, start + count):
            plan = dest.plan(*journey(n, platform=self.platform), NOW)
            assert plan.skipped == (), plan.skipped
            [conversion] = plan.conversions
            self._register(n)
            out.append(conversion)
        return out

    def _register(self, n: int) -> None:  # noqa: B027 - most platforms need no seeding
        """Tell the platform about the click of deal ``n``."""

    def pii_conversion(self, dest: PlatformDestination) -> Conversion:
        """A conversion that carries the contact's hashed email and phone."""
        return self.conversions(dest, 1, start=900)[0]

    @abstractmethod
    def spoil(self, conversion: Conversion) -> tuple[Conversion, str | None]:
        """The conversion made unacceptable to the platform, and the code its row must get
        (``None``: this transport accepts it as it is)."""

    # --- what the platform saw -----------------------------------------------------

    @abstractmethod
    def rows_per_request(self) -> list[int]:
        """Rows of each upload request the platform received (or the file holds), in order."""

    @abstractmethod
    def stored(self) -> set[str]:
        """Idempotency keys the platform holds (for a file: that the file holds)."""

    @abstractmethod
    def wire(self) -> list[str]:
        """Every upload request body as text."""

    def upload_calls(self) -> int:
        raise AssertionError(f"{self.name}: {self.caps.why_not['network']}")

    def fail_transient(self, times: int) -> None:
        raise AssertionError(f"{self.name}: {self.caps.why_not['network']}")

    def fail_permanent(self, rows: int = 1) -> None:
        raise AssertionError(f"{self.name}: {self.caps.why_not['network']}")

    def refuse_credentials(self) -> None:
        raise AssertionError(f"{self.name}: {self.caps.why_not['credentials']}")

    def fast_retry(self) -> RetryPolicy:
        return RetryPolicy(
            attempts=ATTEMPTS, initial_wait=0.01, max_wait=5, jitter=0.01, sleep=self.sleeps.append
        )


# --- Google Ads ------------------------------------------------------------------------


class _RecordingAdsEmulator(GoogleAdsEmulator):
    """The Google Ads emulator, also keeping every upload request it was sent."""

    received: list[Any]

    def _upload_click_conversions(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.received.append(request)
        return super()._upload_click_conversions(request, context)


def google_config(**fields: Any) -> GoogleAdsConfig:
    values: dict[str, Any] = {
        "name": "gads", "type": "google_ads", "customer_id": CUSTOMER,
        "conversion_action": ACTION, "enhanced_conversions": True, "timeout_seconds": 10,
    }  # fmt: skip
    return GoogleAdsConfig(**{**values, **fields})


class _GooglePlatform(DestinationAdapter):
    platform = "google_ads"

    def pii_conversion(self, dest: PlatformDestination) -> Conversion:
        """An enhanced conversion for leads: no click, the contact's hashed identifiers."""
        j, credits = journey(901)
        tp = dataclasses.replace(j.touchpoints[0], click_ids=ClickIds())
        plan = dest.plan(Journey(j.deal, (tp,), j.links), credits, NOW)
        [conversion] = plan.conversions
        assert conversion.person == HASHES
        return conversion


class GoogleAdsApiAdapter(_GooglePlatform):
    name = "google_ads-ads_api"
    caps = DestCaps(2_000, network=True, row_verdicts="always", credentials=True, why_not={})
    secrets = (DEV_TOKEN, CLIENT_SECRET, REFRESH)

    def __init__(self, tmp: Path, tls: TlsFiles) -> None:
        super().__init__(tmp)
        self.tls = tls
        self.oauth = OAuthEmulator(
            clients={CLIENT_ID: CLIENT_SECRET}, refresh_tokens={REFRESH: CLIENT_ID}
        )
        self.emu = _RecordingAdsEmulator(tls, self.oauth, developer_tokens=(DEV_TOKEN,), now=NOW)
        self.emu.received = []

    def start(self) -> None:
        self.oauth.start()
        self.emu.start()
        self.emu.add_conversion_action(CUSTOMER, int(ACTION), "Closed won")

    def stop(self) -> None:
        self.emu.stop()
        self.oauth.stop()

    def destination(
        self, batch_size: int | None = None, validate: bool = False
    ) -> GoogleAdsDestination:
        block = google_config(
            transport="ads_api", endpoint=self.emu.endpoint, token_uri=self.oauth.token_url,
            ca_bundle=self.tls.ca_cert, batch_size=batch_size, validate_only=validate,
        )  # fmt: skip
        retry = self.fast_retry()
        oauth = GoogleOAuth(CLIENT_ID, CLIENT_SECRET, REFRESH)
        transport = GoogleAdsApiTransport(block, DEV_TOKEN, oauth, retry, clock=lambda: NOW)
        return GoogleAdsDestination(block, "last_touch", transport, clock=lambda: NOW)

    def _register(self, n: int) -> None:
        self.emu.add_click(f"gclid-{n}", NOW - timedelta(days=1, hours=2))

    def spoil(self, conversion: Conversion) -> tuple[Conversion, str | None]:
        click = ClickIds(gclid=f"never-clicked-{conversion.deal_id}")
        return dataclasses.replace(conversion, click_ids=click), "CLICK_NOT_FOUND"

    def rows_per_request(self) -> list[int]:
        return [len(r.conversions) for r in self.emu.received]

    def stored(self) -> set[str]:
        return {u.order_id for u in self.emu.uploads}

    def wire(self) -> list[str]:
        return [type(r).to_json(r) for r in self.emu.received]

    def upload_calls(self) -> int:
        return self.emu.calls["UploadClickConversions"]

    def fail_transient(self, times: int) -> None:
        self.emu.fail_next(grpc.StatusCode.RESOURCE_EXHAUSTED, times)

    def fail_permanent(self, rows: int = 1) -> None:
        self.emu.fail_next(grpc.StatusCode.INVALID_ARGUMENT)

    def refuse_credentials(self) -> None:
        self.emu.developer_tokens.clear()


class DataManagerAdapter(_GooglePlatform):
    name = "google_ads-data_manager"
    caps = DestCaps(2_000, network=True, row_verdicts="always", credentials=True, why_not={})
    secrets = (CLIENT_SECRET, REFRESH)
    # google-auth's AuthorizedSession refreshes the token on a 401 and repeats the call,
    # at most max_refresh_attempts (2) times: an allowed, bounded credential retry.
    refresh_retries = 2

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.emu = DataManagerEmulator(
            tokens=set(), refresh_tokens={REFRESH}, clock=EmulatorClock(NOW),
            rate_limit_per_minute=None,
        )  # fmt: skip

    def start(self) -> None:
        self.emu.start()
        self.emu.add_conversion_action(CUSTOMER, ACTION)

    def stop(self) -> None:
        self.emu.stop()

    def destination(
        self, batch_size: int | None = None, validate: bool = False
    ) -> GoogleAdsDestination:
        block = google_config(
            transport="data_manager", data_manager_endpoint=f"http://{self.emu.host}",
            token_uri=self.emu.token_uri, batch_size=batch_size, validate_only=validate,
        )  # fmt: skip
        retry = self.fast_retry()
        transport = DataManagerTransport(
            block, GoogleOAuth(CLIENT_ID, CLIENT_SECRET, REFRESH), retry
        )
        return GoogleAdsDestination(block, "last_touch", transport, clock=lambda: NOW)

    def _register(self, n: int) -> None:
        self.emu.add_click(f"gclid-{n}", customer_id=CUSTOMER, at=NOW - timedelta(days=1, hours=2))

    def spoil(self, conversion: Conversion) -> tuple[Conversion, str | None]:
        return dataclasses.replace(conversion, currency="eu"), "INVALID_CURRENCY_CODE"

    def rows_per_request(self) -> list[int]:
        return [len(r.request.events) for r in self.emu.requests.values()]

    def stored(self) -> set[str]:
        return {e.event.transaction_id for e in self.emu.events}

    def wire(self) -> list[str]:
        return [json_format.MessageToJson(type(r.request).pb(r.request))
                for r in self.emu.requests.values()]  # fmt: skip

    def upload_calls(self) -> int:
        return self.emu.calls["IngestEvents"]

    def fail_transient(self, times: int) -> None:
        self.emu.fail_next(429, times=times, rpc="IngestEvents")

    def fail_permanent(self, rows: int = 1) -> None:
        self.emu.fail_next(400, rpc="IngestEvents")

    def refuse_credentials(self) -> None:
        self.emu.accept_issued_tokens = False


# --- GA4 ---------------------------------------------------------------------------------


def ga4_config(**fields: Any) -> Ga4Config:
    return Ga4Config(type="ga4", name="ga4", measurement_id=MEASUREMENT_ID, timeout_seconds=5,
                     **fields)  # fmt: skip


class Ga4HttpAdapter(DestinationAdapter):
    name = "ga4-http"
    platform = "ga4"
    caps = DestCaps(25, network=True, row_verdicts="validate_only", credentials=False, why_not={
        "row_verdicts": "production /mp/collect answers 2xx even to events it drops: rows are "
        "judged only by /debug/mp/collect (validate_only)",
        "credentials": "GA4 answers 2xx to a wrong api_secret too: nothing to detect",
    })  # fmt: skip
    secrets = (API_SECRET,)

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.emu = GA4MPEmulator(streams={MEASUREMENT_ID: API_SECRET})

    def start(self) -> None:
        self.emu.start()
        self.emu.set_time(NOW)

    def stop(self) -> None:
        self.emu.stop()
        assert self.emu.internal_errors == []

    def destination(self, batch_size: int | None = None, validate: bool = False) -> Ga4Destination:
        block = ga4_config(base_url=self.emu.url, batch_size=batch_size, validate_only=validate)
        transport = Ga4HttpTransport(block, SecretStr(API_SECRET), retry=self.fast_retry())
        return Ga4Destination(block, "last_touch", transport, clock=lambda: NOW)

    def spoil(self, conversion: Conversion) -> tuple[Conversion, str | None]:
        return dataclasses.replace(conversion, currency="eur"), "VALUE_INVALID"

    def rows_per_request(self) -> list[int]:
        return [len(x.request.json()["events"]) for x in self.emu.log]

    def stored(self) -> set[str]:
        return {str(e.params["transaction_id"]) for e in self.emu.events}

    def wire(self) -> list[str]:
        return [x.request.body.decode() for x in self.emu.log]

    def upload_calls(self) -> int:
        return self.emu.calls

    def fail_transient(self, times: int) -> None:
        self.emu.fail_next(times, status=429)

    def fail_permanent(self, rows: int = 1) -> None:
        self.emu.inject(Response(400, b"Bad Request"))


# --- Meta --------------------------------------------------------------------------------


def meta_config(**fields: Any) -> MetaConfig:
    return MetaConfig(type="meta", name="meta", pixel_id=PIXEL, timeout_seconds=5, **fields)


def _too_old(conversion: Conversion) -> tuple[Conversion, str | None]:
    """Meta refuses a whole request for one event older than 7 days: the destination
    answers such a row itself and never sends it."""
    return dataclasses.replace(conversion, event_time=NOW - timedelta(days=8)), "EVENT_TOO_OLD"


class MetaApiAdapter(DestinationAdapter):
    name = "meta-api"
    platform = "meta"
    caps = DestCaps(1_000, network=True, row_verdicts="local", credentials=True, why_not={
        "row_verdicts": "one invalid event rejects Meta's whole request: the destination "
        "answers the rows it knows Meta would refuse (older than 7 days) without sending them",
    })  # fmt: skip
    secrets = (META_TOKEN,)

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.emu = MetaGraphEmulator(tokens={META_TOKEN}, pixels={PIXEL})

    def start(self) -> None:
        self.emu.start()
        self.emu.set_time(NOW.timestamp())

    def stop(self) -> None:
        self.emu.stop()
        assert self.emu.internal_errors == []

    def destination(self, batch_size: int | None = None, validate: bool = False) -> MetaDestination:
        block = meta_config(graph_url=self.emu.url, batch_size=batch_size,
                            test_event_code="TEST1" if validate else None)  # fmt: skip
        transport = MetaApiTransport(block, SecretStr(META_TOKEN), self.fast_retry())
        return MetaDestination(block, "last_touch", transport, clock=lambda: NOW)

    def spoil(self, conversion: Conversion) -> tuple[Conversion, str | None]:
        return _too_old(conversion)

    def _events(self) -> list[list[dict[str, Any]]]:
        return [[json.loads(e) for e in json.loads(x.request.form()["data"])]
                for x in self.emu.log]  # fmt: skip

    def rows_per_request(self) -> list[int]:
        return [len(events) for events in self._events()]

    def stored(self) -> set[str]:
        return {str(e.data["event_id"]) for e in self.emu.events}

    def wire(self) -> list[str]:
        return [x.request.body.decode() for x in self.emu.log]

    def upload_calls(self) -> int:
        return self.emu.calls

    def fail_transient(self, times: int) -> None:
        self.emu.throttle_next(times, code=17)

    def refusal_calls(self, rows: int) -> int:
        return 2 * rows - 1  # a refused batch is halved until each row stands alone

    def fail_permanent(self, rows: int = 1) -> None:
        self.emu.inject(Response.json(400, {"error": {
            "message": "Invalid parameter", "type": "OAuthException", "code": 100,
            "error_subcode": 2804019, "is_transient": False, "fbtrace_id": "AbC"}}),
            times=self.refusal_calls(rows))  # fmt: skip

    def refuse_credentials(self) -> None:
        self.emu.expire_token(META_TOKEN)


# --- file --------------------------------------------------------------------------------

_FILE_WHY = {
    "network": "a file transport sends nothing over a network: no call fails, none is retried",
    "credentials": "a file transport uses no credentials",
    "row_verdicts": "a file transport judges no row: it writes the exact body the platform "
    "would receive (only what the destination itself refuses is answered otherwise)",
}
_ROWS = {"google_ads": "conversions", "ga4": "events", "meta": "data"}


class FileAdapter(DestinationAdapter):
    """``transport: file`` for one platform: the platform's destination, a JSONL file."""

    def __init__(self, tmp: Path, platform: str) -> None:
        super().__init__(tmp)
        self.platform = platform
        self.name = f"{platform}-file"
        limit = {"google_ads": 2_000, "ga4": 25, "meta": 1_000}[platform]
        self.caps = DestCaps(limit, network=False, row_verdicts="none", credentials=False,
                             why_not=_FILE_WHY)  # fmt: skip
        self.out = tmp / "out"
        self._spoil: Callable[[Conversion], tuple[Conversion, str | None]]

    def destination(
        self, batch_size: int | None = None, validate: bool = False
    ) -> PlatformDestination:
        common = {"transport": "file", "output_dir": self.out, "batch_size": batch_size}
        dest: PlatformDestination
        if self.platform == "google_ads":
            block = google_config(**common, validate_only=validate)
            dest = GoogleAdsDestination(block, "last_touch", self._transport(block.name),
                                        clock=lambda: NOW)  # fmt: skip
        elif self.platform == "ga4":
            ga4 = ga4_config(**common, validate_only=validate)
            dest = Ga4Destination(ga4, "last_touch", self._transport(ga4.name), clock=lambda: NOW)
        else:
            meta = meta_config(**common)
            dest = MetaDestination(meta, "last_touch", self._transport(meta.name),
                                   clock=lambda: NOW)  # fmt: skip
        return dest

    def _transport(self, name: str) -> FileTransport:
        self.path = self.out / f"{name}.{self.platform}.jsonl"
        return FileTransport(self.out, name, self.platform)

    def pii_conversion(self, dest: PlatformDestination) -> Conversion:
        if self.platform == "google_ads":
            return _GooglePlatform.pii_conversion(self, dest)  # type: ignore[arg-type]
        return super().pii_conversion(dest)

    def spoil(self, conversion: Conversion) -> tuple[Conversion, str | None]:
        if self.platform == "meta":
            return _too_old(conversion)
        return dataclasses.replace(conversion, currency="eu"), None

    def _bodies(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        return [json.loads(line)["body"] for line in self.path.read_text().splitlines()]

    def rows_per_request(self) -> list[int]:
        return [len(body[_ROWS[self.platform]]) for body in self._bodies()]

    def stored(self) -> set[str]:
        keys: set[str] = set()
        for body in self._bodies():
            for row in body[_ROWS[self.platform]]:
                if self.platform == "google_ads":
                    keys.add(row["order_id"])
                elif self.platform == "ga4":
                    keys.add(row["params"]["transaction_id"])
                else:
                    keys.add(row["event_id"])
        return keys

    def wire(self) -> list[str]:
        return self.path.read_text().splitlines() if self.out.exists() else []

"""One adapter per ``DealSource``: the same CRM operations, whatever the CRM.

Every adapter owns the CRM behind its source (a JSONL export on disk, the Salesforce
emulator over TLS, the HubSpot emulator) and a clock. Deals are seeded one ``SPACING``
apart (longer than the default 10-minute overlap), won, closed at ``CLOSE``, amount
``100 * n``, each with one primary contact ``p<n>@example.com``.

Capabilities say what the source's CRM has; a scenario that needs what a CRM does not have
either asserts the declared equivalent (``deleted_contact``) or is left out of that
scenario's parametrisation by design (``auth``, ``rate_limit``), with the reason kept here.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr

from revsync.config.mapping import FileSource, HubSpotSource, SalesforceSource, SourceBase
from revsync.config.settings import Settings
from revsync.sources.base import DealSource
from revsync.sources.files import PAGE_SIZE, FileDealSource
from revsync.sources.hubspot import HubSpotDealSource
from revsync.sources.salesforce import SalesforceDealSource
from tests.emulators.hubspot import HubSpotEmulator, error_body
from tests.emulators.salesforce import SalesforceEmulator
from tests.emulators.tls import TlsFiles

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CLOSE = datetime(2026, 2, 28, 12, 0, tzinfo=UTC)  # a date-only close placed at 12:00 UTC
SPACING = timedelta(hours=1)
Malformed = Literal["missing_amount", "unknown_currency", "bad_email"]


def email(n: int) -> str:
    return f"p{n}@example.com"


@dataclass(frozen=True)
class Expected:
    """A quarantine entry the source must report: ``(kind, record_id, field)``."""

    kind: str
    record_id: str
    field: str


@dataclass(frozen=True)
class SourceCaps:
    """What the CRM behind a source has, and why not when it has not.

    ``auth``: ``"refresh"`` (short-lived sessions the source renews itself), ``"static"``
    (a long-lived token: revoked means stop with a permanent error), ``None`` (no
    credentials at all). ``rate_limit``: ``"retry"`` (answers 429; the source waits and
    retries in process), ``"resume"`` (a request budget; the source stops cleanly with
    ``budget_exhausted`` and the next run resumes at the watermark), ``None``.
    ``deleted_contact_quarantined``: whether a deal that references a deleted contact is
    reported (a file export holds no reference to a deleted contact: its row is gone).
    ``deleted_deals``: whether a deal deleted in the CRM is read back (as lost).
    """

    page_size: int
    auth: Literal["refresh", "static"] | None
    rate_limit: Literal["retry", "resume"] | None
    deleted_contact_quarantined: bool
    deleted_deals: bool
    why_not: dict[str, str]


class SourceAdapter(ABC):
    """The operations every contract scenario uses; see the module docstring."""

    name: str
    caps: SourceCaps
    secrets: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.now = T0
        self._n = 0

    def tick(self) -> datetime:
        """Move the CRM clock one ``SPACING`` on; every write happens at the new time."""
        self.now += SPACING
        self._set_clock(self.now)
        return self.now

    def seed(self, count: int) -> list[str]:
        """``count`` won deals, one ``SPACING`` apart, each with one primary contact."""
        ids = []
        for _ in range(count):
            self._n += 1
            self.tick()
            ids.append(self._add_deal(self._n, Decimal(100 * self._n), "USD", email(self._n)))
        self._flush()
        return ids

    def amount_of(self, index: int) -> Decimal:
        """The seeded amount of the ``index``-th deal (1-based)."""
        return Decimal(100 * index)

    # --- per CRM -------------------------------------------------------------------

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...

    @abstractmethod
    def config(self) -> SourceBase: ...

    @abstractmethod
    def source(self) -> DealSource: ...

    @abstractmethod
    def _set_clock(self, when: datetime) -> None: ...

    @abstractmethod
    def _add_deal(
        self, n: int, amount: Decimal | None, currency: str, contact_email: str | None
    ) -> str: ...

    def _flush(self) -> None:  # noqa: B027 - only the file adapter buffers writes
        """Make the writes visible (the file adapter rewrites its export)."""

    @abstractmethod
    def edit(self, deal_id: str, amount: Decimal) -> None:
        """A user changes the deal's amount now (its modified time moves to ``now``)."""

    def delete_deal(self, deal_id: str) -> None:
        """A user deletes the deal now (Salesforce: recycle bin; HubSpot: archive)."""
        raise AssertionError(f"{self.name}: {self.caps.why_not['deleted_deals']}")

    @abstractmethod
    def delete_contact(self, deal_id: str) -> tuple[str, Expected | None]:
        """Delete the deal's contact; the contact id and the quarantine expected, if any."""

    @abstractmethod
    def malformed(self, kind: Malformed) -> tuple[str, Expected]:
        """A new won deal with one defect; its deal id and the quarantine it must cause."""

    def expire_auth(self) -> None:
        raise AssertionError(f"{self.name}: {self.caps.why_not['auth']}")

    def restore_auth(self) -> None:
        raise AssertionError(f"{self.name}: {self.caps.why_not['auth']}")

    def token_grants(self) -> int:
        raise AssertionError(f"{self.name}: {self.caps.why_not['auth']}")

    def throttle(self) -> None:
        raise AssertionError(f"{self.name}: {self.caps.why_not['rate_limit']}")

    def unthrottle(self) -> None:
        raise AssertionError(f"{self.name}: {self.caps.why_not['rate_limit']}")

    def limited(self) -> int:
        raise AssertionError(f"{self.name}: {self.caps.why_not['rate_limit']}")


# --- file ----------------------------------------------------------------------------


class FileAdapter(SourceAdapter):
    """A JSONL CRM export, rewritten after every change (as a nightly export would be)."""

    name = "file"
    caps = SourceCaps(
        page_size=PAGE_SIZE,
        auth=None,
        rate_limit=None,
        deleted_contact_quarantined=False,
        deleted_deals=False,
        why_not={
            "auth": "a local export has no credentials to expire or refresh",
            "rate_limit": "reading a local file has no request budget and no 429",
            "deleted_contact": "an export holds no reference to a deleted contact (its row "
            "is gone), so there is nothing to quarantine: the deal syncs without it",
            "deleted_deals": "an export simply stops listing a deleted deal; exporting it "
            "with status lost is what retracts its uploads",
        },
    )

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.path = directory / "deals.jsonl"
        self.deals: dict[str, dict[str, Any]] = {}
        self.contacts: dict[str, list[dict[str, Any]]] = {}

    def start(self) -> None:
        self._flush()

    def stop(self) -> None:
        """Nothing runs."""

    def config(self) -> FileSource:
        return FileSource(type="file", name="crm", path=self.path, close_time="12:00")

    def source(self) -> FileDealSource:
        return FileDealSource(self.config(), "US")

    def _set_clock(self, when: datetime) -> None:
        """The export carries its own ``modified_at``; nothing else keeps time."""

    def _add_deal(
        self, n: int, amount: Decimal | None, currency: str, contact_email: str | None
    ) -> str:
        deal_id = f"D{n:05d}"
        self.deals[deal_id] = {
            "deal_id": deal_id, "status": "won", "currency": currency,
            "close_date": CLOSE.date().isoformat(), "modified_at": self.now.isoformat(),
            **({"amount": str(amount)} if amount is not None else {}),
        }  # fmt: skip
        self.contacts[deal_id] = []
        if contact_email is not None:
            self.contacts[deal_id].append(
                {"contact_id": f"C{n:05d}", "email": contact_email, "is_primary": "true"}
            )
        return deal_id

    def _flush(self) -> None:
        lines = []
        for deal_id, deal in self.deals.items():
            for contact in self.contacts[deal_id] or [{}]:
                lines.append(json.dumps({**deal, **contact}))
        self.path.write_text("\n".join(lines) + "\n")

    def edit(self, deal_id: str, amount: Decimal) -> None:
        self.tick()
        self.deals[deal_id] |= {"amount": str(amount), "modified_at": self.now.isoformat()}
        self._flush()

    def delete_contact(self, deal_id: str) -> tuple[str, Expected | None]:
        [contact] = self.contacts[deal_id]
        self.contacts[deal_id] = []
        self._flush()
        return contact["contact_id"], None

    def malformed(self, kind: Malformed) -> tuple[str, Expected]:
        self._n += 1
        self.tick()
        n = self._n
        if kind == "missing_amount":
            deal_id = self._add_deal(n, None, "USD", email(n))
            expected = Expected("deal", deal_id, "amount")
        elif kind == "unknown_currency":
            deal_id = self._add_deal(n, Decimal(5), "XYZ", email(n))
            expected = Expected("deal", deal_id, "currency")
        else:
            deal_id = self._add_deal(n, Decimal(5), "USD", "not-an-email")
            expected = Expected("contact", f"C{n:05d}", "email")
        self._flush()
        return deal_id, expected


# --- Salesforce ----------------------------------------------------------------------

SF_SECRET, SF_REFRESH = "sf-client-secret-1f9", "sf-refresh-token-77a"
SF_SETTINGS = Settings(
    salesforce_client_id="cid",
    salesforce_client_secret=SecretStr(SF_SECRET),
    salesforce_refresh_token=SecretStr(SF_REFRESH),
)


class SalesforceAdapter(SourceAdapter):
    """A multi-currency org on the Salesforce emulator; REST pages of 3 records."""

    name = "salesforce"
    caps = SourceCaps(
        page_size=2,
        auth="refresh",
        rate_limit="resume",
        deleted_contact_quarantined=True,
        deleted_deals=True,
        why_not={},
    )
    secrets = (SF_SECRET, SF_REFRESH)

    def __init__(self, tls: TlsFiles) -> None:
        super().__init__()
        self.tls = tls
        self.emu = SalesforceEmulator(tls, page_size=3, multi_currency=True, currency="USD")
        self._contact: dict[str, str] = {}
        self._base = (0, 0)

    def start(self) -> None:
        self.emu.set_clock(self.now)
        self.emu.start()
        self.emu.add_connected_app("cid", client_secret=SF_SECRET, refresh_token=SF_REFRESH)

    def stop(self) -> None:
        self.emu.stop()

    def config(self) -> SalesforceSource:
        return SalesforceSource.model_validate({
            "type": "salesforce", "name": "crm", "instance_url": self.emu.base_url,
            "token_url": f"{self.emu.base_url}/services/oauth2/token",
            "ca_bundle": str(self.tls.ca_cert), "page_size": self.caps.page_size,
            "api_budget_share": 1.0, "bulk_poll_seconds": 0,
            "timezone": "UTC", "close_time": "12:00",  # CLOSE, as every source places it
        })  # fmt: skip

    def source(self) -> SalesforceDealSource:
        return SalesforceDealSource(self.config(), SF_SETTINGS, "US")

    def _set_clock(self, when: datetime) -> None:
        self.emu.set_clock(when)

    def _add_deal(
        self, n: int, amount: Decimal | None, currency: str, contact_email: str | None
    ) -> str:
        values: dict[str, Any] = {"StageName": "Closed Won", "CloseDate": CLOSE.date(),
                                  "CurrencyIsoCode": currency}  # fmt: skip
        if amount is not None:
            values["Amount"] = float(amount)
        opp = self.emu.add("Opportunity", **values)
        if contact_email is not None:
            contact = self.emu.add("Contact", LastName=f"C{n}", Email=contact_email)
            self.emu.add("OpportunityContactRole", OpportunityId=opp, ContactId=contact,
                         IsPrimary=True)  # fmt: skip
            self._contact[opp] = contact
        return opp

    def edit(self, deal_id: str, amount: Decimal) -> None:
        self.tick()
        self.emu.update("Opportunity", deal_id, Amount=float(amount))

    def delete_deal(self, deal_id: str) -> None:
        self.tick()
        self.emu.delete("Opportunity", deal_id)

    def delete_contact(self, deal_id: str) -> tuple[str, Expected | None]:
        contact = self._contact[deal_id]
        self.emu.delete("Contact", contact)
        # Salesforce reports contact problems against the opportunity (detail: contact id).
        return contact, Expected("contact", deal_id, "ContactId")

    def malformed(self, kind: Malformed) -> tuple[str, Expected]:
        self._n += 1
        self.tick()
        n = self._n
        if kind == "missing_amount":
            deal_id = self._add_deal(n, None, "USD", email(n))
            return deal_id, Expected("deal", deal_id, "Amount")
        if kind == "unknown_currency":
            deal_id = self._add_deal(n, Decimal(5), "XYZ", email(n))
            return deal_id, Expected("deal", deal_id, "CurrencyIsoCode")
        deal_id = self._add_deal(n, Decimal(5), "USD", "not-an-email")
        return deal_id, Expected("contact", deal_id, "Contact.Email")

    def expire_auth(self) -> None:
        self.emu.expire_sessions()

    def restore_auth(self) -> None:
        """The refresh token stays valid: the source renews the session itself."""

    def token_grants(self) -> int:
        return self.emu.count("POST", "/oauth2/token")

    def _api_requests(self) -> int:
        return self.emu.count() - self.emu.count(path_contains="/oauth2/token")

    def throttle(self) -> None:
        """The daily API budget runs out five requests from now (mid-run)."""
        self._base = (self._api_requests(), self.emu.api_usage)
        self.emu.api_limit = self.emu.api_usage + 5

    def unthrottle(self) -> None:
        self.emu.api_usage, self.emu.api_limit = 0, 15_000

    def limited(self) -> int:
        """Requests answered REQUEST_LIMIT_EXCEEDED since ``throttle`` (they use no budget)."""
        requests, usage = self._base
        return (self._api_requests() - requests) - (self.emu.api_usage - usage)


# --- HubSpot -------------------------------------------------------------------------

HS_TOKEN = "pat-contract-5e1d"


class HubSpotAdapter(SourceAdapter):
    """A portal on the HubSpot emulator; private-app token; searches of 2 deals."""

    name = "hubspot"
    caps = SourceCaps(
        page_size=2,
        auth="static",
        rate_limit="retry",
        deleted_contact_quarantined=True,
        deleted_deals=True,
        why_not={},
    )
    secrets = (HS_TOKEN,)
    THROTTLED = 2

    def __init__(self) -> None:
        super().__init__()
        self.emu = HubSpotEmulator(tokens={HS_TOKEN}, search_per_second=None, burst_limit=None)
        self._contact: dict[str, str] = {}

    def start(self) -> None:
        self.emu.set_clock(self.now)
        self.emu.start()

    def stop(self) -> None:
        self.emu.stop()

    def config(self) -> HubSpotSource:
        return HubSpotSource(
            type="hubspot", name="crm", host=self.emu.base_url, page_size=self.caps.page_size,
            searches_per_second=1000, retry_initial_wait_seconds=0.01, timeout_seconds=5,
        )  # fmt: skip

    def source(self) -> HubSpotDealSource:
        return HubSpotDealSource(
            self.config(), Settings(hubspot_access_token=SecretStr(HS_TOKEN)), "US"
        )

    def _set_clock(self, when: datetime) -> None:
        self.emu.set_clock(when)

    def _add_deal(
        self, n: int, amount: Decimal | None, currency: str, contact_email: str | None
    ) -> str:
        contacts = []
        if contact_email is not None:
            contacts.append(self.emu.add_contact(email=contact_email))
        props: dict[str, Any] = {"dealstage": "closedwon", "closedate": CLOSE,
                                 "deal_currency_code": currency}  # fmt: skip
        if amount is not None:
            props["amount"] = str(amount)
        deal_id = self.emu.add_deal(contacts=contacts, **props)
        if contacts:
            self._contact[deal_id] = contacts[0]
        return deal_id

    def edit(self, deal_id: str, amount: Decimal) -> None:
        self.tick()
        self.emu.update("deals", deal_id, amount=str(amount))

    def delete_deal(self, deal_id: str) -> None:
        self.tick()
        self.emu.archive("deals", deal_id)

    def delete_contact(self, deal_id: str) -> tuple[str, Expected | None]:
        contact = self._contact[deal_id]
        with self.emu._lock:  # the emulator has no delete helper; the association stays
            del self.emu._records["contacts"][contact]
        return contact, Expected("contact", contact, "id")

    def malformed(self, kind: Malformed) -> tuple[str, Expected]:
        self._n += 1
        self.tick()
        n = self._n
        if kind == "missing_amount":
            deal_id = self._add_deal(n, None, "USD", email(n))
            return deal_id, Expected("deal", deal_id, "amount")
        if kind == "unknown_currency":
            deal_id = self._add_deal(n, Decimal(5), "XYZ", email(n))
            return deal_id, Expected("deal", deal_id, "deal_currency_code")
        deal_id = self._add_deal(n, Decimal(5), "USD", "not-an-email")
        return deal_id, Expected("contact", self._contact[deal_id], "email")

    def expire_auth(self) -> None:
        """The private-app token is revoked (HubSpot tokens do not expire on their own)."""
        self.emu.tokens.discard(HS_TOKEN)

    def restore_auth(self) -> None:
        self.emu.tokens.add(HS_TOKEN)

    def token_grants(self) -> int:
        return 0  # a private-app token is never exchanged

    def throttle(self) -> None:
        """The next two contact reads (mid-run) answer 429 with ``Retry-After``."""
        body = error_body("RATE_LIMITS", "You have reached your ten_secondly_rolling limit.")
        self.emu.inject_fault(429, body, headers={"Retry-After": "0"},
                              path_contains="/contacts/batch/read", times=self.THROTTLED)  # fmt: skip

    def unthrottle(self) -> None:
        """The faults are one-shot: nothing to lift."""

    def limited(self) -> int:
        with self.emu._lock:
            left = sum(f.times for f in self.emu._faults if f.response.status == 429)
        return self.THROTTLED - left

"""Salesforce Opportunities as deals, through simple-salesforce.

Reading: a ``SELECT COUNT()`` over the changes since the watermark (minus the overlap)
chooses REST (``query_all_iter``, ordered by SystemModstamp, Id) or, above
``bulk_threshold``, Bulk API 2.0 (unordered: ORDER BY defeats its chunking). Both include
deleted records (queryAll), and a deleted deal counts as lost, so its uploads get
retracted. Each page of ``page_size`` deals gets its contacts from OpportunityContactRole
(primary first) and, when configured, click IDs from the leads they converted from. An
incremental read first reads again the Opportunities whose contact roles changed since the
watermark (their own SystemModstamp does not move): see ``salesforce_roles``.

Watermarks: a REST page carries its last record's SystemModstamp. A Bulk backfill is read
in SystemModstamp windows of about ``bulk_threshold`` records each; its pages keep the
incoming watermark, and an empty page after each window carries the window's upper bound
(the last window's: the newest SystemModstamp seen), since an unordered read is only
complete at its end. A run cut short resumes at the window it was in. Re-reading the
overlap means a deal edited during a run is read again on the next one and upserted.

Currency: in a multi-currency org (describe shows ``Opportunity.CurrencyIsoCode``) each
record's own; otherwise the mapping's ``currency``, which is then required.

Write-back (``push_attribution``): attribution fields go onto Contacts (Id prefix 003) and
Leads (00Q) through composite sObject collection updates of up to 200 records without
``allOrNone``, so each record succeeds or fails alone; a run stops writing at the API budget.

Sessions, outages and the API budget: see ``salesforce_session``. The opportunity stream
resumes behind the last record it yielded. A page read at or above ``api_budget_share`` is
marked ``budget_exhausted``; ``REQUEST_LIMIT_EXCEEDED`` drops the unfinished page and
yields an empty exhausted one. The job stops there and the next run resumes from the
watermark.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from itertools import islice, pairwise
from typing import TYPE_CHECKING, Any, Literal, cast
from zoneinfo import ZoneInfo

import requests
from requests import RequestException
from simple_salesforce.api import Salesforce
from simple_salesforce.bulk2 import SFBulk2Handler
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceOperationError,
    SalesforceRefusedRequest,
)

from revsync.domain import (
    AttributionPush,
    ClickIds,
    Contact,
    Deal,
    DealStatus,
    PushResult,
    Quarantined,
)
from revsync.errors import ConfigError, PermanentError, RevsyncError
from revsync.sources import salesforce_roles
from revsync.sources.base import DealPage, place_date
from revsync.sources.salesforce_contacts import SalesforceContacts
from revsync.sources.salesforce_values import (
    boolean,
    click_ids,
    decimal,
    error_code,
    flatten,
    invalid,
    push_result,
    soql_time,
    text,
    timestamp,
    translate,
    unique,
)

if TYPE_CHECKING:
    from revsync.checks import CheckResult

RECORDS_PER_UPDATE = 200  # composite/sobjects collections
_WRITABLE = {"003": "Contact", "00Q": "Lead"}
_SALESFORCE_ID = re.compile(r"^(?!\d+$)[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")
BULK_CHUNK = 10_000
_BASE_FIELDS = (
    "Id", "IsDeleted", "Amount", "CloseDate", "StageName", "IsClosed", "OwnerId",
    "SystemModstamp", "AccountId", "CreatedDate",
)  # fmt: skip


class SalesforceDealSource(SalesforceContacts):
    """Reads Opportunities changed since a watermark; see the module docstring. Sessions,
    retries and the budget: ``salesforce_session``; contacts: ``salesforce_contacts``."""

    _multi_currency: bool | None = None  # from Opportunity's describe, on first use
    _now = datetime.min.replace(tzinfo=UTC)  # set by each read (pages)

    # --- DealSource ------------------------------------------------------------------

    def pages(self, watermark: str | None, now: datetime) -> Iterator[DealPage]:
        self._now = now
        since = None
        if watermark:
            since = datetime.fromisoformat(watermark) - timedelta(
                minutes=self.config.overlap_minutes
            )
        position = watermark
        try:
            select = self._select()
            # Contacts added or removed since: their Opportunities' stamps did not move.
            roles = salesforce_roles.changed(self._query_all, since) if since else None
            if roles:
                again = salesforce_roles.opportunities(self._query_all, select, roles)
                while batch := list(islice(again, self.config.page_size)):
                    deals, problems = self._page(batch)
                    exhausted = self._over_budget()
                    yield DealPage(tuple(deals), tuple(problems), position, exhausted)
                    if exhausted:
                        return
            total = self._count(since)
            if total <= self.config.bulk_threshold:
                spans: list[tuple[datetime | None, datetime | None, bool]] = [(since, None, False)]
            else:
                spans = [(lo, hi, True) for lo, hi in self._windows(since, total)]
            for start, end, bulk in spans:
                newest: datetime | None = None
                records = self._records(select, start, bulk, end)
                while batch := list(islice(records, self.config.page_size)):
                    deals, problems = self._page(batch)
                    last = max(timestamp(r["systemmodstamp"]) for r in batch)
                    newest = last if newest is None else max(newest, last)
                    if not bulk:
                        position = timestamp(batch[-1]["systemmodstamp"]).isoformat()
                    exhausted = self._over_budget()
                    yield DealPage(tuple(deals), tuple(problems), position, exhausted)
                    if exhausted:
                        return
                # An unordered read is complete only at its end: a window then moves the
                # watermark to its upper bound, the last one to the newest record seen.
                done = end or newest
                if bulk and done is not None:
                    position = done.isoformat()
                    yield DealPage((), (), position)
            if roles is not None and roles.newest and roles.newest > timestamp(str(position)):
                yield DealPage((), (), roles.newest.isoformat())  # see salesforce_roles
        except SalesforceRefusedRequest as exc:
            if error_code(exc) != "REQUEST_LIMIT_EXCEEDED":
                raise translate(exc) from None
            yield DealPage((), (), position, budget_exhausted=True)
        except (SalesforceError, SalesforceOperationError, requests.RequestException) as exc:
            raise translate(exc) from None

    def check(self) -> Iterator[CheckResult]:
        """``revsync doctor``: OAuth grant and API access, daily API budget, mapped fields."""
        from revsync.checks import budget, fail, ok, skip

        config = self.config
        try:
            self._authenticate()
            limits = self._call(lambda sf: sf.restful("limits"))
        except RevsyncError as exc:
            yield fail("credentials", str(exc))
            return
        except SalesforceRefusedRequest as exc:
            if error_code(exc) != "REQUEST_LIMIT_EXCEEDED":
                yield fail("credentials", str(translate(exc)))
                return
            yield ok("credentials", f"{config.auth} grant accepted by {config.token_url}")
            yield fail("API budget", f"{translate(exc)}: no API calls left today")
            yield skip("fields", "the API refuses requests until the daily limit resets")
            return
        except (SalesforceError, requests.RequestException) as exc:
            yield fail("credentials", str(translate(exc)))
            return
        yield ok(
            "credentials", f"{config.auth} grant accepted; REST API v{config.api_version} answers"
        )
        daily = (limits or {}).get("DailyApiRequests") or {}
        total = int(daily.get("Max") or 0)
        yield budget(
            "API budget", total - int(daily.get("Remaining") or 0), total, config.api_budget_share,
            "daily API requests",
            f"a sync stops at api_budget_share {config.api_budget_share:.0%} and reads nothing",
        )  # fmt: skip
        wanted = {
            "Opportunity": [*_BASE_FIELDS, config.won_field, *config.click_id_fields.values(),
                            *config.fields, *([config.pipeline_field] if config.pipeline_field
                                              else [])],
            "OpportunityContactRole": ["OpportunityId", "ContactId", "IsPrimary"],
            "Contact": ["Email", "Phone", "MobilePhone", *config.contact_click_id_fields.values()],
            "Lead": ["ConvertedContactId", *config.lead_click_id_fields.values()]
            if config.lead_click_id_fields else [],
            "OpportunityHistory": ["OpportunityId", "StageName", "CreatedDate"]
            if config.stage_history else [],
        }  # fmt: skip
        if config.push_attribution:  # written onto both Contacts and Leads
            for sobject in ("Contact", "Lead"):
                wanted[sobject] = [*wanted[sobject], *config.attribution_fields.values()]
        for sobject, names in wanted.items():
            if not names:
                continue

            def describe(sf: Salesforce, path: str = f"sobjects/{sobject}/describe") -> Any:
                return sf.restful(path)

            try:
                described = self._call(describe)
            except (SalesforceError, requests.RequestException) as exc:
                yield fail(f"fields: {sobject}", str(translate(exc)))
                continue
            fields = described.get("fields", []) if isinstance(described, dict) else []
            known = {f["name"].lower() for f in fields}
            known |= {f"{(f.get('relationshipName') or '').lower()}." for f in fields}
            missing = [n for n in unique(names) if n.lower() not in known
                       and n.lower().split(".")[0] + "." not in known]  # fmt: skip
            if missing:
                yield fail(
                    f"fields: {sobject}",
                    f"{', '.join(missing)} not found on {sobject}: check the API name (custom "
                    "fields end in __c) and the integration user's field-level security",
                )
            elif (
                sobject == "Opportunity"
                and "currencyisocode" not in known
                and not (config.currency)
            ):
                yield fail(
                    "fields: Opportunity",
                    "single-currency org: set `currency:` to its currency (Setup > Company "
                    "Information)",
                )
            else:
                yield ok(f"fields: {sobject}", f"{len(unique(names))} mapped fields present")

    # --- write-back ------------------------------------------------------------------

    def owns(self, crm_id: str) -> bool:
        """Whether ``crm_id`` looks like a Salesforce record Id (15 or 18 characters)."""
        return bool(_SALESFORCE_ID.match(crm_id))

    def push_attribution(self, records: Sequence[AttributionPush]) -> list[PushResult]:
        """Update Contacts and Leads, 200 a request; see the module docstring. Records not
        tried (API budget reached) get no result."""
        results, updates = [], []
        for record in records:
            sobject = _WRITABLE.get(record.crm_id[:3])
            if sobject is None:
                results.append(PushResult(record.crm_id, False, "NOT_CONTACT_OR_LEAD",
                                          "only Contacts (003) and Leads (00Q) are written",
                                          "Id"))  # fmt: skip
            else:
                updates.append({"attributes": {"type": sobject}, "id": record.crm_id,
                                **record.fields})  # fmt: skip
        for start in range(0, len(updates), RECORDS_PER_UPDATE):
            chunk = updates[start : start + RECORDS_PER_UPDATE]
            if self._over_budget():
                break
            body = {"allOrNone": False, "records": chunk}

            def patch(sf: Salesforce, body: dict[str, Any] = body) -> Any:
                return sf.restful("composite/sobjects", method="PATCH", json=body)

            try:
                answers = self._call(patch)
            except SalesforceRefusedRequest as exc:
                if error_code(exc) == "REQUEST_LIMIT_EXCEEDED":
                    break
                raise translate(exc) from None
            except (SalesforceError, requests.RequestException) as exc:
                raise translate(exc) from None
            for sent, answer in zip(chunk, answers or [], strict=False):
                results.append(push_result(str(sent["id"]), answer))
        return self._to_converted_contacts(results, updates)

    def missing(self, deal_ids: Sequence[str]) -> set[str]:
        """Which of ``deal_ids`` the org no longer has: a query by Id (deleted records,
        in the recycle bin or purged, are not returned)."""
        try:
            rows = self._query_in(["Id"], "Opportunity", "Id", list(deal_ids))
        except (SalesforceError, requests.RequestException) as exc:
            raise translate(exc) from None
        return set(deal_ids) - {str(r["id"]) for r in rows}

    def _to_converted_contacts(
        self, results: list[PushResult], updates: list[dict[str, Any]]
    ) -> list[PushResult]:
        """A Lead converted since it was identified refuses updates: its values go onto
        the Contact it became, and the Lead's result is that write's."""
        converted = [r.crm_id for r in results if r.code == "CANNOT_UPDATE_CONVERTED_LEAD"]
        if not converted:
            return results
        rows = self._query_in(["Id", "ConvertedContactId"], "Lead", "Id", converted)
        contact_of = {r["id"]: r.get("convertedcontactid") for r in rows}
        fields = {str(u["id"]): {k: v for k, v in u.items() if k not in ("attributes", "id")}
                  for u in updates}  # fmt: skip
        moved = [AttributionPush(contact, fields[lead]) for lead in converted
                 if (contact := contact_of.get(lead))]  # fmt: skip
        answers = {r.crm_id: r for r in self.push_attribution(moved)} if moved else {}
        out = []
        for result in results:
            contact = contact_of.get(result.crm_id) if result.crm_id in converted else None
            answer = answers.get(contact) if contact else None
            out.append(result if answer is None else PushResult(
                result.crm_id, answer.ok, answer.code or ("WRITTEN_TO_CONVERTED_CONTACT"
                                                          if answer.ok else None),
                answer.message or (f"the lead was converted: written to contact {contact}"
                                   if answer.ok else None), answer.field,
            ))  # fmt: skip
        return out

    # --- opportunities ---------------------------------------------------------------

    def _select(self) -> list[str]:
        if self._multi_currency is None:
            described = self._call(lambda sf: sf.restful("sobjects/Opportunity/describe"))
            names = {f["name"].lower() for f in (described or {}).get("fields", [])}
            self._multi_currency = "currencyisocode" in names
            if not self._multi_currency and self.config.currency is None:
                raise ConfigError(
                    f"source {self.name!r}: the org is single-currency; set `currency:` to its "
                    "currency (Setup > Company Information)"
                )
        wanted = [*_BASE_FIELDS, self.config.won_field]
        if self._multi_currency:
            wanted.append("CurrencyIsoCode")
        wanted += [*self.config.click_id_fields.values(), *self.config.fields]
        if self.config.pipeline_field:
            wanted.append(self.config.pipeline_field)
        return unique(wanted)

    @staticmethod
    def _where(since: datetime | None, until: datetime | None = None) -> str:
        bounds = [f"SystemModstamp >= {soql_time(since)}"] if since else []
        bounds += [f"SystemModstamp < {soql_time(until)}"] if until else []
        return f" WHERE {' AND '.join(bounds)}" if bounds else ""

    def _count(self, since: datetime | None) -> int:
        soql = f"SELECT COUNT() FROM Opportunity{self._where(since)}"  # noqa: S608
        return int(self._call(lambda sf: sf.query(soql, include_deleted=True))["totalSize"])

    def _windows(
        self, since: datetime | None, total: int
    ) -> list[tuple[datetime | None, datetime | None]]:
        """A Bulk backfill's SystemModstamp windows ``[start, end)``, about
        ``bulk_threshold`` records each if changes are spread evenly, on whole seconds (SOQL
        datetimes have no fraction). Each finished window moves the watermark, so a run cut
        short (API budget, outage) resumes at the window it was in, not at the start."""
        first = since or self._edge("ASC")
        last = self._edge("DESC")
        count = -(-total // self.config.bulk_threshold)
        if first is None or last is None or last <= first or count < 2:
            return [(since, None)]
        step = (last - first) / count
        inner = sorted({(first + step * i).replace(microsecond=0) for i in range(1, count)})
        edges = [since, *(edge for edge in inner if edge > first), None]
        return list(pairwise(edges))

    def _edge(self, order: Literal["ASC", "DESC"]) -> datetime | None:
        """The oldest (``ASC``) or newest (``DESC``) SystemModstamp, deleted records included."""
        soql = f"SELECT SystemModstamp FROM Opportunity ORDER BY SystemModstamp {order} LIMIT 1"  # noqa: S608
        found = self._call(lambda sf: sf.query(soql, include_deleted=True))["records"]
        return timestamp(found[0]["SystemModstamp"]) if found else None

    def _records(
        self, select: list[str], since: datetime | None, bulk: bool, until: datetime | None = None
    ) -> Iterator[dict[str, Any]]:
        """Flattened Opportunity records changed in ``[since, until)``. After an expired
        session, a 5xx answer or a lost connection the read is repeated (REST: from the last
        SystemModstamp yielded) and records already yielded are skipped; ``max_attempts``
        bounds the tries without a record in between."""
        done: set[str] = set()
        resume, renewed, failures = since, False, 0
        while True:
            soql = f"SELECT {', '.join(select)} FROM Opportunity{self._where(resume, until)}"  # noqa: S608
            sf = self._sf or self._authenticate()
            try:
                stream = self._bulk(sf, soql) if bulk else self._rest(sf, soql)
                for record in stream:
                    if record["id"] in done:
                        continue
                    renewed, failures = False, 0
                    stamp = timestamp(record["systemmodstamp"])
                    if not bulk and stamp != resume:
                        resume, done = stamp, set()
                    done.add(record["id"])
                    yield record
                return
            except (SalesforceExpiredSession, SalesforceGeneralError, RequestException) as exc:
                renewed, failures = self._recover(exc, renewed, failures)

    @staticmethod
    def _rest(sf: Salesforce, soql: str) -> Iterator[dict[str, Any]]:
        ordered = f"{soql} ORDER BY SystemModstamp, Id"
        for record in sf.query_all_iter(ordered, include_deleted=True):
            yield flatten(record)

    def _bulk(self, sf: Salesforce, soql: str) -> Iterator[dict[str, Any]]:
        chunks = cast(SFBulk2Handler, sf.bulk2).Opportunity.query_all(
            soql, max_records=BULK_CHUNK, wait=self.config.bulk_poll_seconds
        )
        for chunk in chunks:
            for row in csv.DictReader(io.StringIO(chunk)):
                yield {key.lower(): (value if value != "" else None) for key, value in row.items()}

    # --- building deals --------------------------------------------------------------

    def _page(self, records: list[dict[str, Any]]) -> tuple[list[Deal], list[Quarantined]]:
        latest = {r["id"]: r for r in records}
        problems: list[Quarantined] = []
        live = [i for i, r in latest.items() if not boolean(r.get("isdeleted"))]
        contacts = self._contacts(live, problems)
        history = self._stage_history(live) if self.config.stage_history else {}
        deals = []
        for opp_id, record in latest.items():
            deal = self._deal(record, contacts.get(opp_id, []), problems)
            if deal is not None:
                deals.append(dataclasses.replace(deal, stage_history=history.get(opp_id, ())))
        return deals, problems

    def _stage_history(self, opp_ids: list[str]) -> dict[str, tuple[tuple[datetime, str], ...]]:
        """Each opportunity's stage changes from OpportunityHistory (Salesforce writes a row
        on creation and on every stage change), one query per 200 opportunities."""
        found: dict[str, list[tuple[datetime, str]]] = {}
        rows = self._query_in(["OpportunityId", "StageName", "CreatedDate"],
                              "OpportunityHistory", "OpportunityId", opp_ids)  # fmt: skip
        for row in rows:
            if row.get("stagename"):
                found.setdefault(row["opportunityid"], []).append(
                    (timestamp(row["createddate"]), row["stagename"])
                )
        return {opp: tuple(sorted(changes)) for opp, changes in found.items()}

    def _deal(
        self, record: dict[str, Any], contacts: list[Contact], problems: list[Quarantined]
    ) -> Deal | None:
        opp_id = record["id"]
        deleted = boolean(record.get("isdeleted"))
        won = boolean(record.get(self.config.won_field.lower())) and not deleted
        if won:
            status = DealStatus.WON
        elif deleted or boolean(record.get("isclosed")):
            status = DealStatus.LOST
        else:
            status = DealStatus.OPEN

        amount = decimal(record.get("amount"))
        currency = record.get("currencyisocode") if self._multi_currency else self.config.currency
        close = record.get("closedate")
        problem = invalid(won, amount, currency, close)
        if problem is not None:
            problems.append(Quarantined("deal", opp_id, *problem, source=self.name))
            return None
        assert currency is not None
        clicks = click_ids(
            record, self.config.click_id_fields, self._rejecter(problems, "deal", opp_id)
        )
        fields = {f: str(record[f.lower()]) for f in self.config.fields
                  if record.get(f.lower()) not in (None, "")}  # fmt: skip
        if deleted:
            fields["IsDeleted"] = "true"
        pipeline = self.config.pipeline_field
        return Deal(
            source=self.name,
            id=opp_id,
            status=status,
            amount=amount,
            currency=currency.upper(),
            close_at=self._close_at(date.fromisoformat(close)) if close else None,
            modified_at=timestamp(record["systemmodstamp"]),
            stage=record.get("stagename"),
            pipeline=text(record.get(pipeline.lower())) if pipeline else None,
            owner=record.get("ownerid"),
            contacts=tuple(contacts),
            click_ids=ClickIds(**clicks),
            fields=fields,
            account_id=text(record.get("accountid")),
            created_at=timestamp(record["createddate"]) if record.get("createddate") else None,
        )

    _zone: str | None = None  # the mapping's, else the org's (read once)

    def _close_at(self, day: date) -> datetime:
        """A date-only CloseDate in the org's time zone (``Organization.TimeZoneSidKey``,
        read once, unless the mapping names a zone); see ``sources.base.place_date``."""
        self._zone = self._zone or self.config.timezone
        if self._zone is None:
            [org] = self._call(
                lambda sf: sf.query("SELECT TimeZoneSidKey FROM Organization LIMIT 1")["records"]
            )
            zone = str(org.get("TimeZoneSidKey") or "")
            try:
                ZoneInfo(zone)
            except (ValueError, KeyError):
                raise PermanentError(
                    f"Salesforce source {self.name!r}: the org's time zone {zone!r} is unknown; "
                    "set timezone"
                ) from None
            self._zone = zone
        return place_date(day, self._zone, self.config.close_time, self._now)

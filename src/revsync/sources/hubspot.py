"""HubSpot deals through CRM v3 search, their contacts through v4 associations.

Reading is keyset-paged on ascending ``hs_lastmodifieddate``: every search starts at the
last timestamp seen and drops the deals already read at that timestamp (by id). A page that
is one block of deals sharing a timestamp (imports and workflows make thousands of them) is
drained by keyset on ``hs_object_id`` (timestamp EQ the block, id GT the last one read,
sorted by id), since HubSpot documents no order among equal sort values; the search then
goes on strictly after that timestamp. No query ever pages by offset, so none meets
HubSpot's 10,000-result cap, and a deal edited mid-run (it jumps to the end of the sort)
never shifts an unread deal out of reach; it is read again later in the run or in the next
one (the watermark overlap).

Each page's deals get their contacts in batches: associations deals→contacts (≤ 1,000 ids a
call) then contacts (≤ 100 a call). With ``stage_history``, a batch read of the page's
``hs_v2_date_entered_<stage id>`` properties (every pipeline's stages) gives each deal the
stages it entered. The first associated contact is the primary one (HubSpot
orders them by contact id). A contact that no longer exists is quarantined as a deleted
contact; the deal still syncs without it.

Deleted deals: search never returns archived (deleted) deals, so each run first lists them
(``archived=true``, 100 a request; the list cannot filter by time) and reads those archived
since the last run (minus the overlap) as lost deals, so their uploads get retracted. The
watermark then carries a second position, the newest ``archivedAt`` seen
(``<modified>;archived=<time>``); a watermark without it reads as before.

Write-back (``push_attribution``): attribution properties go onto contacts through batch
updates of up to 100. A contact that no longer exists fails alone (HubSpot answers 207 and
names it); a batch HubSpot refuses as a whole (400, e.g. a property that does not exist)
fails each of its contacts with HubSpot's message.

Calls and their retries: see ``hubspot_session``. Searches are throttled client-side.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from hubspot.crm import contacts, deals
from hubspot.crm.contacts import (
    BatchInputSimplePublicObjectBatchInput,
    SimplePublicObjectBatchInput,
)
from hubspot.crm.deals import PublicObjectSearchRequest

from revsync.config.mapping import HubSpotSource
from revsync.config.settings import Settings
from revsync.currencies import ISO_4217
from revsync.domain import (
    MERGED_FROM,
    AttributionPush,
    Deal,
    DealStatus,
    PushResult,
    Quarantined,
)
from revsync.errors import RevsyncError
from revsync.sources.base import DealPage, place_date
from revsync.sources.hubspot_records import (
    CONTACT_PROPERTIES,
    CONTACTS_PER_CALL,
    ContactRecord,
    HubSpotRecords,
)
from revsync.sources.hubspot_values import (
    MODIFIED,
    BadValue,
    after_time,
    api_error,
    aware,
    created_of,
    is_true,
    iso_or_none,
    join_watermark,
    millis,
    modified_of,
    parse_amount,
    parse_instant,
    split_watermark,
)

if TYPE_CHECKING:
    from revsync.checks import CheckResult

DEAL_PROPERTIES = (
    "amount", "closedate", "dealstage", "pipeline", "deal_currency_code", "hs_is_closed_won",
    "hs_is_closed", "hs_lastmodifieddate", "hubspot_owner_id", "hs_merged_object_ids",
    "createdate",
)  # fmt: skip
SEARCH_LIMIT = 200
LIST_LIMIT = 100  # deals per list request (archived deals)


class HubSpotDealSource(HubSpotRecords):
    """Deals changed since the watermark (minus ``overlap_minutes``), page by page. Calls and
    retries: ``hubspot_session``; contacts, companies, stages: ``hubspot_records``."""

    def __init__(
        self, config: HubSpotSource, settings: Settings, default_phone_region: str | None = None
    ) -> None:
        super().__init__(config, settings, default_phone_region)
        self._won_stages = {p: set(stages) for p, stages in config.won_stages.items()}
        self._now = datetime.now(UTC)

    # --- DealSource -----------------------------------------------------------------

    def pages(self, watermark: str | None, now: datetime) -> Iterator[DealPage]:
        self._now = now
        modified, archived = split_watermark(watermark)
        overlap = timedelta(minutes=self.config.overlap_minutes)
        since = datetime.fromisoformat(modified) - overlap if modified else None
        # Deleted deals first. Their pages keep the incoming watermark but the last, held
        # back until the list ends, which carries the newest archivedAt seen: a run cut
        # short lists them again.
        deleted = self._archived_pages(archived, overlap) if self.config.read_archived else ()
        last: DealPage | None = None
        for page in deleted:
            if last is not None:
                yield dataclasses.replace(last, watermark=watermark)
            last = page
        told = False  # whether a page carried the new deleted-deal position
        if last is not None:
            archived = last.watermark
            if last.deals or last.quarantined:
                yield dataclasses.replace(last, watermark=join_watermark(modified, archived))
                told = True
        empty = True
        for raw in self._search(since):
            empty = False
            page = self._page(raw)
            yield dataclasses.replace(page, watermark=join_watermark(page.watermark, archived))
        if empty and not told:
            yield DealPage(deals=(), watermark=join_watermark(modified, archived))

    def close(self) -> None:
        """Close the connection pools of the API clients."""
        for api in (self._search_api, self._deals_api, self._associations_api, self._contacts_api):
            api.api_client.rest_client.pool_manager.clear()

    def check(self) -> Iterator[CheckResult]:
        """``revsync doctor``: token and scopes, daily API budget, mapped properties, stages."""
        from revsync.checks import budget, fail, ok, warn

        get = self._get
        try:
            self._call("deal search", self._search_page, None, 1)
        except RevsyncError as exc:
            yield fail("credentials", str(exc))
            return
        yield ok("credentials", "private app token accepted (deal search)")
        try:
            usage = get("/account-info/v3/api-usage/daily/private-apps").get("results") or []
            daily = next(u for u in usage if u.get("usageLimit"))
            yield budget(
                "API budget", int(daily.get("currentUsage") or 0), int(daily["usageLimit"]),
                0.9, "daily API calls", "a sync may hit HubSpot's daily limit (HTTP 429)",
            )  # fmt: skip
        except (RevsyncError, StopIteration, AttributeError, TypeError, ValueError) as exc:
            yield warn("API budget", f"daily usage unreadable: {exc or type(exc).__name__}")
        try:
            currency = self._default_currency()
        except RevsyncError as exc:
            yield fail("currency", f"the portal's company currency is unreadable: {exc}")
        else:
            how = "configured" if self.config.default_currency else "the portal's company currency"
            yield ok("currency", f"deals without deal_currency_code are in {currency} ({how})")
        wanted = {
            "deals": [*DEAL_PROPERTIES, self.config.won_property, *self.config.deal_properties,
                      *self.config.deal_click_id_properties.values()],
            "contacts": [*CONTACT_PROPERTIES, *self.config.contact_click_id_properties.values(),
                         *(self.config.attribution_fields.values()
                           if self.config.push_attribution else ())],
        }  # fmt: skip
        for object_type, names in wanted.items():
            try:
                known = {p["name"] for p in get(f"/crm/v3/properties/{object_type}")["results"]}
            except RevsyncError as exc:
                yield fail(f"properties: {object_type}", str(exc))
                continue
            missing = [n for n in dict.fromkeys(names) if n not in known]
            if missing:
                yield fail(
                    f"properties: {object_type}",
                    f"{', '.join(missing)} not found on {object_type}: use internal property "
                    "names (Settings > Properties > ⋯ > internal name), not labels",
                )
            else:
                yield ok(f"properties: {object_type}", f"{len(set(names))} mapped properties exist")
        if self.config.stage_history:
            yield self._check_stage_history()
        if self._won_stages:
            try:
                pipelines = {
                    p["id"]: {s["id"] for s in p.get("stages", [])}
                    for p in get("/crm/v3/pipelines/deals")["results"]
                }
            except RevsyncError as exc:
                yield fail("won stages", str(exc))
                return
            unknown: list[str] = []
            for pipeline, stages in self._won_stages.items():
                if pipeline not in pipelines:
                    unknown.append(f"pipeline {pipeline}")
                else:
                    unknown += [f"{pipeline}/{s}" for s in sorted(stages - pipelines[pipeline])]
            if unknown:
                yield fail("won stages", f"unknown: {', '.join(unknown)} (use ids, not labels)")
            else:
                yield ok("won stages", "every configured pipeline and stage id exists")
            unlisted = sorted(set(pipelines) - set(self._won_stages))
            if unlisted:
                yield warn(
                    "unlisted pipelines",
                    f"{', '.join(unlisted)}: not in won_stages, so their deals are won by "
                    f"{self.config.won_property}; list them to choose their won stages",
                )

    def missing(self, deal_ids: Sequence[str]) -> set[str]:
        """Which of ``deal_ids`` HubSpot no longer has (hard-deleted, purged, or archived:
        a batch read of live deals, 100 a call)."""
        found: set[str] = set()
        for start in range(0, len(deal_ids), CONTACTS_PER_CALL):
            chunk = deal_ids[start : start + CONTACTS_PER_CALL]
            request = deals.BatchReadInputSimplePublicObjectId(
                inputs=[{"id": deal_id} for deal_id in chunk], properties=["hs_object_id"]
            )
            response = self._call(
                "deal read", self._deal_batch_api.read, request, archived=False,
                _request_timeout=self.config.timeout_seconds,
            )  # fmt: skip
            found |= {str(item.id) for item in response.results or []}
        return set(deal_ids) - found

    # --- write-back -----------------------------------------------------------------

    def owns(self, crm_id: str) -> bool:
        """Whether ``crm_id`` looks like a HubSpot record id (digits)."""
        return crm_id.isdigit()

    def push_attribution(self, records: Sequence[AttributionPush]) -> list[PushResult]:
        """Update contacts, 100 a request; ``None`` clears a property. See the module
        docstring for how failures are told apart."""
        results: list[PushResult] = []
        for start in range(0, len(records), CONTACTS_PER_CALL):
            chunk = records[start : start + CONTACTS_PER_CALL]
            request = BatchInputSimplePublicObjectBatchInput(inputs=[
                SimplePublicObjectBatchInput(
                    id=r.crm_id, properties={k: v or "" for k, v in r.fields.items()}
                )
                for r in chunk
            ])  # fmt: skip
            response = self._call("contact update", self._update_contacts, request)
            if isinstance(response, contacts.ApiException):
                message = str(api_error("contact update", response))
                results += [PushResult(r.crm_id, False, "HTTP 400", message) for r in chunk]
                continue
            updated = {str(item.id) for item in response.results or []}
            failed: dict[str, tuple[str, str]] = {}
            for error in getattr(response, "errors", None) or []:
                for crm_id in (error.context or {}).get("ids") or []:
                    failed[str(crm_id)] = (error.category, error.message)
            for r in chunk:
                if r.crm_id in updated:
                    results.append(PushResult(r.crm_id, True))
                else:
                    code, message = failed.get(r.crm_id, ("NO_ANSWER", "not in HubSpot's answer"))
                    results.append(PushResult(r.crm_id, False, code, message, "id"))
        return results

    def _update_contacts(self, request: BatchInputSimplePublicObjectBatchInput) -> Any:
        """One batch update; a 400 (the batch refused as a whole) is returned, not raised."""
        try:
            return self._contacts_api.update(request, _request_timeout=self.config.timeout_seconds)
        except contacts.ApiException as exc:
            if exc.status == 400:
                return exc
            raise

    # --- searching ------------------------------------------------------------------

    def _search(self, since: datetime | None) -> Iterator[list[Any]]:
        """Deals in ascending ``hs_lastmodifieddate`` order, one list per search page.

        Each search starts at the last timestamp seen (again from the deals read at it, which
        it skips) and never pages by offset. When a search from a timestamp brings nothing
        but deals at that timestamp, the block is drained by keyset on ``hs_object_id``
        (HubSpot documents no order among equal sort values), and the search goes on
        strictly after it.
        """
        cursor, strict = since, False
        seen_at_cursor: set[str] = set()
        size = self.config.page_size
        while True:
            limit = min(size + len(seen_at_cursor), SEARCH_LIMIT)
            response = self._call(
                "deal search", self._search_page, after_time(cursor, strict), limit
            )
            results = list(response.results or [])
            fresh = [d for d in results if str(d.id) not in seen_at_cursor]
            paging = response.paging
            more = bool(results) and paging is not None and paging.next is not None
            last = modified_of(results[-1]) if results else None
            if (
                more
                and last is not None
                and last == cursor
                and all(modified_of(d) == last for d in results)
            ):
                # More deals share the cursor's timestamp than one page holds past those read.
                yield from self._drain_tie(last, seen_at_cursor)
                cursor, strict, seen_at_cursor = last, True, set()
                continue
            if fresh:
                yield fresh
            if not more or last is None:
                return
            if last != cursor:
                cursor, strict, seen_at_cursor = last, False, set()
            seen_at_cursor |= {str(d.id) for d in results if modified_of(d) == cursor}

    def _drain_tie(self, moment: datetime, read: set[str]) -> Iterator[list[Any]]:
        """Every deal last modified at exactly ``moment`` but those already ``read``, by
        ascending ``hs_object_id``."""
        after_id: str | None = None
        while True:
            response = self._call("deal search", self._tie_page, moment, after_id)
            results = list(response.results or [])
            fresh = [d for d in results if str(d.id) not in read]
            if fresh:
                yield fresh
            if not results or response.paging is None or response.paging.next is None:
                return
            after_id = str(results[-1].id)

    def _search_page(self, since: tuple[datetime, str] | None, limit: int) -> Any:
        filters = []
        if since is not None:
            moment, operator = since
            filters = [{"propertyName": MODIFIED, "operator": operator, "value": millis(moment)}]
        return self._do_search(filters, MODIFIED, limit)

    def _tie_page(self, moment: datetime, after_id: str | None) -> Any:
        filters = [{"propertyName": MODIFIED, "operator": "EQ", "value": millis(moment)}]
        if after_id is not None:
            filters.append({"propertyName": "hs_object_id", "operator": "GT", "value": after_id})
        return self._do_search(filters, "hs_object_id", self.config.page_size)

    def _do_search(self, filters: list[dict[str, str]], sort: str, limit: int) -> Any:
        request = PublicObjectSearchRequest(
            filter_groups=[{"filters": filters}] if filters else [],
            sorts=[{"propertyName": sort, "direction": "ASCENDING"}],
            properties=self._deal_properties(),
            limit=limit,
        )
        self._throttle.wait()
        return self._search_api.do_search(
            public_object_search_request=request, _request_timeout=self.config.timeout_seconds
        )

    def _deal_properties(self) -> list[str]:
        names = [*DEAL_PROPERTIES, self.config.won_property, *self.config.deal_properties]
        names += self.config.deal_click_id_properties.values()
        return list(dict.fromkeys(names))

    # --- deleted deals --------------------------------------------------------------

    def _archived_pages(self, position: str | None, overlap: timedelta) -> Iterator[DealPage]:
        """Deals archived (deleted) since ``position`` minus the overlap, as lost deals, a
        page at a time, each page's ``watermark`` the newest ``archivedAt`` seen so far;
        the last page may be empty. Search never returns archived deals and the list
        endpoint cannot filter by time, so every archived deal is listed, 100 a request."""
        since = datetime.fromisoformat(position) - overlap if position else None
        newest = datetime.fromisoformat(position) if position else None
        deals_out: list[Deal] = []
        problems: list[Quarantined] = []
        after: str | None = None
        while True:
            response = self._call(
                "archived deal list", self._deals_api.get_page, limit=LIST_LIMIT, after=after,
                properties=self._deal_properties(), archived=True,
                _request_timeout=self.config.timeout_seconds,
            )  # fmt: skip
            for raw in response.results or []:
                at = aware(raw.archived_at) if raw.archived_at else modified_of(raw)
                newest = at if newest is None else max(newest, at)
                if since is None or at >= since:
                    deal = self._deal(raw, [], problems, archived_at=at)
                    if deal is not None:
                        deals_out.append(deal)
            following = response.paging.next if response.paging else None
            if following is None or not following.after:
                break
            after = following.after
            if len(deals_out) >= self.config.page_size:
                yield DealPage(tuple(deals_out), tuple(problems), iso_or_none(newest))
                deals_out, problems = [], []
        yield DealPage(tuple(deals_out), tuple(problems), iso_or_none(newest))

    # --- one page -------------------------------------------------------------------

    def _page(self, raw: list[Any]) -> DealPage:
        problems: list[Quarantined] = []
        contact_ids = self._associated_contacts([str(d.id) for d in raw])
        ids = [str(d.id) for d in raw]
        companies = self._primary_companies(ids) if self.config.companies else {}
        history = self._stage_entries(ids) if self.config.stage_history else {}
        wanted = list(dict.fromkeys(c for ids in contact_ids.values() for c in ids))
        records = self._contacts(wanted, problems)
        for contact_id in wanted:
            if contact_id not in records:
                deal_ids = [d for d, ids in contact_ids.items() if contact_id in ids]
                problems.append(
                    Quarantined(
                        "contact",
                        contact_id,
                        "id",
                        "deleted contact",
                        self.name,
                        {"deal_ids": deal_ids},
                    )
                )
        out = []
        for item in raw:
            linked = [records[c] for c in contact_ids.get(str(item.id), []) if c in records]
            deal = self._deal(item, linked, problems)
            if deal is not None:
                account, entries = companies.get(deal.id), history.get(deal.id, ())
                out.append(dataclasses.replace(deal, account_id=account, stage_history=entries))
        return DealPage(
            deals=tuple(out),
            quarantined=tuple(problems),
            watermark=modified_of(raw[-1]).isoformat(),
        )

    def _deal(
        self,
        raw: Any,
        linked: list[ContactRecord],
        problems: list[Quarantined],
        archived_at: datetime | None = None,
    ) -> Deal | None:
        """A search or list result as a deal; an archived (deleted) one counts as lost."""
        deal_id = str(raw.id)
        props: dict[str, Any] = raw.properties or {}
        status = DealStatus.LOST if archived_at else self._status(props)
        try:
            amount = parse_amount(props.get("amount"))
            if status is DealStatus.WON and amount is None:
                raise BadValue("amount", "a won deal needs an amount")
            currency = (props.get("deal_currency_code") or self._default_currency()).upper()
            if currency not in ISO_4217:
                raise BadValue("deal_currency_code", f"{currency} is not an ISO 4217 code")
            close_at = self._close_at(props.get("closedate"))
            if status is DealStatus.WON and close_at is None:
                raise BadValue("closedate", "a won deal needs a close date")
        except BadValue as bad:
            if archived_at is None:
                problems.append(Quarantined("deal", deal_id, bad.field, bad.reason, self.name))
                return None
            # A deleted deal only takes back what was uploaded: it needs none of these.
            amount, currency, close_at = None, self._default_currency(), None
        fields = {
            name: str(props[name])
            for name in self.config.deal_properties
            if props.get(name) not in (None, "")
        }
        if archived_at:
            fields["archivedAt"] = archived_at.isoformat()
        if props.get("hs_merged_object_ids"):  # deals merged into this one, now gone
            fields[MERGED_FROM] = str(props["hs_merged_object_ids"])
        primary_source = linked[0].analytics_source if linked else None
        if primary_source:
            fields["hs_analytics_source"] = primary_source
        return Deal(
            source=self.name,
            id=deal_id,
            status=status,
            amount=amount,
            currency=currency,
            close_at=close_at,
            modified_at=modified_of(raw),
            stage=props.get("dealstage"),
            pipeline=props.get("pipeline"),
            owner=props.get("hubspot_owner_id"),
            contacts=tuple(
                dataclasses.replace(record.contact, is_primary=index == 0)
                for index, record in enumerate(linked)
            ),
            click_ids=self._click_ids(
                "deal", deal_id, props, self.config.deal_click_id_properties, problems
            ),
            fields=fields,
            created_at=created_of(props),
        )

    def _status(self, props: dict[str, Any]) -> DealStatus:
        stages = self._won_stages.get(props.get("pipeline") or "")
        if stages is not None:
            won = props.get("dealstage") in stages
        else:  # a pipeline won_stages does not list: HubSpot's own won flag
            won = is_true(props.get(self.config.won_property))
        if won:
            return DealStatus.WON
        return DealStatus.LOST if is_true(props.get("hs_is_closed")) else DealStatus.OPEN

    def _close_at(self, value: str | None) -> datetime | None:
        if value in (None, ""):
            return None
        try:
            moment = parse_instant(str(value))
        except ValueError:
            raise BadValue("closedate", f"{value!r} is not a date or date-time") from None
        if isinstance(moment, datetime):
            return moment
        return place_date(moment, self._timezone(), self.config.close_time, self._now)

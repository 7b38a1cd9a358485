"""HubSpot CRM emulator (plain HTTP) for driving hubspot-api-client in tests.

Deals and contacts with string-valued properties, deal pipelines, deal↔contact
associations, and the endpoints revsync uses: CRM search (filter groups, one sort, ``after``
cursor, 200 per page, 10,000 results per query, 3,000-character bodies, a per-second search
limit), v4 association batch reads, object batch read/update, property and pipeline lists
(each stage's ``hs_v2_date_entered_<stage id>``, set when a deal enters the stage),
and the private apps' daily API usage (``daily_limit``; ``daily_usage`` counts calls).
A private-app bearer token is required; a rolling burst limit answers 429 with
``Retry-After``. Datetime properties are returned as ISO-8601 UTC strings with
milliseconds; filters accept epoch milliseconds or ISO strings.

Usage::

    with HubSpotEmulator(tokens={"pat-1"}) as hs:
        contact = hs.add_contact(email="a@example.com")
        deal = hs.add_deal(contacts=[contact], dealstage="closedwon", amount="1200")
        client = HubSpot(access_token="pat-1", host=hs.base_url)
"""

from __future__ import annotations

import base64
import bisect
import datetime as dt
import itertools
import math
import random
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

from tests.emulators.crm_http import EmulatorServer, Request, Response, json_response

OPERATORS = frozenset({"EQ", "NEQ", "GT", "GTE", "LT", "LTE", "IN", "NOT_IN", "BETWEEN",
                       "HAS_PROPERTY", "NOT_HAS_PROPERTY"})
MODIFIED = {"deals": "hs_lastmodifieddate", "contacts": "lastmodifieddate"}
ENTERED = "hs_v2_date_entered_"  # + stage id: when a deal entered the stage (last time)
# HubSpot-defined association types; deal -> company: 5 is the primary company, 341 any
ASSOCIATION_TYPE_IDS = {("deals", "contacts"): 3, ("contacts", "deals"): 4,
                        ("deals", "companies"): 341}


@dataclass(frozen=True)
class PropertyDef:
    """A property definition as listed by ``/crm/v3/properties/{objectType}``."""

    name: str
    type: str  # string, number, datetime, date, enumeration, bool
    field_type: str = "text"
    read_only: bool = False
    calculated: bool = False

    def as_json(self, object_type: str) -> dict[str, Any]:
        return {
            "name": self.name, "label": self.name, "type": self.type,
            "fieldType": self.field_type, "groupName": f"{object_type[:-1]}information",
            "description": "", "options": [], "calculated": self.calculated,
            "externalOptions": False, "hasUniqueValue": self.name == "email", "hidden": False,
            "formField": not self.read_only, "displayOrder": -1,
            "modificationMetadata": {"archivable": True, "readOnlyDefinition": True,
                                     "readOnlyValue": self.read_only},
        }


def _props(*specs: str) -> dict[str, PropertyDef]:
    """``"name:type[:fieldType]"``; a trailing ``!`` marks read-only, ``*`` calculated."""
    out = {}
    for spec in specs:
        name, type_, *field_type = spec.split(":")
        bare = name.rstrip("!*")
        out[bare] = PropertyDef(bare, type_, field_type[0] if field_type else "text",
                                read_only=name[-1] in "!*", calculated=name.endswith("*"))
    return out


_SYSTEM = ("createdate!:datetime:date", "hs_object_id!:number:number")
DEFAULT_PROPERTIES = {
    "deals": _props(
        "dealname:string", "amount:number:number", "closedate:datetime:date",
        "dealstage:enumeration:radio", "pipeline:enumeration:select",
        "deal_currency_code:enumeration:select", "hubspot_owner_id:enumeration:select",
        "hs_is_closed_won*:bool:booleancheckbox", "hs_is_closed*:bool:booleancheckbox",
        "hs_lastmodifieddate!:datetime:date", "hs_merged_object_ids!:enumeration:checkbox",
        *_SYSTEM,
    ),
    "contacts": _props(
        "email:string", "firstname:string", "lastname:string", "phone:string:phonenumber",
        "mobilephone:string:phonenumber", "hs_google_click_id:string",
        "hs_facebook_click_id:string", "hs_analytics_source!:enumeration:select",
        "lifecyclestage:enumeration:radio", "lastmodifieddate!:datetime:date", *_SYSTEM,
    ),
}
DEFAULT_READ = {
    "deals": ("dealname", "amount", "closedate", "pipeline", "dealstage"),
    "contacts": ("email", "firstname", "lastname"),
}
DEFAULT_STAGES = [  # id, label, probability, closed
    ("appointmentscheduled", "Appointment Scheduled", "0.2", False),
    ("qualifiedtobuy", "Qualified To Buy", "0.4", False),
    ("presentationscheduled", "Presentation Scheduled", "0.6", False),
    ("decisionmakerboughtin", "Decision Maker Bought-In", "0.8", False),
    ("contractsent", "Contract Sent", "0.9", False),
    ("closedwon", "Closed Won", "1.0", True),
    ("closedlost", "Closed Lost", "0.0", True),
]


_RANGE = frozenset({"EQ", "GT", "GTE", "LT", "LTE", "BETWEEN"})


@dataclass
class _Sorted:
    """Records ordered by one property: its comparable values, those records, the rest."""

    keys: list[Any]
    present: list[dict[str, Any]]
    missing: list[dict[str, Any]]


class HubSpotError(Exception):
    """A request HubSpot rejects as a whole."""

    def __init__(self, status: int, category: str, message: str) -> None:
        super().__init__(message)
        self.status, self.category, self.message = status, category, message


def error_body(category: str, message: str, **extra: Any) -> dict[str, Any]:
    """HubSpot's error envelope."""
    return {"status": "error", "message": message, "correlationId": str(uuid.uuid4()),
            "category": category, **extra}


def to_millis(value: Any) -> int:
    """Epoch milliseconds from a datetime, an int, a digit string or an ISO-8601 string."""
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return int(aware.timestamp() * 1000)
    if isinstance(value, int) or (isinstance(value, str) and value.lstrip("-").isdigit()):
        return int(value)
    return to_millis(dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")))


def iso_millis(ms: int) -> str:
    """``2026-03-01T12:00:00.000Z``: how HubSpot renders datetime properties."""
    when = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


class _Window:
    """A sliding-window request counter."""

    def __init__(self, limit: int | None, seconds: float) -> None:
        self.limit, self.seconds = limit, seconds
        self.hits: deque[float] = deque()

    def retry_after(self) -> int | None:
        """Seconds to wait if the limit is reached (the hit is not recorded), else ``None``."""
        if self.limit is None:
            return None
        now = time.monotonic()
        while self.hits and self.hits[0] <= now - self.seconds:
            self.hits.popleft()
        if len(self.hits) >= self.limit:
            return max(1, math.ceil(self.hits[0] + self.seconds - now))
        self.hits.append(now)
        return None


class HubSpotEmulator(EmulatorServer):
    """An in-memory HubSpot portal served over plain HTTP.

    ``search_per_second`` limits search requests per second; ``burst_limit`` limits all
    requests per ``burst_window`` seconds (``None`` disables either). ``max_search_results``
    is the per-query paging cap (HubSpot: 10,000).
    """

    def __init__(
        self,
        *,
        tokens: set[str] | frozenset[str] = frozenset({"pat-test"}),
        search_per_second: int | None = 5,
        burst_limit: int | None = 100,
        burst_window: float = 10.0,
        max_search_results: int = 10_000,
        daily_limit: int = 500_000,
        associations_per_page: int = 500,
        company_currency: str = "USD",
        time_zone: str = "US/Eastern",
    ) -> None:
        super().__init__(None)
        self.tokens = set(tokens)
        self._search_window = _Window(search_per_second, 1.0)
        self._burst_window = _Window(burst_limit, burst_window)
        self.max_search_results = max_search_results
        self.associations_per_page = associations_per_page
        self.company_currency, self.time_zone = company_currency, time_zone
        self.daily_limit = daily_limit
        self.daily_usage = 0  # authenticated calls today, as account-info reports them
        self.properties = {t: dict(p) for t, p in DEFAULT_PROPERTIES.items()}
        self._records: dict[str, dict[str, dict[str, Any]]] = {"deals": {}, "contacts": {}}
        # the recycling bin: archived records (with their ``archivedAt`` in epoch ms), out of
        # search, batch read and list, and back only in a list with ``archived=true``
        self._archived: dict[str, dict[str, dict[str, Any]]] = {"deals": {}, "contacts": {}}
        self._associations: set[tuple[str, str]] = set()  # (deal id, contact id)
        # indexes (performance only): associations by end, and per-generation caches of
        # records sorted by a property and keyed by a property, rebuilt after any write
        self._associated: dict[str, dict[str, set[str]]] = {"deals": {}, "contacts": {}}
        self._companies: dict[str, list[str]] = {}  # deal id -> company ids, primary first
        self._generation = 0
        self._sorted_cache: dict[tuple[str, PropertyDef], tuple[int, _Sorted]] = {}
        self._keyed_cache: dict[tuple[str, str], tuple[int, dict[Any, dict[str, Any]]]] = {}
        self._ids = itertools.count(1001)
        self._search_serial = itertools.count(1)  # seeds each search's order among ties
        self.pipelines: dict[str, dict[str, Any]] = {}
        self.add_pipeline("default", "Sales Pipeline", DEFAULT_STAGES)

    # --- test helpers ----------------------------------------------------------------------
    def add_pipeline(self, pipeline_id: str, label: str,
                     stages: list[tuple[str, str, str, bool]]) -> None:
        """Define a deal pipeline from ``(stage id, label, probability, is closed)``."""
        stamp = iso_millis(to_millis(self.now()))
        self.pipelines[pipeline_id] = {
            "id": pipeline_id, "label": label, "displayOrder": len(self.pipelines),
            "archived": False, "createdAt": stamp, "updatedAt": stamp,
            "stages": [{"id": sid, "label": slabel, "displayOrder": i, "archived": False,
                        "createdAt": stamp, "updatedAt": stamp,
                        "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT",
                        "metadata": {"isClosed": str(closed).lower(), "probability": prob}}
                       for i, (sid, slabel, prob, closed) in enumerate(stages)],
        }
        for sid, *_ in stages:  # HubSpot's calculated property per stage
            name = f"{ENTERED}{sid}"
            self.properties["deals"][name] = PropertyDef(name, "datetime", "date",
                                                         read_only=True, calculated=True)
        self._generation += 1

    def add_property(self, object_type: str, name: str, type_: str = "string",
                     field_type: str = "text") -> None:
        """Define a custom property."""
        self.properties[object_type][name] = PropertyDef(name, type_, field_type)
        self._generation += 1

    def add_deal(self, contacts: tuple[str, ...] | list[str] = (), **properties: Any) -> str:
        """Create a deal (default pipeline) associated with ``contacts``; returns its id."""
        deal_id = self._create("deals", {"pipeline": "default", **properties})
        for contact_id in contacts:
            self.associate(deal_id, contact_id)
        return deal_id

    def add_contact(self, **properties: Any) -> str:
        """Create a contact; returns its id."""
        return self._create("contacts", properties)

    def associate(self, deal_id: str, contact_id: str) -> None:
        """Associate a deal with a contact (both directions)."""
        with self._lock:
            self._associations.add((deal_id, contact_id))
            self._associated["deals"].setdefault(deal_id, set()).add(contact_id)
            self._associated["contacts"].setdefault(contact_id, set()).add(deal_id)

    def associate_company(self, deal_id: str, company_id: str, primary: bool = False) -> None:
        """Associate a deal with a company (the primary one, or one of the others)."""
        with self._lock:
            companies = self._companies.setdefault(deal_id, [])
            companies.insert(0 if primary else len(companies), company_id)

    def update(self, object_type: str, object_id: str, **properties: Any) -> None:
        """Edit a record as a user would mid-run: bumps the last-modified date to the clock."""
        with self._lock:
            self._write(object_type, self._records[object_type][object_id], properties,
                        system=True)

    def merge(self, primary: str, other: str) -> str:
        """Merge two deals as HubSpot does: a new record takes the primary's properties and
        both records' associations, lists both IDs (and any they had merged) in
        ``hs_merged_object_ids``, and the two disappear without going to the recycling bin
        (no list, search or archived listing shows them again)."""
        with self._lock:
            deals = self._records["deals"]
            merged = [primary, other]
            for old_id in (primary, other):
                earlier = deals[old_id]["properties"].get("hs_merged_object_ids")
                merged += [i for i in str(earlier or "").split(";") if i]
            kept = {k: v for k, v in deals[primary]["properties"].items()
                    if k not in ("hs_object_id", "createdate", MODIFIED["deals"],
                                 "hs_merged_object_ids")}
            contacts = sorted({c for d, c in self._associations if d in (primary, other)})
            new_id = self._create("deals", {**kept, "hs_merged_object_ids": ";".join(merged)})
            for old_id in (primary, other):
                del deals[old_id]
                for pair in [a for a in self._associations if a[0] == old_id]:
                    self._associations.discard(pair)
                    self._associated["deals"].get(old_id, set()).discard(pair[1])
                    self._associated["contacts"].get(pair[1], set()).discard(old_id)
            self._generation += 1
        for contact in contacts:
            self.associate(new_id, contact)
        return new_id

    def purge(self, object_type: str, object_id: str) -> None:
        """Delete for good (a GDPR deletion, or the recycling bin emptied): no search, list
        or archived listing shows the record again."""
        with self._lock:
            self._records[object_type].pop(object_id, None)
            self._archived[object_type].pop(object_id, None)
            self._generation += 1

    def archive(self, object_type: str, object_id: str) -> None:
        """Move a record to the recycling bin now, as deleting it in HubSpot does."""
        with self._lock:
            record = self._records[object_type].pop(object_id)
            self._archived[object_type][object_id] = {**record,
                                                      "archivedAt": to_millis(self.now())}
            self._generation += 1

    def get(self, object_type: str, object_id: str) -> dict[str, str | None]:
        """The stored properties of a record (datetimes as epoch-millisecond strings)."""
        with self._lock:
            return dict(self._records[object_type][object_id]["properties"])

    # --- data model ------------------------------------------------------------------------
    def _create(self, object_type: str, properties: dict[str, Any]) -> str:
        with self._lock:
            object_id = str(next(self._ids))
            now = str(to_millis(self.now()))
            record = {"id": object_id, "createdAt": now, "properties": {
                "hs_object_id": object_id, "createdate": now, MODIFIED[object_type]: now}}
            self._records[object_type][object_id] = record
            self._write(object_type, record, properties, system=True, stamp=False)
            return object_id

    def _write(self, object_type: str, record: dict[str, Any], properties: dict[str, Any], *,
               system: bool, stamp: bool = True) -> None:
        """Validate and apply; ``system`` lets tests set read-only properties."""
        self._generation += 1
        defs = self.properties[object_type]
        errors = [f'Property "{name}" does not exist' for name in properties if name not in defs]
        errors += [f'"{name}" is a read only property; its value cannot be set.'
                   for name in properties
                   if name in defs and defs[name].read_only and not system]
        if errors:
            raise HubSpotError(400, "VALIDATION_ERROR",
                               "Property values were not valid: " + "; ".join(errors))
        props = record["properties"]
        stage_before = props.get("dealstage")
        if stamp:
            props[MODIFIED[object_type]] = str(to_millis(self.now()))
        for name, value in properties.items():
            if value is None or value == "":
                props[name] = None
            elif defs[name].type == "datetime":
                props[name] = str(to_millis(value))
            elif defs[name].type == "bool":
                props[name] = str(value).lower()
            else:
                props[name] = str(value)
        if object_type == "deals":
            stage = self._stage(props.get("pipeline"), props.get("dealstage"))
            closed = stage is not None and stage["metadata"]["isClosed"] == "true"
            props["hs_is_closed"] = str(closed).lower()
            won = closed and stage is not None and stage["metadata"]["probability"] == "1.0"
            props["hs_is_closed_won"] = str(won).lower()
            entered = f"{ENTERED}{props.get('dealstage')}"
            moved = props.get("dealstage") != stage_before
            if moved and entered in defs and entered not in properties:
                props[entered] = props[MODIFIED[object_type]]

    def _stage(self, pipeline: str | None, stage_id: str | None) -> dict[str, Any] | None:
        stages = self.pipelines.get(pipeline or "", {}).get("stages", [])
        return next((s for s in stages if s["id"] == stage_id), None)

    def _render(self, object_type: str, record: dict[str, Any],
                requested: list[str] | None) -> dict[str, Any]:
        defs = self.properties[object_type]
        names = list(requested) if requested else list(DEFAULT_READ[object_type])
        names += ["createdate", MODIFIED[object_type], "hs_object_id"]
        props = {}
        for name in dict.fromkeys(names):
            if name not in defs:
                continue
            value = record["properties"].get(name)
            if value is not None and defs[name].type == "datetime":
                value = iso_millis(int(value))
            props[name] = value
        modified = int(record["properties"][MODIFIED[object_type]])
        out = {"id": record["id"], "properties": props, "archived": "archivedAt" in record,
               "createdAt": iso_millis(int(record["createdAt"])),
               "updatedAt": iso_millis(modified)}
        if "archivedAt" in record:
            out["archivedAt"] = iso_millis(record["archivedAt"])
        return out

    def _typed(self, prop: PropertyDef, value: Any) -> Any:
        """Comparable form of a stored or filter value (``None`` stays ``None``)."""
        if value is None or value == "":
            return None
        if prop.type == "number":
            return float(value)
        if prop.type in ("datetime", "date"):
            return to_millis(value)
        return str(value).casefold()

    # --- HTTP ------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        auth = request.header("authorization") or ""
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            return json_response(401, error_body(
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0 "
                "authentication and you can find more details at "
                "https://developers.hubspot.com/docs/methods/auth/oauth-overview"))
        with self._lock:
            wait = self._burst_window.retry_after()
            if wait is not None:
                return json_response(429, error_body(
                    "RATE_LIMITS", "You have reached your ten_secondly_rolling limit.",
                    errorType="RATE_LIMIT", policyName="TEN_SECONDLY_ROLLING"),
                    {"Retry-After": str(wait)})
            self.daily_usage += 1
            parts = request.path.strip("/").split("/")
            try:
                return self._route(request, parts)
            except HubSpotError as exc:
                return json_response(exc.status, error_body(exc.category, exc.message))
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                return json_response(400, error_body("VALIDATION_ERROR", f"Invalid input: {exc}"))

    def _route(self, request: Request, parts: list[str]) -> Response:
        post = request.method == "POST"
        if parts[:3] == ["crm", "v3", "objects"] and len(parts) == 5 and parts[3] in MODIFIED:
            object_type, action = parts[3], parts[4]
            if action == "search" and post:
                return self._search(object_type, request)
        if (parts[:3] == ["crm", "v3", "objects"] and len(parts) == 4 and parts[3] in MODIFIED
                and request.method == "GET"):
            return self._list(parts[3], request)
        if parts[:3] == ["crm", "v3", "objects"] and len(parts) == 6 and parts[4] == "batch":
            if parts[3] in MODIFIED and parts[5] == "read" and post:
                return self._batch_read(parts[3], request.json())
            if parts[3] in MODIFIED and parts[5] == "update" and post:
                return self._batch_update(parts[3], request.json())
        if parts[:3] == ["crm", "v4", "associations"] and parts[5:] == ["batch", "read"] and post:
            return self._associations_read(parts[3], parts[4], request.json())
        if parts[:3] == ["crm", "v3", "properties"] and len(parts) == 4 and parts[3] in MODIFIED:
            return json_response(200, {"results": [
                p.as_json(parts[3]) for p in self.properties[parts[3]].values()]})
        if parts == ["account-info", "v3", "details"]:
            return json_response(200, {
                "portalId": 62515, "accountType": "STANDARD", "timeZone": self.time_zone,
                "companyCurrency": self.company_currency, "additionalCurrencies": [],
                "utcOffset": "-05:00", "utcOffsetMilliseconds": -18_000_000,
                "uiDomain": "app.hubspot.com", "dataHostingLocation": "na1"})
        if parts == ["account-info", "v3", "api-usage", "daily", "private-apps"]:
            return json_response(200, {"results": [{
                "name": "private-apps-api-calls-daily", "usageLimit": self.daily_limit,
                "currentUsage": self.daily_usage, "fetchStatus": "SUCCESS",
                "collectedAt": iso_millis(to_millis(self.now())),
            }]})
        if parts == ["crm", "v3", "pipelines", "deals"] and request.method == "GET":
            return json_response(200, {"results": list(self.pipelines.values())})
        raise HubSpotError(404, "OBJECT_NOT_FOUND", f"No route for {request.method} {request.path}")

    def _search(self, object_type: str, request: Request) -> Response:
        wait = self._search_window.retry_after()
        if wait is not None:
            return json_response(429, error_body(
                "RATE_LIMITS", "You have reached your secondly limit.",
                errorType="RATE_LIMIT", policyName="SECONDLY"), {"Retry-After": str(wait)})
        if len(request.body.decode()) > 3000:
            raise HubSpotError(400, "VALIDATION_ERROR",
                               "Search request body exceeds the 3000 character limit")
        body = request.json() or {}
        limit = int(body.get("limit") or 10)
        after = int(body.get("after") or 0)
        if not 0 < limit <= 200:
            raise HubSpotError(400, "VALIDATION_ERROR", "limit must be between 1 and 200")
        if after >= self.max_search_results:
            raise HubSpotError(400, "VALIDATION_ERROR",
                               f"Search results are limited to {self.max_search_results} per "
                               "query; use a narrower filter to page further")
        groups = body.get("filterGroups") or []
        if len(groups) > 5 or any(len(g.get("filters") or []) > 6 for g in groups) or sum(
                len(g.get("filters") or []) for g in groups) > 18:
            raise HubSpotError(400, "VALIDATION_ERROR",
                               "Too many filters: at most 5 filterGroups, 6 filters per group "
                               "and 18 filters in total")
        for flt in (f for g in groups for f in g.get("filters") or []):
            self._prop(object_type, flt["propertyName"])
            if flt.get("operator") not in OPERATORS:
                raise HubSpotError(400, "VALIDATION_ERROR", f"Unknown operator: {flt['operator']}")
        sorts = body.get("sorts") or []
        if len(sorts) > 1:
            raise HubSpotError(400, "VALIDATION_ERROR", "Only one sort is supported")
        sort_name = None
        if sorts:
            sort_name = (sorts[0] if isinstance(sorts[0], dict) else {"propertyName": sorts[0]})[
                "propertyName"]
        fast = self._indexed_search(object_type, groups, sorts)
        if fast is not None:
            rows = fast
            groups = sorts = []
        else:
            rows = self._by_id(object_type)
        if groups:
            rows = [r for r in rows if any(self._group_matches(object_type, r, g) for g in groups)]
        if sorts:
            sort = sorts[0] if isinstance(sorts[0], dict) else {"propertyName": sorts[0]}
            prop = self._prop(object_type, sort["propertyName"])
            desc = sort.get("direction", "ASCENDING") == "DESCENDING"
            present = [r for r in rows if self._typed(prop, r["properties"].get(prop.name))
                       is not None]
            present_ids = {r["id"] for r in present}
            missing = [r for r in rows if r["id"] not in present_ids]
            present.sort(key=lambda r: self._typed(prop, r["properties"][prop.name]), reverse=desc)
            rows = missing + present if desc else present + missing
        if sorts or fast is not None:
            rows = self._unstable_ties(object_type, rows, sort_name)
        end = min(after + limit, len(rows), self.max_search_results)
        out: dict[str, Any] = {"total": len(rows), "results": [
            self._render(object_type, r, body.get("properties")) for r in rows[after:end]]}
        if end < len(rows):
            out["paging"] = {"next": {"after": str(end), "link": f"?after={end}"}}
        return json_response(200, out)

    def _unstable_ties(self, object_type: str, rows: list[dict[str, Any]],
                       sort_name: str | None) -> list[dict[str, Any]]:
        """HubSpot allows one sort and documents no order among equal values: each search
        answers records that share the sort value in an order of its own."""
        if sort_name is None or len(rows) < 2:
            return rows
        prop = self._prop(object_type, sort_name)
        shuffle = random.Random(next(self._search_serial)).shuffle
        out: list[dict[str, Any]] = []
        for _key, run in itertools.groupby(
                rows, key=lambda r: self._typed(prop, r["properties"].get(prop.name))):
            block = list(run)
            if len(block) > 1:
                shuffle(block)
            out.extend(block)
        return out

    def _list(self, object_type: str, request: Request) -> Response:
        """``GET /crm/v3/objects/{type}``: a page of records by id, only archived ones with
        ``archived=true``; ``limit`` ≤ 100, ``after`` from the previous page's paging."""
        limit = int(request.query.get("limit") or 10)
        if not 0 < limit <= 100:
            raise HubSpotError(400, "VALIDATION_ERROR", "limit must be between 1 and 100")
        archived = request.query.get("archived", "false").lower() == "true"
        pool = self._archived if archived else self._records
        rows = sorted(pool[object_type].values(), key=lambda r: int(r["id"]))
        after = request.query.get("after")
        if after:  # the id to start at, as HubSpot's list cursors are
            rows = [r for r in rows if int(r["id"]) >= int(after)]
        names = [n for v in request.repeats.get("properties", []) for n in v.split(",") if n]
        out: dict[str, Any] = {"results": [
            self._render(object_type, r, names or None) for r in rows[:limit]]}
        if len(rows) > limit:
            following = rows[limit]["id"]
            out["paging"] = {"next": {"after": following, "link": f"?after={following}"}}
        return json_response(200, out)

    def _by_id(self, object_type: str) -> list[dict[str, Any]]:
        return sorted(self._records[object_type].values(), key=lambda r: int(r["id"]))

    def _sorted(self, object_type: str, prop: PropertyDef) -> _Sorted:
        """Records with ``prop`` in ascending order (ties by id), and those without it."""
        cached = self._sorted_cache.get((object_type, prop))
        if cached is not None and cached[0] == self._generation:
            return cached[1]
        typed = [(self._typed(prop, r["properties"].get(prop.name)), r)
                 for r in self._by_id(object_type)]
        present = sorted((kr for kr in typed if kr[0] is not None), key=lambda kr: kr[0])
        result = _Sorted([k for k, _ in present], [r for _, r in present],
                         [r for k, r in typed if k is None])
        self._sorted_cache[(object_type, prop)] = (self._generation, result)
        return result

    def _indexed_search(self, object_type: str, groups: list[dict[str, Any]],
                        sorts: list[Any]) -> list[dict[str, Any]] | None:
        """The rows of an ascending one-sort search whose only filters are comparisons on the
        sorted property (how deal sources page), found by bisection; ``None`` otherwise. Same
        rows, order and errors as filtering and sorting every record."""
        if len(sorts) != 1 or len(groups) > 1:
            return None
        sort = sorts[0] if isinstance(sorts[0], dict) else {"propertyName": sorts[0]}
        if sort.get("direction", "ASCENDING") == "DESCENDING":
            return None
        prop = self._prop(object_type, sort["propertyName"])
        filters = (groups[0].get("filters") or []) if groups else []
        bounds = []
        for flt in filters:
            if flt["propertyName"] != prop.name or flt["operator"] not in _RANGE:
                return None
            values = [flt.get("value")]
            if flt["operator"] == "BETWEEN":
                if "highValue" not in flt:
                    return None
                values.append(flt["highValue"])
            try:
                typed = [self._typed(prop, v) for v in values]
            except (ValueError, TypeError):
                return None  # the full scan raises it as the API would, if any record is read
            if any(v is None for v in typed):
                return None
            bounds.append((flt["operator"], typed))
        index = self._sorted(object_type, prop)
        if not bounds:
            return index.present + index.missing
        keys, start, end = index.keys, 0, len(index.keys)
        for operator, typed in bounds:
            if operator in ("GT", "EQ", "GTE", "BETWEEN"):
                edge = bisect.bisect_right if operator == "GT" else bisect.bisect_left
                start = max(start, edge(keys, typed[0]))
            if operator in ("LT", "EQ", "LTE", "BETWEEN"):
                high = typed[-1]
                edge = bisect.bisect_left if operator == "LT" else bisect.bisect_right
                end = min(end, edge(keys, high))
        return index.present[start:end] if start < end else []

    def _keyed(self, object_type: str, id_property: str) -> dict[Any, dict[str, Any]]:
        """``{value of id_property: record}`` (the last record wins, as a dict would)."""
        cached = self._keyed_cache.get((object_type, id_property))
        if cached is not None and cached[0] == self._generation:
            return cached[1]
        index = {r["properties"].get(id_property): r for r in self._records[object_type].values()}
        self._keyed_cache[(object_type, id_property)] = (self._generation, index)
        return index

    def _prop(self, object_type: str, name: str) -> PropertyDef:
        prop = self.properties[object_type].get(name)
        if prop is None:
            raise HubSpotError(400, "VALIDATION_ERROR", f"Unknown property: {name}")
        return prop

    def _group_matches(self, object_type: str, record: dict[str, Any],
                       group: dict[str, Any]) -> bool:
        for flt in group.get("filters") or []:
            operator = flt["operator"]
            prop = self._prop(object_type, flt["propertyName"])
            value = self._typed(prop, record["properties"].get(prop.name))
            if operator in ("HAS_PROPERTY", "NOT_HAS_PROPERTY"):
                ok = (value is not None) == (operator == "HAS_PROPERTY")
            elif operator in ("IN", "NOT_IN"):
                found = value in {self._typed(prop, v) for v in flt.get("values") or []}
                ok = found if operator == "IN" else not found
            elif operator == "NEQ":
                ok = value != self._typed(prop, flt.get("value"))
            elif value is None:
                ok = False
            elif operator == "BETWEEN":
                low, high = self._typed(prop, flt.get("value")), self._typed(prop, flt["highValue"])
                ok = low <= value <= high
            else:
                other = self._typed(prop, flt.get("value"))
                ok = {"EQ": value == other, "GT": value > other, "GTE": value >= other,
                      "LT": value < other, "LTE": value <= other}[operator]
            if not ok:
                return False
        return True

    def _batch_result(self, results: list[dict[str, Any]], missing: list[str],
                      error: dict[str, Any]) -> Response:
        now = iso_millis(to_millis(self.now()))
        body: dict[str, Any] = {"status": "COMPLETE", "results": results,
                                "startedAt": now, "completedAt": now}
        if not missing:
            return json_response(200, body)
        body["numErrors"] = 1
        body["errors"] = [{**error, "status": "error", "links": {}, "errors": []}]
        return json_response(207, body)

    def _inputs(self, body: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        inputs = body.get("inputs") or []
        if len(inputs) > limit:
            raise HubSpotError(400, "VALIDATION_ERROR",
                               f"Batch input size {len(inputs)} exceeds the limit of {limit}")
        return inputs

    def _batch_read(self, object_type: str, body: dict[str, Any]) -> Response:
        inputs = self._inputs(body, 100)
        id_property = body.get("idProperty") or "hs_object_id"
        self._prop(object_type, id_property)
        index = self._keyed(object_type, id_property)
        results, missing = [], []
        for item in inputs:
            record = index.get(str(item["id"]))
            if record is None:
                missing.append(str(item["id"]))
            else:
                results.append(self._render(object_type, record, body.get("properties")))
        noun = object_type[:-1].upper()
        return self._batch_result(results, missing, {
            "category": "OBJECT_NOT_FOUND", "context": {"ids": missing},
            "message": f"Could not get some {noun} objects, they may be deleted or not exist. "
                       "Check that ids are valid."})

    def _batch_update(self, object_type: str, body: dict[str, Any]) -> Response:
        inputs = self._inputs(body, 100)
        records = self._records[object_type]
        for item in inputs:  # whole batch is validated before anything is written
            self._write(object_type, {"properties": {}}, item.get("properties") or {},
                        system=False, stamp=False)
        missing = [str(i["id"]) for i in inputs if str(i["id"]) not in records]
        results = []
        for item in inputs:
            record = records.get(str(item["id"]))
            if record is not None:
                properties = item.get("properties") or {}
                self._write(object_type, record, properties, system=False)
                results.append(self._render(object_type, record, list(properties)))
        return self._batch_result(results, missing, {
            "category": "OBJECT_NOT_FOUND", "context": {"ids": missing},
            "message": f"Could not update some {object_type[:-1].upper()} objects, they may be "
                       "deleted or not exist. Check that ids are valid."})

    def _associations_read(self, from_type: str, to_type: str, body: dict[str, Any]) -> Response:
        type_id = ASSOCIATION_TYPE_IDS.get((from_type, to_type))
        if type_id is None:
            raise HubSpotError(400, "VALIDATION_ERROR",
                               f"Unsupported association {from_type} -> {to_type}")
        inputs = self._inputs(body, 1000)
        results, missing = [], []
        for item in inputs:
            from_id = str(item["id"])
            if to_type == "companies":
                primary = self._companies.get(from_id, [])[:1]
                targets = sorted(self._companies.get(from_id, []), key=int)
            else:
                primary = []
                targets = sorted(self._associated[from_type].get(from_id, ()), key=int)
            if not targets:
                missing.append(from_id)
                continue
            # One page of an object's associations; ``paging`` only when more follow, its
            # ``after`` token going back alongside the ``id``.
            start = _after_offset(item.get("after"))
            end = start + self.associations_per_page
            result: dict[str, Any] = {"from": {"id": from_id}, "to": [
                {"toObjectId": int(t), "associationTypes": [
                    {"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": None},
                    *([{"category": "HUBSPOT_DEFINED", "typeId": 5, "label": "Primary"}]
                      if t in primary else [])]}
                for t in targets[start:end]]}
            if end < len(targets):
                token = base64.urlsafe_b64encode(f"assoc-{end}".encode()).decode()
                result["paging"] = {"next": {"after": token, "link": None}}
            results.append(result)
        return self._batch_result(results, missing, {
            "category": "OBJECT_NOT_FOUND", "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
            "context": {"fromObjectId": missing},
            "message": f"No {to_type} are associated with {from_type[:-1]} "
                       f"{', '.join(missing)}."})


def _after_offset(token: Any) -> int:
    """The offset an associations ``after`` token stands for; 400 for a token we never gave."""
    if token in (None, ""):
        return 0
    try:
        text = base64.urlsafe_b64decode(str(token)).decode()
        if text.startswith("assoc-"):
            return int(text[len("assoc-"):])
    except (ValueError, UnicodeDecodeError):
        pass
    raise HubSpotError(400, "VALIDATION_ERROR", f"Invalid paging token {token!r}")

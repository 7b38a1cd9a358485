"""Salesforce REST API emulator (HTTPS) for driving simple-salesforce in tests.

An in-memory org with Opportunity, Contact, Lead and OpportunityContactRole records behind
``/services/data/vNN.N/``: SOQL ``query``/``queryAll`` (a subset parser) with 2,000-record
pages, ``sobjects`` list/describe/retrieve/update, ``composite/sobjects`` batch update,
``limits``, Bulk API 2.0 query jobs, and ``/services/oauth2/token`` (refresh token, JWT
bearer, client credentials). Every API call counts against a daily budget reported in
``Sforce-Limit-Info``.

Usage::

    sf = SalesforceEmulator(make_tls_files(tmp), custom_fields={"Lead": {"GCLID__c": "string"}})
    with sf:
        opp = sf.add("Opportunity", StageName="Closed Won", Amount=1200.0)
        client = Salesforce(instance_url=sf.base_url, session_id=sf.issue_session(), ...)
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import itertools
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import jwt

from tests.emulators.crm_http import EmulatorServer, Request, Response, json_response
from tests.emulators.tls import TlsFiles

API_PREFIX = re.compile(r"^/services/data/v(?P<version>\d+\.\d)(?:/(?P<rest>.*))?$")
TEXT_TYPES = frozenset({"id", "reference", "string", "picklist", "email", "phone", "textarea"})
NUMBER_TYPES = frozenset({"currency", "double", "percent", "int"})
ID_PREFIXES = {
    "Opportunity": "006", "Contact": "003", "Lead": "00Q", "OpportunityContactRole": "00K",
    "Organization": "00D", "OpportunityHistory": "008",
}
SYSTEM_FIELDS = ("CreatedDate", "LastModifiedDate", "SystemModstamp")


@dataclass(frozen=True)
class FieldDef:
    """One field of an sObject's describe."""

    name: str
    type: str
    reference_to: str | None = None
    updateable: bool = True

    @property
    def relationship_name(self) -> str | None:
        if self.reference_to is None:
            return None
        return self.name[:-2] if self.name.endswith("Id") else self.name.replace("__c", "__r")


def _fields(*specs: str, **references: str) -> list[FieldDef]:
    """Build field lists from ``"Name:type"`` specs; ``!`` marks read-only fields."""
    out = [FieldDef("Id", "id", updateable=False),
           FieldDef("IsDeleted", "boolean", updateable=False)]
    for spec in specs:
        name, type_ = spec.split(":")
        out.append(FieldDef(name.rstrip("!"), type_, updateable=not name.endswith("!")))
    out += [FieldDef(name, "reference", reference_to=target) for name, target in references.items()]
    out += [FieldDef(name, "datetime", updateable=False) for name in SYSTEM_FIELDS]
    return out


STANDARD_FIELDS: dict[str, list[FieldDef]] = {
    "Opportunity": _fields(
        "Name:string", "Amount:currency", "CloseDate:date", "StageName:picklist",
        "IsWon!:boolean", "IsClosed!:boolean", "Probability:percent", "Type:picklist",
        "LeadSource:picklist", "OwnerId:reference", "AccountId:reference",
        ContactId="Contact",
    ),
    "Contact": _fields(
        "FirstName:string", "LastName:string", "Name!:string", "Email:email", "Phone:phone",
        "MobilePhone:phone", "LeadSource:picklist", "OwnerId:reference", "AccountId:reference",
    ),
    "Lead": _fields(
        "FirstName:string", "LastName:string", "Name!:string", "Email:email", "Phone:phone",
        "MobilePhone:phone", "Company:string", "Status:picklist", "LeadSource:picklist",
        "IsConverted!:boolean", "OwnerId:reference",
        ConvertedContactId="Contact", ConvertedOpportunityId="Opportunity",
    ),
    "OpportunityContactRole": _fields(
        "IsPrimary:boolean", "Role:picklist", OpportunityId="Opportunity", ContactId="Contact",
    ),
    "Organization": _fields("Name!:string", "TimeZoneSidKey!:picklist"),
    # Salesforce writes a row on every change of an opportunity's stage (and on creation)
    "OpportunityHistory": _fields(
        "StageName!:picklist", "Amount!:currency", "CloseDate!:date",
        OpportunityId="Opportunity",
    ),
}


class SoqlError(Exception):
    """A query the org rejects: ``code`` is Salesforce's errorCode."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _sf_error(status: int, code: str, message: str) -> Response:
    return json_response(status, [{"errorCode": code, "message": message}])


def _id_with_checksum(id15: str) -> str:
    """Salesforce's 18-character ID: three suffix characters encode the case of the 15."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
    suffix = ""
    for chunk in (id15[0:5], id15[5:10], id15[10:15]):
        bits = sum(1 << i for i, ch in enumerate(chunk) if ch.isupper())
        suffix += alphabet[bits]
    return id15 + suffix


def _parse_datetime(value: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def format_datetime(value: dt.datetime) -> str:
    """Salesforce's REST datetime format, e.g. ``2026-01-01T00:00:00.000+0000``."""
    value = value.astimezone(dt.UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


# --- SOQL subset -----------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>'(?:[^'\\]|\\.)*')
    | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
    | (?P<date>\d{4}-\d{2}-\d{2})
    | (?P<number>-?\d+(?:\.\d+)?)
    | (?P<op>!=|<>|<=|>=|=|<|>)
    | (?P<punct>[(),])
    | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE,
)
_KEYWORDS = frozenset({
    "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "ORDER", "BY", "ASC", "DESC", "NULLS",
    "FIRST", "LAST", "LIMIT", "TRUE", "FALSE", "NULL",
})


@dataclass(frozen=True)
class Literal:
    """A typed SOQL literal: kind is string, number, datetime, date, boolean or null."""

    kind: str
    value: Any


@dataclass(frozen=True)
class Comparison:
    path: str
    op: str
    values: tuple[Literal, ...]  # one value, or the IN list


@dataclass(frozen=True)
class BoolExpr:
    op: str  # AND, OR, NOT
    items: tuple[Any, ...]


@dataclass
class Soql:
    """A parsed query; paths are canonicalised by :meth:`SalesforceEmulator._validate`."""

    sobject: str
    fields: list[str]
    where: Any = None
    order: list[tuple[str, bool, bool]] = field(default_factory=list)  # path, desc, nulls first
    limit: int | None = None
    count_only: bool = False


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos, text = 0, text.strip()
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if not match or match.end() == pos:
                raise SoqlError("MALFORMED_QUERY", f"unexpected token at: {text[pos:pos + 20]!r}")
            kind = match.lastgroup or ""
            value = match.group(kind)
            if kind == "ident" and value.upper() in _KEYWORDS:
                kind, value = "kw", value.upper()
            self.tokens.append((kind, value))
            pos = match.end()
        self.i = 0

    def peek(self, offset: int = 0) -> tuple[str, str]:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else ("eof", "")

    def take(self, kind: str, value: str | None = None) -> str:
        tok = self.peek()
        if tok[0] != kind or (value is not None and tok[1] != value):
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{tok[1] or 'end of query'}'")
        self.i += 1
        return tok[1]

    def accept(self, kind: str, value: str) -> bool:
        if self.peek() == (kind, value):
            self.i += 1
            return True
        return False

    def parse(self) -> Soql:
        self.take("kw", "SELECT")
        fields, count_only = [], False
        if self.peek()[1].upper() == "COUNT" and self.peek(1) == ("punct", "("):
            self.i += 1
            self.take("punct", "(")
            self.take("punct", ")")
            count_only = True
        else:
            fields.append(self.take("ident"))
            while self.accept("punct", ","):
                fields.append(self.take("ident"))
        self.take("kw", "FROM")
        query = Soql(self.take("ident"), fields, count_only=count_only)
        if self.accept("kw", "WHERE"):
            query.where = self.condition()
        if self.accept("kw", "ORDER"):
            self.take("kw", "BY")
            query.order.append(self.order_item())
            while self.accept("punct", ","):
                query.order.append(self.order_item())
        if self.accept("kw", "LIMIT"):
            query.limit = int(self.take("number"))
        if self.peek()[0] != "eof":
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{self.peek()[1]}'")
        return query

    def order_item(self) -> tuple[str, bool, bool]:
        path = self.take("ident")
        desc = self.accept("kw", "DESC")
        if not desc:
            self.accept("kw", "ASC")
        nulls_first = not desc
        if self.accept("kw", "NULLS"):
            nulls_first = self.accept("kw", "FIRST")
            if not nulls_first:
                self.take("kw", "LAST")
        return path, desc, nulls_first

    def condition(self) -> Any:
        items, ops = [self.unary()], set()
        while self.peek()[1] in ("AND", "OR") and self.peek()[0] == "kw":
            ops.add(self.take("kw"))
            items.append(self.unary())
        if len(ops) > 1:  # SOQL requires parentheses when mixing AND and OR
            raise SoqlError("MALFORMED_QUERY", "unexpected token: 'OR' (mix of AND and OR)")
        return items[0] if len(items) == 1 else BoolExpr(ops.pop(), tuple(items))

    def unary(self) -> Any:
        if self.accept("kw", "NOT"):
            return BoolExpr("NOT", (self.unary(),))
        if self.accept("punct", "("):
            inner = self.condition()
            self.take("punct", ")")
            return inner
        path = self.take("ident")
        if self.accept("kw", "NOT"):
            self.take("kw", "IN")
            return Comparison(path, "NOT IN", self.value_list())
        if self.accept("kw", "IN"):
            return Comparison(path, "IN", self.value_list())
        op = self.take("op")
        return Comparison(path, "!=" if op == "<>" else op, (self.literal(),))

    def value_list(self) -> tuple[Literal, ...]:
        self.take("punct", "(")
        values = [self.literal()]
        while self.accept("punct", ","):
            values.append(self.literal())
        self.take("punct", ")")
        return tuple(values)

    def literal(self) -> Literal:
        kind, value = self.peek()
        self.i += 1
        if kind == "string":
            return Literal("string", re.sub(r"\\(.)", r"\1", value[1:-1]))
        if kind == "number":
            return Literal("number", float(value))
        if kind == "datetime":
            return Literal("datetime", _parse_datetime(value))
        if kind == "date":
            return Literal("date", dt.date.fromisoformat(value))
        if kind == "kw" and value in ("TRUE", "FALSE"):
            return Literal("boolean", value == "TRUE")
        if kind == "kw" and value == "NULL":
            return Literal("null", None)
        raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{value or 'end of query'}'")


def parse_soql(text: str) -> Soql:
    """Parse the supported SOQL subset (raises :class:`SoqlError`)."""
    return _Parser(text).parse()


def _literal_kind(field_type: str) -> str:
    if field_type in TEXT_TYPES:
        return "string"
    return "number" if field_type in NUMBER_TYPES else field_type


def _sort_key(field_type: str, value: Any) -> Any:
    if field_type in ("id", "reference"):
        return value[:15]
    return value.casefold() if isinstance(value, str) else value


def _compare(op: str, left: Any, right: Any) -> bool:
    if op in ("=", "IN"):
        return left == right
    if op in ("!=", "NOT IN"):
        return left != right
    if left is None or right is None:
        return False
    return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]


# --- the emulator ----------------------------------------------------------------------------

@dataclass
class ConnectedApp:
    """OAuth client registered with the org."""

    client_id: str
    client_secret: str | None = None
    refresh_tokens: set[str] = field(default_factory=set)
    jwt_public_key: bytes | None = None
    username: str | None = None


@dataclass
class _QueryJob:
    info: dict[str, Any]
    columns: list[str]
    rows: list[list[Any]]
    polls_left: int


class SalesforceEmulator(EmulatorServer):
    """An in-memory Salesforce org served over HTTPS.

    ``custom_fields`` maps an object to ``{field name: type}`` (types as in describe:
    string, email, phone, currency, double, boolean, date, datetime, picklist, reference).
    ``multi_currency`` adds ``CurrencyIsoCode`` (default ``currency``) to Opportunity, Contact
    and Lead. ``page_size`` caps REST query pages (Salesforce: 2,000). ``api_limit`` is the
    daily request budget; ``bulk_polls`` is how many job status reads answer ``InProgress``.
    ``rotate_refresh_tokens`` is the connected app's refresh-token rotation: each refresh
    grant then answers with a new ``refresh_token`` and invalidates the one it was given.
    ``time_zone`` is the org's default time zone (``Organization.TimeZoneSidKey``).
    """

    def __init__(
        self,
        tls: TlsFiles,
        *,
        custom_fields: dict[str, dict[str, str]] | None = None,
        multi_currency: bool = False,
        currency: str = "USD",
        page_size: int = 2000,
        api_limit: int = 15000,
        bulk_polls: int = 0,
        won_stages: frozenset[str] = frozenset({"Closed Won"}),
        lost_stages: frozenset[str] = frozenset({"Closed Lost"}),
        rotate_refresh_tokens: bool = True,
        time_zone: str = "America/Los_Angeles",
    ) -> None:
        super().__init__(tls)
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.multi_currency = multi_currency
        self.currency = currency
        self.page_size = page_size
        self.api_limit = api_limit
        self.api_usage = 0
        self.bulk_polls = bulk_polls
        self.won_stages, self.lost_stages = won_stages, lost_stages
        self.org_id = _id_with_checksum("00D5g0000000001")
        self.user_id = _id_with_checksum("0055g0000000001")
        self.schema: dict[str, dict[str, FieldDef]] = {}
        for sobject, defs in STANDARD_FIELDS.items():
            extra = [FieldDef(n, t) for n, t in (custom_fields or {}).get(sobject, {}).items()]
            if multi_currency and sobject not in ("OpportunityContactRole", "Organization",
                                                  "OpportunityHistory"):
                extra.append(FieldDef("CurrencyIsoCode", "picklist"))
            self.schema[sobject] = {f.name.lower(): f for f in defs + extra}
        self._records: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in self.schema}
        self._ids = itertools.count(1)
        self._sessions: set[str] = set()
        self._apps: dict[str, ConnectedApp] = {}
        self._cursors: dict[str, tuple[list[dict[str, Any]], int]] = {}
        self._jobs: dict[str, _QueryJob] = {}
        # equality indexes for WHERE field = / IN (...), rebuilt after any write
        self._generation = 0
        self._indexes: dict[tuple[str, str], tuple[int, dict[Any, list[tuple[int, Any]]]]] = {}
        self.add("Organization", Name="Acme", TimeZoneSidKey=time_zone)

    # --- test helpers ----------------------------------------------------------------------
    def add(self, sobject: str, **fields: Any) -> str:
        """Insert a record (values as Python types or ISO strings); returns its 18-char Id."""
        with self._lock:
            prefix = ID_PREFIXES[sobject]
            record_id = _id_with_checksum(f"{prefix}5g{next(self._ids):010d}")
            now = self.stamp()
            record: dict[str, Any] = {
                "Id": record_id, "IsDeleted": False,
                "CreatedDate": now, "LastModifiedDate": now, "SystemModstamp": now,
            }
            if sobject == "Opportunity":
                record |= {"Name": f"Opportunity {record_id[-6:]}", "StageName": "Prospecting",
                           "CloseDate": now.date()}
            if sobject == "Lead":
                record |= {"Status": "Open - Not Contacted", "IsConverted": False}
            if "currencyisocode" in self.schema[sobject]:
                record["CurrencyIsoCode"] = self.currency
            self._records[sobject][record_id] = record
            self._write(sobject, record, fields, system=True)
            return record_id

    def update(self, sobject: str, record_id: str, **fields: Any) -> None:
        """Edit a record as a user would mid-run: bumps LastModifiedDate/SystemModstamp to
        the emulator clock (unless given explicitly). Only this record's: as in Salesforce,
        adding, editing or deleting an OpportunityContactRole leaves its Opportunity's
        stamps alone."""
        with self._lock:
            record = self._records[sobject][record_id]
            now = self.stamp()
            record["LastModifiedDate"] = record["SystemModstamp"] = now
            self._write(sobject, record, fields, system=True)

    def delete(self, sobject: str, record_id: str) -> None:
        """Soft-delete: hidden from ``query``, still returned by ``queryAll``."""
        self.update(sobject, record_id, IsDeleted=True)

    def purge(self, sobject: str, record_id: str) -> None:
        """Hard-delete (or empty the recycle bin): gone from ``query`` and ``queryAll``."""
        with self._lock:
            del self._records[sobject][record_id]
            self._generation += 1

    def stamp(self) -> dt.datetime:
        """The emulator clock as Salesforce stores it in a datetime field such as
        SystemModstamp: whole seconds (the milliseconds are dropped, not rounded)."""
        return self.now().replace(microsecond=0)

    def get(self, sobject: str, record_id: str) -> dict[str, Any]:
        """A copy of the stored record (Python-typed values)."""
        with self._lock:
            return dict(self._records[sobject][record_id])

    def issue_session(self) -> str:
        """A fresh valid access token, as if obtained through OAuth."""
        token = f"{self.org_id[:15]}!{secrets.token_urlsafe(24)}"
        with self._lock:
            self._sessions.add(token)
        return token

    def expire_sessions(self) -> None:
        """Invalidate every access token (refresh tokens stay valid)."""
        with self._lock:
            self._sessions.clear()

    def add_connected_app(
        self,
        client_id: str,
        *,
        client_secret: str | None = None,
        refresh_token: str | None = None,
        jwt_public_key: bytes | None = None,
        username: str | None = None,
    ) -> ConnectedApp:
        """Register an OAuth client; ``jwt_public_key`` (PEM) and ``username`` enable the
        JWT bearer flow, ``refresh_token`` the refresh flow, ``client_secret`` client
        credentials."""
        app = ConnectedApp(client_id, client_secret, {refresh_token} if refresh_token else set(),
                           jwt_public_key, username)
        with self._lock:
            self._apps[client_id] = app
        return app

    def authorize(self, client_id: str) -> str:
        """A new refresh token for the app, as a user completing the web server flow again
        (re-authorising) would get; earlier ones stay valid until rotated or revoked."""
        token = f"5Aep{secrets.token_urlsafe(32)}"
        with self._lock:
            self._apps[client_id].refresh_tokens.add(token)
        return token

    def revoke_refresh_tokens(self, client_id: str) -> None:
        """Revoke every refresh token of the app (a user or admin revoking its access)."""
        with self._lock:
            self._apps[client_id].refresh_tokens.clear()

    # --- data model ------------------------------------------------------------------------
    def _field(self, sobject: str, name: str) -> FieldDef:
        found = self.schema[sobject].get(name.lower())
        if found is None:
            raise SoqlError(
                "INVALID_FIELD",
                f"No such column '{name}' on entity '{sobject}'. If you are attempting to use a "
                "custom field, be sure to append the '__c' after the custom field name. Please "
                "reference your WSDL or the describe call for the appropriate names.",
            )
        return found

    def _coerce(self, fdef: FieldDef, value: Any) -> Any:
        if value is None:
            return None
        if fdef.type == "datetime":
            value = _parse_datetime(value) if isinstance(value, str) else value
            return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        if fdef.type == "date":
            return dt.date.fromisoformat(value) if isinstance(value, str) else value
        if fdef.type == "boolean":
            if not isinstance(value, bool):
                raise SoqlError("INVALID_TYPE_ON_FIELD_IN_RECORD", f"{fdef.name}: not a boolean")
            return value
        if fdef.type in NUMBER_TYPES:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise SoqlError("INVALID_TYPE_ON_FIELD_IN_RECORD", f"{fdef.name}: not a number")
            return value
        return str(value)

    def _write(self, sobject: str, record: dict[str, Any], fields: dict[str, Any], *,
               system: bool) -> None:
        """Validate and apply ``fields``; ``system`` allows read-only fields (seeding)."""
        self._generation += 1
        staged = {}
        for name, value in fields.items():
            fdef = self._field(sobject, name)
            if not (system or fdef.updateable):
                raise SoqlError("INVALID_FIELD_FOR_INSERT_UPDATE",
                                f"Unable to create/update fields: {fdef.name}. Please check the "
                                "security settings of this field and verify that it is read/write "
                                "for your profile or permission set.")
            staged[fdef.name] = self._coerce(fdef, value)
        record.update(staged)
        if sobject == "Opportunity":
            self._stage_history(record)
            stage = record.get("StageName")
            record["IsWon"] = stage in self.won_stages
            record["IsClosed"] = stage in self.won_stages or stage in self.lost_stages
        if sobject in ("Contact", "Lead"):
            parts = (record.get("FirstName"), record.get("LastName"))
            record["Name"] = " ".join(p for p in parts if p) or None

    def _stage_history(self, opportunity: dict[str, Any]) -> None:
        """An OpportunityHistory row for the opportunity's stage, as Salesforce writes one."""
        history = self._records["OpportunityHistory"]
        last = max((h for h in history.values() if h["OpportunityId"] == opportunity["Id"]),
                   key=lambda h: h["CreatedDate"], default=None)
        if last is not None and last["StageName"] == opportunity["StageName"]:
            return
        record_id = _id_with_checksum(f"0085g{next(self._ids):010d}")
        now = self.stamp()
        history[record_id] = {
            "Id": record_id, "IsDeleted": False, "OpportunityId": opportunity["Id"],
            "StageName": opportunity["StageName"], "Amount": opportunity.get("Amount"),
            "CloseDate": opportunity.get("CloseDate"), "CreatedDate": now,
            "LastModifiedDate": now, "SystemModstamp": now,
        }

    def _resolve_path(self, sobject: str, path: str) -> tuple[str, FieldDef]:
        """Canonical dotted path and the final field; follows child-to-parent references."""
        parts = path.split(".")
        canonical, current = [], sobject
        for rel in parts[:-1]:
            ref = next((f for f in self.schema[current].values()
                        if (f.relationship_name or "").lower() == rel.lower()), None)
            if ref is None or ref.reference_to is None:
                raise SoqlError(
                    "INVALID_FIELD",
                    f"Didn't understand relationship '{rel}' in field path. If you are attempting "
                    "to use a custom relationship, be sure to append the '__r' after the custom "
                    "relationship name. Please reference your WSDL or the describe call for the "
                    "appropriate names.",
                )
            canonical.append(ref.relationship_name or "")
            current = ref.reference_to
        fdef = self._field(current, parts[-1])
        return ".".join([*canonical, fdef.name]), fdef

    def _value(self, sobject: str, record: dict[str, Any] | None, path: str) -> Any:
        for rel in path.split(".")[:-1]:
            if record is None:
                return None
            ref = next(f for f in self.schema[sobject].values() if f.relationship_name == rel)
            sobject = ref.reference_to or ""
            record = self._records[sobject].get(record.get(ref.name) or "")
        return None if record is None else record.get(path.split(".")[-1])

    # --- SOQL execution --------------------------------------------------------------------
    def _validate(self, query: Soql) -> dict[str, FieldDef]:
        if query.sobject.lower() not in {s.lower() for s in self.schema}:
            raise SoqlError("INVALID_TYPE", f"sObject type '{query.sobject}' is not supported.")
        query.sobject = next(s for s in self.schema if s.lower() == query.sobject.lower())
        types: dict[str, FieldDef] = {}

        def canon(path: str) -> str:
            name, fdef = self._resolve_path(query.sobject, path)
            types[name] = fdef
            return name

        query.fields = [canon(p) for p in query.fields]
        if len({p.lower() for p in query.fields}) != len(query.fields):
            raise SoqlError("MALFORMED_QUERY", "duplicate field selected")
        query.order = [(canon(p), desc, nulls) for p, desc, nulls in query.order]

        def check(node: Any) -> Any:
            if isinstance(node, BoolExpr):
                return BoolExpr(node.op, tuple(check(i) for i in node.items))
            path = canon(node.path)
            fdef = types[path]
            for lit in node.values:
                if lit.kind == "null" and node.op in ("=", "!="):
                    continue
                expected = _literal_kind(fdef.type)
                if lit.kind != expected:
                    quoted = "" if expected == "string" else " and should not be enclosed in quotes"
                    raise SoqlError("INVALID_FIELD", f"value of filter criterion for field "
                                    f"'{fdef.name}' must be of type {fdef.type}{quoted}")
            return Comparison(path, node.op, node.values)

        query.where = check(query.where) if query.where is not None else None
        return types

    def _matches(self, sobject: str, record: dict[str, Any], node: Any,
                 types: dict[str, FieldDef]) -> bool:
        if isinstance(node, BoolExpr):
            results = (self._matches(sobject, record, i, types) for i in node.items)
            if node.op == "NOT":
                return not next(results)
            return all(results) if node.op == "AND" else any(results)
        ftype = types[node.path].type
        value = self._value(sobject, record, node.path)
        left = None if value is None else _sort_key(ftype, value)
        rights = [None if v.value is None else _sort_key(ftype, v.value) for v in node.values]
        if node.op == "IN":
            return left is not None and left in rights
        if node.op == "NOT IN":
            return left is not None and left not in rights
        return _compare(node.op, left, rights[0])

    def _run(self, soql: str, include_deleted: bool) -> tuple[Soql, list[dict[str, Any]]]:
        query = parse_soql(soql)
        types = self._validate(query)
        candidates = self._candidates(query.sobject, query.where, types)
        rows = [r for r in candidates
                if (include_deleted or not r["IsDeleted"])
                and (query.where is None or self._matches(query.sobject, r, query.where, types))]
        for path, desc, nulls_first in reversed(query.order):
            ftype = types[path].type
            keyed = [(self._value(query.sobject, r, path), r) for r in rows]
            present = [kr for kr in keyed if kr[0] is not None]
            present.sort(key=lambda kr, t=ftype: _sort_key(t, kr[0]), reverse=desc)
            nulls = [kr for kr in keyed if kr[0] is None]
            rows = [r for _, r in (nulls + present if nulls_first else present + nulls)]
        return query, rows[: query.limit] if query.limit is not None else rows

    def _candidates(self, sobject: str, where: Any,
                    types: dict[str, FieldDef]) -> Iterable[dict[str, Any]]:
        """The records a WHERE can match, in insertion order: all of them, or, when the WHERE
        is (or ANDs) ``field = x`` / ``field IN (...)`` on a plain field, those the equality
        index finds for it. The caller still applies the whole WHERE to each."""
        records = self._records[sobject]
        nodes = where.items if isinstance(where, BoolExpr) and where.op == "AND" else (where,)
        usable = next((n for n in nodes if isinstance(n, Comparison) and n.op in ("=", "IN")
                       and "." not in n.path and all(v.value is not None for v in n.values)),
                      None)
        if usable is None:
            return records.values()
        ftype = types[usable.path].type
        index = self._index(sobject, usable.path, ftype)
        found: dict[int, dict[str, Any]] = {}
        for literal in usable.values:
            found.update(index.get(_sort_key(ftype, literal.value), ()))
        return [found[position] for position in sorted(found)]

    def _index(self, sobject: str, path: str, ftype: str) -> dict[Any, list[tuple[int, Any]]]:
        """``{comparison key of the field's value: [(insertion position, record)]}``."""
        cached = self._indexes.get((sobject, path))
        if cached is not None and cached[0] == self._generation:
            return cached[1]
        index: dict[Any, list[tuple[int, Any]]] = {}
        for position, record in enumerate(self._records[sobject].values()):
            value = record.get(path)
            if value is not None:
                index.setdefault(_sort_key(ftype, value), []).append((position, record))
        self._indexes[(sobject, path)] = (self._generation, index)
        return index

    def _render(self, sobject: str, record: dict[str, Any] | None, paths: list[str],
                version: str) -> dict[str, Any] | None:
        if record is None:
            return None
        out: dict[str, Any] = {"attributes": {
            "type": sobject, "url": f"/services/data/v{version}/sobjects/{sobject}/{record['Id']}"}}
        for path in paths:
            head, _, rest = path.partition(".")
            if not rest:
                out[head] = _json_value(record.get(head))
            elif head not in out:
                ref = next(f for f in self.schema[sobject].values() if f.relationship_name == head)
                target = ref.reference_to or ""
                sub = [p.partition(".")[2] for p in paths if p.startswith(head + ".")]
                parent = self._records[target].get(record.get(ref.name) or "")
                out[head] = self._render(target, parent, sub, version)
        return out

    # --- HTTP ------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        with self._lock:
            if request.path.rstrip("/") == "/services/oauth2/token" and request.method == "POST":
                return self._token(request)
            match = API_PREFIX.match(request.path.rstrip("/"))
            if match is None:
                return _sf_error(404, "NOT_FOUND", "The requested resource does not exist")
            auth = request.header("authorization") or ""
            if not auth.startswith("Bearer ") or auth[7:] not in self._sessions:
                return _sf_error(401, "INVALID_SESSION_ID", "Session expired or invalid")
            if self.api_usage >= self.api_limit:
                return _sf_error(403, "REQUEST_LIMIT_EXCEEDED",
                                 f"TotalRequests Limit exceeded. (limit {self.api_limit})")
            self.api_usage += 1
            limit_info = {"Sforce-Limit-Info": f"api-usage={self.api_usage}/{self.api_limit}"}
            try:
                response = self._route(request, match["version"], match["rest"] or "")
            except SoqlError as exc:
                response = _sf_error(400, exc.code, exc.message)
            except ValueError as exc:
                response = _sf_error(400, "JSON_PARSER_ERROR", str(exc))
            response.headers.update(limit_info)
            return response

    def _route(self, request: Request, version: str, rest: str) -> Response:
        parts = rest.split("/")
        method = request.method
        if parts[0] in ("query", "queryAll") and method == "GET":
            if len(parts) == 2:
                return self._query_more(parts[1], version)
            return self._query(request.query.get("q", ""), parts[0] == "queryAll", version,
                               request.header("sforce-query-options"))
        if parts == ["limits"]:
            return json_response(200, {
                "DailyApiRequests": {"Max": self.api_limit,
                                     "Remaining": max(self.api_limit - self.api_usage, 0)},
                "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000 - len(self._jobs)},
            })
        if parts[0] == "sobjects":
            return self._sobjects(request, parts[1:], version)
        if parts == ["composite", "sobjects"] and method == "PATCH":
            return self._composite_update(request.json() or {})
        if parts[:2] == ["jobs", "query"]:
            return self._bulk(request, parts[2:], version)
        return _sf_error(404, "NOT_FOUND", "The requested resource does not exist")

    def _query(self, soql: str, include_deleted: bool, version: str,
               options: str | None) -> Response:
        query, rows = self._run(soql, include_deleted)
        if query.count_only:
            return json_response(200, {"totalSize": len(rows), "done": True, "records": []})
        page = self.page_size
        batch = re.search(r"batchSize=(\d+)", options or "")
        if batch:
            page = min(page, max(200, int(batch.group(1))))
        records = [self._render(query.sobject, r, query.fields, version) for r in rows]
        cursor = _id_with_checksum(f"01g5g{next(self._ids):010d}")
        self._cursors[cursor] = (records, page)
        return self._page(cursor, 0, version)

    def _page(self, cursor: str, offset: int, version: str) -> Response:
        records, page = self._cursors[cursor]
        body: dict[str, Any] = {"totalSize": len(records), "done": offset + page >= len(records),
                                "records": records[offset : offset + page]}
        if not body["done"]:
            body["nextRecordsUrl"] = f"/services/data/v{version}/query/{cursor}-{offset + page}"
        else:
            del self._cursors[cursor]
        return json_response(200, body)

    def _query_more(self, locator: str, version: str) -> Response:
        cursor, _, offset = locator.partition("-")
        if cursor not in self._cursors or not offset.isdigit():
            return _sf_error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._page(cursor, int(offset), version)

    def _sobjects(self, request: Request, parts: list[str], version: str) -> Response:
        if not parts:
            return json_response(200, {"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": [
                {"name": name, "label": name, "custom": False, "queryable": True,
                 "updateable": True, "urls": {"describe": f"/services/data/v{version}/sobjects/"
                                                          f"{name}/describe"}}
                for name in self.schema]})
        sobject = parts[0]
        if sobject not in self.schema:
            return _sf_error(404, "NOT_FOUND", "The requested resource does not exist")
        if parts[1:] == ["describe"]:
            return json_response(200, {
                "name": sobject, "custom": False, "queryable": True, "updateable": True,
                "fields": [{"name": f.name, "type": f.type, "label": f.name,
                            "custom": f.name.endswith("__c"), "updateable": f.updateable,
                            "nillable": f.name != "Id", "referenceTo": [f.reference_to]
                            if f.reference_to else [], "relationshipName": f.relationship_name}
                           for f in self.schema[sobject].values()]})
        record = self._records[sobject].get(parts[1]) if len(parts) == 2 else None
        if record is None or record["IsDeleted"]:
            return _sf_error(404, "NOT_FOUND", "The requested resource does not exist")
        if request.method == "GET":
            names = [f.name for f in self.schema[sobject].values()]
            return json_response(200, self._render(sobject, record, names, version))
        if request.method == "PATCH":
            self._api_update(sobject, record, request.json() or {})
            return Response(204)
        return _sf_error(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{request.method}' not allowed")

    def _api_update(self, sobject: str, record: dict[str, Any], fields: dict[str, Any]) -> None:
        fields = {k: v for k, v in fields.items() if k != "attributes"}
        candidate = dict(record)
        self._write(sobject, candidate, fields, system=False)
        candidate["LastModifiedDate"] = candidate["SystemModstamp"] = self.stamp()
        record.update(candidate)
        self._generation += 1

    def _composite_update(self, body: dict[str, Any]) -> Response:
        records = body.get("records") or []
        if len(records) > 200:
            return _sf_error(400, "EXCEEDED_ID_LIMIT",
                             "record limit reached. cannot submit more than 200 records into this "
                             "call")
        results, staged = [], []
        for item in records:
            sobject = (item.get("attributes") or {}).get("type", "")
            record_id = item.get("id") or item.get("Id") or ""
            record = self._records.get(sobject, {}).get(record_id)
            error = None
            if record is None or record["IsDeleted"]:
                error = ("ENTITY_IS_DELETED" if record else "INVALID_CROSS_REFERENCE_KEY",
                         "entity is deleted" if record else "invalid cross reference id")
            elif sobject == "Lead" and record.get("IsConverted"):
                error = ("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead")
            else:
                fields = {k: v for k, v in item.items() if k not in ("attributes", "id", "Id")}
                candidate = dict(record)
                try:
                    self._write(sobject, candidate, fields, system=False)
                    staged.append((record, candidate))
                except SoqlError as exc:
                    error = (exc.code, exc.message)
            results.append({"id": record_id, "success": error is None, "errors": [] if not error
                            else [{"statusCode": error[0], "message": error[1], "fields": []}]})
        if body.get("allOrNone") and any(not r["success"] for r in results):
            for result in results:
                if result["success"]:
                    result.update(success=False, errors=[{
                        "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                        "message": "Record rolled back because not all records were valid and "
                                   "the request was using AllOrNone header", "fields": []}])
            return json_response(200, results)
        now = self.stamp()
        for record, candidate in staged:
            candidate["LastModifiedDate"] = candidate["SystemModstamp"] = now
            record.update(candidate)
        self._generation += 1
        return json_response(200, results)

    # --- Bulk API 2.0 query ----------------------------------------------------------------
    def _bulk(self, request: Request, parts: list[str], version: str) -> Response:
        if not parts and request.method == "POST":
            return self._bulk_create(request.json() or {}, version)
        job = self._jobs.get(parts[0]) if parts else None
        if job is None:
            return _sf_error(404, "NOT_FOUND", "The requested resource does not exist")
        if len(parts) == 1 and request.method == "GET":
            if job.polls_left > 0 and job.info["state"] == "UploadComplete":
                job.polls_left -= 1
                return json_response(200, {**job.info, "state": "InProgress"})
            if job.info["state"] == "UploadComplete":
                job.info["state"] = "JobComplete"
            return json_response(200, {**job.info, "numberRecordsProcessed": len(job.rows),
                                       "retries": 0, "totalProcessingTime": 0})
        if len(parts) == 1 and request.method == "DELETE":
            del self._jobs[parts[0]]
            return Response(204)
        if len(parts) == 1 and request.method == "PATCH":
            job.info["state"] = (request.json() or {}).get("state", job.info["state"])
            return json_response(200, job.info)
        if parts[1:] == ["results"] and request.method == "GET":
            return self._bulk_results(job, request.query)
        return _sf_error(404, "NOT_FOUND", "The requested resource does not exist")

    def _bulk_create(self, body: dict[str, Any], version: str) -> Response:
        operation = body.get("operation")
        if operation not in ("query", "queryAll"):
            return _sf_error(400, "INVALIDJOB", f"Invalid operation: {operation}")
        query, rows = self._run(body.get("query", ""), operation == "queryAll")
        if query.count_only:
            return _sf_error(400, "INVALIDJOB", "Aggregate queries are not supported")
        job_id = _id_with_checksum(f"7505g{next(self._ids):010d}")
        now = format_datetime(self.now())
        info = {"id": job_id, "operation": operation, "object": query.sobject,
                "createdById": self.user_id, "createdDate": now, "systemModstamp": now,
                "state": "UploadComplete", "concurrencyMode": "Parallel", "contentType": "CSV",
                "apiVersion": float(version), "lineEnding": body.get("lineEnding", "LF"),
                "columnDelimiter": body.get("columnDelimiter", "COMMA")}
        table = [[_csv_value(self._value(query.sobject, r, p)) for p in query.fields] for r in rows]
        self._jobs[job_id] = _QueryJob(info, query.fields, table, self.bulk_polls)
        return json_response(200, info)

    def _bulk_results(self, job: _QueryJob, params: dict[str, str]) -> Response:
        if job.info["state"] != "JobComplete":
            return _sf_error(400, "INVALIDJOB", f"Job {job.info['id']} is not complete")
        offset = int(base64.b64decode(params["locator"])) if params.get("locator") else 0
        max_records = int(params.get("maxRecords") or len(job.rows) or 1)
        chunk = job.rows[offset : offset + max_records]
        delimiter = {"COMMA": ",", "TAB": "\t", "PIPE": "|", "SEMICOLON": ";", "CARET": "^",
                     "BACKQUOTE": "`"}[job.info["columnDelimiter"]]
        out = io.StringIO()
        writer = csv.writer(out, delimiter=delimiter, quoting=csv.QUOTE_ALL,
                            lineterminator="\r\n" if job.info["lineEnding"] == "CRLF" else "\n")
        writer.writerow(job.columns)
        writer.writerows(chunk)
        end = offset + len(chunk)
        locator = base64.b64encode(str(end).encode()).decode() if end < len(job.rows) else "null"
        return Response(200, out.getvalue().encode(), {
            "Content-Type": "text/csv", "Sforce-Locator": locator,
            "Sforce-NumberOfRecords": str(len(chunk))})

    # --- OAuth -----------------------------------------------------------------------------
    def _token(self, request: Request) -> Response:
        form = {k: v[-1] for k, v in parse_qs(request.body.decode()).items()}
        basic = request.header("authorization") or ""
        if basic.startswith("Basic "):
            cid, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
            form.setdefault("client_id", cid)
            form.setdefault("client_secret", secret)
        grant = form.get("grant_type")

        def fail(error: str, description: str) -> Response:
            return json_response(400, {"error": error, "error_description": description})

        if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            try:
                claims = jwt.decode(form.get("assertion", ""), options={"verify_signature": False})
            except jwt.PyJWTError:
                return fail("invalid_grant", "invalid assertion")
            app = self._apps.get(str(claims.get("iss")))
            if app is None or app.jwt_public_key is None:
                return fail("invalid_client_id", "client identifier invalid")
            try:
                jwt.decode(form["assertion"], app.jwt_public_key, algorithms=["RS256"],
                           # never the My Domain host, though it issues the token
                           audience=["https://login.salesforce.com", "https://test.salesforce.com"],
                           options={"require": ["exp", "iss", "sub", "aud"]})
            except jwt.InvalidAudienceError:
                return fail("invalid_grant", "audience is invalid")
            except jwt.ExpiredSignatureError:
                return fail("invalid_grant", "expired authorization code")
            except jwt.PyJWTError:
                return fail("invalid_grant", "invalid assertion")
            if claims.get("sub") != app.username:
                return fail("invalid_grant", "user hasn't approved this consumer")
        else:
            app = self._apps.get(form.get("client_id", ""))
            if grant not in ("refresh_token", "client_credentials"):
                return fail("unsupported_grant_type", "grant type not supported")
            if app is None:
                return fail("invalid_client_id", "client identifier invalid")
            secret_required = grant == "client_credentials" or "client_secret" in form
            if secret_required and (app.client_secret is None
                                    or form.get("client_secret") != app.client_secret):
                return fail("invalid_client", "invalid client credentials")
            if grant == "refresh_token" and form.get("refresh_token") not in app.refresh_tokens:
                return fail("invalid_grant", "expired access/refresh token")
        issued = str(int(self.now().timestamp() * 1000))
        body = {
            "access_token": self.issue_session(), "instance_url": self.base_url,
            "id": f"{self.base_url}/id/{self.org_id}/{self.user_id}", "token_type": "Bearer",
            "issued_at": issued, "scope": "api refresh_token"}
        if grant == "refresh_token" and self.rotate_refresh_tokens:
            # Rotation (Salesforce help, "OAuth 2.0 Refresh Token Flow for Renewed
            # Sessions"): a new refresh token with each access token, the previous one
            # invalidated at once.
            app.refresh_tokens.discard(form["refresh_token"])
            body["refresh_token"] = f"5Aep{secrets.token_urlsafe(32)}"
            app.refresh_tokens.add(body["refresh_token"])
        return json_response(200, body)


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return format_datetime(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return str(_json_value(value))

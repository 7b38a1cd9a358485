"""Meta Conversions API transport through the facebook-business SDK.

Each transport has its own ``FacebookAdsApi`` over its own ``FacebookSession``: the SDK's
process-wide default api is never set and its crash reporter (``crash_log``) never enabled.
The request URL is ``graph_url`` + the request's endpoint, passed to ``api.call`` whole, so
the class attribute ``FacebookSession.GRAPH`` is never changed either.

The access token travels in the POST body, not the query string where the SDK puts it:
urllib3 logs request lines at DEBUG and requests' connection errors quote the URL.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import requests
from facebook_business.adobjects.adaccount import AdAccount
from facebook_business.api import FacebookAdsApi
from facebook_business.exceptions import FacebookRequestError
from facebook_business.session import FacebookSession
from pydantic import SecretStr

from revsync.config.destinations import MetaDestination as MetaConfig
from revsync.destinations.base import ApiRequest
from revsync.destinations.retry import (
    RejectedCall,
    RetryableCall,
    RetryPolicy,
    failure_outcomes,
    retry_after,
    scrub,
)
from revsync.domain import OutcomeStatus, UploadOutcome
from revsync.errors import PermanentError, TransientError

if TYPE_CHECKING:
    from revsync.checks import CheckResult

log = logging.getLogger(__name__)

#: Graph error codes worth retrying: unknown/service errors (1, 2) and throttling.
TRANSIENT_CODES = frozenset({1, 2, 4, 17, 32, 613})
INSIGHT_FIELDS = ("campaign_id", "campaign_name", "spend", "clicks", "impressions",
                  "account_currency")  # fmt: skip
#: Graph error codes about the access token or its permissions (102/190 invalid or expired
#: token, 10 and 200 permission denied): they say nothing about the rows.
CREDENTIAL_CODES = frozenset({"META_102", "META_190", "META_10", "META_200"})


class MetaApiTransport:
    """Sends ``MetaDestination`` request bodies to the Conversions API.

    Outcomes: a 2xx answer counting every event -> SENT for each row; a transient Graph
    error, HTTP 429/5xx or a network failure -> retried, then RETRY for each row; a refused
    token or permission (102, 190, 10, 200) -> ``PermanentError``: the destination stops and the
    job puts the rows back, to be sent once the token is fixed; any other Graph error (100
    invalid parameter, ...) -> REJECTED for each row with code ``META_<code>``: Meta
    refuses the whole batch for one bad event.

    With ``test_event_code`` the events land in Test Events only, so a success is
    VALIDATED with code ``TEST_EVENT``: the ledger keeps them due for a real send.
    """

    def __init__(
        self, config: MetaConfig, access_token: SecretStr, retry: RetryPolicy | None = None
    ) -> None:
        self.config = config
        self._token = access_token
        self._retry = retry or RetryPolicy()
        self._session = FacebookSession(timeout=config.timeout_seconds)
        self._api = FacebookAdsApi(self._session)

    def send(self, request: ApiRequest) -> list[UploadOutcome]:
        """Send one request. Meta refuses a whole batch for one bad event, so a refused
        batch is split in halves and resent until the bad events stand alone: the good
        ones still go through (resending is safe: Meta deduplicates on event_id)."""
        outcomes = self._send_once(request)
        keys = request.keys
        if len(keys) < 2 or not all(o.status is OutcomeStatus.REJECTED for o in outcomes):
            return outcomes
        half = len(keys) // 2
        events = request.body["data"]
        return [
            *self.send(replace(request, body={**request.body, "data": events[:half]},
                               keys=keys[:half])),
            *self.send(replace(request, body={**request.body, "data": events[half:]},
                               keys=keys[half:])),
        ]  # fmt: skip

    def _send_once(self, request: ApiRequest) -> list[UploadOutcome]:
        url = self.config.graph_url.rstrip("/") + request.endpoint
        # The sync SDK's wire format: ``data`` is a JSON array of JSON-encoded events.
        params = {**request.body, "data": [json.dumps(e) for e in request.body["data"]]}
        try:
            answer = self._retry.call(
                lambda: self._post(url, params), f"meta destination {self.config.name!r}"
            )
        except (RetryableCall, RejectedCall) as error:
            if error.code in CREDENTIAL_CODES:
                raise PermanentError(
                    f"destination {self.config.name!r}: Meta refused the access token "
                    f"({error.code}: {error}); set a valid REVSYNC_META_ACCESS_TOKEN with "
                    "access to the pixel"
                ) from None
            return failure_outcomes(request.keys, error)
        received = answer.get("events_received")
        log.debug(
            "meta %s: %s of %d events received (fbtrace_id %s)",
            self.config.name, received, len(request.keys), answer.get("fbtrace_id"),
        )  # fmt: skip
        if received != len(request.keys):
            message = f"Meta acknowledged {received} of {len(request.keys)} events; resending"
            return [
                UploadOutcome(key, OutcomeStatus.RETRY, "META_PARTIAL", message)
                for key in request.keys
            ]
        if "test_event_code" in request.body:
            message = "received into Test Events only; not sent for real"
            return [
                UploadOutcome(key, OutcomeStatus.VALIDATED, "TEST_EVENT", message)
                for key in request.keys
            ]
        return [UploadOutcome(key, OutcomeStatus.SENT) for key in request.keys]

    def check(self) -> Iterator[CheckResult]:
        """``revsync doctor``: the token reads the pixel (dataset): ``GET /{pixel_id}``."""
        from revsync.checks import fail, ok, skip, warn

        config = self.config
        url = f"{config.graph_url.rstrip('/')}/{config.api_version}/{config.pixel_id}"
        token = self._token.get_secret_value()
        try:  # the token goes in a header: a GET's params end up in the URL
            answer = self._api.call(
                "GET",
                url,
                params={"fields": "id,name"},
                headers={"Authorization": f"Bearer {token}"},
            ).json()
        except FacebookRequestError as error:
            problem = self._graph_error(error)
            if error.api_error_code() in (102, 190):
                yield fail("credentials", f"{problem.code}: {problem}")
                yield skip("pixel", "not checked without a working access token")
            else:
                yield ok("credentials", "access token accepted")
                yield fail("pixel", f"{config.pixel_id} not reachable: {problem.code}: {problem}")
            return
        except requests.RequestException as error:
            yield fail("credentials", scrub(f"{type(error).__name__} reaching {url}", token))
            return
        yield ok("credentials", "access token accepted")
        name = answer.get("name") if isinstance(answer, dict) else None
        yield ok("pixel", f"{config.pixel_id} ({name or 'no name'}) reachable with this token")
        if config.test_event_code:
            yield warn("test events", "test_event_code is set: events go to Test Events only")

    def insights(self, account_id: str, since: str, until: str) -> Iterator[dict[str, Any]]:
        """Daily campaign insights of ``act_<account_id>`` from ``since`` to ``until``
        (``YYYY-MM-DD``, the account's days), every page (the SDK follows the ``after``
        cursor). The token goes in a header: a GET's params end up in the URL."""
        session = FacebookSession(timeout=self.config.timeout_seconds)
        session.GRAPH = self.config.graph_url.rstrip("/")
        session.requests.headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        api = FacebookAdsApi(session, api_version=self.config.api_version)
        params = {"level": "campaign", "time_increment": 1, "limit": 500,
                  "time_range": {"since": since, "until": until}}  # fmt: skip
        try:
            cursor = AdAccount(f"act_{account_id}", api=api).get_insights(
                fields=list(INSIGHT_FIELDS), params=params
            )
            for row in cursor:
                yield dict(row.export_all_data())
        except FacebookRequestError as error:
            problem = self._graph_error(error)
            text = f"Meta insights of act_{account_id}: {problem.code}: {problem}"
            if isinstance(problem, RetryableCall):
                raise TransientError(text) from None
            raise PermanentError(text) from None
        except requests.RequestException as error:
            where = self.config.graph_url
            raise TransientError(f"{type(error).__name__} reaching {where}") from None
        finally:
            session.requests.close()

    def close(self) -> None:
        self._session.requests.close()

    def _post(self, url: str, params: dict[str, Any]) -> dict[str, Any]:
        token = self._token.get_secret_value()
        try:
            response = self._api.call("POST", url, params={**params, "access_token": token})
        except FacebookRequestError as error:
            raise self._graph_error(error) from None
        except requests.RequestException as error:
            message = scrub(f"{type(error).__name__} reaching {self.config.graph_url}", token)
            raise RetryableCall("META_NETWORK", message) from None
        answer = response.json()
        return answer if isinstance(answer, dict) else {}

    def _graph_error(self, error: FacebookRequestError) -> RetryableCall | RejectedCall:
        """Classify a Graph error from its parsed fields (its text quotes the whole request)."""
        body = error.body()
        detail = body.get("error") if isinstance(body, dict) else None
        detail = detail if isinstance(detail, dict) else {}
        status = error.http_status()
        code = error.api_error_code()
        parts = [f"HTTP {status}", str(error.api_error_message() or "no Graph error body")]
        if error.api_error_subcode() is not None:
            parts.append(f"subcode {error.api_error_subcode()}")
        if detail.get("error_user_msg"):
            parts.append(str(detail["error_user_msg"]))
        if detail.get("fbtrace_id"):
            parts.append(f"fbtrace_id {detail['fbtrace_id']}")
        message = scrub("; ".join(parts), self._token.get_secret_value())
        ledger_code = f"META_{code}" if code is not None else f"META_HTTP_{status}"
        transient = (
            bool(error.api_transient_error())
            or code in TRANSIENT_CODES
            or status == 429
            or (isinstance(status, int) and status >= 500)
        )
        if transient:
            headers = error.http_headers() or {}
            return RetryableCall(ledger_code, message, retry_after(headers.get("Retry-After")))
        return RejectedCall(ledger_code, message)

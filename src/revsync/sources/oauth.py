"""OAuth 2 access tokens for CRM APIs: refresh token, JWT bearer and client credentials.

Every request goes through a ``requests.Session`` made by :func:`http_session`: it trusts
the configured CA bundle (``trust_env`` off, so ``REQUESTS_CA_BUNDLE`` cannot override it)
and applies a default timeout. Errors never carry a credential: a refused grant is a
``PermanentError`` with the endpoint's error code, a 5xx or network failure a
``TransientError``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import requests
from requests.adapters import HTTPAdapter

from revsync.errors import ConfigError, PermanentError, TransientError

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


class GrantRefused(PermanentError):
    """The token endpoint refused the grant; ``code`` is its OAuth ``error``
    (``invalid_grant``: the refresh token, assertion or code is expired or revoked)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class _TimeoutAdapter(HTTPAdapter):
    """Applies a default timeout to requests sent without one."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float | None, float | None] | None = None,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        proxies: dict[str, str] | None = None,
    ) -> requests.Response:
        return super().send(
            request, stream, self.timeout if timeout is None else timeout, verify, cert, proxies
        )


def http_session(ca_bundle: Path | None, timeout: float) -> requests.Session:
    """A session that verifies TLS against ``ca_bundle`` (default: certifi)."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(ca_bundle) if ca_bundle else True
    adapter = _TimeoutAdapter(timeout)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def refresh_token_grant(
    session: requests.Session,
    token_url: str,
    client_id: str,
    client_secret: str | None,
    refresh_token: str,
) -> dict[str, Any]:
    """Exchange a refresh token; the client secret is optional (PKCE apps have none).

    With refresh-token rotation on, the answer carries a new ``refresh_token`` and the one
    sent is dead: keep the new one (:mod:`revsync.sources.refresh_tokens`)."""
    form = {"grant_type": "refresh_token", "client_id": client_id, "refresh_token": refresh_token}
    if client_secret:
        form["client_secret"] = client_secret
    return _token(session, token_url, form)


def client_credentials_grant(
    session: requests.Session, token_url: str, client_id: str, client_secret: str
) -> dict[str, Any]:
    form = {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": client_secret,
    }
    return _token(session, token_url, form)


def jwt_bearer_grant(
    session: requests.Session,
    token_url: str,
    client_id: str,
    subject: str,
    private_key: str,
    audience: str | None = None,
    lifetime_seconds: int = 180,
) -> dict[str, Any]:
    """Sign an RS256 assertion (iss = client id, sub = user) and exchange it.

    ``audience`` defaults to Salesforce's login host, whatever host issues the token (a My
    Domain too): ``https://test.salesforce.com`` for a sandbox (test.salesforce.com or a
    ``*.sandbox.my.salesforce.com`` token URL), else ``https://login.salesforce.com``.
    A key pasted into an environment variable with literal ``\\n`` is accepted.
    """
    if audience is None:
        host = (urlsplit(token_url).hostname or "").lower()
        sandbox = host == "test.salesforce.com" or host.endswith(".sandbox.my.salesforce.com")
        audience = f"https://{'test' if sandbox else 'login'}.salesforce.com"
    claims = {
        "iss": client_id,
        "sub": subject,
        "aud": audience,
        "exp": int(time.time()) + lifetime_seconds,
    }
    try:
        assertion = jwt.encode(claims, private_key.replace("\\n", "\n"), algorithm="RS256")
    except (ValueError, TypeError, jwt.PyJWTError):
        raise ConfigError("the JWT private key is not a PEM-encoded RSA private key") from None
    return _token(session, token_url, {"grant_type": JWT_BEARER, "assertion": assertion})


def _token(session: requests.Session, token_url: str, form: dict[str, str]) -> dict[str, Any]:
    grant = form["grant_type"].rsplit(":", 1)[-1]
    try:
        response = session.post(token_url, data=form, headers={"Accept": "application/json"})
    except requests.RequestException as exc:
        raise TransientError(
            f"token endpoint {token_url} unreachable: {type(exc).__name__}"
        ) from None
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code >= 500 or response.status_code == 429:
        raise TransientError(f"token endpoint {token_url} answered HTTP {response.status_code}")
    if response.status_code != 200 or not isinstance(body, dict) or not body.get("access_token"):
        error = body.get("error", "no access token") if isinstance(body, dict) else "bad body"
        detail = body.get("error_description", "") if isinstance(body, dict) else ""
        raise GrantRefused(
            f"{grant} grant refused by {token_url} (HTTP {response.status_code}): {error}"
            + (f" ({detail})" if detail else ""),
            str(error),
        )
    return body

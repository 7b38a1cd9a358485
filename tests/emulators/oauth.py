"""An OAuth 2 token endpoint emulator that other emulators use to check bearer tokens.

Grants: ``refresh_token`` (client id + secret + refresh token), ``client_credentials``
(client id + secret in the body or HTTP Basic) and ``urn:ietf:params:oauth:grant-type:
jwt-bearer`` (an RS256/ES256 assertion signed by a registered issuer key, not expired).
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tests.emulators.loopback import LoopbackServer, Response

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


class TokenStatus(enum.Enum):
    """What a resource server learns about a presented bearer token."""

    VALID = "valid"
    EXPIRED = "expired"
    INVALID = "invalid"


class OAuthError(Exception):
    """A token request the endpoint refuses with HTTP 400 and ``{"error": code}``."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class OAuthEmulator(LoopbackServer):
    """A plain-HTTP token endpoint on 127.0.0.1 that issues and remembers access tokens.

    ``clients`` maps client id to secret, ``refresh_tokens`` maps refresh token to the
    client id it was issued to, ``jwt_issuers`` maps an assertion's ``iss`` to its PEM
    public key. ``extra_fields`` are added to every token response (e.g. Salesforce's
    ``instance_url``). Tokens live ``expires_in`` seconds, or until :meth:`expire_tokens`.
    """

    methods = ("POST",)

    def __init__(
        self,
        *,
        clients: Mapping[str, str] | None = None,
        refresh_tokens: Mapping[str, str] | None = None,
        jwt_issuers: Mapping[str, bytes] | None = None,
        expires_in: int = 3600,
        path: str = "/token",
        extra_fields: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.clients = dict(clients or {"test-client": "test-secret"})
        self.refresh_tokens = dict(refresh_tokens or {"test-refresh": "test-client"})
        self.jwt_issuers = dict(jwt_issuers or {})
        self.expires_in = expires_in
        self.path = path
        self.extra_fields = dict(extra_fields or {})
        self.issued: list[str] = []
        self._expiry: dict[str, float] = {}

    @property
    def token_url(self) -> str:
        """The endpoint clients post token requests to."""
        return f"{self._origin}{self.path}"

    def expire_tokens(self) -> None:
        """Expire every token issued so far: clients must fetch a new one."""
        with self._lock:
            for token in self._expiry:
                self._expiry[token] = 0.0

    def token_status(self, token: str) -> TokenStatus:
        """Whether ``token`` was issued here and is still live."""
        with self._lock:
            expiry = self._expiry.get(token)
        if expiry is None:
            return TokenStatus.INVALID
        return TokenStatus.VALID if time.time() < expiry else TokenStatus.EXPIRED

    def bearer_status(self, authorization: str | None) -> TokenStatus:
        """Check an ``authorization`` header value of the form ``Bearer <token>``."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return TokenStatus.INVALID
        return self.token_status(token.strip())

    def respond(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        if target.split("?")[0] != self.path:
            return _reply(404, {"error": "not_found"})
        form = dict(parse_qsl(body.decode()))
        try:
            self._authorize(form, headers.get("authorization"))
        except OAuthError as error:
            return _reply(400, {"error": error.code})
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._expiry[token] = time.time() + self.expires_in
            self.issued.append(token)
        issued = {"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in}
        return _reply(200, {**issued, **self.extra_fields})

    def _authorize(self, form: dict[str, str], basic: str | None) -> None:
        grant = form.get("grant_type")
        if grant == "refresh_token":
            self._check_client(form.get("client_id"), form.get("client_secret"))
            if self.refresh_tokens.get(form.get("refresh_token", "")) != form["client_id"]:
                raise OAuthError("invalid_grant")
        elif grant == "client_credentials":
            client_id, client_secret = form.get("client_id"), form.get("client_secret")
            if client_id is None and basic and basic.startswith("Basic "):
                try:
                    pair = base64.b64decode(basic[6:], validate=True).decode()
                except (binascii.Error, UnicodeDecodeError):
                    raise OAuthError("invalid_grant") from None
                client_id, _, client_secret = pair.partition(":")
            self._check_client(client_id, client_secret)
        elif grant == JWT_BEARER:
            self._check_assertion(form.get("assertion", ""))
        else:
            raise OAuthError("unsupported_grant_type")

    def _check_client(self, client_id: str | None, client_secret: str | None) -> None:
        known = self.clients.get(client_id or "")
        if known is None or not secrets.compare_digest(known, client_secret or ""):
            raise OAuthError("invalid_grant")

    def _check_assertion(self, assertion: str) -> None:
        try:
            header_b64, claims_b64, signature_b64 = assertion.split(".")
            header = json.loads(_b64url(header_b64))
            claims = json.loads(_b64url(claims_b64))
            signature = _b64url(signature_b64)
            pem = self.jwt_issuers.get(claims["iss"])
            live = float(claims["exp"]) > time.time()
        except (ValueError, TypeError, KeyError, binascii.Error):
            raise OAuthError("invalid_grant") from None
        if pem is None or not live or not isinstance(header, dict):
            raise OAuthError("invalid_grant")
        key = serialization.load_pem_public_key(pem)
        signed = f"{header_b64}.{claims_b64}".encode()
        try:
            if header.get("alg") == "RS256" and isinstance(key, rsa.RSAPublicKey):
                key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
            elif header.get("alg") == "ES256" and isinstance(key, ec.EllipticCurvePublicKey):
                r, s = (int.from_bytes(signature[i : i + 32], "big") for i in (0, 32))
                key.verify(encode_dss_signature(r, s), signed, ec.ECDSA(hashes.SHA256()))
            else:
                raise OAuthError("invalid_grant")
        except InvalidSignature:
            raise OAuthError("invalid_grant") from None


def _reply(status: int, body: dict[str, Any]) -> Response:
    headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
    return Response(status, json.dumps(body).encode(), headers)


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

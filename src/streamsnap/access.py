"""Who may do what: access tokens, the Origin allow-list and the backend's authorization hooks.

Everything here is off unless configured: with no `auth_secret` every session may publish
and take snapshots, with no `allowed_origins` any page may connect, with no `backend_url`
no backend is asked. The WebSocket shell and the REST API ask this module before they let
an action reach the session or the media; a refusal is answered "Restricted access".

Access tokens are JWTs signed with HS256 by whoever holds `auth_secret` (the application's
backend, or any JWT library). Claims streamsnap reads:

- `rights`: a list of "publish", "snapshot", "manage", "pull" and/or "metrics" (missing: no
  rights); "manage" allows ending streams through the REST API (`/rest-api/stream/terminate`),
  "metrics" reading `/metrics`;
- `streams`: optional list of stream names, exact or shell-style patterns (`cam-*`), the rights
  apply to; missing: every stream; `[]`: none;
- `sub`, `exp`, `nbf`, `iss`: as JWT defines them. `exp` is required unless `auth_allow_no_exp`
  is set, and checked again at every use of the grant (publish, snapshot, REST), not only when
  the token is first shown; `sub` is the subject whose quotas the token counts against.
"""

from __future__ import annotations

import asyncio
import enum
import fnmatch
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt

from streamsnap.config import BackendSettings

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Streamsnap-Signature"
"Header carrying `sha256=<hex HMAC of the body>` on backend requests, when `backend_secret` is set."


class Right(enum.StrEnum):
    """What a token can allow."""

    PUBLISH = "publish"
    SNAPSHOT = "snapshot"
    MANAGE = "manage"
    PULL = "pull"
    "Start pulling a camera (an rtsp:// stream name, REST `/rest-api/rtsp/startup`)."
    METRICS = "metrics"
    "Read `/metrics` (per-stream series only of the streams the token covers)."


class HookEvent(enum.StrEnum):
    """Events the backend is asked about (WCS's REST hook names)."""

    CONNECT = "connect"
    PUBLISH_STREAM = "publishStream"
    SNAPSHOT = "snapshot"


class AccessDenied(Exception):
    """An action is refused; `detail` says why, for the log (clients are told only that access is restricted)."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"access denied: {detail}")
        self.detail = detail


class NotAuthenticated(AccessDenied):
    """The caller showed no valid token (HTTP answers 401 to this, 403 to other refusals)."""


@dataclass(frozen=True)
class Grant:
    """The rights one session (or REST caller) holds."""

    rights: frozenset[Right]
    "What it may do."
    streams: tuple[str, ...] | None = None
    "Names or name patterns the rights cover; None: every stream; empty: none."
    subject: str | None = None
    "The token's `sub`, for logs and per-subject quotas."
    expires: float | None = None
    "The token's `exp` (Unix time); None: it does not expire."

    def expired(self, now: float | None = None) -> bool:
        """Whether the token this grant came from has expired (at `now`, Unix time; default: now)."""
        return self.expires is not None and (time.time() if now is None else now) >= self.expires

    def allows(self, right: Right, stream: str) -> bool:
        """Whether `right` may be used on stream `stream`."""
        if right not in self.rights:
            return False
        return self.covers(stream)

    def covers(self, stream: str) -> bool:
        """Whether stream `stream` is within the grant's name patterns."""
        if self.streams is None:
            return True
        return any(stream == pattern or fnmatch.fnmatchcase(stream, pattern) for pattern in self.streams)

    def sees(self, stream: str) -> bool:
        """Whether the holder may know that `stream` exists (some right covers it); listings hide the rest."""
        return bool(self.rights) and self.covers(stream)


OPEN_GRANT = Grant(frozenset(Right))
"What everyone holds when access control is off."


class TokenPolicy:
    """Checks access tokens against the configured secret; with no secret everyone is allowed everything."""

    def __init__(self, secret: str, *, issuer: str = "", allow_no_exp: bool = False) -> None:
        self.secret = secret
        self.issuer = issuer
        self.allow_no_exp = allow_no_exp
        "Accept tokens without `exp` (by default they are refused: they would be valid forever)."

    @property
    def enabled(self) -> bool:
        """Whether tokens are required."""
        return bool(self.secret)

    def grant(self, token: str | None) -> Grant:
        """The rights `token` gives; raises `AccessDenied` when it is missing or invalid."""
        if not self.enabled:
            return OPEN_GRANT
        if not token:
            raise NotAuthenticated("no access token")
        try:
            claims = jwt.decode(
                token, self.secret, algorithms=["HS256"],
                options={"require": ["rights"] if self.allow_no_exp else ["rights", "exp"]},
                issuer=self.issuer or None,
            )
        except jwt.PyJWTError as exc:
            raise NotAuthenticated(f"invalid access token ({exc})") from None
        return _grant_of(claims)

    def issue(self, rights: Sequence[Right | str], *, streams: Sequence[str] = (), subject: str | None = None,
              ttl: float | None = 3600.0) -> str:
        """A token with `rights` on `streams` (for the application's backend, the CLI and tests)."""
        if not self.enabled:
            raise ValueError("no auth_secret configured")
        claims: dict[str, Any] = {"rights": [str(Right(r)) for r in rights], "iat": int(time.time())}
        if streams:
            claims["streams"] = list(streams)
        if subject is not None:
            claims["sub"] = subject
        if ttl is not None:
            claims["exp"] = int(time.time() + ttl)
        if self.issuer:
            claims["iss"] = self.issuer
        return jwt.encode(claims, self.secret, algorithm="HS256")

    def bearer(self, authorization: str | None) -> Grant:
        """The rights of an HTTP `Authorization: Bearer <token>` header (for the REST API)."""
        if not self.enabled:
            return OPEN_GRANT
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthenticated("no bearer token")
        return self.grant(token.strip())


def _grant_of(claims: Mapping[str, Any]) -> Grant:
    rights_claim = claims.get("rights")
    streams_claim = claims.get("streams")
    if not isinstance(rights_claim, list) or not all(isinstance(r, str) for r in rights_claim):
        raise NotAuthenticated("`rights` must be a list of strings")
    if streams_claim is not None and (
            not isinstance(streams_claim, list) or not all(isinstance(s, str) for s in streams_claim)):
        raise NotAuthenticated("`streams` must be a list of strings")
    known = {right.value for right in Right}
    rights = frozenset(Right(r) for r in rights_claim if r in known)
    subject = claims.get("sub")
    expires = claims.get("exp")
    return Grant(rights, None if streams_claim is None else tuple(streams_claim),
                 subject if isinstance(subject, str) else None,
                 float(expires) if isinstance(expires, int | float) else None)


def origin_allowed(origin: str | None, allowed: Sequence[str]) -> bool:
    """Whether a WebSocket from a page at `origin` may connect.

    An empty list or "*" allows every origin. Clients that send no Origin (not browsers)
    are allowed: the header protects browsers' users from other sites' pages, and any
    other client can forge it anyway; tokens are the access control for those.
    """
    if not allowed or "*" in allowed or origin is None:
        return True
    return origin.rstrip("/").lower() in {a.rstrip("/").lower() for a in allowed}


def sign(secret: str, body: bytes) -> str:
    """The signature header value of a backend request body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signed_json_request(secret: str, payload: Mapping[str, Any]) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a JSON POST the server makes to an application (hooks, thumbnail webhooks).

    The body is signed as the backend hooks' are (`X-Streamsnap-Signature: sha256=<hex HMAC>`)
    when `secret` is set, so that the receiver can tell it from a forged one.
    """
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, body)
    return body, headers


def signature_valid(secret: str, body: bytes, header: str | None) -> bool:
    """Whether `header` is the signature of `body` (for backends written in Python, and tests)."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)


class BackendHooks:
    """POSTs authorization events to the application's backend, the WCS way.

    200 allows the action, 403 (or any other 4xx) refuses it; with `fail_open` off (the
    default) a timeout, an unreachable backend or a 5xx refuses it too.
    """

    def __init__(self, settings: BackendSettings) -> None:
        self.settings = settings
        self._http: aiohttp.ClientSession | None = None

    @property
    def enabled(self) -> bool:
        """Whether a backend is configured."""
        return bool(self.settings.url)

    async def authorize(self, event: HookEvent, fields: Mapping[str, Any]) -> None:
        """Ask the backend about `event`; raises `AccessDenied` when it refuses."""
        if not self.enabled:
            return
        body, headers = signed_json_request(self.settings.secret,
                                            {"event": str(event), "timestamp": int(time.time()), **fields})
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession()
        try:
            async with asyncio.timeout(self.settings.timeout):
                # A redirect is an answer, not an allowance: following it would send the signed
                # request (and the client's details) wherever the redirect points.
                async with self._http.post(self.settings.url, data=body, headers=headers,
                                           allow_redirects=False) as response:
                    status = response.status
                    await response.read()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            logger.warning("backend hook %s: no answer (%s)", event, exc or type(exc).__name__)
            if self.settings.fail_open:
                return
            raise AccessDenied(f"backend did not answer {event}") from None
        if status == 200:
            return
        if status >= 500 and self.settings.fail_open:
            logger.warning("backend hook %s: status %d, allowed (fail open)", event, status)
            return
        raise AccessDenied(f"backend answered {status} to {event}")

    async def close(self) -> None:
        """Close the HTTP client."""
        if self._http is not None:
            await self._http.close()
            self._http = None


@dataclass
class AccessControl:
    """Every access check the server makes, in one place."""

    tokens: TokenPolicy
    hooks: BackendHooks
    allowed_origins: tuple[str, ...] = ()

    async def connect(self, token: str | None, fields: Mapping[str, Any]) -> Grant:
        """Check a new session's token and ask the backend; raises `AccessDenied`."""
        grant = self.tokens.grant(token)
        await self.hooks.authorize(HookEvent.CONNECT, fields)
        return grant

    async def allow(self, grant: Grant, right: Right, stream: str, fields: Mapping[str, Any]) -> None:
        """Check `right` on `stream` against the grant, then the backend; raises `AccessDenied`."""
        if grant.expired():
            raise NotAuthenticated("access token expired")
        if not grant.allows(right, stream):
            raise AccessDenied(f"no {right} right on {stream!r}")
        event = _HOOK_OF.get(right)
        if event is not None:
            await self.hooks.authorize(event, fields)


_HOOK_OF = {Right.PUBLISH: HookEvent.PUBLISH_STREAM, Right.SNAPSHOT: HookEvent.SNAPSHOT}
"The backend event asked before using a right (WCS has no hook for REST terminate)."

"""Signed session cookies and CSRF tokens for the web pages.

The cookie holds who signed in (user and role, never the key), a CSRF token and the time of
the last request, signed with HMAC-SHA256 so that a browser cannot change it. Nothing is kept
on the server, so a session works on any worker that has the same secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, replace

from api.auth import ApiKeys, ApiUser, Role

COOKIE_NAME = "ledger_session"


@dataclass(frozen=True)
class WebConfig:
    secret: bytes
    idle_seconds: int
    # True when no secret was configured: sessions end with the process and do not span
    # workers (each worker would make its own).
    secret_generated: bool = False

    @classmethod
    def from_setting(cls, secret: str, idle_minutes: int) -> WebConfig:
        if secret:
            return cls(secret.encode(), idle_minutes * 60)
        return cls(secrets.token_bytes(32), idle_minutes * 60, secret_generated=True)


@dataclass(frozen=True)
class Session:
    csrf_token: str
    last_seen_s: int
    user: ApiUser | None = None
    # The session of a signed-in user that ran out of time, to say so on the sign-in page.
    expired: bool = False

    @classmethod
    def fresh(cls, expired: bool = False) -> Session:
        return cls(secrets.token_urlsafe(24), int(time.time()), expired=expired)

    def signed_in(self, user: ApiUser) -> Session:
        """A new CSRF token on sign-in, so a token seen before it is of no use after."""
        return Session(secrets.token_urlsafe(24), int(time.time()), user)

    def touched(self) -> Session:
        return replace(self, last_seen_s=int(time.time()), expired=False)

    def csrf_ok(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token.encode(), token.encode())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode(session: Session, config: WebConfig) -> str:
    fields = {"c": session.csrf_token, "t": session.last_seen_s}
    if session.user is not None:
        fields |= {"u": session.user.name, "r": session.user.role.value}
    payload = _b64(json.dumps(fields, separators=(",", ":")).encode())
    return f"{payload}.{_signature(payload, config)}"


def decode(cookie: str | None, config: WebConfig, keys: ApiKeys) -> Session:
    """The session a cookie holds; a fresh one when it is missing, forged, idle too long, or
    its user's key is no longer configured."""
    if not cookie or "." not in cookie:
        return Session.fresh()
    payload, _, signature = cookie.partition(".")
    if not hmac.compare_digest(signature, _signature(payload, config)):
        return Session.fresh()
    try:
        fields = json.loads(_unb64(payload))
        user = keys.known(fields["u"], Role(fields["r"])) if "u" in fields else None
        if "u" in fields and user is None:
            # The user's key was removed since they signed in.
            return Session.fresh()
        session = Session(str(fields["c"]), int(fields["t"]), user)
    except (ValueError, KeyError, TypeError):
        return Session.fresh()
    if time.time() - session.last_seen_s > config.idle_seconds:
        return Session.fresh(expired=user is not None)
    return session.touched()


def _signature(payload: str, config: WebConfig) -> str:
    return _b64(hmac.new(config.secret, payload.encode(), hashlib.sha256).digest())

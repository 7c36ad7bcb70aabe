"""Session cookies: signed, idle time-out, a removed key ends the session (no database)."""

from __future__ import annotations

import time
from dataclasses import replace

from api.auth import ApiKeys, ApiUser, Role
from web import sessions
from web.sessions import Session, WebConfig

CONFIG = WebConfig(b"secret-for-tests", idle_seconds=60)
JO = ApiUser("jo", Role.OFFICER)
KEYS = ApiKeys({"jo-token-0123456789": JO})


def test_a_signed_session_reads_back_with_its_user_and_token() -> None:
    session = Session.fresh().signed_in(JO)
    read = sessions.decode(sessions.encode(session, CONFIG), CONFIG, KEYS)
    assert read.user == JO and read.csrf_ok(session.csrf_token)
    assert not read.csrf_ok("") and not read.csrf_ok(None)


def test_signing_in_changes_the_csrf_token() -> None:
    anonymous = Session.fresh()
    assert anonymous.signed_in(JO).csrf_token != anonymous.csrf_token


def test_a_changed_cookie_or_another_secret_gives_a_fresh_anonymous_session() -> None:
    cookie = sessions.encode(Session.fresh().signed_in(JO), CONFIG)
    payload, signature = cookie.split(".")
    admin = sessions.encode(Session.fresh().signed_in(ApiUser("jo", Role.SUPERVISOR)), CONFIG)
    for forged in (
        f"{admin.split('.')[0]}.{signature}",
        f"{payload}.{signature[:-2]}xx",
        "not a cookie",
        "",
    ):
        assert sessions.decode(forged, CONFIG, KEYS).user is None
    other = WebConfig(b"another-secret", 60)
    assert sessions.decode(cookie, other, KEYS).user is None


def test_an_idle_session_ends_and_says_so() -> None:
    old = replace(Session.fresh().signed_in(JO), last_seen_s=int(time.time()) - 61)
    read = sessions.decode(sessions.encode(old, CONFIG), CONFIG, KEYS)
    assert read.user is None and read.expired


def test_a_session_ends_when_its_users_key_is_removed() -> None:
    cookie = sessions.encode(Session.fresh().signed_in(JO), CONFIG)
    assert sessions.decode(cookie, CONFIG, ApiKeys({})).user is None


def test_a_session_takes_the_users_limits_as_configured_now() -> None:
    cookie = sessions.encode(Session.fresh().signed_in(JO), CONFIG)
    limited = ApiKeys.parse("jo:officer@HOUSING:jo-token-0123456789")
    assert sessions.decode(cookie, CONFIG, limited).user.fund_groups == {"HOUSING"}


def test_without_a_secret_each_process_makes_its_own() -> None:
    first = WebConfig.from_setting("", 30)
    assert first.secret_generated and len(first.secret) == 32
    assert first.secret != WebConfig.from_setting("", 30).secret
    assert WebConfig.from_setting("configured", 30) == WebConfig(b"configured", 1800)

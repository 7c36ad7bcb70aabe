"""The web pages' wiring: routes, templates, static files, and the pages for refusals.

Pages live under /web/ (the API owns the other paths); `/` leads to the dashboard.
"""

from __future__ import annotations

import inspect
import logging
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import problems
from api.auth import READERS, STAFF, SUPERVISORS, ApiUser, Role
from api.request_context import current_request_id
from api.services import Services
from application.outages import DATABASE_UNAVAILABLE_ERRORS, DatabaseUnavailable, Delay, delay_of
from domain.errors import LedgerError
from domain.money import pounds_text
from web import sessions
from web.sessions import COOKIE_NAME, Session, WebConfig
from web.sign_in_limits import SignInLimits

HERE = Path(__file__).parent
PREFIX = "/web"
SESSION_STATE = "web_session"
UK = ZoneInfo("Europe/London")
log = logging.getLogger(__name__)

templates = Environment(
    loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(), auto_reload=False
)
templates.filters["pounds"] = lambda pence: pounds_text(int(pence))
templates.filters["uk_time"] = lambda moment: (
    (moment if isinstance(moment, datetime) else datetime.fromisoformat(moment))
    .astimezone(UK)
    .strftime("%-d %b %Y %H:%M")
)
# A UK day (ISO inside) as people read it.
templates.filters["uk_day"] = lambda day: date.fromisoformat(day).strftime("%-d %b %Y")
templates.filters["fund_choices"] = lambda funds: [
    (f["code"], f"{f['code']}: {f['name']}") for f in funds
]
templates.filters["replace_page"] = lambda params, page: urlencode({**params, "page": page})
# Which links and forms a page shows: `can(staff)` in a template.
# Auditors alone replay the ledger on the pages (the API lets staff do it too).
AUDITORS = frozenset({Role.AUDITOR})
templates.globals.update(readers=READERS, staff=STAFF, supervisors=SUPERVISORS, auditors=AUDITORS)


class SignInRequired(Exception):
    """A page needs a signed-in user."""


class Refused(Exception):
    """A page or form the user's role may not use, or a form without its CSRF token."""

    def __init__(self, title: str, detail: str) -> None:
        super().__init__(detail)
        self.title, self.detail = title, detail


def install(app: FastAPI, services: Services, config: WebConfig) -> None:
    """Serve the pages and their assets from `app`."""
    from web import (
        pages,
        pages_accounts,
        pages_audit,
        pages_cashup,
        pages_imports,
        pages_reconciliation,
    )

    app.state.web_config = config
    app.state.sign_in_limits = SignInLimits()
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="web-static")
    for module in (
        pages,
        pages_accounts,
        pages_audit,
        pages_cashup,
        pages_imports,
        pages_reconciliation,
    ):
        app.include_router(module.router, include_in_schema=False)
    app.add_api_route("/", lambda: RedirectResponse(f"{PREFIX}/", 303), include_in_schema=False)
    app.add_exception_handler(SignInRequired, _to_sign_in)
    app.add_exception_handler(Refused, _refused)
    for error_class in (
        RequestValidationError,
        StarletteHTTPException,
        LedgerError,
        DatabaseUnavailable,
        *DATABASE_UNAVAILABLE_ERRORS,
        Exception,
    ):
        _as_a_page_under_web(app, error_class)


def _as_a_page_under_web(app: FastAPI, error_class: type[Exception]) -> None:
    """Errors on the pages' paths answer an HTML page; the API keeps its problem+json."""
    for_the_api = app.exception_handlers.get(error_class) or app.exception_handlers[Exception]

    async def handler(request: Request, error: Exception) -> Response:
        if request.url.path.startswith(f"{PREFIX}/"):
            return _error_page(request, error)
        answer = for_the_api(request, error)
        return await answer if inspect.isawaitable(answer) else answer

    app.add_exception_handler(error_class, handler)


def _error_page(request: Request, error: Exception) -> Response:
    if isinstance(error, RequestValidationError):
        # A page's address edited by hand (?page=abc): said as a page, not the API's JSON.
        wrong = "; ".join(
            f"{e.get('loc', ('', '?'))[-1]}: {e.get('msg', 'invalid')}" for e in error.errors()[:5]
        )
        detail = f"The page's address asks for something it cannot read ({wrong}). Go back and follow a link."
        return render(request, "error.html", 422, title="Check the address", detail=detail)
    if isinstance(error, StarletteHTTPException) and error.status_code == 404:
        return render(request, "not_found.html", 404, what="such page")
    if isinstance(error, StarletteHTTPException):
        detail = error.detail if isinstance(error.detail, str) else "the request was refused"
        return render(request, "error.html", error.status_code, title="Refused", detail=detail)
    if isinstance(error, LedgerError):
        status, title = problems.status_for(error)
        return render(request, "error.html", status, title=title, detail=error.message)
    delay = delay_of(error)
    if delay is Delay.CONFLICT:
        log.warning("database gave up on %s %s: %s", request.method, request.url.path, delay.value)
        detail = (
            "Someone else was changing the same records at the same moment, and the ledger's "
            "database stopped this to let the other finish; nothing was saved. Try again now: "
            "it will very likely work. If you were sending a form, sending it again is safe: "
            "it is recorded once."
        )
        return render(request, "error.html", 503, title="Try again", detail=detail)
    if delay is not None:
        log.warning("database gave up on %s %s: %s", request.method, request.url.path, delay.value)
        detail = (
            "The ledger's database took too long over this and gave it up. Try again in a "
            "minute"
            + (", or ask for less (a shorter date range)." if delay is Delay.CANCELLED else ".")
            + " If you were sending a form, sending it again is safe: it is recorded once."
        )
        return render(request, "error.html", 503, title="Try again shortly", detail=detail)
    if isinstance(error, (DatabaseUnavailable, *DATABASE_UNAVAILABLE_ERRORS)):
        log.warning(
            "database failed on %s %s: %s", request.method, request.url.path, type(error).__name__
        )
        detail = (
            "The ledger's database cannot be reached just now. Try again in a minute. If you "
            "were sending a form, it may or may not have been saved: sending the same form "
            "again is safe, it is recorded once."
        )
        return render(request, "error.html", 503, title="Try again shortly", detail=detail)
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    detail = (
        "The ledger could not complete this; nothing partial was saved. Try again, and tell "
        f"the system administrator if it happens again (quote {current_request_id() or 'the time'})."
    )
    return render(request, "error.html", 500, title="Something went wrong", detail=detail)


def session(request: Request) -> Session:
    """This request's session, read once from its cookie."""
    found: Session | None = getattr(request.state, SESSION_STATE, None)
    if found is None:
        svc: Services = request.app.state.services
        cookie = request.cookies.get(COOKIE_NAME)
        found = sessions.decode(cookie, request.app.state.web_config, svc.api_keys)
        setattr(request.state, SESSION_STATE, found)
    return found


def set_session(request: Request, new: Session) -> None:
    setattr(request.state, SESSION_STATE, new)


def finish(request: Request, response: Response) -> Response:
    """Send the session back (renewed, so the idle time-out counts from now). Every answer of
    a page's route goes through here (render, redirect, download): one that did not would
    let a user who only downloads be signed out as idle."""
    config: WebConfig = request.app.state.web_config
    # No max-age: the browser keeps it until it closes, and the server, which checks the
    # signed time of the last request, can say that the session timed out.
    response.set_cookie(
        COOKIE_NAME,
        sessions.encode(session(request), config),
        path="/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def render(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    current = session(request)
    context.setdefault("errors", {})
    html = templates.get_template(template).render(
        request=request,
        user=current.user,
        csrf_token=current.csrf_token,
        prefix=PREFIX,
        can=lambda roles: current.user is not None and current.user.role in roles,
        # Pages that cover every fund (imports, reconciliation) refuse a key limited to fund
        # groups (require_whole_ledger): the menu and the dashboard do not offer them to it.
        whole_ledger=current.user is not None and current.user.fund_groups is None,
        **context,
    )
    return finish(request, HTMLResponse(html, status_code=status))


def download(request: Request, file_name: str, csv_text: str) -> Response:
    """A CSV file to save, sent like a page (through `finish`): fetching it is using the
    pages, so it renews the session's idle time-out as they do."""
    return finish(
        request,
        Response(
            csv_text,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{file_name}"'},
        ),
    )


def redirect(request: Request, path: str) -> Response:
    return finish(request, RedirectResponse(f"{PREFIX}{path}", status_code=303))


async def _to_sign_in(request: Request, _: Exception) -> Response:
    return redirect(request, "/sign-in?timed_out=1" if session(request).expired else "/sign-in")


async def _refused(request: Request, error: Exception) -> Response:
    assert isinstance(error, Refused)
    return render(request, "refused.html", 403, title=error.title, detail=error.detail)


def signed_in_user(request: Request) -> ApiUser:
    user = session(request).user
    if user is None:
        raise SignInRequired
    return user

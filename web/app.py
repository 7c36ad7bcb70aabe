"""The web pages' wiring: routes, templates, static files, and the pages for refusals.

Pages live under /web/ (the API owns the other paths); `/` leads to the dashboard.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from api.auth import READERS, STAFF, SUPERVISORS, ApiUser
from api.services import Services
from domain.money import pence_to_pounds
from web import sessions
from web.sessions import COOKIE_NAME, Session, WebConfig

HERE = Path(__file__).parent
PREFIX = "/web"
SESSION_STATE = "web_session"
UK = ZoneInfo("Europe/London")

templates = Environment(
    loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(), auto_reload=False
)
templates.filters["pounds"] = lambda pence: f"£{pence_to_pounds(int(pence))}"
templates.filters["uk_time"] = lambda iso: (
    datetime.fromisoformat(iso).astimezone(UK).strftime("%-d %b %Y %H:%M")
)
templates.filters["replace_page"] = lambda params, page: urlencode({**params, "page": page})
# Which links and forms a page shows: `can(staff)` in a template.
templates.globals.update(readers=READERS, staff=STAFF, supervisors=SUPERVISORS)


class SignInRequired(Exception):
    """A page needs a signed-in user."""


class Refused(Exception):
    """A page or form the user's role may not use, or a form without its CSRF token."""

    def __init__(self, title: str, detail: str) -> None:
        super().__init__(detail)
        self.title, self.detail = title, detail


def install(app: FastAPI, services: Services, config: WebConfig) -> None:
    """Serve the pages and their assets from `app`."""
    from web import pages

    app.state.web_config = config
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="web-static")
    app.include_router(pages.router, prefix=PREFIX, include_in_schema=False)
    app.add_api_route("/", lambda: RedirectResponse(f"{PREFIX}/", 303), include_in_schema=False)
    app.add_exception_handler(SignInRequired, _to_sign_in)
    app.add_exception_handler(Refused, _refused)


def session(request: Request) -> Session:
    """This request's session, read once from its cookie."""
    found: Session | None = getattr(request.state, SESSION_STATE, None)
    if found is None:
        svc: Services = request.app.state.services
        cookie = request.cookies.get(COOKIE_NAME)
        found = sessions.decode(cookie, request.app.state.web_config, svc.api_keys.users())
        setattr(request.state, SESSION_STATE, found)
    return found


def set_session(request: Request, new: Session) -> None:
    setattr(request.state, SESSION_STATE, new)


def finish(request: Request, response: Response) -> Response:
    """Send the session back (renewed, so the idle time-out counts from now)."""
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
        **context,
    )
    return finish(request, HTMLResponse(html, status_code=status))


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

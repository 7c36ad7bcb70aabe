"""The FastAPI application: routes translate HTTP to application commands and read-model
queries, and back. Business rules live in the domain; this module only maps."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import (
    problems,
    routes_cashup,
    routes_commands,
    routes_govuk_pay,
    routes_imports,
    routes_periods,
    routes_queries,
    routes_reconciliation,
    routes_rules,
    routes_system,
)
from api.deps import USER_SCOPE_KEY, user_for
from api.problems import ApiProblem
from api.request_context import REQUEST_ID_HEADER, begin_request
from api.services import Services

ROLE_DOC = """
Every endpoint except `/health` and the GOV.UK Pay webhook needs `Authorization: Bearer <key>`.
Keys are set by the deployment (`LEDGER_API_KEYS`, entries `user:role:token`); the key's user
is recorded as the actor of every event it causes. Roles:

- **officer**: record, allocate, transfer, refund (up to the approval limit; above it the
  refund waits for a supervisor), reverse, and all queries.
- **supervisor**: everything an officer can do, plus fund configuration and approving or
  declining refunds above the limit (never their own).
- **auditor** and **reporting**: read only (reporting has no access to the audit trail).
- **integration**: record payments.

Commands take an `Idempotency-Key` header: a retry with the same key and body returns the
original response (`Idempotent-Replayed: true`); the same key with another body gets 409.
A database outage answers 503 with `Retry-After`; its `code` says whether anything may have
been saved (`database_outcome_unknown`: retry with the same Idempotency-Key). A statement the
database gave up answers 503 `database_timeout` (retry, or ask for less) or `database_busy`;
one it rolled back for a clash with another request (a deadlock) answers 503
`database_conflict`: nothing was saved, retry now.
Every command response carries the event position it produced (`position`, and the header
`Ledger-Position`); every query accepts `min_position` and waits (bounded) until the read
model has reached it. Errors are `application/problem+json` (RFC 9457). Money is integer pence
in fields named `*_pence`. Every response carries `X-Request-ID`: the client's own if it sent
a plain token (letters, digits and `._:/+=-`, at most 128), else a new one; problem bodies
repeat it as `request_id`, and every log line of the request carries it.
"""


def create_app(services: Services, on_shutdown: Callable[[], None] | None = None) -> FastAPI:
    """The API over the given services; `on_shutdown` releases them when the server stops."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        services.linking.close()
        services.read_model.close()
        if on_shutdown is not None:
            on_shutdown()

    app = FastAPI(
        lifespan=lifespan,
        title="income-ledger",
        version="0.1.0",
        description=ROLE_DOC,
        openapi_tags=[
            {"name": "funds", "description": "The chart of funds (changes are events)."},
            {"name": "payments", "description": "Receipts and every later move of their money."},
            {"name": "read model", "description": "Balances, statements, suspense, takings."},
            {"name": "audit", "description": "The audit trail and replayed balances."},
            {"name": "integrations", "description": "GOV.UK Pay webhooks."},
            {"name": "imports", "description": "A day's income files, imported whole."},
            {"name": "operations", "description": "Health and metrics."},
            {"name": "cash-up", "description": "Cash offices, tills and the daily cash-up."},
        ],
    )
    app.state.services = services
    problems.install(app)
    app.add_middleware(LedgerMiddleware, services=services)

    routers = (
        routes_commands.router,
        routes_imports.router,
        routes_periods.router,
        routes_queries.router,
        routes_reconciliation.router,
        routes_rules.router,
        routes_govuk_pay.router,
        routes_system.router,
        routes_cashup.router,
    )
    for router in routers:
        app.include_router(router, responses=problems.COMMON_RESPONSES)
    return app


# Bodies from these paths are authenticated by a signature over the body itself, or (the
# web pages' forms) by the session and CSRF token the page checks; all stay size-limited.
SIGNED_BODY_PATHS = ("/webhooks/", "/web/")
# The API's upload and the web page's.
IMPORT_PATHS = ("/imports", "/web/imports/upload")
access_log = logging.getLogger("api.access")


class LedgerMiddleware:
    """Limits and accounting for every request, as pure ASGI (no per-request task or stream).

    A body is refused before it is read: when it declares more than the limit, when its
    sender has no valid API key (except webhooks, signed over the body), and, for a body sent
    in chunks without a length, as soon as the chunks pass the limit. HEAD is answered as
    GET without the body. Every request gets an id (the client's X-Request-ID if it is a
    plain token), returned in X-Request-ID and carried by every log line of the request; it
    is counted, timed and written to the access log (never its headers or body).
    """

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = Headers(scope=scope)
        request_id = begin_request(headers.get(REQUEST_ID_HEADER))
        id_header = (REQUEST_ID_HEADER.lower().encode(), request_id.encode())
        method = scope["method"]
        if method == "HEAD":
            scope = dict(scope, method="GET")
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = dict(message, headers=[*message.get("headers", ()), id_header])
            elif method == "HEAD" and message["type"] == "http.response.body":
                message = dict(message, body=b"")
            await send(message)

        try:
            refusal = self.refusal(scope, headers)
            if refusal is not None:
                await refusal(scope, receive, send_and_note)
            else:
                limited = _limited(receive, self.limit_for(scope))
                await self.app(scope, limited, send_and_note)
        finally:
            self.account(scope, method, status, time.perf_counter() - started)

    def account(self, scope: Scope, method: str, status: int, duration_s: float) -> None:
        path = getattr(scope.get("route"), "path", "unmatched")
        self.services.metrics.count_request(method, path, status, duration_s)
        duration_ms = round(duration_s * 1000, 1)
        user = scope.get(USER_SCOPE_KEY, "-")
        access_log.info(
            "%s %s %d %.1f ms %s",
            method,
            path,
            status,
            duration_ms,
            user,
            extra={
                "method": method,
                "path": path,
                "status": status,
                "duration_ms": duration_ms,
                "user": user,
            },
        )

    def refusal(self, scope: Scope, headers: Headers) -> Response | None:
        """The answer to a request refused before its body is read, or None to go on.

        It reads the scope and the request's headers alone (a `Request` and its URL are
        built only for a refusal's answer): every request passes here."""
        if _may_hold_nul(scope):
            request = Request(scope)
            if "%00" in request.url.query or "\x00" in request.url.path:
                return problems.problem(
                    request,
                    422,
                    "Invalid request",
                    "the URL contains a NUL character; remove it",
                    "invalid_text_characters",
                )
        length = headers.get("content-length")
        limit = self.limit_for(scope)
        if length is not None and (not length.isdigit() or int(length) > limit):
            return problems.body_too_large(Request(scope), limit)
        has_body = (length is not None and int(length) > 0) or ("transfer-encoding" in headers)
        # The path's start is what the URL's would be: only ?, # and \ are re-encoded there.
        if has_body and not scope["path"].startswith(SIGNED_BODY_PATHS):
            try:
                user_for(self.services, headers.get("authorization"))
            except ApiProblem as error:
                return problems.problem(
                    Request(scope),
                    error.status,
                    error.title,
                    error.detail,
                    error.code,
                    error.headers,
                )
        return None

    def limit_for(self, scope: Scope) -> int:
        """A day's file is larger than any command: uploads have a limit of their own."""
        config = self.services.config
        if scope["method"] == "POST" and scope["path"] in IMPORT_PATHS:
            return config.max_import_bytes
        return config.max_body_bytes


def _may_hold_nul(scope: Scope) -> bool:
    """False when neither the path nor the query can hold a NUL, plain or %-encoded: most
    requests, spared building the URL for the check."""
    path, query = scope["path"], scope.get("query_string", b"")
    return "%" in path or "\x00" in path or b"%" in query or b"\x00" in query


def _limited(receive: Receive, limit: int) -> Receive:
    """`receive` that stops at `limit` bytes: the rest is never read into memory."""
    received = 0

    async def receive_within_limit() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise problems.BodyTooLarge(limit)
        return message

    return receive_within_limit

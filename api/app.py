"""The FastAPI application: routes translate HTTP to application commands and read-model
queries, and back. Business rules live in the domain; this module only maps."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from api import problems
from api.auth import (
    ALL_ROLES,
    AUDIT_READERS,
    READERS,
    RECORDERS,
    STAFF,
    SUPERVISORS,
    ApiUser,
    Role,
)
from api.problems import ApiProblem
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
Every command response carries the event position it produced (`position`, and the header
`Ledger-Position`); every query accepts `min_position` and waits (bounded) until the read
model has reached it. Errors are `application/problem+json` (RFC 9457). Money is integer pence
in fields named `*_pence`.
"""


def create_app(services: Services, on_shutdown: Callable[[], None] | None = None) -> FastAPI:
    """The API over the given services; `on_shutdown` releases them when the server stops."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
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
            {"name": "operations", "description": "Health and metrics."},
        ],
    )
    app.state.services = services
    problems.install(app)
    app.add_middleware(BodyLimitAndMetrics, services=services)

    from api import routes_commands, routes_govuk_pay, routes_queries, routes_system

    routers = (
        routes_commands.router,
        routes_queries.router,
        routes_govuk_pay.router,
        routes_system.router,
    )
    for router in routers:
        app.include_router(router, responses=problems.COMMON_RESPONSES)
    return app


class BodyLimitAndMetrics(BaseHTTPMiddleware):
    """Refuse oversized bodies before reading them; count and time every request."""

    def __init__(self, app: Any, services: Services) -> None:
        super().__init__(app)
        self.services = services

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        started = time.perf_counter()
        limit = self.services.config.max_body_bytes
        length = request.headers.get("content-length")
        if "%00" in request.url.query or "\x00" in request.url.path:
            response = problems.problem(
                request,
                422,
                "Invalid request",
                "the URL contains a NUL character; remove it",
                "invalid_text_characters",
            )
        elif length is not None and (not length.isdigit() or int(length) > limit):
            response: Response = problems.problem(
                request,
                413,
                "Request body too large",
                f"the body must be at most {limit} bytes; split the request",
                "body_too_large",
            )
        elif length is None and request.method in ("POST", "PUT", "PATCH"):
            body = await request.body()
            if len(body) > limit:
                response = problems.problem(
                    request,
                    413,
                    "Request body too large",
                    f"the body must be at most {limit} bytes",
                    "body_too_large",
                )
            else:
                response = await call_next(request)
        else:
            response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics = self.services.metrics
        metrics.requests.labels(request.method, path, str(response.status_code)).inc()
        metrics.latency.labels(request.method, path).observe(time.perf_counter() - started)
        return response


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(services)]


def authenticated(
    svc: ServicesDep, authorization: Annotated[str | None, Header()] = None
) -> ApiUser:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiProblem(
            401,
            "Authentication required",
            "send Authorization: Bearer <API key>",
            "unauthenticated",
            {"WWW-Authenticate": "Bearer"},
        )
    user = svc.api_keys.user_for(token.strip())
    if user is None:
        raise ApiProblem(
            401,
            "Authentication failed",
            "the API key is not recognised",
            "unauthenticated",
            {"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return user


def allow(roles: frozenset[Role]) -> Callable[..., ApiUser]:
    """A dependency that lets only the given roles through (403 for the others)."""
    names = ", ".join(sorted(r.value for r in roles))

    def check(user: Annotated[ApiUser, Depends(authenticated)]) -> ApiUser:
        if user.role not in roles:
            raise ApiProblem(
                403,
                "Forbidden",
                f"the {user.role.value} role may not do this; it needs: {names}",
                "forbidden",
            )
        return user

    check.__doc__ = f"Roles: {names}"
    return check


AnyUser = Annotated[ApiUser, Depends(allow(ALL_ROLES))]
Reader = Annotated[ApiUser, Depends(allow(READERS))]
AuditReader = Annotated[ApiUser, Depends(allow(AUDIT_READERS))]
Recorder = Annotated[ApiUser, Depends(allow(RECORDERS))]
Staff = Annotated[ApiUser, Depends(allow(STAFF))]
Supervisor = Annotated[ApiUser, Depends(allow(SUPERVISORS))]


def position_headers(position: int | None) -> dict[str, str]:
    return {} if position is None else {"Ledger-Position": str(position)}


def json_response(
    body: Any, status: int = 200, position: int | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        body, status_code=status, headers=position_headers(position) | (headers or {})
    )

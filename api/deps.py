"""FastAPI dependencies shared by every router: the services, the authenticated user and the
role each route needs, and the JSON response carrying the event position. The routers import
these from here, and `api.app` wires the routers; nothing here imports a router."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.responses import JSONResponse

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

# Where `authenticated` leaves the request's user for the access log.
USER_SCOPE_KEY = "ledger.user"


# The dependencies below only look at the request and memory: `async def` runs them on the
# event loop, where a plain `def` costs each request a hop to the thread pool and back.
async def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(services)]


async def authenticated(
    svc: ServicesDep, request: Request, authorization: Annotated[str | None, Header()] = None
) -> ApiUser:
    user = user_for(svc, authorization)
    request.scope[USER_SCOPE_KEY] = user.actor
    return user


def user_for(svc: Services, authorization: str | None) -> ApiUser:
    """The user whose key the Authorization header carries; 401 when none or unknown."""
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

    async def check(user: Annotated[ApiUser, Depends(authenticated)]) -> ApiUser:
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

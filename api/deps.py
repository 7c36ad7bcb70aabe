"""FastAPI dependencies shared by every router: the services, the authenticated user and the
role each route needs, and the JSON response carrying the event position. The routers import
these from here, and `api.app` wires the routers; nothing here imports a router."""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import orjson
from fastapi import Depends, Header, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

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

# Where the role check leaves the request's user for the access log.
USER_SCOPE_KEY = "ledger.user"


# The dependencies below only look at the request and memory: `async def` runs them on the
# event loop, where a plain `def` costs each request a hop to the thread pool and back.
async def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(services)]


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

    # One dependency, not `authenticated` beneath it: FastAPI's cost per dependency (its
    # cache key, its parameters, its own solve) is paid by every request. The header is
    # declared as in `authenticated`, so the OpenAPI document is the same.
    async def check(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> ApiUser:
        user = user_for(request.app.state.services, authorization)
        request.scope[USER_SCOPE_KEY] = user.actor
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


def model_response(model: type[BaseModel], body: Mapping[str, Any]) -> Response:
    """`body` as FastAPI's `response_model=model` would answer it, byte for byte, without
    validating it again: the model's fields in its order (others dropped), integers as int
    (PostgreSQL's sums arrive as Decimal), written by orjson. For hot read routes whose
    queries already produce the model's values; the route keeps `response_model` for the
    OpenAPI description, which FastAPI does not apply to a returned Response."""
    return Response(orjson.dumps(_shaper(model)(body)), media_type="application/json")


@functools.cache
def _shaper(model: type[BaseModel]) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    fields = [
        (name, _converter(model, name, f.annotation)) for name, f in model.model_fields.items()
    ]

    def shape(body: Mapping[str, Any]) -> dict[str, Any]:
        return {name: convert(body[name]) for name, convert in fields}

    return shape


def _converter(model: type[BaseModel], name: str, annotation: Any) -> Callable[[Any], Any]:
    """How one field's value is written: only the types whose JSON orjson writes exactly as
    pydantic does (the shapes the hot read models use); any other is refused at start-up."""
    if annotation is int:
        return int
    if annotation is str or annotation == str | None:
        return _same
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    item = args[0] if origin is list and len(args) == 1 else None
    if isinstance(item, type) and issubclass(item, BaseModel):
        shape = _shaper(item)
        return lambda items: [shape(one) for one in items]
    raise TypeError(f"model_response cannot write {model.__name__}.{name}: {annotation!r}")


def _same(value: Any) -> Any:
    return value

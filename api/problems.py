"""Errors as RFC 9457 problem details (application/problem+json). No stack trace leaks."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.request_context import REQUEST_ID_HEADER, current_request_id
from application.outages import (
    DATABASE_UNAVAILABLE_ERRORS,
    DatabaseUnavailable,
    Delay,
    delay_of,
)
from domain.errors import (
    ConcurrentUpdate,
    InvalidRequest,
    LedgerError,
    NotFound,
    NotPermitted,
    RuleViolation,
)

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
# Long enough for a restarting database or a failover, short enough for a person waiting.
DATABASE_RETRY_AFTER_SECONDS = 5
# A clash with another transaction is over once the database has rolled one of them back.
CONFLICT_RETRY_AFTER_SECONDS = 1
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class Problem(BaseModel):
    """RFC 9457 problem details, with a stable `code` for scripts."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    code: str
    retryable: bool | None = None
    errors: list[dict[str, Any]] | None = None
    request_id: str | None = None


def _documented(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "model": Problem,
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _documented("no API key, or an unknown one (webhook: a bad Pay-Signature)"),
    403: _documented("the key's role or fund-group limits do not allow this"),
    404: _documented("no such payment, fund or refund request"),
    409: _documented(
        "refused by a ledger rule, a concurrent update (retryable: true), or an "
        "Idempotency-Key reused for another request"
    ),
    413: _documented("the request body is too large"),
    422: _documented("the request is invalid: the detail says what to fix"),
    500: _documented("an unexpected error: nothing partial was saved"),
    501: _documented("not available on this server"),
    503: _documented(
        "the read model has not reached min_position yet, the database is "
        "unreachable (Retry-After; the detail says whether anything may have been saved), "
        "took too long (database_timeout: retry, or ask for less), was busy "
        "(database_busy) or rolled the request back for a clash with another "
        "(database_conflict: nothing was saved, retry), or the webhook is not configured: "
        "retry later"
    ),
}


class BodyTooLarge(StarletteHTTPException):
    """A body sent in chunks passed the limit while being read (an HTTPException, so that
    FastAPI hands it on as it is instead of calling it a body it could not parse)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the body must be at most {limit} bytes")
        self.limit = limit


class ApiProblem(Exception):
    """An HTTP-level problem (auth, limits, stale reads) with a status and a clear detail."""

    def __init__(
        self, status: int, title: str, detail: str, code: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.code = status, title, detail, code
        self.headers = headers or {}


def problem(
    request: Request,
    status: int,
    title: str,
    detail: str,
    code: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": f"/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "code": code,
        **extra,
    }
    request_id = current_request_id()
    if request_id is not None:
        body["request_id"] = request_id
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def body_too_large(request: Request, limit: int) -> JSONResponse:
    return problem(
        request,
        413,
        "Request body too large",
        f"the body must be at most {limit} bytes; split the request",
        "body_too_large",
    )


def database_unavailable(
    request: Request, saved_unknown: bool | None, error: BaseException | None = None
) -> JSONResponse:
    """503 for a database that failed; what it says was saved is only what is known.

    `saved_unknown` is None when the failure was outside a command's transaction (a query,
    or a step whose transaction this layer does not see). A database that answered but gave
    the statement up (a timeout, a lock wait, a deadlock) is not called unreachable."""
    if saved_unknown is None and request.method in SAFE_METHODS:
        saved_unknown = False
    retry = (
        "Retry with the same Idempotency-Key: a retry is safe and answers with the original result."
        if "idempotency-key" in request.headers
        else "Check whether it was recorded before retrying; send an Idempotency-Key with "
        "commands so that a retry is always safe."
    )
    delay = None if error is None else delay_of(error)
    if delay is not None:
        title, detail, code = _delayed(delay, saved_unknown, retry)
    elif saved_unknown is False:
        title = "Database unavailable"
        detail = "the database could not be reached; nothing was saved. Retry shortly."
        code = "database_unavailable"
    elif saved_unknown:
        title = "Database failed while saving: outcome unknown"
        detail = (
            "the database connection failed while the change was being committed, so it "
            f"may or may not have been saved. {retry}"
        )
        code = "database_outcome_unknown"
    else:
        title = "Database unavailable"
        detail = (
            "the database failed during the request; it may or may not have taken effect. "
            f"{retry} A repeated delivery of the same external payment is recorded once."
        )
        code = "database_outcome_unknown"
    seconds = (
        CONFLICT_RETRY_AFTER_SECONDS if delay is Delay.CONFLICT else DATABASE_RETRY_AFTER_SECONDS
    )
    return problem(request, 503, title, detail, code, {"Retry-After": str(seconds)}, retryable=True)


def _delayed(delay: Delay, saved_unknown: bool | None, retry: str) -> tuple[str, str, str]:
    """Title, detail and code for a statement the database gave up. The database answered,
    so the transaction it was in was rolled back: within a command nothing was saved."""
    saved = (
        "nothing was saved"
        if saved_unknown is not None
        else f"a change made earlier in the request may have been saved ({retry})"
    )
    if delay is Delay.CANCELLED:
        return (
            "Database took too long",
            "the database cancelled the request because it ran longer than the database "
            f"allows (its statement_timeout), or an administrator cancelled it; {saved}. "
            "Retry, or ask for less (a shorter date range, a smaller page or file).",
            delay.value,
        )
    if delay is Delay.CONFLICT:
        return (
            "Database conflict",
            "the database rolled the request back to settle a clash with another request "
            "changing the same records at the same moment (a deadlock or a serialization "
            f"failure); {saved}. The database answered and is working: retry now, the "
            "same request will very likely succeed.",
            delay.value,
        )
    return (
        "Database busy",
        "the request waited too long for another process to release a lock on the database "
        f"(SQLite's busy timeout, or PostgreSQL's lock_timeout); {saved}. Retry shortly.",
        delay.value,
    )


def status_for(error: LedgerError) -> tuple[int, str]:
    if isinstance(error, ConcurrentUpdate):
        return 409, "Concurrent update: safe to retry"
    if isinstance(error, NotFound):
        return 404, "Not found"
    if isinstance(error, NotPermitted):
        return 403, "Not permitted"
    if isinstance(error, InvalidRequest):
        return 422, "Invalid request"
    if isinstance(error, RuleViolation):
        return 409, "Refused by a ledger rule"
    return 400, "Bad request"


def install(app: FastAPI) -> None:
    @app.exception_handler(LedgerError)
    async def ledger_error(request: Request, error: LedgerError) -> JSONResponse:
        status, title = status_for(error)
        return problem(
            request,
            status,
            title,
            error.message,
            error.code,
            retryable=isinstance(error, ConcurrentUpdate),
        )

    @app.exception_handler(ApiProblem)
    async def api_problem(request: Request, error: ApiProblem) -> JSONResponse:
        return problem(
            request, error.status, error.title, error.detail, error.code, headers=error.headers
        )

    @app.exception_handler(DatabaseUnavailable)
    async def outage_in_command(request: Request, error: DatabaseUnavailable) -> JSONResponse:
        log.warning("database failed on %s %s: %s", request.method, request.url.path, error)
        return database_unavailable(request, error.saved_unknown, error)

    async def outage(request: Request, error: Exception) -> JSONResponse:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        log.warning("database failed on %s %s: %s", request.method, request.url.path, first_line)
        return database_unavailable(request, None, error)

    for error_class in DATABASE_UNAVAILABLE_ERRORS:
        app.add_exception_handler(error_class, outage)

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, error: BodyTooLarge) -> JSONResponse:
        return body_too_large(request, error.limit)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "location": ".".join(str(p) for p in e.get("loc", ())),
                "message": _with_hint(e),
            }
            for e in error.errors()
        ]
        detail = "; ".join(f"{e['location']}: {e['message']}" for e in errors[:5])
        return problem(
            request, 422, "Invalid request", detail, "validation_error", errors=errors[:50]
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if isinstance(error.__cause__, UnicodeDecodeError):
            # FastAPI's bare 400 "There was an error parsing the body": say what to fix, as
            # for a body that is not JSON (422).
            errors = [{"location": "body", "message": "not UTF-8 text: send JSON in UTF-8"}]
            return problem(
                request,
                422,
                "Invalid request",
                "body: not UTF-8 text: send JSON in UTF-8",
                "validation_error",
                errors=errors,
            )
        detail = error.detail if isinstance(error.detail, str) else "request refused"
        return problem(
            request,
            error.status_code,
            detail,
            detail,
            f"http_{error.status_code}",
            headers=getattr(error, "headers", None),
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem(
            request,
            500,
            "Internal error",
            "the ledger could not complete the request; nothing partial was saved. "
            "Retry, and tell the system administrator if it persists (quote the request_id).",
            "internal_error",
            _request_id_header(),
        )


# What to write instead, for the mistakes people make with dates and money: the validator's
# own words say what is wrong but not what a right value looks like.
_HINTS = {
    "date_parsing": "write it like 2026-03-31",
    "date_from_datetime_parsing": "write it like 2026-03-31",
    "date_from_datetime_inexact": "write it like 2026-03-31",
    "datetime_parsing": "write it like 2026-03-31T10:00:00Z",
    "datetime_from_date_parsing": "write it like 2026-03-31T10:00:00Z",
    "timezone_aware": "write it with its zone, like 2026-03-31T10:00:00Z",
    "int_parsing": "amounts are whole pence, like 1250 for £12.50",
    "int_from_float": "amounts are whole pence, like 1250 for £12.50",
    "int_type": "amounts are whole pence, like 1250 for £12.50",
}


def _with_hint(error: Any) -> str:
    message = str(error.get("msg", "invalid"))
    hint = _HINTS.get(str(error.get("type", "")))
    if hint is None:
        return message
    if hint.startswith("amounts") and not str(error.get("loc", ("",))[-1]).endswith("_pence"):
        return message
    return f"{message}: {hint}"


def _request_id_header() -> dict[str, str]:
    """The request id for a response the middleware does not send (its server error
    handler answers from outside it)."""
    request_id = current_request_id()
    return {} if request_id is None else {REQUEST_ID_HEADER: request_id}

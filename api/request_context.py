"""The id of the HTTP request being served, for every log line and error body it causes.

Standard library only: the logging set-up of every process imports it.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

REQUEST_ID_HEADER = "X-Request-ID"
# A client's id is kept only when it is a plain token: it goes into log lines as it is.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+=-]{0,127}")

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


def begin_request(client_id: str | None) -> str:
    """The id of the request starting in this context: the client's if sane, else a new one.

    Each request runs in a task of its own, with a context of its own, so the id is never
    reset: the server's handler of an unexpected error runs after the middleware returns
    and must still see it.
    """
    request_id = client_id if client_id and SANE_REQUEST_ID.fullmatch(client_id) else None
    request_id = request_id or uuid.uuid4().hex
    _request_id.set(request_id)
    return request_id


def current_request_id() -> str | None:
    """The id of the request this code runs for (threads of the thread pool included)."""
    return _request_id.get()

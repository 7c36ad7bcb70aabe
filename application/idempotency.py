"""Request-level idempotency: a retried request with the same key gets the first response.

The domain already refuses to apply one command twice (each event records its idempotency key
and a fingerprint of the command). This store adds what an HTTP client expects on top: the
original response, byte for byte, for a retry with the same key and body, and a clear refusal
for the same key with another body.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Integer, String, Table, Text, insert, select
from sqlalchemy.orm import Session

from application.tables import metadata
from domain.errors import IdempotencyKeyReused
from domain.limits import MAX_CORRELATION_ID_LENGTH

idempotency_table = Table(
    "request_idempotency",
    metadata,
    Column("scope_key", String(MAX_CORRELATION_ID_LENGTH), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("method", String(10), nullable=False),
    Column("path", String(300), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("response_body", Text, nullable=False),
    Column("position", BigInteger),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class IdempotentRequest:
    """A request made safe to retry: whose key it is, and what exactly was asked."""

    scope_key: str
    request_hash: str
    method: str
    path: str


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: Any
    position: int | None


def request_hash(method: str, path: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def recall(session: Session, scope_key: str, hashed: str) -> StoredResponse | None:
    row = session.execute(
        select(idempotency_table).where(idempotency_table.c.scope_key == scope_key)
    ).first()
    if row is None:
        return None
    if row.request_hash != hashed:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was already used for a different request; use a new key "
            "for a new request"
        )
    return with_position(
        StoredResponse(row.status_code, json.loads(row.response_body), row.position), row.position
    )


def remember(session: Session, request: IdempotentRequest, response: StoredResponse) -> None:
    """Store the first response for a key (the primary key refuses a second one)."""
    session.execute(
        insert(idempotency_table).values(
            {**stored_response_row(request, response), "position": response.position}
        )
    )


def stored_response_row(request: IdempotentRequest, response: StoredResponse) -> dict[str, Any]:
    """The row that keeps a response, but its `position` (a group commit learns it only in
    the database, so the column, not the body, says it; see `with_position`)."""
    return {
        "scope_key": request.scope_key,
        "request_hash": request.request_hash,
        "method": request.method,
        "path": request.path,
        "status_code": response.status_code,
        "response_body": json.dumps(response.body),
        "created_at": datetime.now(UTC),
    }


def with_position(response: StoredResponse, position: int | None) -> StoredResponse:
    """The response at this position: a body's own `position` field says the same."""
    body = response.body
    if isinstance(body, dict) and "position" in body:
        body = {**body, "position": position}
    return StoredResponse(response.status_code, body, position)

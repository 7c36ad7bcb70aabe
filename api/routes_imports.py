"""A day's income files over HTTP: upload (multipart or raw body), list, show, reverse.

Thin: the file is handed to application.imports as bytes, exactly as it came, so the same
file uploaded or imported on the command line has the same SHA-256 and the same batch.
"""

from __future__ import annotations

from email import policy
from email.parser import BytesParser
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api import problems
from api.deps import Reader, Recorder, ServicesDep, Supervisor, json_response
from api.problems import ApiProblem
from api.routes_queries import Fresh, Limit, Offset
from api.routes_reconciliation import CandidateOut, LateLinkOut
from application.imports import get_import, import_file, reverse_import
from application.reconciliation import link_after_recording
from domain.errors import ImportRefused
from domain.imports import MAX_FILE_NAME_LENGTH, ImportFormat
from projections import queries

router = APIRouter()
FILE_FIELD = "file"


class ImportBatchOut(BaseModel):
    batch_id: str
    file_name: str
    file_format: str
    sha256: str
    line_count: int
    control_total_pence: int
    control_count: int
    receipts_count: int
    receipts_pence: int
    returned_cheques_count: int
    imported_by: str
    imported_at: str
    reversed: bool
    reversed_by: str | None
    reversal_reason: str | None
    reversed_pence: int
    version: int


class ImportLineOut(BaseModel):
    line: int
    kind: str
    outcome: str = Field(
        description="recorded (a new receipt), known (recorded before; on a returned "
        "direct debit: an earlier import of the same statement line took its collection "
        "back already, so nothing was reversed again), reversed (an "
        "earlier receipt a returned cheque or direct debit took back), or reconciled (a "
        "statement line paying in receipts already recorded: no receipt of its own), or "
        "unmatched (a debit naming GOV.UK Pay's payout that no refunds explain yet: kept for "
        "a later linking run)"
    )
    payment_id: str | None
    channel: str
    payment_type: str | None
    reference: str
    amount_pence: int
    status: str | None = Field(description="the payment's status when the file was imported")
    suspense_reason: str | None = Field(
        None,
        description="why the receipt went (wholly or in part) to suspense when the file was "
        "imported, as a payment's suspense_reason (invalid_check_digit, no_matching_fund...)",
    )
    import_rule: dict[str, Any] | None = Field(
        None, description="the import rule (rule_id, rule_version) that decided the receipt"
    )
    booking_date: str | None = Field(None, description="statements: the line's booking date")
    fund_code: str | None = Field(
        None,
        description="the fund(s) the import allocated the line's receipt to (None: "
        "suspense); for a line stored before the fund was kept, read from its receipt's "
        "allocation on arrival",
    )
    bank_line_id: str | None = Field(
        None,
        description="a statement's returned direct debit: what identifies it at the bank "
        "(from account, booking date, bank reference and amount); None on lines imported "
        "before it was kept",
    )
    rule: str | None = Field(None, description="reconciled: the matching rule that linked it")
    matched_payment_ids: list[str] | None = Field(None, description="reconciled: paid in")
    matched_batch_id: str | None = Field(None, description="reconciled: the import paid in")
    matched: str | None = Field(None, description="reconciled: what it paid in, in words")
    settled_day: str | None = Field(
        None, description="reconciled, a card payout: the settlement day it paid in (ISO)"
    )
    late_link: dict[str, Any] | None = Field(
        None,
        description="a link made after the import (reconcile link) that still stands: rule, "
        "matched_payment_ids, matched, settled_day, matched_batch_id",
    )
    undone_links: list[dict[str, Any]] = Field(
        [], description="links of this line a person undid (reconcile unlink), oldest first"
    )
    checked: dict[str, str] | None = Field(
        None,
        description="a line an import rule sent to a fund that a person checked and said "
        "is right (POST /reconciliation/checks), while the check stands: checked_by, "
        "reason, checked_at; it is then no exception",
    )
    checks_undone: list[dict[str, str]] = Field(
        [],
        description="checks of this line a person undid (POST /reconciliation/unchecks), "
        "oldest first: checked_by, reason, checked_at, undone_by, undo_reason, undone_at",
    )
    candidates: list[CandidateOut] = Field(
        [],
        description="a statement line waiting for a person (it may pay in more than one "
        "record, or another line may pay in the same): everything it may pay in, for a "
        "person to choose (POST /reconciliation/choices); empty otherwise",
    )


class ImportBatchRow(BaseModel):
    """A row of the read-model table import_batches (docs/read-model.md)."""

    batch_id: str
    file_name: str
    file_format: str
    sha256: str
    line_count: int
    control_total_pence: int
    control_count: int
    receipts_count: int
    receipts_pence: int
    returned_cheques_count: int
    imported_at: str
    imported_date: str
    imported_by: str
    reversed_at: str | None
    reversed_by: str | None
    reversal_reason: str | None
    reversed_pence: int
    position: int


class ImportBatchesPage(BaseModel):
    position: int = Field(description="the read model's position")
    limit: int
    offset: int
    total: int = Field(description="imports in all")
    batches: list[ImportBatchRow]


class ImportBatchDetailOut(ImportBatchOut):
    lines: list[ImportLineOut]


class ImportOut(BaseModel):
    recorded: bool = Field(description="false when this file was imported before")
    position: int | None = Field(description="event position to pass as min_position")
    batch: ImportBatchOut
    late_links: list[LateLinkOut] = Field(
        [],
        description="statement lines imported earlier that this file's receipts showed "
        "to be counted twice, linked after the import (as POST /reconciliation/links does; "
        "LEDGER_AUTO_LINK_STATEMENTS)",
    )


class ReverseImportIn(BaseModel):
    reason: str = Field(min_length=1, max_length=500, description="why the whole file goes")


UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": "The file: as a multipart form field named `file`, or as the raw body.",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {FILE_FIELD: {"type": "string", "format": "binary"}},
                    "required": [FILE_FIELD],
                }
            },
            "text/plain": {"schema": {"type": "string"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@router.post(
    "/imports",
    tags=["imports"],
    status_code=201,
    response_model=ImportOut,
    responses={200: {"description": "this file was imported before: nothing recorded"}},
    openapi_extra=UPLOAD_BODY,
)
async def upload_import(
    request: Request,
    svc: ServicesDep,
    user: Recorder,
    file_format: Annotated[ImportFormat | None, Query(alias="format")] = None,
    file_name: Annotated[str | None, Query(max_length=MAX_FILE_NAME_LENGTH)] = None,
    expect_total_pence: Annotated[int | None, Query(ge=0, le=2**53)] = None,
    expect_count: Annotated[int | None, Query(ge=0, le=2**31)] = None,
) -> Any:
    """Import a day's file whole (201), or refuse it naming every bad line in `errors` (422,
    code `import_refused`; nothing is stored). The same file again answers 200 with the
    first import and records nothing. Format: `allpay`, `csv`, `camt053`, `bai2` or `mt940`
    (default: detected from the content); a CSV needs `expect_total_pence` and
    `expect_count`. The body limit is LEDGER_MAX_IMPORT_BYTES. Roles: officer, supervisor,
    integration."""
    content, sent_name = _file_from(request.headers.get("content-type"), await request.body())
    try:
        outcome = await run_in_threadpool(
            import_file,
            svc.ledger,
            content,
            user.context(),
            file_name=file_name or sent_name or "upload",
            file_format=file_format.value if file_format else None,
            expect_total_pence=expect_total_pence,
            expect_count=expect_count,
        )
    except ImportRefused as error:
        svc.metrics.import_uploads.labels("refused").inc()
        return _refused(request, error)
    svc.metrics.import_uploads.labels("imported" if outcome.recorded else "duplicate").inc()
    links = []
    if svc.config.auto_link_statements:
        links = await run_in_threadpool(link_after_recording, svc.ledger, outcome.link_from)
    body = {
        "recorded": outcome.recorded,
        "position": outcome.position,
        "batch": outcome.batch,
        "late_links": [link.to_dict() for link in links],
    }
    return json_response(body, 201 if outcome.recorded else 200, outcome.position)


def _refused(request: Request, error: ImportRefused) -> JSONResponse:
    errors = [problem.to_dict() for problem in error.problems]
    return problems.problem(request, 422, "File refused", error.message, error.code, errors=errors)


def _file_from(content_type: str | None, body: bytes) -> tuple[bytes, str | None]:
    """The file's bytes and the name its sender gave, from a form upload or a raw body."""
    if not (content_type or "").lower().startswith("multipart/form-data"):
        return body, None
    found = form_parts(content_type or "", body).get(FILE_FIELD)
    if found is not None:
        return found
    raise ApiProblem(
        422,
        "Invalid request",
        f"send the file as a form field named '{FILE_FIELD}', or as the raw body",
        "import_file_missing",
    )


def form_parts(content_type: str, body: bytes) -> dict[str, tuple[bytes, str | None]]:
    """A multipart form's fields by name (the first of each name): its bytes and the file
    name its sender gave (None for a plain field); empty when the body is not multipart."""
    # The standard library reads a form (python-multipart is not a dependency); a part's
    # payload comes back byte for byte, line endings included.
    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
    form = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    parts: dict[str, tuple[bytes, str | None]] = {}
    if form.is_multipart():
        for part in form.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if isinstance(name, str) and name not in parts:
                parts[name] = (payload if isinstance(payload, bytes) else b""), part.get_filename()
    return parts


@router.get("/imports", tags=["imports"], response_model=ImportBatchesPage)
def imports(svc: Fresh, user: Reader, limit: Limit = 100, offset: Offset = 0) -> Any:
    """Imported files, newest first, from the read model (table `import_batches`; pass a
    command's position as min_position to see it). Roles: officer, supervisor, auditor,
    reporting."""
    user.access.require_whole_ledger("the list of imports")
    with svc.read_engine.connect() as connection:
        position = queries.read_model_position(connection)
        page = queries.import_batches_page(connection, limit=limit, offset=offset)
    return page | {"position": position, "limit": limit, "offset": offset}


@router.get("/imports/{batch_id}", tags=["imports"], response_model=ImportBatchDetailOut)
def one_import(batch_id: UUID, svc: ServicesDep, user: Reader) -> Any:
    """One import with each money line and the payment it made. Roles: as GET /imports."""
    user.access.require_whole_ledger("an import")
    return get_import(svc.ledger, batch_id)


@router.post("/imports/{batch_id}/reversal", tags=["imports"], response_model=ImportOut)
def reverse(batch_id: UUID, body: ReverseImportIn, svc: ServicesDep, user: Supervisor) -> Any:
    """Reverse what remains of every receipt the import made, and mark the import reversed,
    in one transaction (409 if it was reversed before). A bank statement's links are undone
    first (as POST /reconciliation/unlinks does), so a statement whose lines were all linked
    is reversed too. Roles: supervisor."""
    user.access.require_whole_ledger("reversing an import")
    outcome = reverse_import(svc.ledger, batch_id, user.context(), body.reason)
    body_out = {"recorded": True, "position": outcome.position, "batch": outcome.batch}
    return json_response(body_out, 200, outcome.position)

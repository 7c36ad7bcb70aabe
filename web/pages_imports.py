"""Income files: the list of imports, one import with its lines, and the upload form, which
hands the file to the same application service as `POST /imports`; on one import's page,
a statement line's late link is undone (as `POST /reconciliation/unlinks`) and linked again
(as `POST /reconciliation/links/{batch_id}/{line}`), and a line that may pay in more than
one record is linked to the one a person chooses (as `POST /reconciliation/choices`), and a
line an import rule sent to a fund is checked, or its check undone (as `POST
/reconciliation/checks` and `/unchecks`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from api.auth import READERS, STAFF, ApiUser
from api.routes_imports import FILE_FIELD, form_parts
from api.routes_reconciliation import CheckIn, ChoiceIn, UncheckIn, UnlinkIn
from application.idempotency import StoredResponse
from application.imports import get_import, import_file, import_line_numbers
from application.ledger import CommandContext
from application.reconciliation import (
    OpenLines,
    check_line,
    choose_link,
    link_counted_twice,
    undo_line_check,
    unlink_line,
)
from domain import errors
from domain.imports import MAX_IMPORT_LINES, ImportFormat, LineProblem
from projections import queries
from web.app import PREFIX, redirect, render
from web.pages import (
    FormErrors,
    form_model,
    new_key,
    pence_from,
    posted_form,
    record_once,
    require_csrf,
    sentence,
    services,
    user_allowed,
)

router = APIRouter(prefix=f"{PREFIX}/imports")
IMPORTS_PAGE_SIZE = 50
UPLOAD_FIELDS = ("file_format", "expect_total", "expect_count")


@router.get("")
def import_list(request: Request, page: int = 1) -> Response:
    user = user_allowed(request, READERS, "see imported files")
    user.access.require_whole_ledger("the list of imports")
    page = max(1, min(page, 10_000))
    with services(request).read_engine.connect() as connection:
        found = queries.import_batches_page(
            connection, limit=IMPORTS_PAGE_SIZE, offset=(page - 1) * IMPORTS_PAGE_SIZE
        )
    return render(request, "imports.html", found=found, page=page, page_size=IMPORTS_PAGE_SIZE)


@router.get("/upload")
def upload_page(request: Request) -> Response:
    user_allowed(request, STAFF, "import files")
    return _upload_form(request, {}, {})


def _upload_form(
    request: Request,
    form: dict[str, str],
    errors_by_field: dict[str, str],
    refused_lines: list[LineProblem] | None = None,
    status: int = 200,
) -> Response:
    return render(
        request,
        "import_upload.html",
        status,
        form=form,
        errors=errors_by_field,
        refused_lines=refused_lines or [],
        formats=[(f.value, f.value) for f in ImportFormat],
    )


@router.post("/upload")
async def upload(request: Request) -> Response:
    """A file posted as multipart form data. A double submit records once: the same bytes
    are the same batch (by SHA-256), and the second answer says it was imported before.
    Statement lines imported before that pay its receipts in are linked afterwards by the
    process's linking worker (as after POST /imports, LEDGER_AUTO_LINK_STATEMENTS)."""
    user = user_allowed(request, STAFF, "import files")
    parts = form_parts(request.headers.get("content-type", ""), await request.body())
    require_csrf(request, parts.get("csrf_token", (b"", None))[0].decode(errors="replace"))
    form = {
        name: parts.get(name, (b"", None))[0].decode(errors="replace").strip()[:40]
        for name in UPLOAD_FIELDS
    }
    content, file_name = parts.get(FILE_FIELD, (b"", None))
    try:
        options = _options(form, content)
        outcome = await run_in_threadpool(
            import_file,
            services(request).ledger,
            content,
            user.context(),
            file_name=file_name or "upload",
            **options,
        )
    except FormErrors as failure:
        return _upload_form(request, form, failure.by_field, status=422)
    except errors.CsvControlTotalsMissing:  # said in the words of this form, beside its fields
        return _upload_form(request, form, _csv_totals_missing(form), status=422)
    except errors.ImportRefused as error:
        services(request).metrics.import_uploads.labels("refused").inc()
        summary = {"summary": sentence(error.message)}
        return _upload_form(request, form, summary, error.problems, 422)
    services(request).metrics.import_uploads.labels(
        "imported" if outcome.recorded else "duplicate"
    ).inc()
    if services(request).config.auto_link_statements:  # off the request: the page answers
        services(request).linking.after_import(outcome.link_from)
    done = "imported" if outcome.recorded else "known"
    return redirect(request, f"/imports/{outcome.batch_id}?done={done}")


def _options(form: dict[str, str], content: bytes) -> dict[str, object]:
    """The import's options from the form: a format (else detected), and a CSV's totals."""
    if not content:
        raise FormErrors({FILE_FIELD: "Choose the file to import"})
    problems = {}
    options: dict[str, object] = {"file_format": form["file_format"] or None}
    if form["file_format"] and form["file_format"] not in list(ImportFormat):
        problems["file_format"] = "Choose a format from the list"
    if form["expect_total"]:
        try:
            options["expect_total_pence"] = pence_from(form["expect_total"])
        except FormErrors:
            problems["expect_total"] = "Enter the file's total in pounds, like 1250.00"
    if form["expect_count"]:
        if form["expect_count"].isdigit():
            options["expect_count"] = int(form["expect_count"])
        else:
            problems["expect_count"] = "Enter the number of payments in the file, like 42"
    if problems:
        raise FormErrors(problems)
    return options


def _csv_totals_missing(form: dict[str, str]) -> dict[str, str]:
    """A CSV has no trailer: the officer types its total and count, from the paying-in slip
    or the sender's covering note, so that a file cut short is refused."""
    found = {}
    if not form["expect_total"]:
        found["expect_total"] = "Enter the CSV file's total in pounds, like 1250.00"
    if not form["expect_count"]:
        found["expect_count"] = "Enter the number of payments in the CSV file, like 42"
    return found


@router.get("/{batch_text}")
def one_import(
    request: Request, batch_text: str, done: str | None = None, line: int | None = None
) -> Response:
    user = user_allowed(request, READERS, "see imported files")
    user.access.require_whole_ledger("an import")
    return _import_page(request, _batch_id(batch_text), done=done, done_line=line)


def _batch_id(text: str) -> UUID:
    """The import an address names. A hand-typed address that names none (not an id) is
    refused as an unknown import is, with the page's own 404 saying what to do, not
    FastAPI's JSON about the path."""
    try:
        return UUID(text)
    except ValueError:
        shown = text if len(text) <= 40 else f"{text[:40]}..."
        raise errors.ImportBatchNotFound(
            f"there is no import {shown!r}: an import's address ends with its id, like "
            f"{PREFIX}/imports/9ff8e10d-9559-5d86-886a-5b928e4878e7. Find it in the list of "
            "imports"
        ) from None


def _import_page(request: Request, batch_id: UUID, status: int = 200, **context: Any) -> Response:
    batch = get_import(services(request).ledger, batch_id)
    context.setdefault("form", {})
    # Only a bank statement's lines wait for a person's check (reconciliation.check_line).
    statement = batch["file_format"] in OpenLines.FORMATS
    return render(
        request, "import.html", status, batch=batch, new_key=new_key, statement=statement, **context
    )


def _line_number(request: Request, batch_id: UUID, text: str) -> int | None:
    """The line a form's address names, when it is one of the import's money lines (a
    hand-typed address may name any): None otherwise. An unknown import is refused as on
    its page (404)."""
    lines = import_line_numbers(services(request).ledger, batch_id)
    if not text.isdigit() or not 1 <= int(text) <= MAX_IMPORT_LINES:
        return None
    return int(text) if int(text) in lines else None


def _no_such_line(request: Request, batch_id: UUID, text: str) -> Response:
    shown = text if len(text) <= 12 else f"{text[:12]}..."
    message = (
        f"This import has no money line {shown}: use the forms beside its lines below. "
        "Nothing was changed."
    )
    return _import_page(request, batch_id, 422, errors={"summary": message})


@router.post("/{batch_text}/lines/{line_text}/unlink")
async def unlink(request: Request, batch_text: str, line_text: str) -> Response:
    """Undo a statement line's late link, as POST /reconciliation/unlinks: the line's own
    receipt is counted again (in suspense), and it waits on the exceptions report again.
    A refusal (no reason, undone already, someone else at the same moment, no such line)
    is shown on the page, with nothing stored; the same form sent twice undoes once."""
    user, form = await posted_form(request, STAFF, "undo a statement line's link")
    user.access.require_whole_ledger("undoing a statement line's link")
    batch_id = _batch_id(batch_text)
    line = await run_in_threadpool(_line_number, request, batch_id, line_text)
    if line is None:
        return await run_in_threadpool(_no_such_line, request, batch_id, line_text)
    field = f"unlink_reason_{line}"

    def command(ctx: CommandContext) -> dict[str, Any]:
        if not form.get(field):
            raise FormErrors({field: "Enter why the link is wrong, like: a payer's own transfer"})
        try:
            body = form_model(UnlinkIn, batch_id=batch_id, line=line, reason=form[field])
        except FormErrors as failure:
            raise FormErrors({field: next(iter(failure.by_field.values()))}) from None
        undone = unlink_line(services(request).ledger, batch_id, line, ctx, body.reason)
        return {"undone": [item.to_dict() for item in undone], "position": None}

    return await _line_form(request, user, batch_id, line, form, command, "unlinked", field)


@router.post("/{batch_text}/lines/{line_text}/link")
async def link_again(request: Request, batch_text: str, line_text: str) -> Response:
    """A person links a line whose link was undone, by the same rules as `reconcile link
    --batch ID --line N` (a pairing undone before included)."""
    user, form = await posted_form(request, STAFF, "link a statement line")
    user.access.require_whole_ledger("linking statement lines")
    batch_id = _batch_id(batch_text)
    line = await run_in_threadpool(_line_number, request, batch_id, line_text)
    if line is None:
        return await run_in_threadpool(_no_such_line, request, batch_id, line_text)

    def command(ctx: CommandContext) -> dict[str, Any]:
        links = link_counted_twice(services(request).ledger, ctx, (batch_id, line))
        return {"links": [found.to_dict() for found in links], "position": None}

    return await _line_form(request, user, batch_id, line, form, command, "linked")


@router.post("/{batch_text}/lines/{line_text}/choose")
async def choose(request: Request, batch_text: str, line_text: str) -> Response:
    """A person links a line that may pay in more than one record to the one they choose,
    saying why, as POST /reconciliation/choices (`reconcile choose`)."""
    user, form = await posted_form(request, STAFF, "choose what a statement line pays in")
    user.access.require_whole_ledger("linking statement lines")
    batch_id = _batch_id(batch_text)
    line = await run_in_threadpool(_line_number, request, batch_id, line_text)
    if line is None:
        return await run_in_threadpool(_no_such_line, request, batch_id, line_text)
    chosen, why = f"choice_{line}", f"choose_reason_{line}"

    def command(ctx: CommandContext) -> dict[str, Any]:
        missing = {}
        if not form.get(chosen):
            missing[chosen] = "Choose the record the line pays in"
        if not form.get(why):
            missing[why] = "Enter why, like: the remittance advice names that file"
        if missing:
            raise FormErrors(missing)
        try:
            # The radios' values are the candidates' keys: a receipt may be in two of them.
            body = form_model(
                ChoiceIn, batch_id=batch_id, line=line, candidate=form[chosen], reason=form[why]
            )
        except FormErrors as failure:
            fields = {"candidate": chosen, "reason": why}
            raise FormErrors(
                {fields.get(name, "summary"): text for name, text in failure.by_field.items()}
            ) from None
        links = choose_link(
            services(request).ledger,
            ctx,
            batch_id,
            line,
            None,
            body.reason,
            candidate=body.candidate,
        )
        return {"links": [found.to_dict() for found in links], "position": None}

    return await _line_form(request, user, batch_id, line, form, command, "chosen", why)


@router.post("/{batch_text}/lines/{line_text}/check")
async def check(request: Request, batch_text: str, line_text: str) -> Response:
    """A person says a line an import rule sent to a fund is right, as POST
    /reconciliation/checks (`reconcile check`): it leaves the exceptions report."""
    user, form = await posted_form(request, STAFF, "check a statement line")
    user.access.require_whole_ledger("checking a statement line")
    return await _check_form(request, user, form, batch_text, line_text, undo=False)


@router.post("/{batch_text}/lines/{line_text}/uncheck")
async def uncheck(request: Request, batch_text: str, line_text: str) -> Response:
    """A person undoes a line's check, as POST /reconciliation/unchecks (`reconcile
    uncheck`): it is back on the exceptions report."""
    user, form = await posted_form(request, STAFF, "undo a statement line's check")
    user.access.require_whole_ledger("undoing a statement line's check")
    return await _check_form(request, user, form, batch_text, line_text, undo=True)


async def _check_form(
    request: Request,
    user: ApiUser,
    form: dict[str, str],
    batch_text: str,
    line_text: str,
    *,
    undo: bool,
) -> Response:
    batch_id = _batch_id(batch_text)
    line = await run_in_threadpool(_line_number, request, batch_id, line_text)
    if line is None:
        return await run_in_threadpool(_no_such_line, request, batch_id, line_text)
    field = f"{'uncheck' if undo else 'check'}_reason_{line}"
    model, run = (UncheckIn, undo_line_check) if undo else (CheckIn, check_line)

    def command(ctx: CommandContext) -> dict[str, Any]:
        if not form.get(field):
            example = "the slip was another day's" if undo else "the till's paying-in slip matches"
            raise FormErrors({field: f"Enter why, like: {example}"})
        try:
            body = form_model(model, batch_id=batch_id, line=line, reason=form[field])
        except FormErrors as failure:
            raise FormErrors({field: next(iter(failure.by_field.values()))}) from None
        done = run(services(request).ledger, batch_id, line, ctx, body.reason)
        return done.to_dict() | {"position": None}

    done = "unchecked" if undo else "checked"
    return await _line_form(request, user, batch_id, line, form, command, done, field)


async def _line_form(
    request: Request,
    user: ApiUser,
    batch_id: UUID,
    line: int,
    form: dict[str, str],
    command: Callable[[CommandContext], dict[str, Any]],
    done: str,
    field: str = "summary",
) -> Response:
    """Run a line's command once per form (record_once); then the page saying what was
    done, or the page again with the refusal beside the line's form (422)."""
    result = await run_in_threadpool(record_once, request, user, form, command)
    if isinstance(result, StoredResponse):
        if done == "linked" and not result.body.get("links"):
            done = "nothing_linked"
        if done == "unchecked" and not result.body.get("on_report"):
            done = "unchecked_settled"
        return redirect(request, f"/imports/{batch_id}?done={done}&line={line}")
    problems = {field if name == "reason" else name: message for name, message in result.items()}
    return await run_in_threadpool(
        _import_page, request, batch_id, 422, errors=problems, form=form, failed_line=line
    )

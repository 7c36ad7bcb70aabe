"""Income files: the list of imports, one import with its lines, and the upload form, which
hands the file to the same application service as `POST /imports`."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from api.auth import READERS, STAFF
from api.routes_imports import FILE_FIELD, form_parts
from application.imports import get_import, import_file
from domain import errors
from domain.imports import ImportFormat, LineProblem
from projections import queries
from web.app import PREFIX, redirect, render
from web.pages import FormErrors, pence_from, require_csrf, sentence, services, user_allowed

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
    are the same batch (by SHA-256), and the second answer says it was imported before."""
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
    except errors.ImportRefused as error:
        services(request).metrics.import_uploads.labels("refused").inc()
        summary = {"summary": sentence(error.message)}
        return _upload_form(request, form, summary, error.problems, 422)
    services(request).metrics.import_uploads.labels(
        "imported" if outcome.recorded else "duplicate"
    ).inc()
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


@router.get("/{batch_id}")
def one_import(request: Request, batch_id: UUID, done: str | None = None) -> Response:
    user = user_allowed(request, READERS, "see imported files")
    user.access.require_whole_ledger("an import")
    batch = get_import(services(request).ledger, batch_id)
    return render(request, "import.html", batch=batch, done=done)

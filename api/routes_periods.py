"""End of day, month and year over HTTP: close a period, list closes, the GL export.

Thin: application.periods and application.gl_export decide; this translates.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from api.deps import Reader, ServicesDep, Supervisor, json_response
from api.routes_queries import Fresh
from api.schemas import Reason
from application.gl_export import export_day, gl_exports
from application.periods import close_period, closed_periods
from projections.gl_rows import ReadModelPostings

router = APIRouter()


class CloseIn(BaseModel):
    kind: Literal["day", "month", "year"] = Field(
        description="day, calendar month, or financial year (1 April to 31 March)"
    )
    day: date = Field(alias="date", description="any UK date in the period, like 2026-03-31")
    reason: Reason = Field(description="why it is closed, e.g. the sign-off")


class CloseOut(BaseModel):
    kind: str
    period: str = Field(description="2026-03-31, 2026-03, or 2025-26 for a financial year")
    first_day: str
    last_day: str
    closed_by: str
    closed_at: str
    reason: str


class ClosedOut(CloseOut):
    position: int


class GlExportOut(BaseModel):
    export_date: str
    cutoff_position: int
    previous_cutoff_position: int
    sha256: str
    lines_count: int
    exported_by: str
    exported_at: str
    closed_period: str | None


@router.post("/periods/closes", tags=["periods"], status_code=201, response_model=ClosedOut)
def close(body: CloseIn, svc: ServicesDep, user: Supervisor) -> Any:
    """Close the day, month or financial year holding `date`: afterwards nothing can take
    effect in it (409 period_closed names it). Final; only an ended period can be closed
    (409 period_not_ended), and not twice (409 period_already_closed). Roles: supervisor."""
    user.access.require_whole_ledger("closing a period")
    closed = close_period(svc.ledger, body.kind, body.day, user.context(), body.reason)
    return json_response(closed, 201, closed["position"])


@router.get("/periods/closes", tags=["periods"], response_model=list[CloseOut])
def closes(svc: ServicesDep, user: Reader) -> Any:
    """Every close, oldest first. Roles: officer, supervisor, auditor, reporting."""
    return closed_periods(svc.ledger)


@router.get(
    "/gl/export",
    tags=["periods"],
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}, "description": "the day's journal (CSV)"}},
)
def gl_export(
    svc: Fresh,
    user: Supervisor,
    day: Annotated[date, Query(alias="date", description="the UK business date exported")],
) -> Response:
    """A day that has ended as the general-ledger journal (docs/gl-export.md): recorded the
    first time, the identical file after that; the SHA-256 is in `GL-Export-SHA256`. Pass
    the position of the last command as min_position to have its movements in the file
    (what the read model has not applied comes as adjustments in the next export).
    Roles: supervisor."""
    user.access.require_whole_ledger("the general-ledger export")
    result = export_day(
        svc.ledger,
        ReadModelPostings(svc.read_engine),
        day,
        user.context(),
        svc.config.gl_control_codes,
        svc.config.gl_columns,
    )
    return Response(
        result.content,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="gl-{day.isoformat()}.csv"',
            "GL-Export-SHA256": result.record["sha256"],
        },
    )


@router.get("/gl/exports", tags=["periods"], response_model=list[GlExportOut])
def exports(svc: ServicesDep, user: Supervisor) -> Any:
    """Every day exported, in the order they were exported. Roles: supervisor."""
    user.access.require_whole_ledger("the general-ledger exports")
    return gl_exports(svc.ledger)

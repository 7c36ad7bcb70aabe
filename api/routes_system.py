"""Operations: liveness, readiness and metrics."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from api.deps import AnyUser, ServicesDep
from api.schemas import HealthOut, ReadyOut
from api.services import Services
from application.outages import Delay, delay_of
from projections import queries
from projections.business_figures import business_figures
from projections.ledger_view import uk_date
from projections.status import errors_total, stuck_projections

log = logging.getLogger(__name__)
router = APIRouter()


@router.get(
    "/health",
    tags=["operations"],
    response_model=HealthOut,
    responses={503: {"model": HealthOut, "description": "the database is unreachable"}},
)
def health(svc: ServicesDep) -> Any:
    """Liveness and database reachability. No authentication."""
    try:
        with svc.read_engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            read_position = queries.read_model_position(connection)
        event_position = svc.ledger.max_position()
    except Exception as error:  # any failure here means: report unhealthy, do not crash
        log.warning("health check failed: %s", str(error).splitlines()[0])
        return JSONResponse(
            {
                "status": "degraded",
                "database": _database_state(error),
                "event_position": None,
                "read_model_position": None,
            },
            status_code=503,
        )
    return {
        "status": "ok",
        "database": "ok",
        "event_position": event_position,
        "read_model_position": read_position,
    }


@router.get(
    "/health/ready",
    tags=["operations"],
    response_model=ReadyOut,
    responses={
        503: {
            "model": ReadyOut,
            "description": "the read model is stuck or not keeping up, or the database is down",
        }
    },
)
def ready(svc: ServicesDep) -> Any:
    """Readiness: is the read model keeping up with the event store? 503 when a projection
    is stuck at an event it cannot apply, or when the oldest event not yet in the read model
    was recorded longer ago than LEDGER_READY_MAX_LAG_SECONDS (no projector keeping up).
    `/health` stays the liveness check. No authentication."""
    try:
        lag = _projection_lag(svc)
    except Exception as error:  # any failure here means: not ready, do not crash
        log.warning("readiness check failed: %s", str(error).splitlines()[0])
        state = _database_state(error)
        return JSONResponse(
            {"status": "not_ready", "database": state, "reasons": [_DATABASE_REASONS[state]]},
            status_code=503,
        )
    reasons = [
        f"{s['projection']} cannot apply the event at position {s['error_position']} "
        f"(since {s['failing_since']}, {s['attempts']} attempts): {s['error']}"
        for s in lag["stuck"]
    ]
    limit_s = svc.config.ready_max_lag_seconds
    if lag["lag_seconds"] > limit_s:
        reasons.append(
            f"the read model is {'' if lag['lag_events_exact'] else 'up to '}"
            f"{lag['lag_events']} events and {lag['lag_seconds']:.0f} s "
            f"behind (limit {limit_s:g} s): is a projector running (`income-ledger project`)?"
        )
    body = {"status": "not_ready" if reasons else "ready", "database": "ok", **lag}
    body["reasons"] = reasons
    return JSONResponse(body, status_code=503 if reasons else 200)


# A database that answered but gave the check up is not down (application.outages.Delay).
_DATABASE_REASONS = {
    "unreachable": "database unreachable",
    "timeout": "the database gave the check up: it ran past its statement_timeout",
    "busy": "the database gave the check up: it waited too long for another process's lock "
    "(lock_timeout)",
    "conflict": "the database rolled the check back to settle a clash with another "
    "transaction (a deadlock or a serialization failure): it is up; check again",
}


def _database_state(error: Exception) -> str:
    delay = delay_of(error)
    if delay is None:
        return "unreachable"
    return {Delay.CANCELLED: "timeout", Delay.BUSY: "busy", Delay.CONFLICT: "conflict"}[delay]


def _projection_lag(svc: Services) -> dict[str, Any]:
    """Positions, events and seconds behind (the age of the oldest event not yet applied)."""
    with svc.read_engine.connect() as connection:
        read_position = queries.read_model_position(connection)
        stuck = [h.to_dict() for h in stuck_projections(connection)]
        errors = errors_total(connection)
    event_position = svc.ledger.max_position()
    lag_seconds = 0.0
    lag_events, exact = 0, True
    if event_position > read_position:
        first = next(svc.ledger.read_events(after=read_position, page_size=1), None)
        if first is not None:
            lag_seconds = max(0.0, (datetime.now(UTC) - first[1].timestamp).total_seconds())
        # Counted (positions can skip numbers), but only so far: probes come every few seconds.
        lag_events, exact = svc.ledger.events_behind(read_position)
    return {
        "event_position": event_position,
        "read_model_position": read_position,
        "lag_events": lag_events,
        "lag_events_exact": exact,
        "lag_seconds": round(lag_seconds, 3),
        "stuck": stuck,
        "projection_errors_total": errors,
    }


@router.get(
    "/metrics",
    tags=["operations"],
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
def metrics(svc: ServicesDep, user: AnyUser) -> Response:
    """Prometheus metrics: requests, latencies, latest event position, projection lag (events
    and seconds), projections stuck at an event they cannot apply, projection errors; money
    and receipts by channel, open suspense by age band, imported files (all read from the
    database, so every worker gives the same), and this worker's import uploads and GOV.UK
    Pay webhook failures. Roles: all."""
    lag = _projection_lag(svc)
    svc.metrics.event_position.set(lag["event_position"])
    svc.metrics.read_model_position.set(lag["read_model_position"])
    svc.metrics.projection_lag.set(lag["lag_events"])
    svc.metrics.projection_lag_seconds.set(lag["lag_seconds"])
    svc.metrics.projections_stuck.set(len(lag["stuck"]))
    svc.metrics.projection_errors.set(lag["projection_errors_total"])
    with svc.read_engine.connect() as connection:
        svc.metrics.business.update(business_figures(connection, uk_date(datetime.now(UTC))))
    return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)

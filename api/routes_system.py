"""Operations: health and metrics."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from api.app import AnyUser, ServicesDep
from api.schemas import HealthOut
from projections import queries

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
                "database": "unreachable",
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
    "/metrics",
    tags=["operations"],
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
def metrics(svc: ServicesDep, user: AnyUser) -> Response:
    """Prometheus metrics: requests, latencies, latest event position, projection lag.
    Roles: all."""
    with svc.read_engine.connect() as connection:
        read_position = queries.read_model_position(connection)
    event_position = svc.ledger.max_position()
    svc.metrics.event_position.set(event_position)
    svc.metrics.read_model_position.set(read_position)
    svc.metrics.projection_lag.set(max(0, event_position - read_position))
    return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)

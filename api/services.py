"""What the API needs from the rest of the system, handed over by the composition root."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy.engine import Engine

from api.auth import ApiKeys
from application.govuk_pay import SigningSecret
from application.ledger import IncomeLedger

MAX_BODY_BYTES = 64 * 1024
# A day's file of MAX_IMPORT_LINES lines of ~100 bytes fits with room to spare.
MAX_IMPORT_BYTES = 2 * 1024 * 1024
MAX_PAGE_SIZE = 500


@dataclass(frozen=True)
class ApiConfig:
    read_wait_seconds: float = 5.0
    govuk_pay_webhook_secret: str = ""
    govuk_pay_webhook_secrets: tuple[SigningSecret, ...] = ()
    govuk_pay_ledger_codes: dict[str, str] = field(default_factory=dict)
    max_body_bytes: int = MAX_BODY_BYTES
    max_import_bytes: int = MAX_IMPORT_BYTES
    ready_max_lag_seconds: float = 60.0


class Metrics:
    """Prometheus metrics, in a registry of the app's own (tests build many apps)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ledger_http_requests",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ledger_http_request_duration_seconds",
            "HTTP latency",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.event_position = Gauge(
            "ledger_event_position", "latest event store position", registry=self.registry
        )
        self.read_model_position = Gauge(
            "ledger_read_model_position", "read model (projection) position", registry=self.registry
        )
        self.projection_lag = Gauge(
            "ledger_projection_lag_events",
            "events recorded but not yet in the read model",
            registry=self.registry,
        )
        self.projection_lag_seconds = Gauge(
            "ledger_projection_lag_seconds",
            "age of the oldest event not yet in the read model (0 when caught up)",
            registry=self.registry,
        )
        self.projections_stuck = Gauge(
            "ledger_projections_stuck",
            "projections stopped at an event they cannot apply (0 when healthy)",
            registry=self.registry,
        )
        self.projection_errors = Gauge(
            "ledger_projection_errors",
            "failed attempts to apply an event, over the ledger's life (from the database)",
            registry=self.registry,
        )


ReplayFunction = Callable[[datetime, datetime | None, str | None], dict[str, Any]]


@dataclass
class Services:
    ledger: IncomeLedger
    read_engine: Engine
    api_keys: ApiKeys
    config: ApiConfig
    metrics: Metrics = field(default_factory=Metrics)
    replay: ReplayFunction | None = None

"""What the API needs from the rest of the system, handed over by the composition root."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine

from api.auth import ApiKeys
from application.auto_link import DEFAULT_DELAY_S, LinkingWorker
from application.govuk_pay import SigningSecret
from application.ledger import IncomeLedger
from projections.business_figures import BusinessFigures
from projections.read_position import ReadModelWatch
from projections.replay import ReplayResult

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
    gl_control_codes: dict[str, str] = field(default_factory=dict)
    gl_columns: list[tuple[str, str]] | None = None
    auto_link_statements: bool = True
    auto_link_delay_seconds: float = DEFAULT_DELAY_S


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
        # The children of the two above per label values: labels() validates and locks.
        self._request_counts: dict[tuple[str, str, int], Any] = {}
        self._request_latencies: dict[tuple[str, str], Any] = {}
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
        # What happened to a request that stored nothing can only be counted by the worker
        # that answered it (the read-model figures below cover everything that was stored).
        self.import_uploads = Counter(
            "ledger_import_uploads",
            "files sent to POST /imports by result (this worker process)",
            ["result"],
            registry=self.registry,
        )
        self.webhook_failures = Counter(
            "ledger_govuk_pay_webhook_failures",
            "GOV.UK Pay webhook messages not applied, by reason (this worker process)",
            ["reason"],
            registry=self.registry,
        )
        self.business = BusinessCollector()
        self.registry.register(self.business)

    def count_request(self, method: str, route: str, status: int, duration_s: float) -> None:
        """One answered request in `requests` and `latency`."""
        count = self._request_counts.get((method, route, status))
        if count is None:
            count = self.requests.labels(method, route, str(status))
            self._request_counts[method, route, status] = count
        count.inc()
        latency = self._request_latencies.get((method, route))
        if latency is None:
            latency = self._request_latencies[method, route] = self.latency.labels(method, route)
        latency.observe(duration_s)


class BusinessCollector(Collector):
    """Money by channel, suspense by age and imported files, from the read model: the route
    reads them at each scrape (`update`), so every worker reports the same figures."""

    def __init__(self) -> None:
        self.figures: BusinessFigures | None = None

    def update(self, figures: BusinessFigures) -> None:
        self.figures = figures

    def collect(self) -> list[Metric]:
        def by_channel(name: str, documentation: str) -> CounterMetricFamily:
            return CounterMetricFamily(name, documentation, labels=["channel"])

        receipts = by_channel("ledger_receipts", "receipts recorded, by channel")
        received = by_channel("ledger_received_pence", "money received in pence, by channel")
        refunded = by_channel("ledger_refunded_pence", "money refunded in pence, by channel")
        reversed_ = by_channel("ledger_reversed_pence", "money reversed in pence, by channel")
        suspense_items = GaugeMetricFamily(
            "ledger_suspense_items", "open suspense items by age band", labels=["age_days"]
        )
        suspense_pence = GaugeMetricFamily(
            "ledger_suspense_pence", "open suspense in pence by age band", labels=["age_days"]
        )
        imported = CounterMetricFamily("ledger_imported_files", "files imported (recorded)")
        reversed_files = CounterMetricFamily(
            "ledger_imported_files_reversed", "imported files reversed whole"
        )
        if self.figures is not None:
            for channel in self.figures.channels:
                receipts.add_metric([channel.channel], channel.receipts_count)
                received.add_metric([channel.channel], channel.received_pence)
                refunded.add_metric([channel.channel], channel.refunds_pence)
                reversed_.add_metric([channel.channel], channel.reversals_pence)
            for band in self.figures.suspense:
                suspense_items.add_metric([band.age_days], band.items_count)
                suspense_pence.add_metric([band.age_days], band.amount_pence)
            imported.add_metric([], self.figures.imported_files_count)
            reversed_files.add_metric([], self.figures.reversed_files_count)
        return [
            receipts,
            received,
            refunded,
            reversed_,
            suspense_items,
            suspense_pence,
            imported,
            reversed_files,
        ]


ReplayFunction = Callable[[datetime, datetime | None, str | None], ReplayResult]


@dataclass
class Services:
    ledger: IncomeLedger
    read_engine: Engine
    api_keys: ApiKeys
    config: ApiConfig
    metrics: Metrics = field(default_factory=Metrics)
    replay: ReplayFunction | None = None
    # The linking runs after GOV.UK Pay messages and receipts, in a thread of their own
    # (LEDGER_AUTO_LINK_STATEMENTS); the app's shutdown stops it.
    linking: LinkingWorker = field(init=False)
    # Reads with min_position wait here, woken by the projector's announcements; the app's
    # shutdown ends its listening thread.
    read_model: ReadModelWatch = field(init=False)

    def __post_init__(self) -> None:
        self.linking = LinkingWorker(self.ledger, lambda: self.config.auto_link_delay_seconds)
        self.read_model = ReadModelWatch(self.read_engine)

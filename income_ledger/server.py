"""Wires the HTTP API: services from settings, the in-process projection, and uvicorn."""

from __future__ import annotations

import logging
import os
import secrets
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from sqlalchemy import create_engine

from api.app import create_app
from api.auth import ApiKeys, Role
from api.services import ApiConfig, Services
from application.gl_export import parse_control_codes
from application.govuk_pay import SigningSecret, parse_signing_secrets
from application.ledger import IncomeLedger
from domain.errors import InvalidRequest
from domain.gl_export import parse_columns
from income_ledger.bootstrap import (
    build_audit_chain,
    build_ledger,
    build_projection,
    read_events,
)
from income_ledger.logging_setup import logging_config
from income_ledger.settings import Settings
from income_ledger.version import version
from projections.replay import ReplayResult, replay_balances
from projections.runner import ProjectionRunner
from web.app import install as install_web
from web.sessions import WebConfig

log = logging.getLogger(__name__)
REPLAY_PAGE_SIZE = 5000


class ConfigurationError(ValueError):
    pass


def demo_api_keys() -> str:
    """A fresh random key per role, for the demo run only."""
    return ",".join(f"demo-{role.value}:{role.value}:{secrets.token_urlsafe(18)}" for role in Role)


def load_api_keys(settings: Settings, extra: str = "") -> ApiKeys:
    text = ",".join(part for part in (settings.api_keys, extra) if part)
    if settings.api_keys_file:
        path = Path(settings.api_keys_file)
        try:
            text += "\n" + path.read_text()
        except OSError as error:
            raise ConfigurationError(
                f"cannot read LEDGER_API_KEYS_FILE {path}: {error.strerror}"
            ) from None
    try:
        keys = ApiKeys.parse(text, parse_roles(settings.partial_refund_roles))
    except ValueError as error:
        raise ConfigurationError(f"LEDGER_API_KEYS: {error}") from None
    if not len(keys):
        raise ConfigurationError(
            "no API keys: set LEDGER_API_KEYS (user:role:token, comma separated) or "
            "LEDGER_API_KEYS_FILE, or run `income-ledger serve --demo-keys` to try it out"
        )
    return keys


def parse_roles(text: str) -> frozenset[Role]:
    """LEDGER_PARTIAL_REFUND_ROLES: role names, comma separated (none is allowed)."""
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    try:
        return frozenset(Role(name) for name in names)
    except ValueError:
        known = ", ".join(r.value for r in Role)
        raise ConfigurationError(
            f"LEDGER_PARTIAL_REFUND_ROLES: {text!r} names an unknown role; use some of {known}"
        ) from None


def parse_ledger_codes(text: str) -> dict[str, str]:
    mapping = {}
    for entry in (e.strip() for e in text.split(",") if e.strip()):
        ledger_code, sep, fund_code = entry.partition(":")
        if not sep or not ledger_code or not fund_code:
            raise ConfigurationError(
                f"LEDGER_GOVUK_PAY_LEDGER_CODES entry {entry!r} is not LEDGER_CODE:FUND"
            )
        mapping[ledger_code.strip()] = fund_code.strip().upper()
    return mapping


def gl_control_codes(settings: Settings) -> dict[str, str]:
    try:
        return parse_control_codes(settings.gl_control_codes)
    except InvalidRequest as error:
        raise ConfigurationError(error.message) from None


def gl_columns(settings: Settings) -> list[tuple[str, str]] | None:
    try:
        return parse_columns(settings.gl_columns)
    except InvalidRequest as error:
        raise ConfigurationError(error.message) from None


def signing_secrets(settings: Settings) -> tuple[SigningSecret, ...]:
    try:
        return parse_signing_secrets(settings.govuk_pay_webhook_secrets)
    except ValueError as error:
        raise ConfigurationError(f"LEDGER_GOVUK_PAY_WEBHOOK_SECRETS: {error}") from None


def api_config(settings: Settings) -> ApiConfig:
    return ApiConfig(
        read_wait_seconds=settings.read_wait_seconds,
        ready_max_lag_seconds=settings.ready_max_lag_seconds,
        govuk_pay_webhook_secret=settings.govuk_pay_webhook_secret,
        govuk_pay_webhook_secrets=signing_secrets(settings),
        govuk_pay_ledger_codes=parse_ledger_codes(settings.govuk_pay_ledger_codes),
        max_import_bytes=settings.max_import_bytes,
        gl_control_codes=gl_control_codes(settings),
        gl_columns=gl_columns(settings),
        auto_link_statements=settings.auto_link_statements,
        auto_link_delay_seconds=settings.auto_link_delay_seconds,
    )


def web_config(settings: Settings) -> WebConfig:
    config = WebConfig.from_setting(settings.session_secret, settings.session_idle_minutes)
    if config.secret_generated:
        log.info(
            "LEDGER_SESSION_SECRET is not set: web sessions end when this process stops "
            "and do not span workers"
        )
    return config


def build_services(settings: Settings, ledger: IncomeLedger, api_keys: ApiKeys) -> Services:
    def replay(as_at: datetime, known_at: datetime | None, fund: str | None) -> ReplayResult:
        return replay_balances(
            read_events(ledger, page_size=REPLAY_PAGE_SIZE),
            as_at=as_at,
            known_at=known_at,
            fund_code=fund,
        )

    # Queries only: each statement sees what is committed when it starts, as it would in a
    # READ COMMITTED transaction, without the BEGIN and ROLLBACK round trips.
    # pool_pre_ping: a connection PostgreSQL terminated is replaced before use, not failed on.
    read_engine = create_engine(
        settings.database_url, pool_pre_ping=True, isolation_level="AUTOCOMMIT"
    )
    return Services(
        ledger=ledger,
        read_engine=read_engine,
        api_keys=api_keys,
        config=api_config(settings),
        replay=replay,
    )


WORKER_HEALTHCHECK_S = 60


def runs_projections(settings: Settings) -> bool:
    if settings.run_projections is not None:
        return settings.run_projections
    return not settings.is_postgres


def app_from_environment() -> FastAPI:
    """The app factory uvicorn calls in each worker process: everything from LEDGER_* settings.

    On SQLite (or with LEDGER_RUN_PROJECTIONS) each worker also runs the projection in a
    thread; the runner lock lets one of them work while the others stand by.
    """
    settings = Settings()
    ledger = build_ledger(settings)
    services = build_services(settings, ledger, load_api_keys(settings))
    runner = None
    if runs_projections(settings):
        runner = ProjectionRunner(
            build_projection(settings, ledger),
            companions=[build_audit_chain(settings, ledger)],
            idle_wait_s=0.5,
        )
        runner.start_thread()

    def close() -> None:
        if runner is not None:
            runner.stop()
        services.read_engine.dispose()
        ledger.close()

    app = create_app(services, on_shutdown=close)
    install_web(app, services, web_config(settings))
    app.version = version()  # the OpenAPI description is built later, on first request
    return app


def serve(settings: Settings, host: str, port: int, extra_keys: str = "", workers: int = 1) -> None:
    """Run uvicorn with `workers` processes, each building the app from the environment.

    Extra (demo) keys reach the workers through LEDGER_API_KEYS; a key file stays a file.
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    if extra_keys:
        os.environ["LEDGER_API_KEYS"] = ",".join(k for k in (settings.api_keys, extra_keys) if k)
    if workers > 1 and not settings.session_secret:
        # One secret for this server's workers, so a web session works on each of them; it
        # still ends with the server (LEDGER_SESSION_SECRET keeps sessions across restarts).
        os.environ["LEDGER_SESSION_SECRET"] = secrets.token_urlsafe(32)
    options: dict[str, Any] = {
        "factory": True,
        "host": host,
        "port": port,
        "workers": workers,
        # Applied by uvicorn in this process and again in each worker process.
        "log_config": logging_config(settings),
        "access_log": False,  # the ledger's middleware writes its own
    }
    if workers == 1:
        uvicorn.run("income_ledger.server:app_from_environment", **options)
        return
    # uvicorn restarts a worker that does not answer its health check in time (5 s by default),
    # and one still importing the app on a busy machine does not: it was restarted forever.
    options["timeout_worker_healthcheck"] = WORKER_HEALTHCHECK_S
    config = uvicorn.Config("income_ledger.server:app_from_environment", **options)
    Multiprocess(config, sockets=[tcp_socket(config.bind_socket())]).run()


def tcp_socket(sock: socket.socket) -> socket.socket:
    """The same listening socket, declared with protocol IPPROTO_TCP.

    With several workers uvicorn binds the socket itself, with protocol 0, and hands it to
    the workers; asyncio sets TCP_NODELAY only on accepted sockets whose protocol is
    IPPROTO_TCP, so Nagle's algorithm held back each response's body until the client's
    delayed ACK of its headers: about 40 ms on every request of a keep-alive connection.
    (With one worker asyncio creates the socket, declared TCP.)
    """
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return sock
    declared = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
    declared.set_inheritable(True)
    return declared

"""Logging for every process of the ledger: CLI commands, `project`, `serve` and each of its
worker processes. One line per record on stderr, as JSON for a log collector
(LEDGER_LOG_FORMAT=json) or as text for a person (console). Times are UTC. A record logged
while serving an HTTP request carries the request's id.
"""

from __future__ import annotations

import json
import logging
import logging.config
from datetime import UTC, datetime
from typing import Any

from api.request_context import current_request_id
from income_ledger.settings import LogSettings

# Attributes every LogRecord has; any other attribute came from `extra=` and is a field.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "request_id",
    "color_message",  # uvicorn's coloured copy of the message
    "taskName",
}


def _utc_time(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RequestIdFilter(logging.Filter):
    """Stamps each record with the id of the HTTP request it was logged for, if any."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, pid, request_id, the record's
    `extra` fields, and the exception's traceback as one string."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _utc_time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            line["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                line.setdefault(key, value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    """`2026-03-31T10:00:00.123Z WARNING projections.runner [request id]: message`."""

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        where = f"{record.name} [{request_id}]" if request_id else record.name
        text = f"{_utc_time(record)} {record.levelname} {where}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return text


FORMATTERS = {"json": JsonFormatter, "console": ConsoleFormatter}


def logging_config(settings: LogSettings) -> dict[str, Any]:
    """A `logging.config.dictConfig` configuration. uvicorn applies it in each worker
    process too (it is handed over with the rest of uvicorn's configuration), and its own
    loggers go through the same handler."""
    formatter = FORMATTERS[settings.log_format]
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": f"{__name__}.RequestIdFilter"}},
        "formatters": {"ledger": {"()": f"{__name__}.{formatter.__name__}"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "ledger",
                "filters": ["request_id"],
            }
        },
        "root": {"level": settings.log_level, "handlers": ["stderr"]},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            # The ledger's middleware writes the access log, with the request id and user.
            "uvicorn.access": {"handlers": [], "propagate": False},
            # `db upgrade` says which revisions it applied; Alembic's own INFO lines (its
            # dialect, and "non-transactional DDL" for SQLite, untrue here) would mislead.
            "alembic": {"level": "WARNING" if settings.log_level != "DEBUG" else "DEBUG"},
            # mt-940 logs its pattern matching of every field at INFO, and a field it cannot
            # read as ERROR lines of regular expressions: the import's refusal says which
            # line and what to fix in words (domain.statements), so only DEBUG shows them.
            "mt940": {"level": "DEBUG" if settings.log_level == "DEBUG" else "CRITICAL"},
        },
    }


def configure_logging(settings: LogSettings) -> None:
    logging.config.dictConfig(logging_config(settings))

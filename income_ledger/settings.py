"""Settings come from environment variables prefixed LEDGER_ (documented in the README)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from api.auth import DEFAULT_PARTIAL_REFUND_ROLES
from api.services import MAX_IMPORT_BYTES
from application.auto_link import DEFAULT_DELAY_S
from application.ledger import DEFAULT_REFUND_APPROVAL_LIMIT_PENCE
from domain.errors import InvalidRequest
from domain.statements import COLLECTOR_NARRATIVES, PAYOUT_NARRATIVES, payout_patterns

DEFAULT_DATABASE_URL = "sqlite:///ledger.db"


class LogSettings(BaseSettings):
    """What every process needs before anything else: how to log."""

    model_config = SettingsConfigDict(env_prefix="LEDGER_", extra="ignore")

    log_format: Literal["console", "json"] = Field(
        "console", description="console (text for people) or json (one object per line)"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="the least severe records written (INFO includes the access log)"
    )

    @field_validator("log_format", mode="before")
    @classmethod
    def _format_in_any_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_in_any_case(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value


class Settings(LogSettings):
    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description="SQLAlchemy URL: sqlite:///path.db (embedded) or postgresql://user@host/db",
    )
    aggregate_cache_size: int = Field(
        1000, ge=0, description="aggregates kept in memory per process (0 turns caching off)"
    )
    read_processes: int | None = Field(
        None,
        ge=1,
        le=32,
        description="processes that `replay` and `audit verify` split the event log over "
        "(unset: one per CPU core, for every 250,000 events; set: each with 10,000 events or more)",
    )
    import_processes: int | None = Field(
        None,
        ge=1,
        le=32,
        description="processes that check and encode the lines of a large import "
        "(unset: one per CPU core; 1: all in the importing process)",
    )

    api_keys: str = Field(
        "", description="API keys, comma separated, each user:role:token", repr=False
    )
    api_keys_file: str | None = Field(
        None, description="A file of API keys, one user:role:token per line (production)"
    )
    govuk_pay_webhook_secret: str = Field(
        "", description="GOV.UK Pay webhook signing secret (Pay-Signature)", repr=False
    )
    govuk_pay_webhook_secrets: str = Field(
        "",
        description="GOV.UK Pay signing secrets of several services, with rotation: a comma "
        'list of secrets, or JSON {"service": ["secret", ...]}',
        repr=False,
    )
    govuk_pay_ledger_codes: str = Field(
        "", description="metadata.ledger_code to fund code mapping, e.g. R1010:CT,R2010:HRA"
    )
    gl_control_codes: str = Field(
        "",
        description="general-ledger export: codes of the control accounts as JSON, e.g. "
        '{"cash": "1100", "cash:govuk_pay": "1105", "vat": "2200"} (docs/gl-export.md)',
    )
    gl_columns: str = Field(
        "",
        description="general-ledger export: the finance system's columns, HEADER=COLUMN comma "
        "separated, e.g. Date=export_date,Account=gl_code,Debit=debit,Credit=credit",
    )
    refund_approval_limit_pence: int = Field(
        DEFAULT_REFUND_APPROVAL_LIMIT_PENCE,
        ge=0,
        description="refunds on one payment adding up to more than this (pence) need a "
        "second person's approval",
    )
    partial_refund_roles: str = Field(
        ",".join(sorted(DEFAULT_PARTIAL_REFUND_ROLES)),
        description="roles that may refund part of what a payment (or one allocation) holds, "
        "comma separated; the others may refund all of it only",
    )
    read_wait_seconds: float = Field(
        5.0, ge=0, le=60, description="how long a query with min_position waits at most"
    )
    ready_max_lag_seconds: float = Field(
        60.0,
        gt=0,
        description="/health/ready fails when the oldest event not yet in the read model is older",
    )
    max_import_bytes: int = Field(
        MAX_IMPORT_BYTES,
        ge=64 * 1024,
        le=64 * 1024 * 1024,
        description="the largest file POST /imports accepts, in bytes (64 KiB to 64 MiB; "
        "other requests stay at 64 KiB)",
    )
    session_secret: str = Field(
        "",
        description="signs the web pages' session cookies; without it each process makes "
        "its own, so sessions end on restart and do not span workers",
        repr=False,
    )
    session_idle_minutes: int = Field(
        30, ge=1, le=24 * 60, description="a web session ends after this long without a request"
    )
    payout_narratives: str = Field(
        ",".join(PAYOUT_NARRATIVES),
        description="what a bank statement line's narrative holds when it is a card "
        "provider's payout, comma separated patterns compared by their letters in any case "
        "(GOV.UK PAY, GOVUK PAY): such lines may be parts of a split payout, and such a "
        "debit matching nothing yet is kept for a later link",
    )
    collector_narratives: str = Field(
        ",".join(COLLECTOR_NARRATIVES),
        description="the cash collectors' names a bank statement credit line's narrative "
        "holds when it is a collector's settlement, comma separated patterns compared by "
        "their letters in any case, each a whole word or words, or followed in its word by "
        "LTD, LIMITED, PLC or UK alone (ALLPAYLTD): such a line is never a payer's own transfer",
    )
    auto_link_statements: bool = Field(
        True,
        description="after an import of receipts, a GOV.UK Pay message that moves card "
        "money or a receipt recorded through POST /payments or `payments record`, link the "
        "statement lines imported before it that pay it in (as `reconcile link` does, for "
        "lines of the days concerned); false leaves it to that command",
    )
    auto_link_delay_seconds: float = Field(
        DEFAULT_DELAY_S,
        ge=0,
        le=300,
        description="the API's linking runs after receipts and GOV.UK Pay messages: at most "
        "one per this many seconds in a process, for everything recorded meanwhile",
    )
    run_projections: bool | None = Field(
        None, description="run the projections inside `serve` (default: yes on SQLite only)"
    )

    @field_validator("database_url")
    @classmethod
    def _known_backend(cls, url: str) -> str:
        if url.startswith("postgres://"):
            url = "postgresql://" + url.removeprefix("postgres://")
        if not url.startswith(("sqlite://", "postgresql://", "postgresql+psycopg2://")):
            raise ValueError(
                "LEDGER_DATABASE_URL must start with sqlite:// or postgresql:// "
                f"(got {url.split(':', 1)[0]}://...)"
            )
        return url

    @field_validator("payout_narratives", "collector_narratives")
    @classmethod
    def _payout_patterns_have_letters(cls, value: str, info: ValidationInfo) -> str:
        try:
            payout_patterns(value.split(","), collectors=info.field_name == "collector_narratives")
        except InvalidRequest as error:
            raise ValueError(error.message) from None
        return value

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")

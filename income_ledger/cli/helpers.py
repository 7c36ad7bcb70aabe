"""What every command of the `income-ledger` CLI shares: the consoles, the common options,
error handling, the ledger and command context, printing a result (JSON or for a person),
and parsing of the usual arguments. A command is then only its own logic: what it asks the
ledger and how a person reads the answer.

The command modules import this one and never each other, so no import goes in a circle.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, TypeVar
from uuid import UUID

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from application.ledger import CommandContext, IncomeLedger
from domain.errors import InvalidRequest, LedgerError
from domain.limits import (
    MAX_IDEMPOTENCY_KEY_LENGTH,
    UK,
    require_business_datetime,
    require_length,
)
from domain.money import pounds_to_pence
from income_ledger.bootstrap import DatabaseNotInitialised, build_ledger, connection_problem
from income_ledger.settings import Settings
from projections.runner import LockTimeout

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 70
EXIT_STUCK = 1  # a projection cannot apply an event: as `projections status` says it
EXIT_INTERRUPTED = 130  # the shell's convention for Ctrl-C

out = Console(emoji=False)  # account names like income:SUN:… are data, not emoji codes
err = Console(stderr=True, emoji=False)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
ActorOption = Annotated[
    str | None, typer.Option("--actor", help="Who is doing this (default: $LEDGER_ACTOR or user).")
]
KeyOption = Annotated[
    str | None,
    typer.Option("--idempotency-key", help="Makes a retry of the same command safe."),
]
TimeoutOption = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        min=0,
        help="Seconds to wait for the projection runner lock if another process holds it "
        "(default: wait, saying who holds it).",
    ),
]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why the money moves (required).")]
F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def fail(message: str, code: int = EXIT_USER_ERROR) -> typer.Exit:
    # The message is text, not markup: an error code like [payment_not_found] must show.
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def handle_errors(command: F) -> F:
    """Users see what went wrong and what to do, never a stack trace."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except LedgerError as error:
            raise fail(f"{error.message} [{error.code}]") from None
        except (DatabaseNotInitialised, LockTimeout) as error:
            raise fail(str(error)) from None
        except ValidationError as error:
            raise fail(f"invalid settings: {settings_problems(error)}") from None
        except Exception as error:
            if os.environ.get("LEDGER_DEBUG"):
                raise
            problem = _connection_problem(error)
            if problem:
                raise fail(problem) from None
            raise fail(
                f"unexpected {type(error).__name__}: {str(error).splitlines()[0][:300]} "
                "(set LEDGER_DEBUG=1 for details)",
                EXIT_INTERNAL_ERROR,
            ) from None

    return wrapper  # type: ignore[return-value]


def add_commands(group: typer.Typer, commands: Mapping[str, Callable[..., Any]]) -> None:
    """Register each command under its name (in this order in --help), its errors handled
    as every command's are."""
    for name, command in commands.items():
        group.command(name)(handle_errors(command))


def settings_problems(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())


def _connection_problem(error: Exception) -> str | None:
    try:
        return connection_problem(Settings(), error)
    except ValidationError:
        return None


def settings() -> Settings:
    return Settings()


def ledger() -> IncomeLedger:
    return build_ledger(settings())


def run(action: Callable[[IncomeLedger], T]) -> T:
    """Open the ledger, do one thing with it, and close it again."""
    with ledger() as led:
        return action(led)


def context(actor: str | None, idempotency_key: str | None = None) -> CommandContext:
    who = actor or os.environ.get("LEDGER_ACTOR") or f"cli:{getpass.getuser()}"
    # The same limit as an HTTP Idempotency-Key, so a key works the same at either edge.
    require_length("--idempotency-key", idempotency_key, MAX_IDEMPOTENCY_KEY_LENGTH)
    return CommandContext(actor=who, idempotency_key=idempotency_key)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def show(value: T, as_json: bool, for_people: Callable[[T], None]) -> None:
    """A command's result: JSON for scripts (--json), else printed for a person."""
    if as_json:
        print_json(value)
    else:
        for_people(value)


def counted(count: int, noun: str) -> str:
    """'1 receipt', '2 receipts': a count as a person writes it."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def say(text: str) -> None:
    """A line for a person: data as it is (no highlighting), wrapped by the terminal."""
    out.print(text, highlight=False, soft_wrap=True)


def uk_time(moment: str | datetime) -> str:
    """An aware ISO instant as a person in the UK reads it, like 30 Nov 2026 15:22 GMT."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.astimezone(UK).strftime("%-d %b %Y %H:%M %Z")


def uk_moment(moment: datetime) -> str:
    """A moment a report is as at, as a person in the UK reads it: the end of a UK day (what
    a bare date means) as "the end of 30 Nov 2026 (UK)", else to the second with its zone."""
    uk = moment.astimezone(UK)
    if (uk + timedelta(microseconds=1)).time() == time(0):
        return f"the end of {uk.strftime('%-d %b %Y')} (UK)"
    return uk.strftime("%-d %b %Y %H:%M:%S %Z")


def folding_table(*headers: str) -> Table:
    """A table whose cells fold rather than being cut: people copy ids out of them."""
    table = Table(*headers)
    for column in table.columns:
        column.overflow = "fold"
    return table


def parse_amount(text: str) -> int:
    return pounds_to_pence(text)


RECEIVED_AT_HELP = (
    "When received: ISO 8601 with a zone (2026-11-30T10:15:00Z), or a UK date (2026-11-30) "
    "meaning 12:00 UK time that day (now, if it is today); default now."
)


def parse_received_at(
    text: str | None, field: str, *, now: datetime | None = None
) -> datetime | None:
    """When money was received, as an officer types it: an ISO 8601 moment with a zone, or
    a bare UK date. A date means midday UK time that day (today: now), well inside the UK
    business day whatever the clocks do, which is all that the takings, cash-ups, periods
    and GL export go by."""
    if text is None:
        return None
    text = text.strip()
    now = now or datetime.now(UTC)
    try:
        day = date.fromisoformat(text)
    except ValueError:
        day = None
    if day is not None:
        if day > now.astimezone(UK).date():
            raise InvalidRequest(
                f"{field} {text} is after today's UK date: money cannot be received before "
                "it arrives"
            )
        if day == now.astimezone(UK).date():
            return require_business_datetime(now, field, now=now)
        noon = datetime.combine(day, time(12), tzinfo=UK).astimezone(UTC)
        return require_business_datetime(noon, field, now=now)
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(
            f"{field} {text!r} is not a date and time: write it like 2026-03-31T10:00:00Z, "
            "or a UK date like 2026-03-31 (12:00 that day)"
        ) from None
    return require_business_datetime(value, field, now=now)


def parse_payment_id(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise InvalidRequest(f"{text!r} is not a payment id (a UUID)") from None


def parse_account(text: str, option: str) -> tuple[str, str]:
    fund, sep, reference = text.partition(":")
    if not sep or not fund or not reference:
        raise InvalidRequest(f"{option} must be FUND:REFERENCE, like CT:12345679")
    return fund.upper(), reference


@contextlib.contextmanager
def progress_bar(total: int, what: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr for long runs (quiet when stderr is not a terminal)."""
    from rich.progress import Progress

    with Progress(console=err, transient=True, disable=not err.is_terminal) as progress:
        task = progress.add_task(what, total=total or None)
        yield lambda count: progress.advance(task, count)

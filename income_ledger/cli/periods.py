"""`income-ledger periods ...` and `income-ledger gl ...`: end of day, month and year (#11).

`periods close day|month|year DATE --reason` closes the period holding DATE; `periods list`
shows every close. `gl export DATE [--out FILE]` writes a day's general-ledger journal (the
same bytes every time); `gl list` shows every export.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import typer
from rich.markup import escape

from application.gl_export import export_day, gl_exports, parse_control_codes
from application.periods import close_period, closed_periods
from domain.errors import InvalidRequest
from domain.gl_export import parse_columns
from domain.limits import parse_query_date
from income_ledger.cli import helpers
from income_ledger.settings import Settings

periods_app = typer.Typer(
    help="Close days, months and financial years: periods close, periods list.",
    no_args_is_help=True,
)
gl_app = typer.Typer(
    help="The daily general-ledger journal for the finance system: gl export, gl list.",
    no_args_is_help=True,
)
# How long `gl export` waits for the read model to catch up before exporting what it has.
CATCH_UP_WAIT_S = 30.0


def register(app: typer.Typer) -> None:
    periods_app.command("close")(helpers.handle_errors(periods_close))
    periods_app.command("list")(helpers.handle_errors(periods_list))
    gl_app.command("export")(helpers.handle_errors(gl_export))
    gl_app.command("list")(helpers.handle_errors(gl_list))
    app.add_typer(periods_app, name="periods")
    app.add_typer(gl_app, name="gl")


def parse_date(text: str) -> date:
    return parse_query_date(text, "the day")


def periods_close(
    kind: Annotated[str, typer.Argument(help="day, month or year (April to March).")],
    day: Annotated[str, typer.Argument(help="Any UK date in the period, like 2026-03-31.")],
    reason: Annotated[str, typer.Option("--reason", help="Why it is closed (sign-off).")],
    actor: helpers.ActorOption = None,
    as_json: helpers.JsonOption = False,
) -> None:
    """Close the day, month or financial year holding DATE: nothing can take effect in it
    afterwards. A close is final; only a period that has ended can be closed."""
    close = helpers.run(
        lambda led: close_period(led, kind, parse_date(day), helpers.context(actor), reason)
    )
    helpers.show(close, as_json, _say_closed)


def _say_closed(close: dict[str, Any]) -> None:
    helpers.say(
        f"closed {close['kind']} {close['period']} ({close['first_day']} to "
        f"{close['last_day']}) by {escape(close['closed_by'])}"
    )


def periods_list(as_json: helpers.JsonOption = False) -> None:
    """Every close, oldest first."""
    helpers.show(helpers.run(closed_periods), as_json, _print_closes)


def _print_closes(closes: list[dict[str, Any]]) -> None:
    table = helpers.folding_table(
        "period", "kind", "from", "to", "closed by", "closed at", "reason"
    )
    for close in closes:
        table.add_row(
            close["period"],
            close["kind"],
            close["first_day"],
            close["last_day"],
            escape(close["closed_by"]),
            helpers.uk_time(close["closed_at"]),
            escape(close["reason"]),
        )
    helpers.out.print(table)


def gl_export(
    day: Annotated[str, typer.Argument(help="The UK business date, like 2026-03-31.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the CSV here (default: stdout).")
    ] = None,
    actor: helpers.ActorOption = None,
) -> None:
    """A day's general-ledger journal as CSV (docs/gl-export.md); recorded the first time,
    the identical file after that."""
    from income_ledger.bootstrap import build_projection
    from projections.gl_rows import ReadModelPostings

    settings = Settings()
    codes = parse_control_codes(settings.gl_control_codes)
    columns = parse_columns(settings.gl_columns)
    export_date = parse_date(day)
    # The file is made (beside --out, renamed into place) before the export is recorded: an
    # export recorded for a file that could not be written was a journal nobody received.
    with _file_for(out) as sink, helpers.ledger() as led:
        projection = build_projection(settings, led)
        try:
            _catch_up(projection, led.max_position())
            result = export_day(
                led,
                ReadModelPostings(projection.engine),
                export_date,
                helpers.context(actor),
                codes,
                columns,
            )
        finally:
            projection.engine.dispose()
        try:
            sink.write(result.content)
        except OSError as error:
            if out is None:
                raise
            raise _not_written(out, error) from None
    record = result.record
    helpers.err.print(
        f"{'exported' if result.first_time else 'exported again (the same file)'} "
        f"{record['export_date']}: {record['lines_count']} lines, SHA-256 {record['sha256']}",
        highlight=False,
        soft_wrap=True,
    )


@contextlib.contextmanager
def _file_for(out: Path | None) -> Iterator[BinaryIO]:
    """Standard output, or a new file beside `out` that replaces it when all is written
    (and is removed if anything fails): refused, saying why, before anything is recorded."""
    if out is None:
        yield sys.stdout.buffer
        sys.stdout.flush()
        return
    if out.is_dir():
        raise InvalidRequest(f"--out {out} is a directory: give a file name")
    try:
        sink = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below, on every path
            dir=out.parent, prefix=f".{out.name}.", delete=False
        )
    except OSError as error:
        raise InvalidRequest(f"cannot write {out}: {error.strerror}") from None
    try:
        with sink:
            yield sink
            _put_in_place(sink, out)
    finally:
        Path(sink.name).unlink(missing_ok=True)


def _put_in_place(sink: Any, out: Path) -> None:
    """The written file under its name: on disk first (after a crash the name holds the old
    file or the whole new one, never a part), with the mode a file written in place has."""
    try:
        sink.flush()
        os.fsync(sink.fileno())
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(sink.name, 0o666 & ~mask)
        Path(sink.name).replace(out)
    except OSError as error:
        raise _not_written(out, error) from None


def _not_written(out: Path, error: OSError) -> InvalidRequest:
    """The export is recorded by now: say so, and that running it again gives the file."""
    return InvalidRequest(
        f"cannot write {out}: {error.strerror}. The export is recorded; once that is "
        "fixed, run the same gl export again: it writes the same file"
    )


def _catch_up(projection: Any, position: int) -> None:
    """Bring the read model up to what is recorded, so the day's file is complete; a running
    `project` or `serve` may hold the runner lock, and then this waits for it (bounded).
    Anything still missing later comes as adjustment lines in the next export."""
    from projections.runner import LockTimeout, RunnerLock, wait_for_position

    if wait_for_position(projection.engine, position, 0):
        return
    try:
        with RunnerLock(projection.engine, "gl export").held(timeout_s=CATCH_UP_WAIT_S):
            projection.catch_up()
    except LockTimeout:
        wait_for_position(projection.engine, position, CATCH_UP_WAIT_S)


def gl_list(as_json: helpers.JsonOption = False) -> None:
    """Every day exported, in the order they were exported."""
    helpers.show(helpers.run(gl_exports), as_json, _print_exports)


def _print_exports(exports: list[dict[str, Any]]) -> None:
    table = helpers.folding_table("day", "lines", "exported by", "exported at", "closed", "SHA-256")
    for export in exports:
        table.add_row(
            export["export_date"],
            str(export["lines_count"]),
            escape(export["exported_by"]),
            helpers.uk_time(export["exported_at"]),
            export["closed_period"] or "",
            export["sha256"],
        )
    helpers.out.print(table)

"""`income-ledger import ...`: a day's income files (issue #10).

`import FILE` imports a file; `import list`, `import show BATCH_ID` and `import reverse
BATCH_ID` work on imports.
A refused file exits 2 and names every bad line (on stderr, or as JSON with --json).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import click
import typer
from rich.markup import escape
from rich.progress import MofNCompleteColumn
from rich.progress import Progress as RichProgress
from typer.core import TyperGroup

from application.imports import (
    ImportOutcome,
    Progress,
    get_import,
    import_file,
    list_imports,
    reverse_import,
)
from application.reconciliation import (
    REPORT_SECTIONS,
    LateLink,
    LineCheck,
    UndoneLink,
    candidates_text,
    check_line,
    choose_link,
    exceptions,
    exceptions_csv,
    link_after_recording,
    link_counted_twice,
    provider_lines_in_funds,
    undo_line_check,
    unlink_line,
)
from domain.errors import ImportRefused, InvalidRequest
from domain.imports import MAX_IMPORT_LINES
from domain.money import pounds_text, pounds_to_pence
from income_ledger.cli import helpers

DEFAULT_COMMAND = "file"
LINES_SHOWN = 500  # `import show` prints this many lines unless told (--first)


class _FileByDefault(TyperGroup):
    """`import FILE` means `import file FILE`: the everyday use needs no sub-command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = [DEFAULT_COMMAND, *args]
        return super().parse_args(ctx, args)


import_app = typer.Typer(
    cls=_FileByDefault,
    help="A day's income files: import FILE, import list, import show BATCH_ID, import "
    "reverse BATCH_ID.",
    no_args_is_help=True,
)


reconcile_app = typer.Typer(
    help="Bank reconciliation: reconcile link (statement lines counted twice), reconcile "
    "choose BATCH LINE --candidate KEY (a person picks what a line with several candidates pays "
    "in), reconcile unlink BATCH LINE (undo a wrong link), reconcile check BATCH LINE (a line "
    "an import rule sent to a fund is right), reconcile uncheck BATCH LINE, reconcile "
    "exceptions (unmatched lines, receipts, payouts), reconcile provider-lines (lines a fund "
    "took whose narrative names a provider).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    import_app.command(DEFAULT_COMMAND)(helpers.handle_errors(import_one))
    import_app.command("list")(helpers.handle_errors(imports_list))
    import_app.command("show")(helpers.handle_errors(imports_show))
    import_app.command("reverse")(helpers.handle_errors(imports_reverse))
    app.add_typer(import_app, name="import")
    reconcile_app.command("exceptions")(helpers.handle_errors(reconcile_exceptions))
    reconcile_app.command("link")(helpers.handle_errors(reconcile_link))
    reconcile_app.command("choose")(helpers.handle_errors(reconcile_choose))
    reconcile_app.command("unlink")(helpers.handle_errors(reconcile_unlink))
    reconcile_app.command("check")(helpers.handle_errors(reconcile_check))
    reconcile_app.command("uncheck")(helpers.handle_errors(reconcile_uncheck))
    reconcile_app.command("provider-lines")(helpers.handle_errors(reconcile_provider_lines))
    app.add_typer(reconcile_app, name="reconcile")


def import_one(
    file: Annotated[Path, typer.Argument(help="The file to import.")],
    file_format: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="allpay, csv, camt053, bai2 or mt940 (default: detected from the "
            "content: XML is camt053, a '01,' record bai2, a ':20:' field mt940, a "
            "'channel,...' header row csv, else allpay).",
        ),
    ] = None,
    expect_total: Annotated[
        str | None,
        typer.Option(help="CSV: the total of its receipts in pounds, like 1234.50 (required)."),
    ] = None,
    expect_count: Annotated[
        int | None, typer.Option(min=0, help="CSV: how many receipts it holds (required).")
    ] = None,
    actor: helpers.ActorOption = None,
    as_json: helpers.JsonOption = False,
) -> None:
    """Import a day's file whole, or refuse it naming every bad line; the same file twice
    records nothing the second time."""
    try:
        content = file.read_bytes()
    except OSError as error:
        raise InvalidRequest(f"cannot read {file}: {error.strerror}") from None
    total = pounds_to_pence(expect_total) if expect_total is not None else None
    with helpers.ledger() as led, import_progress(show=not as_json) as bar:
        try:
            outcome = import_file(
                led,
                content,
                helpers.context(actor),
                file_name=file.name,
                file_format=file_format,
                expect_total_pence=total,
                expect_count=expect_count,
                progress=bar,
            )
        except ImportRefused as error:
            raise _refused(error, as_json) from None
        links = link_after_recording(led, outcome.link_from) if _auto_link() else []
    if as_json:
        shown = {"recorded": outcome.recorded, "position": outcome.position}
        late = [link.to_dict() for link in links]
        helpers.print_json(shown | {"batch": outcome.batch, "late_links": late})
        return
    _print_outcome(outcome, as_json, "imported")
    if links:
        print_links(links)


def _auto_link() -> bool:
    return helpers.settings().auto_link_statements


@contextmanager
def import_progress(*, show: bool) -> Iterator[Progress | None]:
    """A progress bar on stderr for a person watching a long file, by stage (never in
    --json output, nor when stderr is not a terminal: a log or a pipe)."""
    if not show or not helpers.err.is_terminal:
        yield None
        return
    columns = (*RichProgress.get_default_columns(), MofNCompleteColumn())
    with RichProgress(*columns, console=helpers.err, transient=True) as bar:
        task = bar.add_task("importing", total=None)

        def report(stage: str, done: int, total: int | None) -> None:
            bar.update(task, description=stage, completed=done, total=total)

        yield report


def _refused(error: ImportRefused, as_json: bool) -> typer.Exit:
    problems = [problem.to_dict() for problem in error.problems]
    if as_json:
        helpers.print_json({"refused": True, "code": error.code, "problems": problems})
    helpers.err.print("[bold red]error:[/] the file was refused whole; nothing was recorded:")
    for problem in problems:
        where = f"line {problem['line']}" if problem["line"] else "file"
        helpers.err.print(
            f"  {where}: {escape(problem['reason'])}", highlight=False, soft_wrap=True
        )
    return typer.Exit(helpers.EXIT_USER_ERROR)


def imports_list(
    as_json: helpers.JsonOption = False,
) -> None:
    """Imports, newest first."""
    helpers.show(helpers.run(list_imports), as_json, _print_batches)


def _print_batches(batches: list[dict[str, Any]]) -> None:
    table = helpers.folding_table(
        "imported", "file", "format", "receipts", "total", "batch", "reversed"
    )
    for batch in batches:
        table.add_row(
            helpers.uk_time(batch["imported_at"]),
            escape(batch["file_name"]),
            batch["file_format"],
            str(batch["receipts_count"]),
            pounds_text(batch["receipts_pence"]),
            batch["batch_id"],
            "yes" if batch["reversed"] else "",
        )
    helpers.out.print(table)


def imports_show(
    batch_id: Annotated[str, typer.Argument(help="The import's batch id (import list).")],
    first: Annotated[
        int,
        typer.Option(
            "--first",
            min=1,
            max=MAX_IMPORT_LINES,
            help="Print this many of its lines at most (--json prints them all).",
        ),
    ] = LINES_SHOWN,
    as_json: helpers.JsonOption = False,
) -> None:
    """One import: who imported it and when, its totals, whether it was reversed, and each
    money line with what became of it and its statement links (--json: GET /imports/{id})."""
    parsed_id = _batch_id(batch_id)
    batch = helpers.run(lambda led: get_import(led, parsed_id))
    helpers.show(batch, as_json, lambda shown: _print_batch(shown, first))


def _print_batch(batch: dict[str, Any], first: int) -> None:
    say = helpers.say
    say(f"import {batch['batch_id']}")
    say(f"  file:      {escape(batch['file_name'])} ({batch['file_format']})")
    say(f"  imported:  {helpers.uk_time(batch['imported_at'])} by {escape(batch['imported_by'])}")
    say(f"  SHA-256:   {batch['sha256']}")
    say(
        f"  lines:     {batch['line_count']} (the file's control totals: "
        f"{helpers.counted(batch['control_count'], 'line')}, "
        f"{pounds_text(batch['control_total_pence'])})"
    )
    say(
        f"  receipts:  {batch['receipts_count']}, {pounds_text(batch['receipts_pence'])}"
        f"; returned cheques: {batch['returned_cheques_count']}"
    )
    if batch["reversed"]:
        say(
            f"  status:    reversed by {escape(batch['reversed_by'])}: "
            f"{escape(batch['reversal_reason'])} "
            f"({pounds_text(batch['reversed_pence'])} of its receipts)"
        )
    else:
        say("  status:    standing (not reversed)")
    table = helpers.folding_table("line", "reference", "amount", "outcome", "fund", "rule", "link")
    for line in batch["lines"][:first]:
        table.add_row(
            str(line["line"]),
            escape(line["reference"]),
            pounds_text(line["amount_pence"]),
            _line_outcome(line),
            line["fund_code"] or "",
            escape(_line_rule(line)),
            escape(_line_links(line)),
        )
    helpers.out.print(table)
    hidden = len(batch["lines"]) - first
    if hidden > 0:
        say(f"... and {hidden} more lines: --first {len(batch['lines'])} or --json shows them")


def _line_outcome(line: dict[str, Any]) -> str:
    """What became of the line, in a word or two: where its receipt went then (allocated,
    suspense), or what it paid in."""
    if line["late_link"]:
        return "reconciled later"
    if line["outcome"] == "recorded" and line["status"]:
        why = [line["suspense_reason"].replace("_", " ")] if line["suspense_reason"] else []
        why += ["link undone"] if line["undone_links"] else []
        words = line["status"].replace("_", " ")
        return f"{words} ({'; '.join(why)})" if why else words
    if line["outcome"] == "known" and line["kind"] != "receipt":
        return "returned before (nothing reversed)"
    return line["outcome"].replace("_", " ")


def _line_rule(line: dict[str, Any]) -> str:
    """The rule that decided the line: an import rule, or the matching rule of its link."""
    rule = line["import_rule"]
    if rule:
        return f"import rule {rule['rule_id']} v{rule['rule_version']} ({rule['rule_name']})"
    link = line["late_link"] or (line if line["rule"] else None)
    return f"match: {link['rule'].replace('_', ' ')}" if link else ""


def _line_links(line: dict[str, Any]) -> str:
    said = []
    if line["candidates"]:
        said.append(f"needs a person: it may pay in {candidates_text(line['candidates'])}")
    if line["rule"]:
        said.append(f"pays in {line['matched']}")
    if line["late_link"]:
        said.append(f"pays in {line['late_link']['matched']} (linked after the import)")
    said += [f"undone: was {link['matched']}" for link in line["undone_links"]]
    if line.get("checked"):
        check = line["checked"]
        said.append(f"checked by {check['checked_by']}: {check['reason']}")
    said += [
        f"check undone by {undone['undone_by']}: {undone['undo_reason']}"
        for undone in line.get("checks_undone", [])
    ]
    return "; ".join(said)


def imports_reverse(
    batch_id: Annotated[str, typer.Argument(help="The import's batch id (import list).")],
    reason: Annotated[str, typer.Option("--reason", help="Why the whole import is reversed.")],
    actor: helpers.ActorOption = None,
    as_json: helpers.JsonOption = False,
) -> None:
    """Reverse what remains of every receipt an import made, in one transaction (a bank
    statement's links undone first, as `reconcile unlink` does)."""
    parsed_id = _batch_id(batch_id)
    with helpers.ledger() as led:
        outcome = reverse_import(led, parsed_id, helpers.context(actor), reason)
    _print_outcome(outcome, as_json, "reversed")


def _batch_id(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise InvalidRequest(f"{text!r} is not a batch id (a UUID)") from None


def _print_outcome(outcome: ImportOutcome, as_json: bool, verb: str) -> None:
    batch: dict[str, Any] = outcome.batch
    if as_json:
        helpers.print_json(
            {"recorded": outcome.recorded, "position": outcome.position, "batch": batch}
        )
        return
    if not outcome.recorded:
        # A reversed import's file (or a copy of it) is answered as that import too: said,
        # or the person takes the day's income as counted when its receipts are reversed.
        reversed_by = (
            f", since reversed by {batch['reversed_by']} "
            f"({escape(batch['reversal_reason'] or '')}): its receipts do not count"
            if batch["reversed"]
            else ""
        )
        helpers.out.print(
            f"already imported: {escape(batch['file_name'])} (batch {batch['batch_id']}, "
            f"by {batch['imported_by']} at {helpers.uk_time(batch['imported_at'])}"
            f"{reversed_by}); nothing recorded",
            highlight=False,
            soft_wrap=True,
        )
        return
    if batch["reversed"]:
        helpers.out.print(
            f"reversed import {batch['batch_id']} ({escape(batch['file_name'])}): "
            f"{pounds_text(batch['reversed_pence'])} of its receipts reversed",
            highlight=False,
            soft_wrap=True,
        )
        return
    helpers.out.print(
        f"{verb} {escape(batch['file_name'])}: batch {batch['batch_id']}, "
        f"{helpers.counted(batch['receipts_count'], 'receipt')}, "
        f"{pounds_text(batch['receipts_pence'])}"
        + (
            f", {helpers.counted(batch['returned_cheques_count'], 'returned cheque')} reversed"
            if batch["returned_cheques_count"]
            else ""
        ),
        highlight=False,
        soft_wrap=True,
    )


def reconcile_link(
    batch_id: Annotated[
        str | None,
        typer.Option("--batch", help="Link this statement's line only (with --line)."),
    ] = None,
    line: Annotated[
        int | None,
        typer.Option(
            "--line", help="The line to link: a person's say, even for a pairing undone before."
        ),
    ] = None,
    actor: helpers.ActorOption = None,
    as_json: helpers.JsonOption = False,
) -> None:
    """Link statement lines recorded as their own receipts before the channel's file of the
    same money arrived, and reverse those receipts as counted twice (README, "A day's files")."""
    if (batch_id is None) != (line is None):
        raise InvalidRequest("give both --batch and --line to link one line, or neither")
    wanted = None if batch_id is None or line is None else (_batch_id(batch_id), line)
    with helpers.ledger() as led:
        links = link_counted_twice(led, helpers.context(actor), wanted)
    helpers.show([link.to_dict() for link in links], as_json, lambda _: print_links(links))


def print_links(links: list[LateLink]) -> None:
    for link in links:
        receipt = (
            f"; its receipt {link.reversed_payment_id} reversed as counted twice"
            if link.reversed_payment_id
            else " (a negative payout)"
        )
        helpers.out.print(
            f"linked {escape(link.file_name)} line {link.line} "
            f"({pounds_text(link.amount_pence)}) to {escape(link.link.matched)}{receipt}",
            highlight=False,
            soft_wrap=True,
        )
    if not links:
        helpers.out.print("nothing to link: no statement line pays in a later channel record")


def reconcile_choose(
    batch_id: Annotated[str, typer.Argument(help="The statement's batch id (import list).")],
    line: Annotated[int, typer.Argument(help="The statement line's number.")],
    reason: Annotated[str, typer.Option("--reason", help="Why this candidate.")],
    candidate: Annotated[
        str | None,
        typer.Option(
            "--candidate",
            help="The key of the candidate chosen (reconcile exceptions and import show "
            "list each line's candidates with their keys).",
        ),
    ] = None,
    receipt: Annotated[
        str | None,
        typer.Option(
            "--receipt",
            help="Instead of --candidate: a receipt only the candidate chosen pays in (the "
            "one reconcile exceptions gives for it, if any).",
        ),
    ] = None,
    actor: helpers.ActorOption = None,
    as_json: helpers.JsonOption = False,
) -> None:
    """Link a statement line that may pay in more than one record to the one you choose,
    saying why (no run guesses it); undone like any link, by reconcile unlink (README, "A
    day's files")."""
    parsed_id = _batch_id(batch_id)
    with helpers.ledger() as led:
        links = choose_link(
            led, helpers.context(actor), parsed_id, line, receipt, reason, candidate=candidate
        )
    helpers.show([link.to_dict() for link in links], as_json, lambda _: print_links(links))


def reconcile_unlink(
    batch_id: Annotated[str, typer.Argument(help="The statement's batch id (import list).")],
    line: Annotated[int, typer.Argument(help="The statement line's number.")],
    reason: Annotated[str, typer.Option("--reason", help="Why the link is wrong.")],
    actor: helpers.ActorOption = None,
    as_json: helpers.JsonOption = False,
) -> None:
    """Undo a wrong late link (reconcile link): the line's receipt is counted again, in
    suspense; the receipts it paid in are no longer paid in; no run links that pairing again
    (README, "A day's files")."""
    parsed_id = _batch_id(batch_id)
    with helpers.ledger() as led:
        undone = unlink_line(led, parsed_id, line, helpers.context(actor), reason)
    helpers.show([u.to_dict() for u in undone], as_json, lambda _: _print_undone(undone))


def _print_undone(undone: list[UndoneLink]) -> None:
    for item in undone:
        restored = (
            f"its receipt {item.restored_payment_id} is counted again, in suspense"
            if item.restored_payment_id
            else "it waits on the exceptions report again"
        )
        helpers.out.print(
            f"unlinked {escape(item.file_name)} line {item.line} from "
            f"{escape(item.link.matched)}; {restored}",
            highlight=False,
            soft_wrap=True,
        )


def reconcile_check(
    batch_id: Annotated[str, typer.Argument(help="The statement's batch id (import list).")],
    line: Annotated[int, typer.Argument(help="The statement line's number.")],
    reason: Annotated[
        str, typer.Option("--reason", help="What you checked, and why the line is right.")
    ],
    actor: helpers.ActorOption = None,
    as_json: helpers.JsonOption = False,
) -> None:
    """Say a statement line an import rule sent to a fund is right (the payer's money for
    that fund, not another channel's counted twice): recorded with who, when and why, and
    the line leaves the exceptions report; reconcile uncheck undoes it (README, "A day's
    files")."""
    parsed_id = _batch_id(batch_id)
    with helpers.ledger() as led:
        done = check_line(led, parsed_id, line, helpers.context(actor), reason)
    helpers.show(done.to_dict(), as_json, lambda _: _print_check(done))


def reconcile_uncheck(
    batch_id: Annotated[str, typer.Argument(help="The statement's batch id (import list).")],
    line: Annotated[int, typer.Argument(help="The statement line's number.")],
    reason: Annotated[str, typer.Option("--reason", help="Why the check was wrong.")],
    actor: helpers.ActorOption = None,
    as_json: helpers.JsonOption = False,
) -> None:
    """Undo a line's check (reconcile check): it is back on the exceptions report; the
    history keeps the check and its undoing."""
    parsed_id = _batch_id(batch_id)
    with helpers.ledger() as led:
        done = undo_line_check(led, parsed_id, line, helpers.context(actor), reason)
    helpers.show(done.to_dict(), as_json, lambda _: _print_check(done))


def _print_check(done: LineCheck) -> None:
    if done.checked:
        what = "checked: it is off the exceptions report"
    elif done.on_report:
        what = "check undone: it is on the exceptions report again"
    else:
        what = (
            "check undone: its receipt was since refunded in full or reversed, so it stays "
            "off the exceptions report"
        )
    helpers.out.print(
        f"{escape(done.file_name)} line {done.line} ({pounds_text(done.amount_pence)}) {what}",
        highlight=False,
        soft_wrap=True,
    )


def reconcile_provider_lines(
    most: Annotated[
        int, typer.Option("--most", min=1, max=1_000, help="List this many lines at most.")
    ] = 100,
    as_json: helpers.JsonOption = False,
) -> None:
    """Read-only: statement lines a fund took by their reference whose narrative names a
    payment provider by the ledger's names now (a payout taken into a fund before the
    provider rule, or before a name was added to LEDGER_COLLECTOR_NARRATIVES), with where
    their money is now: transfer or reverse each one as you find (README, "A day's files")."""
    found = helpers.run(lambda led: provider_lines_in_funds(led, most))
    helpers.show(found, as_json, _print_provider_lines)


def _print_provider_lines(found: dict[str, Any]) -> None:
    table = helpers.folding_table("import", "line", "date", "amount", "narrative", "now in")
    for row in found["lines"]:
        table.add_row(
            row["batch_id"],
            str(row["line"]),
            row["booking_date"] or "",
            pounds_text(row["amount_pence"]),
            escape(row["narrative"]),
            escape(
                ", ".join(
                    f"{held['fund_code']} {held['reference']} {pounds_text(held['amount_pence'])}"
                    for held in row["funds"]
                )
            ),
        )
    helpers.out.print(table)
    shown = len(found["lines"])
    helpers.out.print(
        f"{helpers.counted(found['total'], 'statement line')} a fund took "
        + ("names" if found["total"] == 1 else "name")
        + " a provider"
        + (f" ({shown} shown: --most for more)" if shown < found["total"] else ""),
        highlight=False,
    )


def reconcile_exceptions(
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV for a spreadsheet.")] = False,
    as_json: helpers.JsonOption = False,
) -> None:
    """Statement lines someone still has to settle (not a payer's own transfer a fund took
    by its reference, nor a line an officer has since allocated in full, refunded or
    reversed, nor one an import rule sent to a fund that a person checked, reconcile check:
    `import show` lists every line), receipts no statement line has paid in
    yet, card payments no payout has paid in, and open card disputes, oldest first, by age."""
    report = helpers.run(exceptions)
    if as_csv:
        typer.echo(exceptions_csv(report), nl=False)
        return
    helpers.show(report, as_json, _print_exceptions)


def _print_exceptions(report: dict[str, Any]) -> None:
    table = helpers.folding_table(
        "kind", "age", "date", "amount", "channel", "reference", "payment"
    )
    for row in (row for section in REPORT_SECTIONS for row in report[section]):
        table.add_row(
            row["kind"].replace("_", " "),
            row["age_band"],
            row["date"],
            pounds_text(row["amount_pence"]),
            row["channel"],
            escape(row["reference"]),
            row["payment_id"] or f"line {row['line']}",
        )
    helpers.out.print(table)
    for row in report["unmatched_statement_lines"]:
        if row["candidates"]:
            helpers.out.print(
                f"line {row['line']} of import {row['batch_id']} "
                f"({pounds_text(row['amount_pence'])}) needs a person: it may pay in "
                f"{escape(candidates_text(row['candidates']))}. Choose: income-ledger "
                f"reconcile choose {row['batch_id']} {row['line']} --candidate KEY --reason ...",
                highlight=False,
                soft_wrap=True,
            )
    for entry in report["summary"]:
        helpers.out.print(
            f"{entry['kind'].replace('_', ' ')}s {entry['age_band']}: {entry['count']}, "
            f"{pounds_text(entry['amount_pence'])}",
            highlight=False,
        )
    if not report["summary"]:
        helpers.out.print(
            "no exceptions: every statement line is linked, is a payer's own transfer a "
            "fund took by its reference, or was decided by an officer (`import show` lists "
            "every line), and every receipt is paid in",
            highlight=False,
            soft_wrap=True,
        )

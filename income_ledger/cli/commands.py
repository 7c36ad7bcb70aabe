"""The `income-ledger` command line: set-up, funds, payments, the read model and the demo.

People read the default output; scripts pass --json and read pence, never pounds. Errors say
what to fix and exit non-zero; nothing partial is saved.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from application.ledger import CommandContext, IncomeLedger, Outcome, RecordPayment
from application.payer_details import PayerDetails
from application.periods import relating_to
from application.reconciliation import LateLink, link_after_recording
from domain.errors import InvalidRequest, LedgerError
from domain.funds import Fund
from domain.limits import UK, parse_query_moment
from domain.money import pounds_text
from domain.payment import ReversalKind
from domain.references import ReferenceProblem, normalise_reference
from domain.sample_chart import SAMPLE_FUNDS
from income_ledger.bootstrap import (
    build_audit_chain,
    build_ledger,
    build_projection,
    event_source,
    init_database,
    safe_url,
)
from income_ledger.cli import audit, cashup, imports, periods, rules, schema
from income_ledger.cli.helpers import (
    EXIT_INTERNAL_ERROR,
    EXIT_INTERRUPTED,
    EXIT_STUCK,
    EXIT_USER_ERROR,
    RECEIVED_AT_HELP,
    ActorOption,
    JsonOption,
    KeyOption,
    ReasonOption,
    TimeoutOption,
    context,
    err,
    fail,
    handle_errors,
    ledger,
    out,
    parse_account,
    parse_amount,
    parse_payment_id,
    parse_received_at,
    print_json,
    progress_bar,
    run,
    settings,
    settings_problems,
    show,
    uk_time,
)
from income_ledger.settings import LogSettings, Settings
from projections.runner import LockTimeout

if TYPE_CHECKING:
    from income_ledger.demo import DemoInterrupted


app = typer.Typer(
    help="Income ledger for UK local authorities.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(
    help="The database: init, upgrade, current (its schema), backup.", no_args_is_help=True
)
funds_app = typer.Typer(help="The chart of funds.", no_args_is_help=True)
payments_app = typer.Typer(
    help="Receipts and every later move of their money.", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(funds_app, name="funds")
app.add_typer(payments_app, name="payments")
projections_app = typer.Typer(help="The read model: status, rebuild, verify.", no_args_is_help=True)
app.add_typer(projections_app, name="projections")


def _print_version(wanted: bool) -> None:
    if wanted:
        from income_ledger.version import version

        out.print(f"income-ledger {version()}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    _version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    pass


# ---- db -----------------------------------------------------------------------------------


@db_app.command("backup")
@handle_errors
def db_backup(
    file: Annotated[Path, typer.Argument(help="The new file to write the copy to.")],
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace FILE if it exists.")
    ] = False,
) -> None:
    """Copy a SQLite ledger to FILE, safely while `serve` or `project` runs (SQLite's online
    backup). For PostgreSQL, print the pg_dump command to use instead, and exit 2."""
    from income_ledger.backup import BackupRefused, backup_sqlite, pg_dump_command

    settings = Settings()
    if settings.is_postgres:
        print(pg_dump_command(settings.database_url, file))
        raise fail(
            "db backup copies SQLite databases; back up PostgreSQL with the pg_dump command "
            "above (it asks for the password, or reads PGPASSWORD or ~/.pgpass)"
        )
    try:
        backup = backup_sqlite(settings.database_url, file, overwrite=overwrite)
    except BackupRefused as error:
        raise fail(str(error)) from None
    out.print(
        f"backed up {safe_url(settings)} to {backup.path}: events up to position "
        f"{backup.event_position}, {backup.size_bytes} bytes",
        highlight=False,
        soft_wrap=True,
    )


# ---- funds --------------------------------------------------------------------------------


@funds_app.command("list")
@handle_errors
def funds_list(as_json: JsonOption = False) -> None:
    """List the chart of funds."""
    show(run(lambda led: led.funds()), as_json, _print_funds)


def _print_funds(funds: list[dict[str, Any]]) -> None:
    table = Table("code", "name", "group", "VAT", "GL", "reference rule", "status")
    for fund in funds:
        rule = Fund.from_dict(fund).reference_rule.describe()
        table.add_row(
            fund["code"],
            fund["name"],
            fund["group"] or "-",
            f"{fund['vat_code']} {fund['vat_rate_basis_points'] / 100:g}%",
            f"{fund['cost_centre']}/{fund['ledger_code']}",
            rule,
            "enabled" if fund["enabled"] else "disabled",
        )
    out.print(table)


@funds_app.command("show")
@handle_errors
def funds_show(code: str, as_json: JsonOption = False) -> None:
    """Show one fund."""
    show(run(lambda led: led.fund(code)), as_json, _print_fields)


def _print_fields(fund: dict[str, Any]) -> None:
    for key, value in fund.items():
        out.print(f"{key:>22}: {value}", highlight=False)


@funds_app.command("check-reference")
@handle_errors
def funds_check_reference(code: str, reference: str, as_json: JsonOption = False) -> None:
    """Say whether a reference passes a fund's rule, and which check character the rule
    expects (to try a rule described as data before payers use it). Exit 1 when it fails."""
    fund = Fund.from_dict(run(lambda led: led.fund(code)))
    verdict = reference_verdict(fund, reference)
    if as_json:
        print_json(verdict)
    elif verdict["problem"] is None:
        out.print(f"{verdict['reference']} is valid for fund {fund.code}", highlight=False)
    else:
        expected = verdict["expected_check_character"]
        hint = f": expected {expected}" if expected else ""
        out.print(
            f"{verdict['reference']} is not valid for fund {fund.code} ({verdict['problem']}"
            f"{hint}); the rule is {verdict['rule']}",
            highlight=False,
        )
    if verdict["problem"] is not None:
        raise typer.Exit(1)


def reference_verdict(fund: Fund, reference: str) -> dict[str, Any]:
    normalised = normalise_reference(reference)
    rule = fund.reference_rule
    problem = rule.problem(normalised)
    expected = None
    if problem is ReferenceProblem.CHECK_DIGIT and rule.check_digit is not None:
        expected = rule.check_digit.check_character(normalised[:-1])
    return {
        "fund_code": fund.code,
        "reference": normalised,
        "problem": None if problem is None else problem.value,
        "expected_check_character": expected,
        "rule": rule.describe(),
    }


@funds_app.command("add")
@handle_errors
def funds_add(
    file: Annotated[
        typer.FileText | None,
        typer.Option("--file", help="A JSON fund definition (see docs), or - for stdin."),
    ] = None,
    sample: Annotated[
        bool, typer.Option("--sample", help="Add the sample chart of funds.")
    ] = False,
    actor: ActorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add a fund from a JSON definition (or a list of them), or the whole sample chart with
    --sample. All of them are added, or (if one is refused) none."""
    if file is None and not sample:
        raise InvalidRequest("give --file FUND.json or --sample")
    ctx = context(actor)
    codes = run(lambda led: _add_sample_funds(led, ctx) if sample else _add_funds(led, file, ctx))
    said = f"added funds: {', '.join(codes) or 'none (all present)'}"
    show({"added": codes}, as_json, lambda _: out.print(said))


def _add_sample_funds(led: IncomeLedger, ctx: CommandContext) -> list[str]:
    existing = {fund["code"] for fund in led.funds()}
    added = [f for f in SAMPLE_FUNDS if f.code not in existing]
    led.add_funds(added, ctx, reason="sample chart of funds")
    return [fund.code for fund in added]


def _add_funds(led: IncomeLedger, file: typer.FileText | None, ctx: CommandContext) -> list[str]:
    assert file is not None
    try:
        data = json.load(file)
    except json.JSONDecodeError as error:
        raise InvalidRequest(f"the fund file is not valid JSON: {error}") from None
    except UnicodeDecodeError:
        raise InvalidRequest("the fund file is not UTF-8 text: save it as UTF-8") from None
    definitions = data if isinstance(data, list) else [data]
    funds = [Fund.from_input(item) for item in definitions]
    led.add_funds(funds, ctx)
    return [fund.code for fund in funds]


@funds_app.command("amend")
@handle_errors
def funds_amend(
    code: str,
    changes: Annotated[list[str], typer.Option("--set", help="FIELD=VALUE (JSON value or text)")],
    reason: ReasonOption,
    vat_rate_effective_from: Annotated[
        str | None,
        typer.Option(
            "--vat-rate-effective-from",
            help="When a new vat_rate_basis_points starts to apply: a UK date (its start) "
            "or ISO 8601 with zone; default now. Movements take the rate in force at their "
            "effective date.",
        ),
    ] = None,
    actor: ActorOption = None,
) -> None:
    """Change a fund's name, VAT, ledger codes or reference rule (recorded as an event)."""
    parsed: dict[str, Any] = {}
    for change in changes:
        name, sep, value = change.partition("=")
        if not sep:
            raise InvalidRequest(f"--set takes FIELD=VALUE, got {change!r}")
        try:
            parsed[name] = json.loads(value)
        except json.JSONDecodeError:
            parsed[name] = value
    run(
        lambda led: led.amend_fund(
            code,
            parsed,
            context(actor),
            reason,
            parse_query_moment(
                vat_rate_effective_from, "--vat-rate-effective-from", end_of_day=False
            )
            if vat_rate_effective_from
            else None,
        )
    )
    out.print(f"fund {code.upper()} amended")


@funds_app.command("disable")
@handle_errors
def funds_disable(code: str, reason: ReasonOption, actor: ActorOption = None) -> None:
    """Stop a fund taking new money (its history stays)."""
    run(lambda led: led.disable_fund(code, context(actor), reason))
    out.print(f"fund {code.upper()} disabled")


@funds_app.command("enable")
@handle_errors
def funds_enable(code: str, reason: ReasonOption, actor: ActorOption = None) -> None:
    """Let a disabled fund take money again."""
    run(lambda led: led.enable_fund(code, context(actor), reason))
    out.print(f"fund {code.upper()} enabled")


# ---- payments -----------------------------------------------------------------------------


def print_outcome(outcome: Outcome, as_json: bool, verb: str) -> None:
    if as_json:
        print_json(
            {"recorded": outcome.recorded, "position": outcome.position, "payment": outcome.payment}
        )
        return
    note = "" if outcome.recorded else " (already recorded: nothing new)"
    out.print(f"{verb} payment {outcome.payment_id}{note}", highlight=False)
    print_payment(outcome.payment)


def change_payment(
    verb: str,
    payment_id: str,
    actor: str | None,
    idempotency_key: str | None,
    as_json: bool,
    change: Callable[[IncomeLedger, UUID, CommandContext], Outcome],
) -> None:
    """Change a payment (`change(ledger, payment id, context)`), then print what it is now."""
    outcome = run(
        lambda led: change(led, parse_payment_id(payment_id), context(actor, idempotency_key))
    )
    print_outcome(outcome, as_json, verb)


def print_payment(payment: dict[str, Any]) -> None:
    out.print(
        f"  {payment['channel']} {pounds_text(payment['amount_pence'])} "
        f"ref {payment['reference'] or '-'} received {uk_time(payment['received_at'])}",
        highlight=False,
    )
    status = payment["status"]
    if payment.get("suspense_reason"):
        status += f" ({payment['suspense_reason']})"
    out.print(
        f"  status {status}: allocated {pounds_text(payment['allocated_pence'])}, "
        f"unallocated {pounds_text(payment['unallocated_pence'])}, "
        f"refunded {pounds_text(payment['refunded_pence'])}, "
        f"reversed {pounds_text(payment['reversed_pence'])}",
        highlight=False,
    )
    details = dict(payment.get("provider_details") or {})
    # Kept with the provider's details, but said by the officer who recorded a late receipt.
    period = details.pop("relates_to_period", None)
    if period is not None:
        out.print(
            f"  relates to closed period {escape(str(period))} (late receipt)", highlight=False
        )
    said = ", ".join(f"{key} {value}" for key, value in details.items() if value is not None)
    if said:
        out.print(f"  provider: {escape(said)}", highlight=False)
    for line in payment["allocations"]:
        vat = f" (VAT {pounds_text(line['vat_pence'])})" if line["vat_pence"] else ""
        out.print(
            f"    {line['fund_code']} {line['reference']}: "
            f"{pounds_text(line['amount_pence'])}{vat}",
            highlight=False,
        )
    for pending in payment["pending_refunds"]:
        out.print(
            f"  refund waiting for approval: request {pending['request_id']}, "
            f"{pounds_text(pending['amount_pence'])} from {refund_source(pending)}, "
            f"asked by {pending['requested_by']} ({pending['reason']})",
            highlight=False,
        )


@payments_app.command("record")
@handle_errors
def payments_record(
    channel: Annotated[
        str,
        typer.Option(
            help="cash, cheque, card, govuk_pay, telephone, "
            "allpay, paypoint, bank_transfer or direct_debit"
        ),
    ],
    amount: Annotated[str, typer.Option(help="Amount in pounds, like 12.50.")],
    reference: Annotated[str, typer.Option(help="The payer's reference.")] = "",
    fund: Annotated[str | None, typer.Option(help="Fund code hint, like CT.")] = None,
    received_at: Annotated[str | None, typer.Option(help=RECEIVED_AT_HELP)] = None,
    external_id: Annotated[
        str | None, typer.Option(help="The channel's id for this payment.")
    ] = None,
    payer_name: Annotated[str | None, typer.Option(help="Kept apart from the money.")] = None,
    payer_email: Annotated[str | None, typer.Option()] = None,
    relates_to_period: Annotated[
        str | None,
        typer.Option(help="A late receipt for a closed period (periods list), like 2026-03."),
    ] = None,
    office: Annotated[
        str | None, typer.Option(help="The cash office that took it (offices list), with --till.")
    ] = None,
    till: Annotated[str | None, typer.Option(help="The office's till that took it.")] = None,
    actor: ActorOption = None,
    idempotency_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record a receipt: it is allocated if its reference fits one fund, else held in suspense."""
    command = RecordPayment(
        channel=channel,
        amount_pence=parse_amount(amount),
        reference=reference,
        received_at=parse_received_at(received_at, "--received-at"),
        fund_code=fund,
        external_id=external_id,
        payer=PayerDetails(name=payer_name, email=payer_email),
        office_code=office,
        till_code=till,
    )
    with ledger() as led:
        outcome = led.record_payment(
            relating_to(led, command, relates_to_period), context(actor, idempotency_key)
        )
        # Cash keyed in the morning after its deposit reached the bank: a statement
        # imported before may hold the line that pays it in (as after POST /payments).
        links = _link_after_receipt(led, outcome) if outcome.recorded else []
    if as_json:
        print_json(
            {
                "recorded": outcome.recorded,
                "position": outcome.position,
                "payment": outcome.payment,
                "late_links": [link.to_dict() for link in links],
            }
        )
        return
    print_outcome(outcome, as_json, "recorded")
    if links:
        imports.print_links(links)


def _link_after_receipt(led: IncomeLedger, outcome: Outcome) -> list[LateLink]:
    """The statement lines imported before this receipt that pay it in, linked as
    `reconcile link` links them, for lines booked from its UK day on: in a transaction of
    its own after the receipt's, so the receipt stands whatever becomes of the run."""
    if not settings().auto_link_statements:
        return []
    received = datetime.fromisoformat(outcome.payment["received_at"]).astimezone(UK).date()
    return link_after_recording(led, received)


@payments_app.command("allocate")
@handle_errors
def payments_allocate(
    payment_id: str,
    lines: Annotated[list[str], typer.Option("--line", help="FUND:REFERENCE:POUNDS, repeatable")],
    reason: Annotated[
        str, typer.Option(help="Why (e.g. remittance advice received).")
    ] = "allocated",
    actor: ActorOption = None,
    idempotency_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Allocate unallocated money to one or more funds and references."""
    parsed = []
    for line in lines:
        parts = line.split(":")
        if len(parts) != 3:
            raise InvalidRequest(f"--line takes FUND:REFERENCE:POUNDS, got {line!r}")
        parsed.append((parts[0].upper(), parts[1], parse_amount(parts[2])))
    change_payment(
        "allocated",
        payment_id,
        actor,
        idempotency_key,
        as_json,
        lambda led, pid, ctx: led.allocate(pid, parsed, ctx, reason),
    )


@payments_app.command("transfer")
@handle_errors
def payments_transfer(
    payment_id: str,
    source: Annotated[str, typer.Option("--from", help="FUND:REFERENCE the money leaves")],
    target: Annotated[str, typer.Option("--to", help="FUND:REFERENCE the money goes to")],
    amount: Annotated[str, typer.Option(help="Pounds, like 12.50.")],
    reason: ReasonOption,
    actor: ActorOption = None,
    idempotency_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Move allocated money to another fund or reference (both halves are recorded)."""
    with ledger() as led:
        outcome = led.transfer(
            parse_payment_id(payment_id),
            parse_account(source, "--from"),
            parse_account(target, "--to"),
            parse_amount(amount),
            context(actor, idempotency_key),
            reason,
        )
    print_outcome(outcome, as_json, "transferred on")


@payments_app.command("refund")
@handle_errors
def payments_refund(
    payment_id: str,
    amount: Annotated[str, typer.Option(help="Pounds, like 12.50.")],
    reason: ReasonOption,
    source: Annotated[
        str | None, typer.Option("--from", help="FUND:REFERENCE when the payment is split")
    ] = None,
    actor: ActorOption = None,
    idempotency_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Pay money back to the payer (never more than remains). When the payment's refunds
    would add up to more than the approval limit (LEDGER_REFUND_APPROVAL_LIMIT_PENCE), the
    refund waits for a second person: see approve-refund and decline-refund."""
    with ledger() as led:
        outcome = led.refund(
            parse_payment_id(payment_id),
            parse_amount(amount),
            context(actor, idempotency_key),
            reason,
            source=parse_account(source, "--from") if source else None,
        )
    request_id = outcome.refund_request_id
    if as_json:
        print_json(
            {
                "recorded": outcome.recorded,
                "position": outcome.position,
                "refund": "waiting_for_approval" if request_id else "refunded",
                "refund_request_id": request_id,
                "payment": outcome.payment,
            }
        )
    elif request_id is None:
        print_outcome(outcome, as_json, "refunded on")
    else:
        print_outcome(outcome, as_json, "refund requested on")
        out.print(
            f"waiting for approval: refunds on this payment would exceed "
            f"{pounds_text(led.refund_approval_limit_pence)}; a second person runs "
            f"`income-ledger payments approve-refund {outcome.payment_id} {request_id}` "
            "(or decline-refund)",
            highlight=False,
        )


@payments_app.command("approve-refund")
@handle_errors
def payments_approve_refund(
    payment_id: str,
    request_id: str,
    actor: ActorOption = None,
    idempotency_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Approve a refund that waits for a second person; the money moves now, from where it
    was requested. The person who asked for it cannot approve it."""
    change_payment(
        f"refund {request_id} approved and paid on",
        payment_id,
        actor,
        idempotency_key,
        as_json,
        lambda led, pid, ctx: led.approve_refund(pid, request_id, ctx),
    )


@payments_app.command("decline-refund")
@handle_errors
def payments_decline_refund(
    payment_id: str,
    request_id: str,
    reason: ReasonOption,
    actor: ActorOption = None,
    idempotency_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Decline a refund that waits for approval, saying why; no money moves."""
    change_payment(
        f"refund {request_id} declined on",
        payment_id,
        actor,
        idempotency_key,
        as_json,
        lambda led, pid, ctx: led.decline_refund(pid, request_id, ctx, reason),
    )


@payments_app.command("pending-refunds")
@handle_errors
def payments_pending_refunds(as_json: JsonOption = False) -> None:
    """Refunds waiting for a second person's approval, on every payment, oldest first."""
    show(run(lambda led: led.pending_refunds()), as_json, _print_pending_refunds)


def _print_pending_refunds(waiting: list[dict[str, Any]]) -> None:
    if not waiting:
        out.print("no refunds wait for approval")
        return
    table = Table()
    # The ids are what an approver copies into approve-refund: fold every cell, never cut it.
    for header in ("requested at", "payment", "request", "amount", "from", "by", "reason"):
        table.add_column(header, overflow="fold")
    for item in waiting:
        table.add_row(
            uk_time(item["requested_at"]),
            item["payment_id"],
            item["request_id"],
            pounds_text(item["amount_pence"]),
            refund_source(item),
            escape(item["requested_by"]),
            escape(item["reason"]),
        )
    out.print(table)


def refund_source(pending: dict[str, Any]) -> str:
    if pending["fund_code"] is None:
        return "unallocated"
    return f"{pending['fund_code']} {pending['reference']}"


@payments_app.command("reverse")
@handle_errors
def payments_reverse(
    payment_id: str,
    kind: Annotated[str, typer.Option(help=", ".join(kind.value for kind in ReversalKind))],
    reason: ReasonOption,
    actor: ActorOption = None,
    idempotency_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Reverse all that remains of a payment that never really arrived."""
    change_payment(
        "reversed",
        payment_id,
        actor,
        idempotency_key,
        as_json,
        lambda led, pid, ctx: led.reverse(pid, kind, ctx, reason),
    )


@payments_app.command("note")
@handle_errors
def payments_note(
    payment_id: str,
    text: str,
    actor: ActorOption = None,
    idempotency_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add a note to a payment's history."""
    change_payment(
        "noted on",
        payment_id,
        actor,
        idempotency_key,
        as_json,
        lambda led, pid, ctx: led.note(pid, text, ctx),
    )


@payments_app.command("erase-payer")
@handle_errors
def payments_erase_payer(
    payment_id: str,
    reason: Annotated[str, typer.Option(help="Why, e.g. the payer's erasure request.")],
    actor: ActorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Erase the payer's personal details (for a supervisor); the money's history stays.

    The erasure is recorded in the payment's history. Running it again erases nothing more."""
    outcome = run(
        lambda led: led.erase_payer_details(parse_payment_id(payment_id), context(actor), reason)
    )
    if as_json:
        print_outcome(outcome, as_json, "erased payer details of")
        return
    if outcome.recorded:
        message = f"erased the payer details of payment {outcome.payment_id}"
    else:
        message = f"payment {outcome.payment_id} holds no payer details: nothing erased"
    out.print(message, highlight=False, soft_wrap=True)


@payments_app.command("show")
@handle_errors
def payments_show(payment_id: str, as_json: JsonOption = False) -> None:
    """A payment with its allocations, status and whole history."""
    show(run(lambda led: led.get_payment(parse_payment_id(payment_id))), as_json, _print_history)


def _why(entry: dict[str, Any]) -> str:
    """An event's reason; a note has none of its own: what it says is the point of it."""
    return entry["reason"] or (entry["details"] or {}).get("text") or ""


def _print_history(payment: dict[str, Any]) -> None:
    out.print(f"payment {payment['payment_id']}", highlight=False)
    print_payment(payment)
    table = Table("v", "recorded at", "action", "actor", "reason", "postings")
    for entry in payment["history"]:
        postings = "\n".join(
            f"{p['account']} {pounds_text(p['amount_pence'])}" for p in entry["postings"]
        )
        table.add_row(
            str(entry["version"]),
            uk_time(entry["recorded_at"]),
            entry["action"],
            escape(entry["actor"] or ""),
            escape(_why(entry)),
            escape(postings),
        )
    out.print(table)


# ---- server -------------------------------------------------------------------------------


@app.command("serve")
@handle_errors
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    demo_keys: Annotated[
        bool,
        typer.Option(
            "--demo-keys", help="Make a random API key per role and print them (demo only)."
        ),
    ] = False,
    workers: Annotated[
        int, typer.Option(min=1, max=32, help="Server processes (worth it on PostgreSQL).")
    ] = 1,
) -> None:
    """Serve the HTTP API (uvicorn). On SQLite it also runs the projections in-process."""
    from income_ledger import server

    settings = Settings()
    extra = server.demo_api_keys() if demo_keys else ""
    try:
        server.load_api_keys(settings, extra)
        server.api_config(settings)
    except server.ConfigurationError as error:
        raise fail(str(error)) from None
    build_ledger(settings).close()  # fail early, with a clear message, if not initialised
    print_serving_banner(f"http://{host}:{port}", extra)
    mode = (
        "with in-process projections"
        if server.runs_projections(settings)
        else ("(run `income-ledger project` for the read model)")
    )
    out.print(
        f"serving {safe_url(settings)} {mode}; Ctrl-C to stop", highlight=False, soft_wrap=True
    )
    server.serve(settings, host, port, extra, workers)


def print_serving_banner(base: str, demo_keys: str) -> None:
    """Where the API and pages are and, with --demo-keys, each role's key and a command to
    try. Each line is printed whole (soft wrap): a terminal may fold it on screen, but one
    copied is one line, never a URL or command cut by a line break."""
    lines = [
        f"income-ledger API on {base} - documentation at {base}/docs",
        f"officers' pages at {base}/ (sign in with a key)",
    ]
    if demo_keys:
        lines.append("demo API keys (Authorization: Bearer <key>):")
        entries = [entry.split(":", 2) for entry in demo_keys.split(",")]
        lines.extend(f"  {role:<12} {token}" for _user, role, token in entries)
        officer = next(token for _user, role, token in entries if role == "officer")
        lines.append(f"try: curl -s -H 'Authorization: Bearer {officer}' {base}/balances/funds")
    for line in lines:
        out.print(line, highlight=False, soft_wrap=True)


# ---- projections --------------------------------------------------------------------------


@app.command("project")
@handle_errors
def project(
    once: Annotated[bool, typer.Option("--once", help="Catch up, then exit.")] = False,
    page_size: Annotated[
        int, typer.Option(min=1, max=20_000, help="Events per transaction.")
    ] = 1000,
    timeout: TimeoutOption = None,
) -> None:
    """Keep the read model and the audit chain up to date: catch up, then follow new events
    until stopped. Only one runner works at a time; another waits, saying who works (with
    --once, at most --timeout seconds; a following runner stands by until it can take over)."""
    import signal

    from projections.runner import ProjectionRunner, ProjectionStuck, RunnerLock

    settings = Settings()
    with ledger() as led:
        projection = build_projection(settings, led, page_size=page_size)
        chain = build_audit_chain(settings, led, page_size=page_size)
        if once:
            once_runner = ProjectionRunner(projection, companions=[chain])
            with RunnerLock(projection.engine, "project --once").held(timeout_s=timeout):
                try:
                    applied = once_runner.catch_up_once()
                except ProjectionStuck as stuck:
                    raise fail(
                        f"projection {stuck.name} cannot apply the event at position "
                        f"{stuck.position}: {stuck.error}. The events before it are applied and "
                        "it is recorded as stuck (`projections status`); fix the cause, then "
                        "run `income-ledger project` again",
                        EXIT_STUCK,
                    ) from None
            out.print(
                f"applied {applied} events; read model at position "
                f"{projection.position()} of {led.max_position()}"
            )
            return
        runner = ProjectionRunner(projection, companions=[chain])
        signal.signal(signal.SIGTERM, lambda *_: runner.stop())
        signal.signal(signal.SIGINT, lambda *_: runner.stop())
        err.print(f"projecting {safe_url(settings)} (Ctrl-C to stop)")
        runner.run()


@projections_app.command("status")
@handle_errors
def projections_status(as_json: JsonOption = False) -> None:
    """The event store's latest position and the read model's, the lag between them, and any
    projection stuck at an event it cannot apply (then exit 1)."""
    from projections.status import stuck_projections

    settings = Settings()
    with ledger() as led:
        projection = build_projection(settings, led)
        with projection.engine.connect() as connection:
            stuck = [health.to_dict() for health in stuck_projections(connection)]
        read_position = projection.position()
        lag_events, exact = led.events_behind(read_position)
        status = {
            "event_store_position": led.max_position(),
            "read_model_position": read_position,
            "stuck": stuck,
            "lag_events": lag_events,
            "lag_events_exact": exact,
        }
        projection.engine.dispose()
    if as_json:
        print_json(status)
    else:
        out.print(
            f"event store at {status['event_store_position']}, read model at "
            f"{status['read_model_position']} ({'' if exact else 'up to '}{lag_events} behind)",
            highlight=False,
        )
        for item in stuck:
            err.print(stuck_message(item), highlight=False, soft_wrap=True)
    if stuck:
        raise typer.Exit(1)


def stuck_message(item: dict[str, Any]) -> str:
    return (
        f"STUCK: {item['projection']} cannot apply the event at position "
        f"{item['error_position']} (failing since {item['failing_since']}, "
        f"{item['attempts']} attempts, runner {item['runner']}): {item['error']}"
    )


@projections_app.command("rebuild")
@handle_errors
def projections_rebuild(
    page_size: Annotated[int, typer.Option(min=1, max=20_000)] = 5000,
    timeout: TimeoutOption = None,
    lock_timeout: Annotated[
        float,
        typer.Option(
            min=0.1,
            help="Seconds the final swap waits for readers of the live tables (PostgreSQL).",
        ),
    ] = 30.0,
) -> None:
    """Rebuild the read model from position zero into fresh tables and swap them in (holds
    the runner lock: stops a running projector's work meanwhile)."""
    from projections.maintenance import rebuild

    settings = Settings()
    with ledger() as led:
        projection = build_projection(settings, led)
        with progress_bar(led.max_position(), "rebuilding") as advance:
            position = rebuild(
                projection.engine,
                event_source(led),
                page_size=page_size,
                progress=advance,
                lock_wait_s=timeout,
                swap_lock_timeout_s=lock_timeout,
            )
        projection.engine.dispose()
    out.print(f"read model rebuilt to position {position} and swapped in")


@projections_app.command("verify")
@handle_errors
def projections_verify(
    page_size: Annotated[int, typer.Option(min=1, max=20_000)] = 5000,
    as_json: JsonOption = False,
) -> None:
    """Rebuild into scratch tables, compare every table with the live one, and compare the
    exceptions report's stored books with a fold afresh of the events up to their
    position; exit 1 on any difference, or when a projection is stuck. Does not need the
    runner lock: a running projector carries on meanwhile."""
    from application.reconciliation import check_stored_books
    from projections.maintenance import verify

    settings = Settings()
    with ledger() as led:
        projection = build_projection(settings, led)
        with progress_bar(projection.position(), "verifying") as advance:
            report = verify(
                projection.engine, event_source(led), page_size=page_size, progress=advance
            )
        report.event_store_position = led.max_position()
        if report.event_store_position > report.position:
            report.behind_events, report.behind_events_exact = led.events_behind(report.position)
        projection.engine.dispose()
        books = check_stored_books(led)
    if as_json:
        print_json(
            {
                "ok": report.ok and not report.stuck and books.ok,
                "position": report.position,
                "event_store_position": report.event_store_position,
                "behind_events": report.behind_events,
                "behind_events_exact": report.behind_events_exact,
                "stuck": report.stuck,
                "rows": report.tables,
                "differences": [vars(d) for d in report.differences],
                "stored_books": books.to_dict(),
            }
        )
    else:
        for table, rows in report.tables.items():
            out.print(f"  {table}: {rows} rows", highlight=False)
        for difference in report.differences:
            err.print(
                f"[red]{difference.table}[/]: {difference.missing_count} rows missing "
                f"from the live table, {difference.unexpected_count} unexpected rows"
            )
            for row in difference.missing:
                err.print(f"    missing:    {row}", highlight=False)
            for row in difference.unexpected:
                err.print(f"    unexpected: {row}", highlight=False)
        verdict = "matches" if report.ok else "DIFFERS FROM"
        out.print(f"live read model {verdict} a rebuild at position {report.position}")
        if report.behind_events:
            err.print(
                f"the read model is {'' if report.behind_events_exact else 'up to '}"
                f"{report.behind_events} events behind the event store (at position "
                f"{report.position} of {report.event_store_position}): it was compared "
                "only up to its own position",
                highlight=False,
            )
        for item in report.stuck:
            err.print(stuck_message(item), highlight=False, soft_wrap=True)
        _print_books_check(books)
    if not report.ok or report.stuck or not books.ok:
        raise typer.Exit(1)


def _print_books_check(check: Any) -> None:
    at = f" at position {check.position}" if check.position is not None else ""
    verdicts = {
        "none": "no exceptions books are stored yet: nothing to compare",
        "other_format": f"the stored exceptions books{at} are of another release's format: "
        "not used by this one, not compared",
        "stale": f"the stored exceptions books{at} name an event this store does not hold "
        "there (a restore): not used, the next report folds afresh",
        "matches": f"stored exceptions books match a fold afresh{at}",
    }
    if check.ok:
        out.print(verdicts[check.status], highlight=False)
        return
    what = (
        "cannot be read (processes fold afresh instead)"
        if check.status == "unreadable"
        else "DIFFER FROM a fold afresh of the events: a process that loads them reports from them"
    )
    err.print(
        f"[red]stored exceptions books{at}[/] {what}; delete the row named exceptions_books "
        "from the table books_snapshot and restart the API, so that the books are folded "
        "afresh, and report it",
        highlight=False,
    )
    for difference in check.differences:
        err.print(f"    {difference}", highlight=False, soft_wrap=True)


# ---- demo ---------------------------------------------------------------------------------


@app.command("demo")
@handle_errors
def demo(
    days: Annotated[int, typer.Option(min=1, max=31, help="Business days of income.")] = 3,
    receipts_per_day: Annotated[int, typer.Option(min=1, max=5000)] = 120,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same ledger).")] = 2026,
    as_json: JsonOption = False,
    timeout: TimeoutOption = None,
) -> None:
    """Fill the database with a realistic few days of a council's income, then summarise it.

    Everything is checked before anything is saved; if saving stops part-way, the message
    says what is stored, and running the same command again completes it."""
    from income_ledger.demo import DemoInterrupted, plan_demo, record_demo, summarise

    settings = Settings()
    init_database(settings)
    again = f"income-ledger demo --days {days} --receipts-per-day {receipts_per_day} --seed {seed}"
    with build_ledger(settings) as led:
        try:
            plan = plan_demo(led, days=days, receipts_per_day=receipts_per_day, seed=seed)
        except LedgerError as error:
            raise fail(
                f"the demo data failed a check, so nothing was stored: {error.message} "
                f"[{error.code}]"
            ) from None
        try:
            stats = dict(record_demo(led, plan).stats)
        except DemoInterrupted as stopped:
            message = _demo_stopped(settings, led, stopped, again)
            raise fail(message, _exit_code(stopped.cause)) from None
        summary = summarise(led)
        read_model = _catch_up_read_model(settings, led, timeout)
    if as_json:
        print_json({"demo": stats, "summary": summary, "read_model": read_model})
        return
    out.print(
        f"demo data in {safe_url(settings)}: {stats['receipts']} receipts over "
        f"{stats['days']} days, {stats.get('refunds', 0)} refunds, "
        f"{stats.get('transfers', 0)} transfers, {stats.get('reversals', 0)} reversals, "
        f"{stats.get('allocations', 0)} suspense items cleared",
        highlight=False,
    )
    print_read_model(read_model)
    if read_model["fund_balances_pence"] != summary["fund_balances_pence"]:
        raise fail(
            "the read model disagrees with the events: run `income-ledger projections verify`",
            EXIT_INTERNAL_ERROR,
        )
    out.print(
        f"{summary['events']} events; the read model agrees with them; the trial balance "
        f"sums to {read_model['trial_balance_pence']} pence. Try: income-ledger "
        "payments show <payment_id>",
        highlight=False,
    )


def _catch_up_read_model(
    settings: Settings, led: IncomeLedger, timeout_s: float | None = None
) -> dict[str, Any]:
    from projections.runner import RunnerLock

    projection = build_projection(settings, led, page_size=5000)
    try:
        try:
            with RunnerLock(projection.engine, "demo").held(timeout_s=timeout_s):
                projection.catch_up()
        except LockTimeout as error:
            raise fail(
                f"the demo data is stored, but {error}; that process keeps the read model "
                "up to date, so `income-ledger projections status` will show it arrive"
            ) from None
        with projection.engine.connect() as connection:
            return read_model_report(connection)
    finally:
        projection.engine.dispose()


def _demo_stopped(
    settings: Settings, led: IncomeLedger, stopped: DemoInterrupted, again: str
) -> str:
    """What a part-way demo stored, that the read model shows it, and how to finish."""
    cause = stopped.cause
    reason = f"{type(cause).__name__}: {_first_line(cause)}"
    if isinstance(cause, KeyboardInterrupt):
        reason = "interrupted"
    elif isinstance(cause, LedgerError):
        reason = f"{cause.message} [{cause.code}]"
        root = _root_cause(cause)
        if root is not cause:  # the ledger's reading of a database error: show its words too
            reason += f"; the database said: {_first_line(root)}"
    try:
        _catch_up_read_model(settings, led)
        position = led.max_position()
        read_model = f"the event store is at position {position} and the read model has caught up"
    except Exception as error:
        read_model = (
            f"the read model could not catch up ({type(error).__name__}): run "
            "`income-ledger project --once` once the database is back"
        )
    return (
        f"the demo stopped part-way ({reason}). Stored, each batch whole: "
        f"{stopped.progress.describe()}; {read_model}. Nothing else was stored. The demo is "
        f"deterministic: run the same command again (`{again}`) and it skips what is stored "
        "and completes the rest."
    )


def _root_cause(error: BaseException) -> BaseException:
    while (earlier := error.__cause__ or error.__context__) is not None:
        error = earlier
    return error


def _first_line(error: BaseException) -> str:
    return (str(error).splitlines() or [""])[0][:300]


def _exit_code(cause: BaseException) -> int:
    if isinstance(cause, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_USER_ERROR if isinstance(cause, LedgerError) else EXIT_INTERNAL_ERROR


def suspense_summary(page: dict[str, Any]) -> dict[str, Any]:
    return {"total_pence": page["total_pence"], "count": page["total"], "items": page["items"]}


def read_model_report(connection: Any) -> dict[str, Any]:
    from projections import queries

    return {
        "fund_balances_pence": {
            row["fund_code"]: row["balance_pence"]
            for row in queries.fund_balances(connection)
            if row["balance_pence"]
        },
        "funds": queries.fund_balances(connection),
        "suspense": suspense_summary(queries.suspense_page(connection, limit=10)),
        "daily_takings": queries.daily_takings(connection),
        "over_short": queries.over_short(connection),
        "trial_balance_pence": queries.trial_balance_pence(connection),
    }


def print_read_model(report: dict[str, Any]) -> None:
    funds = Table(
        "fund", "balance", "net", "VAT", "refunds", "reversals", title="Fund balances (read model)"
    )
    for row in report["funds"]:
        funds.add_row(
            row["fund_code"],
            *(
                pounds_text(row[c])
                for c in (
                    "balance_pence",
                    "net_pence",
                    "vat_pence",
                    "refunds_pence",
                    "reversals_pence",
                )
            ),
        )
    out.print(funds)
    by_channel: dict[str, dict[str, int]] = {}
    dates: set[str] = set()
    for row in report["daily_takings"]:
        dates.add(row["business_date"])
        days = by_channel.setdefault(row["channel"], {})
        days[row["business_date"]] = days.get(row["business_date"], 0) + row["net_pence"]
    over_short: dict[str, dict[str, int]] = {}
    for row in report.get("over_short", []):
        dates.add(row["business_date"])
        over_short.setdefault(row["channel"], {})[row["business_date"]] = row["over_short_pence"]
    takings = Table(
        "channel",
        *sorted(dates),
        title="Daily takings, net (cash-up); counted = net + over/short = the GL export's",
    )
    for channel, days in sorted(by_channel.items()):
        takings.add_row(channel, *(pounds_text(days.get(d, 0)) for d in sorted(dates)))
    takings.add_row(
        "total",
        *(pounds_text(sum(days.get(d, 0) for days in by_channel.values())) for d in sorted(dates)),
    )
    for channel, days in sorted(over_short.items()):
        takings.add_row(
            f"{channel} over(+)/short(-)", *(pounds_text(days.get(d, 0)) for d in sorted(dates))
        )
    if over_short:
        takings.add_row(
            "total counted",
            *(
                pounds_text(
                    sum(days.get(d, 0) for days in by_channel.values())
                    + sum(days.get(d, 0) for days in over_short.values())
                )
                for d in sorted(dates)
            ),
        )
    out.print(takings)
    suspense = report["suspense"]
    items = Table(
        "received",
        "age (days)",
        "channel",
        "reference",
        "amount",
        "reason",
        title=f"Suspense: {suspense['count']} items, "
        f"{pounds_text(suspense['total_pence'])} (oldest 10)",
    )
    for item in suspense["items"]:
        items.add_row(
            item["received_date"],
            str(item["age_days"]),
            item["channel"],
            item["reference"] or "-",
            pounds_text(item["amount_pence"]),
            item["reason"] or "",
        )
    out.print(items)


def main() -> None:
    # The runner lock's "waiting for ..." and a stuck projection's errors are log records:
    # without a handler a person would see nothing while a command waits.
    from income_ledger.logging_setup import configure_logging

    try:
        configure_logging(LogSettings())
    except ValidationError as error:
        raise SystemExit(fail(f"invalid settings: {settings_problems(error)}").exit_code) from None
    app()


# Registered after this module's own commands, so that --help lists those first.
schema.register(db_app)
audit.register(app)
cashup.register(app)
imports.register(app)
periods.register(app)
rules.register(app)

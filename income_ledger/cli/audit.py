"""Auditor commands: `replay` and `audit ...` (issue #5).

All of them read the event store itself, never the read model, so they are an independent
check on it. Only `audit chain` writes (the tamper-evidence chain); the rest are read-only.
Exit status: 0 when all is well, 1 when a check finds a problem (tampering, seals that do not
match), 2 for bad input, 70 for an unexpected error.
"""

from __future__ import annotations

import contextlib
import csv
import sys
from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from eventsourcing.persistence import MapperDeserialisationError
from rich.table import Table
from rich.text import Text

from domain.errors import InvalidRequest, PaymentNotFound
from domain.limits import UK, parse_query_date, parse_query_moment, uk_day_start, uk_today
from domain.money import pounds_text
from domain.payment import Payment
from income_ledger.cli import helpers
from projections.audit_export import (
    AUDIT_TRAIL_FILE,
    MANIFEST_FILE,
    POSTINGS_FILE,
    PeriodBasis,
    export_audit,
)
from projections.replay import ReplayResult, income_per_fund

READ_PAGE_SIZE = 5000
EXIT_FOUND_PROBLEMS = 1

audit_app = typer.Typer(
    help="Auditor tools: tamper evidence, trace, trial balance, exports.", no_args_is_help=True
)


class OutputFormat(StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"


MOMENT_HELP = (
    "ISO 8601 with a zone (2026-03-31T23:59:59Z), or a date (2026-03-31) meaning the end of "
    "that UK day."
)
AsAtOption = Annotated[str, typer.Option("--as-at", help=f"Effective time. {MOMENT_HELP}")]
KnownAtOption = Annotated[
    str | None,
    typer.Option("--known-at", help=f"Count only what was recorded by then. {MOMENT_HELP}"),
]
FormatOption = Annotated[OutputFormat, typer.Option("--format", help="table, csv or json.")]
PageSizeOption = Annotated[int, typer.Option(min=1, max=20_000, help="Events per page.")]
ProcessesOption = Annotated[
    int | None,
    typer.Option(
        "--processes",
        min=1,
        max=32,
        help="Processes to split the event log over, each with 10,000 events or more (default "
        "LEDGER_READ_PROCESSES, else one per core for every 250,000 events).",
    ),
]


def register(app: typer.Typer) -> None:
    """Add the auditor commands to the main CLI."""
    app.command("replay")(helpers.handle_errors(replay))
    audit_app.command("chain")(helpers.handle_errors(audit_chain))
    audit_app.command("seals")(helpers.handle_errors(audit_seals))
    audit_app.command("verify")(helpers.handle_errors(audit_verify))
    audit_app.command("trace")(helpers.handle_errors(audit_trace))
    audit_app.command("trial-balance")(helpers.handle_errors(audit_trial_balance))
    audit_app.command("export")(helpers.handle_errors(audit_export))
    app.add_typer(audit_app, name="audit")


@contextlib.contextmanager
def _readable_events() -> Iterator[None]:
    """An event that cannot be decoded was almost certainly changed by hand: say so."""
    try:
        yield
    except MapperDeserialisationError as error:
        raise helpers.fail(
            f"an event in the store cannot be read ({str(error).splitlines()[0]}); it "
            "may have been altered by hand: run `income-ledger audit verify` to find where",
            EXIT_FOUND_PROBLEMS,
        ) from None


# ---- time ---------------------------------------------------------------------------------


def parse_moment(text: str, option: str) -> datetime:
    """An aware UTC moment; a bare date means the last instant of that UK business day."""
    return parse_query_moment(text, option, end_of_day=True)


def parse_day(text: str, option: str) -> date:
    return parse_query_date(text, option)


# ---- replay -------------------------------------------------------------------------------


def replay(
    as_at: AsAtOption,
    known_at: KnownAtOption = None,
    fund: Annotated[str | None, typer.Option("--fund", help="One fund's code, like CT.")] = None,
    output_format: FormatOption = OutputFormat.TABLE,
    processes: ProcessesOption = None,
) -> None:
    """Fund balances and suspense replayed straight from the event store (not the read model)
    as at an effective time, optionally as known at a recording time."""
    result = _replayed(as_at, known_at, fund, processes)
    if output_format is OutputFormat.JSON:
        helpers.print_json(result.to_dict())
    elif output_format is OutputFormat.CSV:
        _write_csv(
            ("fund_code", "balance_pence", "net_pence", "vat_pence"),
            [
                *(
                    (
                        code,
                        balance,
                        balance - result.vat_pence_by_fund.get(code, 0),
                        result.vat_pence_by_fund.get(code, 0),
                    )
                    for code, balance in sorted(result.funds.items())
                ),
                ("SUSPENSE", result.suspense_pence, result.suspense_pence, 0),
            ],
        )
    else:
        _print_replay(result)


def _replayed(
    as_at: str, known_at: str | None, fund: str | None, processes: int | None = None
) -> ReplayResult:
    from income_ledger.bootstrap import replay as replay_store
    from income_ledger.settings import Settings

    as_at_moment = parse_moment(as_at, "--as-at")
    known_at_moment = parse_moment(known_at, "--known-at") if known_at else None
    settings = Settings()
    with helpers.ledger() as led, _readable_events():
        if fund:
            fund = led.fund(fund)["code"]  # an unknown code gets a message listing the funds
        with helpers.progress_bar(led.max_position(), "replaying") as advance:
            return replay_store(
                settings,
                led,
                as_at=as_at_moment,
                known_at=known_at_moment,
                fund_code=fund,
                page_size=READ_PAGE_SIZE,
                processes=processes or settings.read_processes,
                progress=advance,
            )


def _print_replay(result: ReplayResult) -> None:
    out = helpers.out
    title = f"Fund balances as at {helpers.uk_moment(result.as_at)}"
    if result.known_at:
        title += f", as known at {helpers.uk_moment(result.known_at)}"
    table = Table("fund", "balance", "net", "VAT", title=title)
    for code, balance in sorted(result.funds.items()):
        vat = result.vat_pence_by_fund.get(code, 0)
        table.add_row(Text(code), *(pounds_text(v) for v in (balance, balance - vat, vat)))
    table.add_row("SUSPENSE", pounds_text(result.suspense_pence), "", "")
    if result.fund_code is None:
        held = sum(result.funds.values()) + result.suspense_pence
        table.add_row("total held", pounds_text(held), "", "", style="bold")
    out.print(table)
    out.print(
        f"{result.events_counted} of {result.events_read} events counted (event store read "
        f"to position {result.last_position}); computed from the events, not the read model",
        highlight=False,
    )


# ---- tamper evidence ---------------------------------------------------------------------


def audit_chain(page_size: PageSizeOption = 5000) -> None:
    """Extend the tamper-evidence chain over events recorded since it last ran (writes only
    the chain's own tables; safe to run at any time, e.g. from cron)."""
    from income_ledger.bootstrap import build_audit_chain
    from income_ledger.settings import Settings

    with helpers.ledger() as led:
        chain = build_audit_chain(Settings(), led, page_size=page_size)
        try:
            store_position = led.max_position()
            # The bar advances by events chained: its total is the events to chain, counted.
            to_chain = led.count_events(chain.position())
            with helpers.progress_bar(to_chain, "chaining") as advance:
                chained = chain.catch_up(progress=advance)
            position = chain.position()
        finally:
            chain.engine.dispose()
    helpers.out.print(
        f"chained {chained} events; the chain covers the event store up to position "
        f"{position} (latest {store_position})",
        highlight=False,
    )


def audit_seals(
    out_file: Annotated[
        Path | None,
        typer.Option("--out", help="Write JSON lines here (default: standard output)."),
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only seals from this UK date on.")
    ] = None,
    include_today: Annotated[
        bool,
        typer.Option("--include-today", help="Also today's seal, which still grows."),
    ] = False,
) -> None:
    """Export the daily seals (the chain's head at the end of each UK business date) as JSON
    lines, to publish outside the system; `audit verify --seals FILE` checks them later."""
    from income_ledger.bootstrap import build_audit_chain
    from income_ledger.settings import Settings
    from projections.chain import stored_seals

    since_day = parse_day(since, "--since") if since else None
    with helpers.ledger() as led:
        chain = build_audit_chain(Settings(), led)
        try:
            # Counted, not a difference of positions: PostgreSQL's skip numbers for good.
            behind, exact = led.events_behind(chain.position())
            with chain.engine.connect() as connection:
                every = stored_seals(connection, since=since_day)
        finally:
            chain.engine.dispose()
    today = uk_today()
    seals = [s for s in every if include_today or s.business_date < today]
    if behind > 0 and seals and seals[-1] == every[-1] and seals[-1].business_date < today:
        # The chain has not got past this day yet: events not chained may still be its own.
        seals = seals[:-1]
        helpers.err.print(
            f"[yellow]warning:[/] the chain is {'' if exact else 'up to '}{behind} events "
            "behind the event store, so its "
            "latest day's seal may be incomplete and is left out: run `income-ledger audit "
            "chain` first",
            highlight=False,
        )
    lines = "".join(seal.to_json() + "\n" for seal in seals)
    if out_file is None:
        sys.stdout.write(lines)
        return
    try:
        out_file.write_text(lines, encoding="utf-8")
    except OSError as error:
        raise InvalidRequest(
            f"cannot write {str(out_file)!r} ({error.strerror or type(error).__name__}): "
            "give a path in a directory you can write to"
        ) from None
    helpers.out.print(
        f"wrote {helpers.counted(len(seals), 'seal')} to {out_file}", highlight=False, markup=False
    )


def audit_verify(
    seals_file: Annotated[
        Path | None,
        typer.Option("--seals", help="Seals exported earlier (`audit seals --out`) to check."),
    ] = None,
    page_size: PageSizeOption = 5000,
    as_json: helpers.JsonOption = False,
    processes: ProcessesOption = None,
) -> None:
    """Recompute the chain from the stored events; report the first position where they no
    longer match (a row altered, deleted or inserted by hand) and check seals. Exit 1 on any
    finding."""
    from income_ledger.bootstrap import build_audit_chain, store_address, stored_event_source
    from income_ledger.settings import Settings
    from projections.chain import read_seals, verify_chain

    seals = _read_seals_file(seals_file, read_seals) if seals_file else []
    settings = Settings()
    with helpers.ledger() as led:
        chain = build_audit_chain(settings, led)
        try:
            with helpers.progress_bar(chain.position(), "verifying") as advance:
                report = verify_chain(
                    chain.engine,
                    stored_event_source(led),
                    store_position=led.max_position(),
                    seals=seals,
                    page_size=page_size,
                    progress=advance,
                    processes=processes or settings.read_processes,
                    store=store_address(led),
                )
        finally:
            chain.engine.dispose()
    nothing_chained = report.chain_position == 0 and report.store_position > 0
    if as_json:
        helpers.print_json(
            {
                "ok": report.ok and not nothing_chained,
                "chain_position": report.chain_position,
                "store_position": report.store_position,
                "events_checked": report.events_checked,
                "head_link_sha256": report.head_link,
                "first_mismatch": vars(report.first_mismatch) if report.first_mismatch else None,
                "findings": [vars(f) for f in report.findings],
                "findings_count": report.findings_count,
                "seals_checked": report.seals_checked,
                "seals_from_file": len(seals),
                "seal_findings": [vars(f) for f in report.seal_findings],
                "unchained_after": report.unchained_after,
            }
        )
    else:
        _print_verify(report, len(seals), nothing_chained)
    if not report.ok or nothing_chained:
        raise typer.Exit(EXIT_FOUND_PROBLEMS)


def _read_seals_file(path: Path, read: Callable[..., Any]) -> Any:
    try:
        with path.open(encoding="utf-8") as lines:
            return read(lines, origin=str(path))
    except (FileNotFoundError, IsADirectoryError, PermissionError, UnicodeDecodeError) as error:
        raise InvalidRequest(
            f"cannot read the seals file {str(path)!r} ({type(error).__name__}): give the file "
            "written by `income-ledger audit seals --out FILE`"
        ) from None


def _print_verify(report: Any, seals_from_file: int, nothing_chained: bool) -> None:
    if nothing_chained:
        helpers.err.print(
            "[bold red]nothing verified:[/] the chain is empty; run `income-ledger audit "
            "chain` to start it, then verify",
            highlight=False,
        )
        return
    first = report.first_mismatch
    if report.store_position == 0:
        helpers.out.print("the event store is empty: nothing to verify", highlight=False)
    elif first is None:
        helpers.out.print(
            f"chain intact: {report.events_checked} events up to position "
            f"{report.chain_position} match their links (head {report.head_link})",
            highlight=False,
        )
    else:
        helpers.err.print(
            f"[bold red]TAMPERED:[/] first mismatch at position {first.position} "
            f"({first.kind}): {first.detail}",
            highlight=False,
        )
        for finding in report.findings[1:]:
            helpers.err.print(f"  position {finding.position} ({finding.kind})", highlight=False)
        hidden = report.findings_count - len(report.findings)
        if hidden:
            helpers.err.print(f"  ... and {hidden} more", highlight=False)
    for finding in report.seal_findings:
        helpers.err.print(f"[bold red]SEAL MISMATCH:[/] {finding.detail}", highlight=False)
    if report.seal_findings and first is None:
        helpers.err.print(
            "the chain agrees with the events stored now, so events and chain were rewritten "
            "together: only the seals published outside the system show it",
            highlight=False,
        )
    if not report.seal_findings:
        helpers.out.print(
            f"{report.seals_checked} seals checked ({seals_from_file} from the file given): "
            "all match",
            highlight=False,
        )
    if report.unchained_after is not None:
        helpers.err.print(
            f"[yellow]note:[/] events after position {report.unchained_after} (up to "
            f"{report.store_position}) are not chained yet, so not protected: run "
            "`income-ledger audit chain`",
            highlight=False,
        )


# ---- trace --------------------------------------------------------------------------------


def audit_trace(
    payment_id: Annotated[str, typer.Argument(help="The payment's id (a UUID).")],
    as_json: helpers.JsonOption = False,
) -> None:
    """The whole story of one receipt: every event with actor and reason, its postings, and
    where each penny is now."""
    from income_ledger.bootstrap import build_audit_chain, stored_events_of
    from income_ledger.settings import Settings
    from projections.audit_trace import trace_payment
    from projections.chain import check_rows

    pid = helpers.parse_payment_id(payment_id)
    with helpers.ledger() as led, _readable_events():
        rows = stored_events_of(led, pid)
        events = [(row.id, led.mapper.to_domain_event(row)) for row in rows]
        if not events or not isinstance(events[0][1], Payment.Received):
            raise PaymentNotFound(f"no payment with id {pid}")
        chain = build_audit_chain(Settings(), led)
        try:
            statuses = check_rows(chain.engine, rows)
        finally:
            chain.engine.dispose()
        trace = trace_payment(events, statuses)
        _hold_against_payment(trace, led.get_payment(pid))
    if as_json:
        helpers.print_json(trace.to_dict())
        return
    _print_trace(trace)


def _hold_against_payment(trace: Any, payment: dict[str, Any]) -> None:
    """Two routes to the same answer must agree: the postings, and the aggregate's state."""
    from_postings = {
        (w.fund_code, w.reference): (w.amount_pence, w.vat_pence)
        for w in trace.whereabouts
        if w.place == "allocated"
    }
    from_payment = {
        (a["fund_code"], a["reference"]): (a["amount_pence"], a["vat_pence"])
        for a in payment["allocations"]
    }
    others = {w.place: w.amount_pence for w in trace.whereabouts if w.place != "allocated"}
    agree = (
        from_postings == from_payment
        and others.get("suspense", 0) == payment["unallocated_pence"]
        and others.get("refunded", 0) == payment["refunded_pence"]
        and others.get("reversed", 0) == payment["reversed_pence"]
    )
    if not agree:
        raise helpers.fail(
            f"the postings of payment {trace.payment_id} disagree with its recorded state: "
            "this is a defect; report it with the output of `income-ledger audit trace "
            f"{trace.payment_id} --json`",
            helpers.EXIT_INTERNAL_ERROR,
        )


def _short(moment: datetime) -> str:
    """A moment of the trace as a person in the UK reads it: to the second, with the zone
    (GMT or BST); --json keeps ISO UTC."""
    return moment.astimezone(UK).strftime("%-d %b %Y %H:%M:%S %Z")


def _refund_request_words(event: Any, request: Any, request_id: str) -> str:
    """Which refund request an event asks for or decides: a refund paid on approval was
    asked for by another person, and the trace says who."""
    if event.action == "RefundRequested":
        return f"    refund request {request_id}, waiting for a second person's approval"
    if request is None:
        return f"    refund request {request_id}"
    verb = "declines" if event.action == "RefundDeclined" else "approves"
    return (
        f"    {verb} refund request {request_id} asked for by {request.actor or '-'} "
        f"(#{request.position})"
    )


def _print_trace(trace: Any) -> None:
    out = helpers.out
    out.print(
        f"payment {trace.payment_id}: {trace.channel} {pounds_text(trace.amount_pence)} "
        f"ref {trace.reference or '-'} received {_short(trace.received_at)} (UK times)",
        highlight=False,
        markup=False,
        emoji=False,
    )
    asked = {
        event.details.get("request_id"): event
        for event in trace.events
        if event.action == "RefundRequested"
    }
    for event in trace.events:
        out.print(
            f"[bold]#{event.position} {event.action}[/]  effective "
            f"{_short(event.effective_at)}  recorded {_short(event.recorded_at)}",
            highlight=False,
        )
        who = f"    by {event.actor or '-'}"
        if event.reason:
            who += f": {event.reason}"
        if event.correlation_id:
            who += f" (correlation id {event.correlation_id})"
        who += f"; chain: {event.chain or 'not yet chained'}"
        out.print(who, highlight=False, markup=False, emoji=False)
        request_id = event.details.get("request_id")
        if request_id:
            out.print(
                _refund_request_words(event, asked.get(request_id), request_id),
                highlight=False,
                markup=False,
                emoji=False,
            )
        for posting in event.postings:
            out.print(
                f"    {posting.account:<40} {pounds_text(posting.amount_pence):>14}",
                highlight=False,
                markup=False,
                emoji=False,
            )
    now = Table("where", "fund", "reference", "amount", "of which VAT", title="Where it is now")
    for place in trace.whereabouts:
        now.add_row(
            place.place,
            Text(place.fund_code or ""),
            Text(place.reference or ""),
            pounds_text(place.amount_pence),
            pounds_text(place.vat_pence) if place.vat_pence else "",
        )
    now.add_row("total", "", "", pounds_text(trace.accounted_pence), "", style="bold")
    out.print(now)
    out.print(
        f"every penny of the {pounds_text(trace.amount_pence)} received is accounted for",
        highlight=False,
    )


# ---- trial balance -------------------------------------------------------------------------


def audit_trial_balance(
    as_at: AsAtOption,
    known_at: KnownAtOption = None,
    summary: Annotated[
        bool,
        typer.Option("--summary", help="One income line per fund instead of per reference."),
    ] = False,
    output_format: FormatOption = OutputFormat.TABLE,
) -> None:
    """Every account's balance from the events, and the proof that they sum to zero."""
    result = _replayed(as_at, known_at, None)
    accounts = (
        income_per_fund(result.accounts) if summary else dict(sorted(result.accounts.items()))
    )
    debits = sum(v for v in accounts.values() if v > 0)
    credits = -sum(v for v in accounts.values() if v < 0)
    total = result.trial_balance_pence
    if output_format is OutputFormat.JSON:
        helpers.print_json(
            {
                "as_at": result.as_at.isoformat(),
                "known_at": result.known_at.isoformat() if result.known_at else None,
                "accounts": accounts,
                "debits_pence": debits,
                "credits_pence": credits,
                "total_pence": total,
                "balanced": total == 0,
                "last_position": result.last_position,
            }
        )
    elif output_format is OutputFormat.CSV:
        _write_csv(
            ("account", "balance_pence", "debit_pence", "credit_pence"),
            [
                (account, v, v if v > 0 else 0, -v if v < 0 else 0)
                for account, v in accounts.items()
            ],
        )
    else:
        title = f"Trial balance as at {helpers.uk_moment(result.as_at)}"
        if result.known_at:
            title += f", as known at {helpers.uk_moment(result.known_at)}"
        table = Table("account", "debit", "credit", title=title)
        shown = {account: v for account, v in accounts.items() if v}
        for account, value in shown.items():
            table.add_row(
                Text(account),
                pounds_text(value) if value > 0 else "",
                pounds_text(-value) if value < 0 else "",
            )
        table.add_row("total", pounds_text(debits), pounds_text(credits), style="bold")
        helpers.out.print(table)
        helpers.out.print(
            f"{len(shown)} accounts with a balance ({len(accounts) - len(shown)} at zero not "
            f"shown); debits minus credits = {total} pence"
            + (": the ledger balances" if total == 0 else ""),
            highlight=False,
        )
    if total != 0:
        raise helpers.fail(
            f"the trial balance is out by {total} pence: this is a defect, not a user error; "
            "run `income-ledger audit verify` and report it",
            helpers.EXIT_INTERNAL_ERROR,
        )


# ---- export ---------------------------------------------------------------------------------


def audit_export(
    from_day: Annotated[str, typer.Option("--from", help="First UK date, like 2026-04-01.")],
    to_day: Annotated[str, typer.Option("--to", help="Last UK date (included).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for the CSV files.")],
    basis: Annotated[
        PeriodBasis,
        typer.Option("--by", help="Pick events by effective date (default) or by when recorded."),
    ] = PeriodBasis.EFFECTIVE,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace files from an earlier export.")
    ] = False,
) -> None:
    """Write the audit trail (one row per event) and the postings of a period as CSV, with a
    manifest of counts and SHA-256 checksums."""
    from income_ledger.bootstrap import advancing, read_events

    first, last = parse_day(from_day, "--from"), parse_day(to_day, "--to")
    if last < first:
        raise InvalidRequest(f"--to {last} is before --from {first}: swap them")
    if out_dir.exists() and not out_dir.is_dir():
        raise InvalidRequest(f"--out {str(out_dir)!r} is a file: give a directory")
    existing = [
        n for n in (AUDIT_TRAIL_FILE, POSTINGS_FILE, MANIFEST_FILE) if (out_dir / n).exists()
    ]
    if existing and not overwrite:
        raise InvalidRequest(
            f"{out_dir} already holds {', '.join(existing)}: choose another directory or "
            "add --overwrite"
        )
    with (
        helpers.ledger() as led,
        _readable_events(),
        helpers.progress_bar(led.max_position(), "exporting") as advance,
    ):
        summary = export_audit(
            advancing(read_events(led, page_size=READ_PAGE_SIZE), advance),
            out_dir,
            start=uk_day_start(first),
            end=uk_day_start(last + timedelta(days=1)),
            basis=basis,
        )
    helpers.out.print(
        f"exported {summary.audit_rows} events and {summary.posting_rows} postings "
        f"({basis.value} {first} to {last}, UK dates) to {out_dir}: {AUDIT_TRAIL_FILE}, "
        f"{POSTINGS_FILE}, {MANIFEST_FILE}; the postings sum to "
        f"{summary.postings_total_pence} pence",
        highlight=False,
        markup=False,
    )


def _write_csv(header: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)

"""Importing a day's income file, reversing a whole import, and listing imports.

A file is checked completely before anything is saved: its shape (domain.imports), then
every line against the ledger's rules as if it were recorded alone, so the refusal names
every bad line. Then its receipts (IncomeLedger.save_new_receipts; save_encoded_receipts when
some turn out to be recorded already), the reversals of returned cheques and the batch itself
are saved in one transaction: all of it, or none.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from functools import cached_property
from operator import itemgetter
from typing import Any
from uuid import UUID

import sqlalchemy.exc
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from application import event_store
from application.forked import run_chunks
from application.import_rules import current_rulebook
from application.ledger import (
    CommandContext,
    EncodedReceipt,
    IncomeLedger,
    RecordPayment,
    fund_match,
)
from application.periods import calendar, late_receipt
from application.receipt_maker import NewReceipt, ReceiptMaker
from application.reconciliation import (
    line_choices,
    match_lines,
    names_a_payer,
    note_links,
    statements_paying_in,
    undo_links,
)
from domain.cards import compose_text, contains_card_number, mask_card_numbers
from domain.errors import ConcurrentUpdate, ImportBatchNotFound, InvalidRequest, LedgerError
from domain.funds import FundChart, Match, SuspenseReason
from domain.import_rules import RuleDecider, RuleLine
from domain.imports import (
    ALLPAY_TYPES,
    EMPTY_FILE,
    MAX_IMPORT_LINES,
    UNMATCHED,
    FileContentClaim,
    ImportBatch,
    ImportedLine,
    ImportFormat,
    ImportLine,
    LineKind,
    LineProblem,
    ParsedFile,
    StatementLink,
    batch_id_for,
    check_file_name,
    content_sha256,
    decode,
    line_external_id,
    parse_file,
    refuse,
    resaved_batch_ids,
)
from domain.money import pounds_text
from domain.payment import Payment, PaymentStatus, ReversalKind
from domain.periods import PeriodCalendar, uk_date
from domain.postings import allocated_on_arrival
from domain.references import normalise_reference
from domain.statements import (
    NO_PROVIDERS,
    STATEMENT_FORMATS,
    ProviderNames,
    names_payout,
    statement_file,
)
from runtime.collector import collector_paused

MAX_BATCHES_LISTED = 500
# The ids a file may be known by (_imported_before: its own, its content claim's and at most
# 12 of its copies' saved otherwise), read in one query.
LOOKUPS_AT_ONCE = 20
# Receipt lines are checked and encoded this many at a time (a progress step), in worker
# processes from PARALLEL_FROM_LINES lines (application.forked; docs/performance.md has the
# measurements behind both).
CHUNK_LINES = 500
PARALLEL_FROM_LINES = 4_000
# What is being done, how many lines are done, of how many (None: not counted).
Progress = Callable[[str, int, int | None], None]
# Lines that take back an earlier receipt, and how that receipt is reversed.
RETURN_KINDS = {
    LineKind.RETURNED_CHEQUE: ReversalKind.RETURNED_CHEQUE,
    LineKind.DIRECT_DEBIT_RETURN: ReversalKind.DIRECT_DEBIT_RETURN,
}
# Lines that never become receipts: returns, and money paid out (linked or left out).
NOT_RECEIPTS = {*RETURN_KINDS, LineKind.PAYOUT_DEBIT}
CASH_ADJUSTMENT = Match(
    None,
    SuspenseReason.CASH_ADJUSTMENT,
    "Allpay cash adjustment (type C): not a payer's payment; allocate it by hand",
)
PROVIDER_HOLD = Match(
    None,
    SuspenseReason.PROVIDER_PAYOUT,
    "a payment provider's line (its narrative names one) that paid in none of its "
    "receipts yet: a linking run links it once they are recorded (reconcile link), a "
    "person chooses among its candidates (reconcile choose), or allocate it by hand",
)
CARD_NUMBER_REFERENCE = Match(
    None,
    SuspenseReason.UNUSABLE_REFERENCE,
    "the file's reference held a card number (masked): find the payer's account",
)


@dataclass(frozen=True)
class ImportOutcome:
    """What an import (or its reversal) did; `recorded` is False for a repeat."""

    batch_id: UUID
    recorded: bool
    position: int | None
    batch: dict[str, Any] = field(repr=False)
    # The earliest UK day of the receipts it recorded, which statement lines imported
    # earlier may pay in (reconciliation.link_after_recording); None when there is none: a
    # statement's own lines were matched when it was imported.
    link_from: date | None = None


def detect_format(text: str) -> ImportFormat:
    """From how the file starts: XML is camt.053, a `01,` record BAI2, a `:20:` field (after
    any bank header lines) MT940, a `channel,...` header row CSV; anything else is Allpay's.
    A file detected wrongly is refused by that format's checks, never half-read."""
    start = text.lstrip()
    first = start.split("\n", 1)[0].strip().lower()
    if start.startswith("<"):
        return ImportFormat.CAMT053
    if first.startswith("01,"):
        return ImportFormat.BAI2
    if any(row.startswith(":20:") for row in start.splitlines()[:20]):
        return ImportFormat.MT940
    return ImportFormat.CSV if first.startswith("channel,") else ImportFormat.ALLPAY


# What a file's name says it is, and how such a file starts (detect_format's signs).
NAMED_FORMATS = {
    ".csv": (ImportFormat.CSV, "a CSV import starts with a header row beginning 'channel,'"),
    ".xml": (ImportFormat.CAMT053, "a camt.053 statement is XML, starting with '<'"),
    ".bai": (ImportFormat.BAI2, "a BAI2 file starts with a '01,' record"),
    ".bai2": (ImportFormat.BAI2, "a BAI2 file starts with a '01,' record"),
    ".sta": (ImportFormat.MT940, "an MT940 statement has a ':20:' field in its first lines"),
    ".mt940": (ImportFormat.MT940, "an MT940 statement has a ':20:' field in its first lines"),
}


def named_otherwise(file_name: str, detected: ImportFormat) -> str | None:
    """For a refused file read as one format while its name says another: why it was read
    so, first among the problems (else a .csv refused for lacking Allpay's trailer puzzles)."""
    suffix = "." + file_name.rsplit(".", 1)[-1].lower() if "." in file_name else ""
    named = NAMED_FORMATS.get(suffix)
    if named is None or named[0] is detected:
        return None
    return (
        f"the file was read as {detected.value} from how it starts, though its name ends "
        f"{suffix}: {named[1]}. If it is {named[0].value}, fix its start; to read it as "
        "another format say which (import --format, or format= in the API)"
    )


def import_file(
    ledger: IncomeLedger,
    content: bytes,
    ctx: CommandContext,
    *,
    file_name: str,
    file_format: str | None = None,
    expect_total_pence: int | None = None,
    expect_count: int | None = None,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> ImportOutcome:
    """Import a file once: a second import of the same bytes, or of a copy of them saved
    otherwise (FileContentClaim), records nothing and says so.

    `progress` is told what is being done and how far it is (a progress bar); `now` is the
    moment whose UK date is today (the latest date a file may hold), the clock's unless
    given."""
    report = progress or _silent
    sha256 = hashlib.sha256(content).hexdigest()
    file_name = check_file_name(file_name)
    # A format no file has is a mistake in the command, whether or not the bytes are known.
    chosen = ImportFormat.parse(file_format) if file_format else None
    content_hash = content_sha256(content)
    copies = [FileContentClaim.create_id(content_hash), *resaved_batch_ids(content, sha256)]
    known = _imported_before(ledger, [batch_id_for(sha256), *copies])
    if known is not None:
        return ImportOutcome(known.id, False, None, batch_view(known))
    text = decode(content)
    if not text.strip():
        raise refuse([LineProblem(0, EMPTY_FILE)])
    fmt = chosen or detect_format(text)
    report("reading the file", 0, None)
    # From the read to the save: a large file's objects, a statement's XML tree of millions
    # of them among them, make no cycles; the collector walked them again and again.
    with collector_paused():
        parsed = _parse(content, text, fmt, expect_total_pence, expect_count, now)
        named = None if file_format or not parsed.problems else named_otherwise(file_name, fmt)
        if named is not None:
            parsed = replace(parsed, problems=(LineProblem(0, named), *parsed.problems))
        if len(parsed.lines) > MAX_IMPORT_LINES:  # refused for its size: check no further
            raise refuse(list(parsed.problems))
        rules, periods = current_rulebook(ledger).decider(), calendar(ledger)
        chart = ledger.chart()
        providers = ledger.provider_narratives if fmt in STATEMENT_FORMATS else NO_PROVIDERS
        # Each statement credit line's command as matching made it, by line number: checking the
        # line makes the same one (_command is the line's, the file's hash and the rules' alone).
        commands: dict[int, RecordPayment] = {}

        def payers_own(line: ImportLine) -> bool:  # where the line would go as a new receipt
            try:
                command = commands[line.line_number] = _command(line, sha256, rules, providers)
            except LedgerError:  # a rule refuses the line: refused with the others, later
                return False
            # A provider's line is the provider's money, whatever fund its reference passes
            # (held in suspense for it unless an import rule decided it).
            if command.hold_in_suspense is PROVIDER_HOLD or (
                command.rule_decision is not None and names_provider(line, providers)
            ):
                return False
            return names_a_payer(fund_match(command, chart))

        # A statement line paying in receipts recorded by other channels is linked, not recorded.
        links, waiting, notes_seen = (
            match_lines(ledger, fmt, parsed.lines, payers_own)
            if not parsed.problems
            else ({}, set(), {})
        )
        receipts = [
            line
            for line in parsed.lines
            if line.kind not in NOT_RECEIPTS and line.line_number not in links
        ]
        job = _LineJob(ledger, receipts, sha256, rules, periods, chart, ctx, commands, providers)
        new_receipts, problems = _checked(job, report)
        returned, returned_before = _returns(ledger, parsed, problems)
        problems.extend(parsed.problems)
        if problems:
            raise refuse(sorted(problems, key=lambda p: p.line_number))
        linked = [
            (line, links[line.line_number]) for line in parsed.lines if line.line_number in links
        ]
        # A copy saved otherwise imported meanwhile, while this one's lines were checked
        # (its ids are not this file's; a copy saving at the same moment collides with this
        # one's content claim as it saves, in _record).
        known = _imported_before(ledger, copies)
        if known is not None:
            return ImportOutcome(known.id, False, None, batch_view(known))
        report("saving", 0, None)
        outcome = _record(
            ledger,
            parsed,
            file_name,
            sha256,
            content_hash,
            new_receipts,
            returned,
            returned_before,
            linked + [(line, None) for line in _open_debits(ledger, parsed, links, waiting)],
            ctx,
            notes_seen,
        )
    report("saved", len(receipts), len(receipts))
    if not outcome.recorded or fmt in STATEMENT_FORMATS or not receipts:
        return outcome
    # The UK date of the earliest moment: a later moment never falls on an earlier UK day
    # (tests/domain/test_periods.py), and one conversion is cheaper than 100,000.
    return replace(outcome, link_from=uk_date(min(line.received_at for line in receipts)))


def _open_debits(
    ledger: IncomeLedger,
    parsed: ParsedFile,
    links: dict[int, StatementLink],
    waiting: set[int],
) -> list[ImportLine]:
    """Debit lines naming a card provider's payout (LEDGER_PAYOUT_NARRATIVES) that no payout
    matched: a negative payout imported before the refunds it pays, kept (outcome
    `unmatched`) for a later linking run; and debits that may be the payout of two or more
    settlement days (`waiting`), kept for a person to choose. Other debits are no income
    and stay out of the batch."""
    return [
        line
        for line in parsed.lines
        if line.kind is LineKind.PAYOUT_DEBIT
        and line.line_number not in links
        and (
            line.line_number in waiting
            or names_payout((line.details or {}).get("narrative"), ledger.payout_narratives)
        )
    ]


def _silent(stage: str, done: int, total: int | None) -> None:
    """No progress bar."""


def _parse(
    content: bytes,
    text: str,
    fmt: ImportFormat,
    expect_total_pence: int | None,
    expect_count: int | None,
    now: datetime | None,
) -> ParsedFile:
    if fmt not in STATEMENT_FORMATS:
        return parse_file(
            text, fmt, expect_total_pence=expect_total_pence, expect_count=expect_count, now=now
        )
    if expect_total_pence is not None or expect_count is not None:
        raise InvalidRequest(
            "a bank statement carries its own balances as control totals: leave out the "
            "expected total and count"
        )
    return statement_file(content, fmt, now=now)


def _command(
    line: ImportLine, sha256: str, rules: RuleDecider, providers: ProviderNames = NO_PROVIDERS
) -> RecordPayment:
    reference, hold, decision = line.reference, None, None
    if line.kind is LineKind.CASH_ADJUSTMENT:
        hold = CASH_ADJUSTMENT
    if contains_card_number(reference):
        # A payer typed a card number as the reference: the file is not refused for it (the
        # sender cannot change what the payer typed), the number is masked and the receipt
        # waits in suspense for an officer to find the account.
        reference, hold = mask_card_numbers(reference), CARD_NUMBER_REFERENCE
    # The council's rules first; the funds' reference rules after them. Most files' lines
    # are of a channel and narrative no rule looks for: no rule's line is made for them.
    if hold is None and rules.may_decide(line.channel.value, _narrative(line)):
        decision = rules.decide(rule_line(line))
        reference = decision.reference if decision else reference
    # Then a provider's line no rule decided waits in suspense: its reference is the
    # provider's (a payout number), not a payer's account, even one passing a fund's rule.
    if hold is None and decision is None and names_provider(line, providers):
        hold = PROVIDER_HOLD
    details = line.details
    if line.payment_type is not None:
        details = {
            "payment_type": line.payment_type,
            "payment_type_name": ALLPAY_TYPES[line.payment_type][0],
            "source_code": line.source_code,
            "file_line": line.line_number,
        }
    return RecordPayment(
        channel=line.channel.value,
        amount_pence=line.amount_pence,
        reference=reference,
        received_at=line.received_at,
        fund_code=line.fund_code,
        external_id=line.external_id or line_external_id(sha256, line.line_number),
        # A line-derived id is ours, not typed by a person; a CSV's own id is checked.
        external_id_from_provider=line.external_id is None,
        provider_details=details,
        hold_in_suspense=hold,
        rule_decision=decision,
    )


def names_provider(line: ImportLine, providers: ProviderNames) -> bool:
    """Whether a statement credit line's narrative names a payment provider (`providers`:
    the ledger's provider_narratives, a card provider's payout or a collector's settlement,
    such as GOVUK PAY or ALLPAY LTD): the provider's money, paying in receipts recorded by
    its channel, never a payer's own transfer whatever its reference (a payout number may
    pass a fund's check digit: one in ten pass a modulus 10 check). A provider's name counts
    from a word's start, a collector's as whole words, or followed in its word by a
    company's suffixes alone (names_provider_words: "ALLPAYLTD"): a payer's "HALL PAYMENT"
    or "ALL PAYMENTS" names no ALLPAY."""
    return line.kind is LineKind.RECEIPT and providers.named_in(
        (line.details or {}).get("narrative")
    )


def rule_line(line: ImportLine) -> RuleLine:
    """What an import rule sees of a line: a statement's narrative, an Allpay source code."""
    return RuleLine(
        normalise_reference(line.reference), _narrative(line), line.amount_pence, line.channel.value
    )


def _narrative(line: ImportLine) -> str:
    return (line.details or {}).get("narrative") or line.source_code or ""


@dataclass(frozen=True)
class _LineJob:
    """What checking and encoding a file's receipt lines reads: all of it in memory, none of
    it from the database (so worker processes can do it; application.forked)."""

    ledger: IncomeLedger
    lines: list[ImportLine]
    sha256: str
    rules: RuleDecider
    periods: PeriodCalendar
    chart: FundChart
    ctx: CommandContext
    # Lines' commands made already (a statement's, by matching), by line number.
    commands: dict[int, RecordPayment] = field(default_factory=dict)
    # What names a payment provider in a statement line's narrative (names_provider).
    providers: ProviderNames = NO_PROVIDERS

    def encode(self, start: int, stop: int) -> tuple[list[_NewReceipt], list[LineProblem]]:
        """Lines [start, stop): each one's new receipt checked by the ledger's rules alone,
        so that all bad lines are named, and encoded as it is stored when no line is bad.

        A receipt is only its events here, never built as a payment: a file's receipts are
        new and nothing else happens to them in the import, and building, viewing and
        caching 100,000 payments cost most of an import's time (docs/performance.md)."""
        ledger, receipts, problems = self.ledger, [], []
        maker = self.maker
        for line in self.lines[start:stop]:
            # A line dated in a closed period is recorded now, its own date kept (never
            # refused).
            try:
                command = self.commands.get(line.line_number)
                if command is None:
                    # (a rule may refuse it)
                    command = _command(line, self.sha256, self.rules, self.providers)
                if self._late(command.received_at):
                    command = late_receipt(ledger, command, self.periods)
                encoded, made = maker.new(command)
            except LedgerError as error:
                problems.append(LineProblem(line.line_number, error.message))
                continue
            receipts.append((encoded, _recorded_line(line, made)))
        return receipts, problems

    def _late(self, received_at: datetime | None) -> bool:
        """Whether a line received then is late (`late_receipt`: its UK day is closed),
        asked once per moment (a file's lines share one or a few). Kept by the time and its
        UTC offset: times of one zone compare by their wall clock alone, so the two 01:30s
        of a night the clocks go back would share one answer, though their UK days may
        differ (ReceiptMaker keeps its times so too)."""
        if received_at is None:
            return False
        key = (received_at, received_at.utcoffset())
        late = self._late_at.get(key)
        if late is None:
            late = self._late_at[key] = self.periods.close_of(uk_date(received_at)) is not None
        return late

    @cached_property
    def _late_at(self) -> dict[tuple[datetime, timedelta | None], bool]:
        return {}

    @cached_property
    def maker(self) -> ReceiptMaker:
        """The file's receipts' maker: what its lines share worked out once (a worker's own)."""
        return self.ledger.receipt_maker(self.ctx, self.chart)

    def in_worker(self) -> None:
        event_store.leave_to_parent(self.ledger.recorder)


# A receipt line's new receipt as stored, and the batch's entry for the line as the batch
# event stores it (ImportedLine.to_dict; outcome "recorded", "known" when the receipt turns
# out to be recorded already): made in the worker, so that the importing process, which
# does its part alone, makes no object of the line's and only passes its dict on.
_NewReceipt = tuple[EncodedReceipt, dict[str, Any]]


def _checked(job: _LineJob, report: Progress) -> tuple[list[_NewReceipt], list[LineProblem]]:
    """Every receipt line checked and encoded (`_LineJob.encode`), a large file's in worker
    processes (the ledger's `import_processes`), a chunk each at a time."""
    count = len(job.lines)
    report("checking lines", 0, count)
    processes = job.ledger.import_processes if count >= PARALLEL_FROM_LINES else 1
    chunks = run_chunks(
        job.encode,
        count,
        CHUNK_LINES,
        processes,
        job.in_worker,
        lambda done: report("checking lines", done, count),
    )
    receipts = [receipt for chunk, _ in chunks for receipt in chunk]
    problems = [problem for _, chunk in chunks for problem in chunk]
    return receipts, problems


def _returns(
    ledger: IncomeLedger, parsed: ParsedFile, problems: list[LineProblem]
) -> tuple[list[tuple[ImportLine, Payment]], list[tuple[ImportLine, Payment]]]:
    """Each returned cheque or direct debit with the earlier imported receipt it takes back;
    and each statement's returned direct debit an earlier import took back already (the
    same statement downloaded again), with the receipt that import reversed: it reverses
    nothing again.

    The receipt is the newest one imported with the same reference and amount whose money
    is all still there; a line that matches none refuses the file."""
    lines = [line for line in parsed.lines if line.kind in RETURN_KINDS]
    if not lines:
        return [], []
    candidates, earlier = _earlier_lines(ledger)
    taken: set[str] = set()
    matched, known = [], []
    for line in lines:
        before = _returned_before(ledger, line, earlier)
        if before is not None:
            known.append((line, before))
            continue
        payment = _original(ledger, line, candidates, taken)
        if payment is None:
            problems.append(LineProblem(line.line_number, _unmatched_return(line)))
        else:
            taken.add(str(payment.id))
            matched.append((line, payment))
    return matched, known


def _returned_before(
    ledger: IncomeLedger, line: ImportLine, earlier: list[ImportedLine]
) -> Payment | None:
    """The receipt an earlier import reversed for this same statement return, whose
    reversal still stands; the earlier line is used up (two identical returns on one
    statement are two returns). The same return: the same kind and line at the bank
    (account, booking date, bank reference, amount: `bank_line_id`); for an earlier line
    stored before that was kept, the same booking date, payer reference and amount. Whether the earlier import was
    reversed since does not matter: reversing an import leaves the receipts its returns
    reversed reversed, so the money is still taken back. The bank's id of the line, when
    both have it, decides alone (it is made of the line's booking date and amount)."""
    day = (line.details or {}).get("booking_date")
    if day is None:  # an Allpay returned cheque: nothing identifies it but its file
        return None
    reference = normalise_reference(line.reference)
    for index, before in enumerate(earlier):
        if before.kind != line.kind.value:
            continue
        if before.bank_line_id is not None and line.external_id is not None:
            same = before.bank_line_id == line.external_id
        else:
            same = (
                before.booking_date == day
                and before.amount_pence == line.amount_pence
                and normalise_reference(_file_reference(before)) == reference
            )
        if not same:
            continue
        payment = ledger.repository.get(UUID(before.payment_id))
        if payment.reversal_kind == RETURN_KINDS[line.kind].value:
            del earlier[index]
            return payment
    return None


def _file_reference(line: ImportedLine) -> str:
    """The reference the file gave: a rule may have rewritten the receipt's."""
    return (line.import_rule or {}).get("file_reference") or line.reference


def _unmatched_return(line: ImportLine) -> str:
    what = RETURN_KINDS[line.kind].value
    found = (
        f"{what.replace('_', ' ')} for reference {line.reference} of "
        f"{pounds_text(line.amount_pence)} matches no earlier imported receipt that "
        f"still holds that money: reverse the original payment by hand (payments reverse "
        f"--kind {what})"
    )
    if line.kind is LineKind.RETURNED_CHEQUE:
        return f"{found} and import the file without this line"
    # A bank statement cannot be edited without breaking its balances.
    return f"{found}, then ask the bank how the collection was first paid in"


def _original(
    ledger: IncomeLedger,
    line: ImportLine,
    candidates: list[ImportedLine],
    taken: set[str],
) -> Payment | None:
    reference = normalise_reference(line.reference)
    for candidate in candidates:
        if (
            normalise_reference(_file_reference(candidate)) != reference
            or candidate.amount_pence != line.amount_pence
            or candidate.payment_id in taken
        ):
            continue
        payment = ledger.repository.get(UUID(candidate.payment_id))
        if not payment.reversed_pence and payment.remaining_pence == line.amount_pence:
            return payment
    return None


def _earlier_lines(ledger: IncomeLedger) -> tuple[list[ImportedLine], list[ImportedLine]]:
    """Receipts recorded by earlier imports, newest first; and the statement returns that
    earlier imports reversed a receipt for, oldest first."""
    receipts, returns = [], []
    for batch in ledger.events_of(ImportBatch.Imported):
        for line in batch.imported_lines:
            if line.is_new_receipt:
                receipts.append(line)
            elif line.outcome == "reversed" and line.booking_date is not None:
                returns.append(line)
    return receipts[::-1], returns


def _record(
    ledger: IncomeLedger,
    parsed: ParsedFile,
    file_name: str,
    sha256: str,
    content_hash: str,
    new_receipts: list[_NewReceipt],
    returned: list[tuple[ImportLine, Payment]],
    returned_before: list[tuple[ImportLine, Payment]],
    linked: list[tuple[ImportLine, StatementLink | None]],
    ctx: CommandContext,
    notes_seen: dict[str, int],
) -> ImportOutcome:
    """Save it all in one transaction, with the claim of the file's content (`content_hash`,
    its content_sha256); `returned_before` holds the returns an earlier import took back
    (kept as `known`, nothing reversed), `linked` the statement lines that pay in receipts
    already recorded, and the payout debits kept unmatched (link None). When an import of
    these bytes or of a copy saved otherwise saved first (the batch's id or the claim's
    collides), nothing is saved and that import is the answer."""
    for line, payment in returned:
        kind = RETURN_KINDS[line.kind]
        payment.reverse(
            kind=kind,
            actor=ctx.actor,
            reason=f"{kind.value.replace('_', ' ')}: {file_name} line {line.line_number}",
        )
    batch_id = str(batch_id_for(sha256))
    where = [
        (f"{file_name} line {line.line_number}", batch_id, link)
        for line, link in linked
        if link is not None
    ]
    noted = note_links(ledger, where, ctx, notes_seen)
    receipts = [receipt for receipt, _ in new_receipts]

    def save(ask_first: bool) -> tuple[ImportBatch, int | None]:
        with ledger.unit_of_work():
            known = _save_receipts(ledger, receipts, ask_first)
            entries = [
                {**entry, "outcome": "known"} if known and receipt.payment_id in known else entry
                for receipt, entry in new_receipts
            ]
            entries += [
                _line_entry(line, ledger.payment_view(p), "reversed").to_dict()
                for line, p in returned
            ]
            entries += [
                _line_entry(line, ledger.payment_view(p), "known").to_dict()
                for line, p in returned_before
            ]
            entries += [_linked_entry(line, link).to_dict() for line, link in linked]
            entries.sort(key=itemgetter("line"))
            batch = ImportBatch.record(
                parsed, file_name=file_name, sha256=sha256, entries=entries, actor=ctx.actor
            )
            claim = FileContentClaim.claim(batch, content_hash)
            position = ledger.save_checked(
                batch, claim, *(payment for _, payment in returned), *noted
            )
        return batch, position

    try:
        try:
            batch, position = save(ask_first=False)
        except _ReceiptKnown:  # seldom: nothing was saved; again, skipping the known ones
            batch, position = save(ask_first=True)
    except (IntegrityError, sqlalchemy.exc.IntegrityError):
        changed = [payment.id for _, payment in returned] + [payment.id for payment in noted]
        _forget(ledger, changed)
        claim_id = FileContentClaim.create_id(content_hash)
        known = _imported_before(ledger, [batch_id_for(sha256), claim_id])
        if known is None:
            raise ConcurrentUpdate(
                "another import changed the same receipts at the same moment; nothing was "
                "saved. Import the file again"
            ) from None
        return ImportOutcome(known.id, False, None, batch_view(known))
    return ImportOutcome(batch.id, True, position, batch_view(batch))


class _ReceiptKnown(Exception):
    """Some of a file's receipts are recorded already (`_save_receipts`)."""


def _save_receipts(
    ledger: IncomeLedger, receipts: list[EncodedReceipt], ask_first: bool
) -> set[UUID]:
    """Store the file's new receipts, skipping those recorded already, whose ids it returns.
    Without `ask_first` they are stored as new without asking (a file's receipts are new);
    when one is known after all, `_ReceiptKnown` rolls the transaction back, and the caller
    saves again asking first."""
    if ask_first:
        return ledger.save_encoded_receipts(receipts)
    try:
        ledger.save_new_receipts(receipts)
    except (IntegrityError, sqlalchemy.exc.IntegrityError):
        raise _ReceiptKnown from None
    return set()


def _recorded_line(line: ImportLine, made: NewReceipt) -> dict[str, Any]:
    """The batch's entry for a receipt line as stored, from its new receipt (`ReceiptMaker`),
    as `_line_entry` makes it from the payment's view (ImportedLine.to_dict, without the
    line: tests/application/test_receipt_maker.py and test_fast_import.py hold them equal),
    in the worker that made the receipt."""
    entry = {
        "line": line.line_number,
        "kind": line.kind.value,
        "outcome": "recorded",
        "payment_id": str(made.payment_id),
        "channel": line.channel.value,
        "payment_type": line.payment_type,
        "reference": made.reference,
        "amount_pence": line.amount_pence,
        "status": made.status,
        "import_rule": made.import_rule,
    }
    if line.details and line.details["booking_date"] is not None:
        entry["booking_date"] = line.details["booking_date"]
    if made.fund_code is not None:
        entry["fund_code"] = made.fund_code
    return entry


def _line_entry(line: ImportLine, payment: dict[str, Any], outcome: str) -> ImportedLine:
    return ImportedLine(
        line.line_number,
        line.kind.value,
        outcome,
        payment["payment_id"],
        line.channel.value,
        line.payment_type,
        payment["reference"],
        line.amount_pence,
        payment["status"],
        import_rule=payment.get("import_rule"),
        booking_date=line.details["booking_date"] if line.details else None,
        fund_code=payment.get("fund_code"),
        bank_line_id=line.external_id if line.details else None,
    )


def _linked_entry(line: ImportLine, link: StatementLink | None) -> ImportedLine:
    """A statement line that paid in receipts already recorded: the reconciliation link;
    or, without a link, a payout debit kept unmatched."""
    return ImportedLine(
        line.line_number,
        line.kind.value,
        "reconciled" if link is not None else UNMATCHED,
        None,
        line.channel.value,
        None,
        line.reference,
        line.amount_pence,
        None,
        booking_date=(line.details or {}).get("booking_date"),
        link=link,
    )


def _forget(ledger: IncomeLedger, ids: list[UUID]) -> None:
    """Saving puts aggregates in the application's cache before the enclosing transaction
    commits; when it then rolls back, they must not be found there."""
    cache = ledger.repository.cache
    for aggregate_id in ids:
        if cache is not None:
            with contextlib.suppress(KeyError):
                cache.get(aggregate_id, evict=True)


# ---- reversing a whole import --------------------------------------------------------------


def reverse_import(
    ledger: IncomeLedger, batch_id: UUID, ctx: CommandContext, reason: str
) -> ImportOutcome:
    """Reverse what remains of every receipt the import made, and mark the batch reversed,
    in one transaction. A statement's links are undone first (reconciliation.undo_links):
    the receipts its lines paid in are no longer paid in (card payments back in clearing),
    and a line linked late has its receipt counted again, to be reversed with the rest.
    Receipts already refunded or reversed in full are left as they are; earlier receipts
    that the file's returned cheques reversed stay reversed."""
    batch = _batch(ledger, batch_id)
    batch.require_not_reversed()
    _, changed = undo_links(ledger, batch, sorted(batch.standing_links), ctx, reason)
    # The statement lines that paid in this import's receipts count their own money again.
    paying_in = statements_paying_in(ledger, batch)
    why = compose_text(
        f"import {batch.id} ({batch.file_name}), which they paid in, was reversed: ", reason
    )
    for statement, lines in paying_in:
        undo_links(ledger, statement, lines, ctx, why, changed)
    payments = [changed.get(pid) or ledger.repository.get(UUID(pid)) for pid in batch.receipt_ids]
    held = [p for p in payments if not p.reversed_pence and p.remaining_pence]
    amount = sum(p.remaining_pence for p in held)
    batch.reverse(
        payment_ids=[str(p.id) for p in held], amount_pence=amount, actor=ctx.actor, reason=reason
    )
    for payment in held:
        payment.reverse(kind=ReversalKind.IMPORT_REVERSED, actor=ctx.actor, reason=reason)
        changed[str(payment.id)] = payment
    try:
        statements = [statement for statement, _ in paying_in]
        position = ledger.save_checked(batch, *statements, *changed.values())
    except IntegrityError:
        raise ConcurrentUpdate(
            "the import or one of its receipts changed at the same moment; nothing was "
            "reversed. Retry"
        ) from None
    return ImportOutcome(batch.id, True, position, batch_view(batch))


# ---- queries --------------------------------------------------------------------------------


def get_import(ledger: IncomeLedger, batch_id: UUID) -> dict[str, Any]:
    """The import with its lines as imported, and each line's late link (LineLinked) that
    still stands and the links of it a person undid (LinkUndone), oldest first; and a
    statement line's `candidates` when a person is to choose what it pays in
    (reconciliation.line_choices; empty otherwise)."""
    batch = _batch(ledger, batch_id)
    waiting = line_choices(ledger, batch)
    funds = _funds_on_arrival(ledger, batch)
    reasons = _suspense_reasons(ledger, batch)
    return batch_view(batch) | {
        "lines": [
            _line_view(batch, line)
            | {"candidates": waiting.get(line.line, [])}
            | {"suspense_reason": reasons.get(line.payment_id) if line.payment_id else None}
            | ({"fund_code": funds[line.line]} if line.line in funds else {})
            for line in batch.lines
        ]
    }


def import_line_numbers(ledger: IncomeLedger, batch_id: UUID) -> set[int]:
    """The numbers of the import's lines (refused as get_import refuses an unknown import),
    read from the batch alone: no view, no candidates, no receipts."""
    return {line.line for line in _batch(ledger, batch_id).lines}


ALLOCATED_THEN = frozenset({PaymentStatus.ALLOCATED.value, PaymentStatus.PART_ALLOCATED.value})
SUSPENSE_THEN = frozenset({PaymentStatus.SUSPENSE.value, PaymentStatus.PART_ALLOCATED.value})
# Receipts read in one query by _suspense_reasons: under SQLite's 32,766 bound values, so
# that an import of up to this many lines in suspense costs one query.
REASONS_READ_AT_ONCE = 30_000


def _suspense_reasons(ledger: IncomeLedger, batch: ImportBatch) -> dict[str, str]:
    """Why each receipt the import left (wholly or in part) in suspense went there when it
    arrived (SuspenseReason), by payment id: its Received event's suspense_reason, read for
    the whole batch at once, not one query per line. The stored events are not changed."""
    ids = list(
        {
            UUID(line.payment_id)
            for line in batch.lines
            if line.payment_id is not None and line.status in SUSPENSE_THEN
        }
    )
    reasons = {}
    recorder = ledger.repository.event_store.recorder
    for stored in event_store.first_events(recorder, ids, REASONS_READ_AT_ONCE):
        received = ledger.mapper.to_domain_event(stored)
        if isinstance(received, Payment.Received) and received.suspense_reason:
            reasons[str(received.originator_id)] = received.suspense_reason
    return reasons


def _funds_on_arrival(ledger: IncomeLedger, batch: ImportBatch) -> dict[int, str]:
    """The fund(s) an import allocated each line's receipt to, for lines stored before the
    line kept it (no `fund_code`, though its receipt was allocated then): read from the
    receipt's own first events, its allocation on arrival (what _recorded_line kept since).
    The stored events are not changed; one short read per such line."""
    found = {}
    for line in batch.lines:
        if line.fund_code is not None or line.payment_id is None:
            continue
        if line.status not in ALLOCATED_THEN or line.outcome not in ("recorded", "known"):
            continue
        events = ledger.repository.event_store.get(UUID(line.payment_id), lte=2)
        codes = {
            allocated["fund_code"]
            for event in events
            if isinstance(event, Payment.Allocated) and allocated_on_arrival(event)
            for allocated in event.lines
        }
        if codes:
            found[line.line] = ",".join(sorted(codes))
    return found


# Every key of a line of GET /imports/{id}, None where the line has none (a link's keys on a
# line linked at import only): the API, `import show --json` and the page read one shape.
LINE_VIEW_KEYS = (
    "import_rule",
    "booking_date",
    "rule",
    "matched_payment_ids",
    "matched",
    "settled_day",
    "matched_batch_id",
    "fund_code",
    "bank_line_id",
)


def _line_view(batch: ImportBatch, line: ImportedLine) -> dict[str, Any]:
    late = batch.late_links.get(line.line)
    undone = batch.undone_links.get(line.line, [])
    return (
        dict.fromkeys(LINE_VIEW_KEYS)
        | line.to_dict()
        | {
            "late_link": late.to_dict() if late else None,
            "undone_links": [link.to_dict() for link in undone],
            # a person's check of a line an import rule sent to a fund (check_line): who,
            # why, when; and the checks undone since, oldest first
            "checked": batch.checked_lines.get(line.line),
            "checks_undone": batch.checks_undone.get(line.line, []),
        }
    )


def list_imports(ledger: IncomeLedger, limit: int = MAX_BATCHES_LISTED) -> list[dict[str, Any]]:
    """Imports, newest first, without their lines (read from the event store: exact at once,
    without waiting for the read model; reporting tools read `import_batches`)."""
    ids = [
        notification.originator_id for notification in ledger.notifications(ImportBatch.Imported)
    ]
    return [batch_view(_batch(ledger, UUID(str(batch_id)))) for batch_id in ids[::-1][:limit]]


def batch_view(batch: ImportBatch) -> dict[str, Any]:
    totals = batch.totals
    return {
        "batch_id": str(batch.id),
        "file_name": batch.file_name,
        "file_format": batch.file_format,
        "sha256": batch.sha256,
        "line_count": batch.line_count,
        "control_total_pence": batch.control_total_pence,
        "control_count": batch.control_count,
        "receipts_count": totals.receipts_count,
        "receipts_pence": totals.receipts_pence,
        "returned_cheques_count": totals.returned_cheques_count,
        "imported_by": batch.imported_by,
        "imported_at": batch.created_on.isoformat(),
        "reversed": batch.reversed_by is not None,
        "reversed_by": batch.reversed_by,
        "reversal_reason": batch.reversal_reason,
        "reversed_pence": batch.reversed_pence,
        "version": batch.version,
    }


def _imported_before(ledger: IncomeLedger, ids: list[UUID]) -> ImportBatch | None:
    """The import found first, in the order of `ids`, by its batch id (these bytes', or a
    copy's saved otherwise: resaved_batch_ids) or by a file content claim's id (its batch):
    answered as the same file, reversed or not. Which of them exist is one query."""
    recorder = ledger.repository.event_store.recorder
    stored = event_store.first_events(recorder, ids, LOOKUPS_AT_ONCE)
    found = {event.originator_id: event for event in map(ledger.mapper.to_domain_event, stored)}
    for candidate in ids:
        event = found.get(candidate)
        if isinstance(event, FileContentClaim.ContentClaimed):
            return _batch_or_none(ledger, UUID(event.batch_id))
        if isinstance(event, ImportBatch.Imported):
            return _batch_or_none(ledger, candidate)
    return None


def _batch_or_none(ledger: IncomeLedger, batch_id: UUID) -> ImportBatch | None:
    try:
        batch = ledger.repository.get(batch_id)
    except AggregateNotFoundError:
        return None
    return batch if isinstance(batch, ImportBatch) else None


def _batch(ledger: IncomeLedger, batch_id: UUID) -> ImportBatch:
    batch = _batch_or_none(ledger, batch_id)
    if batch is None:
        raise ImportBatchNotFound(f"no import with id {batch_id}; `import list` shows them")
    return batch

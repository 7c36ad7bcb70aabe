"""Bank reconciliation, a first cut: statement credit lines against receipts already recorded.

Money that reached the ledger by another channel (a GOV.UK Pay payment, an Allpay file, a
cheque recorded at the counter) arrives at the bank later as a statement credit line. Such a
line must not become a second receipt: it is linked to what it pays in (recorded on the
statement's import batch, outcome `reconciled`) instead.

A credit line whose reference is a payer's account (names_a_payer: a fund takes it, or it is
valid for a disabled or more than one fund, or a check digit off one) is that payer's own
transfer and is never linked, unless its narrative names a payment provider
(application.imports.names_provider: the ledger's payout narratives, GOVUK PAY by default,
and the collectors', ALLPAY, PAYPOINT, PAYZONE): banks print a provider's line under its own
narrative, and its reference is then the provider's (a payout number, which passes a
modulus 10 check digit one time in ten and is a check digit off one the other nine), not
a payer's account. A provider's line is matched like any other; one that matches nothing
is recorded in suspense (SuspenseReason.PROVIDER_PAYOUT), never in the fund its
reference passes, so it stays on the report and a later run may link it. The decision
is the line's status as stored (suspense), the narrative kept on its receipt's details:
the books need no narrative. One a fund took by its reference at import is
settled, and no exception (taken_by_its_reference); one an import rule sent to a fund may
be another channel's money, and stays on the report for a person.
Matching rules, tried in this order for each other credit line, on receipts not yet linked, not
reversed and not themselves recorded from a statement, received on a UK day from
MATCH_WINDOW_DAYS before the line's booking date up to that date (card money a provider
holds in clearing, GOV.UK Pay's, by rule 4 only: its payout is net of fees and nets the
day's payments together, so a line of one payment's amount is not its payout):
1. a receipt of exactly the line's amount;
2. an earlier imported file (Allpay, CSV), not reversed, whose new receipts add up to
   exactly the amount (the file's receipts all fall in the window);
3. all the (two or more) receipts of one channel on one UK day adding up to exactly the
   amount (a card provider's or GOV.UK Pay's daily payout when its fees are invoiced
   separately).
4. a card provider's payout (GOV.UK Pay): what the provider still holds for one settlement
   day, net of the fees, refunds and lost disputes it deducts, adding up to exactly the
   amount, the nearest day first (see domain.payment.clearing_moves for the days).
The first rule that finds any candidate decides for a run (Matcher.candidates): exactly
one candidate is the line's link, unless another statement line still waiting (its
receipt undecided) may pay in the same receipts or import (Claims: two credit lines of
10.00 and one receipt of 10.00); two or more candidates (two receipts of the amount in the
window, two files, two channels' days or two card settlement days' payouts of it), or one
contested so, link nothing, at import or in any run, as any choice would be a guess: the
line stays its own receipt (a payout debit stays `unmatched`), and the exceptions report
and the import's view list everything it may pay in by any rule (Matcher.every_candidate:
a channel's day beside two receipts of the amount) until a person chooses one, saying why
(choose_link: a late link like a run's, recorded with who and why, undone by
unlink_line). Once chosen, what it pays in is no other line's candidate. A pairing a
person undid is no candidate for a run, but an undo leaves a line with two or more
candidates (that pairing included) waiting for a person: no run links the other by
elimination, not even a person's run for that line alone (which may make the undone
pairing again: _one_line).
A line linked to card payments also settles them: their money moves from the clearing
account to the bank (Payment.Settled; for rule 4, only that day's items).
Besides, rule 4 matches a debit line (a negative payout: the day's refunds exceeded its
payments; one naming the payout that matches nothing is kept on the batch, `unmatched`, for
link_counted_twice) and a payout split over several credit lines of one reference and day
(Matcher.split_payouts).
Two or three earlier imported files (Allpay, CSV) of one format, not reversed, received on
different UK days COMBINED_FILES_DAYS apart at most, every receipt in the line's window and
none linked, whose receipts together make exactly a credit line's amount (a provider's
weekend settled as one credit on Monday) are offered to a person, never linked by a run
(Matcher.files_together), on a line no rule matches or that waits for a person anyway; a
person chooses them as any candidate (choose_link: a link naming the files,
matched_batch_ids, undone by unlink_line). A person names the candidate chosen by its key
(candidate_key: three files of one total on three days make three pairs for a line of
twice it, each receipt in two of them, so no receipt names one pair), or, as before, by a
receipt only it pays in.
What it does not match: a line paying in part of a day or several days, four or more files
together, a reference (it matches amounts and dates only: two receipts of
the same amount in the window wait for a person, and a transfer whose reference is like no
payer's account, of the amount of the one receipt of another channel in the window, a card
at a till or a cheque, is taken for that receipt being paid in). A payout split over lines is linked
by a run only when one settlement day's payout alone adds up to its lines and no other
waiting line may pay it in; else its lines list the payouts and a person chooses
(_split_choices, _choose_split). So do two or three lines of one statement naming the
payout whose narratives or booking days (LOOSE_SPLIT_DAYS apart at most) differ, adding up
to a settlement day's payout (Matcher.loose_splits): offered to a person, never linked by a
run. Card payouts settled before a line's window, up to LATE_PAYOUT_DAYS before its
booking, are offered to a person too (Matcher.late_payouts), never linked by a run.

The other direction, a statement imported before the channel's record of the same money,
is `link_counted_twice`: the same Matcher, run for the statement lines that became their
own receipts against the receipts recorded since.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import threading
import weakref
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, timedelta
from functools import cached_property, partial
from itertools import combinations, product
from operator import attrgetter
from typing import Any, NamedTuple, TypeVar
from uuid import UUID

import orjson
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import get_topic

from application import books_snapshot, event_store
from application.books_snapshot import EXCEPTIONS_BOOKS, Mark, Snapshot
from application.event_store import when_committed
from application.ledger import CommandContext, IncomeLedger, replayed
from domain.cards import compose_text, own_words, require_text
from domain.errors import (
    ConcurrentUpdate,
    ImportBatchNotFound,
    ImportLineNotFound,
    InvalidRequest,
    LineNeedsAChoice,
    LineNotAwaitingLink,
    LineNotLinked,
    LineNotToCheck,
    NotACandidate,
    PaymentNotFound,
    RuleViolation,
)
from domain.funds import Match, SuspenseReason
from domain.imports import (
    FileContentClaim,
    ImportBatch,
    ImportedLine,
    ImportFormat,
    ImportLine,
    LineKind,
    StatementLink,
    imported_lines_from,
)
from domain.limits import UK, uk_day_start, uk_today
from domain.money import pence_to_pounds
from domain.payment import (
    ClearingItem,
    DisputeStatus,
    Payment,
    PaymentStatus,
    ReversalKind,
    clearing_moves,
)
from domain.statements import STATEMENT_FORMATS, STATEMENT_ID_PREFIX, names_payout

log = logging.getLogger(__name__)

MATCH_WINDOW_DAYS = 5
# A card payout booked more than MATCH_WINDOW_DAYS after its settlement day, up to this
# many (a payout held over a bank holiday weekend, a settlement day that is the capture day
# for want of Pay's settled_date, a payout the provider held back for checks for weeks), is
# offered to a person, never linked by a run. A month: money a provider has held longer is
# a case for its support desk, and its payments are on the exceptions report "over 30 days".
LATE_PAYOUT_DAYS = 31
# A payout split over lines whose narratives or booking days differ (loose_splits) is
# offered to a person, never linked by a run: two or three such lines of one statement,
# booked within this many days of each other (a part held from a Friday to the Tuesday
# after a bank holiday Monday).
LOOSE_SPLIT_DAYS = 4
LOOSE_SPLIT_LINES = 3
# Two or three earlier imported files of one source (file format) received on different UK
# days, whose totals only together make a credit line's amount (Allpay's or PayPoint's
# Friday, Saturday and Sunday files settled as one credit on Monday, or over a bank
# holiday), are offered to a person, never linked by a run (Matcher.files_together): at
# most this many files, their days this many days apart at most, all in the line's window.
# A source's day with more files than COMBINED_FILES_PER_DAY is left out of such offers:
# many files a day are not one daily settlement's, and would make the search blow up.
COMBINED_FILES = 3
COMBINED_FILES_DAYS = 4
COMBINED_FILES_PER_DAY = 3
IMPORTS_TOGETHER = "imports_together"
# A candidate's key (candidate_key): this many hex digits of a hash of what it pays in, short
# enough to type, and a line has a handful of candidates, so two of one line never share one.
CANDIDATE_KEY_LENGTH = 12
# The actor of the linking run made after new money is recorded (link_after_recording).
AUTO_LINK_ACTOR = "system:auto-link"
# A linking run after new money of day D reads what was recorded from this many days
# before D - MATCH_WINDOW_DAYS on: a card payment settles some days after it is taken, and
# a day covers clocks and the order in which transactions commit (see scope_start).
SCOPE_EXTRA_DAYS = 7
AGE_BANDS = ((3, "0-3 days"), (7, "4-7 days"), (30, "8-30 days"))
OLDEST_BAND = "over 30 days"
CARD_PAYOUT = "card_payout"
CARD_PAYOUT_PART = "card_payout_part"
PAID_IN_NOTE = "paid in by bank statement"
# Attempts of one linking run that collides with another (each attempt reads afresh).
LINK_ATTEMPTS = 3
# Suspense reasons saying a line's reference is a payer's account reference, valid for a
# fund or a check digit off one: the line is a payer's own transfer, never linked late.
PAYERS_REFERENCE = frozenset(
    {SuspenseReason.AMBIGUOUS, SuspenseReason.DISABLED_FUND, SuspenseReason.INVALID_CHECK_DIGIT}
)


def names_a_payer(match: Match) -> bool:
    """Whether a line's reference is a payer's account (a fund took it, or it is valid for
    a fund or a check digit off one): the payer's own transfer, never taken for money that
    reached the ledger by another channel, whatever its amount. The import asks it only of
    a line whose narrative names no payment provider (application.imports.names_provider):
    a provider's payout number may pass a fund's rule."""
    return match.fund_code is not None or match.suspense_reason in PAYERS_REFERENCE


def taken_by_its_reference(line: ImportedLine) -> bool:
    """Whether a fund took a statement credit line's receipt at import by the line's own
    reference (the funds' reference rules, no import rule): a payer's own transfer
    (names_a_payer), never linked, by a run (_LinkRun.untouched) or a person (no choice is
    offered for it), and no exception: nothing is left for anyone to do with it. A line an
    import rule sent to a fund is not: the rule may have taken it by its narrative, amount
    or channel (a provider's or a cash deposit's line, its reference rewritten), so it may
    be another channel's money counted twice, for a person to check; nor is a line in
    suspense, whatever the reason (a check digit off a payer's account: an officer clears
    it)."""
    return (
        line.kind == LineKind.RECEIPT
        and line.status == PaymentStatus.ALLOCATED.value
        and line.import_rule is None
    )


# A row of the exceptions report, or what one is made from (_oldest_first).
Row = TypeVar("Row")
T = TypeVar("T")
# Which of a line's candidate links may be made (None: any).
Allowed = Callable[["StatementLink"], bool] | None
OPEN_DISPUTES = frozenset({DisputeStatus.OPEN.value, DisputeStatus.EVIDENCE_SUBMITTED.value})


class Receipt(NamedTuple):
    """A receipt as the books hold it (a tuple: a ledger's books hold one for each receipt
    not yet paid in, and a new process makes them all from the stored books, issue #10)."""

    payment_id: str
    channel: str
    amount_pence: int
    received_on: date
    reference: str
    # where the ledger recorded it (its Received event's position; 0: not read in order,
    # as a payment whose clearing _complete_clearing reads alone): the report's order
    position: int = 0


@dataclass
class Books:
    """What a statement line can be matched with, read from the event store."""

    receipts: dict[str, Receipt] = field(default_factory=dict)
    # payment ids per earlier non-statement import, and whether it was reversed
    batches: dict[str, list[str]] = field(default_factory=dict)
    # each such import's file name and format (files_together: the format is its source)
    import_files: dict[str, tuple[str, str]] = field(default_factory=dict)
    linked: set[str] = field(default_factory=set)
    linked_batches: set[str] = field(default_factory=set)
    # credit lines of statements recorded as new receipts, but a payer's own transfer a fund
    # took by its reference (taken_by_its_reference), and payout debits kept unmatched: the
    # statement lines a run considers (a split payout's parts, rivals: Claims)
    unmatched_lines: list[tuple[str, ImportedLine]] = field(default_factory=list)
    # those of them recorded in suspense whose receipt a person has since decided: no money
    # of it is left in suspense (allocated, refunded or reversed): no run links them, no
    # person is offered a choice for them, and they are no exception (decided_line)
    decided_lines: set[tuple[str, int]] = field(default_factory=set)
    # statement lines linked after their import: (batch id, line)
    linked_lines: set[tuple[str, int]] = field(default_factory=set)
    # statement batches' file names, for the notes and reasons that name a line
    file_names: dict[str, str] = field(default_factory=dict)
    # where the ledger recorded each statement (its Imported event's position)
    statement_positions: dict[str, int] = field(default_factory=dict)
    # what card providers have yet to pay out, per payment: (item kind, day) -> pence
    clearing: dict[str, dict[tuple[str, str], int]] = field(default_factory=dict)
    clearing_receipts: dict[str, Receipt] = field(default_factory=dict)
    # disputes by (payment id, dispute id): amount, status, opened day, position recorded
    disputes: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    # how many "paid in" notes each receipt carried when read (note_links)
    paid_in_notes: dict[str, int] = field(default_factory=dict)
    # the pairings a person rejected by undoing a late link: (batch id, line) -> the
    # receipts each undone link paid in (never linked to that line again by a run)
    rejected: dict[tuple[str, int], list[frozenset[str]]] = field(default_factory=dict)
    # lines whose undone pairings a person's run for that very line may make again
    # (_one_line): still undone, so no other candidate is linked by elimination
    relinkable: set[tuple[str, int]] = field(default_factory=set)
    # the position of the last event folded into them (BooksFold.position): books of the
    # same position make the same report rows (a page of the report names it)
    position: int = 0
    # receipts a standing link pays in, not reversed: not in `receipts` (BooksFold keeps
    # only their ids), but each in `linked`; and each earlier import's first and last UK
    # day and total, for an import some of whose receipts are among them (Matcher's imports)
    paid_in: set[str] = field(default_factory=set)
    import_days: dict[str, tuple[date, date, int]] = field(default_factory=dict)

    def allows(self, batch_id: str, line: int, link: StatementLink) -> bool:
        """Whether no person undid this very pairing of the line before, or a person's run
        for the line may make it again (relinkable)."""
        if (batch_id, line) in self.relinkable:
            return True
        paid_in = frozenset(link.matched_payment_ids)
        return paid_in not in self.rejected.get((batch_id, line), ())


BOOK_EVENTS = (
    Payment.Received,
    Payment.Reversed,
    Payment.ReversalUndone,
    Payment.Refunded,
    Payment.FeeCharged,
    Payment.Settled,
    Payment.SettlementUndone,
    Payment.DisputeOpened,
    Payment.DisputeMoved,
    Payment.Noted,
    ImportBatch.Imported,
    ImportBatch.LineLinked,
    ImportBatch.LinkUndone,
    ImportBatch.LineChecked,
    ImportBatch.LineCheckUndone,
)


def read_books(ledger: IncomeLedger, after: int = 0, *, decisions: bool = True) -> Books:
    """The books from the events recorded after position `after` (0: all of them); from a
    later position, a card payment received before it whose clearing moved since is read
    whole (_complete_clearing), so what a provider owes for a day is never half-counted.
    Without `decisions`, no Allocated event is read, and no line is among decided_lines (a
    linking run reads each line's receipt it may link: _LinkRun.untouched)."""
    fold = BooksFold(after, decisions=decisions)
    fold.read(ledger)
    return fold.books(ledger)


@dataclass(frozen=True)
class FoldedStatement:
    """What the books need of a statement's import: its file's name and lines as stored."""

    file_name: str
    lines: list[dict[str, Any]]

    @cached_property
    def imported_lines(self) -> tuple[ImportedLine, ...]:
        # (made once per statement, not on every call of the report: lines are immutable)
        return imported_lines_from(self.lines)


# The shape of a BooksFold snapshot (to_snapshot): a snapshot of another is ignored, and
# the books folded afresh. Change it with what the fold keeps or makes of an event.
# 8: receipts a standing link pays in kept by their ids only (paid_in; issue #10).
# 9: a file's content claim folded for its position only (the same books otherwise).
BOOKS_SNAPSHOT_FORMAT = 9
# Receipts read back whole per query when links are undone (BooksFold.settle).
RETURNING_CHUNK = 1_000


class BooksFold:
    """The books folded from the events after a position, event by event in recording order,
    so that they can be brought up to date by reading only the events recorded since
    (`read` again: KeptBooks). What depends on a later event (a statement reversed
    after its lines were linked, a receipt reversed) is settled when the books are made
    (`books`), each time from the fold's own state, which they never share. A fold from
    the first event can be kept in the database (to_snapshot, from_snapshot): its state
    is plain data, stored whole.

    A receipt a standing link pays in (a statement line's, linked at import or late, or
    older_links') is kept by its id only (paid_in), not whole: it is no row of the report
    and no candidate while the link stands, and most receipts are paid in within days, so
    what the fold holds, stores and copies grows with what is open, not with the history
    (issue #10). A link undone, or its statement reversed, brings the receipt back whole,
    read from its own Received event (settle)."""

    # Allocated only for a statement line's receipt recorded in suspense (`read` decodes no
    # other's): an officer allocating it decides the line (decided_line). Last: a fold
    # without decisions reads the others only. A file's content claim changes nothing here,
    # but is read so that the books' position is the import's last event, as it was before
    # imports claimed their content (a report's pages name that position).
    TOPICS = (
        *BOOK_EVENTS,
        ImportBatch.Reversed,
        FileContentClaim.ContentClaimed,
        Payment.Allocated,
    )

    def __init__(self, after: int = 0, *, decisions: bool = True) -> None:
        self.after = self.position = after
        # whether it folds Allocated events (decided_lines): read_books
        self.decisions = decisions
        # the last event folded (None: none yet), and how many were folded since the fold
        # was last stored or loaded
        self.mark: Mark | None = None
        self.unsaved = 0
        self.receipts: dict[str, Receipt] = {}
        # reversed payments: where each was (last) reversed
        self.reversed_ids: dict[str, int] = {}
        self.received: set[str] = set()
        self.moved: set[str] = set()
        self.paid_in_notes: dict[str, int] = {}
        self.clearing: dict[str, dict[tuple[str, str], int]] = {}
        self.clearing_receipts: dict[str, Receipt] = {}
        # where each payment's clearing last moved (its receipt, at first): `since`
        self.clearing_moved: dict[str, int] = {}
        self.disputes: dict[tuple[str, str], dict[str, Any]] = {}
        # imports of other files: their recorded receipts, and where each was recorded;
        # statements: as imported
        self.imports: dict[str, list[str]] = {}
        self.import_positions: dict[str, int] = {}
        # their file names and formats: [name, format]
        self.import_files: dict[str, list[str]] = {}
        self.statements: dict[str, FoldedStatement] = {}
        self.statement_positions: dict[str, int] = {}
        self.reversed_batches: set[str] = set()
        self.late_links: dict[tuple[str, int], StatementLink] = {}
        self.rejected: dict[tuple[str, int], list[frozenset[str]]] = {}
        # late links of statements recorded before `after` (a fold from a later position
        # only): what they pay in of the receipts and imports folded here is linked
        self.older_links: dict[tuple[str, int], StatementLink] = {}
        # statement lines' receipts recorded in suspense: [pence still in suspense, where
        # the receipt was recorded]
        self.in_suspense: dict[str, list[int]] = {}
        # statement lines' receipts an import rule sent to a fund: [pence not yet refunded
        # or reversed, where the receipt was recorded] (decided_line)
        self.in_funds: dict[str, list[int]] = {}
        # statement lines a person checked (check_line), whose check stands: (batch id, line)
        self.checked: set[tuple[str, int]] = set()
        # receipts of `receipts` that standing links pay in, taken out of it: payment id ->
        # [where it was recorded, how many standing links pay it in]
        self.paid_in: dict[str, list[int]] = {}
        # those no link pays in any more, to be read back whole (settle): id -> position
        self.returning: dict[str, int] = {}
        # each import's first and last UK day and total, when all of its recorded receipts
        # were folded before it (as they are: one transaction)
        self.import_days: dict[str, tuple[date, date, int]] = {}
        # the narratives of statement lines' receipts a fund took by their reference at
        # import, by receipt: provider_lines_in_funds reads them here, not every import
        self.narratives: dict[str, str] = {}

    def read(self, ledger: IncomeLedger) -> None:
        """Fold the events recorded after the last one folded (positions become visible in
        order: see auto_link.WaitingLines.refresh)."""
        last = None
        allocated = get_topic(Payment.Allocated)
        topics = self.TOPICS if self.decisions else self.TOPICS[:-1]
        for last in ledger.notifications(*topics, after=self.position):
            # (apply ignores the others: most receipts are allocated, few from statements)
            if last.topic != allocated or str(last.originator_id) in self.in_suspense:
                self.apply(ledger.mapper.to_domain_event(last), last.id)
            self.position = last.id
            self.unsaved += 1
        if last is not None:
            self.mark = books_snapshot.mark_of(last)
        self.settle(ledger)

    def settle(self, ledger: IncomeLedger) -> None:
        """Bring back whole the receipts no standing link pays in any more (returning),
        from their Received events, at the positions they were recorded."""
        if not self.returning:
            return
        wanted = sorted(self.returning.items(), key=lambda item: item[1])
        found = {
            str(stored.originator_id): ledger.mapper.to_domain_event(stored)
            for stored in event_store.first_events(
                ledger.recorder, [UUID(pid) for pid, _ in wanted], RETURNING_CHUNK
            )
        }
        for payment_id, position in wanted:
            received = found[payment_id]
            assert isinstance(received, Payment.Received), "a receipt's first event"
            self.receipts[payment_id] = _receipt(received, position)
        self.returning = {}

    def _pays_in(self, link: StatementLink, change: int) -> None:
        """A standing link made (change 1) or gone (-1): the receipts of this fold that it
        pays in leave `receipts` while one pays them in (paid_in), and come back (returning)
        when none does."""
        for payment_id in link.matched_payment_ids:
            held = self.paid_in.get(payment_id)
            if change > 0:
                if held is not None:
                    held[1] += 1
                elif payment_id in self.receipts:
                    self.paid_in[payment_id] = [self.receipts.pop(payment_id).position, 1]
                elif payment_id in self.returning:
                    self.paid_in[payment_id] = [self.returning.pop(payment_id), 1]
            elif held is not None:
                held[1] -= 1
                if not held[1]:
                    del self.paid_in[payment_id]
                    self.returning[payment_id] = held[0]

    def _statement_reversed(self, batch_id: str) -> None:
        """A statement reversed pays nothing in any more: its import-time and late links
        (older_links' of one folded before `after`) stop standing."""
        if batch_id in self.reversed_batches:
            return
        statement = self.statements.get(batch_id)
        standing = [line.link for line in statement.imported_lines] if statement else []
        standing += [link for key, link in self.late_links.items() if key[0] == batch_id]
        standing += [link for key, link in self.older_links.items() if key[0] == batch_id]
        for link in standing:
            if link is not None:
                self._pays_in(link, -1)

    def apply(self, event: Any, position: int = 0) -> None:
        if isinstance(event, FileContentClaim.ContentClaimed):
            return  # only its position counts (TOPICS)
        payment_id = str(event.originator_id)
        if isinstance(event, Payment.Received):
            if self.after:  # from the start, every payment's clearing is read whole
                self.received.add(payment_id)
            if not (event.external_id or "").startswith(STATEMENT_ID_PREFIX):
                self.receipts[payment_id] = _receipt(event, position)
            elif event.suspense_reason is not None:
                self.in_suspense[payment_id] = [event.amount_pence, position]
            elif event.import_rule is not None:
                self.in_funds[payment_id] = [event.amount_pence, position]
            elif narrative := (event.provider_details or {}).get("narrative"):
                self.narratives[payment_id] = narrative
            if event.clearing_account is not None:
                self.clearing[payment_id] = {}
                self.clearing_receipts[payment_id] = _receipt(event, position)
        elif self.after and payment_id not in self.received and clearing_moves(event):
            self.moved.add(payment_id)
        if isinstance(event, Payment.Reversed):
            self.reversed_ids[payment_id] = position
        elif isinstance(event, Payment.ReversalUndone):
            self.reversed_ids.pop(payment_id, None)
        elif _is_paid_in_note(event):
            self.paid_in_notes[payment_id] = self.paid_in_notes.get(payment_id, 0) + 1
        elif isinstance(event, ImportBatch.Imported):
            if event.file_format in OpenLines.FORMATS:
                statement = FoldedStatement(event.file_name, event.lines)
                self.statements[payment_id] = statement
                self.statement_positions[payment_id] = position
                for line in statement.imported_lines:
                    if line.link is not None:
                        self._pays_in(line.link, 1)
            else:
                ids = [
                    line.payment_id for line in event.imported_lines if line.outcome == "recorded"
                ]
                self.imports[payment_id] = ids
                self.import_positions[payment_id] = position
                self.import_files[payment_id] = [event.file_name, event.file_format]
                receipts = [self.receipts[pid] for pid in ids if pid in self.receipts]
                if ids and len(receipts) == len(ids):
                    days = [receipt.received_on for receipt in receipts]
                    total = sum(receipt.amount_pence for receipt in receipts)
                    self.import_days[payment_id] = (min(days), max(days), total)
        elif isinstance(event, ImportBatch.Reversed):
            self._statement_reversed(payment_id)
            self.reversed_batches.add(payment_id)
        elif isinstance(event, ImportBatch.LineLinked):
            link = StatementLink.from_dict(event.link)
            key = (payment_id, event.line)
            links = self.late_links if payment_id in self.statements else self.older_links
            # (older_links: a statement recorded before `after`: its line pays in the
            # receipts all the same)
            if payment_id not in self.reversed_batches:
                if key in links:
                    self._pays_in(links[key], -1)
                self._pays_in(link, 1)
            links[key] = link
        elif isinstance(event, ImportBatch.LinkUndone):
            # (payment_id is the batch's id here)
            undone = self.older_links.pop((payment_id, event.line), None)
            if payment_id in self.statements:
                undone = self.late_links.pop((payment_id, event.line), None) or undone
                paid_in = frozenset(event.link["matched_payment_ids"])
                self.rejected.setdefault((payment_id, event.line), []).append(paid_in)
            if undone is not None and payment_id not in self.reversed_batches:
                self._pays_in(undone, -1)
        elif isinstance(event, ImportBatch.LineChecked):
            self.checked.add((payment_id, event.line))
        elif isinstance(event, ImportBatch.LineCheckUndone):
            self.checked.discard((payment_id, event.line))
        if payment_id in self.in_suspense:
            self.in_suspense[payment_id][0] -= _from_suspense(event)
        elif payment_id in self.in_funds:
            self.in_funds[payment_id][0] -= _taken_back(event)
        _add_dispute(self.disputes, event, position)
        if payment_id in self.clearing and clearing_moves(event):
            _add_clearing(self.clearing[payment_id], event)
            self.clearing_moved[payment_id] = position

    def books(self, ledger: IncomeLedger) -> Books:
        """The books as folded so far: a statement reversed since pays nothing in, by its
        late links no more than by its import-time ones; a reversed receipt is nobody's."""
        standing = [bid for bid in self.statements if bid not in self.reversed_batches]
        books = Books(
            receipts=dict(self.receipts),
            batches={
                bid: ids for bid, ids in self.imports.items() if bid not in self.reversed_batches
            },
            import_files={
                bid: (name, file_format)
                for bid, (name, file_format) in self.import_files.items()
                if bid not in self.reversed_batches
            },
            file_names={bid: self.statements[bid].file_name for bid in standing},
            statement_positions={bid: self.statement_positions[bid] for bid in standing},
            clearing={pid: dict(held) for pid, held in self.clearing.items()},
            clearing_receipts=dict(self.clearing_receipts),
            disputes={key: dict(dispute) for key, dispute in self.disputes.items()},
            paid_in_notes=dict(self.paid_in_notes),
            rejected={
                key: list(undone)
                for key, undone in self.rejected.items()
                if key[0] not in self.reversed_batches
            },
            position=self.position,
            paid_in=set(self.paid_in),
            import_days={
                bid: days
                for bid, days in self.import_days.items()
                if bid not in self.reversed_batches
            },
        )
        for batch_id in standing:
            for line in self.statements[batch_id].imported_lines:
                if line.link is not None:
                    _add_link(books, line.link)
                elif line.awaits_link and not taken_by_its_reference(line):
                    books.unmatched_lines.append((batch_id, line))
        for key, link in self.late_links.items():
            if key[0] not in self.reversed_batches:
                _add_link(books, link)
                books.linked_lines.add(key)
        # A statement recorded before `after` is not in these books, but a line of it linked
        # since pays in receipts that are: none of them is another line's candidate. (Only
        # those folded here, which a link recorded before `after` cannot pay in: the books
        # are the same whether folded from `after` or cut there, BooksFold.since.)
        for key, link in self.older_links.items():
            if key[0] not in self.reversed_batches:
                books.linked.update(
                    pid
                    for pid in link.matched_payment_ids
                    if pid in self.receipts or pid in self.paid_in
                )
                if link.matched_batch_id in self.imports:
                    books.linked_batches.add(link.matched_batch_id)
                books.linked_batches.update(
                    bid for bid in link.matched_batch_ids if bid in self.imports
                )
        if self.after:
            _complete_clearing(ledger, books, self.moved)
        for payment_id in self.reversed_ids:
            books.receipts.pop(payment_id, None)
            books.paid_in.discard(payment_id)
        # A statement line linked late, or whose receipt was reversed (counted twice and
        # taken back by an officer, returned, its import reversed), no longer waits.
        books.unmatched_lines = [
            (batch_id, line)
            for batch_id, line in books.unmatched_lines
            if (line.payment_id is None or line.payment_id not in self.reversed_ids)
            and (batch_id, line.line) not in books.linked_lines
        ]
        if self.decisions:
            books.decided_lines = {
                (batch_id, line.line)
                for batch_id, line in books.unmatched_lines
                if decided_line(line, self.in_suspense, self.in_funds)
                or (batch_id, line.line) in self.checked
            }
        return books

    def since(self, after: int) -> BooksFold:
        """The fold that BooksFold(after) makes of the events this one folded: their books
        are read_books(ledger, after)'s, but for paid_in_notes (of every event here, which
        no choice of a person reads), with no event read again. What that fold does not
        see, this one leaves out by where it was recorded: receipts, imports, statements
        (and their late links and undone pairings: but what a late link of a statement
        recorded before `after` pays in of the receipts and imports kept is linked, as
        that fold reads it from the link's own event, older_links), disputes, reversals
        recorded before `after`; a card payment received before it whose clearing moved since is whole,
        as _complete_clearing reads it, after the others (in payment id order)."""
        assert not self.after, "a fold of the whole store"
        fold = BooksFold(after)
        fold.position, fold.mark = self.position, self.mark
        assert not self.returning, "settled (read)"
        fold.receipts = {pid: r for pid, r in self.receipts.items() if r.position > after}
        fold.paid_in = {pid: held for pid, held in self.paid_in.items() if held[0] > after}
        fold.reversed_ids = {pid: at for pid, at in self.reversed_ids.items() if at > after}
        fold.paid_in_notes = self.paid_in_notes
        for pid, receipt in self.clearing_receipts.items():
            if receipt.position > after:
                fold.clearing[pid] = self.clearing[pid]
                fold.clearing_receipts[pid] = receipt
        moved = [
            pid
            for pid, at in self.clearing_moved.items()
            if at > after and self.clearing_receipts[pid].position <= after
        ]
        for pid in sorted(moved):
            fold.clearing[pid] = self.clearing[pid]
            fold.clearing_receipts[pid] = self.clearing_receipts[pid]._replace(position=0)
        fold.clearing_moved = {pid: self.clearing_moved[pid] for pid in fold.clearing}
        fold.disputes = {key: d for key, d in self.disputes.items() if d["position"] > after}
        fold.import_positions = {bid: at for bid, at in self.import_positions.items() if at > after}
        fold.imports = {bid: self.imports[bid] for bid in fold.import_positions}
        fold.import_files = {bid: self.import_files[bid] for bid in fold.import_positions}

        def folded_there(payment_id: str) -> bool:
            receipt = self.receipts.get(payment_id)
            held = self.paid_in.get(payment_id)
            return (receipt.position if receipt else held[0] if held else 0) > after

        # (that fold knows an import's days when it folded all of its receipts first)
        fold.import_days = {
            bid: days
            for bid, days in self.import_days.items()
            if bid in fold.import_positions and all(map(folded_there, self.imports[bid]))
        }
        fold.statement_positions = {
            bid: at for bid, at in self.statement_positions.items() if at > after
        }
        fold.statements = {bid: self.statements[bid] for bid in fold.statement_positions}
        fold.reversed_batches = self.reversed_batches
        fold.late_links = {
            key: link for key, link in self.late_links.items() if key[0] in fold.statements
        }
        fold.rejected = {
            key: undone for key, undone in self.rejected.items() if key[0] in fold.statements
        }
        fold.older_links = {
            key: link for key, link in self.late_links.items() if key[0] not in fold.statements
        }
        fold.in_suspense = {pid: held for pid, held in self.in_suspense.items() if held[1] > after}
        fold.in_funds = {pid: held for pid, held in self.in_funds.items() if held[1] > after}
        fold.checked = {key for key in self.checked if key[0] in fold.statements}
        return fold

    def to_snapshot(self) -> Snapshot:
        """The fold's whole state as plain data (JSON, compressed), with its last event's
        mark: from_snapshot makes the same fold of it, every dict in the same order."""
        assert not self.after and self.mark is not None, "a fold of the whole store"
        assert not self.returning, "settled (read)"
        state = {
            "receipts": [_receipt_data(r) for r in self.receipts.values()],
            "reversed_ids": list(self.reversed_ids.items()),
            "paid_in_notes": list(self.paid_in_notes.items()),
            "clearing": [
                [pid, [[kind, day, pence] for (kind, day), pence in held.items()]]
                for pid, held in self.clearing.items()
            ],
            "clearing_receipts": [_receipt_data(r) for r in self.clearing_receipts.values()],
            "clearing_moved": list(self.clearing_moved.items()),
            "disputes": [
                [
                    pid,
                    dispute_id,
                    d["amount_pence"],
                    d["status"],
                    d["opened_on"].isoformat(),
                    d["position"],
                ]
                for (pid, dispute_id), d in self.disputes.items()
            ],
            "imports": list(self.imports.items()),
            "import_positions": list(self.import_positions.items()),
            "import_files": list(self.import_files.items()),
            "statements": [[bid, s.file_name, s.lines] for bid, s in self.statements.items()],
            "statement_positions": list(self.statement_positions.items()),
            "reversed_batches": sorted(self.reversed_batches),
            "late_links": [
                [bid, line, link.to_dict()] for (bid, line), link in self.late_links.items()
            ],
            "rejected": [
                [bid, line, [sorted(paid_in) for paid_in in undone]]
                for (bid, line), undone in self.rejected.items()
            ],
            "in_suspense": [[pid, *held] for pid, held in self.in_suspense.items()],
            "in_funds": [[pid, *held] for pid, held in self.in_funds.items()],
            "checked": sorted([bid, line] for bid, line in self.checked),
            "paid_in": [[pid, *held] for pid, held in self.paid_in.items()],
            "import_days": [
                [bid, first.isoformat(), last.isoformat(), total]
                for bid, (first, last, total) in self.import_days.items()
            ],
            "narratives": list(self.narratives.items()),
        }
        data = json.dumps(state, separators=(",", ":")).encode()
        return Snapshot(self.mark, zlib.compress(data, 1))

    @classmethod
    def from_snapshot(cls, snapshot: Snapshot) -> BooksFold:
        # (orjson reads what json wrote, several times faster: issue #10)
        state = orjson.loads(zlib.decompress(snapshot.books))
        fold = cls()
        fold.position, fold.mark = snapshot.mark.position, snapshot.mark
        days: dict[str, date] = {}
        fold.receipts = {row[0]: _receipt_from(row, days) for row in state["receipts"]}
        fold.reversed_ids = dict(state["reversed_ids"])
        fold.paid_in_notes = dict(state["paid_in_notes"])
        fold.clearing = {
            pid: {(kind, day): pence for kind, day, pence in held}
            for pid, held in state["clearing"]
        }
        fold.clearing_receipts = {
            row[0]: _receipt_from(row, days) for row in state["clearing_receipts"]
        }
        fold.clearing_moved = dict(state["clearing_moved"])
        fold.disputes = {
            (pid, dispute_id): {
                "amount_pence": pence,
                "status": status,
                "opened_on": date.fromisoformat(opened_on),
                "position": position,
            }
            for pid, dispute_id, pence, status, opened_on, position in state["disputes"]
        }
        fold.imports = dict(state["imports"])
        fold.import_positions = dict(state["import_positions"])
        fold.import_files = dict(state["import_files"])
        fold.statements = {
            bid: FoldedStatement(file_name, lines) for bid, file_name, lines in state["statements"]
        }
        fold.statement_positions = dict(state["statement_positions"])
        fold.reversed_batches = set(state["reversed_batches"])
        fold.late_links = {
            (bid, line): StatementLink.from_dict(link) for bid, line, link in state["late_links"]
        }
        fold.rejected = {
            (bid, line): [frozenset(paid_in) for paid_in in undone]
            for bid, line, undone in state["rejected"]
        }
        fold.in_suspense = {pid: [pence, at] for pid, pence, at in state["in_suspense"]}
        fold.in_funds = {pid: [pence, at] for pid, pence, at in state["in_funds"]}
        fold.checked = {(bid, line) for bid, line in state["checked"]}
        fold.paid_in = {pid: [at, count] for pid, at, count in state["paid_in"]}
        fold.import_days = {
            bid: (date.fromisoformat(first), date.fromisoformat(last), total)
            for bid, first, last, total in state["import_days"]
        }
        fold.narratives = dict(state["narratives"])
        return fold


def _from_suspense(event: Any) -> int:
    """The pence an event of a receipt takes out of suspense (negative: puts back)."""
    if isinstance(event, Payment.Allocated):
        return sum(line["amount_pence"] for line in event.lines)
    if isinstance(event, Payment.Refunded) and event.fund_code is None:
        return event.amount_pence
    if isinstance(event, Payment.Reversed):
        return event.suspense_pence
    if isinstance(event, Payment.ReversalUndone):
        return -event.suspense_pence
    return 0


def _taken_back(event: Any) -> int:
    """The pence an event of a receipt refunds or reverses (negative: a reversal undone)."""
    if isinstance(event, Payment.Refunded | Payment.Reversed):
        return event.amount_pence
    if isinstance(event, Payment.ReversalUndone):
        return -event.amount_pence
    return 0


def decided_line(
    line: ImportedLine,
    in_suspense: dict[str, list[int]],
    in_funds: dict[str, list[int]] | None = None,
) -> bool:
    """Whether a statement credit line recorded in suspense has a receipt a person has
    since decided: none of its money is left in suspense (an officer allocated it, in
    full, refunded or reversed it); or whether a line an import rule sent to a fund has
    a receipt refunded or reversed in full (none of its money is left anywhere to count
    twice). A run links only a receipt wholly in suspense (_LinkRun.untouched), and no
    person is offered a choice for another (_choices), so nothing is left for anyone to do
    with it: it is no exception. One still (even partly) in suspense is, and so is a line
    an import rule sent to a fund with money of it still in a fund, until a person checks
    it (check_line; taken_by_its_reference). A decided line that was in fact another
    channel's money counted twice leaves that channel's receipt unpaid in: the report
    lists that receipt (unmatched receipts)."""
    if not line.is_new_receipt:
        return False
    if line.status == PaymentStatus.SUSPENSE.value:
        held = in_suspense.get(line.payment_id or "")
    else:
        held = (in_funds or {}).get(line.payment_id or "")
    return held is not None and held[0] == 0


def _receipt_data(receipt: Receipt) -> list[Any]:
    return [
        receipt.payment_id,
        receipt.channel,
        receipt.amount_pence,
        receipt.received_on.isoformat(),
        receipt.reference,
        receipt.position,
    ]


def _receipt_from(row: list[Any], days: dict[str, date]) -> Receipt:
    """A receipt from its stored data; `days`: the dates made so far, by their text."""
    payment_id, channel, pence, received_on, reference, position = row
    day = days.get(received_on)
    if day is None:
        day = days[received_on] = date.fromisoformat(received_on)
    # (the tuple made at once: NamedTuple's own __new__ is a Python call, ~1 s per 1M)
    return tuple.__new__(Receipt, (payment_id, channel, pence, day, reference, position))


# A process stores its books (KeptBooks) once it has folded this many events since they
# were last stored or loaded: a new process then folds at most about this many.
SNAPSHOT_EVERY_EVENTS = 5_000


class KeptBooks:
    """The whole books of one process, kept folded (BooksFold) and brought up to date on
    each use by reading only the events recorded since the last: the exceptions report
    reads the recent events, not the whole history, on each call after a process's first.
    A process starts from the books stored in the database (books_snapshot), and stores
    its own every SNAPSHOT_EVERY_EVENTS events, so that its first call too reads only
    what was recorded since. It holds a few hundred bytes per receipt not yet paid in
    (their amounts, days and references, as the report lists them), and the id of each
    receipt paid in (BooksFold.paid_in; its import's and its statement line's lists of ids).
    The last event folded must still stand where it was read (books_snapshot.stands): a
    store restored to an older state, or another store, is folded afresh."""

    def __init__(self) -> None:
        # reentrant: a save outside a write transaction runs at once, inside `books`
        self._lock = threading.RLock()
        self._fold: BooksFold | None = None

    def books(self, ledger: IncomeLedger, after: int = 0) -> Books:
        """The whole books (after 0), or those read_books(ledger, after) reads (BooksFold.since)."""
        return self.using(ledger, lambda fold: (fold.since(after) if after else fold).books(ledger))

    def using(self, ledger: IncomeLedger, use: Callable[[BooksFold], T]) -> T:
        """What `use` makes of the fold brought up to date (it must not change the fold)."""
        with self._lock:
            fold = self._fold
            if fold is None or (
                fold.mark is not None and not books_snapshot.stands(ledger, fold.mark)
            ):
                fold = self._fold = _stored_fold(ledger) or BooksFold()
            fold.read(ledger)
            if fold.unsaved >= SNAPSHOT_EVERY_EVENTS:
                # Never what a write transaction read of its own events before it commits.
                when_committed(ledger.recorder, partial(self._save, ledger, fold))
            return use(fold)

    def _save(self, ledger: IncomeLedger, fold: BooksFold) -> None:
        with self._lock:
            if self._fold is not fold or fold.unsaved < SNAPSHOT_EVERY_EVENTS:
                return
            # Each worker folds the same events: only one far enough behind stores them.
            stored = books_snapshot.saved_position(ledger, EXCEPTIONS_BOOKS, BOOKS_SNAPSHOT_FORMAT)
            if stored is not None and fold.position - stored >= SNAPSHOT_EVERY_EVENTS:
                books_snapshot.save(
                    ledger, EXCEPTIONS_BOOKS, BOOKS_SNAPSHOT_FORMAT, fold.to_snapshot()
                )
            fold.unsaved = 0  # stored, by this process or recently enough by another


def _stored_fold(ledger: IncomeLedger) -> BooksFold | None:
    """The books stored in the database (None: none that still stand in this store)."""
    snapshot = books_snapshot.load(ledger, EXCEPTIONS_BOOKS, BOOKS_SNAPSHOT_FORMAT)
    if snapshot is None:
        return None
    try:
        return BooksFold.from_snapshot(snapshot)
    except (ValueError, KeyError, TypeError, zlib.error):
        log.warning("the stored %s are unreadable: folding the events afresh", EXCEPTIONS_BOOKS)
        # Deleted, so that the books folded afresh are stored in its place at once.
        books_snapshot.forget(ledger, EXCEPTIONS_BOOKS, snapshot.mark)
        return None


@dataclass
class StoredBooksCheck:
    """The stored exceptions books compared with a fold afresh of the events up to their
    position (check_stored_books)."""

    # none (nothing stored), other_format (ignored by this release, replaced when it next
    # stores), stale (its event no longer stands: ignored, folded afresh), unreadable,
    # differs, matches
    status: str
    position: int | None = None
    differences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status not in ("unreadable", "differs")

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "status": self.status,
            "position": self.position,
            "differences": self.differences,
        }


def check_stored_books(ledger: IncomeLedger, most: int = 10) -> StoredBooksCheck:
    """Whether the exceptions books stored in the database (books_snapshot) are the books
    a fold afresh of the events up to their position makes, field by field (at most `most`
    differing entries named per field): a process that loads them starts from them, so
    every figure of the report is traceable to the events only if they are. Reads only
    (a stale or unreadable row is left for the next process to replace); folds the
    events up to the stored position once."""
    found = books_snapshot.stored(ledger, EXCEPTIONS_BOOKS)
    if found is None:
        return StoredBooksCheck("none")
    books_format, snapshot = found
    position = snapshot.mark.position
    if books_format != BOOKS_SNAPSHOT_FORMAT:
        return StoredBooksCheck("other_format", position)
    if not books_snapshot.stands(ledger, snapshot.mark):
        return StoredBooksCheck("stale", position)
    try:
        loaded = BooksFold.from_snapshot(snapshot)
    except (ValueError, KeyError, TypeError, zlib.error) as error:
        return StoredBooksCheck(
            "unreadable", position, [f"the stored books cannot be read: {error!r}"]
        )
    fresh = BooksFold()
    for notification in ledger.notifications(*BooksFold.TOPICS):
        if notification.id > position:
            break
        fresh.apply(ledger.mapper.to_domain_event(notification), notification.id)
        fresh.position = notification.id
        fresh.mark = books_snapshot.mark_of(notification)
    fresh.settle(ledger)
    differences = [] if fresh.mark == loaded.mark else ["mark: the last event folded differs"]
    for name, value in vars(fresh).items():
        if name in ("unsaved", "mark"):
            continue
        differences += _differences(name, getattr(loaded, name), value, most)
    return StoredBooksCheck("differs" if differences else "matches", position, differences)


def _differences(name: str, stored: Any, fresh: Any, most: int) -> list[str]:
    """What differs between a stored and a fresh fold's field, in words."""
    if stored == fresh:
        return []
    if not (isinstance(stored, dict) and isinstance(fresh, dict)):
        return [f"{name}: stored {stored!r}, folded afresh {fresh!r}"]
    keys = list(fresh) + [key for key in stored if key not in fresh]
    found = []
    for key in keys:
        if key not in stored:
            found.append(f"{name}[{key!r}]: missing from the stored books")
        elif key not in fresh:
            found.append(f"{name}[{key!r}]: stored, but no event makes it")
        elif stored[key] != fresh[key]:
            found.append(f"{name}[{key!r}]: stored {stored[key]!r}, folded afresh {fresh[key]!r}")
    if len(found) > most:
        found = [*found[:most], f"{name}: {len(found) - most} more differences"]
    return found


_KEPT_BOOKS: weakref.WeakKeyDictionary[IncomeLedger, KeptBooks] = weakref.WeakKeyDictionary()
_KEPT_BOOKS_LOCK = threading.Lock()


def kept_books(ledger: IncomeLedger, after: int = 0) -> Books:
    """The ledger's books as read_books(ledger, after) reads them (but for paid_in_notes,
    always the whole history's: BooksFold.since), from what this process folded before and
    the events recorded since (KeptBooks)."""
    return _kept(ledger).books(ledger, after)


def _kept(ledger: IncomeLedger) -> KeptBooks:
    with _KEPT_BOOKS_LOCK:
        kept = _KEPT_BOOKS.get(ledger)
        if kept is None:
            kept = _KEPT_BOOKS[ledger] = KeptBooks()
    return kept


def _complete_clearing(ledger: IncomeLedger, books: Books, payment_ids: set[str]) -> None:
    """What card providers hold of payments received before the books' first event (a
    refund today of last month's payment), from each payment's own events."""
    for payment_id in sorted(payment_ids):
        events = ledger.repository.event_store.get(UUID(payment_id))
        received = next(events)
        assert isinstance(received, Payment.Received)
        if received.clearing_account is None:
            continue
        held: dict[tuple[str, str], int] = {}
        _add_clearing(held, received)
        for event in events:
            _add_clearing(held, event)
        books.clearing[payment_id] = held
        books.clearing_receipts[payment_id] = _receipt(received)


def _add_clearing(held: dict[tuple[str, str], int], event: Any) -> None:
    for kind, day, pence in clearing_moves(event):
        held[(kind, day)] = held.get((kind, day), 0) + pence
        if not held[(kind, day)]:
            del held[(kind, day)]


def _add_dispute(
    disputes: dict[tuple[str, str], dict[str, Any]], event: Any, position: int = 0
) -> None:
    key = (str(event.originator_id), getattr(event, "dispute_id", ""))
    if isinstance(event, Payment.DisputeOpened):
        disputes[key] = {
            "amount_pence": event.amount_pence,
            "status": DisputeStatus.OPEN.value,
            "opened_on": event.effective_at.astimezone(UK).date(),
            "position": position,
        }
    elif isinstance(event, Payment.DisputeMoved) and key in disputes:
        disputes[key]["status"] = event.status


def _receipt(event: Payment.Received, position: int = 0) -> Receipt:
    return Receipt(
        str(event.originator_id),
        event.channel,
        event.amount_pence,
        event.received_at.astimezone(UK).date(),
        event.reference,
        position,
    )


def _add_link(books: Books, link: StatementLink) -> None:
    books.linked.update(link.matched_payment_ids)
    if link.matched_batch_id:
        books.linked_batches.add(link.matched_batch_id)
    books.linked_batches.update(link.matched_batch_ids)


# ---- matching a statement's lines ------------------------------------------------------------


def match_lines(
    ledger: IncomeLedger,
    file_format: ImportFormat,
    lines: Iterable[ImportLine],
    payers_own: Callable[[ImportLine], bool] = lambda _: False,
) -> tuple[dict[int, StatementLink], set[int], dict[str, int]]:
    """The link for each statement credit line that pays in receipts already recorded, by
    line number (a line not in the result is a new receipt), the lines left waiting for a
    person (two or more candidates, or one that another waiting line may pay in too: see
    Claims), and the books' paid-in notes for note_links. A line `payers_own` says is a
    payer's transfer (names_a_payer) is never linked. The books are the ones this
    process keeps (kept_books): an API worker's statement import reads the events
    recorded since its previous read, not the whole history."""
    if file_format not in STATEMENT_FORMATS:
        return {}, set(), {}
    books = kept_books(ledger)
    matcher = Matcher(books)
    claims = waiting_claims(matcher, books)
    tried: list[tuple[ImportLine, date, list[StatementLink]]] = []
    for line in lines:
        if not line.details or line.kind not in (LineKind.RECEIPT, LineKind.PAYOUT_DEBIT):
            continue
        if line.kind is LineKind.RECEIPT and payers_own(line):
            continue
        booked = date.fromisoformat(line.details["booking_date"])
        if line.kind is LineKind.PAYOUT_DEBIT:
            found = matcher.candidates_payout(booked, -line.amount_pence)
        else:
            found = matcher.candidates(booked, line.amount_pence)
        claims.add((NEW_LINE, line.line_number), found)
        tried.append((line, booked, found))
    rival_waits = Undecided(ledger, books.unmatched_lines)
    links: dict[int, StatementLink] = {}
    waiting: set[int] = set()
    alone: list[SplitCandidate] = []
    for line, booked, found in tried:
        key = (NEW_LINE, line.line_number)
        if len(found) == 1 and not claims.contested(key, found[0], rival_waits):
            matcher.take(found[0])
            links[line.line_number] = found[0]
        elif found:
            waiting.add(line.line_number)
        elif line.kind is LineKind.RECEIPT and names_payout(
            line.details.get("narrative"), ledger.payout_narratives
        ):
            alone.append(
                SplitCandidate(line.reference, line.line_number, booked, line.amount_pence)
            )

    def unclaimed(parts: list[SplitCandidate], whole: StatementLink) -> bool:
        return not claims.contested((NEW_LINE, parts[0].line), whole, rival_waits)

    links.update((part.line, link) for part, link in matcher.split_payouts(alone, usable=unclaimed))
    return links, waiting, books.paid_in_notes


# The key of a line of the file being imported, in Claims (it has no batch id yet).
NEW_LINE = ""
LineKey = tuple[str, int]


def _claimed(link: StatementLink) -> frozenset[tuple[str, str | None]]:
    """What a link pays in: its receipts (a card payout's, each for its settlement day: one
    payment's refund is deducted from a later day's payout than its own) and its import."""
    tokens = {(payment_id, link.settled_day) for payment_id in link.matched_payment_ids}
    if link.matched_batch_id:
        tokens.add(("import", link.matched_batch_id))
    tokens.update(("import", batch_id) for batch_id in link.matched_batch_ids)
    return frozenset(tokens)


class Claims:
    """What each statement line waiting for a link may pay in, by the rule that decides for
    a run (Matcher.candidates; of a line whose pairings a person undid, the others). A
    link one line's rules find that another line still waiting (its receipt undecided) may
    pay in too is contested: two credit lines of 10.00 and one receipt of 10.00 is a guess
    whichever line takes it, so no run takes it, and both wait for a person (README, Two
    lines of one amount)."""

    def __init__(self) -> None:
        self.lines_by_claim: dict[tuple[str, str | None], set[LineKey]] = defaultdict(set)
        # what each line's rules found, as read (before any link of the run: _run_link)
        self.found: dict[LineKey, list[StatementLink]] = {}

    def add(self, key: LineKey, links: Iterable[StatementLink]) -> None:
        self.found[key] = list(links)
        for link in self.found[key]:
            for claim in _claimed(link):
                self.lines_by_claim[claim].add(key)

    def rivals(self, key: LineKey, link: StatementLink) -> set[LineKey]:
        found: set[LineKey] = set()
        for claim in _claimed(link):
            found.update(self.lines_by_claim.get(claim, ()))
        found.discard(key)
        return found

    def contested(
        self, key: LineKey, link: StatementLink, waits: Callable[[LineKey], bool]
    ) -> bool:
        return any(waits(rival) for rival in sorted(self.rivals(key, link)))


def waiting_claims(
    matcher: Matcher, books: Books, lines: Iterable[tuple[str, ImportedLine]] | None = None
) -> Claims:
    """The claims of the statement lines (by default, the books') that may wait for a
    link (may_wait)."""
    claims = Claims()
    for batch_id, line in books.unmatched_lines if lines is None else lines:
        if not may_wait(line) or line.booking_date is None:
            continue
        key = (batch_id, line.line)
        allowed = partial(books.allows, *key) if key in books.rejected else None
        booked = date.fromisoformat(line.booking_date)
        claims.add(key, _line_candidates(matcher, line, booked, allowed))
    return claims


class Undecided:
    """Whether a waiting statement line's own receipt is still undecided (_undecided: wholly
    in suspense for want of a payer's reference), each receipt read once. A line of the
    file being imported (not among `lines`) is undecided; so is a payout debit kept
    unmatched (it has no receipt for anyone to decide); a line among `decided` (the
    books': Books.decided_lines, as of the books' position) is not, its receipt unread."""

    def __init__(
        self,
        ledger: IncomeLedger,
        lines: Iterable[tuple[str, ImportedLine]],
        decided: frozenset[LineKey] | set[LineKey] = frozenset(),
    ) -> None:
        self.ledger = ledger
        self.lines = {(batch_id, line.line): line for batch_id, line in lines}
        self.decided = decided
        self.receipts: dict[str, Payment] = {}

    def receipt(self, payment_id: str) -> Payment:
        if payment_id not in self.receipts:
            self.receipts[payment_id] = self.ledger.repository.get(UUID(payment_id))
        return self.receipts[payment_id]

    def __call__(self, key: LineKey) -> bool:
        if key in self.decided:
            return False
        line = self.lines.get(key)
        if line is None or line.is_open_debit:
            return True
        assert line.payment_id is not None
        return _undecided(self.receipt(line.payment_id), line)


@dataclass(frozen=True)
class SplitCandidate:
    """A credit line naming the card provider's payout (names_payout) that no rule matched
    alone: perhaps a part of a payout split over lines. Lines of one group (the same payer
    reference, or narrative, and booking day; in the other direction, of one statement too)
    are tried together."""

    group: Any
    line: int
    booked: date
    amount_pence: int


def _split_groups(lines: Iterable[SplitCandidate]) -> list[list[SplitCandidate]]:
    """The lines by group and booking day (SplitCandidate), in the order given."""
    groups: dict[Any, list[SplitCandidate]] = defaultdict(list)
    for line in lines:
        groups[(line.group, line.booked)].append(line)
    return list(groups.values())


@dataclass(frozen=True)
class ImportedFile:
    """An earlier imported file (not a statement) that may pay in with others
    (Matcher.files_together): its source is its file format, its day the latest UK day of
    its receipts."""

    batch_id: str
    source: str
    first_day: date
    day: date
    total_pence: int


class Matcher:
    """The rules over indexes built once per file (by day and amount, by channel and day,
    by import total), so a file of many lines does not rescan every receipt per line. Each
    is made when a line first asks for it (a day's when a line's window first reaches the
    day: _index_day; the imports' at the first rule 2 or files together), not of every
    receipt ever recorded for each report (issue #10): what it holds is what it would hold
    made at once, but for receipts linked since (take), which every rule passes over."""

    def __init__(self, books: Books) -> None:
        self.books = books
        self.by_day_amount: dict[tuple[date, int], list[Receipt]] = defaultdict(list)
        self.by_channel_day: dict[tuple[str, date], list[Receipt]] = defaultdict(list)
        # what is still unlinked of each channel's day: [pence, count]
        self.open_totals: dict[tuple[str, date], list[int]] = defaultdict(lambda: [0, 0])
        self.channels: set[str] = set()
        # every receipt by its day, in the books' order; the days indexed so far
        self.days: dict[date, list[Receipt]] = defaultdict(list)
        self.indexed: set[date] = set()
        for receipt in books.receipts.values():
            self.days[receipt.received_on].append(receipt)
            self.channels.add(receipt.channel)
        # what card providers still hold, per (channel, settlement day): payment id -> pence
        self.payouts: dict[tuple[str, date], dict[str, int]] = defaultdict(dict)
        for payment_id, held in books.clearing.items():
            channel = books.clearing_receipts[payment_id].channel
            for (_, day), pence in held.items():
                group = self.payouts[(channel, date.fromisoformat(day))]
                group[payment_id] = group.get(payment_id, 0) + pence
        # the imports usable so, by their total and by their day (made when first asked:
        # _index_files, with the imports linked when the matcher was made); what two or
        # three of them make, per booking day of a line (files_together: made when asked)
        self._batches_by_total: dict[int, list[str]] | None = None
        self._files_by_day: dict[date, list[ImportedFile]] = defaultdict(list)
        self._linked_batches = set(books.linked_batches)
        self.together: dict[date, dict[int, list[tuple[ImportedFile, ...]]]] = {}

    def _index_day(self, day: date) -> None:
        """Index one day's receipts that rules 1 to 3 may pay in (by_amount)."""
        if day in self.indexed:
            return
        self.indexed.add(day)
        linked, clearing = self.books.linked, self.books.clearing
        by_day_amount, by_channel_day = self.by_day_amount, self.by_channel_day
        open_totals = self.open_totals
        for receipt in self.days.get(day, ()):
            if receipt.payment_id in linked or receipt.payment_id in clearing:  # by_amount
                continue
            by_day_amount[(day, receipt.amount_pence)].append(receipt)
            by_channel_day[(receipt.channel, day)].append(receipt)
            totals = open_totals[(receipt.channel, day)]
            totals[0] += receipt.amount_pence
            totals[1] += 1

    @property
    def batches_by_total(self) -> dict[int, list[str]]:
        if self._batches_by_total is None:
            self._index_files()
        assert self._batches_by_total is not None
        return self._batches_by_total

    @property
    def files_by_day(self) -> dict[date, list[ImportedFile]]:
        if self._batches_by_total is None:
            self._index_files()
        return self._files_by_day

    def _index_files(self) -> None:
        receipts, clearing = self.books.receipts, self.books.clearing
        paid_in, import_days = self.books.paid_in, self.books.import_days
        self._batches_by_total = defaultdict(list)
        for batch_id, payment_ids in self.books.batches.items():
            if not payment_ids or batch_id in self._linked_batches:
                continue
            if all(pid in receipts and pid not in clearing for pid in payment_ids):
                total = sum(receipts[pid].amount_pence for pid in payment_ids)
                self._batches_by_total[total].append(batch_id)
                self._add_file(batch_id, payment_ids, total)
            elif batch_id in import_days and all(
                (pid in receipts or pid in paid_in) and pid not in clearing for pid in payment_ids
            ):
                # Some of its receipts are paid in (kept by id only): no rule pays it in
                # (each passes over linked receipts), but it is one of its day's files.
                first_day, day, total = import_days[batch_id]
                self._batches_by_total[total].append(batch_id)
                _, source = self.books.import_files.get(batch_id, ("", ""))
                file = ImportedFile(batch_id, source, first_day, day, total)
                self._files_by_day[file.day].append(file)

    def _add_file(self, batch_id: str, payment_ids: list[str], total_pence: int) -> None:
        days = [self.books.receipts[pid].received_on for pid in payment_ids]
        _, source = self.books.import_files.get(batch_id, ("", ""))
        file = ImportedFile(batch_id, source, min(days), max(days), total_pence)
        self._files_by_day[file.day].append(file)

    def by_amount(self, payment_id: str) -> bool:
        """Whether rules 1 to 3 (amounts and days) may pay in the receipt: not yet linked,
        and not card money a provider holds in clearing, which only its payout pays in
        (rule 4): a line of the same amount is a payer's own transfer as often as not."""
        return payment_id not in self.books.linked and payment_id not in self.books.clearing

    def candidates_payout(
        self, booked: date, amount_pence: int, allowed: Allowed = None
    ) -> list[StatementLink]:
        """A card provider's payouts only (a negative amount: money it took back), the
        nearest settlement day first: two or more wait for a person, as for rules 1-3."""
        return self._card_payouts(_window(booked), amount_pence, allowed)

    def split_payouts(
        self,
        lines: Iterable[SplitCandidate],
        usable: Callable[[list[SplitCandidate], StatementLink], bool] = lambda *_: True,
    ) -> list[tuple[SplitCandidate, StatementLink]]:
        """Card payouts split over several lines: the two or more lines of one group
        (see SplitCandidate) adding up to exactly one settlement day's payout. The first
        line carries the payout's link; the others say they are part of it. `usable` is
        asked, with the group's lines and the payout's link, before a group is linked (a
        payout a line waiting for a person may pay in is no split's: Claims)."""
        links: list[tuple[SplitCandidate, StatementLink]] = []
        for members in _split_groups(lines):
            # Two settlement days' payouts of the total: a guess no run makes (a person
            # chooses: _choices lists them, choose_link links the one chosen).
            wholes = self.split_wholes(members)
            if len(wholes) != 1 or not usable(members, wholes[0]):
                continue
            self.take(wholes[0])
            links.extend(self.split_links(members, wholes[0]))
        return links

    def split_wholes(self, members: list[SplitCandidate]) -> list[StatementLink]:
        """The settlement days' payouts that a group of two or more lines adds up to."""
        if len(members) < 2:
            return []
        total = sum(member.amount_pence for member in members)
        return self._card_payouts(_window(members[0].booked), total)

    def loose_splits(
        self, lines: Iterable[SplitCandidate]
    ) -> list[tuple[list[SplitCandidate], StatementLink]]:
        """Payouts split over lines of one statement that a run does not find
        (SplitCandidate's groups: the lines' narratives or booking days differ, or only some
        of a group's lines make the payout), for a person to choose, never linked by a run:
        two to LOOSE_SPLIT_LINES lines booked within LOOSE_SPLIT_DAYS of each other adding
        up to exactly one settlement day's payout in the window of the first booked, each
        with that payout (a guess: the same lines may make two days' payouts, and a line be
        part of two such splits). A line of a run's own group that makes a payout (which a
        run links, or offers: _split_choices) is left out; a run's group that makes none
        makes none here either. Each split's lines in line order."""
        lines = list(lines)
        grouped = {
            (member.group[0], member.line)
            for members in _split_groups(lines)
            if self.split_wholes(members)
            for member in members
        }
        totals = {sum(held.values()) for held in self.payouts.values() if held}
        by_batch: dict[Any, list[SplitCandidate]] = defaultdict(list)
        for line in lines:
            if (line.group[0], line.line) not in grouped:
                by_batch[line.group[0]].append(line)
        found: list[tuple[list[SplitCandidate], StatementLink]] = []
        for members in by_batch.values():
            members.sort(key=lambda member: (member.booked, member.line))
            for parts in _spans(members, LOOSE_SPLIT_LINES, LOOSE_SPLIT_DAYS):
                total = sum(part.amount_pence for part in parts)
                if total not in totals:  # (a run's whole group makes none: `grouped`)
                    continue
                in_order = sorted(parts, key=lambda part: part.line)
                for whole in self._card_payouts(_window(parts[0].booked), total):
                    found.append((in_order, whole))
        return found

    @staticmethod
    def split_links(
        members: list[SplitCandidate], whole: StatementLink
    ) -> list[tuple[SplitCandidate, StatementLink]]:
        """The links of a split payout's lines: the first carries the payout's link, naming
        every line; the others say they are part of it."""
        first, *rest = members
        listed = ", ".join(str(member.line) for member in members)
        links = [(first, replace(whole, matched=f"{whole.matched} (lines {listed})"))]
        part = StatementLink(
            CARD_PAYOUT_PART,
            (),
            f"part of {whole.matched}, linked on line {first.line}",
            settled_day=whole.settled_day,
        )
        links.extend((member, part) for member in rest)
        return links

    def candidates(
        self, booked: date, amount_pence: int, allowed: Allowed = None
    ) -> list[StatementLink]:
        """What a credit line booked on `booked` may pay in, not yet taken and (of a line
        whose pairings a person undid) `allowed`: the candidates of the first rule that has
        any. One is the line's link; two or more are a guess no run makes: a person chooses
        (choose_link)."""
        days = _window(booked)
        for rule in (self._one_receipt, self._one_batch, self._channel_day):
            found = [link for link in rule(days, amount_pence) if allowed is None or allowed(link)]
            if found:
                return found
        return self.candidates_payout(booked, amount_pence, allowed)

    def late_payouts(self, booked: date, amount_pence: int) -> list[StatementLink]:
        """Card payouts of the amount whose settlement day is before the line's window, up
        to LATE_PAYOUT_DAYS before its booking, the nearest first: for a person only."""
        days = [
            booked - timedelta(days=n) for n in range(MATCH_WINDOW_DAYS + 1, LATE_PAYOUT_DAYS + 1)
        ]
        return self._card_payouts(days, amount_pence)

    def files_together(self, booked: date, amount_pence: int) -> list[StatementLink]:
        """Two to COMBINED_FILES earlier imported files of one source (ImportedFile), each
        received on its own UK day, those days COMBINED_FILES_DAYS apart at most, every
        receipt of them in the line's window and none linked, whose totals together make
        exactly the amount: for a person only (a guess: which days a provider settled
        together is not in the files). Each set once, its files in day order; the sets in
        the order of their first file's day, then their next. What files may make is worked
        out once per booking day (_combine_files), so lines of one day search once."""
        by_total = self.together.get(booked)
        if by_total is None:
            by_total = self.together[booked] = self._combine_files(booked)
        found = []
        for files in by_total.get(amount_pence, ()):
            if any(file.batch_id in self.books.linked_batches for file in files):
                continue
            ids = [pid for file in files for pid in self.books.batches[file.batch_id]]
            if any(pid in self.books.linked for pid in ids):
                continue
            receipts = [self.books.receipts[pid] for pid in ids]
            # Ids and days, not the files' names (255 characters each): these words go
            # into the reasons and notes of the link (MAX_TEXT_LENGTH) with a person's own
            # reason, as an import's total does (the candidate's `files` name them).
            named = ", ".join(f"{file.batch_id} of {file.day}" for file in files)
            link = _link(IMPORTS_TOGETHER, receipts, f"the totals of imports {named} together")
            found.append(replace(link, matched_batch_ids=tuple(f.batch_id for f in files)))
        return found

    def _combine_files(self, booked: date) -> dict[int, list[tuple[ImportedFile, ...]]]:
        """What two to COMBINED_FILES files of a source in the window of a line booked on
        `booked` add up to (files_together), a source's day of more than
        COMBINED_FILES_PER_DAY files left out: at most C(6, 3) sets of days times
        COMBINED_FILES_PER_DAY ** 3 files each, whatever the number of lines or files."""
        window = _window(booked)
        by_source: dict[str, dict[date, list[ImportedFile]]] = defaultdict(dict)
        for day in reversed(window):  # the earliest day first
            for file in self.files_by_day.get(day, ()):
                if file.first_day >= window[-1]:
                    by_source[file.source].setdefault(day, []).append(file)
        made: dict[int, list[tuple[ImportedFile, ...]]] = defaultdict(list)
        for by_day in by_source.values():
            days = [d for d, files in by_day.items() if len(files) <= COMBINED_FILES_PER_DAY]
            for size in range(2, COMBINED_FILES + 1):
                for chosen in combinations(days, size):
                    if (chosen[-1] - chosen[0]).days > COMBINED_FILES_DAYS:
                        continue
                    each_day = [sorted(by_day[d], key=lambda f: f.batch_id) for d in chosen]
                    for files in product(*each_day):
                        made[sum(file.total_pence for file in files)].append(files)
        return made

    def every_candidate(
        self, booked: date, amount_pence: int, *, debit: bool = False, late: bool = True
    ) -> list[StatementLink]:
        """Everything a line may pay in by any rule, for a person to choose from (choose_link):
        the candidates of rules 1 to 4 alike, not only those of the first rule that has any,
        which decides for a run, and, unless not `late`, what only a person is offered:
        imported files that only together make its amount (files_together) and card payouts
        settled before its window (late_payouts). A candidate paying in the very receipts of
        an earlier one (an import's total that is also its channel's day) is listed once. A
        payout debit's candidates are payouts only (candidates_payout, its amount as given
        there)."""
        late_ones = self.late_payouts(booked, amount_pence) if late else []
        if debit:
            return [*self.candidates_payout(booked, amount_pence), *late_ones]
        days = _window(booked)
        found = [
            *self._one_receipt(days, amount_pence),
            *self._one_batch(days, amount_pence),
            *self._channel_day(days, amount_pence),
            *self._card_payouts(days, amount_pence),
            *(self.files_together(booked, amount_pence) if late else []),
            *late_ones,
        ]
        listed: set[frozenset[tuple[str, str | None]]] = set()
        unique = []
        for link in found:
            paid_in = frozenset((pid, link.settled_day) for pid in link.matched_payment_ids)
            if paid_in not in listed:
                listed.add(paid_in)
                unique.append(link)
        return unique

    def _one_receipt(self, days: list[date], amount_pence: int) -> list[StatementLink]:
        found = []
        for day in days:  # the nearest day first
            self._index_day(day)
            same = [
                r
                for r in self.by_day_amount.get((day, amount_pence), ())
                if r.payment_id not in self.books.linked
            ]
            for receipt in sorted(same, key=lambda r: r.payment_id):
                found.append(_link("one_receipt", [receipt], f"{receipt.channel} receipt of {day}"))
        return found

    def _one_batch(self, days: list[date], amount_pence: int) -> list[StatementLink]:
        window = set(days)
        found = []
        for batch_id in self.batches_by_total.get(amount_pence, ()):
            if batch_id in self.books.linked_batches:
                continue
            ids = self.books.batches[batch_id]
            if any(pid in self.books.linked for pid in ids):
                continue
            receipts = [self.books.receipts[pid] for pid in ids]
            if all(r.received_on in window for r in receipts):
                link = _link("import_total", receipts, f"the total of import {batch_id}")
                found.append(replace(link, matched_batch_id=batch_id))
        return found

    def _channel_day(self, days: list[date], amount_pence: int) -> list[StatementLink]:
        found = []
        for day in days:  # the nearest day first
            self._index_day(day)
            for channel in sorted(self.channels):
                pence, count = self.open_totals.get((channel, day), (0, 0))
                if count > 1 and pence == amount_pence:
                    receipts = [
                        r
                        for r in self.by_channel_day[(channel, day)]
                        if r.payment_id not in self.books.linked
                    ]
                    what = f"the {channel} receipts of {day}"
                    found.append(_link("channel_day_total", receipts, what))
        return found

    def _card_payouts(
        self, days: list[date], amount_pence: int, allowed: Allowed = None
    ) -> list[StatementLink]:
        window = set(days)
        found = []
        for (channel, settles_on), held in sorted(
            self.payouts.items(), key=lambda item: (-item[0][1].toordinal(), item[0][0])
        ):  # the nearest day first
            if settles_on in window and held and sum(held.values()) == amount_pence:
                link = StatementLink(
                    CARD_PAYOUT,
                    tuple(sorted(held)),
                    f"the {channel} payout of {settles_on}",
                    settled_day=settles_on.isoformat(),
                )
                if allowed is None or allowed(link):
                    found.append(link)
        return found

    def take(self, link: StatementLink) -> None:
        settled_day = link.settled_day
        for payment_id in link.matched_payment_ids:
            for (_, day), held in self.payouts.items():
                if settled_day is None or day.isoformat() == settled_day:
                    held.pop(payment_id, None)
            receipt = self.books.receipts.get(payment_id)
            # (a day not indexed yet leaves it out when it is: linked now)
            if (
                receipt is not None
                and receipt.received_on in self.indexed
                and self.by_amount(payment_id)
            ):
                totals = self.open_totals[(receipt.channel, receipt.received_on)]
                totals[0] -= receipt.amount_pence
                totals[1] -= 1
            self.books.linked.add(payment_id)
        if link.matched_batch_id:
            self.books.linked_batches.add(link.matched_batch_id)
        self.books.linked_batches.update(link.matched_batch_ids)


def _spans(members: list[SplitCandidate], most: int, days: int) -> Iterator[list[SplitCandidate]]:
    """The sets of two to `most` lines (given in booking order) booked within `days` of
    the first, each once, the first booked first."""
    for index, first in enumerate(members):
        near = [m for m in members[index + 1 :] if (m.booked - first.booked).days <= days]
        for size in range(1, most):
            for rest in combinations(near, size):
                yield [first, *rest]


def _window(booked: date) -> list[date]:
    """The days whose money a line booked on `booked` can pay in, the nearest first."""
    return [booked - timedelta(days=n) for n in range(MATCH_WINDOW_DAYS + 1)]


def _link(rule: str, receipts: list[Receipt], what: str) -> StatementLink:
    return StatementLink(rule, tuple(sorted(r.payment_id for r in receipts)), what)


# ---- linking paid-in receipts ----------------------------------------------------------------


def payout_name(where: str, batch_id: str) -> str:
    """The name a statement line (`FILE line N`) settles card payments under: with its
    import's id, as banks reuse daily file names (settlements recorded before are named
    `where` alone: undo_links reads both)."""
    return f"{where} of import {batch_id}"


def note_links(
    ledger: IncomeLedger,
    linked: list[tuple[str, str, StatementLink]],
    ctx: CommandContext,
    notes_seen: dict[str, int],
) -> list[Payment]:
    """Each receipt a statement line (named as `FILE line N`, of the import with the id
    given) paid in gets a note saying so, saved with the link.

    Besides telling a person reading the receipt, the note's new version of the receipt
    makes two imports (or linking runs) that link the same receipt at the same moment
    collide: one of them is refused (ConcurrentUpdate) and, run again, sees the link: when
    both load the receipt before either commits, their notes are the same version of it;
    when one loads it after the other committed, it finds one note more than `notes_seen`
    (Books.paid_in_notes, read with the books that chose the link). A note the books had
    already seen is no collision: the statement that wrote it was reversed since, so the
    receipt is not paid in any more and is linked again, with a new note."""
    # One object per receipt (two payouts of one file may both pay in a card payment),
    # each made with its notes counted from one read of its events: all the receipts in a
    # few queries, not two queries each (issue #10).
    wanted = list(dict.fromkeys(pid for _, _, link in linked for pid in link.matched_payment_ids))
    read = ledger.payments_events([UUID(payment_id) for payment_id in wanted])
    noted: dict[str, Payment] = {}
    notes_now: dict[str, int] = {}
    for payment_id in wanted:
        events = read.get(UUID(payment_id))
        if not events:
            raise PaymentNotFound(f"no payment with id {payment_id}")
        noted[payment_id] = replayed(events)
        notes_now[payment_id] = sum(map(_is_paid_in_note, events))
    for where, batch_id, link in linked:
        for payment_id in link.matched_payment_ids:
            payment = noted[payment_id]
            # A card payment is paid in by several payouts (its own, then its refunds'):
            # its settled items, not a note, tell what is paid in.
            seen = notes_seen.get(payment_id, 0)
            if link.rule != CARD_PAYOUT and notes_now[payment_id] > seen:
                raise ConcurrentUpdate(
                    f"another bank statement paid in receipt {payment_id} at the same moment; "
                    "nothing was saved. Import the file again"
                )
            # Rules 1-3 pay in receipts the books read unreversed: reversed since (its
            # import reversed, a cheque returned at the same moment), the line would pay
            # in money taken back and its own be reversed too, counted nowhere.
            if link.rule != CARD_PAYOUT and payment.reversal_kind is not None:
                raise ConcurrentUpdate(
                    f"receipt {payment_id} was reversed at the same moment; nothing was "
                    "saved. Try again"
                )
            if payment.clearing_account is not None:
                day = link.settled_day
                settled = payment.settle(
                    {day} if day else None,
                    payout=payout_name(where, batch_id),
                    actor=ctx.actor,
                    reason=f"paid in by bank statement {where}",
                )
                # The books that chose the payout saw these items held: gone now, another
                # line (an import or run at the same moment) was linked to the payout.
                if not settled and link.rule == CARD_PAYOUT:
                    raise ConcurrentUpdate(
                        f"another bank statement line paid in {link.matched} at the same "
                        "moment; nothing was saved. Import the file again"
                    )
            paid_in = own_words(f"{PAID_IN_NOTE} {where} ({link.rule}: {link.matched})")
            payment.note(paid_in, actor=ctx.actor)
    return list(noted.values())


def _is_paid_in_note(event: Any) -> bool:
    """A receipt's note that a bank statement paid it in (note_links)."""
    return isinstance(event, Payment.Noted) and event.text.startswith(PAID_IN_NOTE)


@dataclass(frozen=True)
class LateLink:
    """A statement line linked after its own receipt was recorded (see link_counted_twice)."""

    batch_id: str
    file_name: str
    line: int
    amount_pence: int
    reversed_payment_id: str | None  # None: a payout debit, which had no receipt
    link: StatementLink

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "file_name": self.file_name,
            "line": self.line,
            "amount_pence": self.amount_pence,
            "reversed_payment_id": self.reversed_payment_id,
        } | self.link.to_dict()


def link_counted_twice(
    ledger: IncomeLedger,
    ctx: CommandContext,
    line: tuple[UUID, int] | None = None,
    *,
    since: date | None = None,
) -> list[LateLink]:
    """The other direction of matching: statement lines recorded as their own receipts
    (the statement came first) that pay in receipts another channel recorded since (the
    Allpay file, a direct-debit run, GOV.UK Pay payments) are linked by the same rules as
    at import, and each such line's receipt is reversed (kind `counted_twice`, its reason
    naming what the line paid in). Only a line whose receipt is still wholly in suspense
    is linked: one an officer or rule allocated, refunded or reversed is a person's
    decision, left on the exceptions report. All of a run's links are saved in one
    transaction; a run that collides with another is run again on what is then recorded,
    so two runs at once link each line (and each receipt) once.

    With `since` (a UK day), only lines booked on or after it are tried, against what was
    recorded from a little before their window on (scope_start): the run after new money
    of that day is recorded (link_after_recording), whose cost does not grow with the
    ledger's whole history.

    With `line` (a statement's batch id and line number), a person links that line alone
    (with the other parts of a payout split over lines), by the same rules, a pairing a
    person undid before (unlink_line) included."""
    wanted = None if line is None else _line_key(ledger, *line)
    return _attempts(partial(_link_once, ledger, ctx, since, wanted))


def _attempts(run: Callable[[], list[LateLink]]) -> list[LateLink]:
    """A linking run, run again on what is then recorded when another collided with it
    (ConcurrentUpdate), LINK_ATTEMPTS times at most."""
    for _ in range(LINK_ATTEMPTS - 1):
        try:
            return run()
        except ConcurrentUpdate:
            continue
    return run()


def link_after_recording(ledger: IncomeLedger, since: date | None) -> list[LateLink]:
    """The linking run made after new money is recorded (an imported file's receipts, a
    GOV.UK Pay message's card money, a receipt recorded through the API: see
    application.auto_link for the API's), `since` the earliest UK day of that money (None:
    nothing to link). It runs in its own transaction after the money's was committed, and
    never raises: what was recorded stays recorded, a failure is logged, and `reconcile
    link` links the lines later."""
    if since is None:
        return []
    try:
        return link_counted_twice(ledger, CommandContext(AUTO_LINK_ACTOR), since=since)
    except Exception:  # whatever went wrong, the caller's money was recorded: keep it so
        log.exception(
            "linking statement lines after new money of %s failed; nothing was linked: "
            "run `income-ledger reconcile link`",
            since,
        )
        return []


def card_money_day(ledger: IncomeLedger, payment_id: UUID) -> date | None:
    """The earliest settlement day of what a card provider still holds of a payment (None:
    nothing, or no card provider holds it): the day a payout line may pay it in from."""
    held: dict[tuple[str, str], int] = {}
    for event in ledger.repository.event_store.get(payment_id):
        _add_clearing(held, event)
    return min((date.fromisoformat(day) for _, day in held), default=None)


def scope_start(ledger: IncomeLedger, since: date, window_days: int = MATCH_WINDOW_DAYS) -> int:
    """The position from which a run for lines booked on or after `since` reads: a line
    pays in money of `window_days` (a run's: MATCH_WINDOW_DAYS; a person's choice's:
    LATE_PAYOUT_DAYS) before its booking at most, and nothing is recorded before the day it
    is of (a statement line after its booking, a receipt after it was received),
    SCOPE_EXTRA_DAYS earlier still for card payments settled days after."""
    first_day = since - timedelta(days=window_days + SCOPE_EXTRA_DAYS)
    return _position_before(ledger, uk_day_start(first_day))


def _position_before(ledger: IncomeLedger, moment: datetime) -> int:
    """The last position recorded before `moment` (0: none): positions follow recording
    time, so a binary search over them reads a few dozen events, not the history."""
    low, high = 0, ledger.max_position()
    while low < high:
        middle = (low + high + 1) // 2
        page = ledger.recorder.select_notifications(start=middle, limit=1)
        if not page or page[0].id > high:
            high = middle - 1
        elif ledger.mapper.to_domain_event(page[0]).timestamp < moment:
            low = page[0].id
        else:
            high = middle - 1
    return low


def _open_lines_from(ledger: IncomeLedger, after: int, since: date) -> bool:
    """Whether a statement recorded after `after` has a line booked on or after `since`
    still waiting for a link (possibly one whose receipt was reversed since: the books
    tell). Read before the books, it spares a run with nothing to link reading receipts.
    A line whose receipt a fund took at import (its reference, a rule) never waits: a run
    links only a receipt wholly in suspense (_LinkRun.untouched), and no later change puts
    an allocated receipt's money back in suspense."""
    lines = OpenLines(since)
    for event in ledger.events_of(*OpenLines.TOPICS, after=after):
        lines.apply(event)
    return bool(lines.waiting)


@dataclass(frozen=True)
class WaitingLine:
    booked: date
    amount_pence: int
    is_debit: bool


class OpenLines:
    """The statement lines booked from `covers` on that may wait for a link (may_wait),
    not linked since or linked and undone, folded from the import events in the order
    recorded (TOPICS): a reversed statement's lines wait no more (the books leave them
    out). It may keep a line a person allocated since: a run then finds nothing, which
    costs a run, never a wrong link."""

    TOPICS = (
        ImportBatch.Imported,
        ImportBatch.LineLinked,
        ImportBatch.LinkUndone,
        ImportBatch.Reversed,
    )
    FORMATS = frozenset(f.value for f in STATEMENT_FORMATS)

    def __init__(self, covers: date) -> None:
        self.covers = covers
        self.waiting: dict[tuple[str, int], WaitingLine] = {}
        self._known: dict[tuple[str, int], WaitingLine] = {}  # for a link undone

    def apply(self, event: Any) -> None:
        batch_id = str(event.originator_id)
        if isinstance(event, ImportBatch.Imported):
            if event.file_format not in self.FORMATS:
                return
            for line in event.imported_lines:
                if not may_wait(line) or line.booking_date is None:
                    continue
                booked = date.fromisoformat(line.booking_date)
                if booked >= self.covers:
                    waiting = WaitingLine(booked, line.amount_pence, line.is_open_debit)
                    self._known[(batch_id, line.line)] = waiting
                    self.waiting[(batch_id, line.line)] = waiting
        elif isinstance(event, ImportBatch.LineLinked):
            self.waiting.pop((batch_id, event.line), None)
        elif isinstance(event, ImportBatch.LinkUndone):
            known = self._known.get((batch_id, event.line))
            if known is not None:
                self.waiting[(batch_id, event.line)] = known
        elif isinstance(event, ImportBatch.Reversed):  # its lines' receipts are reversed
            for key in [key for key in self._known if key[0] == batch_id]:
                self._known.pop(key)
                self.waiting.pop(key, None)


def may_wait(line: ImportedLine) -> bool:
    """Whether a statement line, as imported, may wait for a linking run: its own receipt in
    suspense (not taken by a fund) or a payout debit kept unmatched."""
    return (line.is_open_debit or line.status == PaymentStatus.SUSPENSE.value) and line.awaits_link


def _line_key(ledger: IncomeLedger, batch_id: UUID, number: int) -> tuple[str, int]:
    batch = _statement(ledger, batch_id)
    if all(entry.line != number for entry in batch.lines):
        raise ImportLineNotFound(
            f"import {batch_id} has no money line {number}; GET /imports/{batch_id} lists its lines"
        )
    return str(batch_id), number


def _statement(ledger: IncomeLedger, batch_id: UUID) -> ImportBatch:
    try:  # one read (`in` then `get` would load it twice)
        batch = ledger.repository.get(batch_id)
    except AggregateNotFoundError:
        batch = None
    if not isinstance(batch, ImportBatch):
        raise ImportBatchNotFound(f"no import with id {batch_id}; `import list` shows them")
    return batch


def _one_line(books: Books, wanted: tuple[str, int], *, alone: bool = False) -> None:
    """A person's run: the wanted line alone, with the lines of its batch that may be parts
    of one payout with it (SplitCandidate's group), its rejected pairings allowed again
    (relinkable) but still counted as undone (_waits_for_a_person: with another candidate,
    a late payout included, the line needs a choice, not a link by elimination), unless
    `alone` (a person's choice: its candidates include its undone pairings anyway,
    _every_candidate, and its splits are found as the report finds them, _split_candidates
    reading the line's undone pairings as no run's candidates)."""
    found = [line for batch_id, line in books.unmatched_lines if (batch_id, line.line) == wanted]
    if not found:
        raise LineNotAwaitingLink(
            f"line {wanted[1]} of import {wanted[0]} does not wait for a link: it is linked, "
            "recorded no receipt, or its receipt was allocated, refunded or reversed"
        )
    group = (found[0].reference, found[0].booking_date)
    books.unmatched_lines = [
        (batch_id, line)
        for batch_id, line in books.unmatched_lines
        if batch_id == wanted[0]
        and (line.line == wanted[1] or (not alone and (line.reference, line.booking_date) == group))
    ]
    if not alone:
        books.relinkable.add(wanted)


def _link_once(
    ledger: IncomeLedger,
    ctx: CommandContext,
    since: date | None,
    wanted: tuple[str, int] | None = None,
    choice: Choice | None = None,
) -> list[LateLink]:
    after = 0
    if since is not None:
        after = scope_start(ledger, since)
        if not _open_lines_from(ledger, after, since):
            return []
    books = read_books(ledger, after, decisions=False)
    # Every line waiting, before the run's own are picked: a line of a day before `since`,
    # or of another statement than a person's, may pay in the same receipt (Claims).
    every_line = list(books.unmatched_lines)
    if since is not None:
        books.unmatched_lines = [
            (batch_id, line)
            for batch_id, line in books.unmatched_lines
            if (line.booking_date or "") >= since.isoformat()
        ]
    if wanted is not None:
        _one_line(books, wanted, alone=choice is not None)
    if not books.unmatched_lines:
        return []
    matcher = Matcher(books)
    claims = waiting_claims(matcher, books, every_line)
    run = _LinkRun(ledger, ctx, books, every_line)
    if wanted is not None and not run.untouched([wanted]):
        raise LineNotAwaitingLink(
            f"line {wanted[1]} of import {wanted[0]} does not wait for a link: its receipt "
            "was allocated or refunded, or its reference is nearly a payer's account (a "
            "payer's own transfer)"
        )
    alone: list[SplitCandidate] = []
    for batch_id, line in books.unmatched_lines:  # the oldest first
        assert line.booking_date is not None
        booked = date.fromisoformat(line.booking_date)
        key = (batch_id, line.line)
        if choice is not None:  # the wanted line alone (_one_line), or its split payout
            parts = _split_parts(ledger, matcher, books, every_line, key)
            splits = [(parts, whole) for whole in matcher.split_wholes(parts)]
            splits += _loose_splits_of(ledger, matcher, books, every_line, key)
            own = _every_candidate(matcher, line, booked)
            # As a person is shown them (naming their lines: candidate_key).
            wholes = [matcher.split_links(parts, whole)[0][1] for parts, whole in splits]
            partners = [_partners(every_line, key, parts) for parts, _ in splits]
            picked = choice.pick(batch_id, line.line, [*wholes, *own], partners)
            if picked < len(splits):
                _choose_split(run, matcher, choice, key, *splits[picked])
                continue
            link: StatementLink | None = own[picked - len(splits)]
            found = [own[picked - len(splits)]]
        else:
            found, link = _run_link(matcher, books, claims, run.undecided, key, line, booked)
            if link is None and found and key == wanted:
                raise LineNeedsAChoice(
                    f"line {line.line} of import {batch_id} may pay in more than one record, "
                    "or another statement line may pay in the same, so a person chooses "
                    f"which (reconcile choose): {_listed(_every_candidate(matcher, line, booked))}"
                )
        if link is None:
            if not found and (
                line.is_new_receipt and names_payout(line.reference, ledger.payout_narratives)
            ):
                group = (batch_id, line.reference)
                alone.append(SplitCandidate(group, line.line, booked, line.amount_pence))
        elif run.untouched([key]):
            matcher.take(link)
            run.link(batch_id, line.line, link, None if choice is None else choice.reason)

    def usable(parts: list[SplitCandidate], whole: StatementLink) -> bool:
        first = (parts[0].group[0], parts[0].line)
        return run.usable_parts(parts, whole) and not claims.contested(first, whole, run.undecided)

    split = matcher.split_payouts(alone, usable=usable)
    for part, link in split:
        run.link(part.group[0], part.line, link)
    linked = {(late.batch_id, late.line) for late in run.found}
    if wanted is not None and choice is None and wanted not in linked:
        _refuse_a_persons_choice(ledger, matcher, books, every_line, wanted)
    return run.save()


def _refuse_a_persons_choice(
    ledger: IncomeLedger,
    matcher: Matcher,
    books: Books,
    lines: list[tuple[str, ImportedLine]],
    wanted: LineKey,
) -> None:
    """LineNeedsAChoice for a line a person's run linked nothing for though a person may
    choose for it: part of a split that two settlement days' payouts add up to, or of a
    split of lines of different narratives or days (Matcher.loose_splits), or a line with
    a card payout settled before its window (late payouts are never linked by a run, not
    even with the line's split payout also possible). Lists every choice."""
    line = next(line for batch_id, line in lines if (batch_id, line.line) == wanted)
    assert line.booking_date is not None
    booked = date.fromisoformat(line.booking_date)
    wholes = matcher.split_wholes(_split_parts(ledger, matcher, books, lines, wanted))
    if (
        len(wholes) > 1
        or _late_payouts(matcher, line, booked)
        or _loose_splits_of(ledger, matcher, books, lines, wanted)
    ):
        choices, partners = _person_candidates(ledger, matcher, books, lines, wanted, line)
        raise LineNeedsAChoice(
            f"line {wanted[1]} of import {wanted[0]} may pay in more than one card payout "
            "(a payout split over lines that more than one settlement day's payout adds up "
            "to, lines of different narratives or days that add up to one, or one settled "
            "before the line's window), so a person chooses which "
            f"(reconcile choose): {_listed(choices, partners)}"
        )
    if _files_together(matcher, line, booked):
        choices, partners = _person_candidates(ledger, matcher, books, lines, wanted, line)
        raise LineNeedsAChoice(
            f"line {wanted[1]} of import {wanted[0]} may pay in files imported on several "
            "days that only together make its amount, which no run links, so a person "
            f"chooses (reconcile choose): {_listed(choices, partners)}"
        )


def _split_parts(
    ledger: IncomeLedger,
    matcher: Matcher,
    books: Books,
    lines: Iterable[tuple[str, ImportedLine]],
    key: LineKey,
) -> list[SplitCandidate]:
    """The lines of a payout split over lines that the line `key` may be part of, two or
    more in line order (_split_candidates); else none."""
    same_batch = [(batch_id, line) for batch_id, line in lines if batch_id == key[0]]
    for members in _split_groups(_split_candidates(ledger, matcher, books, same_batch)):
        if len(members) > 1 and any(member.line == key[1] for member in members):
            return sorted(members, key=lambda member: member.line)
    return []


def _loose_splits_of(
    ledger: IncomeLedger,
    matcher: Matcher,
    books: Books,
    lines: Iterable[tuple[str, ImportedLine]],
    key: LineKey,
) -> list[tuple[list[SplitCandidate], StatementLink]]:
    """The payouts split over lines of different narratives or days (Matcher.loose_splits)
    that the line `key` may be part of, with their lines."""
    same_batch = [(batch_id, line) for batch_id, line in lines if batch_id == key[0]]
    return [
        (parts, whole)
        for parts, whole in matcher.loose_splits(
            _split_candidates(ledger, matcher, books, same_batch)
        )
        if any(part.line == key[1] for part in parts)
    ]


def _split_candidates(
    ledger: IncomeLedger,
    matcher: Matcher,
    books: Books,
    lines: Iterable[tuple[str, ImportedLine]],
) -> list[SplitCandidate]:
    """The waiting credit lines that may be parts of a payout split over lines, as a run
    groups them (SplitCandidate: by statement, payer reference or narrative, and booking
    day): naming the card provider's payout, and matched by no rule alone."""
    found = []
    for batch_id, line in lines:
        if not line.booking_date or not line.is_new_receipt or not may_wait(line):
            continue
        if not names_payout(line.reference, ledger.payout_narratives):
            continue
        booked = date.fromisoformat(line.booking_date)
        allowed = partial(books.allows, batch_id, line.line)
        if not _line_candidates(matcher, line, booked, allowed):
            group = (batch_id, line.reference)
            found.append(SplitCandidate(group, line.line, booked, line.amount_pence))
    return found


def _person_candidates(
    ledger: IncomeLedger,
    matcher: Matcher,
    books: Books,
    lines: Iterable[tuple[str, ImportedLine]],
    key: LineKey,
    line: ImportedLine,
) -> tuple[list[StatementLink], list[tuple[str, ...]]]:
    """What a person may choose for the line: the payouts of a split it is part of first
    (a run's group's, then those of lines of different narratives or days), then its own
    candidates (_every_candidate: late payouts included), as choose_link takes them; and
    the splits' other lines' own receipts (_partners), in the same order."""
    assert line.booking_date is not None
    booked = date.fromisoformat(line.booking_date)
    lines = list(lines)
    parts = _split_parts(ledger, matcher, books, lines, key)
    splits = [(parts, whole) for whole in matcher.split_wholes(parts)]
    splits += _loose_splits_of(ledger, matcher, books, lines, key)
    wholes = [matcher.split_links(parts, whole)[0][1] for parts, whole in splits]
    partners = [_partners(lines, key, parts) for parts, _ in splits]
    return [*wholes, *_every_candidate(matcher, line, booked)], partners


def _partners(
    lines: Iterable[tuple[str, ImportedLine]], key: LineKey, parts: list[SplitCandidate]
) -> tuple[str, ...]:
    """The own receipts of a split's lines other than `key`, in line order: what names a
    split on a line whose payout is in another split of it too (lines of 50.00, 49.80 and
    49.80 of a payout of 99.80: line 1 may be split with line 2 or with line 3, the same
    payout's receipt in both; line 2's own receipt names the first)."""
    own = {(batch_id, line.line): line.payment_id for batch_id, line in lines}
    others = [(part.group[0], part.line) for part in parts if (part.group[0], part.line) != key]
    return tuple(pid for other in others if (pid := own.get(other)) is not None)


def _choose_split(
    run: _LinkRun,
    matcher: Matcher,
    choice: Choice,
    key: LineKey,
    parts: list[SplitCandidate],
    whole: StatementLink,
) -> None:
    """A person's choice of the settlement day's payout (one of Matcher.split_wholes) that
    a split payout's lines pay in: its lines linked as a run links a split."""
    keys = [(part.group[0], part.line) for part in parts]
    if not run.untouched(keys):
        raise LineNotAwaitingLink(
            f"line {key[1]} of import {key[0]} is part of a payout split over lines "
            f"{', '.join(str(part.line) for part in parts)}, one of which was allocated, "
            "refunded or reversed since: nothing was linked"
        )
    matcher.take(whole)
    for part, link in matcher.split_links(parts, whole):
        run.link(part.group[0], part.line, link, choice.reason)


def _line_candidates(
    matcher: Matcher, line: ImportedLine, booked: date, allowed: Allowed = None
) -> list[StatementLink]:
    if line.is_open_debit:
        return matcher.candidates_payout(booked, -line.amount_pence, allowed)
    return matcher.candidates(booked, line.amount_pence, allowed)


def _late_payouts(matcher: Matcher, line: ImportedLine, booked: date) -> list[StatementLink]:
    """The card payouts settled before the line's window that it may pay in (a person's
    candidates only: Matcher.late_payouts)."""
    amount_pence = -line.amount_pence if line.is_open_debit else line.amount_pence
    return matcher.late_payouts(booked, amount_pence)


def _files_together(matcher: Matcher, line: ImportedLine, booked: date) -> list[StatementLink]:
    """The imported files that only together make a credit line's amount (a person's
    candidates only: Matcher.files_together); a payout debit pays in no file."""
    return [] if line.is_open_debit else matcher.files_together(booked, line.amount_pence)


def _every_candidate(
    matcher: Matcher, line: ImportedLine, booked: date, *, late: bool = True
) -> list[StatementLink]:
    """What a person may choose for the line (Matcher.every_candidate), pairings a person
    undid before included; without the payouts settled before its window unless `late`."""
    if line.is_open_debit:
        return matcher.every_candidate(booked, -line.amount_pence, debit=True, late=late)
    return matcher.every_candidate(booked, line.amount_pence, late=late)


def _run_link(
    matcher: Matcher,
    books: Books,
    claims: Claims,
    rival_waits: Callable[[LineKey], bool],
    key: LineKey,
    line: ImportedLine,
    booked: date,
) -> tuple[list[StatementLink], StatementLink | None]:
    """What a run finds for a waiting line (the first rule with any candidate; no pairing a
    person undid) and the link it makes, if any: None when it found nothing, or when the
    line waits for a person (_waits_for_a_person).

    What it finds is what the claims read, before the run linked anything: a channel's day
    whose other receipts an earlier line of the run took adds up to a new amount, which
    another line may pay in as well, and the claims never saw that; the next run weighs it
    with every line that may pay it in."""
    found = claims.found.get(key)
    if found is None:  # a line no run may link (not may_wait): its candidates as they are
        allowed = partial(books.allows, *key) if key in books.rejected else None
        found = _line_candidates(matcher, line, booked, allowed)
    if _waits_for_a_person(matcher, books, claims, rival_waits, key, line, booked, found):
        return found or _every_candidate(matcher, line, booked), None
    return found, found[0] if found else None


def _waits_for_a_person(
    matcher: Matcher,
    books: Books,
    claims: Claims,
    rival_waits: Callable[[LineKey], bool],
    key: LineKey,
    line: ImportedLine,
    booked: date,
    found: list[StatementLink],
) -> bool:
    """Whether no run links the line, as any link would be a guess: the rule deciding for a
    run found two or more candidates; or its one candidate another waiting line may pay in
    too (Claims); or a person undid a pairing of the line and it still has two or more
    candidates by any rule, that pairing included (an undo does not make it unambiguous:
    the other by elimination would still be a guess, the person may have meant neither).

    A payout settled before the line's window (late_payouts) counts for none of these: no
    run links one, and none stops a run, of a line whose pairing was undone no more than
    of another (a person is offered it on a line no run links: _choices); unless it is the
    very pairing a person undid, which, still a candidate, counts as any undone pairing."""
    if len(found) > 1:
        return True
    if key in books.rejected and len(_undone_or_in_window(matcher, books, key, line, booked)) > 1:
        return True
    return len(found) == 1 and claims.contested(key, found[0], rival_waits)


def _undone_or_in_window(
    matcher: Matcher, books: Books, key: LineKey, line: ImportedLine, booked: date
) -> list[StatementLink]:
    """A line's candidates by any rule in its window, and the payouts settled before it
    or files together (a person's only) that a person linked it to and undid (the pairings
    undone count, whatever their day)."""
    undone = books.rejected.get(key, [])
    late_undone = [
        link
        for link in [
            *_files_together(matcher, line, booked),
            *_late_payouts(matcher, line, booked),
        ]
        if frozenset(link.matched_payment_ids) in undone
    ]
    return [*_every_candidate(matcher, line, booked, late=False), *late_undone]


def _listed(
    found: list[StatementLink], partners: Sequence[tuple[str, ...]] = (), most: int = 10
) -> str:
    """The candidates in words, each with its key (candidate_key) and the receipt id, if
    any, a person may name to choose it."""
    names = _naming_receipts(found, partners)
    said = [
        f"{link.matched} ({_receipts_named(named, link.matched_payment_ids)}; "
        f"candidate {candidate_key(link)})"
        for link, named in list(zip(found, names, strict=True))[:most]
    ]
    more = f"; and {len(found) - most} more" if len(found) > most else ""
    return "; ".join(said) + more if said else "nothing"


def candidate_key(link: StatementLink) -> str:
    """The key a person names a line's candidate by (choose_link): a hash of what it pays in
    (its rule, receipts, settlement day, imports) and its words, made of the same (and, for
    a payout split over lines, naming the lines: Matcher.split_links, which tells two
    splits of one payout apart), so the same candidate has the same key on the exceptions
    report, the import's view, each line of a split and in a refusal, whenever asked."""
    paid_in = [
        link.rule,
        sorted(link.matched_payment_ids),
        link.settled_day,
        link.matched_batch_id,
        list(link.matched_batch_ids),
        link.matched,
    ]
    digest = hashlib.sha256(json.dumps(paid_in).encode()).hexdigest()
    return digest[:CANDIDATE_KEY_LENGTH]


@dataclass(frozen=True)
class Choice:
    """A person's choice of what a statement line pays in, among its candidates: the one
    whose key is `candidate` (candidate_key), or the one that pays in this receipt (the
    candidates of one line mostly pay in different receipts), or a split whose other line
    has this own receipt (_partners)."""

    payment_id: str | None
    reason: str
    candidate: str | None = None

    def pick(
        self,
        batch_id: str,
        line: int,
        found: list[StatementLink],
        partners: Sequence[tuple[str, ...]] = (),
    ) -> int:
        """The index in `found` of the candidate chosen; `partners`, the first candidates'
        (splits') other lines' own receipts."""
        if self.candidate is not None:
            return self._keyed(batch_id, line, found, partners)
        named = [
            index
            for index, link in enumerate(found)
            if self.payment_id in (*link.matched_payment_ids, *_nth(partners, index))
        ]
        if len(named) == 1:
            return named[0]
        if named:  # a card payment paid in by two days' payouts, say: name another
            raise NotACandidate(
                f"receipt {self.payment_id} is in more than one of what line {line} of "
                f"import {batch_id} may pay in; name the receipt given for the one you "
                f"choose, or its candidate key: {_listed(found, partners)}. Nothing was "
                "linked"
            )
        raise NotACandidate(
            f"receipt {self.payment_id} is not among what line {line} of import {batch_id} "
            f"may pay in now; it may pay in: {_listed(found, partners)}. Nothing was linked"
        )

    def _keyed(
        self,
        batch_id: str,
        line: int,
        found: list[StatementLink],
        partners: Sequence[tuple[str, ...]],
    ) -> int:
        keyed = [index for index, link in enumerate(found) if candidate_key(link) == self.candidate]
        if len(keyed) != 1:
            raise NotACandidate(
                f"candidate {self.candidate} is not among what line {line} of import "
                f"{batch_id} may pay in now; it may pay in: {_listed(found, partners)}. "
                "Nothing was linked"
            )
        return keyed[0]


def _nth(partners: Sequence[tuple[str, ...]], index: int) -> tuple[str, ...]:
    return partners[index] if index < len(partners) else ()


def choose_link(
    ledger: IncomeLedger,
    ctx: CommandContext,
    batch_id: UUID,
    line: int,
    payment_id: str | None,
    reason: str,
    *,
    candidate: str | None = None,
) -> list[LateLink]:
    """A person links a statement line to the candidate they choose (Matcher.candidates:
    the same rules as a run), the one whose key is `candidate` (candidate_key) or the one
    paying in `payment_id` (one of the two), saying why: what a run never does for a line
    with more than one candidate. The link is made as a run makes it (LineLinked, by that
    person, its reason ending with theirs; the line's own receipt reversed as counted
    twice; what it pays in noted), so `unlink_line` undoes it. Refused, storing nothing: no
    reason, neither or both of a key and a receipt, a key or receipt that names no one
    candidate, a line that does not wait for a link."""
    payment_id = (payment_id or "").strip() or None
    candidate = (candidate or "").strip().lower() or None
    if (payment_id is None) == (candidate is None):
        raise InvalidRequest(
            "name the candidate chosen either by its candidate key or by a receipt (payment "
            "id) only it pays in, not "
            + ("both" if payment_id else "neither")
            + " (the exceptions report and the import's view list each candidate's)"
        )
    reason = require_text("reason", reason, required=True)
    choice = Choice(payment_id, reason, candidate)
    wanted = _line_key(ledger, batch_id, line)
    return _attempts(partial(_link_once, ledger, ctx, None, wanted, choice))


def _undecided(receipt: Payment, line: ImportedLine) -> bool:
    """Whether a statement line's own receipt is still wholly in suspense for want of a
    payer's reference (_LinkRun.untouched)."""
    return (
        receipt.status is PaymentStatus.SUSPENSE
        and receipt.remaining_pence == line.amount_pence
        and receipt.suspense_reason not in PAYERS_REFERENCE
    )


class _LinkRun:
    """What one linking run changes, saved together: the statements' batches, the lines'
    receipts (reversed) and the receipts the lines paid in (noted, settled)."""

    def __init__(
        self,
        ledger: IncomeLedger,
        ctx: CommandContext,
        books: Books,
        every_line: list[tuple[str, ImportedLine]],
    ) -> None:
        self.ledger, self.ctx, self.books = ledger, ctx, books
        self.undecided = Undecided(ledger, every_line)
        self.lines = self.undecided.lines
        self.receipts = self.undecided.receipts
        self.batches: dict[str, ImportBatch] = {}
        self.found: list[LateLink] = []

    def untouched(self, keys: list[tuple[str, int]]) -> bool:
        """Whether each line's receipt is still wholly in suspense (nobody decided it) for
        want of a payer's reference: a reference that is a payer's account (PAYERS_REFERENCE)
        says a payer sent it, whatever other receipt its amount matches."""
        return all(self.undecided(key) for key in keys)

    def usable_parts(self, parts: list[SplitCandidate], whole: StatementLink) -> bool:
        """Whether a split payout's lines are untouched and its pairing was not undone."""
        batch_id, first = parts[0].group[0], parts[0].line
        return self.books.allows(batch_id, first, whole) and self.untouched(
            [(part.group[0], part.line) for part in parts]
        )

    def link(
        self, batch_id: str, number: int, link: StatementLink, chosen: str | None = None
    ) -> None:
        """Link the line; `chosen`: a person chose the link among the line's candidates,
        for this reason (recorded with theirs on the batch's and the receipt's events)."""
        line = self.lines[(batch_id, number)]
        file_name = self.books.file_names[batch_id]
        batch = self.batches.get(batch_id) or self.ledger.repository.get(UUID(batch_id))
        self.batches[batch_id] = batch
        actor = self.ctx.actor
        if line.is_open_debit:
            reason = _with_choice(
                f"{file_name} line {number}, a negative payout, pays {link.matched} "
                f"({link.rule}), recorded after the statement",
                chosen,
            )
            batch.link_line(number, link, actor=actor, reason=reason)
        else:
            assert line.payment_id is not None
            reason = _with_choice(
                f"counted twice: {file_name} line {number} pays in {link.matched} "
                f"({link.rule}), recorded after the statement",
                chosen,
            )
            batch.link_line(number, link, actor=actor, reason=reason)
            receipt = self.receipts[line.payment_id]
            receipt.reverse(kind=ReversalKind.COUNTED_TWICE, actor=actor, reason=reason)
        self.found.append(
            LateLink(batch_id, file_name, number, line.amount_pence, line.payment_id, link)
        )

    def save(self) -> list[LateLink]:
        if not self.found:
            return []
        where = [
            (f"{late.file_name} line {late.line}", late.batch_id, late.link) for late in self.found
        ]
        noted = note_links(self.ledger, where, self.ctx, self.books.paid_in_notes)
        reversed_receipts = [
            self.receipts[late.reversed_payment_id]
            for late in self.found
            if late.reversed_payment_id is not None
        ]
        self.ledger.save_checked(*self.batches.values(), *reversed_receipts, *noted)
        return self.found


def _with_choice(ours: str, chosen: str | None) -> str:
    """A link's reason: our words, and a person's reason for choosing it, if any, which our
    words never push past its limit (compose_text)."""
    if chosen is None:
        return own_words(ours)
    return compose_text(f"{ours}; chosen by a person: ", chosen)


# ---- undoing a link ---------------------------------------------------------------------------

UNLINKED_NOTE = "no longer paid in by bank statement"


@dataclass(frozen=True)
class UndoneLink:
    """A statement line's link undone (see unlink_line)."""

    batch_id: str
    file_name: str
    line: int
    restored_payment_id: str | None
    link: StatementLink

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "file_name": self.file_name,
            "line": self.line,
            "restored_payment_id": self.restored_payment_id,
        } | self.link.to_dict()


def unlink_line(
    ledger: IncomeLedger, batch_id: UUID, line: int, ctx: CommandContext, reason: str
) -> list[UndoneLink]:
    """A person says a late link (link_counted_twice) was wrong: the line's own receipt is
    counted again (its counted-twice reversal undone: back in suspense), the receipts it
    paid in are noted as no longer paid in (card payments unsettled: back in clearing),
    and the pairing is kept as rejected, so that no linking run makes it again. The first
    line of a payout split over lines takes its parts with it. All in one transaction;
    nothing is stored when the line is unknown or not linked."""
    batch = _statement(ledger, batch_id)
    if line in batch.standing_links and line not in batch.late_links:
        raise LineNotLinked(
            f"line {line} of import {batch_id} was linked when the statement was imported: "
            "it recorded no receipt of its own to count again; a supervisor reversing the "
            "whole import undoes its links"
        )
    lines = [line, *_parts_of(batch, line)]
    undone, changed = undo_links(ledger, batch, lines, ctx, reason)
    try:
        ledger.save_checked(batch, *changed.values())
    except IntegrityError:
        raise ConcurrentUpdate(
            "the statement or a receipt it links changed at the same moment; nothing was "
            "undone. Retry"
        ) from None
    return undone


# ---- a person's check of a line an import rule sent to a fund -------------------------------


@dataclass(frozen=True)
class LineCheck:
    """A statement line's check made or undone (check_line, undo_line_check)."""

    batch_id: str
    file_name: str
    line: int
    payment_id: str | None
    amount_pence: int
    checked: bool  # whether the check stands now (False: undone)
    actor: str
    reason: str
    # Whether the line is on the exceptions report now: an undone check puts it back, unless
    # its receipt was since refunded in full or reversed (it left the report by itself).
    on_report: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_line(
    ledger: IncomeLedger, batch_id: UUID, line: int, ctx: CommandContext, reason: str
) -> LineCheck:
    """A person checked a statement line an import rule sent to a fund (by its narrative,
    amount or channel: perhaps another channel's money counted twice) and says it is right:
    recorded on the statement's batch (ImportBatch.LineChecked: who, when, why), and the
    line leaves the exceptions report (Books.decided_lines); undo_line_check puts it back.
    Refused, storing nothing: an unknown import or line, no reason, a line that is no such
    line (in suspense, a payer's own transfer a fund took by its reference, linked, of a
    reversed import) or checked already."""
    return _save_check(ledger, batch_id, line, ctx, reason, undo=False)


def undo_line_check(
    ledger: IncomeLedger, batch_id: UUID, line: int, ctx: CommandContext, reason: str
) -> LineCheck:
    """A person says a line's check was wrong (ImportBatch.LineCheckUndone): it is back on
    the exceptions report, and both the check and its undoing stay in the history."""
    return _save_check(ledger, batch_id, line, ctx, reason, undo=True)


def _save_check(
    ledger: IncomeLedger, batch_id: UUID, line: int, ctx: CommandContext, reason: str, *, undo: bool
) -> LineCheck:
    batch = _statement(ledger, batch_id)
    if not undo and batch.file_format not in OpenLines.FORMATS:
        # An Allpay or CSV file's receipts are no statement lines: never on the report as
        # such, so a check of one would say nothing (and take nothing off it).
        raise LineNotToCheck(
            f"import {batch_id} is not a bank statement but a {batch.file_format} file: only "
            "a statement's lines an import rule sent to a fund wait for a person's check"
        )
    if undo:
        batch.undo_check(line, actor=ctx.actor, reason=reason)
        on_report = _settled_why(ledger, batch, line) is None
    else:
        batch.check_line(line, actor=ctx.actor, reason=reason)
        settled = _settled_why(ledger, batch, line)
        if settled is not None:
            raise LineNotToCheck(f"line {line} of import {batch.id}: {settled}")
        on_report = False
    try:
        ledger.save_checked(batch)  # type: ignore[arg-type]
    except IntegrityError:
        raise ConcurrentUpdate(
            "the statement changed at the same moment; nothing was recorded. Retry"
        ) from None
    found = batch.line_entry(line)
    return LineCheck(
        str(batch.id),
        batch.file_name,
        line,
        found.payment_id,
        found.amount_pence,
        not undo,
        ctx.actor,
        require_text("reason", reason, required=True),
        on_report,
    )


def _settled_why(ledger: IncomeLedger, batch: ImportBatch, line: int) -> str | None:
    """Why a rule line left the report by itself (decided_line), or None: its receipt was
    reversed (an officer found it counted twice, or it was returned: a check of it would
    contradict the reversal) or refunded in full (a check would say nothing)."""
    payment_id = batch.line_entry(line).payment_id
    assert payment_id is not None  # (a line sent to a fund recorded a receipt)
    receipt = ledger.repository.get(UUID(payment_id))
    if receipt.reversed_pence:
        return (
            f"its receipt {payment_id} was reversed ({receipt.reversal_kind}), so it is no "
            "exception and nothing of it is left to check"
        )
    if receipt.remaining_pence == 0:
        return (
            f"its receipt {payment_id} was refunded in full, so nothing of it is left to "
            "count twice and it is no exception"
        )
    return None


def _parts_of(batch: ImportBatch, line: int) -> list[int]:
    """The other lines of a payout split over lines whose first line is `line`; a part
    itself is refused: its link is undone with the first line's."""
    standing = batch.standing_links
    link = standing.get(line)
    if link is not None and link.rule == CARD_PAYOUT_PART:
        first = link.matched.rsplit(" ", 1)[-1]
        raise LineNotLinked(
            f"line {line} is part of the payout linked on line {first}: unlink line "
            f"{first}, which undoes its parts with it"
        )
    suffix = f"linked on line {line}"
    return sorted(
        number
        for number, part in standing.items()
        if part.rule == CARD_PAYOUT_PART and part.matched.endswith(suffix)
    )


def undo_links(
    ledger: IncomeLedger,
    batch: ImportBatch,
    lines: list[int],
    ctx: CommandContext,
    reason: str,
    changed: dict[str, Payment] | None = None,
) -> tuple[list[UndoneLink], dict[str, Payment]]:
    """Undo these lines' links on the batch (ImportBatch.undo_link): a late-linked line's
    receipt has its counted-twice reversal undone (back in suspense), and the receipts the
    links paid in are noted as no longer paid in (card payments unsettled). Returns what
    was undone and the receipts changed, by id (the caller saves them with the batch);
    `changed` holds the receipts already changed in the same transaction, changed further."""
    changed = {} if changed is None else changed

    def receipt(payment_id: str) -> Payment:
        if payment_id not in changed:
            changed[payment_id] = ledger.repository.get(UUID(payment_id))
        return changed[payment_id]

    undone = []
    for number in lines:
        link, restored = batch.undo_link(number, actor=ctx.actor, reason=reason)
        where = f"{batch.file_name} line {number}"
        why = compose_text(f"link undone: {where} does not pay in {link.matched} (", reason, ")")
        if restored is not None:
            own = receipt(restored)
            if own.reversal_kind != ReversalKind.COUNTED_TWICE.value:
                # A standing late link's receipt is reversed with it and can move no more:
                # read otherwise, another undo was committed between the two reads.
                raise ConcurrentUpdate(
                    f"{where} was unlinked by someone else at the same moment; nothing was "
                    "undone. Retry"
                )
            own.undo_reversal(kind=ReversalKind.COUNTED_TWICE, actor=ctx.actor, reason=why)
        for payment_id in link.matched_payment_ids:
            paid_in = receipt(payment_id)
            if paid_in.clearing_account is not None:
                payout = payout_name(where, str(batch.id))
                if not paid_in.payouts.get(payout):  # settled before payouts named the import
                    payout = where
                paid_in.undo_settlement(payout, link.settled_day, actor=ctx.actor, reason=why)
            unlinked = compose_text(f"{UNLINKED_NOTE} {where} (link undone: ", reason, ")")
            paid_in.note(unlinked, actor=ctx.actor)
        undone.append(UndoneLink(str(batch.id), batch.file_name, number, restored, link))
    return undone, changed


def statements_paying_in(
    ledger: IncomeLedger, batch: ImportBatch
) -> list[tuple[ImportBatch, list[int]]]:
    """The standing statements whose lines, linked late, pay in receipts this import (an
    Allpay or other channel's file) recorded, or its total, with those lines: reversing
    the import undoes their links. A line linked when its statement was imported recorded
    no receipt of its own to count the bank's money again, so the import is refused
    (RuleViolation) while such a link stands."""
    batch_id = str(batch.id)
    recorded = set(batch.receipt_ids)

    def names(link: StatementLink) -> bool:
        return (
            link.matched_batch_id == batch_id
            or batch_id in link.matched_batch_ids
            or not recorded.isdisjoint(link.matched_payment_ids)
        )

    candidates: set[str] = set()
    formats = {f.value for f in STATEMENT_FORMATS}
    for event in ledger.events_of(ImportBatch.Imported, ImportBatch.LineLinked):
        if isinstance(event, ImportBatch.LineLinked):
            if names(StatementLink.from_dict(event.link)):
                candidates.add(str(event.originator_id))
        elif event.file_format in formats and any(
            line.link is not None and names(line.link) for line in event.imported_lines
        ):
            candidates.add(str(event.originator_id))
    found = []
    for statement_id in sorted(candidates - {batch_id}):
        statement = _statement(ledger, UUID(statement_id))
        if statement.reversed_by is not None:
            continue
        lines = sorted(n for n, link in statement.standing_links.items() if names(link))
        at_import = [n for n in lines if n not in statement.late_links]
        if at_import:
            listed = ", ".join(map(str, at_import))
            raise RuleViolation(
                f"line(s) {listed} of statement {statement.file_name} (import "
                f"{statement_id}) paid in this import's receipts when the statement was "
                "imported: reversing the import would count that bank money nowhere. "
                "Correct the receipts one by one instead, or reverse that statement first"
            )
        if lines:
            found.append((statement, lines))
    return found


# ---- provider lines a fund took before the provider rule ------------------------------------

# Receipts read together (payments_events) per query, and the lines a report lists at most.
PROVIDER_LINES_BATCH = 1_000
MAX_PROVIDER_LINES = 1_000


def provider_lines_in_funds(ledger: IncomeLedger, most: int = MAX_PROVIDER_LINES) -> dict[str, Any]:
    """Read-only: the statement credit lines a fund took by their reference at import
    (taken_by_its_reference: no exception, no check) whose narrative names a payment
    provider by the ledger's names now (application.imports.names_provider, the ledger's
    provider_narratives): a provider's payout taken for a payer's own transfer, as the
    import did before a provider's line was held for its provider (888615c), or before a
    name was added to LEDGER_COLLECTOR_NARRATIVES. Nothing is changed: an officer transfers,
    reverses (counted_twice) or leaves each one, as they find. Only lines of standing
    statements whose receipt still has money in a fund are listed (one refunded or reversed
    in full is done with), in the ledger's order, at most `most` (`total`: all of them).
    The lines and their narratives are the kept books' (KeptBooks: the events recorded
    since the process's last call, not every import), and only the receipts of the lines
    whose narrative names a provider are read."""
    providers = ledger.provider_narratives
    wanted = _kept(ledger).using(ledger, partial(_provider_lines, providers))
    rows: list[dict[str, Any]] = []
    ids = list(wanted)
    for start in range(0, len(ids), PROVIDER_LINES_BATCH):
        chunk = [UUID(pid) for pid in ids[start : start + PROVIDER_LINES_BATCH]]
        read = ledger.payments_events(chunk)
        for payment_id in chunk:
            events = read[payment_id]
            received = events[0]
            narrative = (received.provider_details or {}).get("narrative")
            assert providers.named_in(narrative), "as the books hold it"
            receipt = replayed(events)
            funds = [
                {
                    "fund_code": held.fund_code,
                    "reference": held.reference,
                    "amount_pence": held.amount_pence,
                }
                for held in receipt.lines_with_money()
            ]
            if not funds:
                continue
            batch_id, file_name, line = wanted[str(payment_id)]
            rows.append(
                {
                    "batch_id": batch_id,
                    "file_name": file_name,
                    "line": line.line,
                    "booking_date": line.booking_date,
                    "payment_id": str(payment_id),
                    "amount_pence": line.amount_pence,
                    "reference": line.reference,
                    "narrative": narrative,
                    "funds": funds,
                }
            )
    return {"total": len(rows), "lines": rows[:most]}


def _provider_lines(providers: Any, fold: BooksFold) -> dict[str, tuple[str, str, ImportedLine]]:
    """The lines of standing statements a fund took by their reference whose narrative
    names a provider, in the ledger's order: payment id -> batch id, file name, line."""
    wanted: dict[str, tuple[str, str, ImportedLine]] = {}
    narratives = fold.narratives
    for batch_id, statement in fold.statements.items():
        if batch_id in fold.reversed_batches:
            continue
        for line in statement.imported_lines:
            if (
                line.payment_id is not None
                and line.payment_id in narratives
                and taken_by_its_reference(line)
                and providers.named_in(narratives[line.payment_id])
            ):
                wanted[line.payment_id] = (batch_id, statement.file_name, line)
    return wanted


# ---- the exceptions report -------------------------------------------------------------------


def age_band(days: int) -> str:
    for limit, name in AGE_BANDS:
        if days <= limit:
            return name
    return OLDEST_BAND


def exceptions(
    ledger: IncomeLedger, today: date | None = None, books: Books | None = None
) -> dict[str, Any]:
    """Statement credit lines no other record paid in (recorded as new receipts) that
    someone still has to settle (Books.unmatched_lines: not taken_by_its_reference; nor
    a line recorded in suspense whose receipt a person has since decided, decided_line),
    payout debits kept unmatched, receipts
    of other channels no statement line has paid in yet, what card providers have not paid
    out yet (per payment and settlement day, net of fees, refunds and lost disputes) and
    disputes not yet decided (money at risk), oldest first (_oldest_first: by their day,
    then in the order the ledger recorded them); from the books this process keeps
    (kept_books) unless given."""
    report = _report(ledger, today, books)
    return report | {section: list(report[section]) for section in REPORT_SECTIONS}


def exceptions_report_page(
    ledger: IncomeLedger,
    limit: int,
    offset: int = 0,
    today: date | None = None,
    books: Books | None = None,
) -> dict[str, Any]:
    """exceptions_page(exceptions(ledger, today, books), limit, offset), making only the
    rows of the page: a ledger's receipts not yet paid in are sorted, not each made a row
    (a page of 100 of a report of 100,000 rows: issue #10). The summary is counted from
    the same items."""
    return exceptions_page(_report(ledger, today, books), limit, offset)


def _report(ledger: IncomeLedger, today: date | None, books: Books | None) -> dict[str, Any]:
    """The report with its sections as _Rows (made when sliced) and its summary."""
    today = today or uk_today()
    books = kept_books(ledger) if books is None else books
    choices = _choices(ledger, books)
    open_lines = [
        (batch_id, line)
        for batch_id, line in books.unmatched_lines
        if (batch_id, line.line) not in books.decided_lines
    ]
    lines = [
        _line_row(batch_id, line, today) | {"candidates": choices.get((batch_id, line.line), [])}
        for batch_id, line in _oldest_first(
            open_lines,
            lambda item: (
                item[1].booking_date or "",
                books.statement_positions.get(item[0], 0),
                item[0],
            ),
            lambda item: item[1].line,
        )
    ]
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for row in lines:
        _count(totals, row["kind"], row["age_days"], 1, row["amount_pence"])
    # (a date sorts as its isoformat does: by the day, however many rows)
    open_receipts = _oldest_first(
        (
            r
            for r in books.receipts.values()
            if r.payment_id not in books.linked and r.payment_id not in books.clearing
        ),
        attrgetter("received_on", "position", "payment_id"),
    )
    by_day: dict[date, list[int]] = defaultdict(lambda: [0, 0])
    for r in open_receipts:
        day_total = by_day[r.received_on]
        day_total[0] += 1
        day_total[1] += r.amount_pence
    for day, (count, pence) in by_day.items():
        _count(totals, "receipt", (today - day).days, count, pence)
    clearing = books.clearing_receipts
    unsettled = _oldest_first(
        _unsettled(books), lambda item: (item[2], clearing[item[0]].position, item[0])
    )
    for _, kind, day, pence in unsettled:
        _count(totals, kind, (today - day).days, 1, pence)
    disputes = _oldest_first(
        [item for item in books.disputes.items() if item[1]["status"] in OPEN_DISPUTES],
        lambda item: (item[1]["opened_on"], item[1]["position"], "/".join(item[0])),
    )
    for _, dispute in disputes:
        _count(
            totals, "open_dispute", (today - dispute["opened_on"]).days, 1, dispute["amount_pence"]
        )
    return {
        "as_of": today.isoformat(),
        "unmatched_statement_lines": lines,
        "unmatched_receipts": _Rows(open_receipts, lambda r: _receipt_row(r, today)),
        "unsettled_card_payments": _Rows(
            unsettled,
            lambda item: _receipt_row(clearing[item[0]], today, item[1], item[3], item[2]),
        ),
        "open_disputes": _Rows(
            disputes,
            lambda item: _receipt_row(
                clearing[item[0][0]],
                today,
                "open_dispute",
                item[1]["amount_pence"],
                item[1]["opened_on"],
            ),
        ),
        "summary": _summary(totals),
    }


class _Rows(Sequence[dict[str, Any]]):
    """A section's items, oldest first, made rows only when sliced (a page's) or listed."""

    def __init__(self, items: list[Any], row: Callable[[Any], dict[str, Any]]) -> None:
        self.items, self.row = items, row

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self.row(item) for item in self.items[index]]
        return self.row(self.items[index])


def _count(
    totals: dict[tuple[str, str], list[int]], kind: str, age_days: int, count: int, pence: int
) -> None:
    entry = totals[(kind, age_band(age_days))]
    entry[0] += count
    entry[1] += pence


def _choices(
    ledger: IncomeLedger, books: Books, batch_id: str | None = None
) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """The statement lines (of one batch, or all) that wait for a person to choose what
    they pay in (_waits_for_a_person, as a run decides it), by (batch id, line): all their
    candidates by any rule (what choose_link accepts: pairings a person undid included),
    when the line's receipt is still undecided (a line an officer allocated, or a
    payer's own, is decided already)."""
    matcher = Matcher(books)
    claims = waiting_claims(matcher, books)
    undecided = Undecided(ledger, books.unmatched_lines, books.decided_lines)
    found: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for line_batch, line in books.unmatched_lines:
        if (batch_id is not None and line_batch != batch_id) or line.booking_date is None:
            continue
        if (line_batch, line.line) in books.decided_lines:  # (no choice: undecided says so)
            continue
        booked = date.fromisoformat(line.booking_date)
        key = (line_batch, line.line)
        allowed = partial(books.allows, *key) if key in books.rejected else None
        run_finds = _line_candidates(matcher, line, booked, allowed)
        # A line no rule matches in its window may pay in a payout settled before it, or
        # files of several days together.
        late = not run_finds and (
            _late_payouts(matcher, line, booked) or _files_together(matcher, line, booked)
        )
        if (
            (
                late
                or _waits_for_a_person(
                    matcher, books, claims, undecided, key, line, booked, run_finds
                )
            )
            and (line.payment_id is not None or line.is_open_debit)
            and undecided(key)
        ):
            found[key] = _candidate_views(books, _every_candidate(matcher, line, booked))
    # A line that is part of a split payout lists the split's payouts first (not instead).
    _split_choices(ledger, matcher, books, (claims, undecided), batch_id, found)
    return found


def _split_choices(
    ledger: IncomeLedger,
    matcher: Matcher,
    books: Books,
    waiting: tuple[Claims, Undecided],
    batch_id: str | None,
    found: dict[tuple[str, int], list[dict[str, Any]]],
) -> None:
    """Payouts split over lines that no run links, as any link would be a guess: two or
    more settlement days' payouts add up to the lines, or the one that does is another
    waiting line's candidate too (Claims), or lines of different narratives or booking
    days add up to one (Matcher.loose_splits). Each of the lines lists those payouts
    first (a run's group's, then the others), then its own candidates (a payout settled
    before its window, say), for a person to choose one on any of them (choose_link links
    them all). The lines are grouped as a run groups them (_split_candidates), whatever
    else they may pay in."""
    claims, undecided = waiting
    lines = [
        (line_batch, line)
        for line_batch, line in books.unmatched_lines
        if batch_id is None or line_batch == batch_id
    ]
    by_key = {(line_batch, line.line): line for line_batch, line in lines}
    candidates = _split_candidates(ledger, matcher, books, lines)
    offered: dict[LineKey, list[tuple[StatementLink, tuple[str, ...]]]] = defaultdict(list)
    for members in _split_groups(candidates):
        parts = sorted(members, key=lambda member: member.line)
        keys = [(part.group[0], part.line) for part in parts]
        wholes = matcher.split_wholes(parts)
        contested = len(wholes) == 1 and claims.contested(keys[0], wholes[0], undecided)
        if not (len(wholes) > 1 or contested) or not all(undecided(part) for part in keys):
            continue
        links = [matcher.split_links(parts, whole)[0][1] for whole in wholes]
        for key in keys:
            offered[key].extend((link, _partners(lines, key, parts)) for link in links)
    # Then the splits of lines of different narratives or days, which no run links.
    for parts, whole in matcher.loose_splits(candidates):
        keys = [(part.group[0], part.line) for part in parts]
        if all(undecided(key) for key in keys):
            for key in keys:
                link = matcher.split_links(parts, whole)[0][1]
                offered[key].append((link, _partners(lines, key, parts)))
    for key, splits in offered.items():
        line = by_key[key]
        assert line.booking_date is not None
        own = _every_candidate(matcher, line, date.fromisoformat(line.booking_date))
        links = [link for link, _ in splits]
        found[key] = _candidate_views(books, [*links, *own], [named for _, named in splits])


def _candidate_views(
    books: Books, links: list[StatementLink], partners: Sequence[tuple[str, ...]] = ()
) -> list[dict[str, Any]]:
    """The things a line may pay in, for a person to choose: each named by its `candidate`
    key (candidate_key), and by `payment_id`, the first of its receipts that no other
    candidate pays in, else (a split) the first own receipt of its other lines that names
    no other candidate, else None (choose_link)."""
    views = []
    for link, named in zip(links, _naming_receipts(links, partners), strict=True):
        receipts = [
            books.receipts.get(pid) or books.clearing_receipts[pid]
            for pid in link.matched_payment_ids
        ]
        views.append(
            {
                "rule": link.rule,
                "matched": link.matched,
                "candidate": candidate_key(link),
                "payment_id": named,
                "payment_ids": list(link.matched_payment_ids),
                "matched_batch_id": link.matched_batch_id,
                "settled_day": link.settled_day,
                "channels": sorted({receipt.channel for receipt in receipts}),
                "days": sorted({receipt.received_on.isoformat() for receipt in receipts}),
                "files": _files_view(books, link),
            }
        )
    return views


def _files_view(books: Books, link: StatementLink) -> list[dict[str, Any]]:
    """The imported files a candidate pays in (an import's total, or files together): each
    one's id, file name and day (the latest UK day of its receipts)."""
    batch_ids = [link.matched_batch_id] if link.matched_batch_id else link.matched_batch_ids
    return [
        {
            "batch_id": batch_id,
            "file_name": books.import_files.get(batch_id, ("", ""))[0],
            "day": max(
                books.receipts[pid].received_on for pid in books.batches[batch_id]
            ).isoformat(),
        }
        for batch_id in batch_ids
    ]


def _naming_receipts(
    candidates: list[StatementLink], partners: Sequence[tuple[str, ...]] = ()
) -> list[str | None]:
    """For each of a line's candidates, the first receipt of it that no other candidate pays
    in, else (a split: `partners`, its other lines' own receipts, _partners) the first of
    those that names no other: the one a person names to choose it (None: every receipt of
    it is in another, as two card payouts' receipts may be; rules 1-3's candidates add up
    positive receipts to one amount, so one is never wholly in another)."""
    names = []
    for index, link in enumerate(candidates):
        elsewhere = {
            pid
            for other_index, other in enumerate(candidates)
            if other_index != index
            for pid in (*other.matched_payment_ids, *_nth(partners, other_index))
        }
        own = (*link.matched_payment_ids, *_nth(partners, index))
        names.append(next((pid for pid in own if pid not in elsewhere), None))
    return names


def line_choices(ledger: IncomeLedger, batch: ImportBatch) -> dict[int, list[dict[str, Any]]]:
    """A statement's lines waiting for a person to choose what they pay in (_choices), by
    line, read from the books of their days on (as a run after new money reads them:
    scope_start, from LATE_PAYOUT_DAYS before them, for the payouts a person may choose),
    not the whole history: what was recorded since a little before the earliest line still
    waiting (in suspense, or a payout debit kept unmatched), so an old statement with such a line offers more. They are the books this
    process keeps (kept_books) cut at that position, the very books read_books reads from
    it, so a view reads only what was recorded since the process's previous call."""
    if batch.file_format not in OpenLines.FORMATS or batch.reversed_by is not None:
        return {}
    # A line whose receipt a fund took at import never waits (may_wait): a statement whose
    # lines all found their payers reads nothing more. A payout debit kept unmatched may
    # wait as a credit line does: the exceptions report offers it choices, so does this.
    days = [
        line.booking_date
        for line in batch.lines
        if may_wait(line) and line.booking_date and line.line not in batch.late_links
    ]
    if not days:
        return {}
    first_day = date.fromisoformat(min(days))
    # The kept books cut at that position: the same books, without reading those days again.
    books = kept_books(ledger, scope_start(ledger, first_day, LATE_PAYOUT_DAYS))
    found = _choices(ledger, books, str(batch.id))
    return {line: candidates for (_, line), candidates in found.items()}


def _oldest_first(
    items: Iterable[Row],
    recorded: Callable[[Row], tuple[Any, int, str]],
    within: Callable[[Row], Any] | None = None,
) -> list[Row]:
    """The report's rows in an order a person can follow and an auditor reproduce from the
    data, whatever the day it is asked on: by business day (`recorded`'s first: a line's
    booking day, a receipt's day received, a payout's settlement day, a dispute's day
    opened), then in the order the ledger recorded them (its position: the statement's,
    the receipt's, the dispute's), then by id (only when positions are unknown), then
    `within` one record (a statement's line number, a payment's items of one day)."""
    if within is None:
        return sorted(items, key=recorded)
    return sorted(items, key=lambda item: (*recorded(item), within(item)))


def _unsettled(books: Books) -> Iterator[tuple[str, str, date, int]]:
    """Per card payment and settlement day, what no payout has paid in: `unsettled_payment`
    when the day holds the payment itself, else `unsettled_deduction` (a later refund, lost
    dispute or fee the next payout should deduct)."""
    for payment_id, held in books.clearing.items():
        by_day: dict[str, list[Any]] = defaultdict(lambda: ["unsettled_deduction", 0])
        for (kind, day), pence in held.items():
            by_day[day][1] += pence
            if kind == ClearingItem.PAYMENT:
                by_day[day][0] = "unsettled_payment"
        for day, (kind, pence) in by_day.items():
            if pence:
                yield payment_id, kind, date.fromisoformat(day), pence


def _line_row(batch_id: str, line: ImportedLine, today: date) -> dict[str, Any]:
    """A credit line (`statement_line`, its own receipt's id) or a payout debit kept
    unmatched (`statement_debit`, money out: its amount negative, no receipt)."""
    assert line.booking_date is not None, "a statement's line has its booking date"
    booked = date.fromisoformat(line.booking_date)
    age = (today - booked).days
    debit = line.is_open_debit
    return {
        "kind": "statement_debit" if debit else "statement_line",
        "batch_id": batch_id,
        "line": line.line,
        "payment_id": line.payment_id,
        "channel": line.channel,
        "amount_pence": -line.amount_pence if debit else line.amount_pence,
        "reference": line.reference,
        "date": booked.isoformat(),
        "age_days": age,
        "age_band": age_band(age),
    }


def _receipt_row(
    receipt: Receipt,
    today: date,
    kind: str = "receipt",
    amount_pence: int | None = None,
    day: date | None = None,
) -> dict[str, Any]:
    """A row about one receipt: itself, or (kind, amount, day) of what is still open of it."""
    day = day or receipt.received_on
    age = (today - day).days
    return {
        "kind": kind,
        "batch_id": None,
        "line": None,
        "payment_id": receipt.payment_id,
        "channel": receipt.channel,
        "amount_pence": receipt.amount_pence if amount_pence is None else amount_pence,
        "reference": receipt.reference,
        "date": day.isoformat(),
        "age_days": age,
        "age_band": age_band(age),
    }


def _summary(totals: dict[tuple[str, str], list[int]]) -> list[dict[str, Any]]:
    """Counts and amounts by kind and age band (_count), in the report's order of them."""
    order = [name for _, name in AGE_BANDS] + [OLDEST_BAND]
    return [
        {"kind": kind, "age_band": band, "count": count, "amount_pence": pence}
        for (kind, band), (count, pence) in sorted(
            totals.items(), key=lambda item: (item[0][0], order.index(item[0][1]))
        )
    ]


REPORT_SECTIONS = (
    "unmatched_statement_lines",
    "unmatched_receipts",
    "unsettled_card_payments",
    "open_disputes",
)
CSV_COLUMNS = (
    "kind",
    "age_band",
    "age_days",
    "date",
    "amount",
    "channel",
    "reference",
    "payment_id",
    "batch_id",
    "line",
    "candidates",
)
# Columns the report makes itself as numbers: written as they are, so that a spreadsheet
# reads a payout debit's "-60.00" as a number (only text from files and people is guarded
# against running as a formula, _cell, as projections.audit_export guards its text columns).
CSV_NUMBERS = frozenset({"amount", "age_days", "line"})


def exceptions_page(report: dict[str, Any], limit: int, offset: int = 0) -> dict[str, Any]:
    """The report's rows from `offset` on, at most `limit` of them, counted across its
    sections in their order (statement lines, receipts, unsettled card money, disputes;
    each oldest first, as exceptions_csv lists them): each section keeps the rows of the
    page it has; `total` is every row of the report, and the summary stays the whole
    report's."""
    assert limit >= 1 and offset >= 0, "a page has rows and starts at a row"
    page: dict[str, Any] = dict(report)
    start, end = offset, offset + limit
    for section in REPORT_SECTIONS:
        rows = report[section]
        page[section] = rows[max(start, 0) : max(end, 0)]
        start, end = start - len(rows), end - len(rows)
    page["total"] = sum(len(report[section]) for section in REPORT_SECTIONS)
    return page | {"limit": limit, "offset": offset}


def exceptions_csv(report: dict[str, Any]) -> str:
    """The report's rows as CSV for a spreadsheet: amounts in pounds, oldest first."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for section in REPORT_SECTIONS:
        for row in report[section]:
            cells = row | {
                "amount": pence_to_pounds(row["amount_pence"]),
                "candidates": candidates_text(row.get("candidates", [])),
            }
            writer.writerow(
                [cells[name] if name in CSV_NUMBERS else _cell(cells[name]) for name in CSV_COLUMNS]
            )
    return buffer.getvalue()


def candidates_text(candidates: list[dict[str, Any]]) -> str:
    """A line's candidates in a few words each (empty: none to choose from): what it pays
    in, its key to name it by, its channels and days, files together's names (`files`: its
    words name them by import id), and the receipt id that names it too, if any."""
    return "; ".join(
        f"{c['matched']} ({', '.join(c['channels'])}; {', '.join(c['days'])}; "
        f"{_files_named(c)}{_receipts_named(c.get('payment_id'), c['payment_ids'])}; "
        f"candidate {c['candidate']})"
        for c in candidates
    )


def _files_named(candidate: dict[str, Any]) -> str:
    """The names of the files a candidate of files together pays in (_files_view)."""
    if candidate.get("rule") != IMPORTS_TOGETHER:
        return ""
    return f"files {', '.join(file['file_name'] for file in candidate['files'])}; "


def _receipts_named(naming: str | None, payment_ids: Sequence[str]) -> str:
    """The receipt id a person names to choose a candidate (_naming_receipt), and how many
    more it pays in."""
    more = f" and {len(payment_ids) - 1} more" if len(payment_ids) > 1 else ""
    if naming is None:
        return f"receipts {', '.join(payment_ids)}, none of them its own: name its candidate key"
    if naming not in payment_ids:  # a split's other line's own receipt (_partners)
        return f"receipt {naming}, its other line's own, to name it by"
    return f"receipt {naming}{more}"


def _cell(value: Any) -> str:
    """A spreadsheet must not run a reference as a formula (=, +, -, @ first)."""
    text = "" if value is None else str(value)
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text

"""Domain errors, each named for the rule it guards.

Every error carries a message that says what was wrong and what to do about it, and a stable
`code` that the CLI and the HTTP API hand on so that scripts need not parse sentences.
"""

from __future__ import annotations


class LedgerError(Exception):
    """A request broke a rule of the ledger; nothing was recorded."""

    code = "ledger_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(LedgerError):
    """The request itself is malformed (bad amount, missing reason, unknown channel)."""

    code = "invalid_request"


class CsvControlTotalsMissing(InvalidRequest):
    """A CSV file carries no trailer: whoever imports it gives its total and count."""


class InvalidAmount(InvalidRequest):
    code = "invalid_amount"


class ReasonRequired(InvalidRequest):
    code = "reason_required"


class UnknownChannel(InvalidRequest):
    code = "unknown_channel"


class CardNumberRejected(InvalidRequest):
    code = "card_number_rejected"


class InvalidTextCharacters(InvalidRequest):
    code = "invalid_text_characters"


class InvalidEffectiveDate(InvalidRequest):
    code = "invalid_effective_date"


class InvalidFundDefinition(InvalidRequest):
    code = "invalid_fund_definition"


class NotFound(LedgerError):
    code = "not_found"


class UnknownFund(NotFound):
    code = "unknown_fund"


class PaymentNotFound(NotFound):
    code = "payment_not_found"


class AllocationNotFound(NotFound):
    code = "allocation_not_found"


class RefundRequestNotFound(NotFound):
    code = "refund_request_not_found"


class RuleViolation(LedgerError):
    """The request is well formed but the ledger's state does not allow it."""

    code = "rule_violation"


class FundAlreadyExists(RuleViolation):
    code = "fund_already_exists"


class FundDisabled(RuleViolation):
    code = "fund_disabled"


class InvalidReference(RuleViolation):
    code = "invalid_reference"


class AllocationExceedsUnallocated(RuleViolation):
    code = "allocation_exceeds_unallocated"


class TransferExceedsAllocation(RuleViolation):
    code = "transfer_exceeds_allocation"


class RefundExceedsRemaining(RuleViolation):
    code = "refund_exceeds_remaining"


class PaymentAlreadyReversed(RuleViolation):
    code = "payment_already_reversed"


class NothingToReverse(RuleViolation):
    code = "nothing_to_reverse"


class SecondPersonRequired(RuleViolation):
    code = "second_person_required"


class RefundRequestAlreadyDecided(RuleViolation):
    """Someone else approved or declined the request first (a lost race is not a 404)."""

    code = "refund_request_already_decided"


class RefundRequestStale(RuleViolation):
    """The money a refund request was to come from has moved since it was requested."""

    code = "refund_request_stale"


class IdempotencyKeyReused(RuleViolation):
    code = "idempotency_key_reused"


class ConcurrentUpdate(LedgerError):
    """Someone else changed the same record at the same moment; retrying is safe."""

    code = "concurrent_update"


class UnbalancedPostings(AssertionError):
    """An event whose postings do not sum to zero: a defect, never a user error."""


class ImportRefused(InvalidRequest):
    """A file with a malformed line or control totals that do not match: refused whole."""

    code = "import_refused"

    def __init__(self, message: str, problems: list) -> None:
        super().__init__(message)
        self.problems = problems


class ImportBatchNotFound(NotFound):
    code = "import_batch_not_found"


class ImportLineNotFound(NotFound):
    code = "import_line_not_found"


class LineNotLinked(RuleViolation):
    """A statement line asked to be unlinked that no late link stands on (never linked, its
    link undone already, or linked when the statement was imported)."""

    code = "line_not_linked"


class LineNotAwaitingLink(RuleViolation):
    """A person asked to link a statement line that no longer waits for one (linked, no
    receipt, or its receipt decided by a person)."""

    code = "line_not_awaiting_link"


class LineNotToCheck(RuleViolation):
    """A person said "checked: this is right" of a statement line that is not one an import
    rule sent to a fund (reconciliation.check_line), or that was checked already."""

    code = "line_not_to_check"


class LineNotChecked(RuleViolation):
    """A person asked to undo the check of a statement line that no check stands on."""

    code = "line_not_checked"


class LineNeedsAChoice(RuleViolation):
    """A statement line may pay in more than one record (its first matching rule has more
    than one candidate): no run links it, and a person chooses which."""

    code = "line_needs_a_choice"


class NotACandidate(RuleViolation):
    """A person chose, for a statement line, a receipt it may not pay in now."""

    code = "not_a_candidate"


class InvalidImportRule(InvalidRequest):
    code = "invalid_import_rule"


class ImportRuleNotFound(NotFound):
    code = "import_rule_not_found"


class PeriodClosed(RuleViolation):
    """Money cannot take effect in a closed day, month or financial year."""

    code = "period_closed"


class PeriodNotEnded(RuleViolation):
    """Only a period that has ended can be closed: today always stays open."""

    code = "period_not_ended"


class PeriodAlreadyClosed(RuleViolation):
    code = "period_already_closed"


class GlExportDiffers(RuleViolation):
    """A day exported before no longer gives the same file: the history was altered."""

    code = "gl_export_differs"


class NotPermitted(LedgerError):
    """The user may not do this, whatever the ledger's state: their key's limits forbid it."""

    code = "not_permitted"


class OutsideFundGroups(NotPermitted):
    """The user's key is limited to fund groups that do not hold this fund."""

    code = "outside_fund_groups"


class PartialRefundNotPermitted(NotPermitted):
    """Only some roles may refund part of what a payment holds."""

    code = "partial_refund_not_permitted"


class OfficeNotFound(NotFound):
    code = "office_not_found"


class TillNotFound(NotFound):
    code = "till_not_found"


class OfficeAlreadyExists(RuleViolation):
    code = "office_already_exists"


class TillAlreadyExists(RuleViolation):
    code = "till_already_exists"


class OfficeNotOpen(RuleViolation):
    """A closed office or till takes no receipts and no cash-ups."""

    code = "office_closed"


class ChannelNotTaken(RuleViolation):
    """An office records only the channels configured for it (cash, cheque, card...)."""

    code = "channel_not_taken"


class CashUpNotFound(NotFound):
    code = "cashup_not_found"


class CashUpAwaitingDecision(RuleViolation):
    """A submitted cash-up is approved or returned before it can be submitted again."""

    code = "cashup_awaiting_decision"


class CashUpNotAwaitingDecision(RuleViolation):
    code = "cashup_not_awaiting_decision"


class CashUpAlreadyApproved(RuleViolation):
    """An approved cash-up is final."""

    code = "cashup_already_approved"


class TillCashedUp(RuleViolation):
    """A till's day whose cash-up was approved takes no more receipts."""

    code = "till_cashed_up"


class CashUpStale(RuleViolation):
    """Receipts were recorded for the till after its cash-up was submitted."""

    code = "cashup_stale"

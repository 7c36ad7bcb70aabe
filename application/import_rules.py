"""Import rules as data: list, add, amend, disable, enable and move the council's rules (#10).

The rules live in one aggregate (domain.import_rules.ImportRulebook); each change is an
event saved with optimistic concurrency, so two supervisors changing the rules at the same
moment cannot both win unseen. An import reads the rulebook once, at its start.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from application.ledger import SYSTEM_ACTOR, CommandContext, IncomeLedger
from domain.errors import ConcurrentUpdate
from domain.import_rules import ImportRule, ImportRulebook


def current_rulebook(ledger: IncomeLedger) -> ImportRulebook:
    """The rulebook as it is now (an empty one when no rule was ever added)."""
    try:
        return ledger.repository.get(ImportRulebook.create_id())
    except AggregateNotFoundError:
        return ImportRulebook.open(actor=SYSTEM_ACTOR)


def list_rules(ledger: IncomeLedger) -> dict[str, Any]:
    """Every rule in the order they are tried, disabled ones included (they never match)."""
    book = current_rulebook(ledger)
    return {
        "rulebook_version": book.version if not book.pending_events else 0,
        "rules": [rule_view(rule, n) for n, rule in enumerate(book.in_order(), 1)],
    }


def rule_view(rule: ImportRule, position: int) -> dict[str, Any]:
    """A rule with its place in the order (1 is tried first)."""
    return {"order": position} | rule.to_dict()


def add_rule(
    ledger: IncomeLedger,
    rule: dict[str, Any],
    ctx: CommandContext,
    reason: str,
    position: int | None = None,
) -> dict[str, Any]:
    """Add a rule, tried last unless a position (1 is first) is given."""
    _require_fund(ledger, rule)
    added: list[ImportRule] = []

    def change(book: ImportRulebook) -> None:
        added.append(book.add_rule(rule, actor=ctx.actor, reason=reason, position=position))

    book, saved_at = _change(ledger, change)
    return _outcome(book, added[0].rule_id, saved_at)


def amend_rule(
    ledger: IncomeLedger, rule_id: str, changes: dict[str, Any], ctx: CommandContext, reason: str
) -> dict[str, Any]:
    """Change a rule's conditions or outcome, keeping its id, place and history; its version
    rises, so receipts it decided before still name the rule as it was then."""
    _require_fund(ledger, changes)
    book, saved_at = _change(
        ledger, lambda b: b.amend_rule(rule_id, changes, actor=ctx.actor, reason=reason)
    )
    return _outcome(book, rule_id, saved_at)


def disable_rule(
    ledger: IncomeLedger, rule_id: str, ctx: CommandContext, reason: str
) -> dict[str, Any]:
    """A disabled rule stays in the list (and in the history) but never matches a line."""
    book, saved_at = _change(
        ledger, lambda b: b.disable_rule(rule_id, actor=ctx.actor, reason=reason)
    )
    return _outcome(book, rule_id, saved_at)


def enable_rule(
    ledger: IncomeLedger, rule_id: str, ctx: CommandContext, reason: str
) -> dict[str, Any]:
    book, saved_at = _change(
        ledger, lambda b: b.enable_rule(rule_id, actor=ctx.actor, reason=reason)
    )
    return _outcome(book, rule_id, saved_at)


def move_rule(
    ledger: IncomeLedger, rule_id: str, position: int, ctx: CommandContext, reason: str
) -> dict[str, Any]:
    book, saved_at = _change(
        ledger, lambda b: b.move_rule(rule_id, position, actor=ctx.actor, reason=reason)
    )
    return _outcome(book, rule_id, saved_at)


def _require_fund(ledger: IncomeLedger, rule: dict[str, Any]) -> None:
    """A rule's fund must exist (it may be disabled: its lines then wait in suspense)."""
    if rule.get("fund_code"):
        ledger.chart().fund(str(rule["fund_code"]))


def _change(
    ledger: IncomeLedger, change: Callable[[ImportRulebook], None]
) -> tuple[ImportRulebook, int | None]:
    book = current_rulebook(ledger)
    change(book)
    try:
        return book, ledger.save_checked(book)
    except IntegrityError:
        raise ConcurrentUpdate(
            "the import rules were changed by someone else at the same moment; nothing was "
            "saved. List them again and retry"
        ) from None


def _outcome(book: ImportRulebook, rule_id: str, position: int | None) -> dict[str, Any]:
    rule = book.rule(rule_id)
    return {
        "recorded": position is not None,
        "position": position,
        "rulebook_version": book.version,
        "rule": rule_view(rule, book.order.index(rule.rule_id) + 1),
    }

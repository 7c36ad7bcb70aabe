"""`income-ledger rules ...`: the council's import rules (issue #10).

`rules list` shows them in the order they are tried; `rules add`, `rules amend`, `rules
disable`, `rules enable` and `rules move` change them, each recorded as an event with who and why.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.markup import escape

from application.import_rules import (
    add_rule,
    amend_rule,
    disable_rule,
    enable_rule,
    list_rules,
    move_rule,
)
from domain.errors import InvalidRequest
from domain.money import pounds_text, pounds_to_pence
from income_ledger.cli import helpers

rules_app = typer.Typer(
    help="Import rules, tried in order on each imported line: rules list, add, amend, "
    "disable, enable, move.",
    no_args_is_help=True,
)
JsonOption = helpers.JsonOption
ActorOption = Annotated[str | None, typer.Option("--actor", help="Who is doing this.")]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why the rules change.")]
RuleId = Annotated[str, typer.Argument(help="The rule's id, like R3 (rules list).")]


def register(app: typer.Typer) -> None:
    helpers.add_commands(
        rules_app,
        {
            "list": rules_list,
            "add": rules_add,
            "amend": rules_amend,
            "disable": rules_disable,
            "enable": rules_enable,
            "move": rules_move,
        },
    )
    app.add_typer(rules_app, name="rules")


def rules_list(as_json: JsonOption = False) -> None:
    """The rules in the order they are tried (disabled ones never match)."""
    helpers.show(helpers.run(list_rules), as_json, _print_rules)


def _print_rules(listed: dict[str, Any]) -> None:
    table = helpers.folding_table("order", "rule", "name", "when", "then", "enabled")
    for rule in listed["rules"]:
        table.add_row(
            str(rule["order"]),
            f"{rule['rule_id']} v{rule['version']}",
            escape(rule["name"]),
            escape(describe_conditions(rule)),
            escape(describe_outcome(rule)),
            "yes" if rule["enabled"] else "no",
        )
    helpers.out.print(table)
    if not listed["rules"]:
        helpers.out.print("no import rules: lines find their fund by the funds' reference rules")


def describe_conditions(rule: dict[str, Any]) -> str:
    parts = []
    if rule["reference_pattern"]:
        parts.append(f"reference matches {rule['reference_pattern']}")
    if rule["narrative_contains"]:
        parts.append(f"narrative contains {rule['narrative_contains']!r}")
    if rule["min_amount_pence"] is not None:
        parts.append(f"amount >= {pounds_text(rule['min_amount_pence'])}")
    if rule["max_amount_pence"] is not None:
        parts.append(f"amount <= {pounds_text(rule['max_amount_pence'])}")
    if rule["channels"]:
        parts.append(f"channel {' or '.join(rule['channels'])}")
    return "; ".join(parts)


def describe_outcome(rule: dict[str, Any]) -> str:
    if rule["suspense_reason"]:
        return f"suspense: {rule['suspense_reason']}"
    text = f"fund {rule['fund_code']}"
    if rule["strip_prefix"]:
        text += f", strip prefix {rule['strip_prefix']}"
    if rule["rewrite_pattern"]:
        text += f", rewrite {rule['rewrite_pattern']} -> {rule['rewrite_to']}"
    return text


ReferenceOption = Annotated[
    str | None,
    typer.Option(
        "--reference",
        help="A regular expression the whole reference matches (capitals, no spaces), "
        "like 'CT[0-9]{8}'.",
    ),
]
NarrativeOption = Annotated[
    str | None, typer.Option("--narrative", help="Text the line's narrative contains.")
]
MinAmountOption = Annotated[
    str | None, typer.Option("--min-amount", help="Smallest amount in pounds, like 10.00.")
]
MaxAmountOption = Annotated[
    str | None, typer.Option("--max-amount", help="Largest amount in pounds.")
]
ChannelOption = Annotated[
    list[str] | None, typer.Option("--channel", help="A channel (repeat for several).")
]
FundOption = Annotated[str | None, typer.Option("--fund", help="Send the money to this fund.")]
StripPrefixOption = Annotated[
    str | None, typer.Option("--strip-prefix", help="Fund rules: remove this prefix.")
]
RewriteOption = Annotated[
    str | None,
    typer.Option("--rewrite", help="Fund rules: a regular expression to replace..."),
]
RewriteToOption = Annotated[
    str | None, typer.Option("--rewrite-to", help="...with this (\\1 is its first group).")
]
SuspenseOption = Annotated[
    str | None,
    typer.Option("--suspense", help="Send the money to suspense, saying this."),
]


class Clearable(StrEnum):
    """What `rules amend --clear` takes off a rule: a condition (the rule then matches any
    line on it), or a fund rule's reference transformation."""

    REFERENCE = "reference"
    NARRATIVE = "narrative"
    MIN_AMOUNT = "min-amount"
    MAX_AMOUNT = "max-amount"
    CHANNEL = "channel"
    STRIP_PREFIX = "strip-prefix"
    REWRITE = "rewrite"


# The rule's fields each clears, and what they become (as PATCH /import-rules with null).
CLEARED: dict[Clearable, dict[str, Any]] = {
    Clearable.REFERENCE: {"reference_pattern": None},
    Clearable.NARRATIVE: {"narrative_contains": None},
    Clearable.MIN_AMOUNT: {"min_amount_pence": None},
    Clearable.MAX_AMOUNT: {"max_amount_pence": None},
    Clearable.CHANNEL: {"channels": []},
    Clearable.STRIP_PREFIX: {"strip_prefix": None},
    Clearable.REWRITE: {"rewrite_pattern": None, "rewrite_to": None},
}
ClearOption = Annotated[
    list[Clearable] | None,
    typer.Option(
        "--clear",
        help="Take a condition (or a transformation) off the rule: reference, narrative, "
        "min-amount, max-amount, channel, strip-prefix or rewrite (with its --rewrite-to); "
        "repeat for several.",
    ),
]


def _rule_fields(**options: Any) -> dict[str, Any]:
    """The rule's fields from the command's options (amounts in pounds become pence)."""
    amounts = {"min_amount": "min_amount_pence", "max_amount": "max_amount_pence"}
    names = {
        "reference": "reference_pattern",
        "narrative": "narrative_contains",
        "channel": "channels",
        "fund": "fund_code",
        "rewrite": "rewrite_pattern",
        "suspense": "suspense_reason",
    }
    fields = {}
    for option, value in options.items():
        if option in amounts:
            fields[amounts[option]] = pounds_to_pence(value) if value is not None else None
        else:
            fields[names.get(option, option)] = value
    return fields


def rules_add(
    name: Annotated[str, typer.Option("--name", help="What people call the rule.")],
    reason: ReasonOption,
    reference: ReferenceOption = None,
    narrative: NarrativeOption = None,
    min_amount: MinAmountOption = None,
    max_amount: MaxAmountOption = None,
    channel: ChannelOption = None,
    fund: FundOption = None,
    strip_prefix: StripPrefixOption = None,
    rewrite: RewriteOption = None,
    rewrite_to: RewriteToOption = None,
    suspense: SuspenseOption = None,
    position: Annotated[
        int | None, typer.Option("--position", min=1, help="Where to try it (1 is first).")
    ] = None,
    actor: ActorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add a rule (tried last unless --position). Every condition given must hold."""
    rule = _rule_fields(
        name=name,
        reference=reference,
        narrative=narrative,
        min_amount=min_amount,
        max_amount=max_amount,
        channel=channel or [],
        fund=fund,
        strip_prefix=strip_prefix,
        rewrite=rewrite,
        rewrite_to=rewrite_to,
        suspense=suspense,
    )
    outcome = helpers.run(lambda led: add_rule(led, rule, helpers.context(actor), reason, position))
    _print(outcome, as_json, "added")


def rules_amend(
    rule_id: RuleId,
    reason: ReasonOption,
    name: Annotated[str | None, typer.Option("--name", help="A new name.")] = None,
    reference: ReferenceOption = None,
    narrative: NarrativeOption = None,
    min_amount: MinAmountOption = None,
    max_amount: MaxAmountOption = None,
    channel: ChannelOption = None,
    fund: FundOption = None,
    strip_prefix: StripPrefixOption = None,
    rewrite: RewriteOption = None,
    rewrite_to: RewriteToOption = None,
    suspense: SuspenseOption = None,
    clear: ClearOption = None,
    actor: ActorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change a rule's conditions or outcome; what is not given stays, and --clear takes
    one off. It keeps its id, place and history; --fund replaces a suspense outcome and
    --suspense a fund one."""
    given = {
        option: value
        for option, value in {
            "name": name,
            "reference": reference,
            "narrative": narrative,
            "min_amount": min_amount,
            "max_amount": max_amount,
            "channel": channel,
            "fund": fund,
            "strip_prefix": strip_prefix,
            "rewrite": rewrite,
            "rewrite_to": rewrite_to,
            "suspense": suspense,
        }.items()
        if value is not None
    }
    changes = _rule_fields(**given)
    for option in clear or ():
        both = sorted(set(CLEARED[option]) & set(changes))
        if both:
            raise InvalidRequest(
                f"--clear {option} and a new value for it were both given: give one"
            )
        changes |= CLEARED[option]
    outcome = helpers.run(
        lambda led: amend_rule(led, rule_id, changes, helpers.context(actor), reason)
    )
    _print(outcome, as_json, "amended")


def rules_disable(
    rule_id: RuleId, reason: ReasonOption, actor: ActorOption = None, as_json: JsonOption = False
) -> None:
    """Stop a rule matching; it stays listed, and in the history."""
    outcome = helpers.run(lambda led: disable_rule(led, rule_id, helpers.context(actor), reason))
    _print(outcome, as_json, "disabled")


def rules_enable(
    rule_id: RuleId, reason: ReasonOption, actor: ActorOption = None, as_json: JsonOption = False
) -> None:
    """Let a disabled rule match again."""
    outcome = helpers.run(lambda led: enable_rule(led, rule_id, helpers.context(actor), reason))
    _print(outcome, as_json, "enabled")


def rules_move(
    rule_id: RuleId,
    to: Annotated[int, typer.Option("--to", min=1, help="Its new place (1 is tried first).")],
    reason: ReasonOption,
    actor: ActorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Try a rule at another place in the order; the others keep theirs."""
    outcome = helpers.run(lambda led: move_rule(led, rule_id, to, helpers.context(actor), reason))
    _print(outcome, as_json, "moved")


def _print(outcome: dict[str, Any], as_json: bool, verb: str) -> None:
    helpers.show(outcome, as_json, lambda changed: _say_changed(changed, verb))


def _say_changed(outcome: dict[str, Any], verb: str) -> None:
    rule = outcome["rule"]
    what = verb if outcome["recorded"] else f"nothing to do: already {verb}"
    helpers.say(
        f"{what} rule {rule['rule_id']} v{rule['version']} ({escape(rule['name'])}), "
        f"tried {rule['order']}: {escape(describe_conditions(rule))} -> "
        f"{escape(describe_outcome(rule))}"
    )

"""Import rules over HTTP: list (staff who read), add, amend, disable, enable, move
(supervisors).

Thin: application.import_rules decides; this translates.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from api.deps import Reader, ServicesDep, Supervisor, json_response
from api.schemas import Reason
from application.import_rules import (
    add_rule,
    amend_rule,
    disable_rule,
    enable_rule,
    list_rules,
    move_rule,
)
from application.ledger import CommandContext
from domain.errors import InvalidImportRule
from domain.import_rules import (
    MAX_NARRATIVE_TEXT_LENGTH,
    MAX_PATTERN_LENGTH,
    MAX_REWRITE_LENGTH,
    MAX_RULE_NAME_LENGTH,
    MAX_RULES,
)
from domain.limits import MAX_TEXT_LENGTH
from domain.payment import Channel

router = APIRouter()
Pence = Annotated[int, Field(ge=0, le=2**53)]
RuleId = Annotated[str, Path(max_length=16, description="like R3")]


class RuleIn(BaseModel):
    name: str = Field(min_length=1, max_length=MAX_RULE_NAME_LENGTH)
    reference_pattern: str | None = Field(
        None,
        max_length=MAX_PATTERN_LENGTH,
        description="a regular expression the whole reference matches (capitals, no spaces); "
        "no back references, look-arounds, nested repeats, at most two open-ended repeats",
    )
    narrative_contains: str | None = Field(None, max_length=MAX_NARRATIVE_TEXT_LENGTH)
    min_amount_pence: Pence | None = None
    max_amount_pence: Pence | None = None
    channels: list[Channel] = Field([], max_length=len(Channel))
    fund_code: str | None = Field(None, max_length=16, description="send the money here...")
    strip_prefix: str | None = Field(None, max_length=MAX_REWRITE_LENGTH)
    rewrite_pattern: str | None = Field(None, max_length=MAX_PATTERN_LENGTH)
    rewrite_to: str | None = Field(None, max_length=MAX_REWRITE_LENGTH)
    suspense_reason: str | None = Field(
        None, max_length=MAX_TEXT_LENGTH, description="...or to suspense, saying this"
    )


class AddRuleIn(BaseModel):
    rule: RuleIn
    reason: Reason
    order: int | None = Field(None, ge=1, le=MAX_RULES, description="1 is tried first")


class RuleChangesIn(RuleIn):
    """The fields to change; a field left out keeps its value, null clears it."""

    name: str | None = Field(None, min_length=1, max_length=MAX_RULE_NAME_LENGTH)


class AmendRuleIn(BaseModel):
    changes: RuleChangesIn
    reason: Reason


class ChangeRuleIn(BaseModel):
    reason: Reason


class MoveRuleIn(BaseModel):
    order: int = Field(ge=1, le=MAX_RULES, description="its new place; 1 is tried first")
    reason: Reason


class RuleOut(RuleIn):
    rule_id: str
    order: int
    enabled: bool
    version: int
    channels: list[str]


class RulesOut(BaseModel):
    rulebook_version: int
    rules: list[RuleOut]


class RuleChangeOut(BaseModel):
    recorded: bool = Field(description="false when the rule already was as asked")
    position: int | None = Field(description="event position to pass as min_position")
    rulebook_version: int
    rule: RuleOut


@router.get("/import-rules", tags=["imports"], response_model=RulesOut)
def rules(svc: ServicesDep, user: Reader) -> Any:
    """The import rules in the order they are tried on each imported line (README, "A
    day's files"). Roles: officer, supervisor, auditor, reporting."""
    return list_rules(svc.ledger)


@router.post("/import-rules", tags=["imports"], status_code=201, response_model=RuleChangeOut)
def add(body: AddRuleIn, svc: ServicesDep, user: Supervisor) -> Any:
    """Add a rule (tried last unless `order` is given); its id (R1, R2, ...) is given here.
    Roles: supervisor."""
    rule = body.rule.model_dump() | {"channels": [c.value for c in body.rule.channels]}
    outcome = add_rule(svc.ledger, rule, CommandContext(user.actor), body.reason, body.order)
    return json_response(outcome, 201, outcome["position"])


@router.patch("/import-rules/{rule_id}", tags=["imports"], response_model=RuleChangeOut)
def amend(rule_id: RuleId, body: AmendRuleIn, svc: ServicesDep, user: Supervisor) -> Any:
    """Change a rule's conditions or outcome, keeping its id, place and history (its
    version rises). `changes` holds only the fields to change; a fund outcome replaces a
    suspense one and the other way round. Roles: supervisor."""
    changes = body.changes.model_dump(exclude_unset=True)
    if "channels" in changes:
        changes["channels"] = [c.value for c in body.changes.channels]
    if changes.get("name", "") is None:
        raise InvalidImportRule("a rule keeps a name: send a new one or leave it out")
    outcome = amend_rule(svc.ledger, rule_id, changes, CommandContext(user.actor), body.reason)
    return json_response(outcome, 200, outcome["position"])


@router.post("/import-rules/{rule_id}/disable", tags=["imports"], response_model=RuleChangeOut)
def disable(rule_id: RuleId, body: ChangeRuleIn, svc: ServicesDep, user: Supervisor) -> Any:
    """Stop a rule matching; it stays listed and in the history. Roles: supervisor."""
    outcome = disable_rule(svc.ledger, rule_id, CommandContext(user.actor), body.reason)
    return json_response(outcome, 200, outcome["position"])


@router.post("/import-rules/{rule_id}/enable", tags=["imports"], response_model=RuleChangeOut)
def enable(rule_id: RuleId, body: ChangeRuleIn, svc: ServicesDep, user: Supervisor) -> Any:
    """Let a disabled rule match again. Roles: supervisor."""
    outcome = enable_rule(svc.ledger, rule_id, CommandContext(user.actor), body.reason)
    return json_response(outcome, 200, outcome["position"])


@router.post("/import-rules/{rule_id}/move", tags=["imports"], response_model=RuleChangeOut)
def move(rule_id: RuleId, body: MoveRuleIn, svc: ServicesDep, user: Supervisor) -> Any:
    """Try a rule at another place in the order. Roles: supervisor."""
    outcome = move_rule(svc.ledger, rule_id, body.order, CommandContext(user.actor), body.reason)
    return json_response(outcome, 200, outcome["position"])

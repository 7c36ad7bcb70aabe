"""Bearer API keys and roles.

Keys are set by the deployment as `user:role:token` entries. The user becomes the actor
recorded on every event the request causes. Tokens are compared in constant time. A role
written `officer@PARKING+HOUSING` limits the user to those fund groups.
"""

from __future__ import annotations

import hmac
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum

from application.access import EVERY_FUND, FundAccess
from application.ledger import CommandContext
from domain.funds import FUND_GROUP
from domain.limits import MAX_ACTOR_LENGTH

MIN_TOKEN_LENGTH = 16


class Role(StrEnum):
    OFFICER = "officer"
    SUPERVISOR = "supervisor"
    AUDITOR = "auditor"
    REPORTING = "reporting"
    INTEGRATION = "integration"


ALL_ROLES = frozenset(Role)
STAFF = frozenset({Role.OFFICER, Role.SUPERVISOR})
READERS = frozenset({Role.OFFICER, Role.SUPERVISOR, Role.AUDITOR, Role.REPORTING})
AUDIT_READERS = frozenset({Role.OFFICER, Role.SUPERVISOR, Role.AUDITOR})
RECORDERS = frozenset({Role.OFFICER, Role.SUPERVISOR, Role.INTEGRATION})
SUPERVISORS = frozenset({Role.SUPERVISOR})


# Who may refund part of what a payment holds, unless LEDGER_PARTIAL_REFUND_ROLES says.
DEFAULT_PARTIAL_REFUND_ROLES = frozenset({Role.OFFICER, Role.SUPERVISOR})


@dataclass(frozen=True)
class ApiUser:
    name: str
    role: Role
    fund_groups: frozenset[str] | None = None
    partial_refunds: bool = True

    @property
    def actor(self) -> str:
        return f"{self.role.value}:{self.name}"

    @property
    def access(self) -> FundAccess:
        return EVERY_FUND if self.fund_groups is None else FundAccess(self.fund_groups)

    def context(self, idempotency_key: str | None = None) -> CommandContext:
        """The user as the application sees them: actor, limits and retry key."""
        return CommandContext(
            self.actor,
            idempotency_key=idempotency_key,
            access=self.access,
            partial_refunds=self.partial_refunds,
        )


class ApiKeys:
    def __init__(self, entries: dict[str, ApiUser]) -> None:
        self._entries = entries

    def __len__(self) -> int:
        return len(self._entries)

    def user_for(self, token: str) -> ApiUser | None:
        found = None
        for known, user in self._entries.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                found = user
        return found

    def known(self, name: str, role: Role) -> ApiUser | None:
        """The configured user of this name and role, with their current limits."""
        return next((u for u in self._entries.values() if (u.name, u.role) == (name, role)), None)

    @classmethod
    def parse(
        cls, text: str, partial_refund_roles: Collection[Role] = DEFAULT_PARTIAL_REFUND_ROLES
    ) -> ApiKeys:
        """Parse `user:role:token` entries separated by commas or new lines; the role may
        carry fund-group limits, `officer@PARKING+HOUSING`."""
        entries: dict[str, ApiUser] = {}
        raw = [part.strip() for line in text.splitlines() for part in line.split(",")]
        for number, entry in enumerate((e for e in raw if e and not e.startswith("#")), 1):
            parts = entry.split(":", 2)
            if len(parts) != 3 or not all(parts):
                raise ValueError(f"API key entry {number} is not user:role:token")
            user, role_and_groups, token = parts
            role, _, groups = role_and_groups.partition("@")
            fund_groups = _fund_groups(number, user, groups) if groups else None
            try:
                parsed_role = Role(role)
            except ValueError:
                roles = ", ".join(r.value for r in Role)
                raise ValueError(
                    f"API key entry {number} ({user}) has unknown role {role!r}; use one of {roles}"
                ) from None
            if len(token) < MIN_TOKEN_LENGTH:
                raise ValueError(
                    f"API key entry {number} ({user}): the token must be at "
                    f"least {MIN_TOKEN_LENGTH} characters"
                )
            if token in entries:
                raise ValueError(f"API key entry {number} ({user}) repeats another's token")
            entries[token] = ApiUser(
                user, parsed_role, fund_groups, parsed_role in partial_refund_roles
            )
            if len(entries[token].actor) > MAX_ACTOR_LENGTH:
                raise ValueError(
                    f"API key entry {number}: the user name is too long (role:user may be "
                    f"at most {MAX_ACTOR_LENGTH} characters)"
                )
        return cls(entries)


def _fund_groups(number: int, user: str, text: str) -> frozenset[str]:
    groups = frozenset(text.split("+"))
    bad = sorted(g for g in groups if not FUND_GROUP.match(g))
    if bad:
        raise ValueError(
            f"API key entry {number} ({user}): fund group {bad[0]!r} must be capital letters, "
            "digits or _, starting with a letter; write several as officer@PARKING+HOUSING"
        )
    return groups

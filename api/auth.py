"""Bearer API keys and roles.

Keys are set by the deployment as `user:role:token` entries. The user becomes the actor
recorded on every event the request causes. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from enum import StrEnum

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


@dataclass(frozen=True)
class ApiUser:
    name: str
    role: Role

    @property
    def actor(self) -> str:
        return f"{self.role.value}:{self.name}"


class ApiKeys:
    def __init__(self, entries: dict[str, ApiUser]) -> None:
        self._entries = entries

    def __len__(self) -> int:
        return len(self._entries)

    def users(self) -> set[ApiUser]:
        """Everyone with a key, to end web sessions of users whose key was removed."""
        return set(self._entries.values())

    def user_for(self, token: str) -> ApiUser | None:
        found = None
        for known, user in self._entries.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                found = user
        return found

    @classmethod
    def parse(cls, text: str) -> ApiKeys:
        """Parse `user:role:token` entries separated by commas or new lines."""
        entries: dict[str, ApiUser] = {}
        raw = [part.strip() for line in text.splitlines() for part in line.split(",")]
        for number, entry in enumerate((e for e in raw if e and not e.startswith("#")), 1):
            parts = entry.split(":", 2)
            if len(parts) != 3 or not all(parts):
                raise ValueError(f"API key entry {number} is not user:role:token")
            user, role, token = parts
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
            entries[token] = ApiUser(user, parsed_role)
            if len(entries[token].actor) > MAX_ACTOR_LENGTH:
                raise ValueError(
                    f"API key entry {number}: the user name is too long (role:user may be "
                    f"at most {MAX_ACTOR_LENGTH} characters)"
                )
        return cls(entries)

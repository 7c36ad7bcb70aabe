"""Idempotent aggregate commands, in one place instead of in every command.

A command run again with the same idempotency key and the same request (its fingerprint)
changes nothing; the same key with another request is refused. The events a command records
carry its key and fingerprint, which is how a later retry is recognised.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from domain.errors import IdempotencyKeyReused


def is_repeat_command(
    commands: dict[str, str], idempotency_key: str | None, fingerprint: str | None, record: str
) -> bool:
    """True when a record's `commands` (idempotency key -> fingerprint) hold this exact
    command; the same key with another request is refused."""
    if not idempotency_key or idempotency_key not in commands:
        return False
    if commands[idempotency_key] != (fingerprint or ""):
        raise IdempotencyKeyReused(
            f"idempotency key {idempotency_key!r} was already used for a different "
            f"request on this {record}; use a new key for a new request"
        )
    return True


@dataclass(frozen=True)
class CommandKey:
    """What tells a retried command from a new one."""

    idempotency_key: str | None = None
    fingerprint: str | None = None


NO_COMMAND = CommandKey()
# The command now running, for `record`; events recorded outside any command carry no key.
_running: ContextVar[CommandKey] = ContextVar("running_command", default=NO_COMMAND)


def running_command() -> CommandKey:
    """The key of the command now running (NO_COMMAND outside any)."""
    return _running.get()


class IdempotentCommands:
    """For an aggregate whose events record `idempotency_key` and `fingerprint`, and whose
    event `apply` keeps them in `commands` (key -> fingerprint)."""

    commands: dict[str, str]
    trigger_event: Callable[..., None]

    # What the refusal calls the aggregate ("payment", "cash-up").
    record_name = "record"

    def is_repeat(self, idempotency_key: str | None, fingerprint: str | None) -> bool:
        """True when this exact command was applied before; an altered one is refused."""
        return is_repeat_command(self.commands, idempotency_key, fingerprint, self.record_name)

    @contextmanager
    def running(self, key: CommandKey) -> Iterator[None]:
        """Events recorded inside carry this command's key."""
        token = _running.set(key)
        try:
            yield
        finally:
            _running.reset(token)

    def record(self, event_class: type, **fields: Any) -> None:
        """Trigger an event of the command now running (see `idempotent`)."""
        key = running_command()
        self.trigger_event(
            event_class,
            idempotency_key=key.idempotency_key,
            fingerprint=key.fingerprint,
            **fields,
        )


C = TypeVar("C", bound=Callable[..., Any])


def idempotent(on_repeat: Callable[[Any, str | None], Any] | None = None) -> Callable[[C], C]:
    """Make a command idempotent: it also takes the keyword arguments `idempotency_key` and
    `fingerprint`. A repeat returns `on_repeat(aggregate, key)` (default None) and records
    nothing; otherwise the command runs, and the events it records carry the key."""

    def decorate(command: C) -> C:
        @functools.wraps(command)
        def run(
            self: IdempotentCommands,
            *args: Any,
            idempotency_key: str | None = None,
            fingerprint: str | None = None,
            **kwargs: Any,
        ) -> Any:
            if self.is_repeat(idempotency_key, fingerprint):
                return None if on_repeat is None else on_repeat(self, idempotency_key)
            with self.running(CommandKey(idempotency_key, fingerprint)):
                return command(self, *args, **kwargs)

        return run  # type: ignore[return-value]

    return decorate

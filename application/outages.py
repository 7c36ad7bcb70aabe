"""A database that cannot be reached, and what the caller can know about what was saved.

A lost connection before the commit means nothing was saved: the database rolls back a
transaction whose connection goes away. A lost connection during the commit is different:
the database may have committed just before the connection broke, and nobody on this side
can tell. Saying "nothing was saved" then would be a guess, and once it was wrong (a 500 that
claimed so had recorded the payment).

What a failure was (lost, timed out, a clash) is told apart in runtime.database_errors, which
projections use too; its names are imported here for the callers of this module.
"""

from __future__ import annotations

from runtime.database_errors import DATABASE_UNAVAILABLE_ERRORS, Delay, delay_of

__all__ = ["DATABASE_UNAVAILABLE_ERRORS", "DatabaseUnavailable", "Delay", "delay_of"]


class DatabaseUnavailable(Exception):
    """The database failed under a command; `saved_unknown` when it failed while committing.

    `delay` when it did not fail but gave the command up (see `Delay`): it answered, and
    rolled the transaction back, so nothing was saved."""

    def __init__(self, saved_unknown: bool, delay: Delay | None = None) -> None:
        if delay is not None:
            saved_unknown = False
            message = f"the database gave the command up ({delay.value}); nothing was saved"
        elif saved_unknown:
            message = "the database connection failed while committing"
        else:
            message = "the database could not be reached; nothing was saved"
        super().__init__(message)
        self.saved_unknown, self.delay = saved_unknown, delay

    @classmethod
    def of(cls, error: BaseException, committing: bool) -> DatabaseUnavailable:
        """The failure `error`, raised before the commit, or during it when `committing`."""
        return cls(saved_unknown=committing, delay=delay_of(error))

    @property
    def conflict(self) -> bool:
        """True when the database rolled the command back to settle a clash with another
        transaction (a deadlock, a serialization failure): nothing was saved, and the same
        command again very likely succeeds."""
        return self.delay is Delay.CONFLICT

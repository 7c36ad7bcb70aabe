"""A form the database rolls back twice to settle a clash with another transaction (a real
deadlock, tests/api/test_database_conflicts) is a page saying so and to send it again, not
one saying the database cannot be reached."""

from __future__ import annotations

import pytest

from tests.api.test_database_conflicts import deadlocked
from tests.web.test_pages_http import allocation_form, signed_in


def test_a_deadlock_that_comes_back_is_a_page_saying_try_again(
    web_url, in_suspense, ledger, database_url
) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite has one writer at a time: no deadlock, its waits are database_busy")
    client = signed_in(web_url, "officer")
    path, fields = allocation_form(client, in_suspense)
    with deadlocked(database_url, ledger, rounds=2) as failures:
        sent = client.post(path, data=fields)
    assert not failures, failures
    assert sent.status_code == 503 and "Try again" in sent.text
    assert "at the same moment" in sent.text and "nothing was saved" in sent.text
    assert "cannot be reached" not in sent.text and "took too long" not in sent.text
    assert client.post(path, data=fields).status_code in (200, 303)
    assert sum(type(e).__name__ == "Allocated" for _, e in ledger.read_events()) == 1

"""A statement the database gives up (a timeout, a lock wait) is a page saying so, not one
saying the database cannot be reached; the waits are real (tests/api/test_database_timeouts)."""

from __future__ import annotations

from tests.api.test_database_timeouts import (  # noqa: F401
    everything_locked,
    limit,
    settings,
)
from tests.web.test_pages_http import allocation_form, signed_in


def test_a_statement_the_database_gives_up_is_a_page_saying_so(
    web_url,
    in_suspense,
    ledger,
    database_url,
    limit,  # noqa: F811
) -> None:
    client = signed_in(web_url, "officer")
    path, fields = allocation_form(client, in_suspense)
    with everything_locked(database_url):
        sent = client.post(path, data=fields)
    assert sent.status_code == 503 and "Try again shortly" in sent.text
    assert "took too long" in sent.text and "cannot be reached" not in sent.text
    assert ("ask for less" in sent.text) == (limit == "statement_timeout")

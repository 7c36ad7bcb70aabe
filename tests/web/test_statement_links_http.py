"""A statement line's late link undone and linked again on the page of its import, over
plain HTTP (no JavaScript), on both backends: the reason required, a refusal shown on the
page with nothing stored, a double submit undone once, and the roles the API allows."""

from __future__ import annotations

from datetime import date, timedelta
from uuid import UUID

import pytest

from application.imports import get_import, import_file
from application.ledger import CommandContext
from application.reconciliation import exceptions, unlink_line
from domain import errors
from tests.application.test_files_together import (
    FRIDAY,
    SATURDAY,
    SUNDAY,
    monday,
    weekend,
    weekend_file,
)
from tests.application.test_imports import allpay_file, allpay_line
from tests.application.test_statement_imports import camt, entry
from tests.domain.helpers import CT_REF
from tests.web.test_pages_http import hidden, signed_in
from web import pages_imports

UNLINK_FIELD = "unlink_reason_1"


def unlink_form(client, batch_id: str) -> dict[str, str]:
    page = client.get(f"/web/imports/{batch_id}")
    assert page.status_code == 200 and "Undo the link" in page.text
    action = f'action="/web/imports/{batch_id}/lines/1/unlink"'
    form = page.text[page.text.index(action) :]
    return {name: hidden(form, name) for name in ("csrf_token", "idempotency_key")}


def test_an_officer_undoes_a_link_once_and_links_it_again(web_url, late_linked, ledger):
    client = signed_in(web_url, "officer")
    path = f"/web/imports/{late_linked}/lines/1/unlink"
    fields = unlink_form(client, late_linked)
    before = ledger.max_position()
    no_reason = client.post(path, data=fields | {UNLINK_FIELD: " "})
    assert no_reason.status_code == 422 and 'id="unlink_reason_1-error"' in no_reason.text
    assert "There is a problem" in no_reason.text and ledger.max_position() == before

    good = fields | {UNLINK_FIELD: "a payer's own transfer"}
    first = client.post(path, data=good)
    again = client.post(path, data=good)  # a double submit: undone once
    assert first.status_code == again.status_code == 303
    assert first.headers["location"] == f"/web/imports/{late_linked}?done=unlinked&line=1"
    page = client.get(first.headers["location"])
    assert "The link of line 1 was undone" in page.text and "Link undone" in page.text
    assert "Undo the link" not in page.text and "Link again" in page.text
    (line,) = get_import(ledger, late_linked)["lines"]
    assert line["late_link"] is None and len(line["undone_links"]) == 1
    assert [row["line"] for row in exceptions(ledger)["unmatched_statement_lines"]] == [1]

    # Another person's form, opened before the undo: refused on the page, nothing stored.
    after = ledger.max_position()
    late = client.post(path, data=good | {"idempotency_key": "another-form-0001"})
    assert late.status_code == 422 and "its link was undone already" in late.text
    assert "Nothing was changed." in late.text and ledger.max_position() == after

    relink_page = client.get(f"/web/imports/{late_linked}")
    relink = f"/web/imports/{late_linked}/lines/1/link"
    form = relink_page.text[relink_page.text.index(f'action="{relink}"') :]
    fields = {name: hidden(form, name) for name in ("csrf_token", "idempotency_key")}
    linked = client.post(relink, data=fields)
    assert linked.headers["location"].endswith("?done=linked&line=1")
    assert "Line 1 was linked again" in client.get(linked.headers["location"]).text
    assert get_import(ledger, late_linked)["lines"][0]["late_link"] is not None


@pytest.mark.parametrize("who", ["auditor", "reporting"])
def test_readers_see_no_undo_and_may_not_post_it(web_url, late_linked, ledger, who):
    officer = signed_in(web_url, "officer")
    fields = unlink_form(officer, late_linked) | {UNLINK_FIELD: "x"}
    reader = signed_in(web_url, who)
    page = reader.get(f"/web/imports/{late_linked}")
    assert page.status_code == 200 and "Pays in the total of import" in page.text
    assert "Undo the link" not in page.text
    csrf = hidden(page.text, "csrf_token")
    path = f"/web/imports/{late_linked}/lines/1/unlink"
    assert reader.post(path, data=fields | {"csrf_token": csrf}).status_code == 403
    assert officer.post(path, data=fields | {"csrf_token": "forged"}).status_code == 403
    assert get_import(ledger, late_linked)["lines"][0]["late_link"] is not None


def test_two_people_at_once_is_shown_on_the_page_with_nothing_stored(
    web_url, late_linked, ledger, monkeypatch
):
    def collided(*_args, **_kwargs):
        raise errors.ConcurrentUpdate(
            "the statement or a receipt it links changed at the same moment; nothing was "
            "undone. Retry"
        )

    monkeypatch.setattr(pages_imports, "unlink_line", collided)
    client = signed_in(web_url, "supervisor")
    before = ledger.max_position()
    fields = unlink_form(client, late_linked) | {UNLINK_FIELD: "a payer's own transfer"}
    answer = client.post(f"/web/imports/{late_linked}/lines/1/unlink", data=fields)
    assert answer.status_code == 422 and "changed at the same moment" in answer.text
    assert "Nothing was changed." in answer.text and "<details class" in answer.text
    assert f'value="{fields["idempotency_key"]}"' in answer.text  # the same form, sent again
    assert ledger.max_position() == before


def test_a_line_linked_at_import_offers_no_undo(web_url, ledger):
    ctx = CommandContext("officer:importer")
    import_file(ledger, allpay_file(allpay_line(CT_REF, "5.00")), ctx, file_name="be.txt")
    statement = camt(entry("5.00", ref="B0", text="ALLPAY LTD"))
    batch_id = import_file(ledger, statement, ctx, file_name="stmt.xml").batch_id
    page = signed_in(web_url, "officer").get(f"/web/imports/{batch_id}")
    assert "linked at import: only reversing the whole import undoes it" in page.text
    assert "Undo the link" not in page.text and "Link again" not in page.text


@pytest.mark.parametrize("line", ["0", "100001", "2", "x1"])
@pytest.mark.parametrize("action", ["unlink", "link"])
def test_a_hand_typed_line_the_import_lacks_answers_a_page(
    web_url, late_linked, ledger, line, action
):
    """Out of range, not a money line of the import, or no number: the import's page
    saying so, not FastAPI's JSON, and nothing stored."""
    client = signed_in(web_url, "officer")
    fields = unlink_form(client, late_linked) | {UNLINK_FIELD: "a payer's own transfer"}
    before = ledger.max_position()
    answer = client.post(f"/web/imports/{late_linked}/lines/{line}/{action}", data=fields)
    assert answer.status_code == 422 and answer.headers["content-type"].startswith("text/html")
    assert f"This import has no money line {line}" in answer.text
    assert "Nothing was changed." in answer.text and "There is a problem" in answer.text
    assert ledger.max_position() == before


def choose_form(client, batch_id: str) -> tuple[str, dict[str, str]]:
    page = client.get(f"/web/imports/{batch_id}")
    assert page.status_code == 200 and "Needs a person" in page.text
    action = f'action="/web/imports/{batch_id}/lines/1/choose"'
    form = page.text[page.text.index(action) :]
    return page.text, {name: hidden(form, name) for name in ("csrf_token", "idempotency_key")}


def test_an_officer_chooses_what_a_line_with_two_candidates_pays_in(
    web_url, two_candidates, ledger
):
    batch_id, files = two_candidates
    client = signed_in(web_url, "officer")
    text, fields = choose_form(client, batch_id)
    (line,) = get_import(ledger, batch_id)["lines"]
    keys = [c["candidate"] for c in line["candidates"]]
    assert all(f'value="{key}"' in text for key in keys)
    assert "Link again" not in text
    path = f"/web/imports/{batch_id}/lines/1/choose"
    before = ledger.max_position()
    empty = client.post(path, data=fields)
    assert empty.status_code == 422 and 'id="choice_1-error"' in empty.text
    assert 'id="choose_reason_1-error"' in empty.text and ledger.max_position() == before
    wrong = client.post(path, data=fields | {"choice_1": "nope", "choose_reason_1": "r"})
    assert wrong.status_code == 422 and "is not among what line 1" in wrong.text
    assert "Nothing was changed." in wrong.text and ledger.max_position() == before

    chosen = next(c for c in line["candidates"] if c["matched_batch_id"] == files[1])
    good = fields | {"choice_1": chosen["candidate"], "choose_reason_1": "remittance: be2"}
    first = client.post(path, data=good)
    again = client.post(path, data=good)  # a double submit: linked once
    assert first.status_code == again.status_code == 303
    assert first.headers["location"] == f"/web/imports/{batch_id}?done=chosen&line=1"
    page = client.get(first.headers["location"])
    assert "Line 1 was linked to the record chosen" in page.text and "Undo the link" in page.text
    (line,) = get_import(ledger, batch_id)["lines"]
    assert line["late_link"]["matched_batch_id"] == files[1] and line["candidates"] == []
    assert exceptions(ledger)["unmatched_statement_lines"] == []


@pytest.mark.parametrize("who", ["auditor", "reporting"])
def test_readers_see_the_candidates_but_no_choice(web_url, two_candidates, ledger, who):
    batch_id, _ = two_candidates
    officer = signed_in(web_url, "officer")
    _, fields = choose_form(officer, batch_id)
    reader = signed_in(web_url, who)
    page = reader.get(f"/web/imports/{batch_id}")
    assert "Needs a person" in page.text and "Choose what it pays in" not in page.text
    path = f"/web/imports/{batch_id}/lines/1/choose"
    (line,) = get_import(ledger, batch_id)["lines"]
    data = fields | {"choice_1": line["candidates"][0]["candidate"], "choose_reason_1": "x"}
    csrf = hidden(page.text, "csrf_token")
    assert reader.post(path, data=data | {"csrf_token": csrf}).status_code == 403
    assert officer.post(path, data=data | {"csrf_token": "forged"}).status_code == 403
    assert get_import(ledger, batch_id)["lines"][0]["late_link"] is None


def test_the_candidates_days_read_as_uk_dates(web_url, two_candidates, ledger):
    batch_id, _ = two_candidates
    page = signed_in(web_url, "auditor").get(f"/web/imports/{batch_id}")
    (line,) = get_import(ledger, batch_id)["lines"]
    for candidate in line["candidates"]:
        (day,) = candidate["days"]
        assert f"; {date.fromisoformat(day):%-d %b %Y}; receipt" in page.text
        assert f"; {day}; receipt" not in page.text


@pytest.mark.parametrize("address", ["not-an-id", "9ff8e10d-9559", "1" * 80])
def test_a_hand_typed_import_address_that_names_no_import_answers_a_page(
    web_url, late_linked, ledger, address
):
    """Not an import's id: the page's own 404 saying what to do, not FastAPI's JSON 422,
    for the import's page and each of its forms; nothing stored."""
    client = signed_in(web_url, "officer")
    page = client.get(f"/web/imports/{address}")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "there is no import" in page.text and "/web/imports/9ff8e10d-" in page.text
    fields = unlink_form(client, late_linked) | {UNLINK_FIELD: "a payer's own transfer"}
    before = ledger.max_position()
    for action in ("unlink", "link", "choose"):
        answer = client.post(f"/web/imports/{address}/lines/1/{action}", data=fields)
        assert answer.status_code == 404, (action, answer.text)
        assert answer.headers["content-type"].startswith("text/html")
        assert "there is no import" in answer.text
    assert ledger.max_position() == before


def test_an_officer_may_choose_a_channels_day_beside_two_receipts_of_the_amount(web_url, ledger):
    """Rule 1 finds two receipts of 11.50, rule 3 a channel's day adding up to it: the page
    offers all three, and the day may be chosen."""
    from tests.application.test_statement_imports import YESTERDAY, govuk_pay

    earlier = YESTERDAY - timedelta(days=2)
    singles = [
        govuk_pay(ledger, 1_150, day, f"one-{day}", "cheque") for day in (YESTERDAY, earlier)
    ]
    day = sorted(govuk_pay(ledger, p, earlier, f"c-{p}", "card") for p in (500, 650))
    ctx = CommandContext("officer:importer")
    statement = camt(entry("11.50", ref="B1", text="COUNTER BANKING"))
    batch_id = str(import_file(ledger, statement, ctx, file_name="stmt.xml").batch_id)
    client = signed_in(web_url, "officer")
    text, fields = choose_form(client, batch_id)
    (line,) = get_import(ledger, batch_id)["lines"]
    named = [c["payment_id"] for c in line["candidates"]]
    assert named == [*singles, day[0]]
    assert all(f'value="{c["candidate"]}"' in text for c in line["candidates"])
    assert f"the card receipts of {earlier}" in text
    chosen = line["candidates"][2]["candidate"]
    good = fields | {"choice_1": chosen, "choose_reason_1": "the paying-in slip lists both"}
    answer = client.post(f"/web/imports/{batch_id}/lines/1/choose", data=good)
    assert answer.status_code == 303
    (line,) = get_import(ledger, batch_id)["lines"]
    assert line["late_link"]["rule"] == "channel_day_total"
    assert line["late_link"]["matched_payment_ids"] == day


def test_an_officer_chooses_on_line_1_which_line_a_split_payout_goes_with(web_url, ledger):
    """Lines of 50.00, 49.80 and 49.80 of different narratives and one payout of 99.80: line
    1 may be split with line 2 or line 3. Its page offers both, each a radio of its own (the
    other line's own receipt), and choosing the split with line 3 links lines 1 and 3."""
    from tests.application.test_card_payouts import pay, send

    send(ledger, pay("card_payment_captured", "pay-1", fee=20))
    content = camt(
        entry("50.00", ref="P1", text="GOVUK PAY 4471 1/2"),
        entry("49.80", ref="P2", text="GOVUK PAY 4471 2/2"),
        entry("49.80", ref="P3", text="GOVUK PAY 9902"),
    )
    ctx = CommandContext("officer:importer")
    batch_id = str(import_file(ledger, content, ctx, file_name="stmt.xml").batch_id)
    lines = get_import(ledger, batch_id)["lines"]
    own = [line["payment_id"] for line in lines]
    keys = [c["candidate"] for c in lines[0]["candidates"]]
    client = signed_in(web_url, "officer")
    text, fields = choose_form(client, batch_id)
    form = text[text.index(f'action="/web/imports/{batch_id}/lines/1/choose"') :]
    form = form[: form.index("</form>")]
    assert f'value="{keys[0]}"' in form and f'value="{keys[1]}"' in form
    said = f"(lines 1, 3) (govuk_pay; receipt {own[2]}, its other line's own; candidate {keys[1]})"
    assert said in form
    good = fields | {"choice_1": keys[1], "choose_reason_1": "Pay's report: 9902"}
    answer = client.post(f"/web/imports/{batch_id}/lines/1/choose", data=good)
    assert answer.status_code == 303, answer.text
    lines = get_import(ledger, batch_id)["lines"]
    assert [(line["late_link"] or {}).get("rule") for line in lines] == [
        "card_payout",
        None,
        "card_payout_part",
    ]


def test_link_again_of_a_line_that_now_needs_a_choice_shows_why_and_the_choice(
    web_url, late_linked, ledger
):
    """The "Link again" form of a page opened before a second file of the line's total
    arrived: the run is refused (line_needs_a_choice), the page says why beside the line,
    with the form to choose now shown, and nothing is stored."""
    ctx = CommandContext("officer:importer")
    unlink_line(ledger, UUID(late_linked), 1, ctx, "a payer's own transfer")
    client = signed_in(web_url, "officer")
    page = client.get(f"/web/imports/{late_linked}")
    relink = f"/web/imports/{late_linked}/lines/1/link"
    form = page.text[page.text.index(f'action="{relink}"') :]
    fields = {name: hidden(form, name) for name in ("csrf_token", "idempotency_key")}
    second = allpay_file(allpay_line(CT_REF, "2.00"), allpay_line(CT_REF, "5.00"))
    import_file(ledger, second, ctx, file_name="be2.txt")
    before = ledger.max_position()
    answer = client.post(relink, data=fields)
    assert answer.status_code == 422 and answer.headers["content-type"].startswith("text/html")
    assert "may pay in more than one record" in answer.text
    assert "Nothing was changed." in answer.text and "There is a problem" in answer.text
    assert "Choose what it pays in" in answer.text and "Needs a person" in answer.text
    assert ledger.max_position() == before
    assert get_import(ledger, late_linked)["lines"][0]["late_link"] is None


def test_files_together_are_named_by_their_file_names_on_the_page(web_url, ledger):
    # Their words name the files by import id (short enough for the link's reasons): the
    # page names them by file name too, in the list and in the choice's labels.
    weekend(ledger)
    statement = monday(ledger)
    page = signed_in(web_url, "officer").get(f"/web/imports/{statement}")
    (candidate,) = get_import(ledger, statement)["lines"][0]["candidates"]
    names = ", ".join(file["file_name"] for file in candidate["files"])
    assert page.status_code == 200 and page.text.count(f"files {names}; receipt") == 2


def test_an_officer_chooses_one_of_three_pairs_of_files_on_the_page(web_url, ledger):
    """Three files of 5.00 on three days and a line of 10.00: three pairs, each receipt in
    two of them. Each pair is a radio of its own (its candidate key), naming its receipts,
    and the one chosen is linked."""
    files = [weekend_file(ledger, day, "5.00") for day in (FRIDAY, SATURDAY, SUNDAY)]
    statement = str(monday(ledger, "10.00"))
    client = signed_in(web_url, "officer")
    text, fields = choose_form(client, statement)
    (line,) = get_import(ledger, statement)["lines"]
    form = text[text.index(f'action="/web/imports/{statement}/lines/1/choose"') :]
    form = form[: form.index("</form>")]
    for candidate in line["candidates"]:
        assert f'value="{candidate["candidate"]}"' in form
        assert f"receipts {', '.join(candidate['payment_ids'])}; candidate" in form
    chosen = line["candidates"][1]  # Friday's and Sunday's
    good = fields | {"choice_1": chosen["candidate"], "choose_reason_1": "remittance: Fri+Sun"}
    answer = client.post(f"/web/imports/{statement}/lines/1/choose", data=good)
    assert answer.status_code == 303, answer.text
    (line,) = get_import(ledger, statement)["lines"]
    assert line["late_link"]["matched_batch_ids"] == [str(files[0]), str(files[2])]


def test_the_import_page_says_why_a_line_went_to_suspense(web_url, ledger) -> None:
    content = allpay_file(allpay_line(CT_REF, "5.00"), allpay_line("NOSUCHREF", "1.00", "Z"))
    ctx = CommandContext("officer:importer")
    batch_id = import_file(ledger, content, ctx, file_name="be.txt").batch_id
    page = signed_in(web_url, "officer").get(f"/web/imports/{batch_id}")
    assert page.status_code == 200
    row = page.text.split('id="line-2"', 1)[1].split("</tr>", 1)[0]
    assert "suspense (no matching fund)" in row, row

"""A statement credit line whose narrative names a payment provider (a GOV.UK Pay payout, an
Allpay settlement) is the provider's money, never a payer's own transfer, even when its
reference (a payout number) passes a fund's reference rule: it pays in the provider's
receipts, or waits in suspense on the exceptions report; on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from uuid import UUID

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from application.imports import PROVIDER_HOLD, _command, get_import, import_file
from application.ledger import CommandContext, fund_match
from application.reconciliation import exceptions, link_counted_twice
from domain.errors import LedgerError
from domain.import_rules import ImportRulebook
from domain.imports import ImportLine, LineKind
from domain.payment import Channel
from domain.statements import (
    COLLECTOR_NARRATIVES,
    COMPANY_SUFFIXES,
    PAYOUT_NARRATIVES,
    ProviderNames,
    names_provider_words,
    payout_patterns,
)
from income_ledger.settings import Settings
from tests.application.test_card_payouts import balances, pay, send
from tests.application.test_imports import allpay_file, allpay_line
from tests.application.test_statement_imports import camt, entry
from tests.domain.helpers import CT_REF, chart

OFFICER = CommandContext("officer:importer")
# Nine digits, as a payout number: business rates' (NNDR) modulus 10 check digit passes.
PAYOUT_NUMBER = "448712305"
# One digit on: the check digit is off, a payer's account mistyped as far as the funds see.
PAYOUT_NUMBER_2 = "448712306"


def test_the_payout_numbers_pass_or_nearly_pass_a_funds_rule() -> None:
    assert chart().match(PAYOUT_NUMBER, None).fund_code == "NNDR"
    assert chart().match(PAYOUT_NUMBER_2, None).suspense_reason == "invalid_check_digit"


PROVIDERS = ProviderNames.of(PAYOUT_NARRATIVES, COLLECTOR_NARRATIVES)
CHART = chart()


def _line(reference: str, narrative: str) -> ImportLine:
    return ImportLine(
        1,
        LineKind.RECEIPT,
        Channel.BANK_TRANSFER,
        1_000,
        reference,
        datetime(2026, 11, 30, 12, tzinfo=UTC),
        details={"narrative": narrative},
    )


@given(
    number=st.integers(0, 10**9 - 1),
    provider=st.sampled_from(
        [
            "GOVUK PAY",
            "GOV.UK Pay Ltd",
            "ALLPAY LTD",
            "PayPoint plc",
            "ALLPAYLTD",
            "ALLPAY.LTD",
            "PAYPOINTPLC",
            "PayzoneUK Ltd",
            "ALL PAYLIMITED",
        ]
    ),
    around=st.tuples(st.sampled_from(["", "REF ", "12 "]), st.sampled_from(["", " 1/2", " X"])),
)
def test_a_line_naming_a_provider_is_held_whatever_its_reference(number, provider, around):
    """Whatever reference a provider's line quotes (a 9-digit payout number passes business
    rates' check one time in ten), its receipt is held in suspense, in no fund; the same
    reference under a payer's narrative goes where the funds' rules send it."""
    reference = f"{number:09d}"
    rules = ImportRulebook(actor="test").decider()
    narrative = around[0] + provider + around[1]
    held = _command(_line(reference, narrative), "0" * 64, rules, PROVIDERS)
    assert held.hold_in_suspense is PROVIDER_HOLD
    assert fund_match(held, CHART).fund_code is None
    payers = _command(_line(reference, "J SMITH"), "0" * 64, rules, PROVIDERS)
    assert payers.hold_in_suspense is None
    assert fund_match(payers, CHART) == CHART.match(reference, None)


def _card_day(ledger) -> None:
    """Two GOV.UK Pay payments settled yesterday: a payout of £149.50 net of fees."""
    send(ledger, pay("card_payment_captured", "pay-1", fee=20))
    send(ledger, pay("card_payment_captured", "pay-2", amount=5_000, fee=30))


def test_a_govuk_pay_payout_whose_number_passes_a_funds_rule_pays_in_its_payments(ledger):
    _card_day(ledger)
    statement = camt(entry("149.50", ref="B1", text=PAYOUT_NUMBER, info="GOVUK PAY LTD"))
    outcome = import_file(ledger, statement, OFFICER, file_name="s.xml")
    (line,) = get_import(ledger, outcome.batch_id)["lines"]
    assert (line["outcome"], line["rule"]) == ("reconciled", "card_payout"), line
    assert outcome.batch["receipts_count"] == 0, "no second receipt of the payout"
    totals = balances(ledger)
    assert totals["bank"] == 14_950 and "clearing" not in totals
    assert not any(role.startswith("fund") for role in totals), totals
    report = exceptions(ledger)
    assert report["unsettled_card_payments"] == report["unmatched_statement_lines"] == []


def test_an_allpay_settlement_whose_reference_nearly_passes_pays_in_the_file(ledger):
    allpay = import_file(
        ledger,
        allpay_file(allpay_line(CT_REF, "3.00"), allpay_line(CT_REF, "4.00")),
        OFFICER,
        file_name="be.txt",
    )
    statement = camt(entry("7.00", ref="B1", text=PAYOUT_NUMBER_2, info="ALLPAY LTD"))
    outcome = import_file(ledger, statement, OFFICER, file_name="s.xml")
    (line,) = get_import(ledger, outcome.batch_id)["lines"]
    assert (line["outcome"], line["rule"]) == ("reconciled", "import_total"), line
    assert line["matched_batch_id"] == str(allpay.batch_id)
    report = exceptions(ledger)
    assert report["unmatched_receipts"] == report["unmatched_statement_lines"] == []


def test_a_providers_line_matching_nothing_waits_in_suspense_and_is_linked_later(ledger):
    """A payout imported before its payments: no fund takes it by its payout number; it waits
    in suspense, on the exceptions report, and the payments recorded later are paid in by it
    (its own receipt reversed as counted twice): the money is counted once."""
    statement = camt(entry("149.50", ref="B1", text=PAYOUT_NUMBER, info="GOV.UK PAY"))
    outcome = import_file(ledger, statement, OFFICER, file_name="s.xml")
    (line,) = get_import(ledger, outcome.batch_id)["lines"]
    assert (line["outcome"], line["status"]) == ("recorded", "suspense"), line
    receipt = ledger.get_payment(UUID(line["payment_id"]))
    assert receipt["suspense_reason"] == "provider_payout"
    assert receipt["reference"] == PAYOUT_NUMBER
    (row,) = exceptions(ledger)["unmatched_statement_lines"]
    assert (row["line"], row["amount_pence"]) == (1, 14_950)

    _card_day(ledger)
    (late,) = link_counted_twice(ledger, OFFICER)
    assert (late.line, late.link.rule) == (1, "card_payout")
    totals = balances(ledger)
    assert totals["bank"] == 14_950 and "clearing" not in totals and "suspense" not in totals
    report = exceptions(ledger)
    assert report["unsettled_card_payments"] == report["unmatched_statement_lines"] == []


def test_a_payers_own_transfer_is_still_allocated_by_its_reference(ledger):
    """The payer's name as narrative (no provider's): the payer's own transfer, allocated to
    the fund its reference passes, never linked, no exception; the card payments it has the
    amount of wait for their own payout."""
    _card_day(ledger)
    statement = camt(
        entry("149.50", ref="B1", text=PAYOUT_NUMBER, info="J SMITH RATES"),
        entry("10.00", ref="B2", text=CT_REF),
    )
    outcome = import_file(ledger, statement, OFFICER, file_name="s.xml")
    lines = get_import(ledger, outcome.batch_id)["lines"]
    assert [(line["outcome"], line["status"]) for line in lines] == [
        ("recorded", "allocated"),
        ("recorded", "allocated"),
    ]
    assert [line["fund_code"] for line in lines] == ["NNDR", "CT"]
    report = exceptions(ledger)
    assert report["unmatched_statement_lines"] == []
    assert len(report["unsettled_card_payments"]) == 2


# A payer's own narrative whose letters, run together, hold a provider's name in the middle of
# a word: "HALL PAYMENT" holds ALLPAY, "PAYPOINTER" is no PayPoint line only if names start
# at a word's start (the bank prints a provider's name as its own word or words).
PAYERS_NARRATIVES = [
    "MRS A HALL PAYMENT",
    "SMALL PAYMENT",
    "NNDR INSTALL PAYMENT",
    "J MARSHALL PAYNE",
    "GOVERNMENT OF SKIPAYPOINT",
    # A collector's name is a whole word or words: these only start with one.
    "ALL PAYMENTS TO DATE",
    "PAYPOINTER J",
    "ALLPAYNE S",
]


@given(narrative=st.sampled_from(PAYERS_NARRATIVES), number=st.integers(0, 10**9 - 1))
def test_a_provider_name_inside_a_payers_word_names_no_provider(narrative, number):
    reference = f"{number:09d}"
    rules = ImportRulebook(actor="test").decider()
    command = _command(_line(reference, narrative), "0" * 64, rules, PROVIDERS)
    assert command.hold_in_suspense is None, narrative
    assert fund_match(command, CHART) == CHART.match(reference, None)


def test_a_payers_transfer_saying_hall_payment_is_allocated_by_its_reference(ledger):
    """ "MRS A HALL PAYMENT" runs together to ...HALLPAYMENT, which holds ALLPAY: still the
    payer's own transfer, allocated to the fund its reference passes, no exception."""
    statement = camt(entry("149.50", ref="B1", text=PAYOUT_NUMBER, info="MRS A HALL PAYMENT"))
    outcome = import_file(ledger, statement, OFFICER, file_name="s.xml")
    (line,) = get_import(ledger, outcome.batch_id)["lines"]
    assert (line["outcome"], line["status"], line["fund_code"]) == (
        "recorded",
        "allocated",
        "NNDR",
    ), line
    assert exceptions(ledger)["unmatched_statement_lines"] == []


def test_a_payers_transfer_saying_all_payments_is_allocated_by_its_reference(ledger):
    """ "ALL PAYMENTS TO DATE" starts with the letters ALLPAY at a word's start, but Allpay's
    name is a word of its own ("ALLPAY LTD", "ALL PAY"): the payer's own transfer."""
    statement = camt(entry("149.50", ref="B1", text=PAYOUT_NUMBER, info="ALL PAYMENTS TO DATE"))
    outcome = import_file(ledger, statement, OFFICER, file_name="s.xml")
    (line,) = get_import(ledger, outcome.batch_id)["lines"]
    assert (line["status"], line["fund_code"]) == ("allocated", "NNDR"), line
    assert exceptions(ledger)["unmatched_statement_lines"] == []


COLLECTOR_LETTERS = payout_patterns(COLLECTOR_NARRATIVES)


@given(
    collector=st.sampled_from(COLLECTOR_NARRATIVES),
    suffixes=st.lists(st.sampled_from(COMPANY_SUFFIXES), max_size=2),
    joiner=st.sampled_from(["", " ", ".", "-"]),
    before=st.sampled_from(["", "BGC ", "REF 12 ", "FROM "]),
    after=st.sampled_from(["", " 448712305", " SETTLEMENT", "/1"]),
    case=st.sampled_from([str.upper, str.lower, str.title]),
)
def test_a_collectors_name_with_company_suffixes_names_it(
    collector, suffixes, joiner, before, after, case
):
    """A collector's name followed by up to two company suffixes, run together or not
    ("ALLPAYLTD", "PAYPOINT.PLC", "PAYZONEUKLTD"), names the collector, wherever it stands
    in the narrative, in any case."""
    narrative = case(before + collector + joiner + joiner.join(suffixes) + after)
    assert PROVIDERS.named_in(narrative), narrative


# What a narrative may hold around a collector's name: a payer's words, and after it pieces
# of company suffixes and of other words, run together with it or not.
BEFORE = ["HALL", "BGC", "ALL", "123", "PAY", "SM"]
NAMES = ["ALLPAY", "ALL PAY", "PAYPOINT", "PAY POINT", "PAYZONE", "ALLPAYPOINT"]
AFTER = ["LTD", "UK", "PLC", "LIMITED", "L", "TD", "MENTS", "ER", "9"]


@settings(max_examples=1_000)
@example(before=[], name="ALLPAY", joiner="", tail=[("L", " "), ("TD", "")])
@example(before=["HALL"], name="PAYPOINT", joiner=" ", tail=[("UK", ""), ("LTD", "")])
@given(
    before=st.lists(st.sampled_from(BEFORE), max_size=2),
    name=st.sampled_from(NAMES),
    joiner=st.sampled_from(["", " ", "."]),
    tail=st.lists(st.tuples(st.sampled_from(AFTER), st.sampled_from(["", " "])), max_size=3),
)
def test_a_name_counts_only_when_its_word_ends_or_only_suffixes_follow(before, name, joiner, tail):
    """The rule, against a model of it: a collector's letters start a word, and what
    follows them in their word (the letters up to the next non-letter) is empty or company
    suffixes alone (at most two)."""
    narrative = " ".join(before) + joiner + name
    narrative += "".join(piece + separator for piece, separator in tail)
    suffix_runs = {""} | set(COMPANY_SUFFIXES)
    suffix_runs |= {a + b for a in COMPANY_SUFFIXES for b in COMPANY_SUFFIXES}
    words = [word for word in re.split("[^A-Z]+", narrative) if word]
    expected = False
    for index in range(len(words)):
        # the letters from this word's start on, the words after it run together, as a
        # name may span words ("ALL PAY"), and where each word ends
        joined, ends = "", set()
        for word in words[index:]:
            joined += word
            ends.add(len(joined))
        for collector in COLLECTOR_LETTERS:
            if joined.startswith(collector):
                end = len(collector)
                rest_end = min((e for e in ends if e >= end), default=len(joined))
                if joined[end:rest_end] in suffix_runs:
                    expected = True
    assert names_provider_words(narrative, COLLECTOR_LETTERS) == expected, narrative


def test_a_suffix_is_of_the_names_own_word() -> None:
    for narrative in ("ALLPAYL TD", "ALLPAYLIM ITED", "ALLPAYUKUKUK", "ALLPAYLTDX"):
        assert not PROVIDERS.named_in(narrative), narrative
    for narrative in ("ALLPAYLTD UK", "ALL PAYLTD", "PAYPOINTUKLTD"):
        assert PROVIDERS.named_in(narrative), narrative


def test_collectors_are_a_setting(ledger) -> None:
    """LEDGER_COLLECTOR_NARRATIVES: a council's other collector, as a whole word or with a
    company suffix; the default names are then collectors no more."""
    names = ProviderNames.of(PAYOUT_NARRATIVES, ["Post Office Counters"])
    assert names.named_in("POSTOFFICECOUNTERSLTD 123")
    assert names.named_in("POST OFFICE COUNTERS")
    assert not names.named_in("POSTOFFICECOUNTERSTOCK")
    assert not names.named_in("ALLPAYLTD") and names.named_in("GOVUK PAY 1")
    assert ledger.provider_narratives.named_in("ALLPAYLTD")


def test_a_collector_pattern_without_a_letter_is_refused_as_a_collectors() -> None:
    """LEDGER_COLLECTOR_NARRATIVES' refusal speaks of collectors, not of card payouts."""
    with pytest.raises(ValidationError, match="the collector narrative pattern '1234' has no"):
        Settings(collector_narratives="ALLPAY, 1234")
    with pytest.raises(LedgerError, match="for a collector's settlement"):
        ProviderNames.of(PAYOUT_NARRATIVES, ["ALLPAY", "!!"])
    with pytest.raises(ValidationError, match="the payout narrative pattern '1234'"):
        Settings(payout_narratives="GOVUKPAY, 1234")

"""`ReceiptMaker` makes a file's new receipts as `IncomeLedger.new_receipt` makes each one
(issue #10): for random commands, the same stored events byte for byte (the recording
clock's timestamps apart), the same money movements, the same batch entry, or the same
refusal."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from application.access import FundAccess
from application.imports import _recorded_line
from application.ledger import CommandContext, RecordPayment
from application.receipt_maker import ReceiptMaker, layout_known, summary
from domain.errors import LedgerError
from domain.funds import Match, SuspenseReason
from domain.imports import ImportedLine, ImportLine, LineKind
from domain.money import MAX_AMOUNT_PENCE
from domain.payment import Channel
from domain.sample_chart import SAMPLE_FUNDS
from tests.domain.helpers import CT_REF, HRA_REF, SUN_REF

NOW = datetime.now(UTC)
CLOCK = re.compile(rb'^\{"timestamp":\{"_type_":"datetime_iso","_data_":"[^"]*"\}')
CARD = "4111111111111111"
# References that pass a fund's rule, fail one, or hold what normalising changes.
references = st.sampled_from(
    [
        CT_REF,
        SUN_REF,
        HRA_REF,
        f" {CT_REF.lower()} ",
        "NOSUCH",
        CARD,
        "\uff23\uff34\uff11",
        "a\u200bb",
        "",
    ]
) | st.text(max_size=24)
flat_details = st.dictionaries(
    st.text(max_size=8),
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=12),
    max_size=4,
)
details = st.none() | flat_details | st.dictionaries(st.text(max_size=4), flat_details, max_size=2)
holds = st.none() | st.builds(
    Match, st.none(), st.sampled_from(SuspenseReason), st.text(max_size=20), st.none()
)
rule_records = st.none() | st.fixed_dictionaries(
    {"rule_id": st.text(max_size=4), "rule_version": st.integers(1, 9)}
)


@st.composite
def commands(draw: st.DrawFn) -> RecordPayment:
    moment = NOW - draw(st.timedeltas(timedelta(days=-1), timedelta(days=10_000)))
    zone = draw(st.sampled_from([UTC, timezone(timedelta(hours=1)), ZoneInfo("Europe/London")]))
    hold = draw(holds)
    if hold is not None and draw(st.booleans()):
        hold = Match(
            draw(st.sampled_from(SAMPLE_FUNDS)).code, None, "a rule's fund", draw(rule_records)
        )
    external_id = draw(st.none() | st.text(max_size=30) | st.just("file:abc:1"))
    return RecordPayment(
        channel=draw(st.sampled_from([c.value for c in Channel] + ["ALLPAY", "nosuch"])),
        amount_pence=draw(
            st.sampled_from([1, 100, 12_345, 0, -5, MAX_AMOUNT_PENCE, MAX_AMOUNT_PENCE + 1, True])
        ),
        reference=draw(references),
        received_at=moment.astimezone(zone),  # (None: now, which two calls never share)
        fund_code=draw(st.none() | st.sampled_from(["CT", "sun", "NOPE", "X" * 20])),
        external_id=external_id,
        external_id_from_provider=draw(st.booleans()),
        provider_details=draw(details),
        hold_in_suspense=hold,
        office_code=draw(st.sampled_from([None, None, None, "HQ"])),
        till_code=draw(st.sampled_from([None, None, None, "T1"])),
    )


def made(maker: ReceiptMaker, command: RecordPayment) -> tuple[Any, ...]:
    """What the maker answers, its recording clock blanked; or its refusal."""
    try:
        encoded, receipt = maker.new(command)
    except LedgerError as error:
        return (type(error), error.message)
    stored = tuple(
        (s.originator_id, s.originator_version, s.topic, CLOCK.sub(b"{", s.state))
        for s in encoded.stored
    )
    return encoded.payment_id, stored, encoded.moves, receipt


# On both backends: each ledger's mapper writes the rows the maker must match.
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batch=st.lists(commands(), min_size=1, max_size=6),
    key=st.none() | st.just("key-1"),
    # Every fund, a key limited to some funds' groups (lines to others refused), or none.
    access=st.sampled_from([None, frozenset({"REVENUES"}), frozenset({"HOUSING", "SUNDRY"})]),
)
def test_the_maker_makes_what_new_receipt_makes(ledger, batch, key, access) -> None:
    assert layout_known()
    ctx = CommandContext("officer:importer", idempotency_key=key, access=FundAccess(access))
    chart = ledger.chart()
    if key is None:  # an id from the external id alone (none: a random id, never the same)
        batch = [replace(c, external_id=c.external_id or "file:abc:2") for c in batch]
    fast, slow = ReceiptMaker(ledger, ctx, chart), ReceiptMaker(ledger, ctx, chart, fast=False)
    assert fast.fast and not slow.fast
    # The same commands twice: the second time from what the maker kept of the first.
    for command in batch + batch:
        assert made(fast, command) == made(slow, command)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_plain_lines_are_made_without_new_receipt(ledger, monkeypatch) -> None:
    """Red on main: each line was made by `new_receipt`."""
    maker = ReceiptMaker(ledger, CommandContext("officer:importer"), ledger.chart())
    monkeypatch.setattr(ledger, "new_receipt", None)
    for reference in (CT_REF, SUN_REF, "NOSUCH"):
        maker.new(RecordPayment("allpay", 100, reference, NOW, external_id="file:x:1"))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@given(command=commands(), kind=st.sampled_from([LineKind.RECEIPT, LineKind.CASH_ADJUSTMENT]))
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_a_line_entry_is_the_imported_lines(ledger, command, kind) -> None:
    """The batch entry made from the maker's answer is ImportedLine.to_dict of the line and
    its receipt, as `_line_entry` makes it from the payment's view."""
    maker = ReceiptMaker(ledger, CommandContext("officer:importer"), ledger.chart(), fast=False)
    try:
        events, _ = ledger.new_receipt(command, maker.ctx, maker.chart)
    except LedgerError:
        return
    line = ImportLine(
        7,
        kind,
        Channel.parse(command.channel),
        command.amount_pence,
        command.reference,
        command.received_at or NOW,
        "P",
        "335610",
        None,
        None,
        {"booking_date": "2026-11-30", "narrative": "x"} if command.fund_code else None,
    )
    receipt = summary(events)
    expected = ImportedLine(
        7,
        kind.value,
        "recorded",
        str(receipt.payment_id),
        line.channel.value,
        "P",
        receipt.reference,
        command.amount_pence,
        receipt.status,
        import_rule=receipt.import_rule,
        booking_date="2026-11-30" if command.fund_code else None,
        fund_code=receipt.fund_code,
    ).to_dict()
    assert _recorded_line(line, receipt) == expected


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_two_times_of_the_hour_the_clocks_go_back_are_kept_apart(ledger) -> None:
    """01:30 BST and 01:30 GMT on 26 October 2025 are an hour apart, but as datetimes of one
    zone they are equal (wall clock compared, fold ignored): red when the maker kept its
    checked times by the datetime alone (the second line stored the first's moment)."""
    first = datetime(2025, 10, 26, 1, 30, tzinfo=ZoneInfo("Europe/London"))
    second = first.replace(fold=1)
    assert first == second and first.astimezone(UTC) != second.astimezone(UTC)
    ctx, chart = CommandContext("officer:importer"), ledger.chart()
    fast, slow = ReceiptMaker(ledger, ctx, chart), ReceiptMaker(ledger, ctx, chart, fast=False)
    batch = [
        RecordPayment("allpay", 100, CT_REF, moment, external_id=f"file:abc:{moment.fold}")
        for moment in (first, second)
    ]
    for command in batch + batch:
        assert made(fast, command) == made(slow, command)
    encoded, _ = fast.new(batch[1])
    assert [moment for moment, _ in encoded.moves] == [second.astimezone(UTC)] * 2

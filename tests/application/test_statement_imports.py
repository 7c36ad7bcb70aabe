"""Bank statements as imports, and bank reconciliation, on SQLite and PostgreSQL.

The real samples are read from ../shared/realdata/statements (never copied here); the GBP
camt.053 and MT940 files are written by these tests (no public GBP fixture exists).
"""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from uuid import UUID

import pytest

from application.imports import detect_format, get_import, import_file, reverse_import
from application.ledger import CommandContext, RecordPayment
from application.reconciliation import age_band, exceptions
from domain.errors import ConcurrentUpdate, LedgerError
from domain.imports import ImportedLine, ImportFormat
from domain.limits import uk_day_start, uk_today
from income_ledger.bootstrap import build_ledger
from income_ledger.settings import Settings
from tests.application.test_concurrency import _race
from tests.application.test_imports import STATEMENTS, allpay_file, allpay_line, refusal
from tests.domain.helpers import CT_REF

needs_samples = pytest.mark.skipif(
    not (STATEMENTS / "bai2").is_dir(),
    reason=f"real statement samples not found at {STATEMENTS}: set LEDGER_TEST_STATEMENT_SAMPLES",
)
TODAY = uk_today()
YESTERDAY = TODAY - timedelta(days=1)


def entry(
    amount: str,
    *,
    day: date = TODAY,
    ref: str = "",
    text: str = "BANK GIRO CREDIT",
    debit: bool = False,
    family: str = "RCDT",
    reversal: bool = False,
    reason: str = "",
    info: str = "",
) -> dict:
    """A camt entry: `text` its remittance (the payer's reference), `info` its narrative
    (AddtlNtryInf; none: the remittance is the narrative too)."""
    return locals()


def camt(*entries: dict, opening: str = "1000.00", closing: str | None = None, ccy="GBP") -> bytes:
    """A camt.053.001.08 statement of the entries, its balances adding up unless given."""
    pence = sum((-1 if e["debit"] else 1) * int(e["amount"].replace(".", "")) for e in entries)
    closing_pence = _pence(opening) + pence if closing is None else _pence(closing)
    body = "".join(_camt_entry(e, ccy) for e in entries)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>
<GrpHdr><MsgId>M1</MsgId></GrpHdr><Stmt><Id>S1</Id>
<Acct><Id><IBAN>GB33BUKB20201555555555</IBAN></Id><Ccy>{ccy}</Ccy></Acct>
{_balance("OPBD", _pence(opening), ccy)}{_balance("CLBD", closing_pence, ccy)}{body}</Stmt>
</BkToCstmrStmt></Document>""".encode()


def _pence(pounds: str) -> int:
    return int(pounds.replace(".", "").replace(",", ""))


def _balance(code: str, pence: int, ccy: str) -> str:
    """A balance as banks send it: the amount unsigned, its side in CdtDbtInd."""
    side = "DBIT" if pence < 0 else "CRDT"
    amount = f"{abs(pence) // 100}.{abs(pence) % 100:02d}"
    return (
        f"<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp><Amt Ccy='{ccy}'>{amount}</Amt>"
        f"<CdtDbtInd>{side}</CdtDbtInd><Dt><Dt>{TODAY}</Dt></Dt></Bal>"
    )


def _camt_entry(e: dict, ccy: str) -> str:
    reason = f"<RtrInf><Rsn><Cd>{e['reason']}</Cd></Rsn></RtrInf>" if e["reason"] else ""
    info = f"<AddtlNtryInf>{e['info']}</AddtlNtryInf>" if e["info"] else ""
    return (
        f"<Ntry><Amt Ccy='{ccy}'>{e['amount']}</Amt>"
        f"<CdtDbtInd>{'DBIT' if e['debit'] else 'CRDT'}</CdtDbtInd>"
        f"<RvslInd>{'true' if e['reversal'] else 'false'}</RvslInd><Sts><Cd>BOOK</Cd></Sts>"
        f"<BookgDt><Dt>{e['day']}</Dt></BookgDt><ValDt><Dt>{e['day']}</Dt></ValDt>"
        f"<AcctSvcrRef>{e['ref']}</AcctSvcrRef>"
        f"<BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>{e['family']}</Cd><SubFmlyCd>OTHR</SubFmlyCd>"
        f"</Fmly></Domn></BkTxCd><NtryDtls><TxDtls><Refs><EndToEndId>E2E-{e['ref']}</EndToEndId>"
        f"</Refs><RmtInf><Ustrd>{e['text']}</Ustrd></RmtInf>{reason}</TxDtls></NtryDtls>{info}</Ntry>"
    )


def mt940(*lines: tuple[str, str, str], opening: str = "100,00") -> bytes:
    """An MT940 statement in GBP: lines of (C or D, amount like 12,50, reference)."""
    day = TODAY.strftime("%y%m%d")
    rows = [":20:STMT1", ":25:20201555555555", ":28C:1/1", f":60F:C{day}GBP{opening}"]
    pence = _pence(opening)
    for mark, amount, ref in lines:
        rows += [f":61:{day}{day[2:]}{mark}{amount}NTRFNONREF//{ref}", f":86:{CT_REF}"]
        pence += (1 if mark == "C" else -1) * int(amount.replace(",", ""))
    side = "D" if pence < 0 else "C"
    rows.append(f":62F:{side}{day}GBP{abs(pence) // 100},{abs(pence) % 100:02d}")
    return ("\r\n".join(rows) + "\r\n-").encode()


@pytest.fixture
def importer() -> CommandContext:
    return CommandContext("officer:importer")


def imported_payments(ledger, outcome) -> list[dict]:
    lines = get_import(ledger, outcome.batch_id)["lines"]
    return [ledger.get_payment(line["payment_id"]) for line in lines if line["payment_id"]]


def test_camt_credit_lines_become_bank_receipts_and_debits_are_left_alone(ledger, importer):
    content = camt(
        entry("25.00", ref="B1", text=CT_REF),
        entry("10.00", ref="B2", family="RDDT", text=CT_REF),
        entry("99.00", ref="B3", debit=True, family="ICDT"),
    )
    outcome = import_file(ledger, content, importer, file_name="camt.xml")
    assert outcome.batch["file_format"] == "camt053"  # detected from the content
    assert outcome.batch["receipts_count"] == 2 and outcome.batch["receipts_pence"] == 3_500
    payments = imported_payments(ledger, outcome)
    assert [p["channel"] for p in payments] == ["bank_transfer", "direct_debit"]
    assert [p["status"] for p in payments] == ["allocated", "allocated"]
    details = payments[0]["provider_details"]
    assert details["bank_reference"] == "B1" and details["bank_type_code"] == "PMNT/RCDT/OTHR"
    assert details["booking_date"] == TODAY.isoformat()


def test_a_statement_line_seen_again_in_another_file_records_nothing(ledger, importer):
    first = import_file(ledger, camt(entry("25.00", ref="B1")), importer, file_name="a.xml")
    position = ledger.max_position()
    again = import_file(ledger, camt(entry("25.00", ref="B1")), importer, file_name="a2.xml")
    assert not again.recorded and ledger.max_position() == position
    overlapping = camt(entry("25.00", ref="B1"), entry("7.00", ref="B9"), opening="900.00")
    later = import_file(ledger, overlapping, importer, file_name="b.xml")
    assert later.recorded and later.batch["receipts_count"] == 1
    assert later.batch["receipts_pence"] == 700
    assert get_import(ledger, later.batch_id)["lines"][0]["outcome"] == "known"
    assert first.batch_id != later.batch_id


def test_a_statement_that_does_not_reconcile_is_refused_with_its_balances(ledger, importer):
    error = refusal(ledger, camt(entry("25.00", ref="B1"), closing="1000.00"), importer)
    assert (
        "does not reconcile: opening 1000.00 + credits 25.00 - debits 0.00 is not the "
        "closing 1000.00" in error.message
    )


def test_a_statement_not_in_pounds_is_refused(ledger, importer):
    error = refusal(ledger, camt(entry("25.00", ref="B1"), ccy="EUR"), importer)
    assert "is in EUR; the ledger keeps pounds (GBP) only" in error.message


def test_a_returned_direct_debit_reverses_the_collection(ledger, importer):
    collected = camt(entry("40.00", ref="D1", family="RDDT", day=YESTERDAY))
    first = import_file(ledger, collected, importer, file_name="mon.xml")
    (payment,) = imported_payments(ledger, first)
    returned = camt(
        entry("40.00", ref="R1", family="RDDT", debit=True, reversal=True, reason="AC06"),
        opening="1040.00",
    )
    outcome = import_file(ledger, returned, importer, file_name="tue.xml")
    assert outcome.batch["returned_cheques_count"] == 1 and outcome.batch["receipts_count"] == 0
    after = ledger.get_payment(payment["payment_id"])
    assert after["reversed_pence"] == 4_000 and after["unallocated_pence"] == 0
    last = ledger.payment_history(payment["payment_id"])[-1]
    assert last["action"] == "Reversed" and last["details"]["kind"] == "direct_debit_return"
    assert last["reason"] == "direct debit return: tue.xml line 1"


def test_a_returned_direct_debit_with_no_collection_is_refused(ledger, importer):
    returned = camt(entry("40.00", ref="R1", family="RDDT", debit=True, reversal=True))
    error = refusal(ledger, returned, importer)
    assert "direct debit return for reference" in error.message
    assert error.problems[0].line_number == 1


def _collections(ledger, importer, *days: date) -> list[str]:
    """A £40 direct-debit collection of the same payer on each day (oldest first): their
    payment ids, in the same order."""
    entries = [entry("40.00", ref=f"D{n}", family="RDDT", day=day) for n, day in enumerate(days)]
    outcome = import_file(ledger, camt(*entries), importer, file_name="collections.xml")
    return [p["payment_id"] for p in imported_payments(ledger, outcome)]


def _return(ref: str, day: date = TODAY) -> dict:
    return entry("40.00", ref=ref, family="RDDT", debit=True, reversal=True, reason="AC06", day=day)


def _downloaded_again(content: bytes) -> bytes:
    """The same statement from the bank again: another message id, other whitespace."""
    return content.replace(b"<MsgId>M1</MsgId>", b"<MsgId>M2</MsgId>").replace(b"><", b">\n<")


def _reversed_pence(ledger, payment_ids: list[str]) -> list[int]:
    return [ledger.get_payment(pid)["reversed_pence"] for pid in payment_ids]


def test_a_return_in_a_statement_downloaded_again_takes_nothing_back_twice(ledger, importer):
    older, newer = _collections(ledger, importer, TODAY - timedelta(3), TODAY - timedelta(2))
    returned = camt(_return("R1"), entry("7.00", ref="B9"), opening="1080.00")
    first = import_file(ledger, returned, importer, file_name="tue.xml")
    assert _reversed_pence(ledger, [older, newer]) == [0, 4_000]
    again = import_file(ledger, _downloaded_again(returned), importer, file_name="tue-2.xml")
    assert again.recorded and again.batch_id != first.batch_id
    assert _reversed_pence(ledger, [older, newer]) == [0, 4_000]  # older not taken back
    assert again.batch["returned_cheques_count"] == 0 and again.batch["receipts_count"] == 0
    line, credit = get_import(ledger, again.batch_id)["lines"]
    assert credit["outcome"] == "known"
    assert line["outcome"] == "known" and line["payment_id"] == newer
    assert line["kind"] == "direct_debit_return" and line["status"] == "reversed"
    assert line["bank_line_id"] == get_import(ledger, first.batch_id)["lines"][0]["bank_line_id"]
    assert line["bank_line_id"].startswith("stmt:")
    # Reversing the first import (its credit) leaves its return's reversal standing: the
    # collection is still taken back.
    reverse_import(ledger, first.batch_id, CommandContext("supervisor:boss"), "wrong file")
    third = _downloaded_again(returned).replace(b"M2", b"M3")
    import_file(ledger, third, importer, file_name="tue-3.xml")
    assert _reversed_pence(ledger, [older, newer]) == [0, 4_000]


def test_a_new_return_of_the_same_payer_and_amount_still_takes_back_a_collection(ledger, importer):
    days = [TODAY - timedelta(n) for n in (5, 4, 3)]
    oldest, middle, newest = _collections(ledger, importer, *days)
    import_file(ledger, camt(_return("R1"), opening="1120.00"), importer, file_name="a.xml")
    assert _reversed_pence(ledger, [oldest, middle, newest]) == [0, 0, 4_000]
    # Another bank reference on the same day: another return.
    import_file(ledger, camt(_return("R2"), opening="1080.00"), importer, file_name="b.xml")
    assert _reversed_pence(ledger, [oldest, middle, newest]) == [0, 4_000, 4_000]
    # The same bank reference on another day: another return.
    other_day = camt(_return("R1", day=YESTERDAY), opening="1040.00")
    import_file(ledger, other_day, importer, file_name="c.xml")
    assert _reversed_pence(ledger, [oldest, middle, newest]) == [4_000, 4_000, 4_000]


def test_two_identical_returns_on_one_statement_take_back_two_collections_once(ledger, importer):
    days = [TODAY - timedelta(n) for n in (5, 4, 3)]
    oldest, middle, newest = _collections(ledger, importer, *days)
    returned = camt(_return("R1"), _return("R1"), opening="1120.00")
    first = import_file(ledger, returned, importer, file_name="a.xml")
    assert first.batch["returned_cheques_count"] == 2
    assert _reversed_pence(ledger, [oldest, middle, newest]) == [0, 4_000, 4_000]
    again = import_file(ledger, _downloaded_again(returned), importer, file_name="a2.xml")
    assert [line["outcome"] for line in get_import(ledger, again.batch_id)["lines"]] == [
        "known",
        "known",
    ]
    assert _reversed_pence(ledger, [oldest, middle, newest]) == [0, 4_000, 4_000]


def test_a_return_stored_before_its_bank_line_was_kept_is_still_known(
    ledger, importer, monkeypatch
):
    """An earlier import's return line without `bank_line_id` (stored before it was kept)
    is the same return by its kind, booking date, payer reference and amount."""
    older, newer = _collections(ledger, importer, TODAY - timedelta(3), TODAY - timedelta(2))
    returned = camt(_return("R1"), opening="1080.00")
    stored = ImportedLine.to_dict
    with monkeypatch.context() as patched:
        patched.setattr(
            ImportedLine,
            "to_dict",
            lambda line: {k: v for k, v in stored(line).items() if k != "bank_line_id"},
        )
        first = import_file(ledger, returned, importer, file_name="tue.xml")
    assert get_import(ledger, first.batch_id)["lines"][0].get("bank_line_id") is None
    import_file(ledger, _downloaded_again(returned), importer, file_name="tue-2.xml")
    assert _reversed_pence(ledger, [older, newer]) == [0, 4_000]


def test_mt940_and_bai2_are_imported_and_detected(ledger, importer):
    content = mt940(("C", "12,50", "BANKREF1"), ("D", "3,00", "OUT"))
    assert detect_format(content.decode()) is ImportFormat.MT940
    outcome = import_file(ledger, content, importer, file_name="day.sta")
    assert outcome.batch["file_format"] == "mt940" and outcome.batch["receipts_pence"] == 1_250


@needs_samples
def test_the_real_natwest_bai2_statement_imports_its_one_credit(ledger, importer):
    content = (STATEMENTS / "bai2/nwb_example.bai2").read_bytes()
    outcome = import_file(ledger, content, importer, file_name="nwb.bai2")
    assert outcome.batch["file_format"] == "bai2"
    assert outcome.batch["receipts_count"] == 1 and outcome.batch["receipts_pence"] == 89
    (payment,) = imported_payments(ledger, outcome)
    assert payment["channel"] == "bank_transfer" and payment["status"] == "suspense"
    assert payment["received_at"] == "2009-12-16T00:00:00+00:00"


@needs_samples
@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("bai2/citi_example.bai2", "does not reconcile"),
        ("bai2/svb_us_example.bai2", "is in USD"),
        ("camt053/oca_test-camt053-txdtls.xml", "is in CHF"),
        ("camt053/genkgo_camt053.v8.xml", "is in EUR"),
        ("mt940/cmxl_mt940.sta", "is in DEM"),
    ],
)
def test_real_statements_not_in_pounds_or_not_adding_up_are_refused(ledger, importer, name, reason):
    error = refusal(ledger, (STATEMENTS / name).read_bytes(), importer)
    assert reason in error.message


@needs_samples
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("bai2/nwb_example.bai2", ImportFormat.BAI2),
        ("camt053/genkgo_camt053.v2.minimal.xml", ImportFormat.CAMT053),
        ("mt940/jejik_abnamro.sta", ImportFormat.MT940),
        ("mt940/cmxl_mt940.sta", ImportFormat.MT940),
        ("allpay/localgovims_allpay_two_records.txt", ImportFormat.ALLPAY),
    ],
)
def test_the_format_is_detected_from_the_content(name, expected):
    text = (STATEMENTS / name).read_bytes().decode("latin-1")
    assert detect_format(text) is expected


def govuk_pay(
    ledger, amount_pence: int, day: date, external_id: str, channel: str = "govuk_pay"
) -> str:
    outcome = ledger.record_payment(
        RecordPayment(
            channel=channel,
            amount_pence=amount_pence,
            reference=CT_REF,
            received_at=uk_day_start(day),
            external_id=external_id,
            external_id_from_provider=True,
        ),
        CommandContext("integration:govuk_pay"),
    )
    return str(outcome.payment_id)


def test_a_line_paying_in_a_card_receipt_is_linked_not_counted_twice(ledger, importer):
    paid = govuk_pay(ledger, 2_500, YESTERDAY, "pay-1", "card")  # at a till: no clearing
    outcome = import_file(ledger, camt(entry("25.00", ref="B1")), importer, file_name="s.xml")
    assert outcome.recorded and outcome.batch["receipts_count"] == 0
    (line,) = get_import(ledger, outcome.batch_id)["lines"]
    assert line["outcome"] == "reconciled" and line["rule"] == "one_receipt"
    assert line["matched_payment_ids"] == [paid] and line["payment_id"] is None
    report = exceptions(ledger)
    assert report["unmatched_receipts"] == [] and report["unmatched_statement_lines"] == []


def test_a_payers_own_transfer_is_never_taken_for_another_channels_receipt(ledger, importer):
    """A credit line whose reference is a payer's account (valid for a fund, or a check
    digit off one) is that payer's transfer, whatever receipt of another channel has its
    amount: it becomes its own receipt, and the till's card receipt waits for its own
    settlement on the exceptions report."""
    till = govuk_pay(ledger, 2_500, YESTERDAY, "pay-1", "card")
    outcome = import_file(
        ledger, camt(entry("25.00", ref="B1", text=CT_REF)), importer, file_name="s.xml"
    )
    (line,) = get_import(ledger, outcome.batch_id)["lines"]
    assert line["outcome"] == "recorded" and line["payment_id"] is not None
    assert outcome.batch["receipts_count"] == 1
    report = exceptions(ledger)
    assert [r["payment_id"] for r in report["unmatched_receipts"]] == [till]


def test_a_line_paying_in_an_allpay_file_or_a_days_card_takings_is_linked(ledger, importer):
    allpay = import_file(
        ledger,
        allpay_file(allpay_line(CT_REF, "3.00"), allpay_line(CT_REF, "4.00")),
        importer,
        file_name="be.txt",
    )
    card_day = [govuk_pay(ledger, 500, YESTERDAY, f"pay-{n}", "card") for n in range(3)]
    statement = camt(entry("7.00", ref="B1"), entry("15.00", ref="B2"))
    outcome = import_file(ledger, statement, importer, file_name="s.xml")
    lines = get_import(ledger, outcome.batch_id)["lines"]
    assert [line["rule"] for line in lines] == ["import_total", "channel_day_total"]
    assert lines[0]["matched_batch_id"] == str(allpay.batch_id)
    assert lines[1]["matched_payment_ids"] == sorted(card_day)
    assert outcome.batch["receipts_count"] == 0


def test_the_exceptions_report_lists_unmatched_lines_and_receipts_by_age(ledger, importer):
    old = govuk_pay(ledger, 1_234, TODAY - timedelta(days=40), "pay-old")
    outcome = import_file(ledger, camt(entry("25.00", ref="B1")), importer, file_name="s.xml")
    report = exceptions(ledger)
    (line,) = report["unmatched_statement_lines"]
    assert line["amount_pence"] == 2_500 and line["age_band"] == "0-3 days"
    assert line["batch_id"] == str(outcome.batch_id) and line["line"] == 1
    # A card payment waits in clearing for its payout: reported as unsettled, not as a receipt.
    assert report["unmatched_receipts"] == []
    (receipt,) = report["unsettled_card_payments"]
    assert receipt["payment_id"] == old and receipt["age_band"] == "over 30 days"
    assert receipt["kind"] == "unsettled_payment" and receipt["amount_pence"] == 1_234
    assert {(row["kind"], row["age_band"], row["count"]) for row in report["summary"]} == {
        ("statement_line", "0-3 days", 1),
        ("unsettled_payment", "over 30 days", 1),
    }


def test_a_statement_line_counted_twice_leaves_the_report_once_its_receipt_is_reversed(
    ledger, importer
):
    # The statement came first: its line became a bank receipt; the Allpay file of the same
    # money came after, and is not matched back. An officer reverses the bank receipt.
    outcome = import_file(ledger, camt(entry("30.00", ref="B9")), importer, file_name="s.xml")
    (line,) = exceptions(ledger)["unmatched_statement_lines"]
    ledger.reverse(
        UUID(line["payment_id"]),
        "import_reversed",
        importer,
        "paid in the Allpay file of the same day: counted twice",
    )
    report = exceptions(ledger)
    assert report["unmatched_statement_lines"] == []
    assert outcome.batch["receipts_count"] == 1


def test_age_bands():
    assert [age_band(d) for d in (0, 3, 4, 7, 8, 30, 31)] == [
        "0-3 days",
        "0-3 days",
        "4-7 days",
        "4-7 days",
        "8-30 days",
        "8-30 days",
        "over 30 days",
    ]


def test_matching_takes_the_one_receipt_once_and_skips_reversed_or_old_receipts(ledger, importer):
    # Card receipts taken at a till (GOV.UK Pay's own payouts follow rule 4: a chargeback is
    # deducted from a later payout, not unpaid).
    nearer = govuk_pay(ledger, 900, YESTERDAY, "pay-b", "card")
    govuk_pay(ledger, 800, TODAY - timedelta(days=6), "pay-too-old", "card")
    gone = govuk_pay(ledger, 700, YESTERDAY, "pay-gone", "card")
    ledger.reverse(UUID(gone), kind="chargeback", reason="disputed", ctx=importer)
    statement = camt(
        entry("9.00", ref="B1"),
        entry("9.00", ref="B2"),
        entry("8.00", ref="B4"),
        entry("7.00", ref="B5"),
    )
    outcome = import_file(ledger, statement, importer, file_name="s.xml")
    lines = get_import(ledger, outcome.batch_id)["lines"]
    # Two lines of 9.00 and one receipt of it: which line pays it in would be a guess, so
    # neither takes it; both wait for a person, the receipt their one candidate.
    assert [line["outcome"] for line in lines] == ["recorded"] * 4
    assert [[c["payment_ids"] for c in line["candidates"]] for line in lines] == [
        [[nearer]],
        [[nearer]],
        [],
        [],
    ]
    assert outcome.batch["receipts_pence"] == 900 + 900 + 800 + 700
    (line,) = get_import(
        ledger,
        import_file(ledger, camt(entry("9.00", ref="B6")), importer, file_name="t.xml").batch_id,
    )["lines"]
    # A third line of 9.00 waits too: the two lines before still may pay the receipt in.
    assert (line["outcome"], [c["payment_ids"] for c in line["candidates"]]) == (
        "recorded",
        [[nearer]],
    )


def test_a_linked_receipt_is_noted_as_paid_in(ledger, importer):
    paid = govuk_pay(ledger, 2_500, YESTERDAY, "pay-1", "card")
    import_file(ledger, camt(entry("25.00", ref="B1")), importer, file_name="s.xml")
    last = ledger.payment_history(UUID(paid))[-1]
    assert last["action"] == "Noted" and last["actor"] == "officer:importer"
    assert last["details"]["text"] == (
        f"paid in by bank statement s.xml line 1 (one_receipt: card receipt of {YESTERDAY})"
    )


def test_a_receipt_changed_after_the_notes_read_it_refuses_the_import(
    ledger, importer, monkeypatch
):
    """A line paying in an Allpay file notes each of the file's receipts, read together
    (in three queries on SQLite here); another officer's note on one of them between that read and
    the import's save leaves the import's note at a version already taken: the import is
    refused and saves nothing, and imported again it notes every receipt."""
    from application import ledger as ledger_module
    from domain.payment import Payment

    monkeypatch.setattr(ledger_module, "READ_CHUNK", 2, raising=False)
    lines = (allpay_line(CT_REF, f"{n}.00") for n in range(1, 6))
    allpay = import_file(ledger, allpay_file(*lines), importer, file_name="be.txt")
    receipt_ids = [line["payment_id"] for line in get_import(ledger, allpay.batch_id)["lines"]]
    real_note = Payment.note

    def note_after_another_officer(payment, text, *, actor):
        monkeypatch.setattr(Payment, "note", real_note)
        ledger.note(UUID(receipt_ids[-1]), "the payer phoned", CommandContext("officer:other"))
        real_note(payment, text, actor=actor)

    monkeypatch.setattr(Payment, "note", note_after_another_officer)
    statement = camt(entry("15.00", ref="B1", text="ALLPAY LTD"))
    with pytest.raises(ConcurrentUpdate):
        import_file(ledger, statement, importer, file_name="s.xml")
    batches = [e for _, e in ledger.read_events() if type(e).__name__ == "Imported"]
    assert [batch.file_name for batch in batches] == ["be.txt"]
    last_notes = [ledger.payment_history(UUID(id_))[-1] for id_ in receipt_ids]
    assert [note["details"].get("text") for note in last_notes] == [None] * 4 + ["the payer phoned"]

    outcome = import_file(ledger, statement, importer, file_name="s.xml")
    (line,) = get_import(ledger, outcome.batch_id)["lines"]
    assert (line["rule"], line["matched_batch_id"]) == ("import_total", str(allpay.batch_id))
    for id_ in receipt_ids:
        last = ledger.payment_history(UUID(id_))[-1]["details"]["text"]
        assert last.startswith("paid in by bank statement s.xml line 1 (import_total: ")


def _statement_in_a_process(barrier, url: str, content: bytes) -> str:
    ledger = build_ledger(Settings(database_url=url))
    try:
        barrier.wait()
        outcome = import_file(ledger, content, CommandContext("officer:race"), file_name="race")
        lines = get_import(ledger, outcome.batch_id)["lines"]
        return lines[0]["outcome"]
    except LedgerError as error:
        return error.code
    finally:
        ledger.close()


def test_two_statements_racing_for_one_receipt_link_it_once(ledger, settings):
    govuk_pay(ledger, 2_500, YESTERDAY, "pay-1", "card")
    # Two different files (other bank references), each with a line paying in the receipt.
    files = [camt(entry("25.00", ref=f"B{n}")) for n in range(2)]
    results = Counter(_race(_statement_in_a_process, [(settings.database_url, f) for f in files]))
    assert results["reconciled"] <= 1, results
    assert results["reconciled"] + results["recorded"] + results["concurrent_update"] == 2
    batches = [e for _, e in ledger.read_events() if type(e).__name__ == "Imported"]
    links = [line for b in batches for line in b.imported_lines if line.link is not None]
    assert len(links) == 1, results


def bai2(amount: str = "1250") -> bytes:
    """A small BAI2 file in GBP: one account, one credit of `amount` pence (as written),
    its balances and control totals made to add up when the amount is a number."""
    day = TODAY.strftime("%y%m%d")
    pence = int(amount) if amount.isdigit() else 1250
    total = 10_000 + pence + 10_000 + pence
    rows = [
        f"01,SENDER,COUNCIL,{day},1200,1,,,2/",
        f"02,COUNCIL,SENDER,1,{day},2400,GBP,/",
        f"03,12345678,GBP,010,10000,,,015,{10_000 + pence},,/",
        f"16,399,{amount},,BANKREF1,,{CT_REF}/",
        f"49,{total},3/",
        f"98,{total},1,5/",
        f"99,{total},1,7/",
    ]
    return ("\n".join(rows) + "\n").encode()

"""One contract for limits: whatever any edge accepts fits every column it is stored in.

Issue #14.1: an Idempotency-Key of 191+ characters, a webhook payment_id over 200, a fund hint
over 16, a CLI --actor or --external-id over 200 were accepted and then stalled the read model
on PostgreSQL for ever. Every limit now lives in domain.limits, the edges check it and the
tables are built from it. The static test holds every text column to the longest value the
ledger accepts for it; the end-to-end tests record the longest accepted inputs through the
API, the webhook and the CLI on both backends, then project and verify.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import String, Table, create_engine, select

from api.app import create_app
from api.auth import ApiKeys
from api.routes_commands import router as commands_router
from api.services import ApiConfig
from application.idempotency import idempotency_table
from application.payer_details import payer_details_table
from domain.funds import FundChart, SuspenseReason
from domain.imports import MAX_FILE_NAME_LENGTH, ImportBatch, ImportFormat
from domain.limits import (
    MAX_ACTOR_LENGTH,
    MAX_CORRELATION_ID_LENGTH,
    MAX_EXTERNAL_ID_LENGTH,
    MAX_FUND_CODE_LENGTH,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    MAX_PAYER_FIELD_LENGTH,
    MAX_REFERENCE_LENGTH,
    MAX_TEXT_LENGTH,
)
from domain.payment import Channel, Payment, PaymentStatus
from domain.postings import income_account, refunds_account, reversals_account
from income_ledger.server import build_services
from projections.chain import audit_chain, audit_seals
from projections.schema import LIVE, PROJECTION_NAME, new_index_tag, projection_tracking
from projections.status import projection_status
from tests.api.conftest import WEBHOOK_SECRET, signed
from tests.conftest import cli_invoker

UUID_LENGTH = 36
HOSTNAME_MAX_LENGTH = 64  # Linux HOST_NAME_MAX


def _longest(values: object) -> int:
    return max(len(str(value)) for value in values)  # type: ignore[attr-defined]


def _event_names() -> list[str]:
    return [
        name
        for aggregate in (Payment, FundChart, ImportBatch)
        for name, value in vars(aggregate).items()
        if isinstance(value, type) and issubclass(value, aggregate.Event)
    ]


def _longest_command_path() -> int:
    """request_idempotency.path holds a command's URL path: path parameters are UUIDs or
    fund codes."""
    longest = 0
    for route in commands_router.routes:
        path = route.path  # type: ignore[attr-defined]
        for part in path.split("/"):
            if part.startswith("{"):
                path = path.replace(part, "x" * max(UUID_LENGTH, MAX_FUND_CODE_LENGTH))
        longest = max(longest, len(path))
    return longest


# The longest value the ledger can write into each text column, by column name.
LONGEST_VALUE = {
    "reference": MAX_REFERENCE_LENGTH,
    # reference_forms: a reference as an older event stored it (the same limit held then).
    "recorded_reference": MAX_REFERENCE_LENGTH,
    "fund_code": MAX_FUND_CODE_LENGTH,
    "fund_hint": MAX_FUND_CODE_LENGTH,
    "external_id": MAX_EXTERNAL_ID_LENGTH,
    "actor": MAX_ACTOR_LENGTH,
    "recorded_by": MAX_ACTOR_LENGTH,
    "correlation_id": MAX_CORRELATION_ID_LENGTH,
    "scope_key": MAX_CORRELATION_ID_LENGTH,
    "name": MAX_PAYER_FIELD_LENGTH,
    "email": MAX_PAYER_FIELD_LENGTH,
    "phone": MAX_PAYER_FIELD_LENGTH,
    "address": MAX_PAYER_FIELD_LENGTH,
    "account": max(
        len(income_account("F" * MAX_FUND_CODE_LENGTH, "R" * MAX_REFERENCE_LENGTH)),
        len(refunds_account("c" * _longest(Channel))),
        len(reversals_account("c" * _longest(Channel))),
    ),
    "channel": _longest(Channel),
    "status": _longest(PaymentStatus),
    "suspense_reason": _longest(SuspenseReason),
    "reason": _longest(SuspenseReason),  # suspense_items.reason; the audit trail's is TEXT
    "action": _longest(_event_names()),
    "payment_id": UUID_LENGTH,
    "event_id": UUID_LENGTH + 1 + len(str(2**63)),
    "link_sha256": 64,
    "request_hash": 64,
    "method": len("OPTIONS"),
    "path": _longest_command_path(),
    "projection_name": len(f"{PROJECTION_NAME}_verify{new_index_tag()}"),
    "runner": len(f"pid {2**22} on ") + HOSTNAME_MAX_LENGTH,
    "batch_id": UUID_LENGTH,
    "file_name": MAX_FILE_NAME_LENGTH,
    "file_format": _longest(ImportFormat),
    "sha256": 64,
    "imported_by": MAX_ACTOR_LENGTH,
    "reversed_by": MAX_ACTOR_LENGTH,
}
TABLES: list[Table] = [
    *LIVE.tables,
    projection_tracking,
    projection_status,
    audit_chain,
    audit_seals,
    payer_details_table,
    idempotency_table,
]


def test_every_text_column_is_wide_enough_for_the_longest_accepted_value() -> None:
    checked = []
    for table in TABLES:
        for column in table.columns:
            if not isinstance(column.type, String) or column.type.length is None:
                continue  # TEXT: unbounded
            name = f"{table.name}.{column.name}"
            assert column.name in LONGEST_VALUE, f"{name}: say what limits it in domain.limits"
            assert column.type.length >= LONGEST_VALUE[column.name], (
                f"{name} is VARCHAR({column.type.length}) but the ledger accepts "
                f"{LONGEST_VALUE[column.name]} characters for it"
            )
            checked.append(name)
    assert "audit_trail.correlation_id" in checked and len(checked) > 40


# ---- the longest accepted inputs, end to end ---------------------------------------------

LONG_USER = "u" * (MAX_ACTOR_LENGTH - len("officer:"))
TOKEN = "long-user-token-0123456789"


def _text(letter: str, length: int) -> str:
    """Letters only: never a card number, never a valid reference for any fund."""
    return letter * length


@pytest.fixture
def long_user_client(ledger, settings) -> Iterator[TestClient]:
    services = build_services(settings, ledger, ApiKeys.parse(f"{LONG_USER}:officer:{TOKEN}"))
    services.config = ApiConfig(read_wait_seconds=5.0, govuk_pay_webhook_secret=WEBHOOK_SECRET)
    with TestClient(create_app(services), raise_server_exceptions=False) as client:
        yield client
    services.read_engine.dispose()


@pytest.fixture
def cli(database_url, monkeypatch):
    return cli_invoker(monkeypatch, database_url)


def _project_and_verify(cli) -> dict:
    cli("project", "--once")
    report = json.loads(cli("projections", "verify", "--json").stdout)
    assert report["ok"] and report["behind_events"] == 0 and not report["stuck"], report
    return report


def _stored(database_url: str, table: Table, column: str) -> list[str]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(select(table.c[column])).scalars())
    finally:
        engine.dispose()


def test_the_longest_inputs_through_the_api_and_the_webhook_are_stored_and_verified(
    long_user_client, cli, ledger, database_url
) -> None:
    headers = {
        "Authorization": f"Bearer {TOKEN}",
        "Idempotency-Key": _text("k", MAX_IDEMPOTENCY_KEY_LENGTH),
    }
    body = {
        "channel": "bank_transfer",
        "amount_pence": 12_345,
        "reference": _text("R", MAX_REFERENCE_LENGTH),
        "fund_code": _text("Z", MAX_FUND_CODE_LENGTH),
        "external_id": _text("e", MAX_EXTERNAL_ID_LENGTH),
        "payer": {field: _text("p", MAX_PAYER_FIELD_LENGTH) for field in ("name", "address")},
    }
    recorded = long_user_client.post("/payments", json=body, headers=headers)
    assert recorded.status_code == 201, recorded.text
    pid = recorded.json()["payment"]["payment_id"]
    noted = long_user_client.post(
        f"/payments/{pid}/notes",
        json={"text": _text("n", MAX_TEXT_LENGTH)},
        headers=headers | {"Idempotency-Key": _text("m", MAX_IDEMPOTENCY_KEY_LENGTH)},
    )
    assert noted.status_code == 201, noted.text
    webhook = {
        "event_type": "card_payment_succeeded",
        "resource_type": "payment",
        "resource": {
            "payment_id": _text("w", MAX_EXTERNAL_ID_LENGTH),
            "amount": 500,
            "reference": _text("G", MAX_REFERENCE_LENGTH),
            "metadata": {"fund_code": _text("Q", MAX_FUND_CODE_LENGTH)},
            "created_date": "2026-11-20T09:30:00.000Z",
            "state": {"status": "success"},
        },
    }
    content, signature = signed(webhook)
    delivered = long_user_client.post("/webhooks/govuk-pay", content=content, headers=signature)
    assert delivered.status_code == 200, delivered.text

    _project_and_verify(cli)
    correlation = _stored(database_url, LIVE.audit_trail, "correlation_id")
    assert max(len(c or "") for c in correlation) == len(LONG_USER) + 1 + MAX_IDEMPOTENCY_KEY_LENGTH
    assert {len(e or "") for e in _stored(database_url, LIVE.payments, "external_id")} == {
        MAX_EXTERNAL_ID_LENGTH
    }


@pytest.mark.parametrize(
    "field",
    ["reference", "fund_code", "external_id"],
)
def test_one_character_more_is_refused_by_the_api(long_user_client, ledger, field) -> None:
    limit = {
        "reference": MAX_REFERENCE_LENGTH,
        "fund_code": MAX_FUND_CODE_LENGTH,
        "external_id": MAX_EXTERNAL_ID_LENGTH,
    }[field]
    before = ledger.max_position()
    response = long_user_client.post(
        "/payments",
        json={"channel": "cash", "amount_pence": 1, field: _text("X", limit + 1)},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert response.status_code == 422, response.text
    assert ledger.max_position() == before
    too_long_key = long_user_client.post(
        "/payments",
        json={"channel": "cash", "amount_pence": 1},
        headers={
            "Authorization": f"Bearer {TOKEN}",
            "Idempotency-Key": _text("k", MAX_IDEMPOTENCY_KEY_LENGTH + 1),
        },
    )
    assert too_long_key.status_code == 422 and ledger.max_position() == before


def _record_args(**options: str) -> list[str]:
    args = ["payments", "record", "--channel", "cash", "--amount", "1.00"]
    for option, value in options.items():
        args += [f"--{option.replace('_', '-')}", value]
    return args


def test_the_longest_inputs_through_the_cli_are_stored_and_verified(cli, database_url) -> None:
    cli("db", "init")
    cli("funds", "add", "--sample")
    longest = {
        "actor": _text("a", MAX_ACTOR_LENGTH),
        "external_id": _text("e", MAX_EXTERNAL_ID_LENGTH),
        "fund": _text("Z", MAX_FUND_CODE_LENGTH),
        "reference": _text("R", MAX_REFERENCE_LENGTH),
        "idempotency_key": _text("k", MAX_IDEMPOTENCY_KEY_LENGTH),
        "payer_name": _text("p", MAX_PAYER_FIELD_LENGTH),
    }
    cli(*_record_args(**longest))
    _project_and_verify(cli)
    assert _stored(database_url, LIVE.payments, "recorded_by") == [longest["actor"]]
    for option, value in longest.items():
        over = value + value[0]
        refused = cli(*_record_args(**(longest | {option: over})), code=2)
        assert "limit" in refused.output or "longer" in refused.output, refused.output


def test_an_api_user_name_too_long_for_an_actor_is_refused_at_startup() -> None:
    ApiKeys.parse(f"{LONG_USER}:officer:{TOKEN}")
    with pytest.raises(ValueError, match="user name is too long"):
        ApiKeys.parse(f"{LONG_USER}u:officer:{TOKEN}")


@pytest.mark.parametrize("letter", ["ß", "ﬃ"])
def test_letters_whose_capitals_are_longer_still_fit(
    long_user_client, cli, ledger, database_url, letter
) -> None:
    """Upper-casing once turned a 16-letter fund hint of ß into 32 letters: accepted at the
    edge, it then overflowed payments.fund_hint and stalled the PostgreSQL read model."""
    cli(
        *_record_args(
            fund=_text(letter, MAX_FUND_CODE_LENGTH),
            reference=_text(letter, MAX_REFERENCE_LENGTH),
            actor="officer:test",
        )
    )
    webhook = {
        "event_type": "card_payment_succeeded",
        "resource_type": "payment",
        "resource": {
            "payment_id": f"capitals-{ord(letter)}",
            "amount": 500,
            "reference": _text(letter, MAX_REFERENCE_LENGTH),
            "metadata": {"fund_code": _text(letter, MAX_FUND_CODE_LENGTH)},
            "created_date": "2026-11-20T09:30:00.000Z",
            "state": {"status": "success"},
        },
    }
    content, signature = signed(webhook)
    delivered = long_user_client.post("/webhooks/govuk-pay", content=content, headers=signature)
    assert delivered.status_code == 200, delivered.text
    _project_and_verify(cli)
    hints = _stored(database_url, LIVE.payments, "fund_hint")
    assert max(len(hint or "") for hint in hints) <= MAX_FUND_CODE_LENGTH

"""The hot reads (GET /balances/funds, GET /accounts/...) answer with bytes written without
validating the body again: the same bytes, byte for byte, as FastAPI's response_model path."""

from __future__ import annotations

from fastapi.responses import Response
from pydantic import TypeAdapter

from api import routes_queries
from api.auth import ApiUser, Role
from api.schemas import AccountOut, FundBalancesOut
from domain.references import normalise_reference
from projections import queries
from tests.api.conftest import auth
from tests.domain.helpers import CT_REF, HRA_REF, SUN_REF

# Text that JSON writers disagree on when they disagree at all: quotes, a backslash,
# non-ASCII letters and a character outside the BMP, U+2028.
ODD_NAME = 'Rents \u2013 "arrears" \\ caf\u00e9 \U0001f3e0 \u2028end'


def as_response_model(model: type, raw: dict) -> bytes:
    """What FastAPI wrote for a route returning `raw` with response_model=model."""
    adapter = TypeAdapter(model)
    return adapter.dump_json(adapter.validate_python(raw))


def fill(client) -> int:
    """Receipts allocated, split, transferred, refunded, in suspense; a fund renamed."""
    officer = auth("officer")
    renamed = client.patch(
        "/funds/HRA", headers=auth("supervisor"), json={"name": ODD_NAME, "reason": "test"}
    )
    assert renamed.status_code == 200, renamed.text
    position = 0
    for amount, reference in ((10_000, CT_REF), (2_345, HRA_REF), (999, "JUNK"), (4_000, SUN_REF)):
        made = client.post(
            "/payments",
            headers=officer,
            json={"channel": "cash", "amount_pence": amount, "reference": reference},
        )
        assert made.status_code == 201, made.text
        position = made.json()["position"]
    pid = made.json()["payment"]["payment_id"]
    for path, body in (
        (
            "transfers",
            {
                "from": {"fund_code": "SUN", "reference": SUN_REF},
                "to": {"fund_code": "CT", "reference": CT_REF},
                "amount_pence": 1_500,
                "reason": "wrong account",
            },
        ),
        (
            "refunds",
            {"amount_pence": 300, "reason": "overpaid", "fund_code": "SUN", "reference": SUN_REF},
        ),
    ):
        done = client.post(f"/payments/{pid}/{path}", headers=officer, json=body)
        assert done.status_code == 201, done.text
        position = done.json()["position"]
    return position


def test_fund_balances_are_the_response_models_bytes(client, services) -> None:
    position = fill(client)
    response = client.get(f"/balances/funds?min_position={position}", headers=auth("reporting"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    raw = routes_queries._fund_balances(services)
    assert response.content == as_response_model(FundBalancesOut, raw)
    hra = next(f for f in response.json()["funds"] if f["fund_code"] == "HRA")
    assert hra["name"] == ODD_NAME and "\\u" not in response.text  # written as UTF-8


def test_account_statements_are_the_response_models_bytes(client, services) -> None:
    position = fill(client)
    for fund, reference in (("CT", CT_REF), ("SUN", SUN_REF), ("HRA", HRA_REF), ("CT", "0")):
        for limit, offset in ((100, 0), (1, 1)):
            response = client.get(
                f"/accounts/{fund}/{reference}?limit={limit}&offset={offset}"
                f"&min_position={position}",
                headers=auth("officer"),
            )
            assert response.status_code == 200, response.text
            with services.read_engine.connect() as connection:
                raw = queries.account_statement(
                    connection, fund, normalise_reference(reference), limit=limit, offset=offset
                ) | {"position": queries.read_model_position(connection)}
            raw |= {"limit": limit, "offset": offset}
            assert response.content == as_response_model(AccountOut, raw)
    # The statement lines are the movements, with their running balance, as before.
    lines = client.get(f"/accounts/CT/{CT_REF}", headers=auth("officer")).json()["statement"]
    assert [line["balance_pence"] for line in lines] == [10_000, 11_500]


def test_the_routes_return_ready_responses_and_keep_their_documented_models(
    client, services
) -> None:
    fill(client)
    user = ApiUser("r", Role.REPORTING)
    assert isinstance(routes_queries.fund_balances(services, user), Response)
    account = routes_queries.account("CT", CT_REF, services, user, limit=100, offset=0)
    assert isinstance(account, Response)
    paths = client.get("/openapi.json").json()["paths"]
    for path, model in (
        ("/balances/funds", "FundBalancesOut"),
        ("/accounts/{fund_code}/{reference}", "AccountOut"),
    ):
        schema = paths[path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{model}"}

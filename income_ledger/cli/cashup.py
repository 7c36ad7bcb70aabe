"""`income-ledger offices ...` and `income-ledger cashup ...`: cash offices, their tills and
the daily cash-up (#11).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from uuid import UUID

import typer
from rich.markup import escape
from rich.table import Table

from application.cashups import (
    SubmitCashUp,
    approve_cashup,
    cashups,
    get_cashup,
    return_cashup,
    submit_cashup,
)
from application.offices import add_office, add_till, change_offices, offices
from domain.cashups import CashUpStatus, Cheque, denomination_name, difference_words
from domain.errors import InvalidRequest
from domain.limits import parse_query_date
from domain.money import pounds_text, pounds_to_pence
from domain.offices import OfficeRegister
from income_ledger.cli import helpers

offices_app = typer.Typer(
    help="Cash offices and their tills: offices list, add, rename, channels, close, "
    "add-till, close-till.",
    no_args_is_help=True,
)
cashup_app = typer.Typer(
    help="A till's daily cash-up: cashup submit, list, show, approve, return.",
    no_args_is_help=True,
)
JsonOption = helpers.JsonOption
ActorOption = helpers.ActorOption
KeyOption = helpers.KeyOption
ChannelOption = Annotated[
    list[str], typer.Option("--channel", help="cash, cheque or card; repeatable.")
]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why.")]


def register(app: typer.Typer) -> None:
    helpers.add_commands(
        offices_app,
        {
            "list": offices_list,
            "add": offices_add,
            "rename": offices_rename,
            "channels": offices_channels,
            "close": offices_close,
            "add-till": offices_add_till,
            "close-till": offices_close_till,
        },
    )
    helpers.add_commands(
        cashup_app,
        {
            "submit": cashup_submit,
            "list": cashup_list,
            "show": cashup_show,
            "approve": cashup_approve,
            "return": cashup_return,
        },
    )
    app.add_typer(offices_app, name="offices")
    app.add_typer(cashup_app, name="cashup")


# ---- offices ------------------------------------------------------------------------------


def _print_offices(result: dict[str, Any], as_json: bool, done: str) -> None:
    helpers.show(result, as_json, lambda _: helpers.say(done))


def _change_offices(
    actor: str | None, as_json: bool, done: str, change: Callable[[OfficeRegister, str], None]
) -> None:
    """Change the offices as `actor` (`change(register, who)`), then say `done`."""
    who = helpers.context(actor).actor
    result = helpers.run(lambda led: change_offices(led, lambda register: change(register, who)))
    _print_offices(result, as_json, done)


def offices_list(as_json: JsonOption = False) -> None:
    """Every office with its channels and tills."""
    helpers.show(helpers.run(offices), as_json, _print_office_table)


def _print_office_table(found: list[dict[str, Any]]) -> None:
    table = Table("office", "name", "channels", "tills", "open")
    for office in found:
        tills = ", ".join(
            till["code"] + ("" if till["open"] else " (closed)") for till in office["tills"]
        )
        table.add_row(
            office["code"],
            escape(office["name"]),
            ", ".join(office["channels"]),
            tills,
            "yes" if office["open"] else "closed",
        )
    helpers.out.print(table)


def offices_add(
    code: Annotated[str, typer.Argument(help="A short code, like CIVIC.")],
    name: Annotated[str, typer.Option("--name", help="Its name, like 'Civic Centre'.")],
    channels: ChannelOption,
    actor: ActorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add a cash office and the channels its counter takes."""
    result = helpers.run(lambda led: add_office(led, code, name, channels, helpers.context(actor)))
    _print_offices(result, as_json, f"added office {code.upper()}")


def offices_rename(
    code: str,
    name: Annotated[str, typer.Argument(help="The new name.")],
    actor: ActorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Rename an office."""
    done = f"renamed office {code.upper()}"
    _change_offices(actor, as_json, done, lambda r, who: r.rename_office(code, name, actor=who))


def offices_channels(
    code: str, channels: ChannelOption, actor: ActorOption = None, as_json: JsonOption = False
) -> None:
    """Set the channels an office's counter takes."""
    done = f"office {code.upper()} takes {', '.join(channels)}"
    _change_offices(actor, as_json, done, lambda r, who: r.set_channels(code, channels, actor=who))


def offices_close(
    code: str, reason: ReasonOption, actor: ActorOption = None, as_json: JsonOption = False
) -> None:
    """Close an office: it takes no more receipts or cash-ups; its history stays."""
    done = f"closed office {code.upper()}"
    _change_offices(
        actor, as_json, done, lambda r, who: r.close_office(code, actor=who, reason=reason)
    )


def offices_add_till(
    office: str,
    till: str,
    name: Annotated[str, typer.Option("--name", help="Default: the till's code.")] = "",
    actor: ActorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add a till to an office."""
    result = helpers.run(lambda led: add_till(led, office, till, helpers.context(actor), name))
    _print_offices(result, as_json, f"added till {till.upper()} to office {office.upper()}")


def offices_close_till(
    office: str,
    till: str,
    reason: ReasonOption,
    actor: ActorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Close a till."""
    done = f"closed till {till.upper()} of office {office.upper()}"
    _change_offices(
        actor, as_json, done, lambda r, who: r.close_till(office, till, actor=who, reason=reason)
    )


# ---- cash-up ------------------------------------------------------------------------------


def parse_pieces(counts: list[str]) -> dict[int, int]:
    """`--count 20=5 --count 0.50=3` (or 50p=3): how many of each note or coin."""
    pieces: dict[int, int] = {}
    for entry in counts:
        denomination, sep, how_many = entry.partition("=")
        text = denomination.strip().lstrip("£")
        try:
            pence = int(text[:-1]) if text.endswith("p") else pounds_to_pence(text)
            number = int(how_many)
        except (ValueError, InvalidRequest):
            raise InvalidRequest(
                f"--count takes DENOMINATION=HOW_MANY, like 20=5 or 50p=3, got {entry!r}"
            ) from None
        if not sep or pence in pieces:
            raise InvalidRequest(f"--count {entry!r}: give each note or coin once, like 20=5")
        pieces[pence] = number
    return pieces


def parse_cheques(cheques: list[str]) -> list[Cheque]:
    """`--cheque 25.00:DRAWER[:REFERENCE]` per cheque."""
    parsed = []
    for entry in cheques:
        parts = entry.split(":", 2)
        if len(parts) < 2:
            raise InvalidRequest(f"--cheque takes POUNDS:DRAWER[:REFERENCE], got {entry!r}")
        parsed.append(Cheque(pounds_to_pence(parts[0]), parts[1], parts[2] if parts[2:] else ""))
    return parsed


def cashup_submit(
    office: str,
    till: str,
    day: Annotated[str, typer.Argument(help="The UK business date counted, like 2026-03-31.")],
    bag: Annotated[str, typer.Option("--bag", help="The banking bag's number.")],
    counts: Annotated[
        list[str] | None,
        typer.Option("--count", help="NOTE_OR_COIN=HOW_MANY, like 20=5 or 50p=3; repeatable."),
    ] = None,
    cheques: Annotated[
        list[str] | None,
        typer.Option("--cheque", help="POUNDS:DRAWER[:REFERENCE], one per cheque."),
    ] = None,
    reason: Annotated[str, typer.Option("--reason", help="Required when it differs.")] = "",
    actor: ActorOption = None,
    idempotency_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Submit a till's count for a day; it is compared with what was recorded for the
    office, till and channel that day. A second person approves or returns it."""
    command = SubmitCashUp(
        office,
        till,
        parse_query_date(day, "the day"),
        parse_pieces(counts or []),
        parse_cheques(cheques or []),
        bag,
        reason,
    )
    result = helpers.run(
        lambda led: submit_cashup(led, command, helpers.context(actor, idempotency_key))
    )
    _print_cashup(result, as_json)


def cashup_list(
    status: Annotated[
        str | None, typer.Option("--status", help="submitted (waiting), returned or approved.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Cash-ups, newest day first."""
    wanted = CashUpStatus(status.strip().lower()).value if status else None
    helpers.show(helpers.run(lambda led: cashups(led, wanted)), as_json, _print_cashup_table)


def _print_cashup_table(found: list[dict[str, Any]]) -> None:
    table = helpers.folding_table(
        "id", "day", "office", "till", "status", "submitted by", "difference"
    )
    for cashup in found:
        table.add_row(
            cashup["cashup_id"],
            cashup["business_date"],
            cashup["office_code"],
            cashup["till_code"],
            cashup["status"],
            escape(cashup["submitted_by"]),
            difference_words(cashup["difference_pence"]),
        )
    helpers.out.print(table)


def cashup_show(cashup_id: str, as_json: JsonOption = False) -> None:
    """One cash-up: the count, what was recorded, and its history."""
    _print_cashup(helpers.run(lambda led: get_cashup(led, _id(cashup_id))), as_json)


def cashup_approve(
    cashup_id: str,
    actor: ActorOption = None,
    idempotency_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Approve a cash-up someone else submitted: final; differences go to over/short."""
    result = helpers.run(
        lambda led: approve_cashup(led, _id(cashup_id), helpers.context(actor, idempotency_key))
    )
    _print_cashup(result, as_json)


def cashup_return(
    cashup_id: str,
    reason: ReasonOption,
    actor: ActorOption = None,
    idempotency_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Return a cash-up someone else submitted, to be counted and submitted again."""
    result = helpers.run(
        lambda led: return_cashup(
            led, _id(cashup_id), helpers.context(actor, idempotency_key), reason
        )
    )
    _print_cashup(result, as_json)


def _id(text: str) -> UUID:
    try:
        return UUID(text.strip())
    except ValueError:
        raise InvalidRequest(f"{text!r} is not a cash-up id (see `cashup list`)") from None


def _print_cashup(cashup: dict[str, Any], as_json: bool) -> None:
    helpers.show(cashup, as_json, _print_cashup_text)


def _print_cashup_text(cashup: dict[str, Any]) -> None:
    helpers.say(
        f"cash-up {cashup['cashup_id']}: office {cashup['office_code']} till "
        f"{cashup['till_code']} on {cashup['business_date']}, {cashup['status']} "
        f"(bag {escape(cashup['bag_number'])})"
    )
    table = Table("channel", "counted", "recorded", "difference")
    for line in cashup["lines"]:
        table.add_row(
            line["channel"],
            pounds_text(line["counted_pence"]),
            pounds_text(line["recorded_pence"]),
            difference_words(line["difference_pence"]),
        )
    helpers.out.print(table)
    pieces = ", ".join(
        f"{denomination_name(p['denomination_pence'])} x {p['count']}"
        for p in cashup["pieces"]
        if p["count"]
    )
    helpers.say(f"notes and coins: {pieces or 'none'}")
    for step in cashup["history"]:
        because = f": {escape(step['reason'])}" if step["reason"] else ""
        helpers.say(
            f"  {helpers.uk_time(step['at'])} {step['action']} by {escape(step['actor'])}{because}"
        )

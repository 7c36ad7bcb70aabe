"""The money of a payment's allocation lines, and the values its events store about them.

A line is the money of one receipt allocated to one fund and reference, kept per VAT rate.
Events store their lines and parts as plain dicts (the shape every stored event has); the
classes here write them (`to_dict`) and read them (`from_dict`), so nobody else subscripts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from domain.money import vat_from_gross


def line_key(fund_code: str, reference: str) -> str:
    return f"{fund_code}/{reference}"


def describe_source(source: AllocationLine | None) -> str:
    """Where a refund comes from, as a person reads it (None: the unallocated part)."""
    if source is None:
        return "the unallocated part"
    return f"allocation {source.fund_code} {source.reference}"


@dataclass(frozen=True)
class VatPart:
    """Money of a line at one VAT rate, with the VAT it carries."""

    vat_rate_basis_points: int
    amount_pence: int
    vat_pence: int

    def to_dict(self) -> dict[str, int]:
        return {
            "vat_rate_basis_points": self.vat_rate_basis_points,
            "amount_pence": self.amount_pence,
            "vat_pence": self.vat_pence,
        }

    @classmethod
    def from_dict(cls, data: dict[str, int]) -> VatPart:
        return cls(data["vat_rate_basis_points"], data["amount_pence"], data["vat_pence"])


def vat_parts_from(stored: list[dict[str, int]] | None) -> tuple[VatPart, ...] | None:
    """The VAT parts an event stored (None in events stored when a line held one rate only)."""
    return None if stored is None else tuple(VatPart.from_dict(part) for part in stored)


class AllocatedLine(NamedTuple):
    """One line of an Allocated event: money added to a fund and reference at one VAT rate.

    Events store it as a plain dict (`to_dict`), the form every stored event already has.
    A named tuple, not a dataclass (as `Posting`): every new receipt makes one, and every
    check, replay and rebuild of its postings reads its lines as these; a tuple is made in
    a third of the time (#9).
    """

    fund_code: str
    reference: str
    amount_pence: int
    vat_rate_basis_points: int
    vat_pence: int

    @property
    def part(self) -> VatPart:
        return VatPart(self.vat_rate_basis_points, self.amount_pence, self.vat_pence)

    def to_dict(self) -> dict[str, Any]:
        # The fields in declaration order, as dataclasses.asdict gave them (the stored
        # shape), without its recursive copying: one is built for every allocation.
        return {
            "fund_code": self.fund_code,
            "reference": self.reference,
            "amount_pence": self.amount_pence,
            "vat_rate_basis_points": self.vat_rate_basis_points,
            "vat_pence": self.vat_pence,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AllocatedLine:
        return cls(
            data["fund_code"],
            data["reference"],
            data["amount_pence"],
            data["vat_rate_basis_points"],
            data["vat_pence"],
        )


@dataclass(frozen=True)
class ReversedPart:
    """One allocation line's money taken back by a Reversed event, stored as a plain dict."""

    fund_code: str
    reference: str
    amount_pence: int
    vat_pence: int
    # The money at each VAT rate, when the event recorded it.
    vat_parts: tuple[VatPart, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        stored: dict[str, Any] = {
            "fund_code": self.fund_code,
            "reference": self.reference,
            "amount_pence": self.amount_pence,
            "vat_pence": self.vat_pence,
        }
        if self.vat_parts is not None:
            stored["vat_parts"] = [part.to_dict() for part in self.vat_parts]
        return stored

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReversedPart:
        return cls(
            data["fund_code"],
            data["reference"],
            data["amount_pence"],
            data["vat_pence"],
            vat_parts_from(data.get("vat_parts")),
        )


@dataclass(frozen=True)
class AllocationLine:
    """Money of one receipt allocated to one fund and reference, VAT-inclusive.

    A fund's VAT rate can change between two allocations to the same line, so a line keeps
    one part per rate, the newest money last. VAT is recomputed on a part's new total at
    every move, so each part's VAT is the VAT of its amount (no drift from rounding) and the
    line's VAT is the sum of its parts'.
    """

    fund_code: str
    reference: str
    parts: tuple[VatPart, ...] = ()

    @property
    def key(self) -> str:
        return line_key(self.fund_code, self.reference)

    @property
    def amount_pence(self) -> int:
        return sum(part.amount_pence for part in self.parts)

    @property
    def vat_pence(self) -> int:
        return sum(part.vat_pence for part in self.parts)

    def adding(self, vat_rate_basis_points: int, amount_pence: int) -> VatPart:
        """What an allocation of amount_pence at this rate adds, VAT included."""
        held = self._part(vat_rate_basis_points)
        vat = vat_from_gross(held.amount_pence + amount_pence, vat_rate_basis_points)
        return VatPart(vat_rate_basis_points, amount_pence, vat - held.vat_pence)

    def taking(self, amount_pence: int) -> tuple[VatPart, ...]:
        """What a move of amount_pence out of the line takes: the newest money first.

        Stored events record these parts; the rule decides only what new events say.
        """
        taken = []
        remaining = amount_pence
        for part in reversed(self.parts):
            if remaining == 0:
                break
            moved = min(remaining, part.amount_pence)
            left_vat = vat_from_gross(part.amount_pence - moved, part.vat_rate_basis_points)
            taken.append(VatPart(part.vat_rate_basis_points, moved, part.vat_pence - left_vat))
            remaining -= moved
        assert remaining == 0, (self.key, amount_pence)
        return tuple(taken)

    def plus(self, part: VatPart) -> AllocationLine:
        """The line with this money added; its rate's money becomes the newest."""
        held = self._part(part.vat_rate_basis_points)
        merged = VatPart(
            part.vat_rate_basis_points,
            held.amount_pence + part.amount_pence,
            held.vat_pence + part.vat_pence,
        )
        others = tuple(
            p for p in self.parts if p.vat_rate_basis_points != part.vat_rate_basis_points
        )
        # Built directly: dataclasses.replace took a third of a new receipt's view (#9).
        return AllocationLine(self.fund_code, self.reference, (*others, merged))

    def minus(self, taken: tuple[VatPart, ...]) -> AllocationLine:
        """The line without this money; the order of what stays is kept."""
        out = {part.vat_rate_basis_points: part for part in taken}
        parts = []
        for part in self.parts:
            gone = out.pop(part.vat_rate_basis_points, VatPart(part.vat_rate_basis_points, 0, 0))
            left = VatPart(
                part.vat_rate_basis_points,
                part.amount_pence - gone.amount_pence,
                part.vat_pence - gone.vat_pence,
            )
            if left.amount_pence or left.vat_pence:
                parts.append(left)
        assert not out, (self.key, out)
        return replace(self, parts=tuple(parts))

    def _part(self, vat_rate_basis_points: int) -> VatPart:
        for part in self.parts:
            if part.vat_rate_basis_points == vat_rate_basis_points:
                return part
        return VatPart(vat_rate_basis_points, 0, 0)

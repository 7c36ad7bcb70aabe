"""A sample chart of funds that a council would recognise, for the demo and the tests.

The reference rules are plausible, not any one council's: real councils configure their own.
"""

from __future__ import annotations

from domain.funds import Fund
from domain.references import CheckDigitRule, LetterValues, ReferenceRule

COUNCIL_TAX = Fund(
    code="CT",
    name="Council Tax",
    vat_code="OS",
    vat_rate_basis_points=0,
    cost_centre="C1000",
    ledger_code="R1010",
    group="REVENUES",
    reference_rule=ReferenceRule(
        8,
        8,
        r"[0-9]{8}",
        CheckDigitRule(modulus=11, weights=(2, 3, 4, 5, 6, 7, 8), ten_as="0"),
    ),
)
BUSINESS_RATES = Fund(
    code="NNDR",
    name="Business Rates (NNDR)",
    vat_code="OS",
    vat_rate_basis_points=0,
    cost_centre="C1100",
    ledger_code="R1020",
    group="REVENUES",
    reference_rule=ReferenceRule(
        9, 9, r"[0-9]{9}", CheckDigitRule(modulus=10, weights=(3, 1), ten_as="0")
    ),
)
HOUSING_RENTS = Fund(
    code="HRA",
    name="Housing Rents",
    vat_code="EX",
    vat_rate_basis_points=0,
    cost_centre="H2000",
    ledger_code="R2010",
    group="HOUSING",
    reference_rule=ReferenceRule(
        7,
        7,
        r"[0-9]{6}[0-9X]",
        CheckDigitRule(modulus=11, weights=(7, 6, 5, 4, 3, 2), ten_as="X"),
    ),
)
PARKING_PCN = Fund(
    code="PCN",
    name="Parking Penalty Charge Notices",
    vat_code="OS",
    vat_rate_basis_points=0,
    cost_centre="P3000",
    ledger_code="R3010",
    group="PARKING",
    reference_rule=ReferenceRule(
        10,
        10,
        r"[A-Z]{2}[0-9]{8}",
        CheckDigitRule(
            modulus=10, weights=(1, 3), ten_as="0", letters=LetterValues.ALPHABET_POSITION
        ),
    ),
)
SUNDRY_DEBTORS = Fund(
    code="SUN",
    name="Sundry Debtors (invoices)",
    vat_code="S",
    vat_rate_basis_points=2000,
    cost_centre="F4000",
    ledger_code="R4010",
    group="SUNDRY",
    reference_rule=ReferenceRule(
        10,
        10,
        r"INV[0-9]{6}[0-9X]",
        CheckDigitRule(modulus=11, weights=(2, 3, 4, 5, 6, 7), letters=LetterValues.NONE),
    ),
)
BENEFIT_OVERPAYMENTS = Fund(
    code="BOP",
    name="Housing Benefit Overpayments",
    vat_code="OS",
    vat_rate_basis_points=0,
    cost_centre="B5000",
    ledger_code="R5010",
    group="HOUSING",
    reference_rule=ReferenceRule(8, 8, r"BO[0-9]{6}"),
)
TRADE_WASTE = Fund(
    code="TRW",
    name="Commercial Trade Waste",
    vat_code="S",
    vat_rate_basis_points=2000,
    cost_centre="W6000",
    ledger_code="R6010",
    group="SUNDRY",
    reference_rule=ReferenceRule(8, 8, r"TW[0-9]{6}"),
)

SAMPLE_FUNDS: tuple[Fund, ...] = (
    COUNCIL_TAX,
    BUSINESS_RATES,
    HOUSING_RENTS,
    PARKING_PCN,
    SUNDRY_DEBTORS,
    BENEFIT_OVERPAYMENTS,
    TRADE_WASTE,
)

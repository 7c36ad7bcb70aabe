"""`python -m income_ledger.cli`: the same as the installed `income-ledger` script."""

from income_ledger.cli import main

main()

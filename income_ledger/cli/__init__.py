"""The `income-ledger` command line, one module per group of commands.

`commands` holds set-up, funds, payments, the read model and the demo; `audit`, `imports` and
`periods` hold theirs. The installed `income-ledger` script runs `main`.
"""

from income_ledger.cli.commands import app, main

__all__ = ["app", "main"]

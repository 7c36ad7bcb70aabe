"""The ledger's domain: money, funds, payments and the rules that guard them.

Imports nothing from application, projections or api, and touches no database.
"""

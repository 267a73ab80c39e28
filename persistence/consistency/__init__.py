"""The consistency checker: proves, after any run, that the database tells one true story.

`check.check_consistency(engine, now=..., stale_after=...)` reads the database (one connection, so
on MariaDB one REPEATABLE READ snapshot) with aggregate queries that return only the rows that break
a rule, and answers a `report.ConsistencyReport`. Given `books.SimulatorBooks` (what the Deriv and
M-Pesa simulators really executed, fetched by proving.simulator_books), it also compares the
database with those books. `ok` is true when there is no violation and no unresolved transaction.

One module per job, each listing the rules it checks:

  ledger       the ledger sums to zero, per currency and per posting; every entry where it belongs
  accounts     stored balances, account set-up, no overdraft; balances by kind
  funding      float money no transaction moved is CAPITAL's (funding) or SUSPENSE's (unexplained)
  overview     counts by status, NEEDS_REVIEW, unresolved (stale) transactions
  evidence     the evidence rows each transaction's status needs
  flows        the floats and wallets each terminal transaction moved
  deriv_books  the database against the Deriv simulator's books
  mpesa_books  the database against the M-Pesa simulator's books
  report       the codes, findings and the report; books: the simulators' books as values
  queries      SQL building blocks shared by the checks; collector: where findings go

Sign convention: a "net" is sum(DEBIT) - sum(CREDIT) of a set of entries, in minor units of one
currency. A debit-normal account (the floats) grows by its net; a credit-normal one (wallets, FX,
FX spread, fees, suspense, capital) shrinks by it. FX and FX_SPREAD are clearing accounts (bookings.py: the
conversion at the quote's reference rate, and what the customer's rate and rounding earned): no
per-transaction rule reads them, the sums per currency cover them, and their balances are reported
(balances_by_kind).
"""

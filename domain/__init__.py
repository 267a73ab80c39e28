"""PenPay domain layer (PEC 4-5): pure Python, no I/O, no framework imports."""

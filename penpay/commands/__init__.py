"""Subcommands of `penpay`; see penpay/cli.py for the registration contract.

A command module sets `handler` on its parser with `parser.set_defaults(handler=fn)`
where `fn(args) -> int | None`. Keep imports of heavy modules inside the handler so
`penpay --help` stays fast.
"""

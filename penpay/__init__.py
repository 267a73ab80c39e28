"""PenPay composition root: settings, wiring (bootstrap) and the `penpay` command.

The subpackages `penpay.<service>.v1` are generated from `protos/` by
`scripts/gen_protos.py` and are not committed.
"""

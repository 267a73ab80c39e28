"""The proving tools: what shows PenPay works, not PenPay itself.

- `proving.demo`: the scripted user journey of `penpay demo`, against a running stack or one of its own.
- `proving.cluster`: every process of docker-compose.yml run separately on loopback (tests, bench, soak).
- `proving.chaos`: the seeded chaos soak of `penpay chaos`.
- `proving.simulator_books`: what the simulators really executed, read from their control APIs, for
  the consistency checker (persistence.consistency) in `penpay check`, the soak and the tests.

This package sits above the composition root (it starts PenPay's daemons through `penpay`); nothing
shipped imports it except the `penpay` command's modules (penpay/commands), which start these tools.
"""

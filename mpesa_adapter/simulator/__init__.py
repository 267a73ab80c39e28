"""A faithful Safaricom Daraja simulator (aiohttp): OAuth, STK Push + callback, STK Query, B2C v3 +
Result/QueueTimeOut, Transaction Status and Account Balance, with seeded outcomes, faults and books.

Run it with `penpay sim mpesa --port 8766 --seed 1`, or embed it:

    async with DarajaSimulator(SimulatorConfig(port=0, seed=1)) as sim:
        base_url = sim.base_url

See README.md in this package for the phone-number rules and the control API.
"""

from mpesa_adapter.simulator.config import SimulatorConfig
from mpesa_adapter.simulator.server import DarajaSimulator

__all__ = ["DarajaSimulator", "SimulatorConfig"]

"""A local simulator of Deriv's WebSocket API v3, for running PenPay end to end without Deriv credentials.

Start it with ``penpay sim deriv --port 8765 --control-port 8768 --seed 1`` or in-process::

    from deriv_gateway.simulator import DerivSimulator, SimulatorConfig

    async with DerivSimulator(SimulatorConfig(port=0, control_port=0, seed=1)) as sim:
        url = sim.url(app_id=1089)        # ws://127.0.0.1:<port>/websockets/v3?app_id=1089&l=EN
        control = sim.control_url          # http://127.0.0.1:<port>

Default accounts (all USD, residence "ke" unless noted; replace with ``--accounts FILE``):

    loginid        who                            balance    tokens (scopes)
    CR90000000     PenPay Agent (payment agent,   50000.00   sim-agent-token (read, trade,
                   countries ke, min 10/max 2000)            trading_information, payments, admin)
                                                             sim-agent-read (read)
    CR90000001     Alice Wanjiru                   1000.00   sim-client1-token (read, trade,
                   alice@clients.sim                         trading_information, payments)
                                                             sim-client1-read (read)
    VRTC90000001   Alice's virtual account        10000.00   sim-virtual-token
    CR90000002     Brian Otieno, brian@clients.sim  250.00   sim-client2-token
    CR90000003     Carol Njeri, carol@clients.sim     0.00   sim-client3-token
    CR90000004     Daniel Mugisha (residence ug)    100.00   sim-client4-token
                   daniel@clients.sim

Calls served: authorize, logout, ping, time, balance (+subscribe), transaction (stream), forget,
forget_all, website_status, get_settings, account_list, statement, verify_email, paymentagent_transfer,
paymentagent_withdraw, paymentagent_withdraw_justification, paymentagent_list, paymentagent_details.
Anything else gets UnrecognisedRequest.

Verification codes (verify_email type paymentagent_withdraw, sent while authorized as the client, to the
client's own address) land in the mailbox: ``GET /mailbox/CR90000001`` on the control API returns
``{"latest": "<8-char code>", ...}``. See `control` for every endpoint and `faults` for fault injection.

Layout: `engine` + `handlers` + `validation` + `books` are the pure request -> reply logic; `server`
(websockets) and `control` (aiohttp) are the I/O layer.
"""

from .accounts import DEFAULT_SEED
from .clock import Clock
from .config import RateLimitConfig, SimulatorConfig
from .server import BoundPorts, DerivSimulator

DEFAULT_AGENT_LOGINID = "CR90000000"
DEFAULT_AGENT_TOKEN = "sim-agent-token"
DEFAULT_CLIENTS = {
    "CR90000001": "sim-client1-token",
    "CR90000002": "sim-client2-token",
    "CR90000003": "sim-client3-token",
    "CR90000004": "sim-client4-token",
}
DEFAULT_VIRTUAL = {"VRTC90000001": "sim-virtual-token"}

__all__ = [
    "DEFAULT_AGENT_LOGINID",
    "DEFAULT_AGENT_TOKEN",
    "DEFAULT_CLIENTS",
    "DEFAULT_SEED",
    "DEFAULT_VIRTUAL",
    "BoundPorts",
    "Clock",
    "DerivSimulator",
    "RateLimitConfig",
    "SimulatorConfig",
]

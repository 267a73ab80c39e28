"""A simulator of Deriv's REST Payment-Agent API (api.derivws.com), on the v3 simulator's books.

Both generations of the API (anchors deriv-rest README §0): `june` (seven payment-agent endpoints,
synchronous transfers) and `newer` (transfer status, `pending`, `dry_run`, client settings), plus
the wallet endpoints and OAuth2 authorization code + PKCE. See `server` to run it and `faults` for
the seeded faults. Default new-API identities of the default v3 accounts:

    loginid      nickname       agent_id  PAT (scopes)
    CR90000000   penpay_agent   1001      sim-rest-agent-pat (payment, account_manage)
    CR90000001   alice_w                  sim-rest-client1-pat (payment, account_manage)
    CR90000002   brian_o                  sim-rest-client2-pat (payment)
    CR90000003   carol_n                  sim-rest-client3-pat
    CR90000004   daniel_m                 sim-rest-client4-pat

Withdrawal codes (6 digits) land in the v3 mailbox: `GET /mailbox/CR90000001` on the v3 control API.
"""

from .api import RestConfig
from .server import DerivRestSimulator, RestServerConfig

DEFAULT_REST_AGENT_PAT = "sim-rest-agent-pat"
DEFAULT_REST_CLIENT_PATS = {
    "alice_w": "sim-rest-client1-pat",
    "brian_o": "sim-rest-client2-pat",
    "carol_n": "sim-rest-client3-pat",
    "daniel_m": "sim-rest-client4-pat",
}

__all__ = [
    "DEFAULT_REST_AGENT_PAT",
    "DEFAULT_REST_CLIENT_PATS",
    "DerivRestSimulator",
    "RestConfig",
    "RestServerConfig",
]

"""Deriv's REST Payment-Agent API (api.derivws.com): the client the gateway's REST transport uses."""

from .client import CodeSent, DerivRestClient, RestResult, WalletBalance
from .envelope import EndpointAbsent, OperationPending, RequestIdNotFound, RequestIdTaken, decode
from .oauth import OAuthClient, OAuthTokens, authorize_url, pkce_pair

__all__ = [
    "CodeSent",
    "DerivRestClient",
    "EndpointAbsent",
    "OAuthClient",
    "OAuthTokens",
    "OperationPending",
    "RequestIdNotFound",
    "RequestIdTaken",
    "RestResult",
    "WalletBalance",
    "authorize_url",
    "decode",
    "pkce_pair",
]

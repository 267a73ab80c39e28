"""PENPAY_TRUSTED_PROXIES: one setting (its old name still read), one rule (security/proxies.py)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from penpay.settings import Settings
from security.proxies import TrustedProxies

pytestmark = pytest.mark.unit

PROXIES = TrustedProxies.parse("10.0.0.0/8, 127.0.0.1, ::1")


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        ("198.51.100.7", "203.0.113.9", "198.51.100.7"),  # not from a proxy: the header is ignored
        ("127.0.0.1", None, "127.0.0.1"),
        ("127.0.0.1", "203.0.113.9", "203.0.113.9"),
        ("127.0.0.1", "6.6.6.6, 203.0.113.9, 10.1.2.3", "203.0.113.9"),  # first untrusted from the right
        ("127.0.0.1", "6.6.6.6,203.0.113.9", "203.0.113.9"),  # the client wrote 6.6.6.6
        ("127.0.0.1", "junk, 10.1.2.3", "10.1.2.3"),  # garbled: stop at the proxy that passed it on
        ("127.0.0.1", "10.9.9.9, 10.1.2.3", "10.9.9.9"),  # all ours: where the request entered
        ("::ffff:127.0.0.1", "203.0.113.9", "203.0.113.9"),  # IPv4-mapped IPv6 peer
        ("::1", "2001:db8::5", "2001:db8::5"),
        (None, "203.0.113.9", None),  # a Unix socket: no address
    ],
)
def test_the_chain_is_walked_from_the_right(
    peer: str | None, forwarded_for: str | None, client: str | None
) -> None:
    assert PROXIES.client_address(peer, forwarded_for) == client


def test_nothing_trusted_means_the_peer() -> None:
    assert TrustedProxies.parse("").client_address("127.0.0.1", "203.0.113.9") == "127.0.0.1"


def test_one_setting_with_its_former_name_as_an_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PENPAY_TRUSTED_PROXIES", "PENPAY_API_TRUSTED_PROXIES"):
        monkeypatch.delenv(name, raising=False)
    assert Settings(_env_file=None).trusted_proxies == "127.0.0.1,::1"  # type: ignore[call-arg]
    monkeypatch.setenv("PENPAY_API_TRUSTED_PROXIES", "10.0.0.5")
    assert Settings(_env_file=None).trusted_proxies == "10.0.0.5"  # type: ignore[call-arg]
    monkeypatch.setenv("PENPAY_TRUSTED_PROXIES", "10.0.0.6")
    assert Settings(_env_file=None).trusted_proxies == "10.0.0.6"  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("name", "value"),
    [("PENPAY_TRUSTED_PROXIES", "10.0.0.0/8, nginx"), ("PENPAY_CORS_ALLOWED_ORIGINS", "https://*.example")],
)
def test_a_bad_edge_setting_is_refused_when_the_settings_load(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match="(?i)" + name.removeprefix("PENPAY_")):  # names the setting
        Settings(_env_file=None)  # type: ignore[call-arg]

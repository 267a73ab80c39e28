"""The simulator's test RSA key and certificate, and the SecurityCredential check (daraja-protocol.md s.6).

The key is derived deterministically from `key_seed` (seeded prime generation, Miller-Rabin), and the
self-signed X.509 certificate has fixed dates and serial, so the same key_seed gives a byte-identical
certificate on every machine and every run: a user downloads it once (GET /__control__/certificate or
`penpay sim mpesa --write-cert`) and configures it as they would Safaricom's. The key is a public test key:
never use it for anything real.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import random
from datetime import UTC, datetime
from functools import lru_cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

_SMALL_PRIMES = [p for p in range(3, 2000) if all(p % d for d in range(2, int(p**0.5) + 1))]
_E = 65537


def _probably_prime(n: int, rng: random.Random, rounds: int = 40) -> bool:
    for p in _SMALL_PRIMES:
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for _ in range(rounds):
        x = pow(rng.randrange(2, n - 2), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(rng: random.Random, bits: int) -> int:
    while True:
        candidate = rng.getrandbits(bits) | (3 << (bits - 2)) | 1
        if (candidate - 1) % _E != 0 and _probably_prime(candidate, rng):
            return candidate


@lru_cache(maxsize=8)
def derive_private_key(key_seed: str, bits: int = 2048) -> rsa.RSAPrivateKey:
    rng = random.Random(hashlib.sha256(f"daraja-sim-rsa/{key_seed}".encode()).hexdigest())
    while True:
        p, q = _prime(rng, bits // 2), _prime(rng, bits // 2)
        if p != q and (p * q).bit_length() == bits:
            break
    p, q = max(p, q), min(p, q)
    d = pow(_E, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p=p,
        q=q,
        d=d,
        dmp1=rsa.rsa_crt_dmp1(d, p),
        dmq1=rsa.rsa_crt_dmq1(d, q),
        iqmp=rsa.rsa_crt_iqmp(p, q),
        public_numbers=rsa.RSAPublicNumbers(_E, p * q),
    )
    return numbers.private_key()


def load_private_key(path: str) -> rsa.RSAPrivateKey:
    with open(path, "rb") as fh:
        key = serialization.load_pem_private_key(fh.read(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path}: not an RSA private key")
    return key


def make_certificate(key: rsa.RSAPrivateKey, key_seed: str) -> bytes:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "KE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "PenPay Daraja Simulator (TEST ONLY)"),
            x509.NameAttribute(NameOID.COMMON_NAME, "apicrypt.sandbox.daraja-sim.invalid"),
        ]
    )
    serial = int.from_bytes(hashlib.sha256(key_seed.encode()).digest()[:16], "big") >> 1
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial or 1)
        .not_valid_before(datetime(2024, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2049, 12, 31, tzinfo=UTC))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())  # RSA PKCS#1 v1.5 signatures are deterministic
    )
    return cert.public_bytes(serialization.Encoding.PEM)


class CredentialChecker:
    def __init__(self, key: rsa.RSAPrivateKey, certificate_pem: bytes) -> None:
        self._key = key
        self.certificate_pem = certificate_pem

    @classmethod
    def from_seed(cls, key_seed: str) -> CredentialChecker:
        key = derive_private_key(key_seed)
        return cls(key, _cert_for(key_seed))

    @classmethod
    def from_file(cls, path: str) -> CredentialChecker:
        key = load_private_key(path)
        return cls(key, make_certificate(key, path))

    def decrypt(self, credential: object) -> str | None:
        """The initiator password inside a SecurityCredential, or None if it is not one of ours."""
        if not isinstance(credential, str) or not credential:
            return None
        try:
            blob = base64.b64decode(credential, validate=True)
            if len(blob) != self._key.key_size // 8:
                return None
            return self._key.decrypt(blob, padding.PKCS1v15()).decode("utf-8")
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return None

    def matches(self, credential: object, password: str) -> bool:
        return self.decrypt(credential) == password

    def encrypt(self, password: str) -> str:
        """What a client computes from the certificate (handy for tests and the CLI)."""
        cert = x509.load_pem_x509_certificate(self.certificate_pem)
        public = cert.public_key()
        assert isinstance(public, rsa.RSAPublicKey)
        return base64.b64encode(public.encrypt(password.encode(), padding.PKCS1v15())).decode()


@lru_cache(maxsize=8)
def _cert_for(key_seed: str) -> bytes:
    return make_certificate(derive_private_key(key_seed), key_seed)

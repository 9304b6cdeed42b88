"""Real DKIM material for tests: RSA keys made on the spot, their DNS records, and
signing with dkimpy — so verification is exercised on genuine signatures."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


@dataclass(frozen=True)
class Key:
    private_pem: bytes
    txt: str  # the DNS TXT record publishing the public key


def make_key(bits: int = 1024) -> Key:
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return Key(pem, "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode())


def sign(
    raw: bytes,
    key: Key,
    domain: str,
    selector: str = "s1",
    headers: tuple[bytes, ...] = (b"from", b"to", b"subject", b"date", b"message-id"),
    length: bool = False,
) -> bytes:
    """``raw`` with a DKIM-Signature header prepended (relaxed/relaxed)."""
    signature = dkim.sign(
        raw,
        selector.encode(),
        domain.encode(),
        key.private_pem,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=list(headers),
        length=length,
    )
    return bytes(signature) + raw

"""Key material for redaction tests, made at test time: no private key (not even a fake-looking
one) is ever stored in the repository."""

from __future__ import annotations

from functools import cache


@cache
def throwaway_pem() -> str:
    """A fresh EC P-256 private key in PKCS#8 PEM: a header, three body lines and a footer."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode().strip()

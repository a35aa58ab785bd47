"""The cryptography of the vault, in one place.

Envelope encryption: each secret value is sealed (AES-256-GCM) under its own random data key;
the data key is sealed under the master key. The associated data binds each ciphertext to the
secret's name (and a data key to the master key's id), so a row copied over another, or a key id
edited, fails to open instead of yielding another secret's value.

Fingerprints are HMAC-SHA256 under a fingerprint key kept in the vault (sealed under the master
key): they change when a value does, yet without the key nobody can test guesses of a short
password against them.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32
NONCE_BYTES = 12
FINGERPRINT_HEX = 12

__all__ = [
    "AESGCM",
    "InvalidTag",
    "derive",
    "fingerprint",
    "key_id",
    "new_key",
    "open_sealed",
    "seal",
]


def new_key() -> bytes:
    return os.urandom(KEY_BYTES)


def key_id(master: bytes) -> str:
    """A check value naming a master key: tells a wrong key apart without revealing it."""
    return hmac.new(master, b"nebula-vault/key-id/v1", hashlib.sha256).hexdigest()[:16]


def derive(master: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=SHA256(), length=KEY_BYTES, salt=None, info=purpose).derive(master)


def seal(key: bytes, plaintext: bytes, associated: bytes) -> tuple[bytes, bytes]:
    """(nonce, ciphertext with its tag)."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce, AESGCM(key).encrypt(nonce, plaintext, associated)


def open_sealed(key: bytes | AESGCM, nonce: bytes, ciphertext: bytes, associated: bytes) -> bytes:
    """The plaintext; `InvalidTag` when anything (key, nonce, data, associated data) differs.

    `key` may be a ready `AESGCM` (a master key opening many data keys builds it once)."""
    cipher = key if isinstance(key, AESGCM) else AESGCM(key)
    return cipher.decrypt(nonce, ciphertext, associated)


def fingerprint(fingerprint_key: bytes, name: str, value: str) -> str:
    mac = hmac.new(fingerprint_key, name.encode() + b"\0" + value.encode(), hashlib.sha256)
    return mac.hexdigest()[:FINGERPRINT_HEX]


def value_data(name: str, fingerprint: str) -> bytes:
    """Associated data of a sealed value: its name and its fingerprint."""
    return b"nebula-vault/value/v1\0" + name.encode() + b"\0" + fingerprint.encode()


def data_key_data(name: str, master_key_id: str) -> bytes:
    """Associated data of a wrapped data key: the secret's name and the wrapping key's id."""
    return b"nebula-vault/data-key/v1\0" + name.encode() + b"\0" + master_key_id.encode()


def fingerprint_key_data(master_key_id: str) -> bytes:
    return b"nebula-vault/fingerprint-key/v1\0" + master_key_id.encode()

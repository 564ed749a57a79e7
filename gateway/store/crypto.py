"""Envelope encryption: a master keyring wraps one data key per tenant.

Every personal field and secret is AES-256-GCM with associated data that names tenant,
table, column and row, so a ciphertext copied anywhere else fails to decrypt. Lookups by
phone number or e-mail go through a blind index: a keyed HMAC with a per-tenant key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import ConfigError, StoreError

KEY_BYTES = 32
NONCE_BYTES = 12
_FORMAT = b"\x01"


class DecryptError(StoreError):
    """A ciphertext does not belong where it was found, was altered, or its key is gone."""


def generate_master_key() -> str:
    """A new master key, as the URL-safe base64 text that ``GATEWAY_MASTER_KEY`` takes."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def _decode_key(text: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(text.strip().encode("ascii") + b"==")
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise ConfigError("master key is not valid base64 (use `gateway keys generate`)") from None
    if len(raw) != KEY_BYTES:
        raise ConfigError("master key must be 32 bytes of base64 (use `gateway keys generate`)")
    return raw


def key_id(key: bytes) -> str:
    """A public name for a master key: safe to store and print, useless to an attacker."""
    return hashlib.sha256(b"callgate-master-key-id" + key).hexdigest()[:12]


def _aad(*parts: str) -> bytes:
    return "\x1f".join(parts).encode("utf-8")


@dataclass(frozen=True)
class MasterKeyring:
    """The current master key and the previous ones that may still wrap some tenant keys."""

    current: bytes
    previous: tuple[bytes, ...] = ()

    @classmethod
    def from_text(cls, current: str, previous: str | None = None) -> MasterKeyring:
        olds = tuple(_decode_key(p) for p in (previous or "").split(",") if p.strip())
        return cls(_decode_key(current), olds)

    @property
    def current_id(self) -> str:
        return key_id(self.current)

    def _by_id(self, kid: str) -> bytes:
        for key in (self.current, *self.previous):
            if key_id(key) == kid:
                return key
        raise StoreError(
            f"tenant key is wrapped by master key {kid}, which is not configured "
            "(add it to GATEWAY_MASTER_KEY_PREVIOUS until `gateway keys rotate` finishes)"
        )

    def wrap(self, tenant: str, data_key: bytes) -> tuple[str, bytes]:
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self.current).encrypt(nonce, data_key, _aad("tenant-key", tenant))
        return self.current_id, nonce + sealed

    def unwrap(self, tenant: str, kid: str, wrapped: bytes) -> bytes:
        key = self._by_id(kid)
        try:
            return AESGCM(key).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:],
                                       _aad("tenant-key", tenant))
        except InvalidTag:
            raise DecryptError("tenant key does not unwrap with the configured master key") from None


class TenantKeys:
    """The keys derived from one tenant's data key: field encryption and blind index."""

    __slots__ = ("tenant", "_aead", "_index_key")

    def __init__(self, tenant: str, data_key: bytes) -> None:
        self.tenant = tenant
        self._aead = AESGCM(_derive(data_key, b"callgate field encryption"))
        self._index_key = _derive(data_key, b"callgate blind index")

    def encrypt(self, table: str, column: str, row: str, plaintext: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return _FORMAT + nonce + self._aead.encrypt(
            nonce, plaintext, _aad(self.tenant, table, column, row))

    def decrypt(self, table: str, column: str, row: str, blob: bytes) -> bytes:
        if not blob or blob[:1] != _FORMAT or len(blob) < 1 + NONCE_BYTES + 16:
            raise DecryptError("not a ciphertext of this gateway")
        try:
            return self._aead.decrypt(blob[1:1 + NONCE_BYTES], blob[1 + NONCE_BYTES:],
                                      _aad(self.tenant, table, column, row))
        except InvalidTag:
            raise DecryptError("ciphertext does not belong to this tenant, table, column and row") from None

    def blind_index(self, kind: str, value: str) -> str:
        """A keyed, deterministic digest of ``value``: equal values give equal digests."""
        return hmac.digest(self._index_key, _aad(kind, value), "sha256")[:16].hex()


def _derive(data_key: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(data_key)


def new_data_key() -> bytes:
    return os.urandom(KEY_BYTES)

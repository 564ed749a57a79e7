"""Envelope encryption round trips, and every way a ciphertext must refuse to decrypt."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import ConfigError, StoreError
from gateway.store.crypto import (
    DecryptError,
    MasterKeyring,
    TenantKeys,
    generate_master_key,
    new_data_key,
)

names = st.text(min_size=1, max_size=40)


@given(plaintext=st.binary(max_size=2048), tenant=names, table=names, column=names, row=names)
def test_round_trip(plaintext, tenant, table, column, row):
    keys = TenantKeys(tenant, new_data_key())
    assert keys.decrypt(table, column, row, keys.encrypt(table, column, row, plaintext)) == plaintext


@given(plaintext=st.binary(max_size=256), row=names, other=names)
def test_copied_to_another_row_fails(plaintext, row, other):
    keys = TenantKeys("t", new_data_key())
    blob = keys.encrypt("events", "payload", row, plaintext)
    if other != row:
        with pytest.raises(DecryptError):
            keys.decrypt("events", "payload", other, blob)
    with pytest.raises(DecryptError):
        keys.decrypt("events", "other_column", row, blob)
    with pytest.raises(DecryptError):
        keys.decrypt("other_table", "payload", row, blob)


def test_copied_to_another_tenant_fails_even_with_the_same_key_bytes():
    data_key = new_data_key()
    blob = TenantKeys("a", data_key).encrypt("t", "c", "r", b"+4922112345678")
    with pytest.raises(DecryptError):
        TenantKeys("b", data_key).decrypt("t", "c", "r", blob)
    with pytest.raises(DecryptError):
        TenantKeys("a", new_data_key()).decrypt("t", "c", "r", blob)


@given(plaintext=st.binary(min_size=1, max_size=256), position=st.integers(min_value=0))
def test_any_flipped_bit_fails(plaintext, position):
    keys = TenantKeys("t", new_data_key())
    blob = bytearray(keys.encrypt("t", "c", "r", plaintext))
    index = position % len(blob)
    blob[index] ^= 1 << (position % 8)
    with pytest.raises(DecryptError):
        keys.decrypt("t", "c", "r", bytes(blob))


def test_truncated_or_foreign_blobs_fail():
    keys = TenantKeys("t", new_data_key())
    for blob in (b"", b"\x01", b"\x02" + b"x" * 40, keys.encrypt("t", "c", "r", b"x")[:20]):
        with pytest.raises(DecryptError):
            keys.decrypt("t", "c", "r", blob)


def test_blind_index_is_keyed_and_deterministic():
    a, b = TenantKeys("a", new_data_key()), TenantKeys("b", new_data_key())
    assert a.blind_index("phone", "+4922112345678") == a.blind_index("phone", "+4922112345678")
    assert a.blind_index("phone", "+4922112345678") != b.blind_index("phone", "+4922112345678")
    assert a.blind_index("phone", "+4922112345678") != a.blind_index("email", "+4922112345678")
    assert "4922112345678" not in a.blind_index("phone", "+4922112345678")


def test_tenant_key_wrapping_and_old_key_versions():
    old, new = generate_master_key(), generate_master_key()
    data_key = new_data_key()
    kid, wrapped = MasterKeyring.from_text(old).wrap("acme", data_key)
    # after the operator switched keys, the old one is still readable while listed as previous
    both = MasterKeyring.from_text(new, old)
    assert both.unwrap("acme", kid, wrapped) == data_key
    # without it, a clear error that names no secret
    with pytest.raises(StoreError, match="not configured"):
        MasterKeyring.from_text(new).unwrap("acme", kid, wrapped)
    # wrapped for one tenant, presented for another
    with pytest.raises(DecryptError):
        both.unwrap("other", kid, wrapped)


@pytest.mark.parametrize("text", ["", "not base64 !!", "c2hvcnQ=", "é"])
def test_bad_master_keys_are_config_errors(text):
    with pytest.raises(ConfigError):
        MasterKeyring.from_text(text)

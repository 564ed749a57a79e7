from hypothesis import given, strategies as st
import pytest

from gateway_placetel.signature import sign, verify
from placetel_testdata import VECTOR_1, VECTOR_2


@pytest.mark.parametrize("vector", [VECTOR_1, VECTOR_2], ids=["readme", "hungup"])
def test_official_vectors(vector):
    secret, body, digest = vector
    assert sign(secret, body) == digest
    assert verify(secret, body, digest)


def test_upper_case_and_whitespace_are_tolerated():
    secret, body, digest = VECTOR_1
    assert verify(secret, body, digest.upper())
    assert verify(secret, body, f"  {digest}\t")


@pytest.mark.parametrize("presented", [
    None, "", "   ", "c4f823c5", "sha256=" + VECTOR_1[2], VECTOR_1[2][:-1] + "1",
    VECTOR_1[2] + "00", "z" * 64, VECTOR_2[2],
])
def test_anything_else_is_refused(presented):
    secret, body, _ = VECTOR_1
    assert not verify(secret, body, presented)


def test_body_must_be_hashed_as_received():
    secret, body, digest = VECTOR_1
    assert not verify(secret, body + b"\n", digest)
    assert not verify(secret, body.replace(b"from=", b"from=%30"), digest)
    assert not verify("12346", body, digest)
    assert not verify("", body, sign("", body))


@given(secret=st.text(min_size=1, max_size=40), body=st.binary(max_size=200))
def test_round_trip(secret, body):
    assert verify(secret, body, sign(secret, body))
    assert not verify(secret + "x", body, sign(secret, body))

"""The frame token: round trip, tampering, expiry, purpose binding, size, key derivation."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import Unauthorized
from gateway_bitrix24.app import token
from gateway_bitrix24.app.token import (
    Identity,
    TokenExpired,
    TokenForged,
    TokenMalformed,
    TokenWrongPurpose,
    derive_key,
    issue,
    issue_all,
    verify,
)

KEY = derive_key(b"the gateway's master key, 32 bytes+")
OTHER_KEY = derive_key(b"another gateway's master key......")
NOW = 1_780_000_000
ADMIN = Identity("a223c6b3710f85df22e9377d6c4f7553", 1, True, "de")
USER = Identity("a223c6b3710f85df22e9377d6c4f7553", 7, False, "en")

identities = st.builds(
    Identity,
    tenant=st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True),
    user_id=st.integers(min_value=1, max_value=2**53 - 1),
    is_admin=st.booleans(),
    lang=st.from_regex(r"[a-z]{2}", fullmatch=True),
)
purposes = st.sampled_from(sorted(token.USER_PURPOSES | token.ADMIN_PURPOSES))


@given(identities, purposes, st.integers(min_value=1, max_value=token.MAX_TTL))
def test_round_trip(identity: Identity, purpose: str, ttl: int) -> None:
    if purpose in token.ADMIN_PURPOSES and not identity.is_admin:
        with pytest.raises(ValueError):
            issue(KEY, identity, purpose, ttl=ttl, now=NOW)
        return
    tok = issue(KEY, identity, purpose, ttl=ttl, now=NOW)
    assert len(tok) <= token.MAX_TOKEN_LENGTH
    claims = verify(KEY, tok, purpose, now=NOW + ttl - 1)
    assert claims.identity == identity
    assert claims.purpose == purpose
    assert claims.expires == NOW + ttl


@settings(max_examples=300)
@given(identities, st.data())
def test_any_change_to_a_token_is_refused(identity: Identity, data: st.DataObject) -> None:
    tok = issue(KEY, identity, token.VIEW, now=NOW)
    i = data.draw(st.integers(min_value=0, max_value=len(tok) - 1))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
    ch = data.draw(st.sampled_from(alphabet).filter(lambda c: c != tok[i]))
    tampered = tok[:i] + ch + tok[i + 1:]
    with pytest.raises(token.TokenError):
        verify(KEY, tampered, token.VIEW, now=NOW)


@given(st.text(max_size=600))
def test_garbage_is_refused_with_a_token_error(garbage: str) -> None:
    with pytest.raises(token.TokenError):
        verify(KEY, garbage, token.VIEW, now=NOW)


def test_a_token_from_another_key_is_forged() -> None:
    with pytest.raises(TokenForged):
        verify(KEY, issue(OTHER_KEY, USER, token.VIEW, now=NOW), token.VIEW, now=NOW)


def test_a_rewritten_payload_with_the_old_signature_is_forged() -> None:
    body, sig = issue(KEY, USER, token.VIEW, now=NOW).split(".")
    payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).replace(b'"a":0', b'"a":1')
    forged = base64.urlsafe_b64encode(payload).rstrip(b"=").decode() + "." + sig
    with pytest.raises(TokenForged):
        verify(KEY, forged, token.VIEW, now=NOW)


def test_expiry_is_exact() -> None:
    tok = issue(KEY, USER, token.VIEW, ttl=60, now=NOW)
    assert verify(KEY, tok, token.VIEW, now=NOW + 59).identity == USER
    with pytest.raises(TokenExpired) as exc:
        verify(KEY, tok, token.VIEW, now=NOW + 60)
    assert exc.value.reason == "expired"


def test_a_view_token_does_not_authorise_a_form() -> None:
    view = issue(KEY, ADMIN, token.VIEW, now=NOW)
    for purpose in (token.SETTINGS, token.MAPPING, token.ERASE_ME, token.PLACETEL_CONNECT):
        with pytest.raises(TokenWrongPurpose):
            verify(KEY, view, purpose, now=NOW)


def test_one_form_token_does_not_authorise_another_form() -> None:
    with pytest.raises(TokenWrongPurpose):
        verify(KEY, issue(KEY, ADMIN, token.SETTINGS, now=NOW), token.RETRY, now=NOW)


def test_users_get_no_administrator_tokens() -> None:
    assert set(issue_all(KEY, USER, now=NOW)) == token.USER_PURPOSES
    assert set(issue_all(KEY, ADMIN, now=NOW)) == token.USER_PURPOSES | token.ADMIN_PURPOSES
    with pytest.raises(ValueError):
        issue(KEY, USER, token.SETTINGS, now=NOW)


def test_oversized_tokens_are_refused_before_decoding() -> None:
    with pytest.raises(TokenMalformed):
        verify(KEY, "A" * (token.MAX_TOKEN_LENGTH + 1) + ".x", token.VIEW, now=NOW)
    with pytest.raises(TokenMalformed):
        verify(KEY, None, token.VIEW, now=NOW)


def test_token_errors_are_401_and_say_nothing_of_the_token() -> None:
    tok = issue(KEY, USER, token.VIEW, ttl=1, now=NOW)
    with pytest.raises(Unauthorized) as exc:
        verify(KEY, tok, token.VIEW, now=NOW + 5)
    assert exc.value.status == 401
    assert tok not in str(exc.value) and USER.tenant not in str(exc.value)


def test_key_derivation() -> None:
    assert derive_key(b"x" * 16) == derive_key("x" * 16)
    assert derive_key(b"x" * 16) != derive_key(b"x" * 16, info=b"something else")
    assert len(KEY) == 32
    with pytest.raises(ValueError):
        derive_key(b"short")
    with pytest.raises(ValueError):
        issue(b"short key", USER, token.VIEW)


def test_bad_identities_and_lifetimes_are_refused() -> None:
    for bad in (dict(tenant="a b"), dict(user_id=0), dict(user_id=True), dict(lang="deu")):
        with pytest.raises(ValueError):
            Identity(**{"tenant": "t", "user_id": 1, "is_admin": False, "lang": "en", **bad})  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        issue(KEY, USER, token.VIEW, ttl=token.MAX_TTL + 1)
    with pytest.raises(ValueError):
        issue(KEY, USER, "Not A Purpose")

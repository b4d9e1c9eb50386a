"""Access tokens and the key ring: round trips, rotation, and the refusals that matter."""

from __future__ import annotations

import base64
import json
import stat
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from chirp.settings import Settings
from gateway.auth.keys import KeyRing, KeyRingError, thumbprint
from gateway.auth.tokens import (
    REASONS,
    TokenError,
    VerifiedTokens,
    issue_access_token,
    sign_claims,
    verify_access_token,
    www_authenticate,
)

ISS, AUD = "chirp-test", "chirp-api"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _issue(ring: KeyRing, **kw: Any) -> str:
    return issue_access_token(ring, sub="user-1", session_id="sess-1", issuer=ISS, audience=AUD, **kw)


def _verify(ring: KeyRing, token: str) -> Any:
    return verify_access_token(ring, token, issuer=ISS, audience=AUD)


def _reason(ring: KeyRing, token: str) -> str:
    with pytest.raises(TokenError) as caught:
        _verify(ring, token)
    assert caught.value.reason in REASONS
    return caught.value.reason


def _claims(**override: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": ISS, "aud": AUD, "sub": "u", "iat": now, "nbf": now, "exp": now + 60, "jti": "j", "sid": "s"}
    return {k: v for k, v in {**claims, **override}.items() if v is not None}


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_round_trip() -> None:
    ring = KeyRing.generate()
    claims = _verify(ring, _issue(ring, ttl_seconds=60))
    assert (claims.sub, claims.sid, claims.iss, claims.aud) == ("user-1", "sess-1", ISS, AUD)
    assert claims.exp - claims.iat == 60
    assert jwt.get_unverified_header(_issue(ring))["kid"] == ring.current.kid


@pytest.mark.parametrize("ttl", [0, -1, 901])
def test_ttl_is_bounded(ttl: int) -> None:
    with pytest.raises(ValueError):
        _issue(KeyRing.generate(), ttl_seconds=ttl)


def test_rotation_keeps_old_tokens_valid_until_retention_ends() -> None:
    clock = Clock()
    ring = KeyRing.generate(retain_s=905, clock=clock)
    old_kid, old_token = ring.current.kid, _issue(ring)
    ring.rotate()
    new_token = _issue(ring)
    assert ring.current.kid != old_kid
    assert jwt.get_unverified_header(new_token)["kid"] == ring.current.kid
    assert _verify(ring, old_token).sub == _verify(ring, new_token).sub == "user-1"
    assert {k["kid"] for k in ring.jwks()["keys"]} == {old_kid, ring.current.kid}
    clock.now += 906
    assert _reason(ring, old_token) == "unknown_kid"
    assert [k["kid"] for k in ring.jwks()["keys"]] == [ring.current.kid]


def test_jwks_shape() -> None:
    ring = KeyRing.generate()
    (key,) = ring.jwks()["keys"]
    assert key == {"kty": "OKP", "crv": "Ed25519", "x": key["x"], "kid": ring.current.kid, "alg": "EdDSA", "use": "sig"}
    assert "d" not in key
    assert jwt.PyJWK(key).key.public_bytes_raw() == ring.current.public_key.public_bytes_raw()


def test_thumbprint_matches_rfc8037_example() -> None:
    x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"  # RFC 8037 Appendix A.3
    public = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(x + "="))
    assert thumbprint(public) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_unknown_kid() -> None:
    assert _reason(KeyRing.generate(), _issue(KeyRing.generate())) == "unknown_kid"


def test_missing_kid() -> None:
    ring = KeyRing.generate()
    token = jwt.encode(_claims(), ring.private_key, algorithm="EdDSA", headers={"typ": "at+jwt"})
    assert _reason(ring, token) == "unknown_kid"


def test_tampered_payload() -> None:
    ring = KeyRing.generate()
    header, _, signature = _issue(ring).split(".")
    forged = f"{header}.{_b64(_claims(sub='admin'))}.{signature}"
    assert _reason(ring, forged) == "bad_signature"


def test_signature_from_another_key_under_our_kid() -> None:
    ring, other = KeyRing.generate(), KeyRing.generate()
    headers = {"kid": ring.current.kid, "typ": "at+jwt"}
    token = jwt.encode(_claims(), other.private_key, algorithm="EdDSA", headers=headers)
    assert _reason(ring, token) == "bad_signature"


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "HS256", "RS256", "ES256", "EdDSA "])
def test_other_algorithms_are_refused(alg: str) -> None:
    ring = KeyRing.generate()
    header = {"alg": alg, "kid": ring.current.kid, "typ": "at+jwt"}
    assert _reason(ring, f"{_b64(header)}.{_b64(_claims())}.") == "bad_algorithm"


def test_hmac_keyed_with_our_public_key_is_refused() -> None:
    ring = KeyRing.generate()
    public_pem = ring.current.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = f"{_b64({'alg': 'HS256', 'kid': ring.current.kid, 'typ': 'at+jwt'})}.{_b64(_claims())}"
    signature = jwt.get_algorithm_by_name("HS256").sign(signing_input.encode(), public_pem)
    token = f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"
    assert _reason(ring, token) == "bad_algorithm"


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"exp_in": -60}, "expired"),
        ({"nbf_in": 60}, "not_yet_valid"),
        ({"iat_in": 60}, "not_yet_valid"),
        ({"iss": "someone-else"}, "bad_issuer"),
        ({"aud": "someone-else"}, "bad_audience"),
        ({"aud": [AUD, "other"]}, "bad_audience"),
        ({"exp": None}, "missing_claim"),
        ({"sid": None}, "missing_claim"),
        ({"sub": None}, "missing_claim"),
        ({"sub": 42}, "malformed"),
        ({"exp": "tomorrow"}, "malformed"),
        ({"sid": 7}, "malformed"),
    ],
)
def test_claim_checks(override: dict[str, Any], reason: str) -> None:
    # Times are offsets from when the test runs, not from collection (a long suite runs this minutes later).
    now = int(time.time())
    claims = {k.removesuffix("_in"): now + v if k.endswith("_in") else v for k, v in override.items()}
    ring = KeyRing.generate()
    assert _reason(ring, sign_claims(ring, _claims(**claims))) == reason


def test_small_leeway_on_expiry() -> None:
    ring = KeyRing.generate()
    assert _verify(ring, sign_claims(ring, _claims(exp=int(time.time()) - 2))).sub == "u"


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c", "....", "eyJhbGciOiJFZERTQSJ9.e30"])
def test_garbage_is_malformed(token: str) -> None:
    assert _reason(KeyRing.generate(), token) == "malformed"


@pytest.mark.parametrize("header", [{"typ": "JWT"}, {"crit": ["exp"]}])
def test_headers_we_never_issue_are_refused(header: dict[str, Any]) -> None:
    ring = KeyRing.generate()
    headers = {"kid": ring.current.kid, "typ": "at+jwt", **header}
    token = jwt.encode(_claims(), ring.private_key, algorithm="EdDSA", headers=headers)
    assert _reason(ring, token) == "malformed"


def test_error_helpers() -> None:
    assert TokenError("expired").message == REASONS["expired"]
    assert isinstance(TokenError("expired"), jwt.InvalidTokenError)
    assert www_authenticate("expired") == 'Bearer error="invalid_token", error_description="expired"'


def test_ring_is_created_once_on_disk_with_tight_modes(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    ring = KeyRing.load_or_create(directory)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    pem = directory / f"{ring.current.kid}.pem"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    again = KeyRing.load_or_create(directory)
    assert again.current.kid == ring.current.kid
    assert _verify(again, _issue(ring)).sub == "user-1"


def test_rotation_is_persisted(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    ring = KeyRing.load_or_create(directory)
    old_kid, old_token = ring.current.kid, _issue(ring)
    ring.rotate()
    assert not (directory / f"{old_kid}.pem").exists()  # the retired private key is gone
    assert (directory / f"{old_kid}.pub.pem").exists()
    reloaded = KeyRing.load_or_create(directory)
    assert reloaded.current.kid == ring.current.kid
    assert _verify(reloaded, old_token).sub == "user-1"
    other_process = KeyRing.load_or_create(directory)
    other_process.rotate()  # rotates from what is on disk, not from its stale copy
    ring.reload()
    assert ring.current.kid == other_process.current.kid
    assert {k["kid"] for k in ring.jwks()["keys"]} == {k["kid"] for k in other_process.jwks()["keys"]}
    assert len(ring.jwks()["keys"]) == 3


def test_retired_keys_are_dropped_from_disk(tmp_path: Path) -> None:
    clock = Clock()
    directory = tmp_path / "keys"
    ring = KeyRing.load_or_create(directory, retain_s=60, clock=clock)
    first = ring.current.kid
    ring.rotate()
    clock.now += 61
    ring.rotate()
    assert not (directory / f"{first}.pub.pem").exists()
    assert len(ring.jwks()["keys"]) == 2


def test_world_readable_generated_key_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    ring = KeyRing.load_or_create(directory)
    (directory / f"{ring.current.kid}.pem").chmod(0o644)
    with pytest.raises(KeyRingError, match="0600"):
        KeyRing.load_or_create(directory)


def test_operator_key_file(tmp_path: Path) -> None:
    private = Ed25519PrivateKey.generate()
    path = tmp_path / "signing.pem"
    path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    ring = KeyRing.from_settings(Settings(home=tmp_path / "home", jwt_private_key_file=path))
    assert ring.current.kid == thumbprint(private.public_key())
    assert _verify(ring, _issue(ring)).sub == "user-1"
    assert not (tmp_path / "home").exists()
    with pytest.raises(KeyRingError):
        ring.rotate()


def test_non_ed25519_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "not-a-key.pem"
    path.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(KeyRingError):
        KeyRing.from_pem_file(path)


def test_settings_default_to_a_generated_ring_under_home(tmp_path: Path) -> None:
    ring = KeyRing.from_settings(Settings(home=tmp_path, jwt_private_key_file=None))
    assert (tmp_path / "keys" / f"{ring.current.kid}.pem").exists()


def test_verified_tokens_answer_like_verification_and_expire() -> None:
    ring, cache = KeyRing.generate(), VerifiedTokens(size=2)
    token = sign_claims(ring, _claims(exp=int(time.time()) + 3))
    assert cache.verify(ring, token, issuer=ISS, audience=AUD) == _verify(ring, token)
    assert cache.verify(ring, token, issuer=ISS, audience=AUD).sub == "u"  # from the cache
    with pytest.raises(TokenError) as caught:
        cache.verify(ring, token[:-4] + "AAAA", issuer=ISS, audience=AUD)
    assert caught.value.reason == "bad_signature"
    with pytest.raises(TokenError) as caught:
        cache.verify(ring, token, issuer=ISS, audience=AUD + "-other")  # what was verified is not reused blindly
    assert caught.value.reason == "bad_audience"
    time.sleep(3.1 + 1)  # past exp and the 1 s leeway
    with pytest.raises(TokenError) as caught:
        cache.verify(ring, token, issuer=ISS, audience=AUD, leeway_s=1)
    assert caught.value.reason == "expired"


def test_verified_tokens_drop_tokens_of_a_retired_key_and_stay_bounded() -> None:
    clock = Clock()
    ring, cache = KeyRing.generate(retain_s=905, clock=clock), VerifiedTokens(size=2)
    old = _issue(ring)
    assert cache.verify(ring, old, issuer=ISS, audience=AUD).sub == "user-1"
    ring.rotate()
    clock.now += 906
    with pytest.raises(TokenError) as caught:
        cache.verify(ring, old, issuer=ISS, audience=AUD)
    assert caught.value.reason == "unknown_kid"
    for _ in range(3):
        cache.verify(ring, _issue(ring), issuer=ISS, audience=AUD)
    assert len(cache._seen) == 2

"""The shared JWT corpus against `verify_access_token`: every foreign token refused, every claim template as named.

The corpus lives outside the repo (`../shared/corpora`, or `CHIRP_CORPORA`); see its README for the format.
Claim templates are claim sets written for a verifier that pins nothing: claims our verifier requires and the
template does not mention get valid defaults, except the one a `claims-<name>-missing` template is about.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import pytest

from gateway.auth.keys import LEEWAY_S, KeyRing
from gateway.auth.tokens import REASONS, TokenError, sign_claims, verify_access_token
from tests import jwt_corpus
from tests.corpora import missing

ISS, AUD = "chirp", "chirp"
CORPUS = jwt_corpus.load()
if CORPUS is None:
    pytest.skip(missing("jwt"), allow_module_level=True)
OUTCOMES, OFFSETS = jwt_corpus.OUTCOMES, jwt_corpus.OFFSETS

RING = KeyRing.generate()


def _outcome(token: str, *, leeway_s: float) -> str | None:
    try:
        verify_access_token(RING, token, issuer=ISS, audience=AUD, leeway_s=leeway_s)
    except TokenError as exc:
        assert exc.reason in REASONS
        return exc.reason
    return None


def _named_outcome(template: dict[str, Any]) -> str | None:
    name = template["pyjwt_observed"].split(":")[0]
    assert name in OUTCOMES, f"{template['id']}: map {name!r} onto a reason code"
    return OUTCOMES[name]


def _sign(template: dict[str, Any]) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISS,
        "aud": AUD,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
        "sid": "corpus",
    }
    jwt_corpus.apply_template(template, claims, now)
    return sign_claims(RING, claims)


@pytest.mark.parametrize("case", CORPUS["cases"], ids=lambda c: c["id"])
def test_foreign_tokens_are_refused(case: dict[str, Any]) -> None:
    # None of these carries a kid of ours, so the algorithm pin or the key lookup refuses it before any crypto.
    expected = "bad_algorithm" if jwt.get_unverified_header(case["token"]).get("alg") != "EdDSA" else "unknown_kid"
    assert _outcome(case["token"], leeway_s=LEEWAY_S) == expected
    assert _outcome(case["token"], leeway_s=10**10) == expected  # no leeway rescues them


def test_the_corpus_is_not_empty() -> None:
    assert len(CORPUS["cases"]) >= 30 and len(CORPUS["claim_templates"]) >= 9


@pytest.mark.parametrize("template", CORPUS["claim_templates"], ids=lambda t: t["id"])
def test_claim_template_gets_its_named_outcome(template: dict[str, Any]) -> None:
    # The template's own leeway (0 when absent, as in the PyJWT test it comes from).
    assert _outcome(_sign(template), leeway_s=template.get("leeway_s", 0)) == _named_outcome(template)


@pytest.mark.parametrize("template", CORPUS["claim_templates"], ids=lambda t: t["id"])
def test_claim_template_at_our_leeway(template: dict[str, Any]) -> None:
    # At the app's leeway a time claim within LEEWAY_S of now is accepted; everything else keeps its outcome.
    expected = _named_outcome(template)
    offsets = [
        abs(v) for k, v in template["claims"].items() if k in OFFSETS and expected in ("expired", "not_yet_valid")
    ]
    if offsets and max(offsets) <= LEEWAY_S:
        expected = None
    assert _outcome(_sign(template), leeway_s=LEEWAY_S) == expected

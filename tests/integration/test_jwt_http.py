"""Access tokens over HTTP: the shared JWT corpus, claim templates signed with the app's key, rotation, revocation.

The unit corpus test (tests/unit/test_jwt_corpus.py) checks `verify_access_token`; this one checks what a client
sees: `GET /api/me` with `Authorization: Bearer` answers 401 with a JSON error (and the RFC 6750 reason) or 200.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from starlette.applications import Starlette

from chirp.settings import Settings
from gateway.app import create_app
from gateway.auth.keys import KeyRing
from gateway.auth.tokens import sign_claims
from tests import jwt_corpus
from tests.corpora import missing
from tests.integration.helpers import login, unique_handle

CORPUS = jwt_corpus.load()
if CORPUS is None:
    pytest.skip(missing("jwt"), allow_module_level=True)
OUTCOMES, OFFSETS = jwt_corpus.OUTCOMES, jwt_corpus.OFFSETS


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def me(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get("/api/me", headers=bearer(token))


def assert_401(response: httpx.Response, reason: str | None = None) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == "unauthorized" and error["message"]
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer")
    if reason is not None:
        assert f'error_description="{reason}"' in challenge, challenge


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


@pytest.fixture
async def session(client: httpx.AsyncClient) -> dict[str, Any]:
    """A fresh dev login: its access token's claims (a live `sub` and `sid` to build templates on)."""
    headers = await login(client, unique_handle("jwt"))
    return claims_of(headers["Authorization"].removeprefix("Bearer "))


@pytest.mark.parametrize("case", CORPUS["cases"], ids=lambda c: c["id"])
async def test_every_corpus_token_is_refused(client: httpx.AsyncClient, case: dict[str, Any]) -> None:
    assert_401(await me(client, case["token"]))


def _from_template(template: dict[str, Any], session: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The template's claims on top of a valid claim set for the live session (see tests/unit/test_jwt_corpus.py)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": session["sub"],
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
        "sid": session["sid"],
    }
    jwt_corpus.apply_template(template, claims, now, keep_sub=True)  # ours is the user whose session is live
    return claims


def _expected(template: dict[str, Any], leeway_s: int) -> str | None:
    """The template's named outcome, except that time claims within the app's leeway are accepted."""
    expected = OUTCOMES[template["pyjwt_observed"].split(":")[0]]
    if expected in ("expired", "not_yet_valid"):
        offsets = [abs(v) for k, v in template["claims"].items() if k in OFFSETS]
        if offsets and max(offsets) <= leeway_s:
            return None
    return expected


@pytest.mark.parametrize("template", CORPUS["claim_templates"], ids=lambda t: t["id"])
async def test_claim_templates_signed_with_our_key(
    client: httpx.AsyncClient, app: Starlette, settings: Settings, session: dict[str, Any], template: dict[str, Any]
) -> None:
    token = sign_claims(app.state.chirp.keys, _from_template(template, session, settings))
    expected = _expected(template, settings.jwt_leeway_seconds)
    response = await me(client, token)
    if expected is None:
        assert response.status_code == 200, response.text
        assert response.json()["user_id"] == session["sub"]
    else:
        assert_401(response, expected)


def test_the_templates_cover_both_outcomes(settings: Settings) -> None:
    outcomes = {_expected(t, settings.jwt_leeway_seconds) for t in CORPUS["claim_templates"]}
    assert None in outcomes and {"expired", "not_yet_valid", "missing_claim", "bad_issuer", "bad_audience"} <= outcomes


async def test_a_good_token_then_its_tampered_twin(
    client: httpx.AsyncClient, session: dict[str, Any], app: Starlette
) -> None:
    token = sign_claims(app.state.chirp.keys, {**session, "jti": uuid.uuid4().hex})
    assert (await me(client, token)).status_code == 200
    header, payload, signature = token.split(".")
    claims = {**session, "sub": "someone-else"}
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert_401(await me(client, f"{header}.{forged}.{signature}"), "bad_signature")
    assert_401(await me(client, f"{header}.{payload}.{signature[:-4]}AAAA"), "bad_signature")


async def test_unknown_kid(client: httpx.AsyncClient, session: dict[str, Any]) -> None:
    stranger = KeyRing.generate()  # a well-formed EdDSA token from a key the app never held
    assert_401(await me(client, sign_claims(stranger, {**session, "jti": uuid.uuid4().hex})), "unknown_kid")


async def test_revoked_session(client: httpx.AsyncClient, app: Starlette) -> None:
    headers = await login(client, unique_handle("jwt"))
    assert (await client.get("/api/me", headers=headers)).status_code == 200
    assert (await client.post("/auth/logout", headers=headers)).status_code == 200
    assert_401(await client.get("/api/me", headers=headers))
    # A token minted for the ended session is refused too, however valid its signature and claims.
    claims = claims_of(headers["Authorization"].removeprefix("Bearer "))
    assert_401(await me(client, sign_claims(app.state.chirp.keys, {**claims, "jti": uuid.uuid4().hex})))


@pytest.fixture
async def own_app(settings: Settings, tmp_path: Path) -> AsyncIterator[Starlette]:
    """An app whose key ring lives in a temporary home, so rotating it touches no one else's keys."""
    app = create_app(settings.model_copy(update={"home": tmp_path}))
    async with app.router.lifespan_context(app):
        yield app


async def test_rotation_keeps_old_tokens_valid(own_app: Starlette, settings: Settings) -> None:
    transport = httpx.ASGITransport(app=own_app)
    async with httpx.AsyncClient(transport=transport, base_url=settings.public_url) as client:
        old = await login(client, unique_handle("rot"))
        old_kid = jwt.get_unverified_header(old["Authorization"].removeprefix("Bearer "))["kid"]
        ring: KeyRing = own_app.state.chirp.keys
        new_kid = ring.rotate().kid
        assert new_kid != old_kid

        assert (await client.get("/api/me", headers=old)).status_code == 200
        new = await login(client, unique_handle("rot"))
        assert jwt.get_unverified_header(new["Authorization"].removeprefix("Bearer "))["kid"] == new_kid
        assert (await client.get("/api/me", headers=new)).status_code == 200
        kids = [key["kid"] for key in (await client.get("/.well-known/jwks.json")).json()["keys"]]
        assert kids == [new_kid, old_kid]

        ring.rotate()  # twice: the first key is still within its retention, so three keys verify
        assert (await client.get("/api/me", headers=old)).status_code == 200
        assert len((await client.get("/.well-known/jwks.json")).json()["keys"]) == 3

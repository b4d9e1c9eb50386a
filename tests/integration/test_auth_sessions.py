"""Dev login, tokens on the wire, refresh rotation, logout, JWKS — through HTTP on the real Redis."""

from __future__ import annotations

import random

import httpx
import jwt

from chirp.settings import Settings
from gateway.app import create_app
from tests.integration.helpers import login, unique_handle


async def test_dev_login_gives_a_token_that_opens_api_me(client: httpx.AsyncClient) -> None:
    handle = unique_handle()
    headers = await login(client, handle)
    me = await client.get("/api/me", headers=headers)
    assert me.status_code == 200
    assert me.json()["handle"] == handle
    assert handle not in me.json()["user_id"], "user ids are opaque (they reveal nothing about the person)"


async def test_dev_login_is_404_outside_dev_mode(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"env": "prod"}))
    # Its own address: a prod app keeps prod-sized login buckets, which repeated runs could otherwise empty.
    transport = httpx.ASGITransport(app=app, client=(f"127.0.{random.randrange(256)}.{random.randrange(1, 255)}", 1))
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        response = await http.post("/auth/dev-login", json={"login": "someone"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_dev_login_validates_the_login(client: httpx.AsyncClient) -> None:
    for bad in ({"login": ""}, {"login": "-x"}, {"login": "a" * 40}, {"login": 5}, {}):
        response = await client.post("/auth/dev-login", json=bad)
        assert response.status_code == 422
        assert response.json()["error"]["field"] == "login"
    response = await client.post("/auth/dev-login", content=b"[1]", headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["error"]["field"] == "body"


async def test_browser_cookies_are_httponly_and_lax(client: httpx.AsyncClient) -> None:
    response = await client.post("/auth/dev-login", json={"login": unique_handle()})
    cookies = response.headers.get_list("set-cookie")
    access = next(c for c in cookies if c.startswith("chirp_access="))
    assert "HttpOnly" in access and "SameSite=lax" in access and "Max-Age=900" in access


async def test_refresh_rotates_and_reuse_revokes_the_session(client: httpx.AsyncClient) -> None:
    first = (await client.post("/auth/dev-login", json={"login": unique_handle()})).json()
    client.cookies.clear()
    second = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    new = second.json()
    assert new["refresh_token"] != first["refresh_token"]
    assert (await client.get("/api/me", headers={"Authorization": f"Bearer {new['access_token']}"})).status_code == 200
    client.cookies.clear()
    reused = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reused.status_code == 401
    # the reuse revoked the whole session: the newest tokens stop working too
    client.cookies.clear()
    assert (await client.post("/auth/refresh", json={"refresh_token": new["refresh_token"]})).status_code == 401
    me = await client.get("/api/me", headers={"Authorization": f"Bearer {new['access_token']}"})
    assert me.status_code == 401 and me.json()["error"]["code"] == "unauthorized"


async def test_logout_revokes_the_session(client: httpx.AsyncClient) -> None:
    body = (await client.post("/auth/dev-login", json={"login": unique_handle()})).json()
    client.cookies.clear()
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    assert (await client.post("/auth/logout", headers=headers)).status_code == 200
    assert (await client.get("/api/me", headers=headers)).status_code == 401
    client.cookies.clear()
    assert (await client.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})).status_code == 401


async def test_tokens_verify_against_the_published_jwks(client: httpx.AsyncClient, settings: Settings) -> None:
    headers = await login(client, unique_handle())
    token = headers["Authorization"].removeprefix("Bearer ")
    keys = (await client.get("/.well-known/jwks.json")).json()["keys"]
    kid = jwt.get_unverified_header(token)["kid"]
    jwk = next(k for k in keys if k["kid"] == kid)
    key = jwt.PyJWK(jwk).key
    claims = jwt.decode(token, key, algorithms=["EdDSA"], audience=settings.jwt_audience, issuer=settings.jwt_issuer)
    assert claims["exp"] - claims["iat"] <= 900
    assert {"kid", "alg"} <= set(jwt.get_unverified_header(token))


async def test_garbage_and_foreign_tokens_are_401(client: httpx.AsyncClient) -> None:
    for token in ("garbage", "a.b.c", jwt.encode({"sub": "x"}, "s" * 32, algorithm="HS256")):
        response = await client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
    assert (await client.get("/api/me")).status_code == 401

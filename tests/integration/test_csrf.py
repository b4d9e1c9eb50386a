"""CSRF over HTTP: cookie-authenticated unsafe requests need the token and a same-origin Origin; Bearer ones do not."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chirp.settings import Settings
from gateway.auth.current import require_viewer
from gateway.errors import JSONResponse
from tests.integration.helpers import unique_handle

FOREIGN = "https://evil.example"


async def cookie_login(client: httpx.AsyncClient) -> str:
    """Log in as a browser does (cookies kept); the CSRF token the page would echo."""
    response = await client.post("/auth/dev-login", json={"login": unique_handle("csrf")})
    assert response.status_code == 200, response.text
    token = client.cookies.get("chirp_csrf")
    assert token
    return token


def assert_csrf_refused(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "csrf"


async def logged_in(client: httpx.AsyncClient) -> bool:
    return (await client.get("/api/me")).status_code == 200


async def test_cookie_post_without_token_is_refused(client: httpx.AsyncClient) -> None:
    await cookie_login(client)
    assert_csrf_refused(await client.post("/auth/logout"))
    assert_csrf_refused(await client.post("/auth/logout", headers={"X-CSRF-Token": "not-the-cookie"}))
    assert_csrf_refused(await client.post("/auth/logout", headers={"X-CSRF-Token": ""}))
    assert await logged_in(client)  # the refused logouts changed nothing


async def test_cookie_post_with_token_header_passes(client: httpx.AsyncClient) -> None:
    token = await cookie_login(client)
    response = await client.post("/auth/logout", headers={"X-CSRF-Token": token})
    assert response.status_code == 200, response.text
    assert not await logged_in(client)


async def test_cookie_post_with_token_form_field_passes(client: httpx.AsyncClient) -> None:
    token = await cookie_login(client)
    assert_csrf_refused(await client.post("/auth/logout", data={"csrf_token": "wrong"}))
    response = await client.post("/auth/logout", data={"csrf_token": token})
    assert response.status_code == 200, response.text


async def test_same_origin_headers_pass(client: httpx.AsyncClient, settings: Settings) -> None:
    token = await cookie_login(client)
    headers = {"X-CSRF-Token": token, "Origin": settings.public_url, "Referer": settings.public_url + "/settings"}
    assert (await client.post("/auth/logout", headers=headers)).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{"Origin": FOREIGN}, {"Referer": FOREIGN + "/page"}, {"Origin": "null"}, {"Origin": "http://127.0.0.1:9999"}],
)
async def test_foreign_origin_is_refused_even_with_the_token(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    token = await cookie_login(client)
    assert_csrf_refused(await client.post("/auth/logout", headers={"X-CSRF-Token": token, **headers}))
    assert await logged_in(client)


async def test_bearer_requests_are_exempt(client: httpx.AsyncClient) -> None:
    await cookie_login(client)  # the browser cookies are there too: the header decides
    body = (await client.post("/auth/dev-login", json={"login": unique_handle("csrf")})).json()
    headers = {"Authorization": f"Bearer {body['access_token']}", "Origin": FOREIGN}
    assert (await client.post("/auth/logout", headers=headers)).status_code == 200
    assert (await client.get("/api/me", headers=headers)).status_code == 401  # that session, not the cookie's, ended


async def test_safe_methods_need_no_token(client: httpx.AsyncClient) -> None:
    await cookie_login(client)
    assert (await client.get("/api/me", headers={"Origin": FOREIGN})).status_code == 200


async def test_unauthenticated_auth_endpoints_check_the_origin(client: httpx.AsyncClient, settings: Settings) -> None:
    refused = await client.post("/auth/dev-login", json={"login": unique_handle("csrf")}, headers={"Origin": FOREIGN})
    assert_csrf_refused(refused)
    assert "set-cookie" not in refused.headers  # a foreign page cannot log the browser in as someone
    await cookie_login(client)
    assert_csrf_refused(await client.post("/auth/refresh", headers={"Origin": FOREIGN}))
    ok = await client.post("/auth/refresh", headers={"Origin": settings.public_url})
    assert ok.status_code == 200, ok.text


async def echo(request: Request) -> Response:
    """An endpoint in the style of ours: require the viewer, then read the form."""
    viewer = await require_viewer(request)
    form = await request.form()
    return JSONResponse({"user_id": viewer.user_id, "note": form.get("note"), "method": request.method})


@pytest.fixture
async def echo_client(app: Starlette, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A tiny app sharing the gateway's clients, with one form endpoint behind `require_viewer`."""
    mini = Starlette(
        routes=[Route("/echo", echo, methods=["POST", "PUT", "PATCH", "DELETE"])],
        exception_handlers=app.exception_handlers,
    )
    mini.state.chirp = app.state.chirp
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=mini), base_url=settings.public_url) as http:
        yield http


async def test_the_endpoint_still_reads_the_form(client: httpx.AsyncClient, echo_client: httpx.AsyncClient) -> None:
    token = await cookie_login(client)
    echo_client.cookies = client.cookies
    urlencoded = await echo_client.post("/echo", data={"csrf_token": token, "note": "hello"})
    assert urlencoded.status_code == 200, urlencoded.text
    assert urlencoded.json()["note"] == "hello"
    multipart = await echo_client.post("/echo", data={"csrf_token": token, "note": "hi"}, files={"f": b"x"})
    assert multipart.status_code == 200 and multipart.json()["note"] == "hi"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_every_unsafe_method_is_checked(
    client: httpx.AsyncClient, echo_client: httpx.AsyncClient, method: str
) -> None:
    token = await cookie_login(client)
    echo_client.cookies = client.cookies
    assert_csrf_refused(await echo_client.request(method, "/echo"))
    passed = await echo_client.request(method, "/echo", headers={"X-CSRF-Token": token})
    assert passed.status_code == 200 and passed.json()["method"] == method

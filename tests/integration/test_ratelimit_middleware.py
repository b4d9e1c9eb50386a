"""`RateLimitMiddleware` over HTTP: bursts past a limit get 429 with Retry-After, other users and addresses do not.

Tiny limits live only in this module's own app; each test comes from its own loopback address (the ASGI `client`,
no traffic leaves the process), so no bucket here is shared with another test.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx
import pytest
from starlette.applications import Starlette

from chirp.settings import Settings
from gateway.app import create_app
from gateway.ratelimit import IP_LIMITS, LIMITS, Limit, action_for, limits_from
from tests.integration.helpers import count_redis_round_trips, unique_handle

Client = Callable[[], AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture(scope="module")
async def tight_app(settings: Settings) -> AsyncIterator[Starlette]:
    tight = settings.model_copy(
        update={
            "ratelimit_scale": 1.0,
            "ratelimits": {"post": (0.001, 2), "login": (0.001, 50), "report": (0.001, 2)},
            "ratelimits_ip": {"post": (0.001, 4), "login": (0.001, 3)},
        }
    )
    app = create_app(tight)
    async with app.router.lifespan_context(app):
        yield app


def new_address() -> str:
    return f"127.{random.randrange(1, 255)}.{random.randrange(0, 255)}.{random.randrange(1, 255)}"


@pytest.fixture
def from_address(tight_app: Starlette, settings: Settings) -> Callable[[str], Client]:
    """Clients of the tight app coming from a given address."""

    def make(address: str) -> Client:
        @asynccontextmanager
        async def client() -> AsyncIterator[httpx.AsyncClient]:
            transport = httpx.ASGITransport(app=tight_app, client=(address, 40000))
            async with httpx.AsyncClient(transport=transport, base_url=settings.public_url) as http:
                yield http

        return client

    return make


async def bearer_login(http: httpx.AsyncClient) -> dict[str, str]:
    response = await http.post("/auth/dev-login", json={"login": unique_handle("rl")})
    assert response.status_code == 200, response.text
    http.cookies.clear()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def assert_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(response.headers["retry-after"]) <= 1000  # a token every 1000 s
    assert response.headers["x-request-id"]  # the outer middleware still wraps the refusal


async def test_logins_per_address(from_address: Callable[[str], Client]) -> None:
    address = new_address()
    async with from_address(address)() as http:
        statuses = [
            (await http.post("/auth/dev-login", json={"login": unique_handle("rl")})).status_code for _ in range(3)
        ]
        assert statuses == [200, 200, 200]
        assert_limited(await http.post("/auth/dev-login", json={"login": unique_handle("rl")}))
        # Every login route shares the bucket: refresh and the GitHub redirect too.
        assert_limited(await http.post("/auth/refresh"))
        assert_limited(await http.get("/auth/github/login"))
        assert_limited(await http.get("/auth/github/callback"))
    async with from_address(new_address())() as other:
        assert (await other.post("/auth/dev-login", json={"login": unique_handle("rl")})).status_code == 200


async def test_posts_per_user_leave_other_users_alone(from_address: Callable[[str], Client]) -> None:
    async with from_address(new_address())() as http:
        ada, bob = await bearer_login(http), await bearer_login(http)
        for _ in range(2):
            assert (await http.post("/api/posts", json={"body": "hello"}, headers=ada)).status_code == 202
        assert_limited(await http.post("/api/posts", json={"body": "one more"}, headers=ada))
        # Same address, another person: their own bucket is full.
        assert (await http.post("/api/posts", json={"body": "hi"}, headers=bob)).status_code == 202
        # Reading is never limited.
        assert (await http.get("/api/me", headers=ada)).status_code == 200


async def test_an_address_is_limited_across_its_users(from_address: Callable[[str], Client]) -> None:
    address = new_address()
    async with from_address(address)() as http:
        users = [await bearer_login(http) for _ in range(3)]
        codes = [(await http.post("/api/posts", json={"body": "x"}, headers=u)).status_code for u in users]
        codes += [(await http.post("/api/posts", json={"body": "y"}, headers=users[0])).status_code]
        assert codes == [202, 202, 202, 202]  # four from this address: its burst
        assert_limited(await http.post("/api/posts", json={"body": "z"}, headers=users[1]))
    async with from_address(new_address())() as elsewhere:
        assert (await elsewhere.post("/api/posts", json={"body": "x"}, headers=users[2])).status_code == 202


async def test_anonymous_and_bad_tokens_pay_per_address_and_get_their_401(
    from_address: Callable[[str], Client],
) -> None:
    async with from_address(new_address())() as http:
        bad = {"Authorization": "Bearer garbage"}
        codes = [(await http.post("/api/posts", json={"body": "x"}, headers=bad)).status_code for _ in range(4)]
        assert codes == [401, 401, 401, 401]
        assert_limited(await http.post("/api/posts", json={"body": "x"}))


async def test_reports_per_user(from_address: Callable[[str], Client]) -> None:
    async with from_address(new_address())() as http:
        ada, bob = await bearer_login(http), await bearer_login(http)
        report = {"handle": "nobody-at-all", "reason": "spam"}
        codes = [(await http.post("/api/reports", json=report, headers=ada)).status_code for _ in range(2)]
        assert codes == [422, 422]  # tried and refused (no such user): they count all the same
        assert_limited(await http.post("/api/reports", json=report, headers=ada))
        assert (await http.post("/api/reports", json=report, headers=bob)).status_code == 422


def test_rule_table() -> None:
    assert action_for("POST", "/api/posts") == "post"
    assert action_for("GET", "/api/posts") is None
    assert action_for("POST", "/api/posts/01J0/replies") is None
    assert action_for("PATCH", "/api/posts/01J0") == "post"
    assert action_for("POST", "/api/reports") == "report"
    assert action_for("POST", "/api/users/ada/follow") == "follow"
    assert action_for("DELETE", "/api/users/ada/follow") == "follow"
    assert action_for("GET", "/api/users/ada/follow") is None
    assert action_for("POST", "/api/users/ada/followers") is None
    for method, path in [
        ("POST", "/auth/dev-login"),
        ("GET", "/auth/github/login"),
        ("GET", "/auth/github/callback"),
        ("POST", "/auth/refresh"),
    ]:
        assert action_for(method, path) == "login"
    assert action_for("POST", "/auth/logout") is None


def test_limits_scale_outside_prod(settings: Settings) -> None:
    prod_user, prod_ip = limits_from(settings.model_copy(update={"env": "prod"}))
    assert prod_user["post"] == LIMITS["post"] and prod_ip["login"] == IP_LIMITS["login"]
    dev_user, dev_ip = limits_from(settings.model_copy(update={"env": "dev"}))
    assert dev_ip["login"].burst == 1000 * IP_LIMITS["login"].burst
    assert dev_user["post"].rate_per_s == pytest.approx(1000 * LIMITS["post"].rate_per_s)
    custom, _ = limits_from(settings.model_copy(update={"ratelimit_scale": 2.0, "ratelimits": {"post": (1.0, 3)}}))
    assert custom["post"] == Limit(rate_per_s=2.0, burst=6)


async def test_a_limited_post_checks_its_viewer_and_spends_its_buckets_in_one_round_trip(
    tight_app: Starlette, from_address: Callable[[str], Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with from_address(new_address())() as http:
        ada = await bearer_login(http)
        taken = count_redis_round_trips(tight_app.state.chirp, monkeypatch)
        assert (await http.post("/api/posts", json={"body": "hello"}, headers=ada)).status_code == 202
        assert len(taken) == 1, "the session check and the rate limit script share one round trip"
        assert (await http.post("/api/posts", json={"body": "again"}, headers=ada)).status_code == 202
        assert_limited(await http.post("/api/posts", json={"body": "over"}, headers=ada))
        assert len(taken) == 3

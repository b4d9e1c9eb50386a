"""Login with GitHub end to end: our gateway, the local fake GitHub over real HTTP, Redis, Kafka and PostgreSQL.

Every refused login is followed by a good one for the same GitHub account, and the events on the topics are read
back: the good login's request id is the only correlation id they carry, so a refused login published nothing.
"""

from __future__ import annotations

import base64
import hashlib
import random
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlencode, urlsplit

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from starlette.applications import Starlette

from chirp.settings import Settings
from gateway.app import create_app
from schemas import topics
from schemas.events import Event, UserProfileSynced, UserRegistered, new_id
from store.users import PostgresUsersReadModel, ProfileChange
from tests.conftest import eventually
from tests.fakes.github import FakeGitHub, GitHubUser
from tests.integration.helpers import opened

SESSION_COOKIES = ("chirp_access", "chirp_refresh", "chirp_csrf")
HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
JSON = {"Accept": "application/json"}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGitHub]:
    with FakeGitHub() as server:
        yield server


@pytest.fixture(scope="module")
def gh_settings(fake: FakeGitHub) -> Settings:
    return Settings(**fake.settings_overrides())


@pytest.fixture(scope="module")
async def gh_app(gh_settings: Settings) -> AsyncIterator[Starlette]:
    app = create_app(gh_settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
def github(fake: FakeGitHub) -> FakeGitHub:
    fake.reset()
    return fake


@pytest.fixture
async def browser(gh_app: Starlette, gh_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A browser on our site: it keeps cookies and does not follow redirects (the test plays GitHub's part)."""
    async with _browser(gh_app, gh_settings) as client:
        yield client


@asynccontextmanager
async def _browser(app: Starlette, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=settings.public_url, headers=HTML) as client:
        yield client


class Tail:
    """Reads the user topics from the moment it was opened."""

    def __init__(self, consumer: AIOKafkaConsumer, pg: asyncpg.Pool) -> None:
        self._consumer = consumer
        self._pg = pg
        self.seen: list[Event] = []

    async def until(self, predicate: Callable[[Event], bool], timeout: float = 30) -> Event:
        """The first event read so far or within `timeout` that matches `predicate`."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.seen:
                if predicate(event):
                    return event
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching event within {timeout}s; read {self.seen!r}")
            for records in (await self._consumer.getmany(timeout_ms=200)).values():
                self.seen.extend(await opened(self._pg, records))  # their personal fields are sealed

    def of(self, user_id: str, kind: type[Event]) -> list[Event]:
        return [e for e in self.seen if isinstance(e, kind) and e.payload.user_id == user_id]


@pytest.fixture
async def tail(settings: Settings, pg: asyncpg.Pool) -> AsyncIterator[Tail]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(
            [
                TopicPartition(topic.name, p)
                for topic in (topics.USER_REGISTERED, topics.USER_PROFILE_SYNCED)
                for p in range(topic.partitions)
            ]
        )
        await consumer.seek_to_end()
        for tp in consumer.assignment():
            await consumer.position(tp)  # fix the start now, before anything is published
        yield Tail(consumer, pg)
    finally:
        await consumer.stop()


def new_person(**fields: object) -> GitHubUser:
    """A GitHub account no other test uses."""
    github_id = random.randrange(10**9, 10**12)
    login = f"gh-{new_id()[-10:].lower()}"
    values: dict[str, object] = {"id": github_id, "login": login, "name": f"Person {login}", **fields}
    return GitHubUser(
        **values,  # type: ignore[arg-type]
        avatar_url=f"https://avatars.githubusercontent.com/u/{github_id}?v=4",
    )


async def start(browser: httpx.AsyncClient) -> str:
    """Press "Log in with GitHub": the authorize URL we are sent to."""
    response = await browser.get("/auth/github/login")
    assert response.status_code == 302, response.text
    return response.headers["location"]


async def at_github(url: str, settings: Settings) -> str:
    """Follow the authorize URL at (fake) GitHub; the callback path and query it sends the browser back to."""
    async with httpx.AsyncClient() as http:
        response = await http.get(url)
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    prefix = settings.public_url + "/auth/github/callback?"
    assert location.startswith(prefix), location
    return location.removeprefix(settings.public_url)


async def log_in(browser: httpx.AsyncClient, settings: Settings, request_id: str) -> httpx.Response:
    """The whole round trip; the callback's response."""
    callback = await at_github(await start(browser), settings)
    return await browser.get(callback, headers={"X-Request-ID": request_id})


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def with_query(path: str, **changes: str | None) -> str:
    query = {**query_of(path), **changes}
    return urlsplit(path).path + "?" + urlencode({k: v for k, v in query.items() if v is not None})


def set_cookie_names(response: httpx.Response) -> set[str]:
    return {c.split("=", 1)[0] for c in response.headers.get_list("set-cookie")}


# What each refusal tells the person, in the page or the JSON message.
PHRASES = {
    "bad_state": "expired or was already used",
    "bad_code": "already used or has expired",
    "access_denied": "declined",
    "github_unavailable": "not answering",
    "not_configured": "not set up",
}


def assert_refused(response: httpx.Response, status: int, code: str, *, as_json: bool = False) -> None:
    """Refused with the right error, as a page or as JSON, and without a session."""
    assert response.status_code == status, response.text
    assert not set_cookie_names(response) & set(SESSION_COOKIES)
    assert response.headers["cache-control"] == "no-store"
    if as_json:
        assert response.headers["content-type"].startswith("application/json")
        error = response.json()["error"]
        assert error["code"] == code and PHRASES[code] in error["message"]
    else:
        assert response.headers["content-type"].startswith("text/html")
        assert "<h1" in response.text and PHRASES[code] in response.text


async def assert_only_published_by(tail: Tail, github_id: int, request_id: str) -> None:
    """`request_id`'s login registered `github_id`; no earlier (refused) request published anything for them."""
    event = await tail.until(lambda e: isinstance(e, UserRegistered) and e.correlation_id == request_id)
    assert isinstance(event, UserRegistered) and event.payload.github_id == github_id
    user_id = event.payload.user_id
    # Same key, same partition: anything a refused login had published would have been read before it.
    published = tail.of(user_id, UserRegistered) + tail.of(user_id, UserProfileSynced)
    assert [e.correlation_id for e in published] == [request_id]


# The happy paths ------------------------------------------------------------------------------------------------


async def test_login_redirects_to_github_with_state_and_pkce(
    browser: httpx.AsyncClient, gh_app: Starlette, gh_settings: Settings, github: FakeGitHub
) -> None:
    response = await browser.get("/auth/github/login")
    assert response.status_code == 302 and response.headers["cache-control"] == "no-store"
    url = response.headers["location"]
    assert url.startswith(gh_settings.github_authorize_url + "?")
    query = query_of(url)
    assert query["client_id"] == gh_settings.github_client_id
    assert query["redirect_uri"] == gh_settings.public_url + "/auth/github/callback"
    assert query["response_type"] == "code" and query["scope"] == "read:user user:email"
    assert query["code_challenge_method"] == "S256" and len(query["state"]) >= 43
    # The state is kept server-side, briefly, with the verifier whose S256 is the challenge sent.
    redis = gh_app.state.chirp.redis
    key = f"chirp:oauth:{query['state']}"
    assert 0 < await redis.ttl(key) <= gh_settings.oauth_state_seconds
    verifier = orjson.loads(await redis.get(key))["verifier"]
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert query["code_challenge"] == challenge
    binding = next(c for c in response.headers.get_list("set-cookie") if c.startswith("chirp_oauth="))
    assert "HttpOnly" in binding and "Path=/auth/github" in binding and "SameSite=lax" in binding
    # A second login in the same browser gets a new state but keeps the browser binding (two tabs both work).
    again = await browser.get("/auth/github/login")
    assert query_of(again.headers["location"])["state"] != query["state"]
    first_value = binding.split(";")[0]
    assert next(c for c in again.headers.get_list("set-cookie") if c.startswith("chirp_oauth=")).split(";")[0] == (
        first_value
    )


async def test_first_login_registers_and_opens_a_session(
    browser: httpx.AsyncClient, gh_settings: Settings, github: FakeGitHub, tail: Tail
) -> None:
    person = new_person(email="person@example.org")
    github.next_user = person
    request_id = f"ok-{new_id()}"
    response = await log_in(browser, gh_settings, request_id)
    assert response.status_code == 303 and response.headers["location"] == "/"
    assert set(SESSION_COOKIES) <= set_cookie_names(response)
    access = next(c for c in response.headers.get_list("set-cookie") if c.startswith("chirp_access="))
    assert "HttpOnly" in access and "SameSite=lax" in access

    me = await browser.get("/api/me", headers=JSON)
    assert me.status_code == 200, me.text
    user_id = me.json()["user_id"]
    assert str(person.id) not in user_id and me.json()["handle"] == person.login, "user ids are opaque"

    event = await tail.until(lambda e: isinstance(e, UserRegistered) and e.payload.user_id == user_id)
    assert isinstance(event, UserRegistered)
    assert event.correlation_id == request_id and event.actor == user_id
    payload = event.payload
    assert (payload.github_id, payload.handle, payload.display_name, payload.avatar_url) == (
        person.id,
        person.login,
        person.name,
        person.avatar_url,
    )


async def test_an_account_made_before_opaque_ids_keeps_its_id(
    browser: httpx.AsyncClient, gh_app: Starlette, gh_settings: Settings, github: FakeGitHub
) -> None:
    person = new_person()
    legacy = f"gh-{person.id}"  # how user ids were made before they were opaque; no login_accounts row
    change = ProfileChange(legacy, datetime.now(UTC), handle=person.login, github_id=person.id, registered=True)
    await PostgresUsersReadModel(gh_app.state.chirp.pg).apply_profiles([change])
    github.next_user = person
    assert (await log_in(browser, gh_settings, f"ok-{new_id()}")).status_code == 303
    assert (await browser.get("/api/me", headers=JSON)).json()["user_id"] == legacy


async def test_a_person_without_a_name_is_named_by_their_login(
    browser: httpx.AsyncClient, gh_settings: Settings, github: FakeGitHub, tail: Tail
) -> None:
    person = new_person(name=None, email=None)
    github.next_user = person
    assert (await log_in(browser, gh_settings, f"ok-{new_id()}")).status_code == 303
    event = await tail.until(lambda e: isinstance(e, UserRegistered) and e.payload.github_id == person.id)
    assert event.payload.display_name == person.login


async def test_later_logins_sync_a_changed_profile(
    browser: httpx.AsyncClient,
    gh_app: Starlette,
    gh_settings: Settings,
    github: FakeGitHub,
    tail: Tail,
    pipeline: subprocess.Popen[bytes],
) -> None:
    person = new_person()
    pg = gh_app.state.chirp.pg
    user_id = ""

    async def row() -> dict[str, object] | None:
        found = await pg.fetchrow("SELECT handle, display_name, avatar_url FROM users WHERE user_id = $1", user_id)
        return dict(found) if found else None

    github.next_user = person
    first = f"first-{new_id()}"
    assert (await log_in(browser, gh_settings, first)).status_code == 303
    user_id = (await browser.get("/api/me", headers=JSON)).json()["user_id"]
    await eventually(row, until=lambda r: r is not None and r["display_name"] == person.name, timeout=60)

    renamed = GitHubUser(id=person.id, login=person.login, name="A New Name", avatar_url=person.avatar_url)
    github.next_user = renamed
    second = f"second-{new_id()}"
    assert (await log_in(browser, gh_settings, second)).status_code == 303
    synced = await tail.until(lambda e: isinstance(e, UserProfileSynced) and e.correlation_id == second)
    assert (synced.payload.user_id, synced.payload.handle, synced.payload.display_name) == (
        user_id,
        person.login,
        "A New Name",
    )
    await eventually(row, until=lambda r: r is not None and r["display_name"] == "A New Name", timeout=60)

    third = f"third-{new_id()}"  # nothing changed at GitHub: nothing to publish
    assert (await log_in(browser, gh_settings, third)).status_code == 303

    new_login = f"gh-{new_id()[-10:].lower()}"
    moved = GitHubUser(id=person.id, login=new_login, name="A New Name", avatar_url="https://example.org/new.png")
    github.next_user = moved
    fourth = f"fourth-{new_id()}"
    assert (await log_in(browser, gh_settings, fourth)).status_code == 303
    synced = await tail.until(lambda e: isinstance(e, UserProfileSynced) and e.correlation_id == fourth)
    assert (synced.payload.handle, synced.payload.avatar_url) == (new_login, "https://example.org/new.png")
    assert (await browser.get("/api/me", headers=JSON)).json()["user_id"] == user_id

    assert [e.correlation_id for e in tail.of(user_id, UserRegistered)] == [first]
    assert [e.correlation_id for e in tail.of(user_id, UserProfileSynced)] == [second, fourth]
    await eventually(row, until=lambda r: r is not None and r["handle"] == new_login, timeout=60)

    # A name chosen in Chirp stays through later logins; the avatar still follows GitHub.
    csrf = {**JSON, "X-CSRF-Token": browser.cookies["chirp_csrf"], "Origin": gh_settings.public_url}
    assert (await browser.patch("/api/me", json={"display_name": "Mine"}, headers=csrf)).status_code == 202
    await eventually(row, until=lambda r: r is not None and r["display_name"] == "Mine", timeout=60)
    github.next_user = GitHubUser(
        id=person.id, login=new_login, name="GitHub Name", avatar_url="https://example.org/3.png"
    )
    assert (await log_in(browser, gh_settings, f"fifth-{new_id()}")).status_code == 303
    after = await eventually(row, until=lambda r: r is not None and r["avatar_url"].endswith("/3.png"), timeout=60)
    assert after is not None and after["display_name"] == "Mine"


# The refusals ---------------------------------------------------------------------------------------------------


async def test_callback_without_state(
    browser: httpx.AsyncClient, gh_settings: Settings, github: FakeGitHub, tail: Tail
) -> None:
    person = github.next_user = new_person()
    callback = await at_github(await start(browser), gh_settings)
    for accept, as_json in ((HTML, False), (JSON, True)):
        refused = await browser.get(with_query(callback, state=None), headers={**accept, "X-Request-ID": "fail-1"})
        assert_refused(refused, 400, "bad_state", as_json=as_json)
    ok = f"ok-{new_id()}"
    assert (await browser.get(callback, headers={"X-Request-ID": ok})).status_code == 303
    await assert_only_published_by(tail, person.id, ok)


async def test_callback_with_a_wrong_state(
    browser: httpx.AsyncClient, gh_settings: Settings, github: FakeGitHub, tail: Tail
) -> None:
    person = github.next_user = new_person()
    callback = await at_github(await start(browser), gh_settings)
    forged = with_query(callback, state="forged-" + new_id())
    assert_refused(await browser.get(forged, headers={"X-Request-ID": "fail-2"}), 400, "bad_state")
    ok = f"ok-{new_id()}"
    assert (await browser.get(callback, headers={"X-Request-ID": ok})).status_code == 303
    await assert_only_published_by(tail, person.id, ok)


async def test_state_only_completes_in_the_browser_that_started(
    browser: httpx.AsyncClient, gh_app: Starlette, gh_settings: Settings, github: FakeGitHub, tail: Tail
) -> None:
    github.next_user = new_person()
    callback = await at_github(await start(browser), gh_settings)
    async with _browser(gh_app, gh_settings) as victim:  # someone lured into finishing another person's login
        assert_refused(await victim.get(callback, headers={"X-Request-ID": "fail-3"}), 400, "bad_state")
    # The attempt spent the state: the browser that started must start again.
    assert_refused(await browser.get(callback, headers=JSON), 400, "bad_state", as_json=True)


async def test_state_is_single_use(
    browser: httpx.AsyncClient, gh_settings: Settings, github: FakeGitHub, tail: Tail
) -> None:
    person = github.next_user = new_person()
    callback = await at_github(await start(browser), gh_settings)
    ok = f"ok-{new_id()}"
    assert (await browser.get(callback, headers={"X-Request-ID": ok})).status_code == 303
    assert_refused(await browser.get(callback, headers={"X-Request-ID": "fail-4"}), 400, "bad_state")
    await assert_only_published_by(tail, person.id, ok)


async def test_a_reused_code_is_refused(
    browser: httpx.AsyncClient, gh_settings: Settings, github: FakeGitHub, tail: Tail
) -> None:
    person = github.next_user = new_person()
    used = await at_github(await start(browser), gh_settings)
    ok = f"ok-{new_id()}"
    assert (await browser.get(used, headers={"X-Request-ID": ok})).status_code == 303
    # A fresh, valid state carrying the code already traded: GitHub refuses it, so do we.
    fresh = await at_github(await start(browser), gh_settings)
    replay = with_query(fresh, code=query_of(used)["code"])
    assert_refused(await browser.get(replay, headers={"X-Request-ID": "fail-5"}), 400, "bad_code")
    await assert_only_published_by(tail, person.id, ok)


async def test_denied_consent(
    browser: httpx.AsyncClient, gh_settings: Settings, github: FakeGitHub, tail: Tail
) -> None:
    person = github.next_user = new_person()
    github.deny_next = True
    denied = await at_github(await start(browser), gh_settings)
    assert query_of(denied)["error"] == "access_denied" and "code" not in query_of(denied)
    assert_refused(await browser.get(denied, headers={"X-Request-ID": "fail-6"}), 403, "access_denied")
    ok = f"ok-{new_id()}"
    assert (await log_in(browser, gh_settings, ok)).status_code == 303
    await assert_only_published_by(tail, person.id, ok)


async def test_github_down(browser: httpx.AsyncClient, gh_settings: Settings, github: FakeGitHub, tail: Tail) -> None:
    person = github.next_user = new_person()
    callback = await at_github(await start(browser), gh_settings)
    github.down = True  # after the code was issued: the token exchange gets a 503
    assert_refused(await browser.get(callback, headers={"X-Request-ID": "fail-7"}), 502, "github_unavailable")
    github.down = False
    ok = f"ok-{new_id()}"
    assert (await log_in(browser, gh_settings, ok)).status_code == 303
    await assert_only_published_by(tail, person.id, ok)


async def test_github_unreachable(settings: Settings) -> None:
    gone = FakeGitHub().start()
    gone.stop()  # nothing listens on its port any more
    app = create_app(Settings(**gone.settings_overrides()))
    async with app.router.lifespan_context(app), _browser(app, settings) as browser:
        url = await start(browser)
        callback = with_query("/auth/github/callback?", state=query_of(url)["state"], code="anything")
        assert_refused(await browser.get(callback, headers=JSON), 502, "github_unavailable", as_json=True)


async def test_not_configured(client: httpx.AsyncClient, settings: Settings) -> None:
    assert not settings.github_client_id
    response = await client.get("/auth/github/login", headers=JSON)
    assert_refused(response, 503, "not_configured", as_json=True)

"""The fake GitHub speaks the OAuth web flow (with PKCE) and the user API the way the real one does."""

from __future__ import annotations

import base64
import hashlib
import secrets
import warnings
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from authlib.deprecate import AuthlibDeprecationWarning

from tests.fakes import FakeGitHub, GitHubUser

with warnings.catch_warnings():
    # authlib 1.9 warns on import when it falls back from httpx2 to httpx; the client works the same.
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import OAuth2Client

CALLBACK = "http://127.0.0.1:8000/auth/github/callback"
# RFC 7636 Appendix B.
VERIFIER, CHALLENGE = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeGitHub]:
    with FakeGitHub(redirect_uri=CALLBACK) as fake:
        yield fake


@pytest.fixture
def fake(server: FakeGitHub) -> FakeGitHub:
    server.reset()
    return server


@pytest.fixture
def http(fake: FakeGitHub) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.url, follow_redirects=False) as client:
        yield client


def _authorize(http: httpx.Client, fake: FakeGitHub, **override: str) -> httpx.Response:
    params = {
        "client_id": fake.client_id,
        "redirect_uri": CALLBACK,
        "scope": "read:user user:email",
        "state": "st-123",
        "code_challenge": CHALLENGE,
        "code_challenge_method": "S256",
        **override,
    }
    return http.get("/login/oauth/authorize", params={k: v for k, v in params.items() if v})


def _code(http: httpx.Client, fake: FakeGitHub) -> str:
    response = _authorize(http, fake)
    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(CALLBACK + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == ["st-123"]
    return query["code"][0]


def _exchange(
    http: httpx.Client, fake: FakeGitHub, code: str, *, json: bool = True, override: dict[str, str] | None = None
) -> httpx.Response:
    data = {
        "client_id": fake.client_id,
        "client_secret": fake.client_secret,
        "code": code,
        "redirect_uri": CALLBACK,
        "code_verifier": VERIFIER,
        **(override or {}),
    }
    headers = {"Accept": "application/json"} if json else {}
    return http.post("/login/oauth/access_token", data=data, headers=headers)


def test_full_flow(fake: FakeGitHub, http: httpx.Client) -> None:
    fake.next_user = GitHubUser(id=42, login="ada", name="Ada Lovelace", email="ada@example.org")
    code = _code(http, fake)
    body = _exchange(http, fake, code).json()
    assert body["token_type"] == "bearer" and body["scope"] == "read:user,user:email"
    assert body["access_token"].startswith("gho_")
    auth = {"Authorization": f"Bearer {body['access_token']}"}
    user = http.get("/user", headers=auth).json()
    assert (user["id"], user["login"], user["name"]) == (42, "ada", "Ada Lovelace")
    assert user["avatar_url"].startswith("https://")
    emails = http.get("/user/emails", headers={"Authorization": f"token {body['access_token']}"}).json()
    assert {"email": "ada@example.org", "primary": True, "verified": True, "visibility": "public"} in emails
    reused = _exchange(http, fake, code)
    assert reused.status_code == 200 and reused.json()["error"] == "bad_verification_code"


def test_form_encoded_answer_without_json_accept(fake: FakeGitHub, http: httpx.Client) -> None:
    response = _exchange(http, fake, _code(http, fake), json=False)
    assert response.headers["content-type"].startswith("application/x-www-form-urlencoded")
    body = parse_qs(response.text)
    assert body["token_type"] == ["bearer"] and body["access_token"][0].startswith("gho_")
    again = parse_qs(_exchange(http, fake, "nope", json=False).text)
    assert again["error"] == ["bad_verification_code"]


def test_client_credentials_by_basic_auth(fake: FakeGitHub, http: httpx.Client) -> None:
    data = {"code": _code(http, fake), "code_verifier": VERIFIER}
    response = http.post(
        "/login/oauth/access_token",
        data=data,
        auth=(fake.client_id, fake.client_secret),
        headers={"Accept": "application/json"},
    )
    assert "access_token" in response.json()


@pytest.mark.parametrize(
    ("override", "error"),
    [
        ({"client_secret": "wrong"}, "incorrect_client_credentials"),
        ({"client_id": "someone"}, "incorrect_client_credentials"),
        ({"code_verifier": "a" * 43}, "bad_verification_code"),
        ({"redirect_uri": "http://127.0.0.1:9/elsewhere"}, "redirect_uri_mismatch"),
    ],
)
def test_token_errors(fake: FakeGitHub, http: httpx.Client, override: dict[str, str], error: str) -> None:
    assert _exchange(http, fake, _code(http, fake), override=override).json()["error"] == error


def test_authorize_validates_its_request(fake: FakeGitHub, http: httpx.Client) -> None:
    assert _authorize(http, fake, client_id="unknown").status_code == 404
    assert _authorize(http, fake, redirect_uri="https://evil.example/cb").status_code == 400
    assert _authorize(http, fake, state="").status_code == 400
    assert _authorize(http, fake, code_challenge="").status_code == 400
    assert _authorize(http, fake, code_challenge_method="plain").status_code == 400


def test_denied_authorization(fake: FakeGitHub, http: httpx.Client) -> None:
    fake.deny_next = True
    query = parse_qs(urlsplit(_authorize(http, fake).headers["location"]).query)
    assert query["error"] == ["access_denied"] and query["state"] == ["st-123"] and "code" not in query
    assert _authorize(http, fake).status_code == 302 and "code=" in _authorize(http, fake).headers["location"]


def test_down(fake: FakeGitHub, http: httpx.Client) -> None:
    fake.down = True
    assert _authorize(http, fake).status_code == 503
    assert _exchange(http, fake, "x").status_code == 503
    assert http.get("/user", headers={"Authorization": "Bearer x"}).status_code == 503


def test_api_errors(fake: FakeGitHub, http: httpx.Client) -> None:
    bad = http.get("/user", headers={"Authorization": "Bearer gho_nope"})
    assert bad.status_code == 401 and bad.json()["message"] == "Bad credentials"
    assert http.get("/user").status_code == 401
    response = _authorize(http, fake, scope="read:user")
    code = parse_qs(urlsplit(response.headers["location"]).query)["code"][0]
    token = _exchange(http, fake, code).json()["access_token"]
    assert http.get("/user/emails", headers={"Authorization": f"Bearer {token}"}).status_code == 404


def test_user_without_public_email(fake: FakeGitHub, http: httpx.Client) -> None:
    fake.next_user = GitHubUser(id=7, login="quiet", name=None, email=None)
    token = _exchange(http, fake, _code(http, fake)).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    assert http.get("/user", headers=auth).json()["email"] is None
    (email,) = http.get("/user/emails", headers=auth).json()
    assert email == {"email": "7+quiet@users.noreply.github.com", "primary": True, "verified": True, "visibility": None}


def test_authlib_client_completes_the_flow(fake: FakeGitHub, http: httpx.Client) -> None:
    verifier = secrets.token_urlsafe(48)
    settings = fake.settings_overrides()
    with OAuth2Client(
        settings["github_client_id"],
        settings["github_client_secret"],
        redirect_uri=CALLBACK,
        scope="read:user user:email",
        code_challenge_method="S256",
    ) as client:
        url, _ = client.create_authorization_url(settings["github_authorize_url"], code_verifier=verifier)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        assert parse_qs(urlsplit(url).query)["code_challenge"] == [challenge]
        callback = http.get(url).headers["location"]
        token = client.fetch_token(
            settings["github_token_url"], authorization_response=callback, code_verifier=verifier
        )
        assert token["access_token"].startswith("gho_")
        user = client.get(f"{settings['github_api_url']}/user").json()
    assert user["login"] == "octocat"


def test_stop_frees_the_port() -> None:
    fake = FakeGitHub().start()
    url = fake.url
    fake.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/user")

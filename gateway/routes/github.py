"""Login with GitHub: the OAuth web flow with `state` and PKCE (S256), ending in `login_user`.

`GET /auth/github/login` keeps `{code_verifier, browser}` in Redis under a fresh `state` for `oauth_state_seconds`
and redirects to GitHub. `browser` is the hash of the random `chirp_oauth` cookie, so a callback only completes in
the browser that started it (no login CSRF with someone else's code). `GET /auth/github/callback` takes the record
with GETDEL (single use), trades the code with authlib, reads `/user` and `/user/emails`, publishes, opens a session
and redirects home. Every failure raises `GitHubLoginError` before anything is published or any session opened;
gateway/errors.py turns it into the site's error page for browsers and `{"error": {"code", "message"}}` for API
clients.
"""

from __future__ import annotations

import hashlib
import secrets
import warnings
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from authlib.deprecate import AuthlibDeprecationWarning  # first: importing it installs an "always" filter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from chirp.logging import get_logger
from chirp.settings import Settings
from domain.text import is_handle
from gateway.auth.current import set_session_cookies
from gateway.errors import ApiError
from gateway.routes.account import user_id_for
from gateway.routes.auth import login_user
from gateway.state import state_of
from schemas.events import UserRegistered, UserRegisteredData

with warnings.catch_warnings():
    # authlib 1.9 warns on import when it falls back from httpx2 to httpx; the client works the same.
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.base_client import OAuthError
    from authlib.integrations.httpx_client import AsyncOAuth2Client

log = get_logger("chirp.gateway.github")

BROWSER_COOKIE = "chirp_oauth"
CALLBACK_PATH = "/auth/github/callback"
_STATE_KEY = "chirp:oauth:{}"
_API_HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28", "User-Agent": "chirp"}
_TIMEOUT_S = 10.0


class GitHubLoginError(ApiError):
    """A GitHub login that cannot complete; rendered by gateway/errors.py (a page for browsers, JSON otherwise)."""

    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(message, headers={"Cache-Control": "no-store"})
        self.code, self.status = code, status


def _bad_state() -> GitHubLoginError:
    return GitHubLoginError("bad_state", 400, "This sign-in link has expired or was already used. Please start again.")


def _unavailable() -> GitHubLoginError:
    return GitHubLoginError("github_unavailable", 502, "GitHub is not answering right now. Please try again later.")


@dataclass(frozen=True)
class GitHubProfile:
    github_id: int
    login: str
    name: str
    avatar_url: str
    email: str | None  # the verified primary address, when GitHub shares one


def profile_from(user: Any, emails: Any) -> GitHubProfile:
    """Our view of GitHub's `/user` and `/user/emails` bodies; GitHubLoginError when they make no sense."""
    if not isinstance(user, dict):
        raise _unavailable()
    github_id, login = user.get("id"), user.get("login")
    if not isinstance(github_id, int) or isinstance(github_id, bool) or github_id <= 0:
        raise _unavailable()
    if not isinstance(login, str) or not is_handle(login):
        raise _unavailable()
    name, avatar = user.get("name"), user.get("avatar_url")
    return GitHubProfile(
        github_id,
        login,
        name if isinstance(name, str) and name else login,
        avatar if isinstance(avatar, str) else "",
        _primary_email(emails),
    )


def _primary_email(emails: Any) -> str | None:
    """The verified primary address in a `/user/emails` body, if there is one."""
    for entry in emails if isinstance(emails, list) else []:
        if isinstance(entry, dict) and entry.get("primary") and entry.get("verified"):
            email = entry.get("email")
            return email if isinstance(email, str) else None
    return None


def _redirect_uri(settings: Settings) -> str:
    return settings.public_url.rstrip("/") + CALLBACK_PATH


def _client(settings: Settings) -> AsyncOAuth2Client:
    return AsyncOAuth2Client(
        settings.github_client_id,
        settings.github_client_secret.get_secret_value(),
        token_endpoint_auth_method="client_secret_post",  # what GitHub documents
        scope=settings.github_scope,
        redirect_uri=_redirect_uri(settings),
        code_challenge_method="S256",
        timeout=_TIMEOUT_S,
    )


def _browser_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


async def github_login(request: Request) -> Response:
    """`GET /auth/github/login`: remember a fresh state and PKCE verifier, then redirect to GitHub."""
    state = state_of(request)
    settings = state.settings
    if not settings.github_client_id:
        raise GitHubLoginError("not_configured", 503, "Login with GitHub is not set up here.")
    browser = request.cookies.get(BROWSER_COOKIE) or ""
    if len(browser) < 32:
        browser = secrets.token_urlsafe(32)  # reused while it lives, so two tabs can both log in
    oauth_state, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(64)
    record = orjson.dumps({"verifier": verifier, "browser": _browser_hash(browser)})
    await state.redis.set(_STATE_KEY.format(oauth_state), record, ex=settings.oauth_state_seconds)
    async with _client(settings) as client:
        url, _ = client.create_authorization_url(
            settings.github_authorize_url, state=oauth_state, code_verifier=verifier
        )
    response = RedirectResponse(url, 302, headers={"Cache-Control": "no-store"})
    response.set_cookie(
        BROWSER_COOKIE,
        browser,
        max_age=settings.oauth_state_seconds,
        path="/auth/github",
        httponly=True,
        samesite="lax",  # sent on GitHub's top-level redirect back to us
        secure=settings.public_url.startswith("https://"),
    )
    return response


async def github_callback(request: Request) -> Response:
    """`GET /auth/github/callback`: check the state, trade the code, read the profile, log in, redirect home."""
    profile = await _complete(request)
    state = state_of(request)
    # An account made before ids were opaque keeps its `gh-<id>`; a new one gets an opaque id (docs/erasure.md).
    known = await state.pg.fetchval("SELECT user_id FROM users WHERE github_id = $1", profile.github_id)
    user_id = known or await user_id_for(state.pg, "github", str(profile.github_id))
    registered = UserRegistered(
        actor=user_id,
        payload=UserRegisteredData(
            user_id=user_id,
            github_id=profile.github_id,
            handle=profile.login,
            display_name=profile.name,
            avatar_url=profile.avatar_url,
        ),
    )
    access, refresh = await login_user(state, registered)
    response = RedirectResponse("/", 303, headers={"Cache-Control": "no-store"})
    set_session_cookies(response, state, access, refresh)
    return response


async def _complete(request: Request) -> GitHubProfile:
    """Everything that can fail before we publish: the state, GitHub's answer, the code, the profile."""
    state = state_of(request)
    query = request.query_params
    oauth_state = query.get("state")
    if not oauth_state:
        raise _bad_state()
    raw = await state.redis.getdel(_STATE_KEY.format(oauth_state))
    if raw is None:
        raise _bad_state()
    record = orjson.loads(raw)
    browser = request.cookies.get(BROWSER_COOKIE)
    if not browser or not secrets.compare_digest(_browser_hash(browser), record["browser"]):
        raise _bad_state()
    if query.get("error") == "access_denied":
        raise GitHubLoginError(
            "access_denied", 403, "You declined to share your GitHub account, so you are not logged in."
        )
    if query.get("error"):
        log.warning("github login error", error=query.get("error"), description=query.get("error_description"))
        raise GitHubLoginError("github_error", 502, "GitHub could not complete the sign-in. Please try again.")
    code = query.get("code")
    if not code:
        raise _bad_state()
    return await _fetch_profile(state.settings, code, record["verifier"])


async def _fetch_profile(settings: Settings, code: str, verifier: str) -> GitHubProfile:
    async with _client(settings) as client:
        try:
            await client.fetch_token(
                settings.github_token_url, grant_type="authorization_code", code=code, code_verifier=verifier
            )
            user = await client.get(f"{settings.github_api_url}/user", headers=_API_HEADERS)
            user.raise_for_status()
            emails = await client.get(f"{settings.github_api_url}/user/emails", headers=_API_HEADERS)
            if emails.status_code >= 500:
                emails.raise_for_status()
        except OAuthError as exc:
            if exc.error == "bad_verification_code":
                raise GitHubLoginError(
                    "bad_code", 400, "This sign-in code was already used or has expired. Please start again."
                ) from None
            log.warning("github token refused", error=exc.error, description=exc.description)
            raise GitHubLoginError("github_error", 502, "GitHub refused our sign-in request.") from None
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("github unavailable", error=repr(exc))
            raise _unavailable() from None
    # Without the user:email scope (or with no verified primary address) the list is 403/404: no email, still fine.
    return profile_from(user.json(), emails.json() if emails.is_success else None)


routes = [
    Route("/auth/github/login", github_login, methods=["GET"]),
    Route(CALLBACK_PATH, github_callback, methods=["GET"]),
]

"""A local stand-in for GitHub's OAuth web flow and user API, served by uvicorn on 127.0.0.1 in a thread.

    with FakeGitHub() as fake:
        fake.next_user = GitHubUser(id=7, login="ada", name="Ada", email="ada@example.org")
        settings = Settings(**fake.settings_overrides())

Knobs: `next_user` (who the next authorize logs in as; it stays until changed), `deny_next` (the next authorize
redirects with `error=access_denied`), `down` (every endpoint answers 503). Error shapes follow GitHub's: the token
endpoint answers 200 with `{"error": ...}`, the API 401 with `{"message": "Bad credentials"}`.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlencode

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

DOCS = "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/"
_ERRORS = {
    "incorrect_client_credentials": "The client_id and/or client_secret passed are incorrect.",
    "redirect_uri_mismatch": "The redirect_uri MUST match the registered callback URL for this application.",
    "bad_verification_code": "The code passed is incorrect or expired.",
    "unsupported_grant_type": "The grant type is not supported.",
}


@dataclass(frozen=True)
class GitHubUser:
    id: int = 583231
    login: str = "octocat"
    name: str | None = "The Octocat"
    avatar_url: str = "https://avatars.githubusercontent.com/u/583231?v=4"
    email: str | None = "octocat@github.com"
    email_verified: bool = True

    def api(self) -> dict[str, Any]:
        """The `GET /user` body (a subset of GitHub's fields)."""
        return {
            "login": self.login,
            "id": self.id,
            "node_id": base64.b64encode(f"04:User{self.id}".encode()).decode(),
            "avatar_url": self.avatar_url,
            "html_url": f"https://github.com/{self.login}",
            "type": "User",
            "site_admin": False,
            "name": self.name,
            "email": self.email,
            "created_at": "2011-01-25T18:44:36Z",
        }

    def emails(self) -> list[dict[str, Any]]:
        """The `GET /user/emails` body."""
        noreply = {
            "email": f"{self.id}+{self.login}@users.noreply.github.com",
            "primary": self.email is None,
            "verified": True,
            "visibility": None,
        }
        if self.email is None:
            return [noreply]
        primary = {"email": self.email, "primary": True, "verified": self.email_verified, "visibility": "public"}
        return [primary, noreply]


@dataclass
class _Grant:
    user: GitHubUser
    redirect_uri: str
    challenge: str
    scope: str
    expires_at: float


@dataclass
class FakeGitHub:
    client_id: str = "fake-client-id"
    client_secret: str = "fake-client-secret"
    redirect_uri: str | None = None  # when set, authorize and token insist on exactly this callback
    next_user: GitHubUser = field(default_factory=GitHubUser)
    deny_next: bool = False
    down: bool = False
    url: str = ""
    _codes: dict[str, _Grant] = field(default_factory=dict, repr=False)
    _tokens: dict[str, tuple[GitHubUser, str]] = field(default_factory=dict, repr=False)
    _server: uvicorn.Server | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def settings_overrides(self) -> dict[str, Any]:
        """Keyword arguments for `Settings` that point the GitHub login at this fake."""
        return {
            "github_client_id": self.client_id,
            "github_client_secret": self.client_secret,
            "github_authorize_url": f"{self.url}/login/oauth/authorize",
            "github_token_url": f"{self.url}/login/oauth/access_token",
            "github_api_url": self.url,
        }

    def reset(self) -> None:
        """Back to the default user with every knob off and no codes or tokens outstanding."""
        self.next_user, self.deny_next, self.down = GitHubUser(), False, False
        self._codes.clear()
        self._tokens.clear()

    def start(self) -> FakeGitHub:
        """Serve on a free port of 127.0.0.1 and wait until it accepts connections."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(self.app(), lifespan="off", ws="none", log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake GitHub did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Shut the server down and join its thread."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def app(self) -> Starlette:
        """The ASGI app (also usable in-process with `httpx.ASGITransport`)."""
        return Starlette(
            routes=[
                Route("/login/oauth/authorize", self._authorize, methods=["GET"]),
                Route("/login/oauth/access_token", self._access_token, methods=["POST"]),
                Route("/user", self._user, methods=["GET"]),
                Route("/user/emails", self._emails, methods=["GET"]),
            ]
        )

    async def _authorize(self, request: Request) -> Response:
        if self.down:
            return _unavailable()
        q = request.query_params
        if q.get("client_id") != self.client_id:
            return PlainTextResponse("unknown client_id", 404)
        redirect_uri = q.get("redirect_uri", "")
        if not redirect_uri.startswith(("http://", "https://")) or (
            self.redirect_uri is not None and redirect_uri != self.redirect_uri
        ):
            return PlainTextResponse("The redirect_uri is not associated with this application.", 400)
        state, challenge = q.get("state"), q.get("code_challenge")
        if not state or not challenge or q.get("code_challenge_method") != "S256":
            return PlainTextResponse("state and an S256 code_challenge are required", 400)
        if self.deny_next:
            self.deny_next = False
            params = {
                "error": "access_denied",
                "error_description": "The user has denied your application access.",
                "error_uri": f"{DOCS}#access-denied",
                "state": state,
            }
        else:
            code = secrets.token_hex(10)
            scope = q.get("scope", "")
            self._codes[code] = _Grant(self.next_user, redirect_uri, challenge, scope, time.time() + 600)
            params = {"code": code, "state": state}
        sep = "&" if "?" in redirect_uri else "?"
        return RedirectResponse(f"{redirect_uri}{sep}{urlencode(params)}", 302)

    async def _access_token(self, request: Request) -> Response:
        if self.down:
            return _unavailable()
        form = {**request.query_params, **(await request.form())}
        client_id, client_secret = _basic_auth(request) or (form.get("client_id"), form.get("client_secret"))
        json_wanted = "application/json" in request.headers.get("accept", "")
        if form.get("grant_type", "authorization_code") != "authorization_code":
            return _token_error("unsupported_grant_type", json_wanted)
        if client_id != self.client_id or client_secret != self.client_secret:
            return _token_error("incorrect_client_credentials", json_wanted)
        grant = self._codes.pop(str(form.get("code", "")), None)  # single use, even when the rest is wrong
        if grant is None or grant.expires_at < time.time():
            return _token_error("bad_verification_code", json_wanted)
        if "redirect_uri" in form and form["redirect_uri"] != grant.redirect_uri:
            return _token_error("redirect_uri_mismatch", json_wanted)
        if _s256(str(form.get("code_verifier", ""))) != grant.challenge:
            return _token_error("bad_verification_code", json_wanted)
        token = "gho_" + secrets.token_urlsafe(27)[:36]
        scope = ",".join(grant.scope.replace(",", " ").split())
        self._tokens[token] = (grant.user, scope)
        body = {"access_token": token, "token_type": "bearer", "scope": scope}
        return _token_body(body, json_wanted)

    def _bearer(self, request: Request) -> tuple[GitHubUser, str] | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() not in ("bearer", "token"):
            return None
        return self._tokens.get(token.strip())

    async def _user(self, request: Request) -> Response:
        if self.down:
            return _unavailable()
        found = self._bearer(request)
        return JSONResponse(found[0].api()) if found else _bad_credentials()

    async def _emails(self, request: Request) -> Response:
        if self.down:
            return _unavailable()
        found = self._bearer(request)
        if found is None:
            return _bad_credentials()
        user, scope = found
        if not {"user", "user:email"} & set(scope.split(",")):
            return JSONResponse({"message": "Not Found", "documentation_url": DOCS, "status": "404"}, 404)
        return JSONResponse(user.emails())


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _basic_auth(request: Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(value).decode().partition(":")
    except ValueError:
        return None
    return unquote(user), unquote(password)  # RFC 6749 §2.3.1: form-encoded before Basic encoding


def _token_body(body: dict[str, str], json_wanted: bool) -> Response:
    if json_wanted:
        return JSONResponse(body)
    return Response(urlencode(body), media_type="application/x-www-form-urlencoded; charset=utf-8")


def _token_error(error: str, json_wanted: bool) -> Response:
    body = {"error": error, "error_description": _ERRORS[error], "error_uri": f"{DOCS}#{error.replace('_', '-')}"}
    return _token_body(body, json_wanted)


def _bad_credentials() -> Response:
    body = {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest", "status": "401"}
    return JSONResponse(body, 401)


def _unavailable() -> Response:
    return JSONResponse({"message": "Service Unavailable"}, 503)

"""The CSRF building blocks: random tokens, constant-time comparison, and the Origin/Referer match."""

from __future__ import annotations

import pytest

from gateway.auth.csrf import csrf_ok, new_csrf_token, origin_ok

PUBLIC = "http://127.0.0.1:8000"


def test_tokens_are_long_random_and_url_safe() -> None:
    tokens = {new_csrf_token() for _ in range(200)}
    assert len(tokens) == 200
    for token in tokens:
        assert len(token) >= 43  # 32 random bytes
        assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_matching_tokens_pass() -> None:
    token = new_csrf_token()
    assert csrf_ok(token, token)
    assert csrf_ok(token, str(token))  # equal value, different object


@pytest.mark.parametrize(
    ("submitted", "cookie"),
    [
        (None, "abc"),
        ("abc", None),
        (None, None),
        ("", ""),  # an empty cookie must not be matched by an empty field
        ("abc", "abd"),
        ("abc", "abcd"),
        ("ABC", "abc"),
        ("abc ", "abc"),
        ("é", "e"),
    ],
)
def test_mismatches_fail(submitted: str | None, cookie: str | None) -> None:
    assert not csrf_ok(submitted, cookie)


def test_non_ascii_tokens_compare_without_error() -> None:
    assert csrf_ok("ü-token", "ü-token")


@pytest.mark.parametrize(
    "header",
    [
        None,  # non-browser clients send neither Origin nor Referer
        "",
        "http://127.0.0.1:8000",
        "http://127.0.0.1:8000/",
        "http://127.0.0.1:8000/some/page?q=1#frag",  # a Referer
        "HTTP://127.0.0.1:8000",  # scheme and host compare case-insensitively
    ],
)
def test_same_origin_or_absent_passes(header: str | None) -> None:
    assert origin_ok(header, PUBLIC)


@pytest.mark.parametrize(
    "header",
    [
        "null",  # sandboxed frames, cross-origin redirects
        "https://127.0.0.1:8000",  # another scheme
        "http://127.0.0.1:8001",  # another port
        "http://localhost:8000",  # another host name for the same machine is another origin
        "http://evil.example",
        "http://127.0.0.1:8000.evil.example",
        "http://evil.example/http://127.0.0.1:8000",
        "http://127.0.0.1:notaport",
        "http://127.0.0.1:99999",
        "//127.0.0.1:8000",
        "127.0.0.1:8000",
    ],
)
def test_other_origins_fail(header: str) -> None:
    assert not origin_ok(header, PUBLIC)


def test_default_ports_are_implied() -> None:
    assert origin_ok("https://chirp.example", "https://chirp.example:443")
    assert origin_ok("https://chirp.example:443", "https://chirp.example")
    assert origin_ok("http://chirp.example:80/x", "http://chirp.example")
    assert not origin_ok("http://chirp.example", "https://chirp.example")


def test_host_case_is_ignored() -> None:
    assert origin_ok("https://Chirp.Example", "https://chirp.example")

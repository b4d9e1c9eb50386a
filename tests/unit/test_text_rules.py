"""The shared text rules (domain/text.py) as the events, the renderer and the stores apply them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from domain import text
from domain.markdown import render_post
from schemas.events import PostCreatedData, PostParsedData, UserProfileUpdatedData
from store.search_query import parse_query
from store.trending import moderation_target

BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


@pytest.mark.parametrize("body", ["\u200b", "\u200b\u200d\ufeff", BIDI, " \u2060\n\u3164", "\u2800"])
def test_a_post_of_invisible_characters_only_is_refused_by_the_event(body: str) -> None:
    assert not text.has_visible(body)
    with pytest.raises(ValidationError):
        PostCreatedData(post_id="p", author_id="a", body=body)


def test_a_nul_is_refused_in_every_text_of_a_parsed_post() -> None:
    fine = {"post_id": "p", "author_id": "a", "body": "b", "html": "<p>b</p>", "text": "b"}
    fine["created_at"] = "2026-01-01T00:00:00Z"
    PostParsedData.model_validate(fine)
    for name, value in [("body", "a\x00"), ("html", "a\x00"), ("text", "\x00"), ("hashtags", ["a\x00"]),
                        ("mentions", ["a\x00"]), ("links", ["http://a/\x00"]), ("hashtags", ["x" * 101])]:  # fmt: skip
        with pytest.raises(ValidationError):
            PostParsedData.model_validate({**fine, name: value})


@pytest.mark.parametrize("name", ["\u200b", "\u3164", "a\u202eb", "tab\there", "\x1b[31m"])
def test_a_display_name_needs_a_visible_character_and_no_controls(name: str) -> None:
    with pytest.raises(ValidationError):
        UserProfileUpdatedData(user_id="u", display_name=name)


def test_bidi_overrides_are_stripped_from_the_rendered_html_and_text() -> None:
    rendered = render_post(f"abc {BIDI} [x\u202e](https://e.com/\u202e) `\u202ecode` #ta\u202eg")
    assert not set(BIDI) & set(rendered.html) and not set(BIDI) & set(rendered.text)
    assert "abc" in rendered.html and "code" in rendered.text


def test_a_hashtag_the_renderer_links_can_be_opened() -> None:
    longest, too_long = "a" * text.MAX_TAG_CHARS, "a" * (text.MAX_TAG_CHARS + 1)
    assert render_post(f"#{longest}").hashtags == (longest,)
    assert render_post(f"#{too_long}").hashtags == ()
    assert "/tags/" not in render_post(f"#{too_long}").html


@pytest.mark.parametrize(("raw", "key"), [("#Café", "café"), ("CAFE\u0301", "café"), ("Straße", "strasse")])
def test_every_reader_of_a_tag_uses_the_same_key(raw: str, key: str) -> None:
    assert text.tag_key(raw) == key
    assert render_post(f"#{raw.removeprefix('#')}").hashtags == (key,)
    assert moderation_target(f"#{raw.removeprefix('#')}") == f"#{key}"
    assert parse_query(f"#{raw.removeprefix('#')}").tags == (key,)


def test_newlines_are_unified_before_counting() -> None:
    assert text.unify_newlines("a\r\nb\rc\n") == "a\nb\nc\n"


@pytest.mark.parametrize("value", ["ann\n", "ann\r\n", "ann ", "-ann", "a" * 40, ""])
def test_a_handle_is_the_whole_value_everywhere_one_is_checked(value: str) -> None:
    from gateway.routes.auth import DevLogin

    assert not text.is_handle(value)
    with pytest.raises(ValidationError):
        DevLogin.model_validate({"login": value})
    assert text.is_handle("ann-1") and text.is_handle("a" * 39)

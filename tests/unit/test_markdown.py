"""`render_post`: what a post's Markdown renders to, and what it yields for search, trending and notifications."""

from __future__ import annotations

import dataclasses
import unicodedata

import pytest

from domain.markdown import RenderedPost, render_post

REL = 'rel="nofollow noopener ugc"'


def html(markdown: str) -> str:
    return render_post(markdown).html


def test_emphasis_strong_and_strikethrough() -> None:
    assert html("*a* **b** _c_ __d__ ~~e~~") == (
        "<p><em>a</em> <strong>b</strong> <em>c</em> <strong>d</strong> <del>e</del></p>\n"
    )


def test_code_span_is_escaped_and_yields_no_hashtag_or_mention() -> None:
    post = render_post("run `x = #nope @nobody <b>` now")
    assert post.html == "<p>run <code>x = #nope @nobody &lt;b&gt;</code> now</p>\n"
    assert post.hashtags == () and post.mentions == ()


def test_fenced_code_keeps_text_and_drops_the_info_string() -> None:
    post = render_post("```python\nx = 1  # #comment @decorator\n<script>\n```")
    assert post.html == "<pre><code>x = 1  # #comment @decorator\n&lt;script&gt;\n</code></pre>\n"
    assert post.hashtags == () and post.mentions == ()


def test_lists() -> None:
    assert html("- a\n- b") == "<ul>\n<li>a</li>\n<li>b</li>\n</ul>\n"
    assert html("3. a\n4. b") == '<ol start="3">\n<li>a</li>\n<li>b</li>\n</ol>\n'
    assert html("1. a\n   - b") == "<ol>\n<li>a<ul>\n<li>b</li>\n</ul>\n</li>\n</ol>\n"


def test_block_quote() -> None:
    assert html("> quoted #tag\n\nreply") == (
        '<blockquote>\n<p>quoted <a href="/tags/tag" class="hashtag">#tag</a></p>\n</blockquote>\n<p>reply</p>\n'
    )


def test_every_newline_in_a_paragraph_is_a_line_break() -> None:
    assert html("roses are red\nviolets are blue") == "<p>roses are red<br>\nviolets are blue</p>\n"


def test_headings_render_as_strong_paragraphs_and_rules_are_dropped() -> None:
    assert html("# Big news\n\n---\n\nbody") == "<p><strong>Big news</strong></p>\n<p>body</p>\n"


def test_tables_are_not_parsed() -> None:
    assert "<table" not in html("| a | b |\n| - | - |\n| 1 | 2 |")


def test_links_get_rel_and_are_collected() -> None:
    post = render_post('[docs](https://example.com/docs "The docs") and [home](/) and <mailto:a@b.co>')
    assert post.html == (
        f'<p><a href="https://example.com/docs" {REL} title="The docs">docs</a> and '
        f'<a href="/" {REL}>home</a> and <a href="mailto:a@b.co" {REL}>mailto:a@b.co</a></p>\n'
    )
    assert post.links == ("https://example.com/docs",)  # absolute http(s) only


def test_bare_and_angle_autolinks() -> None:
    post = render_post("see https://example.com/a?b=1&c=2. and <http://example.org/x>")
    assert post.html == (
        f'<p>see <a href="https://example.com/a?b=1&amp;c=2" {REL}>https://example.com/a?b=1&amp;c=2</a>. and '
        f'<a href="http://example.org/x" {REL}>http://example.org/x</a></p>\n'
    )
    assert post.links == ("https://example.com/a?b=1&c=2", "http://example.org/x")


def test_links_are_unique_in_order() -> None:
    post = render_post("https://b.com [x](https://a.com) https://b.com ![pic](https://c.com/p.png)")
    assert post.links == ("https://b.com", "https://a.com", "https://c.com/p.png")


def test_images_render_as_links_to_the_image() -> None:
    assert html("![a cat](https://c.com/cat.png)") == f'<p><a href="https://c.com/cat.png" {REL}>a cat</a></p>\n'
    assert html("![](https://c.com/p.png)") == (f'<p><a href="https://c.com/p.png" {REL}>https://c.com/p.png</a></p>\n')


def test_links_with_other_schemes_are_unwrapped() -> None:
    post = render_post("[a](javascript:alert(1)) [b](tel:+123) [c](data:text/html,x) [d](vbscript:x)")
    assert post.html == "<p>a b c d</p>\n"
    assert post.links == ()


def test_raw_html_is_shown_as_text() -> None:
    post = render_post("<script>alert(1)</script>\n\nhi <b onclick=x>there</b>")
    assert post.html == ("<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>\n<p>hi &lt;b onclick=x&gt;there&lt;/b&gt;</p>\n")
    assert post.text == "<script>alert(1)</script> hi <b onclick=x>there</b>"


def test_hashtags_are_linked_case_folded_unique_and_in_order() -> None:
    post = render_post("#Python and #PYTHON, #café #CAFÉ #日本 #Straße #rust_lang")
    assert post.hashtags == ("python", "café", "日本", "strasse", "rust_lang")
    assert '<a href="/tags/python" class="hashtag">#PYTHON</a>' in post.html
    assert '<a href="/tags/caf%C3%A9" class="hashtag">#CAFÉ</a>' in post.html
    assert '<a href="/tags/%E6%97%A5%E6%9C%AC" class="hashtag">#日本</a>' in post.html


def test_hashtags_with_combining_marks_group_with_their_composed_form() -> None:
    decomposed = unicodedata.normalize("NFD", "#café #हिन्दी")
    assert render_post(decomposed).hashtags == ("café", "हिन्दी")


@pytest.mark.parametrize(
    "markdown",
    ["#1", "#2024", "a#b", "x.com/#frag", "f(x)#y", "&#35;tag", r"\#tag", "# heading", "#_", "[#tag](https://a.com)"],
)
def test_not_a_hashtag(markdown: str) -> None:
    assert render_post(markdown).hashtags == ()


def test_hashtag_in_a_url_is_not_extracted() -> None:
    post = render_post("https://example.com/page#section <https://x.org/#tag> [x](https://y.org/#other)")
    assert post.hashtags == ()
    assert "hashtag" not in post.html


def test_mentions_are_linked_lower_cased_unique_and_in_order() -> None:
    post = render_post("@Alice, thanks! cc @bob-smith @ALICE (@carol)")
    assert post.mentions == ("alice", "bob-smith", "carol")
    assert '<a href="/@alice" class="mention">@Alice</a>' in post.html
    assert "rel=" not in post.html  # internal links


@pytest.mark.parametrize(
    "markdown",
    [
        "mail me at alice@example.com",
        "@alice@example.social",
        "https://example.com/@alice",
        "`@alice`",
        "@" + "a" * 40,
        "@-alice",
        r"\@alice",
        "[@alice](https://a.com)",
    ],
)
def test_not_a_mention(markdown: str) -> None:
    assert render_post(markdown).mentions == ()


def test_longest_handle_is_a_mention() -> None:
    assert render_post("@" + "a" * 39).mentions == ("a" * 39,)


def test_text_is_the_visible_text_with_whitespace_collapsed() -> None:
    post = render_post("**Hello**  _world_ &amp; `code`\n\n- one\n- two\n\n> [link](https://a.com) #Tag @Bob")
    assert post.text == "Hello world & code one two link #Tag @Bob"


def test_empty_and_blank_posts() -> None:
    assert render_post("") == RenderedPost(html="", text="", hashtags=(), mentions=(), links=())
    assert render_post(" \n\n ").text == ""


def test_rendered_post_is_frozen_and_rendering_is_deterministic() -> None:
    post = render_post("*hi* #x @y https://z.com")
    assert post == render_post("*hi* #x @y https://z.com")
    with pytest.raises(dataclasses.FrozenInstanceError):
        post.html = ""  # type: ignore[misc]

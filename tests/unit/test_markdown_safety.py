"""`render_post` against the public XSS corpora: nothing a browser could run or load survives, in any form.

The corpora live outside the repo (`../shared/corpora/xss`, or `$CHIRP_CORPORA/xss`); see their README. Every
payload is rendered raw, as a link target `[x](P)`, as an image `![x](P)` and as an angle-bracket link target
`[x](<P>)` (which allows spaces); each output is parsed with html5lib and checked by `tests.unit.htmlsafety`.
The raw payload also goes through `sanitize` alone, judged by the browsers' scheme rule (nh3 parses URLs as they
do): the allow-list holds even without mistune's escaping.
One test per corpus file; with `-rP` each prints how many outputs it checked.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from domain.markdown import render_post, sanitize
from tests.corpora import corpus, missing
from tests.unit.htmlsafety import unsafe_parts, url_scheme

XSS = corpus("xss")
FORMS = ("{}", "[x]({})", "![x]({})", "[x](<{}>)")


def _corpus_files() -> list[object]:
    if not XSS.is_dir():
        return [pytest.param(None, id="xss-corpus-missing", marks=pytest.mark.skip(reason=missing("xss")))]
    files = sorted(p for p in XSS.rglob("*") if p.suffix in (".json", ".txt"))
    return [pytest.param(p, id=str(p.relative_to(XSS))) for p in files]


def _payloads(path: Path) -> list[str]:
    if path.suffix == ".json":
        return [case["payload"] for case in json.loads(path.read_text(encoding="utf-8"))]
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if "event_handlers" in path.name:  # a list of handler names: put each on elements too
        return lines + [f"<img src=x {name}=alert(1)><a href=x {name}=alert(1)>x</a>" for name in lines]
    return lines


@pytest.mark.parametrize("path", _corpus_files())
def test_corpus_renders_safe(path: Path) -> None:
    payloads = _payloads(path)
    assert payloads, f"{path} holds no payloads"
    failures = []
    for payload in payloads:
        for form in FORMS:
            html = render_post(form.replace("{}", payload)).html
            if problems := unsafe_parts(html):
                failures.append((form, payload, html, problems))
        html = sanitize(payload)
        if problems := unsafe_parts(html, strict_schemes=False):
            failures.append(("sanitize(P)", payload, html, problems))
    checked = len(payloads) * (len(FORMS) + 1)
    print(f"{path.name}: {len(payloads)} payloads x {len(FORMS) + 1} forms = {checked} outputs checked")
    assert not failures, f"{len(failures)} of {checked} outputs unsafe, first ones: {failures[:5]}"


@pytest.mark.parametrize(
    "markdown",
    [
        "[x](javascript:alert(1))",
        "[x](JaVaScRiPt:alert(1))",
        "[x](&#106;avascript:alert(1))",
        "[x](&#x6A;avascript:alert(1))",
        "[x](java&#x09;script:alert(1))",
        "[x](&amp;#106;avascript:alert(1))",
        "[x](<java\tscript:alert(1)>)",
        "[x](<javascript:alert(1)>)",
        "[x]( javascript:alert(1))",
        "[x](%6Aavascript:alert(1))",
        "<javascript:alert(1)>",
        "<vbscript:msgbox(1)>",
        "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
        "![x](data:image/png;base64,iVBORw0KGgo=)",
        "[x][r]\n\n[r]: javascript:alert(1)",
        '[x](http://a.com "t\\" onmouseover=alert(1) x=\\"")',
        "<a href='javascript:alert(1)'>x</a>",
        "<img src=x onerror=alert(1)>",
        "```\n</code></pre><script>alert(1)</script>\n```",
        "`</code><script>alert(1)</script>`",
        "#<script>alert(1)</script> @<img/src/onerror=alert(1)>",
    ],
)
def test_link_and_html_tricks_render_safe(markdown: str) -> None:
    html = render_post(markdown).html
    assert unsafe_parts(html) == [], html


def test_disallowed_link_schemes_become_text() -> None:
    post = render_post("[call](tel:123) [chat](irc://x) [x](javascript:alert(1)) [ok](https://a.com)")
    assert post.html.count("<a ") == 1
    assert post.text == "call chat x ok"


# The checker itself: it has to fail on what it is meant to catch.


@pytest.mark.parametrize(
    "markup",
    [
        "<script>alert(1)</script>",
        "<p><iframe src=https://a.com></iframe></p>",
        "<svg><a href=https://a.com>x</a></svg>",
        "<math><mi>x</mi></math>",
        "<form action=https://a.com></form>",
        "<base href=https://a.com>",
        '<a href="https://a.com" onclick="x()">x</a>',
        '<p style="color:red">x</p>',
        '<a href="javascript:alert(1)">x</a>',
        '<a href=" \x01JavaScript:alert(1)">x</a>',
        '<a href="java\tscr\nipt:alert(1)">x</a>',
        '<a href="&#106;avascript:alert(1)">x</a>',
        '<a href="jav&#x09;ascript:alert(1)">x</a>',
        '<a href="data:text/html,x">x</a>',
        "<a href=vbscript:x>x</a>",
        "<blockquote cite=javascript:x>x</blockquote>",
    ],
)
def test_checker_finds_unsafe_markup(markup: str) -> None:
    assert unsafe_parts(markup)


@pytest.mark.parametrize(
    "markup",
    [
        '<p><a href="https://a.com/x?y=1#z" rel="nofollow">x</a> <a href="/tags/x">#x</a></p>',
        '<a href="mailto:a@b.com">a</a> <a href="?q=a:b">q</a> <a href="#a:b">f</a> <a href="x/y:z">r</a>',
        "<pre><code>&lt;script&gt;alert(1)&lt;/script&gt;</code></pre>",
    ],
)
def test_checker_passes_safe_markup(markup: str) -> None:
    assert unsafe_parts(markup) == []


def test_url_scheme_reads_like_a_browser() -> None:
    assert url_scheme("\x00 \tJaVa\nScRiPt:x \x1f") == "javascript"
    assert url_scheme("HTTPS://a.com") == "https"
    assert url_scheme("/a:b") is None
    assert url_scheme("//a.com") is None
    assert url_scheme("\u2028javascript:x") == "\u2028javascript"  # strict: anything before ':' is a scheme
    assert url_scheme("\u2028javascript:x", strict=False) is None  # browsers: a relative path

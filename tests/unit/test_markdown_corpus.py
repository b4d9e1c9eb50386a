"""`render_post` against the CommonMark and GFM spec examples in the subset we render; pass counts per section.

    .venv/bin/python -m tests.unit.test_markdown_corpus      # prints the per-section table

The corpora live outside the repo (`../shared/corpora/markdown`, or `$CHIRP_CORPORA/markdown`). Left out: raw
HTML sections (we escape raw HTML), tables and task lists (not rendered), the examples upstream marks `disabled`
or `<IGNORE>`. Both sides are compared after the same normalisation:
1. the expected HTML gets our documented mappings: `<img>` becomes a link to the image (alt text, else the URL),
   `<h1>`-`<h6>` become `<p><strong>`, `<hr />` goes;
2. both go through our nh3 allow-list (`sanitize`), then html5lib; attributes are sorted, `rel` dropped, links
   without `href` and our hashtag and mention links unwrapped to their text;
3. whitespace outside `<pre>`: runs collapse to one space, a run with a newline counts as a line break (we render
   every newline inside a paragraph as `<br>`), and none counts next to a block boundary.
"mistune" is mistune alone with our options (same plugins, raw HTML escaped, hard wraps) through the same
normalisation: the difference is what our walk adds or loses. Each section asserts the count reached when it was
written, so a change in mistune or in the walk that loses an example fails here.
"""

from __future__ import annotations

import functools
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from typing import Any

import html5lib
import mistune
import pytest

from domain.markdown import render_post, sanitize
from tests import corpora

MARKDOWN = corpora.corpus("markdown")
UNSUPPORTED = {"HTML blocks", "Raw HTML", "Disallowed Raw HTML (extension)", "Tables (extension)"}
UNSUPPORTED |= {"Task list items (extension)", "HTML tag filter", "Footnotes", "Task lists"}
EXTENSION_SECTIONS = {"Strikethroughs", "Autolinks", "Interop"}  # of cmark_gfm_extensions.json; the rest: tables

# (file, section) -> examples render_post passed when this was written. The 22 CommonMark examples it misses are
# by design: 15 hold raw HTML (escaped here), 3 expect no link on a bare URL (GFM links it), 2 put an image in a
# link (flattened to its alt text), 1 has an empty link (shows its URL), 1 has `foo):` as URL (read as a scheme,
# unwrapped). A 0 is a GFM extension mistune lacks (single-tilde strikethrough, www. and e-mail autolinks):
# reported in the table, not asserted.
FLOORS: dict[tuple[str, str], int] = {
    ("commonmark_spec", "Tabs"): 11,
    ("commonmark_spec", "Backslash escapes"): 12,
    ("commonmark_spec", "Entity and numeric character references"): 16,
    ("commonmark_spec", "Precedence"): 1,
    ("commonmark_spec", "Thematic breaks"): 19,
    ("commonmark_spec", "ATX headings"): 18,
    ("commonmark_spec", "Setext headings"): 27,
    ("commonmark_spec", "Indented code blocks"): 12,
    ("commonmark_spec", "Fenced code blocks"): 29,
    ("commonmark_spec", "Link reference definitions"): 26,
    ("commonmark_spec", "Paragraphs"): 8,
    ("commonmark_spec", "Blank lines"): 1,
    ("commonmark_spec", "Block quotes"): 25,
    ("commonmark_spec", "List items"): 48,
    ("commonmark_spec", "Lists"): 24,
    ("commonmark_spec", "Inlines"): 1,
    ("commonmark_spec", "Code spans"): 21,
    ("commonmark_spec", "Emphasis and strong emphasis"): 129,
    ("commonmark_spec", "Links"): 82,
    ("commonmark_spec", "Images"): 22,
    ("commonmark_spec", "Autolinks"): 16,
    ("commonmark_spec", "Hard line breaks"): 13,
    ("commonmark_spec", "Soft line breaks"): 2,
    ("commonmark_spec", "Textual content"): 3,
    ("gfm_spec", "Tabs"): 11,
    ("gfm_spec", "Precedence"): 1,
    ("gfm_spec", "Thematic breaks"): 19,
    ("gfm_spec", "ATX headings"): 18,
    ("gfm_spec", "Setext headings"): 27,
    ("gfm_spec", "Indented code blocks"): 12,
    ("gfm_spec", "Fenced code blocks"): 29,
    ("gfm_spec", "Link reference definitions"): 27,
    ("gfm_spec", "Paragraphs"): 8,
    ("gfm_spec", "Blank lines"): 1,
    ("gfm_spec", "Block quotes"): 25,
    ("gfm_spec", "List items"): 48,
    ("gfm_spec", "Lists"): 24,
    ("gfm_spec", "Inlines"): 1,
    ("gfm_spec", "Backslash escapes"): 12,
    ("gfm_spec", "Entity and numeric character references"): 16,
    ("gfm_spec", "Code spans"): 21,
    ("gfm_spec", "Emphasis and strong emphasis"): 128,
    ("gfm_spec", "Strikethrough (extension)"): 2,
    ("gfm_spec", "Links"): 80,
    ("gfm_spec", "Images"): 22,
    ("gfm_spec", "Autolinks"): 16,
    ("gfm_spec", "Autolinks (extension)"): 0,
    ("gfm_spec", "Hard line breaks"): 13,
    ("gfm_spec", "Soft line breaks"): 2,
    ("gfm_spec", "Textual content"): 3,
    ("cmark_gfm_extensions", "Strikethroughs"): 0,
    ("cmark_gfm_extensions", "Autolinks"): 1,
    ("cmark_gfm_extensions", "Interop"): 0,
}

_BLOCK = {"p", "blockquote", "ul", "ol", "li", "pre", "div", "table", "thead", "tbody", "tr", "th", "td"}
_IMG = re.compile(r"<img\s([^>]*?)\s*/?>")
_ATTR = re.compile(r'(\w+)="([^"]*)"')
_HEADING = re.compile(r"<(/?)h[1-6](?:\s[^>]*)?>")
_WHITESPACE = re.compile(r"([ \t\n\r\f]+)")  # HTML's; a no-break space is text


def _map_expected(html: str) -> str:
    """Apply our documented rendering choices to a spec example's expected HTML."""

    def image(m: re.Match[str]) -> str:
        attrs = dict(_ATTR.findall(m.group(1)))
        title = f' title="{attrs["title"]}"' if attrs.get("title") else ""
        return f'<a href="{attrs.get("src", "")}"{title}>{attrs.get("alt") or attrs.get("src", "")}</a>'

    html = _IMG.sub(image, html)
    html = _HEADING.sub(lambda m: "</strong></p>" if m.group(1) else "<p><strong>", html)
    return html.replace("<hr />", "")


def _events(element: ET.Element, in_pre: bool) -> Iterator[tuple[str, str]]:
    """("open"|"close"|"text"|"space"|"br", value) for an html5lib etree, as the comparison sees it."""
    tag = element.tag if isinstance(element.tag, str) else ""
    attrs = {k: v for k, v in element.attrib.items() if k != "rel"}
    classes = attrs.get("class", "").split()
    ours = "hashtag" in classes or "mention" in classes
    transparent = tag == "DOCUMENT_FRAGMENT" or (tag == "a" and ("href" not in attrs or ours))
    if tag == "br":
        yield "br", ""
    elif tag and not transparent:
        yield "open", tag + "".join(f' {k}="{v}"' for k, v in sorted(attrs.items()))
    in_pre = in_pre or tag == "pre"
    yield from _text(element.text or "", in_pre)
    for child in element:
        yield from _events(child, in_pre)
        yield from _text(child.tail or "", in_pre)
    if tag and tag != "br" and not transparent:
        yield "close", tag


def _text(text: str, in_pre: bool) -> Iterator[tuple[str, str]]:
    if in_pre:
        if text:
            yield "text", text
        return
    for piece in _WHITESPACE.split(text):
        if piece and not piece.strip(" \t\n\r\f"):
            yield ("br", "") if "\n" in piece else ("space", "")
        elif piece:
            yield "text", piece


def normalise(html: str) -> str:
    """A canonical, whitespace-insensitive form of sanitized HTML (see the module docstring)."""
    root = html5lib.parseFragment(sanitize(html), treebuilder="etree", namespaceHTMLElements=False)
    out: list[tuple[str, str]] = []
    for kind, value in _events(root, False):
        if kind == "text" and out and out[-1][0] == "text":
            out[-1] = ("text", out[-1][1] + value)
        elif kind in ("br", "space"):
            if out and out[-1][0] in ("br", "space"):  # a run: a line break wins over a space
                out[-1] = ("br", "") if "br" in (kind, out[-1][0]) else out[-1]
            else:
                out.append((kind, value))
        else:
            out.append((kind, value))
    kept = []
    for i, (kind, value) in enumerate(out):
        if kind in ("br", "space"):
            neighbours = [out[j] for j in (i - 1, i + 1) if 0 <= j < len(out)]
            if len(neighbours) < 2 or any(k in ("open", "close") and v.split()[0] in _BLOCK for k, v in neighbours):
                continue
        kept.append(f"{kind}:{value}" if value else kind)
    return " | ".join(kept)


def _examples() -> dict[tuple[str, str], list[dict[str, Any]]]:
    sections: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for name in ("commonmark_spec.json", "gfm_spec.json", "cmark_gfm_extensions.json"):
        for case in json.loads((MARKDOWN / name).read_text(encoding="utf-8")):
            section = case["section"]
            if section in UNSUPPORTED or "disabled" in case.get("extensions", ()) or case["html"] == "<IGNORE>\n":
                continue
            if name == "cmark_gfm_extensions.json" and section not in EXTENSION_SECTIONS:
                continue
            sections.setdefault((name.removesuffix(".json"), section), []).append(case)
    return sections


_MISTUNE = mistune.create_markdown(escape=True, hard_wrap=True, plugins=["strikethrough", "url"])
RENDERERS: dict[str, Callable[[str], str]] = {
    "render_post": lambda markdown: render_post(markdown).html,
    "mistune": lambda markdown: str(_MISTUNE(markdown)),
}


@functools.cache
def results() -> dict[tuple[str, str], dict[str, list[int]]]:
    """(file, section) -> renderer -> numbers of the examples it passes."""
    table: dict[tuple[str, str], dict[str, list[int]]] = {}
    for key, cases in _examples().items():
        row = table[key] = {name: [] for name in RENDERERS}
        for case in cases:
            expected = normalise(_map_expected(case["html"]))
            for name, render in RENDERERS.items():
                if normalise(render(case["markdown"])) == expected:
                    row[name].append(case["example"])
    return table


def summary() -> str:
    lines = [f"{'corpus':<24} {'section':<42} {'examples':>8} {'ours':>5} {'mistune':>8}"]
    totals: dict[str, list[int]] = {}
    for (corpus, section), row in results().items():
        count = len(_examples()[corpus, section])
        ours, alone = len(row["render_post"]), len(row["mistune"])
        lines.append(f"{corpus:<24} {section:<42} {count:>8} {ours:>5} {alone:>8}")
        total = totals.setdefault(corpus, [0, 0, 0])
        total[0], total[1], total[2] = total[0] + count, total[1] + ours, total[2] + alone
    for corpus, (count, ours, alone) in totals.items():
        lines.append(f"{corpus:<24} {'TOTAL':<42} {count:>8} {ours:>5} {alone:>8}")
    return "\n".join(lines)


def _sections() -> list[Any]:
    if not MARKDOWN.is_dir():
        skip = pytest.mark.skip(reason=corpora.missing("markdown"))
        return [pytest.param(None, id="markdown-corpus-missing", marks=skip)]
    return [pytest.param(key, id=f"{key[0]}:{key[1]}") for key in _examples() if FLOORS.get(key) != 0]


@pytest.mark.parametrize("key", _sections())
def test_section_keeps_its_pass_count(key: tuple[str, str]) -> None:
    row = results()[key]
    passed = len(row["render_post"])
    print(f"{key}: {len(_examples()[key])} examples, render_post {passed}, mistune alone {len(row['mistune'])}")
    assert passed >= FLOORS[key], f"{key}: {passed} examples pass, floor {FLOORS[key]}"


def test_every_section_has_a_floor() -> None:
    if not MARKDOWN.is_dir():
        pytest.skip(corpora.missing("markdown"))
    assert set(_examples()) == set(FLOORS)


def test_normalise_tells_structure_apart() -> None:
    assert normalise("<p>a\nb</p>") == normalise("<p>a<br />\nb</p>")
    assert normalise("<p>a  b\n</p>\n") == normalise("<p> a b</p>")
    assert normalise("<p>a&nbsp;b</p>") != normalise("<p>a b</p>")
    assert normalise("<p>a b</p>") != normalise("<p>ab</p>")
    assert normalise("<p><em>a</em></p>") != normalise("<p>a</p>")
    assert normalise("<ul>\n<li>a</li>\n</ul>") != normalise("<ol>\n<li>a</li>\n</ol>")
    assert normalise('<p><a href="/x">a</a></p>') != normalise('<p><a href="/y">a</a></p>')


if __name__ == "__main__":
    print(summary())

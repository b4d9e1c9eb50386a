"""Post Markdown to safe HTML, plain text, hashtags, mentions and links: one pure function, `render_post`.

Not a consumer (no group id): the post-parsing consumer calls it; projections replay its output.

How: mistune 3 parses CommonMark plus strikethrough and bare-URL autolinks (its `url` plugin) into a
token tree; one walk over the tree writes the HTML, raw HTML escaped as text, and collects the visible
text, hashtags, mentions and links; nh3 cleans the HTML with an explicit allow-list (Mastodon's).
Hashtags and mentions come from the tree's text tokens only, so code spans, code blocks, link text and
autolinked URLs never yield one. The walk writes the HTML itself rather than handing mistune's renderer
split text tokens: the parser does no extra work, and render + sanitize stays near 80 % of mistune alone
(bench/render.py).

Decisions:
- Every newline inside a paragraph is a `<br>`, as in GitHub comments: posts are written line by line.
- Headings render as `<p><strong>` (Mastodon's mapping), thematic breaks are dropped, tables not parsed.
- An image renders as a link to it, its plain alt text (else its URL) as the link text: the timeline
  loads no third-party image. A link without text shows its URL.
- Entity references (`&amp;`, `&copy;`) are decoded as CommonMark says, then the text is escaped again.
- A link whose URL has a scheme other than http, https or mailto is unwrapped to its text; whatever comes
  before the first ':' that precedes '/', '?' and '#' counts as a scheme. A link inside a link is
  unwrapped too.
- A hashtag is `#` + letters, digits, `_` and combining marks, at least one a letter (`#1` stays text),
  not right after a letter, digit, `_`, `/`, `)` or `&` (`a#b`, `x.com/#frag`, `&#35;x` are no tags);
  `\\#x` is no tag. Its key is case-folded and NFC (`#Café`, `#CAFÉ` -> `café`); it links to
  `/tags/{key}` and shows the text as typed. A key over `domain.text.MAX_TAG_CHARS` is no tag (the tag pages
  would refuse it), so every tag link opens.
- Bidi embeddings, overrides and isolates are stripped from the HTML and the text: a post cannot reorder the
  page around it.
- A mention is `@` + a handle as `domain.text.Handle` allows (ASCII letters, digits and `-`, at most
  39, taken whole: a longer run is no mention), not right after a letter, digit, `_` or `/`, not followed
  by `@` (so `a@b.com`, `@a@host` are none). It links to `/@{handle}`, lower-cased.
- `links` holds the absolute http(s) URLs of the links the author wrote (autolinks and images included),
  unique, in order. Those links get `rel="nofollow noopener ugc"`; the tag and mention links are ours
  and get no rel.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import mistune
import nh3
from mistune.core import InlineState
from mistune.helpers import unescape_char
from mistune.inline_parser import InlineParser
from mistune.plugins.formatting import strikethrough
from mistune.plugins.url import url
from mistune.util import escape, safe_entity, unescape

from domain.text import HANDLE_CHARS, MAX_TAG_CHARS, strip_bidi, tag_key

EXTERNAL_REL = "nofollow noopener ugc"
ALLOWED_SCHEMES = frozenset({"http", "https", "mailto"})
ALLOWED_TAGS = frozenset(  # Mastodon's
    {"p", "br", "span", "a", "del", "pre", "blockquote", "code", "b", "strong", "u", "i", "em", "ul", "ol", "li"}
)


@dataclass(frozen=True, slots=True)
class RenderedPost:
    html: str
    text: str  # the visible text, whitespace collapsed (search, snippets)
    hashtags: tuple[str, ...]  # case-folded, unique, in order of first appearance
    mentions: tuple[str, ...]  # handles, lower-cased, unique, in order
    links: tuple[str, ...]  # external http(s) URLs, unique, in order


_SIGIL = re.compile(r"[#@]")
_WORD_RUN = re.compile(r"\w+")
_LETTER = re.compile(r"[^\W\d_]")
_HANDLE = re.compile(rf"{HANDLE_CHARS}(?![\w@-])", re.ASCII)
_SCHEME = re.compile(r"([^/?#:]*):")  # text before the first ':' that precedes any '/', '?', '#': a scheme


def _parse_escape(inline: InlineParser, m: re.Match[str], state: InlineState) -> int:
    # mistune merges an escaped `\#` into the text around it: a token of its own keeps `\#x` from being a tag.
    text = unescape_char(m.group(0))
    if "#" in text or "@" in text:
        state.append_token({"type": "literal", "raw": text})
    else:
        inline.process_text(text, state, parse_emphasis=False)
    return m.end()


_INLINE = InlineParser(hard_wrap=True)
_INLINE.specification["linebreak"] = r"(?:\\| *)\n\s*"  # hard_wrap alone forgets the `\` + newline hard break
_MD = mistune.Markdown(inline=_INLINE, plugins=[strikethrough, url])
_MD.inline.register("escape", _MD.inline.specification["escape"], _parse_escape)

_CLEANER = nh3.Cleaner(
    tags=set(ALLOWED_TAGS),
    attributes={"a": {"href", "title"}, "ol": {"start"}},
    tag_attribute_values={"a": {"rel": {EXTERNAL_REL}}},
    allowed_classes={"a": {"hashtag", "mention"}},
    url_schemes=set(ALLOWED_SCHEMES),
    link_rel=None,
)


def sanitize(html: str) -> str:
    """Clean HTML with the post allow-list (tags, attributes, classes, URL schemes)."""
    return _CLEANER.clean(html)


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_" or (not ch.isascii() and unicodedata.category(ch)[0] == "M")


def _escape_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _tag_end(src: str, pos: int) -> int:
    """End of the run of word characters from pos, combining marks included (`\\w` misses them: `#हिन्दी`)."""
    while True:
        m = _WORD_RUN.match(src, pos)
        if m:
            pos = m.end()
        if pos < len(src) and (src[pos] in "\u200c\u200d" or unicodedata.category(src[pos])[0] == "M"):
            pos += 1
        else:
            return pos


def _plain(tokens: list[dict[str, Any]]) -> str:
    """The text of inline tokens without their markup (an image's alt text)."""
    parts = []
    for tok in tokens:
        if "children" in tok:
            parts.append(_plain(tok["children"]))
        elif "raw" in tok:
            parts.append(unescape(tok["raw"]) if tok["type"] == "text" else tok["raw"])
        elif tok["type"] in ("linebreak", "softbreak"):
            parts.append(" ")
    return "".join(parts)


# Inline containers and blocks rendered as a plain wrapper around their children.
_WRAPPERS = {
    "paragraph": ("<p>", "</p>\n"),
    "heading": ("<p><strong>", "</strong></p>\n"),
    "block_text": ("", ""),
    "block_quote": ("<blockquote>\n", "</blockquote>\n"),
    "list_item": ("<li>", "</li>\n"),
    "emphasis": ("<em>", "</em>"),
    "strong": ("<strong>", "</strong>"),
    "strikethrough": ("<del>", "</del>"),
}
_BLOCKS = frozenset({"paragraph", "heading", "block_text", "block_quote", "list_item", "block_code", "block_html"})


class _Walk:
    """One pass over mistune's tokens: HTML out, visible text, tags, mentions and links collected."""

    __slots__ = ("html", "links", "mentions", "tags", "text")

    def __init__(self) -> None:
        self.html: list[str] = []
        self.text: list[str] = []
        self.tags: dict[str, None] = {}
        self.mentions: dict[str, None] = {}
        self.links: dict[str, None] = {}

    def tokens(self, tokens: list[dict[str, Any]], in_link: bool) -> None:
        html, text = self.html, self.text
        for tok in tokens:
            kind = tok["type"]
            if kind == "text":
                self.inline_text(tok["raw"], in_link)
            elif kind in _WRAPPERS:
                before, after = _WRAPPERS[kind]
                html.append(before)
                self.tokens(tok["children"], in_link)
                html.append(after)
            elif kind == "link" or kind == "image":
                self.link(tok, in_link)
            elif kind == "codespan":
                html.append(f"<code>{escape(tok['raw'])}</code>")
                text.append(tok["raw"])
            elif kind == "linebreak" or kind == "softbreak":
                html.append("<br />\n" if kind == "linebreak" else "\n")
                text.append("\n")
            elif kind == "list":
                tag = "ol" if tok["attrs"]["ordered"] else "ul"
                start = tok["attrs"].get("start")
                html.append(f'<{tag} start="{start}">\n' if start is not None else f"<{tag}>\n")
                self.tokens(tok["children"], in_link)
                html.append(f"</{tag}>\n")
            elif kind == "block_code":
                # mistune leaves an indented code block without its last newline
                code = tok["raw"] if tok["raw"].endswith("\n") or not tok["raw"] else tok["raw"] + "\n"
                html.append(f"<pre><code>{escape(code)}</code></pre>\n")
                text.append(code)
            elif kind == "block_html":  # raw HTML is shown as text
                html.append(f"<p>{escape(tok['raw'].strip())}</p>\n")
                text.append(tok["raw"])
            elif kind == "inline_html" or kind == "literal":
                html.append(escape(tok["raw"]))
                text.append(tok["raw"])
            # blank_line and thematic_break render nothing
            if kind in _BLOCKS:
                text.append("\n")

    def link(self, tok: dict[str, Any], in_link: bool) -> None:
        target: str = tok["attrs"]["url"]  # mistune decoded entities and percent-encoded: never decode again
        children = tok["children"]
        if tok["type"] == "image":  # becomes a link whose text is the plain alt text
            children = [{"type": "literal", "raw": _plain(children) or target}]
        elif not children:
            children = [{"type": "literal", "raw": target}]  # a link without text shows its URL
        m = _SCHEME.match(target)
        scheme = m.group(1).lower() if m else None
        if in_link or (scheme is not None and scheme not in ALLOWED_SCHEMES):
            self.tokens(children, in_link)
            return
        if scheme == "http" or scheme == "https":
            self.links[target] = None
        title = tok["attrs"].get("title")
        title_attr = f' title="{safe_entity(title)}"' if title else ""
        self.html.append(f'<a href="{escape(target)}" rel="{EXTERNAL_REL}"{title_attr}>')
        self.tokens(children, True)
        self.html.append("</a>")

    def inline_text(self, raw: str, in_link: bool) -> None:
        plain = unescape(raw)
        if in_link or ("#" not in raw and "@" not in raw):
            self.html.append(_escape_text(plain))
            self.text.append(plain)
            return
        html, done = self.html, 0  # raw[:done] is written
        sigil = _SIGIL.search(raw)
        while sigil is not None:
            start = sigil.start()
            before = raw[start - 1] if start else self.text[-1][-1:] if self.text else ""
            scan = self.hashtag if raw[start] == "#" else self.mention
            found = scan(raw, start, before)
            if found is None:
                sigil = _SIGIL.search(raw, start + 1)
                continue
            html.append(_escape_text(unescape(raw[done:start])))
            html.append(found[1])
            done = found[0]
            sigil = _SIGIL.search(raw, done)
        html.append(_escape_text(unescape(raw[done:])))
        self.text.append(plain)

    def hashtag(self, raw: str, start: int, before: str) -> tuple[int, str] | None:
        if before and (before in "/)&" or _is_word_char(before)):
            return None
        end = _tag_end(raw, start + 1)
        name = raw[start + 1 : end]
        if _LETTER.search(name) is None:
            return None
        key = tag_key(name)
        if len(key) > MAX_TAG_CHARS:  # no tag: a link the tag route would refuse
            return None
        self.tags[key] = None
        path = key if key.isascii() else quote(key, safe="")  # ASCII word characters need no encoding
        return end, f'<a href="/tags/{path}" class="hashtag">{raw[start:end]}</a>'

    def mention(self, raw: str, start: int, before: str) -> tuple[int, str] | None:
        if before and (before == "/" or _is_word_char(before)):
            return None
        m = _HANDLE.match(raw, start + 1)
        if m is None:
            return None
        key = m.group().lower()
        self.mentions[key] = None
        return m.end(), f'<a href="/@{key}" class="mention">{raw[start : m.end()]}</a>'


def render_post(markdown: str) -> RenderedPost:
    """Render a post's Markdown to sanitized HTML and extract its text, hashtags, mentions and links."""
    tokens, _ = _MD.parse(markdown)
    walk = _Walk()
    walk.tokens(tokens, in_link=False)  # type: ignore[arg-type]  # without a renderer, parse returns tokens
    return RenderedPost(
        html=strip_bidi(_CLEANER.clean("".join(walk.html))),
        text=strip_bidi(" ".join("".join(walk.text).split())),
        hashtags=tuple(walk.tags),
        mentions=tuple(walk.mentions),
        links=tuple(walk.links),
    )

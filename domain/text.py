"""Text rules, the one place each is written: handles, hashtag keys, post bodies, display names, visible text.

Pure (no I/O). The event models, the API's request models, the pages' forms, the Markdown renderer and the stores
use these, so a handle or a tag means the same thing everywhere.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any

from pydantic import AfterValidator, GetJsonSchemaHandler, StringConstraints
from pydantic.json_schema import JsonSchemaValue

HANDLE_CHARS = r"[A-Za-z0-9][A-Za-z0-9-]{0,38}"  # a GitHub login: letters, digits, hyphens, at most 39
HANDLE = re.compile(rf"^{HANDLE_CHARS}$")
Handle = Annotated[str, StringConstraints(pattern=rf"^{HANDLE_CHARS}$")]


def is_handle(value: str) -> bool:
    """Whether `value` is a handle, whole: `HANDLE.match` would also take one followed by a newline (`$`)."""
    return HANDLE.fullmatch(value) is not None


MAX_POST_CHARS = 2000
MAX_TAG_CHARS = 100  # the renderer links no longer tag, so every tag link opens
DISPLAY_NAME_MAX = 50
BIO_MAX = 160

# Characters that reorder the text around them (bidi embeddings, overrides, isolates): spoofing material.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Blank characters Unicode classes as letters or symbols (Hangul fillers, braille blank).
_NO_BIDI = dict.fromkeys(map(ord, BIDI_CONTROLS))
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")

Tag = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TAG_CHARS, pattern=r"^[^\x00]+$")]
# What every text in an event may hold: no NUL (PostgreSQL text cannot store it, Redis can; one rule for all).
NoNul = Annotated[str, StringConstraints(pattern=r"^[^\x00]*$")]


def strip_bidi(text: str) -> str:
    """`text` without bidi embeddings, overrides and isolates (they would reorder the page around a post)."""
    return text.translate(_NO_BIDI)


def tag_key(raw: str) -> str:
    """The key a hashtag is stored and linked under: no `#`, case-folded, NFC (`#Café` and `#CAFÉ` -> `café`)."""
    return unicodedata.normalize("NFC", raw.removeprefix("#").casefold())


def is_invisible(char: str) -> bool:
    """Whitespace, format characters (zero-width spaces and joiners, bidi marks) and blank fillers."""
    return char.isspace() or unicodedata.category(char) in ("Cf", "Cc", "Zs") or char in _BLANK_LETTERS


def has_visible(text: str) -> bool:
    return any(not is_invisible(char) for char in text)


def unify_newlines(text: str) -> str:
    """CRLF and lone CR as LF, as browsers submit forms: lengths count one character per line break."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def is_control(char: str, allow_newlines: bool = False) -> bool:
    """C0/C1 controls, surrogates and bidi controls (a line break only when `allow_newlines` is false)."""
    if char == "\n" and allow_newlines:
        return False
    return unicodedata.category(char) in ("Cc", "Cs") or char in BIDI_CONTROLS


def _visible(text: str) -> str:
    if not has_visible(text):
        raise ValueError("must contain a visible character (not only spaces, zero-width or direction marks)")
    return text


def _no_nul(text: str) -> str:
    if "\x00" in text:
        raise ValueError("must not contain a NUL character")
    return text


def _no_controls(allow_newlines: bool) -> Callable[[str], str]:
    def check(text: str) -> str:
        if any(is_control(char, allow_newlines) for char in text):
            raise ValueError("must not contain control characters")
        return text

    return check


# The same rules as JSON Schema patterns (for the published schemas, clients and fuzzers), built from the
# predicates above when a schema is generated, so the two cannot disagree.
@cache
def _class(kind: str) -> str:
    """A regex character class body (literal characters, ranges) of every code point `kind` selects."""
    test = {
        "invisible": is_invisible,
        "control": is_control,
        "control-but-newline": lambda c: is_control(c, allow_newlines=True),
        "nul": lambda c: c == "\x00",
    }[kind]
    points = [p for p in range(sys.maxunicode + 1) if not 0xD800 <= p <= 0xDFFF and test(chr(p))]
    ranges: list[list[int]] = []
    for point in points:
        if ranges and ranges[-1][1] == point - 1:
            ranges[-1][1] = point
        else:
            ranges.append([point, point])
    literal = lambda p: re.escape(chr(p)) if chr(p) in "\\]^-[" else chr(p)  # noqa: E731
    return "".join(literal(a) if a == b else f"{literal(a)}-{literal(b)}" for a, b in ranges)


@dataclass(frozen=True)
class _schema_pattern:
    """Adds the pattern of a text rule to the JSON Schema of an `Annotated` string."""

    forbidden: str
    visible: bool

    def __get_pydantic_json_schema__(self, core: Any, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler(core)
        body = f"[^{_class(self.forbidden)}]*"
        schema["pattern"] = f"^{body}[^{_class('invisible')}]{body}$" if self.visible else f"^{body}$"
        return schema


def strip_lines(value: object) -> object:
    """Newlines unified, then surrounding whitespace trimmed (what a form field or a JSON name is read as)."""
    return unify_newlines(value).strip() if isinstance(value, str) else value


def unify_lines(value: object) -> object:
    return unify_newlines(value) if isinstance(value, str) else value


# What the events hold; the API's request models read input into them (`Annotated[PostBody, BeforeValidator(...)]`).
PostBody = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_POST_CHARS),
    AfterValidator(_no_nul),
    AfterValidator(_visible),
    _schema_pattern("nul", True),
]
DisplayName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=DISPLAY_NAME_MAX),
    AfterValidator(_no_controls(False)),
    AfterValidator(_visible),
    _schema_pattern("control", True),
]
Bio = Annotated[
    str,
    StringConstraints(max_length=BIO_MAX),
    AfterValidator(_no_controls(True)),
    _schema_pattern("control-but-newline", False),
]

"""HTML safety invariants, checked on the tree an HTML5 parser (html5lib) builds, never by string search.

`unsafe_parts(markup)` lists what a browser could run or load from the markup: a forbidden element (script-capable,
embedding, form, metadata or resource-loading, and any SVG or MathML element), an event handler (`on*`), `style`
or `srcdoc` attribute, or a URL-bearing attribute whose scheme is not http, https or mailto. The scheme is read as
browsers read it: html5lib has decoded the entities; leading and trailing C0 controls and spaces are stripped and
tabs and newlines removed anywhere; what comes before the first ':' that precedes any '/', '?' or '#' is the
scheme, lower-cased. That is stricter than browsers, which read `java%09script:x` or `\u2028javascript:x` as
relative paths; `strict_schemes=False` applies the browsers' own rule (a scheme is an ASCII letter followed by
letters, digits, `+`, `-`, `.`), for HTML that no renderer of ours wrote. Relative URLs are fine.

Rendered posts are checked as fragments with the strict default. A page test passes `fragment=False` and the
elements the page legitimately has in `allow_elements`, e.g. `{"script", "link", "meta", "form", "input", "img"}`.
"""

from __future__ import annotations

import re

import html5lib

ALLOWED_SCHEMES = frozenset({"http", "https", "mailto"})
FORBIDDEN_ELEMENTS = frozenset(
    {
        "script", "noscript", "template", "style", "link", "base", "meta", "iframe", "frame", "frameset",
        "noframes", "object", "embed", "applet", "param", "portal", "form", "input", "button", "textarea",
        "select", "isindex", "keygen", "svg", "math", "img", "image", "picture", "source", "video", "audio",
        "track", "canvas", "bgsound", "xmp", "noembed", "plaintext",
    }
)  # fmt: skip
URL_ATTRIBUTES = frozenset(
    {
        "href", "src", "action", "formaction", "data", "poster", "background", "cite", "longdesc", "lowsrc",
        "dynsrc", "codebase", "classid", "manifest", "icon", "profile", "usemap", "archive", "itemtype", "ping",
        "srcset", "imagesrcset", "datasrc", "xlink:href",
    }
)  # fmt: skip
_FOREIGN = ("{http://www.w3.org/2000/svg}", "{http://www.w3.org/1998/Math/MathML}")
_XLINK = "{http://www.w3.org/1999/xlink}"
_C0_AND_SPACE = "".join(map(chr, range(0x21)))
_ANY_SCHEME = re.compile(r"([^/?#:]*):")
_URL_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")


def url_scheme(value: str, *, strict: bool = True) -> str | None:
    """The scheme a browser reads from an attribute value (entities decoded); None for a relative URL."""
    value = value.strip(_C0_AND_SPACE).replace("\t", "").replace("\n", "").replace("\r", "")
    m = (_ANY_SCHEME if strict else _URL_SCHEME).match(value)
    return m.group(1).lower() if m else None


def _urls(name: str, value: str) -> list[str]:
    if name in ("srcset", "imagesrcset"):  # "url 2x, url 100w"
        return [candidate.split()[0] for candidate in value.split(",") if candidate.split()]
    if name in ("ping", "archive"):
        return value.replace(",", " ").split()
    return [value]


def unsafe_parts(
    markup: str, *, fragment: bool = True, allow_elements: frozenset[str] = frozenset(), strict_schemes: bool = True
) -> list[str]:
    """Everything in markup a browser could run, or load from a URL with another scheme; empty when safe."""
    parse = html5lib.parseFragment if fragment else html5lib.parse
    root = parse(markup, treebuilder="etree", namespaceHTMLElements=False)
    found: list[str] = []
    for element in root.iter():
        if not isinstance(element.tag, str) or element.tag == "DOCUMENT_FRAGMENT":
            continue  # comments, the fragment's root
        tag = element.tag.rpartition("}")[2].lower()
        if element.tag.startswith(_FOREIGN):
            found.append(f"<{tag}>: SVG or MathML element")
        elif tag in FORBIDDEN_ELEMENTS and tag not in allow_elements:
            found.append(f"<{tag}>: forbidden element")
        for raw_name, value in element.attrib.items():
            name = ("xlink:" if raw_name.startswith(_XLINK) else "") + raw_name.rpartition("}")[2].lower()
            if name.startswith("on") or name in ("style", "srcdoc"):
                found.append(f"<{tag} {name}={value!r}>: forbidden attribute")
            elif name in URL_ATTRIBUTES:
                for url in _urls(name, value):
                    scheme = url_scheme(url, strict=strict_schemes)
                    if scheme is not None and scheme not in ALLOWED_SCHEMES:
                        found.append(f"<{tag} {name}={url!r}>: scheme {scheme!r}")
    return found


def assert_safe_html(markup: str, *, fragment: bool = True, allow_elements: frozenset[str] = frozenset()) -> None:
    """Fail with the unsafe parts of markup, if any."""
    problems = unsafe_parts(markup, fragment=fragment, allow_elements=allow_elements)
    assert not problems, f"unsafe HTML {markup!r}: {problems}"

"""The search query language, parsed by one pure function into terms the store turns into a tsquery with parameters.

Syntax: words (all must match, stemmed), `"exact phrase"`, `-excluded` (a word, phrase or tag), `#tag`,
`from:@handle` (or `from:handle`), and `OR` (upper case) between two terms. `OR` binds tighter than the implied AND:
`a b OR c` is a AND (b OR c). A `#tag` matches the word in the text too; posts carrying the tag exactly rank first.
Nothing here builds SQL: the store passes each term's text as a parameter to `phraseto_tsquery` and combines the
results with aggregates, so no user text ever reaches the SQL string. Whatever the input, parsing never fails:
stray operators, quotes and punctuation are dropped, and a query left with no positive term matches nothing.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from domain.text import is_handle, tag_key

MAX_QUERY_CHARS = 256
MAX_TERMS = 16  # more terms add nothing a person types, only cost

_TOKEN = re.compile(r'-?"[^"]*"?|\S+')
_TAG = re.compile(r"^#(\w+)[^\w#]*$")  # trailing punctuation ("#rust," "#rust!") is not part of the tag
_WORDY = re.compile(r"\w")


@dataclass(frozen=True, slots=True)
class Term:
    """One word or phrase (its text goes to `phraseto_tsquery`); negated terms must not match."""

    text: str
    negated: bool = False


@dataclass(frozen=True, slots=True)
class ParsedQuery:
    """AND of groups, each group an OR of terms; plus exact hashtags to rank first and authors to keep."""

    groups: tuple[tuple[Term, ...], ...] = ()
    tags: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()

    @property
    def has_positive(self) -> bool:
        """Whether some group holds a term that must match (a query of exclusions alone would scan everything)."""
        return any(all(not t.negated for t in group) for group in self.groups)

    @property
    def empty(self) -> bool:
        """Nothing to search for: the answer is an empty list, without asking the store."""
        return not self.has_positive and not self.authors

    def arrays(self) -> tuple[list[int], list[str], list[bool]]:
        """(group index, text, negated) per term: the parameters of the store's tsquery builder."""
        rows = [(i, t.text, t.negated) for i, group in enumerate(self.groups) for t in group]
        return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]

    @property
    def words(self) -> str:
        """The positive terms as plain lower-case text (what a user search matches handles and names against)."""
        return " ".join(t.text.casefold() for group in self.groups for t in group if not t.negated)


def _term(token: str) -> tuple[Term | None, str | None, str | None]:
    """(term, exact tag, author handle) for one token; Nones for what it is not."""
    negated = token.startswith("-") and len(token) > 1
    body = token[1:] if negated else token
    if body.lower().startswith("from:"):
        handle = body[5:].removeprefix("@")
        return None, None, handle.lower() if is_handle(handle) and not negated else None
    if body.startswith('"'):
        text = body.strip('"').strip()
        return (Term(text, negated) if _WORDY.search(text) else None), None, None
    body = body.replace('"', "")
    tag_match = _TAG.match(body)
    if tag_match and any(c.isalpha() for c in tag_match.group(1)):
        tag = tag_key(tag_match.group(1))
        return Term(tag, negated), None if negated else tag, None
    return (Term(body, negated) if _WORDY.search(body) else None), None, None


def parse_query(q: str) -> ParsedQuery:
    """Parse a search box query (see the module docstring); never raises."""
    q = unicodedata.normalize("NFC", q.replace("\x00", ""))[:MAX_QUERY_CHARS]
    groups: list[list[Term]] = []
    tags: list[str] = []
    authors: list[str] = []
    join_next = False
    for token in _TOKEN.findall(q):
        if token == "OR":
            join_next = bool(groups)
            continue
        term, tag, author = _term(token)
        if author and author not in authors:
            authors.append(author)
        if tag and tag not in tags:
            tags.append(tag)
        if author:
            join_next = False  # `a OR from:@x b` joins nothing: from: is a filter, not a term
        if term is None or sum(map(len, groups)) >= MAX_TERMS:
            continue
        if join_next:
            groups[-1].append(term)
        else:
            groups.append([term])
        join_next = False
    return ParsedQuery(tuple(tuple(g) for g in groups), tuple(tags), tuple(authors))

"""The search query language (pure): terms, phrases, exclusions, OR groups, tags, authors; and snippet escaping."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from store.search import ProfileChange, like_pattern, merge_profiles, snippet_html, user_words
from store.search_query import MAX_QUERY_CHARS, MAX_TERMS, ParsedQuery, Term, parse_query


def texts(query: ParsedQuery) -> list[list[str]]:
    return [[("-" if t.negated else "") + t.text for t in group] for group in query.groups]


def test_words_must_all_match() -> None:
    assert texts(parse_query("rust async  runtime")) == [["rust"], ["async"], ["runtime"]]


def test_phrase_is_one_term() -> None:
    assert parse_query('"event sourcing" kafka').groups == ((Term("event sourcing"),), (Term("kafka"),))


def test_unterminated_phrase_takes_the_rest() -> None:
    assert texts(parse_query('kafka "event sourcing')) == [["kafka"], ["event sourcing"]]


def test_exclusions() -> None:
    assert texts(parse_query('python -snake -"monty python"')) == [["python"], ["-snake"], ["-monty python"]]


def test_or_binds_tighter_than_and() -> None:
    assert texts(parse_query("db postgres OR mysql OR sqlite")) == [["db"], ["postgres", "mysql", "sqlite"]]


@pytest.mark.parametrize("q", ["OR rust", "rust OR", "rust OR OR"])
def test_dangling_or_is_dropped(q: str) -> None:
    assert texts(parse_query(q)) == [["rust"]]


def test_lower_case_or_is_a_word() -> None:
    assert texts(parse_query("this or that")) == [["this"], ["or"], ["that"]]


def test_hashtag_is_a_term_and_an_exact_tag() -> None:
    query = parse_query("#Rust, #ÉTÉ beginners")
    assert query.tags == ("rust", "été")
    assert texts(query) == [["rust"], ["été"], ["beginners"]]


def test_excluded_hashtag_is_not_ranked_first() -> None:
    query = parse_query("lang -#java")
    assert query.tags == ()
    assert texts(query) == [["lang"], ["-java"]]


def test_number_sign_without_letter_is_no_tag() -> None:
    query = parse_query("#1 issue")
    assert query.tags == ()
    assert texts(query) == [["#1"], ["issue"]]


def test_from_author() -> None:
    query = parse_query("from:@Alice-B release from:bob from:@not_valid!")
    assert query.authors == ("alice-b", "bob")
    assert texts(query) == [["release"]]


def test_or_does_not_join_across_a_from_filter() -> None:
    assert texts(parse_query("a OR from:@bob b")) == [["a"], ["b"]]


def test_excluded_author_is_ignored() -> None:
    assert parse_query("-from:@bob news").authors == ()


@pytest.mark.parametrize("q", ["", "OR", '"', '""', "-", "- -", "!!! ???", "-cat", '-"a b"', "  ", "from:", "#"])
def test_nothing_to_search_for(q: str) -> None:
    assert parse_query(q).empty


def test_only_an_author_is_a_search() -> None:
    query = parse_query("from:@bob")
    assert not query.empty and not query.has_positive


def test_exclusion_in_an_or_group_is_not_positive() -> None:
    assert not parse_query("-a OR b").has_positive
    assert parse_query("-a OR b c").has_positive


def test_arrays_are_the_store_parameters() -> None:
    groups, words, negated = parse_query('a "b c" OR -d').arrays()
    assert (groups, words, negated) == ([0, 1, 1], ["a", "b c", "d"], [False, False, True])


def test_terms_are_capped_and_nul_removed() -> None:
    query = parse_query(" ".join(f"w{i}" for i in range(40)) + "\x00")
    assert sum(map(len, query.groups)) == MAX_TERMS
    assert "\x00" not in parse_query("a\x00b").groups[0][0].text


def test_never_raises_on_random_input() -> None:
    rng = random.Random(7)
    alphabet = "abc XYZ \"#@-:()!?*&|\\'%_\x00éß漢 OR from:"
    for _ in range(2000):
        q = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, MAX_QUERY_CHARS)))
        query = parse_query(q)
        groups, words, negated = query.arrays()
        assert len(groups) == len(words) == len(negated) <= MAX_TERMS
        assert all(w and "\x00" not in w for w in words)


def test_user_words_strip_sigils() -> None:
    assert user_words(parse_query("@Alice #Team -bob")) == "alice team"


def test_like_pattern_takes_wildcards_literally() -> None:
    assert like_pattern("50%_a\\b") == "%50\\%\\_a\\\\b%"


def test_snippet_only_markup_is_mark() -> None:
    raw = 'a <script>alert("x")</script> \ue000hit\ue001 & <mark>'
    assert snippet_html(raw) == (
        "a &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; <mark>hit</mark> &amp; &lt;mark&gt;"
    )


def test_profiles_merge_per_field_newest() -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    changes = [
        ProfileChange("u1", t0 + timedelta(seconds=2), display_name="New", bio="bio"),
        ProfileChange("u1", t0, handle="h", display_name="Old", avatar_url="a.png"),
        ProfileChange("u2", t0, handle="x"),
    ]
    rows = {r["user_id"]: r for r in merge_profiles(changes)}
    assert rows["u1"]["display_name"] == "New" and rows["u1"]["handle"] == "h" and rows["u1"]["bio"] == "bio"
    assert rows["u1"]["avatar_url"] == "a.png"
    assert rows["u2"] == {"user_id": "u2", "handle": "x", "handle_at": t0.isoformat(), "display_name_chosen": False}
    assert {r["user_id"]: r for r in merge_profiles(list(reversed(changes)))} == rows


def test_a_chosen_display_name_outranks_a_newer_one_from_github() -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    changes = [
        ProfileChange("u1", t0, display_name="Mine", name_chosen=True),
        ProfileChange("u1", t0 + timedelta(seconds=5), handle="h", display_name="GitHub"),
    ]
    for order in (changes, changes[::-1]):
        (row,) = merge_profiles(order)
        assert (row["display_name"], row["display_name_chosen"], row["handle"]) == ("Mine", True, "h")

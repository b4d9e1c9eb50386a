"""`CHIRP_STORE` picks the posts read model's adapter; a wrong value is refused at start in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any, cast

import asyncpg
import pytest
from pydantic import ValidationError

from chirp.settings import Settings, refusal
from store.arango import ArangoPosts
from store.backends import arango_tables, posts_read_model
from store.posts import PostgresPosts

POOL = cast(asyncpg.Pool, object())  # never used: choosing an adapter connects nothing


def test_postgres_is_the_default_and_builds_the_postgresql_adapter() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.store == "postgres"
    assert isinstance(posts_read_model(settings, POOL), PostgresPosts)
    assert arango_tables(settings, ("posts", "post_versions")) == ()


def test_arango_builds_the_arangodb_adapter_and_owns_the_posts_collections() -> None:
    settings = Settings(store="arango", arango_url="http://127.0.0.1:1")
    assert isinstance(posts_read_model(settings, POOL), ArangoPosts)  # connects on its first query, not here
    assert arango_tables(settings, ("posts", "post_versions", "search_posts")) == ("posts", "post_versions")


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"store": "mongo"}, "invalid settings: CHIRP_STORE: Input should be 'postgres' or 'arango' (got 'mongo')"),
        ({"store": "arango"}, "invalid settings: CHIRP_STORE=arango needs CHIRP_ARANGO_URL (the ArangoDB server)"),
    ],
)
def test_a_wrong_store_is_refused_in_one_line(env: dict[str, Any], line: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(**env)
    assert refusal(caught.value) == line


def test_the_chirp_command_refuses_a_wrong_store_with_one_line_and_exit_2() -> None:
    env = {**os.environ, "CHIRP_STORE": "mongo"}
    done = subprocess.run(
        [sys.executable, "-m", "ops", "consume", "posts"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr == (
        "chirp: invalid settings: CHIRP_STORE: Input should be 'postgres' or 'arango' (got 'mongo')\n"
    )

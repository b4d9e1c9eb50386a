"""Every corpus test finds the shared corpora the same way (`tests/corpora.py`: `$CHIRP_CORPORA`, else
`../shared/corpora`), and skips, naming where it looked, when they are not there."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
CORPUS_TESTS = [
    "tests/unit/test_markdown_safety.py",
    "tests/unit/test_markdown_corpus.py",
    "tests/unit/test_jwt_corpus.py",
]

LOOKUPS = [r"environ[^\n]*CHIRP_CORPORA", r'"shared"', r'"shared/corpora']  # code, not the docstrings naming them


def test_only_the_helper_knows_where_the_corpora_are() -> None:
    own = {TESTS / "corpora.py", Path(__file__).resolve()}
    for path in TESTS.rglob("*.py"):
        if path not in own:
            found = [p for p in LOOKUPS if re.search(p, path.read_text())]
            assert not found, f"{path} finds the corpora itself ({found}): use tests.corpora"


def test_chirp_corpora_points_every_corpus_test_elsewhere(tmp_path: Path) -> None:
    env = {**os.environ, "CHIRP_CORPORA": str(tmp_path)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *CORPUS_TESTS]
    done = subprocess.run(cmd, env=env, cwd=TESTS.parent, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout
    for name in ("xss", "markdown", "jwt"):
        assert f"{name} corpus not found at {tmp_path / name}" in done.stdout, done.stdout

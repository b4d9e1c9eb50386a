"""Where the shared test corpora are (XSS payloads, CommonMark examples, JWT vectors): `$CHIRP_CORPORA`, else
`../shared/corpora` beside the checkout. They live outside the repo; a test whose corpus is missing is skipped
with `missing(name)` as the reason."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(os.environ.get("CHIRP_CORPORA") or Path(__file__).resolve().parents[2] / "shared" / "corpora")


def corpus(name: str) -> Path:
    """The folder of one corpus (`xss`, `markdown`, `jwt`), whether it is there or not."""
    return ROOT / name


def missing(name: str) -> str:
    """Why a test of corpus `name` is skipped."""
    return f"{name} corpus not found at {corpus(name)} (set CHIRP_CORPORA to the folder holding {name}/)"

"""Schemathesis hooks for the API tests: a valid cursor is only one the API issued, so valid data has none."""

from __future__ import annotations

import schemathesis
from hypothesis import strategies as st

schemathesis.openapi.format("cursor", st.just(""))

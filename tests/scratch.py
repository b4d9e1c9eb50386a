"""Names of what a test run creates on the shared broker: each carries the run's id, and only those are deleted.

The id is set once per run (`CHIRP_TEST_RUN`, inherited by the consumer processes a test starts), so the clean-up
at the end of a run never touches a topic or group that the app, a benchmark or another run created meanwhile.
"""

from __future__ import annotations

import os
import secrets

from schemas.events import new_id

RUN = os.environ.setdefault("CHIRP_TEST_RUN", secrets.token_hex(3))
MARK = f"r{RUN}x"  # the part of a name that says this run made it


def scratch_id() -> str:
    """A unique lower-case id for a scratch topic, group or table of this run."""
    return f"{MARK}{new_id().lower()}"

"""The correlation ids the gateway makes for requests without `X-Request-ID`: ULIDs of the moment, all different."""

from __future__ import annotations

import time

from ulid import ULID

from gateway.middleware import new_correlation_id


def test_new_correlation_ids_are_ulids_of_now_and_distinct() -> None:
    before = time.time()
    ids = [new_correlation_id() for _ in range(1000)]
    after = time.time()
    assert len(set(ids)) == len(ids)
    for cid in ids:
        assert len(cid) == 26 and str(ULID.from_str(cid)) == cid  # Crockford's alphabet, canonical spelling
        assert int(before * 1000) <= ULID.from_str(cid).milliseconds <= int(after * 1000)

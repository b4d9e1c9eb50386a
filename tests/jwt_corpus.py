"""The shared JWT corpus (`../shared/corpora/jwt`, or `CHIRP_CORPORA`): loading it, and turning its claim templates
into claims. The unit test checks `verify_access_token` against it, the integration test the gateway's 401s."""

from __future__ import annotations

import json
from typing import Any

from tests.corpora import corpus

VECTORS = corpus("jwt") / "jwt_vectors.json"

# PyJWT's exception names in `pyjwt_observed`, mapped onto our reason codes (None: accepted).
OUTCOMES: dict[str, str | None] = {
    "OK": None,
    "ExpiredSignatureError": "expired",
    "ImmatureSignatureError": "not_yet_valid",
    "MissingRequiredClaimError": "missing_claim",
    "InvalidIssuerError": "bad_issuer",
    "InvalidAudienceError": "bad_audience",
    "InvalidSubjectError": "malformed",
}
OFFSETS = {"exp_offset_s": "exp", "nbf_offset_s": "nbf", "iat_offset_s": "iat"}


def load() -> dict[str, Any] | None:
    """The corpus, or None when it is not there (the caller skips)."""
    return json.loads(VECTORS.read_text()) if VECTORS.exists() else None


def apply_template(template: dict[str, Any], claims: dict[str, Any], now: int, *, keep_sub: bool = False) -> None:
    """Set the template's claims (offsets relative to `now`) on `claims`, and drop the one a `-missing` template
    names. `keep_sub` keeps our own subject over the template's placeholder."""
    for name, value in template["claims"].items():
        if keep_sub and name == "sub" and isinstance(value, str):
            continue
        claims[OFFSETS.get(name, name)] = now + value if name in OFFSETS else value
    if template["id"].endswith("-missing"):
        del claims[template["id"].removeprefix("claims-").removesuffix("-missing")]

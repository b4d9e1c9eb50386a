"""Ed25519 signing keys for access tokens: one current key, recently retired public keys, a JWKS view.

On disk (`settings.home / "keys"`, mode 0700): `<kid>.pem` holds the current private key (PKCS#8, 0600),
`<kid>.pub.pem` the public half of each retired key, `ring.json` which key is current and when the others
retired. A retired key verifies tokens until every token it signed has expired (`retain_s` after retiring), then
it is dropped. `kid` is the RFC 7638 thumbprint of the public key. An operator-supplied key
(`settings.jwt_private_key_file`) is used as is: rotate it by replacing the file and restarting.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

if TYPE_CHECKING:
    from chirp.settings import Settings

LEEWAY_S = 5
DEFAULT_RETAIN_S = 15 * 60 + LEEWAY_S  # longest access token plus the verifier's leeway
_RING = "ring.json"


class KeyRingError(Exception):
    """A key file is missing, unreadable, too widely readable, or the ring cannot rotate."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def thumbprint(public_key: Ed25519PublicKey) -> str:
    """The RFC 7638 JWK thumbprint (SHA-256, base64url) of an Ed25519 public key."""
    canonical = json.dumps(
        {"crv": "Ed25519", "kty": "OKP", "x": _b64url(_raw(public_key))}, separators=(",", ":"), sort_keys=True
    )
    return _b64url(hashlib.sha256(canonical.encode()).digest())


@dataclass(frozen=True)
class SigningKey:
    kid: str
    public_key: Ed25519PublicKey
    private_key: Ed25519PrivateKey | None = field(default=None, repr=False)  # None once retired
    retired_at: float | None = None

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh Ed25519 key named by its thumbprint."""
        private = Ed25519PrivateKey.generate()
        return cls(kid=thumbprint(private.public_key()), public_key=private.public_key(), private_key=private)

    def jwk(self) -> dict[str, str]:
        """The public key as a JWK."""
        x = _b64url(_raw(self.public_key))
        return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": self.kid, "alg": "EdDSA", "use": "sig"}


class KeyRing:
    """The current signing key and the retired keys whose tokens may still be live."""

    def __init__(
        self,
        keys: Sequence[SigningKey],
        *,
        directory: Path | None = None,
        rotatable: bool = True,
        retain_s: float = DEFAULT_RETAIN_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not keys or keys[0].private_key is None:
            raise KeyRingError("a key ring needs a current private key first")
        self._keys = list(keys)
        self._directory = directory
        self._rotatable = rotatable
        self._retain_s = retain_s
        self._clock = clock

    @classmethod
    def generate(cls, *, retain_s: float = DEFAULT_RETAIN_S, clock: Callable[[], float] = time.time) -> KeyRing:
        """An in-memory ring with one fresh key (tests, tools)."""
        return cls([SigningKey.generate()], retain_s=retain_s, clock=clock)

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        """The operator's key file when set, else the generated ring under `settings.home / "keys"`."""
        retain_s = settings.access_token_minutes * 60 + LEEWAY_S
        if settings.jwt_private_key_file is not None:
            return cls.from_pem_file(settings.jwt_private_key_file, retain_s=retain_s)
        return cls.load_or_create(settings.home / "keys", retain_s=retain_s)

    @classmethod
    def from_pem_file(cls, path: Path, *, retain_s: float = DEFAULT_RETAIN_S) -> KeyRing:
        """A fixed ring holding the Ed25519 private key in `path` (PEM, PKCS#8)."""
        private = _load_private(path)
        key = SigningKey(kid=thumbprint(private.public_key()), public_key=private.public_key(), private_key=private)
        return cls([key], rotatable=False, retain_s=retain_s)

    @classmethod
    def load_or_create(
        cls, directory: Path, *, retain_s: float = DEFAULT_RETAIN_S, clock: Callable[[], float] = time.time
    ) -> KeyRing:
        """The ring stored in `directory`, generated there on first start."""
        with _locked(directory):
            ring = cls._read(directory, retain_s=retain_s, clock=clock)
            if ring is None:
                ring = cls([SigningKey.generate()], directory=directory, retain_s=retain_s, clock=clock)
                ring._write()
            return ring

    @property
    def current(self) -> SigningKey:
        """The key that signs new tokens."""
        return self._keys[0]

    @property
    def private_key(self) -> Ed25519PrivateKey:
        """The private half of the current key."""
        key = self.current.private_key
        assert key is not None  # the constructor insists on it
        return key

    def public_key(self, kid: str) -> Ed25519PublicKey | None:
        """The public key for `kid` if it is current or retired recently enough to still verify."""
        for key in self._live():
            if key.kid == kid:
                return key.public_key
        return None

    def rotate(self) -> SigningKey:
        """Make a new current key; the old one keeps verifying for `retain_s`, then is dropped."""
        if not self._rotatable:
            raise KeyRingError("this key comes from jwt_private_key_file: replace the file to rotate")
        if self._directory is None:
            self._push_new_key()
            return self.current
        with _locked(self._directory):
            self._reload_unlocked()  # another process may have rotated since we loaded
            self._push_new_key()
            self._write()
        return self.current

    def reload(self) -> None:
        """Pick up a rotation made by another process (no-op for in-memory and file-supplied rings)."""
        if self._directory is not None:
            with _locked(self._directory):
                self._reload_unlocked()

    def _reload_unlocked(self) -> None:
        assert self._directory is not None
        fresh = self._read(self._directory, retain_s=self._retain_s, clock=self._clock)
        if fresh is not None:
            self._keys = fresh._keys

    def _push_new_key(self) -> None:
        retired = replace(self.current, private_key=None, retired_at=self._clock())
        self._keys = [SigningKey.generate(), retired, *self._keys[1:]]
        self._keys = list(self._live())

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The public keys that verify tokens, as a JWK Set."""
        return {"keys": [key.jwk() for key in self._live()]}

    def _live(self) -> Iterator[SigningKey]:
        now = self._clock()
        for key in self._keys:
            if key.retired_at is None or now < key.retired_at + self._retain_s:
                yield key

    @classmethod
    def _read(cls, directory: Path, *, retain_s: float, clock: Callable[[], float]) -> KeyRing | None:
        index = directory / _RING
        if not index.exists():
            return None
        meta: dict[str, Any] = json.loads(index.read_text())
        private = _load_private(directory / f"{meta['current']}.pem", strict_mode=True)
        keys = [SigningKey(kid=meta["current"], public_key=private.public_key(), private_key=private)]
        for kid, retired_at in meta["retired"].items():
            pub_path = directory / f"{kid}.pub.pem"
            if pub_path.exists():
                public = serialization.load_pem_public_key(pub_path.read_bytes())
                if isinstance(public, Ed25519PublicKey):
                    keys.append(SigningKey(kid=kid, public_key=public, retired_at=float(retired_at)))
        return cls(keys, directory=directory, retain_s=retain_s, clock=clock)

    def _write(self) -> None:
        """Persist the live keys, then delete files of keys that are no longer live or no longer current."""
        assert self._directory is not None
        directory = self._directory
        current = self.current
        assert current.private_key is not None
        _write_file(
            directory / f"{current.kid}.pem",
            current.private_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
        for key in self._keys[1:]:
            pem = key.public_key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            _write_file(directory / f"{key.kid}.pub.pem", pem)
        meta = {"current": current.kid, "retired": {key.kid: key.retired_at for key in self._keys[1:]}}
        _write_file(directory / _RING, json.dumps(meta, indent=2).encode())
        wanted = {f"{current.kid}.pem", _RING, ".lock", *(f"{key.kid}.pub.pem" for key in self._keys[1:])}
        for path in directory.iterdir():
            if path.name not in wanted and path.name.endswith((".pem", ".tmp")):
                path.unlink(missing_ok=True)


def _load_private(path: Path, *, strict_mode: bool = False) -> Ed25519PrivateKey:
    try:
        if strict_mode and path.stat().st_mode & 0o077:
            raise KeyRingError(f"{path} is readable by group or others; expected mode 0600")
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise KeyRingError(f"cannot load the signing key from {path}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyRingError(f"{path} does not hold an Ed25519 private key")
    return key


def _write_file(path: Path, data: bytes) -> None:
    """Write atomically with mode 0600 (temp file in the same directory, then rename)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Create `directory` (0700) and hold an exclusive lock so concurrent first starts make one key, not two."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock

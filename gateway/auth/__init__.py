"""Identity building blocks: signing keys, access tokens, refresh sessions, CSRF checks."""

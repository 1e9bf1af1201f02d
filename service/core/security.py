"""The API key check: constant-time, and a no-op when no key is configured."""

from __future__ import annotations

import secrets

from pydantic import SecretStr

API_KEY_HEADER = "X-API-Key"


def key_matches(configured: SecretStr | None, presented: str | None) -> bool:
    """Whether a request may change state: always when no key is set, else only with the key."""
    if configured is None:
        return True
    if presented is None:
        return False
    return secrets.compare_digest(presented.encode("utf-8", "surrogatepass"),
                                  configured.get_secret_value().encode("utf-8", "surrogatepass"))

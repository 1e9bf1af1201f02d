"""Errors the domain raises and the API turns into answers (service/api/errors.py).

Each says what went wrong in words a client can act on; none of them is ever a 500.
"""

from __future__ import annotations


class NotFound(LookupError):
    """An id the client named does not exist (404)."""


class InvalidRequest(ValueError):
    """The request is well-formed JSON but asks for something impossible (422)."""


class LimitExceeded(InvalidRequest):
    """The request is over a configured limit (413); the message names the limit and setting."""


class Unavailable(RuntimeError):
    """A backend the request needs is down (503); ``component`` says which."""

    def __init__(self, component: str, message: str) -> None:
        super().__init__(f"{component} unavailable: {message}")
        self.component = component


def check_limit(value: int, limit: int, what: str, setting: str) -> None:
    """Raise ``LimitExceeded`` when ``value`` is over ``limit``."""
    if value > limit:
        raise LimitExceeded(f"{what} is {value}, over the limit of {limit} "
                            f"(the server's {setting})")

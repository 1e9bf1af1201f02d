"""Plain data: the only form in which a value leaves the program's process.

The program's process encodes (``to_plain``, ``plain_json``); the runner and the judge rebuild
from built-in types only (``from_plain``), never through the program's code.
"""

from __future__ import annotations

import json
import reprlib
import sys
from typing import Any

from .names import PROGRAM_MODULE

REPR_LIMIT = 200
PLAIN_DEPTH = 64  # nesting a value may have to cross
PLAIN_ITEMS = 100_000  # scalars and containers in one value
PLAIN_TEXT = 1 << 22  # characters of one string (bytes of one bytes object)

_repr = reprlib.Repr()
_repr.maxstring = REPR_LIMIT
_repr.maxother = REPR_LIMIT
_repr.maxlist = _repr.maxtuple = _repr.maxset = _repr.maxfrozenset = _repr.maxdict = 20
_repr.maxlevel = 4


def short_repr(value: object) -> str:
    """A bounded repr that survives hostile ``__repr__`` methods."""
    try:
        text = _repr.repr(value)
    except BaseException as exc:  # noqa: BLE001 - the value is untrusted
        return f"<unprintable {type(value).__name__}: {type(exc).__name__}>"
    return text if len(text) <= REPR_LIMIT else text[: REPR_LIMIT - 3] + "..."


class TooLarge(ValueError):
    """A value too deep or too large to carry across."""

    __module__ = "__main__"  # feedback names it bare, as it did when the runner was one script


class Opaque:
    """Stands for a value of the program's that is not plain data: equal to nothing but itself.

    Its repr is the one the program's process gave (feedback only, never compared)."""

    __slots__ = ("text", "type_name")
    __hash__ = object.__hash__

    def __init__(self, type_name: str, text: str) -> None:
        self.type_name, self.text = type_name, text

    def __eq__(self, other: object) -> bool:
        return self is other

    def __repr__(self) -> str:
        return self.text


def _type_name(value: object) -> str:
    kind = type(value)
    module = getattr(kind, "__module__", None)
    name = getattr(kind, "__qualname__", None) or "?"
    return name if module in (None, "builtins", PROGRAM_MODULE) else f"{module}.{name}"


def to_plain(value: object) -> Any:
    """``value`` as JSON-ready plain data, read through the built-in types' own methods.

    Scalars (None, bool, int, float, str) stay as they are; containers, bytes and complex
    numbers become ``[tag, body]``; a subclass of a built-in type is read as that type (an
    ``OrderedDict`` as a dict, a namedtuple as a tuple), never through its own methods; a
    ``Fraction`` or ``Decimal`` keeps its exact value; anything else is ``["opaque", [type,
    repr]]``, which equals nothing on the other side. Runs in the program's process."""
    return _enc(value, 0, [PLAIN_ITEMS])


def _enc(v: Any, depth: int, budget: list[int]) -> Any:
    budget[0] -= 1
    if budget[0] < 0 or depth > PLAIN_DEPTH:
        raise TooLarge("the value is too large or too deeply nested to compare")
    kind = type(v)
    if kind is int or kind is bool or kind is float or v is None:
        return v
    if kind is str or kind is bytes or kind is bytearray:
        if len(v) > PLAIN_TEXT:
            raise TooLarge(f"{len(v)} long, too large to compare")
        return v if kind is str else [kind.__name__, bytes(v).decode("latin-1")]
    d = depth + 1
    if kind is list or kind is tuple:
        return ["list" if kind is list else "tuple", [_enc(x, d, budget) for x in v]]
    if kind is dict:
        return ["dict", [[_enc(k, d, budget), _enc(x, d, budget)] for k, x in v.items()]]
    if kind is set or kind is frozenset:
        return ["set" if kind is set else "frozenset", [_enc(x, d, budget) for x in v]]
    if kind is complex:
        return ["complex", [v.real, v.imag]]
    try:
        return _subclass(v, d, budget)
    except TooLarge:
        raise
    except Exception:  # noqa: BLE001 - a hostile object: it stays opaque
        pass
    return ["opaque", [_type_name(v), short_repr(v)]]


def _subclass(v: Any, d: int, budget: list[int]) -> Any:
    """A subclass of a built-in type, read as that type; a Fraction or Decimal, exactly."""
    if isinstance(v, int):
        return int.__int__(v)
    if isinstance(v, float):
        return float.__float__(v)
    if isinstance(v, str):
        return _enc(str.__str__(v), d, budget)
    if isinstance(v, list):
        return ["list", [_enc(x, d, budget) for x in list.__iter__(v)]]
    if isinstance(v, tuple):
        return ["tuple", [_enc(x, d, budget) for x in tuple.__iter__(v)]]
    if isinstance(v, dict):
        return ["dict", [[_enc(k, d, budget), _enc(x, d, budget)] for k, x in dict.items(v)]]
    if isinstance(v, set):
        return ["set", [_enc(x, d, budget) for x in set.__iter__(v)]]
    if isinstance(v, frozenset):
        return ["frozenset", [_enc(x, d, budget) for x in frozenset.__iter__(v)]]
    fractions, decimal = sys.modules.get("fractions"), sys.modules.get("decimal")
    if fractions is not None and type(v) is fractions.Fraction:
        return ["fraction", [int.__int__(v.numerator), int.__int__(v.denominator)]]
    if decimal is not None and type(v) is decimal.Decimal:
        return ["decimal", str(v)]  # exactly a Decimal: its own __str__
    raise TypeError("not plain data")


def _plain_items(body: Any) -> list:
    if type(body) is not list:
        raise ValueError("not plain data")
    return body


def from_plain(data: Any, depth: int = 0) -> Any:
    """The value ``to_plain`` described, rebuilt from built-in types only (never the program's
    code). Raises ValueError for anything else. Runs in the runner and in the judge."""
    kind = type(data)
    if data is None or kind is int or kind is str or kind is bool or kind is float:
        return data
    if kind is not list or len(data) != 2 or depth > PLAIN_DEPTH:
        raise ValueError("not plain data")
    tag, body, d = data[0], data[1], depth + 1
    try:
        if tag == "list":
            return [from_plain(x, d) for x in _plain_items(body)]
        if tag == "tuple":
            return tuple(from_plain(x, d) for x in _plain_items(body))
        if tag == "set":
            return {from_plain(x, d) for x in _plain_items(body)}
        if tag == "frozenset":
            return frozenset(from_plain(x, d) for x in _plain_items(body))
        if tag == "dict":
            return {from_plain(k, d): from_plain(v, d) for k, v in _plain_items(body)}
        if tag in ("bytes", "bytearray") and type(body) is str:
            raw = body.encode("latin-1")
            return raw if tag == "bytes" else bytearray(raw)
        if tag == "complex":
            real, imag = _plain_items(body)
            return complex(float(real), float(imag))
        if tag == "fraction":
            import fractions

            num, den = _plain_items(body)
            return fractions.Fraction(int(num), int(den))
        if tag == "decimal" and type(body) is str:
            import decimal

            return decimal.Decimal(body)
        if tag == "opaque":
            name, text = _plain_items(body)
            return Opaque(str(name)[:REPR_LIMIT], str(text)[:REPR_LIMIT])
    except (TypeError, ValueError, ArithmeticError, RecursionError) as exc:
        raise ValueError(f"not plain data: {exc}") from None
    raise ValueError(f"not plain data: unknown tag {tag!r}")


def plain_json(value: object) -> bytes:
    """``value`` as plain-data JSON; an opaque stand-in when it cannot be carried."""
    kind = type(value)
    if kind is int and -10**18 < value < 10**18:  # type: ignore[operator]
        return int.__repr__(value).encode()  # type: ignore[arg-type]
    if kind is bool:
        return b"true" if value else b"false"
    try:
        return json.dumps(to_plain(value)).encode()
    except TooLarge as exc:
        return json.dumps(["opaque", [_type_name(value), f"<{_type_name(value)}: {exc}>"]]).encode()
    except (ValueError, TypeError, RecursionError):  # e.g. an int past str()'s digit limit
        return json.dumps(["opaque", [_type_name(value), short_repr(value)]]).encode()

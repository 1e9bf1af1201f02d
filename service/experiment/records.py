"""How the study's typed records are read from ``results.json`` and written back.

``results.json`` has been written by several versions of the study, so reading is lenient: a
key the file lacks, or holds null where the field cannot be null, takes the field's default
(an empty record for a record), a key this code does not know is kept as it was read, and a
record read from a file is written back with the file's keys in the file's order. Redrawing the report of an old run therefore
changes nothing in its results.json but the figures it recomputes. A record built by the study
writes every field, except those marked :data:`OPTIONAL_KEY` while they hold nothing.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields
from typing import Any, Self, get_args, get_origin, get_type_hints

_OMIT_NONE = "omit_none"
_BOOKKEEPING = frozenset({"json_extra", "json_keys"})

OPTIONAL_KEY = {_OMIT_NONE: True}
"""Field metadata: the field defaults to None and is left out of the JSON while it is None,
a key the study adds only sometimes (the marker check's ``marker``, the figures once drawn)."""


@dataclass(kw_only=True)
class Record:
    """Base of every record in results.json: typed fields, plus what a file held beyond them."""

    json_extra: dict[str, Any] = field(default_factory=dict, repr=False)
    """Keys this code does not know, kept as read so that writing the record loses nothing."""
    json_keys: tuple[str, ...] | None = field(default=None, repr=False, compare=False)
    """The keys as the file had them, in its order; None for a record the study built."""

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Self:
        """Read one record: missing keys take their defaults, unknown keys are kept."""
        hints = _hints(cls)
        names = {f.name for f in _data_fields(cls)}
        values: dict[str, Any] = {}
        for name in names & set(raw):
            value = _read(hints[name], raw[name])
            if value is not None or _nullable(hints[name]):
                values[name] = value
            elif _is_record(hints[name]):  # a null record: read as an empty one
                values[name] = hints[name].from_json({})
        extra = {k: v for k, v in raw.items() if k not in names}
        return cls(**values, json_extra=extra, json_keys=tuple(raw))

    def to_json(self) -> dict[str, Any]:
        """The record as results.json holds it (the module docstring says which keys)."""
        data = {f.name: f for f in _data_fields(type(self))}
        out: dict[str, Any] = {}
        for key in self.json_keys or ():
            if key in data:
                out[key] = _write(getattr(self, key))
            elif key in self.json_extra:
                out[key] = self.json_extra[key]
        for name, f in data.items():
            value = getattr(self, name)
            if name in out:
                continue
            if self.json_keys is None:
                if value is None and f.metadata.get(_OMIT_NONE):
                    continue
            elif value == _default(f):  # read without it, and still nothing set
                continue
            out[name] = _write(value)
        return out | {k: v for k, v in self.json_extra.items() if k not in out}


def _data_fields(cls: type[Record]) -> list[Field[Any]]:
    return [f for f in fields(cls) if f.name not in _BOOKKEEPING]


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type[Record]) -> dict[str, Any]:
    """The fields' types, resolved once per class (every TaskRecord of a file asks)."""
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


def _default(f: Field[Any]) -> Any:
    factory = f.default_factory
    return factory() if callable(factory) else f.default


def _nullable(hint: Any) -> bool:
    return hint is Any or type(None) in get_args(hint)


def _without_none(hint: Any) -> Any:
    if get_origin(hint) in (types.UnionType, typing.Union):
        rest = [a for a in get_args(hint) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return hint


def _is_record(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, Record)


def _read(hint: Any, value: Any) -> Any:
    """A JSON value as the field's type: records (alone, in lists, as dict values) are built;
    anything else is kept as JSON gave it."""
    hint = _without_none(hint)
    if value is None:
        return None
    args = get_args(hint)
    if _is_record(hint):
        return hint.from_json(value) if isinstance(value, Mapping) else None
    if get_origin(hint) is list and args and _is_record(args[0]) and isinstance(value, list):
        return [args[0].from_json(v) for v in value if isinstance(v, Mapping)]
    if get_origin(hint) is dict and len(args) == 2 and _is_record(args[1]) \
            and isinstance(value, Mapping):
        return {k: args[1].from_json(v if isinstance(v, Mapping) else {})
                for k, v in value.items()}
    return value


def _write(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, list | tuple):
        return [_write(v) for v in value]
    if isinstance(value, dict):
        return {k: _write(v) for k, v in value.items()}
    return value

"""The building blocks of every body: text fields a database column can store, bounded
numbers and ids, and the two bases (a strict request, a declared answer)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints


def _storable(value: str) -> str:
    if "\x00" in value:
        raise ValueError("text must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (no unpaired surrogates)") from None
    return value


Text = Annotated[str, AfterValidator(_storable)]
ShortText = Annotated[str, StringConstraints(max_length=200), AfterValidator(_storable)]
LongText = Annotated[str, StringConstraints(max_length=100_000), AfterValidator(_storable)]
Statement = Annotated[str, StringConstraints(max_length=20_000), AfterValidator(_storable)]
Program = Annotated[str, StringConstraints(max_length=1_000_000), AfterValidator(_storable)]
Finite = Annotated[float, Field(allow_inf_nan=False, ge=-1e12, le=1e12)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(_storable)]
DimensionName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Answer(BaseModel):
    """A response body that declares every key the code returns. An undeclared key would be
    dropped from the answer (never a 500 for a client); tests/api/test_loop_answers.py compares
    each answer with the dict the code built, so a key added without its field fails there."""

    model_config = ConfigDict(extra="ignore")


IsoTime = Annotated[str, Field(description="ISO 8601, as stored (UTC)")]

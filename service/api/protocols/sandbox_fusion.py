"""SandboxFusion's ``run_code`` wire format (its ``sandbox/server/sandbox_api.py``): the request
fields it defines and the response shape its clients parse. Only Python runs here; what else of
SandboxFusion is and is not covered is listed in docs/API.md."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from service.api.schemas import Program, Text

FilePath = Annotated[str, StringConstraints(min_length=1, max_length=500)]


class RunStatus(StrEnum):
    SUCCESS = "Success"  # every command finished with return code 0
    FAILED = "Failed"  # a non-zero return code, or the time limit
    SANDBOX_ERROR = "SandboxError"  # the sandbox itself failed (clients retry)


class CommandRunStatus(StrEnum):
    FINISHED = "Finished"
    ERROR = "Error"
    TIME_LIMIT_EXCEEDED = "TimeLimitExceeded"


class RunCodeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # e.g. "args" (pytest only), newer fields

    code: Program
    language: str = Field(description="only 'python' (and its alias 'python3') runs here")
    compile_timeout: float = Field(10, gt=0, le=300, allow_inf_nan=False,
                                   description="accepted for compatibility; Python compiles "
                                               "as it runs")
    run_timeout: float = Field(10, gt=0, le=300, allow_inf_nan=False,
                               description="seconds; above LETI_SANDBOX_TIMEOUT_S, that limit")
    memory_limit_MB: int = Field(-1, ge=-1, le=65536,
                                 description="-1 (or 0): the server's LETI_SANDBOX_MEMORY_MB; "
                                             "above it, that limit")
    stdin: Text | None = None
    files: dict[FilePath, str | None] = Field(default_factory=dict, max_length=100,
                                              description="path -> base64 content; null skips")
    fetch_files: list[FilePath] = Field(default_factory=list, max_length=100,
                                        description="not supported: must be empty")


class CommandRunResult(BaseModel):
    status: CommandRunStatus
    execution_time: float | None = None
    return_code: int | None = None
    stdout: str | None = None
    stderr: str | None = None


class RunCodeResponse(BaseModel):
    status: RunStatus
    message: str = ""
    compile_result: CommandRunResult | None = None
    run_result: CommandRunResult | None = None
    executor_pod_name: str | None = None
    files: dict[str, str] = Field(default_factory=dict)

"""``POST /run_code``: SandboxFusion's endpoint on this project's sandbox, so a SandboxFusion
client's endpoint is simply the service's base URL (docs/API.md "SandboxFusion-compatible")."""

from __future__ import annotations

import logging

from fastapi import APIRouter

from service.api.deps import ApiKey, ServicesDep
from service.api.protocols.sandbox_fusion import (
    CommandRunResult,
    CommandRunStatus,
    RunCodeRequest,
    RunCodeResponse,
    RunStatus,
)
from service.api.schemas import problems
from service.core.errors import InvalidRequest, Unavailable
from service.core.run_code import RunState, Script, run_script

log = logging.getLogger(__name__)
router = APIRouter(tags=["sandbox-fusion"])
LANGUAGES = ("python", "python3")


@router.post("/run_code", response_model=RunCodeResponse, dependencies=[ApiKey],
             responses=problems(400, 401, 413, 422))
async def run_code(body: RunCodeRequest, services: ServicesDep) -> RunCodeResponse:
    """Run a Python script with stdin and files; a sandbox fault is ``SandboxError`` (200)."""
    if body.language not in LANGUAGES:
        raise InvalidRequest(f"language {body.language[:50]!r} is not supported here: only "
                             "'python'")
    if body.fetch_files:
        raise InvalidRequest("fetch_files is not supported here: print what you need instead")
    script = Script(code=body.code, stdin=body.stdin or "",
                    files=tuple((n, d) for n, d in body.files.items() if d is not None),
                    timeout_s=body.run_timeout,
                    memory_mb=body.memory_limit_MB if body.memory_limit_MB > 0 else None)
    try:
        result = await run_script(services.sandbox, services.settings, script)
    except Unavailable as exc:
        log.warning("run_code: %s", exc)
        return RunCodeResponse(status=RunStatus.SANDBOX_ERROR, message=str(exc))
    timed_out = result.state is RunState.TIME_LIMIT
    run = CommandRunResult(
        status=CommandRunStatus.TIME_LIMIT_EXCEEDED if timed_out else CommandRunStatus.FINISHED,
        execution_time=result.seconds, return_code=result.return_code,
        stdout=result.stdout, stderr=result.stderr)
    ok = not timed_out and result.return_code == 0
    return RunCodeResponse(status=RunStatus.SUCCESS if ok else RunStatus.FAILED, run_result=run)

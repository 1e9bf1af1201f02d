"""Every error becomes a JSON answer with a ``detail`` a client can act on.

Domain errors map to 404/413/422; a backend that is down (store, sandbox, generator) maps to 503
naming it. A 500 means a bug in this service: it is logged with its traceback and answered with
no internals.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from sandbox import JobError, SandboxError
from service.core.errors import InvalidRequest, LimitExceeded, NotFound, Unavailable
from service.generation.types import (AdapterError, AdapterNotFound, BackendUnavailable,
                                      GenerationError, RequestRejected)
from service.store.db import StoreUnavailable

log = logging.getLogger(__name__)


def _answer(status: int, detail: str, **extra: str) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status)


def _fixed(status: int, component: str | None = None) -> Callable[[Request, Exception],
                                                                   JSONResponse]:
    def handler(_request: Request, exc: Exception) -> JSONResponse:
        if component is not None:
            return _answer(status, f"{component} unavailable: {exc}", component=component)
        return _answer(status, str(exc))
    return handler


def _unavailable(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Unavailable)
    return _answer(503, str(exc), component=exc.component)


def _database(_request: Request, exc: Exception) -> JSONResponse:
    log.warning("store error: %s", exc)
    return _answer(503, f"store unavailable: {type(exc).__name__}", component="store")


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own errors (401, 404, 405...) as JSON; a 405 lists in ``Allow`` every method
    any route serves at this path (Starlette names only the first route's)."""
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        allowed: set[str] = set()
        for route in request.app.router.routes:
            if route.matches(request.scope)[0] is not Match.NONE:
                allowed |= set(getattr(route, "methods", None) or ())
        headers["Allow"] = ", ".join(sorted(allowed))
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)


def _invalid(_request: Request, exc: Exception) -> JSONResponse:
    """422 listing each problem by location; the offending input is not echoed (it may be huge,
    or not representable in JSON at all, such as NaN)."""
    assert isinstance(exc, RequestValidationError)
    problems = [{"loc": [str(part) for part in error.get("loc", ())],
                 "msg": str(error.get("msg", "")), "type": str(error.get("type", ""))}
                for error in exc.errors()]
    return JSONResponse({"detail": problems}, status_code=422)


def _bug(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _answer(500, "internal error (logged on the server)")


def install_error_handlers(app: FastAPI) -> None:
    """Register the mapping; the most specific class wins (Starlette walks the MRO)."""
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(NotFound, _fixed(404))
    app.add_exception_handler(AdapterNotFound, _fixed(404))
    app.add_exception_handler(LimitExceeded, _fixed(413))
    app.add_exception_handler(InvalidRequest, _fixed(422))
    app.add_exception_handler(JobError, _fixed(422))
    app.add_exception_handler(AdapterError, _fixed(422))
    app.add_exception_handler(RequestRejected, _fixed(422))  # the model server refused it
    app.add_exception_handler(Unavailable, _unavailable)
    app.add_exception_handler(SandboxError, _fixed(503, "sandbox"))
    app.add_exception_handler(BackendUnavailable, _fixed(503, "generator"))
    app.add_exception_handler(GenerationError, _fixed(503, "generator"))
    app.add_exception_handler(StoreUnavailable, _fixed(503, "store"))
    app.add_exception_handler(OperationalError, _database)
    app.add_exception_handler(InterfaceError, _database)
    app.add_exception_handler(Exception, _bug)

"""``/v1/triples``: browse training triples, or stream them all as JSON lines for the trainer."""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from service.api.deps import StoreDep
from service.api.schemas import Id, ShortText, TriplePage, problems
from service.core.errors import InvalidRequest
from service.core.triples import export_lines, export_window, triple_page
from service.store.triples import TripleFilter

router = APIRouter(prefix="/v1/triples", tags=["triples"], responses=problems(422, 503))
MAX_CURSOR = 2**62


def triple_filter(
    source: Annotated[str | None, Query(pattern="^(sandbox|external)$")] = None,
    reward: Annotated[str | None, Query(pattern="^(good|bad)$")] = None,
    kind: Annotated[str | None, Query(pattern="^(mbpp|humaneval|user)$")] = None,
    task_id: Annotated[Id | None, Query()] = None,
    status: Annotated[str | None, Query(max_length=16)] = None,
    adapter: Annotated[ShortText | None, Query()] = None,
    sample_id: Annotated[Id | None, Query()] = None,
    trainable: Annotated[bool | None, Query(
        description="the split-hygiene mark: false lists held-out (validation, test, "
                    "HumanEval) triples, which are never exported")] = None,
    cursor: Annotated[int | None, Query(ge=0, le=MAX_CURSOR,
                                        description="only triples after this id")] = None,
) -> TripleFilter:
    """The query's filters; each narrows, all are optional."""
    return TripleFilter(source=source, reward=reward, kind=kind, task_id=task_id, status=status,
                        adapter=adapter, sample_id=sample_id, trainable=trainable,
                        after=cursor)


Filters = Annotated[TripleFilter, Depends(triple_filter)]


@router.get("", response_model=TriplePage)
async def list_triples(store: StoreDep, where: Filters,
                       limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> TriplePage:
    """Triples in id order; ``next_cursor`` continues the listing."""
    items, next_cursor = await anyio.to_thread.run_sync(triple_page, store, where, limit)
    return TriplePage.model_validate({"items": items, "next_cursor": next_cursor})


@router.get("/export", response_class=StreamingResponse,
            responses={200: {"content": {"application/x-ndjson": {}},
                             "description": "one triple per line (docs/ARCHITECTURE.md)"}})
async def export_triples(store: StoreDep, where: Filters) -> StreamingResponse:
    """Every matching trainable triple, streamed as JSON lines in exactly the trainer's format
    (held-out tasks' triples never are). ``X-Triples-Upto`` is the last id included: pass it as
    ``cursor`` to export only newer ones."""
    if where.trainable is False:
        raise InvalidRequest("the export is training data: held-out triples are never in it "
                             "(list them with GET /v1/triples?trainable=false)")
    window = await anyio.to_thread.run_sync(export_window, store, where)
    return StreamingResponse(export_lines(store, window), media_type="application/x-ndjson",
                             headers={"X-Triples-Upto": str(window.upto),
                                      "Content-Disposition": "attachment; "
                                                             'filename="triples.jsonl"'})

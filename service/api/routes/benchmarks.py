"""``/v1/benchmarks``: start HumanEval/MBPP pass@k jobs for an adapter and read their results."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from service.api.deps import ApiKey, BenchmarkJobsDep, GenerationDep, SettingsDep, StoreDep
from service.api.schemas import problems
from service.benchmarks.jobs import BenchmarkJobs, BenchmarkSpec
from service.benchmarks.scoring import HUMAN_EVAL_TIMEOUT_S
from service.core.config import Settings
from service.core.errors import NotFound
from service.core.generation import Generation
from service.store import benchmark_runs as runs


def _utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes: they are UTC (the store writes UTC)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


Timestamp = Annotated[datetime, AfterValidator(_utc)]


router = APIRouter(prefix="/v1/benchmarks", tags=["benchmarks"], responses=problems(422, 503))


class BenchmarkIn(BaseModel):
    # strict: JSON `false` is not a seed, `"3"` is not an n (the schema says integer)
    model_config = ConfigDict(extra="forbid", strict=True)

    adapter: str | None = Field(default=None, max_length=64, description=(
        "adapter name; 'base' for the base model; omitted: whatever serves now"))
    n: int = Field(default=1, ge=1, le=256, description="samples per task")
    temperature: float = Field(default=0.2, ge=0.0, le=2.0)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    k: list[int] = Field(default_factory=lambda: [1], min_length=1, max_length=16,
                         description="pass@k values to report (each at most n)")
    limit: int | None = Field(default=None, ge=1, le=10_000,
                              description="run only the first `limit` tasks (CPU smoke runs)")
    split: str | None = Field(default="test", max_length=32, description="MBPP split")
    max_new_tokens: int = Field(default=256, ge=1, le=4096)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    timeout_s: float = Field(default=HUMAN_EVAL_TIMEOUT_S, gt=0, le=60)

    @model_validator(mode="after")
    def _ks_fit_n(self) -> BenchmarkIn:
        bad = [k for k in self.k if k < 1 or k > self.n]
        if bad:
            raise ValueError(f"every k must be between 1 and n={self.n}; got {bad}")
        return self


class TaskResultOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    task_id: str
    n: int
    correct: int
    pass_at_k: dict[str, float]
    samples: list[dict[str, Any]] | None = None


class BenchmarkOut(BaseModel):
    id: str
    benchmark: str
    adapter: str | None
    model: str | None
    n: int
    temperature: float
    k: list[int]
    limit: int | None
    status: Literal["pending", "running", "done", "failed"]
    progress: dict[str, int]
    pass_at_k: dict[str, float] | None
    error: str | None
    config: dict[str, Any]
    created_at: Timestamp
    finished_at: Timestamp | None
    results: list[TaskResultOut] | None = None


def _out(run: Any, results: list[Any] | None = None, samples: bool = True) -> BenchmarkOut:
    listed = None
    if results is not None:
        listed = [TaskResultOut(task_id=r.task_id, n=r.n, correct=r.correct,
                                pass_at_k=r.pass_at_k, samples=r.samples if samples else None)
                  for r in results]
    return BenchmarkOut(id=run.id, benchmark=run.benchmark, adapter=run.adapter, model=run.model,
                        n=run.n, temperature=run.temperature, k=list(run.ks),
                        limit=run.task_limit, status=run.status,
                        progress={"tasks_done": run.tasks_done, "tasks_total": run.tasks_total},
                        pass_at_k=run.pass_at_k, error=run.error, config=run.config or {},
                        created_at=run.created_at, finished_at=run.finished_at, results=listed)


async def _start(benchmark: str, body: BenchmarkIn, jobs: BenchmarkJobs, settings: Settings,
                 generation: Generation) -> BenchmarkOut:
    spec = BenchmarkSpec(benchmark=benchmark, adapter=body.adapter, n=body.n,
                         temperature=body.temperature, top_p=body.top_p,
                         ks=tuple(dict.fromkeys(body.k)), limit=body.limit, split=body.split,
                         max_new_tokens=min(body.max_new_tokens, settings.max_new_tokens),
                         seed=body.seed, timeout_s=body.timeout_s)
    run = await jobs.start(spec, generation)
    return _out(run)


@router.post("/humaneval", response_model=BenchmarkOut, status_code=202,
             dependencies=[ApiKey], responses=problems(400, 401, 404, 413))
async def start_humaneval(body: BenchmarkIn, jobs: BenchmarkJobsDep, settings: SettingsDep,
                          generation: GenerationDep) -> BenchmarkOut:
    """Start a HumanEval pass@k run; poll ``GET /v1/benchmarks/{id}`` for progress."""
    return await _start("humaneval", body, jobs, settings, generation)


@router.post("/mbpp", response_model=BenchmarkOut, status_code=202,
             dependencies=[ApiKey], responses=problems(400, 401, 404, 413))
async def start_mbpp(body: BenchmarkIn, jobs: BenchmarkJobsDep, settings: SettingsDep,
                     generation: GenerationDep) -> BenchmarkOut:
    """Start an MBPP pass@k run (``split``, default test); poll ``GET /v1/benchmarks/{id}``."""
    return await _start("mbpp", body, jobs, settings, generation)


@router.get("", response_model=list[BenchmarkOut])
async def list_benchmarks(store: StoreDep,
                          benchmark: Annotated[str | None,
                                               Query(pattern="^(humaneval|mbpp)$")] = None,
                          adapter: Annotated[str | None, Query(max_length=300)] = None,
                          limit: Annotated[int, Query(ge=1, le=1000)] = 100
                          ) -> list[BenchmarkOut]:
    """Runs, newest first, without per-task results: compare adapters on one benchmark."""
    rows = await anyio.to_thread.run_sync(runs.list_runs, store, benchmark, adapter, limit)
    return [_out(r) for r in rows]


@router.get("/{run_id}", response_model=BenchmarkOut, responses=problems(404))
async def get_benchmark(run_id: str, store: StoreDep,
                        samples: Annotated[bool, Query(description="include each sample's "
                                                       "program, status and feedback")] = True
                        ) -> BenchmarkOut:
    """A run's progress and, as tasks finish, its per-task results and then its pass@k."""
    found = await anyio.to_thread.run_sync(runs.get_run, store, run_id)
    if found is None:
        raise NotFound(f"no benchmark run {run_id!r} (list them with GET /v1/benchmarks)")
    run, results = found
    return _out(run, results, samples)

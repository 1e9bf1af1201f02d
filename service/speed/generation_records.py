"""What ``leti bench generate`` measured, as typed records: the harness (``generation``) writes
them once and the report (``generation_report``) and the JSON output read them."""

from __future__ import annotations

from dataclasses import dataclass, field

from service.generation.llama_cpp_anchor import ServerAnchorResult
from service.generation.types import SamplingParams
from trainer.prompts import PROGRAM_STOP


@dataclass(frozen=True)
class Workload:
    """What every measured path samples (the loop's settings)."""

    source: str
    prompts: int
    n: int = 4
    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 256
    stop: tuple[str, ...] = PROGRAM_STOP
    seed: int = 0

    def params(self) -> SamplingParams:
        return SamplingParams(n=self.n, temperature=self.temperature, top_p=self.top_p,
                              max_new_tokens=self.max_new_tokens, stop=self.stop, seed=self.seed)


@dataclass(frozen=True)
class Throughput:
    path: str  # "reference" (the baseline) or "fast"
    rows: int  # rows decoding together (max_batch_size)
    dtype: str
    samples: int
    tokens: int  # generated tokens, the one that stops a sample included
    seconds: float
    cpu_seconds: float  # this process's CPU time: what other jobs on the machine do not inflate
    stopped: int  # samples that ended on the stop sequence or EOS, not the token limit
    busy_share: float | None = None  # fast path: live rows over rows x decode steps
    thread: str = "compute"  # "compute": the compute thread; "request": a thread of its own

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds

    @property
    def tokens_per_cpu_s(self) -> float:
        return self.tokens / self.cpu_seconds


@dataclass
class GenerationBench:
    workload: Workload
    threads: int
    device: str
    dtype: str
    runs: list[Throughput] = field(default_factory=list)
    anchor: ServerAnchorResult | None = None
    anchor_skipped: str | None = None  # why the anchor did not run
    swap_idle_s: list[float] = field(default_factory=list)
    swap_busy_s: list[float] = field(default_factory=list)
    load_average: list[float] = field(default_factory=list)  # 1-minute, before each measurement
    ceiling_tokens_per_s: float | None = None  # the linear layers alone at the best width

    @property
    def baseline(self) -> Throughput:
        """The code as it was: the reference path on a request thread of its own."""
        return next(t for t in self.runs if t.path == "reference" and t.thread == "request")

    def best(self, path: str = "fast") -> Throughput:
        """The path's best width in the generator's dtype: tokens/s, or tokens per CPU-second
        with one torch thread (what other jobs on a shared machine do not inflate)."""
        runs = [t for t in self.runs if t.path == path and t.dtype == self.dtype] or [
            t for t in self.runs if t.path == path]
        return max(runs, key=lambda t: t.tokens_per_cpu_s if self.threads == 1 else t.tokens_per_s)

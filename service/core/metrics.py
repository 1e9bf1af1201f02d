"""Prometheus metrics: requests and latencies by route, executions by status, tokens generated.

Each app owns its registry (several apps in one test process must not collide). The HTTP layer
counts requests (``service/api/metrics.py``'s middleware); the evaluator counts executions and
the generation service tokens and samples.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """The service's counters and histograms, in their own registry."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("leti_http_requests", "HTTP requests answered",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("leti_http_request_duration_seconds",
                                 "Time to answer an HTTP request", ["method", "route"],
                                 buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.executions = Counter("leti_executions", "Programs run in the sandbox, by status",
                                  ["status"], registry=self.registry)
        self.generated_tokens = Counter("leti_generated_tokens", "Completion tokens generated",
                                        ["adapter"], registry=self.registry)
        self.samples = Counter("leti_samples_generated", "Samples generated", ["adapter"],
                               registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)

"""Request and response bodies of the REST API (the OpenAPI schema at /docs comes from these),
one module per resource; import them from here.

Static bounds here keep absurd input out of the domain; the configurable limits (``LETI_MAX_*``)
are checked by the domain, which names the setting in its 413 answer. Every text field refuses
NUL characters and unpaired surrogates, which no database column can store (``fields``). The
loop's, training runs' and adapters' answers declare every key (``fields.Answer``).
"""

from service.api.schemas.adapters import AdapterList, AdapterOut
from service.api.schemas.evaluate import EvaluateRequest, EvaluateResponse, ResultOut
from service.api.schemas.feedback import FeedbackIn, FeedbackOut, RatingIn, ScoreIn
from service.api.schemas.fields import (
    Answer,
    DimensionName,
    Finite,
    Id,
    IsoTime,
    LongText,
    Program,
    ShortText,
    Statement,
    Strict,
    Text,
)
from service.api.schemas.generate import GenerateRequest, GenerateResponse, SampleOut, SamplingIn
from service.api.schemas.health import Readiness
from service.api.schemas.loop import (
    DecisionKind,
    DecisionOut,
    LoopCounts,
    LoopSettingsOut,
    LoopStatus,
    PassAt1Point,
    RoundOut,
    TrainerOut,
)
from service.api.schemas.problems import Problem, problems
from service.api.schemas.samples import ExecutionOut, SampleDetail, StoredFeedbackOut
from service.api.schemas.tasks import TaskIn, TaskOut, TaskPage
from service.api.schemas.train import TrainingRunOut, TrainingStarted
from service.api.schemas.triples import TripleOut, TriplePage

__all__ = [
    "AdapterList", "AdapterOut", "Answer", "DecisionKind", "DecisionOut", "DimensionName",
    "EvaluateRequest", "EvaluateResponse", "ExecutionOut", "FeedbackIn", "FeedbackOut", "Finite",
    "GenerateRequest", "GenerateResponse", "Id", "IsoTime", "LongText", "LoopCounts",
    "LoopSettingsOut", "LoopStatus", "PassAt1Point", "Problem", "Program", "RatingIn",
    "Readiness", "ResultOut", "RoundOut", "SampleDetail", "SampleOut", "SamplingIn", "ScoreIn",
    "ShortText", "Statement", "StoredFeedbackOut", "Strict", "TaskIn", "TaskOut", "TaskPage",
    "Text", "TrainerOut", "TrainingRunOut", "TrainingStarted", "TripleOut", "TriplePage",
    "problems",
]

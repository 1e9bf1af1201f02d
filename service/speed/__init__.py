"""Speed harnesses: what ``leti bench generate|sandbox|api|dtype`` measure, each against its
named anchor in the same run (figures in docs/BENCHMARKS.md).

Not to be confused with ``service.benchmarks``, the pass@k jobs (HumanEval, MBPP) the API runs
on the model: those measure how good the model is, these how fast the machinery is.
"""

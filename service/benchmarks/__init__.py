"""Benchmark jobs: pass@k of the model on HumanEval and MBPP (``POST /v1/benchmarks``, the
study's evaluations), scored in the sandbox and stored.

How good the model is, not how fast the machinery is: the speed harnesses live in
``service.speed``.
"""

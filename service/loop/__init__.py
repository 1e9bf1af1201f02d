"""The continuous self-improvement loop: collect, train, gate, hot-swap (docs/LOOP.md)."""

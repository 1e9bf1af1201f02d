"""The leti-loop service: REST API, settings, store, generation backends, the loop, benchmarks."""

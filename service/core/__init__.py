"""Settings, security and the use cases the API calls: evaluate, generate, feedback, tasks."""

"""The REST API: ``create_app`` (app.py), one router per resource (routes/), deps, errors."""

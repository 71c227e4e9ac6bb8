"""Serving: the server, telemetry, ramp and rollback, drift."""

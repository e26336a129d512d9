"""Adapters that keep state on disk: SQLite store, risk state file, model registry."""

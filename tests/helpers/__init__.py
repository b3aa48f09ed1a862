"""Importable helpers for the runner contract tests (worker processes import them by name)."""

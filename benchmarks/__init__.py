"""Benchmarks: scripts that print figures measured here (never tests, never speed assertions)."""

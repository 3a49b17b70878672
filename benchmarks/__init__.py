"""Benchmarks: scripts that print figures (never tests, never assertions on speed)."""

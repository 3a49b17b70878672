"""Benchmarks: scripts that print figures measured on this machine (never tests, never assertions on speed)."""

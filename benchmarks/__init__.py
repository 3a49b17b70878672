"""Benchmarks: scripts that print figures measured on this machine (not tests)."""

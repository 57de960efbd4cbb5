"""Benchmarks of memory-agent against stock LangGraph persistence (`make bench`)."""

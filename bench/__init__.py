"""Benchmarks: `make bench` runs bench/call_state (see bench/README.md)."""

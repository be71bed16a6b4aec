"""Benchmarks that measure odplug the way a user meets it: whole processes, timed from outside."""

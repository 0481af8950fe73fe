"""Runs: the status machine, the event recorder, the executor and the worker that drives it."""

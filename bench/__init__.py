"""Runstep benchmarks: ``python -m bench [NAME ...] [--quick]``.

Each benchmark starts real ``runstep serve`` processes, measures them over HTTP, and writes its
result (with a description of the machine) to ``bench/results/<name>.json``.
"""

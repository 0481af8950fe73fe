"""Domain rules for assistants, threads, messages and API keys (runs live in ``runstep.runs``)."""

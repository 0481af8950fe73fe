"""One ``ObjectTable`` per kind of stored API object."""

from runstep.store import tables
from runstep.store.objects import ObjectTable

ASSISTANTS = ObjectTable(tables.assistants)
THREADS = ObjectTable(tables.threads)
MESSAGES = ObjectTable(tables.messages)
RUNS = ObjectTable(tables.runs)
RUN_STEPS = ObjectTable(tables.run_steps)
FILES = ObjectTable(tables.files)

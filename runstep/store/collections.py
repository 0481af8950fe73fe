"""One ``ObjectTable`` per kind of stored API object."""

from runstep.store import tables
from runstep.store.objects import ObjectTable

ASSISTANTS = ObjectTable(tables.assistants)
THREADS = ObjectTable(tables.threads)
MESSAGES = ObjectTable(tables.messages)
RUNS = ObjectTable(tables.runs)
RUN_STEPS = ObjectTable(tables.run_steps)
FILES = ObjectTable(tables.files)
VECTOR_STORES = ObjectTable(tables.vector_stores)
VECTOR_STORE_FILES = ObjectTable(tables.vector_store_files)  # replace() is not scoped by store
VECTOR_STORE_FILE_BATCHES = ObjectTable(tables.vector_store_file_batches)

"""Wire models mirroring the official Assistants API v2 schemas. Imports nothing else of ours."""

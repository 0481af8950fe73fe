"""Built-in tools that runs can call (``file_search``, ...)."""

"""Code that runs inside the sandbox (mounted read-only at /opt/runstep), never in the
server."""

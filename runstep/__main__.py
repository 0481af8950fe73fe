"""``python -m runstep`` is the ``runstep`` command."""

from runstep.cli import app

app()

"""Errors of the code interpreter sandbox."""


class SandboxError(Exception):
    """The sandbox cannot run this execution (see the subclasses)."""


class SandboxUnavailable(SandboxError):
    """The sandbox cannot start (bubblewrap missing or refused, no interpreter environment...).
    Code is never run without it."""


class SandboxBusy(SandboxError):
    """Every session slot is executing code; try again later."""

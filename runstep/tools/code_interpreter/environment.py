"""The sandbox interpreter's own environment: a virtual environment, separate from the server's,
with the scientific stack installed from the package index (``runstep sandbox setup``). Nothing
is downloaded at run time."""

import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

PACKAGES = ("numpy>=1.26", "pandas>=2.1", "matplotlib>=3.8")
MARKER = "runstep-sandbox.json"


def base_python() -> str:
    """The interpreter the server's own Python was made from (not its venv)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def environment_dir(python: Path) -> Path:
    """The environment that ``python`` (``<env>/bin/python``) belongs to."""
    return python.parent.parent


def is_ready(directory: Path, packages: Sequence[str] = PACKAGES) -> bool:
    marker = directory / MARKER
    try:
        return json.loads(marker.read_text()).get("packages") == list(packages)
    except (OSError, ValueError, AttributeError):
        return False


def setup(
    directory: Path,
    python: str | None = None,
    packages: Sequence[str] = PACKAGES,
    say: Callable[[str], None] = print,
    quiet: bool = False,
) -> Path:
    """Create (or bring up to date) the environment at ``directory``; returns its interpreter.
    Idempotent: does nothing when it already holds ``packages``."""
    interpreter = directory / "bin" / "python"
    if is_ready(directory, packages) and interpreter.exists():
        if not quiet:
            say(f"sandbox environment ready: {interpreter}")
        return interpreter
    base = python or base_python()
    directory.parent.mkdir(parents=True, exist_ok=True)
    if not quiet:
        say(f"creating the sandbox environment at {directory} (from {base})")
    subprocess.run([base, "-m", "venv", "--clear", str(directory)], check=True)
    # readable by the sandbox's unprivileged uid
    directory.chmod(0o755)
    pip = [str(interpreter), "-m", "pip", "install", "--disable-pip-version-check"]
    if quiet:
        pip.append("--quiet")
    if not quiet:
        say(f"installing {' '.join(packages)}")
    subprocess.run([*pip, *packages], check=True)
    check = "import numpy, pandas, matplotlib; matplotlib.use('Agg')"
    subprocess.run([str(interpreter), "-I", "-c", check], check=True)
    (directory / MARKER).write_text(json.dumps({"packages": list(packages)}))
    if not quiet:
        say(f"sandbox environment ready: {interpreter}")
    return interpreter

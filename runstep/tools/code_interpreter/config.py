"""The sandbox's settings, read from :class:`runstep.config.Settings`
(``RUNSTEP_CODE_INTERPRETER_*``)."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIB = 1024 * 1024


def default_environment(data_dir: Path) -> Path:
    """Where ``runstep sandbox setup`` creates the interpreter's environment by default."""
    return data_dir / "code-interpreter" / "env"


@dataclass(frozen=True)
class SandboxConfig:
    python: Path  # the sandbox's interpreter (a venv's bin/python), not the server's
    work_dir: Path  # session directories live in work_dir/sessions
    bwrap: str = "bwrap"
    idle_seconds: float = 3600.0
    wall_seconds: float = 60.0
    cpu_seconds: float = 60.0
    memory_bytes: int = 2048 * MIB
    max_processes: int = 64
    max_output_bytes: int = 8 * MIB
    max_log_bytes: int = 64 * 1024
    max_file_bytes: int = 256 * MIB
    max_dir_bytes: int = 1024 * MIB
    tmp_bytes: int = 256 * MIB
    max_sessions: int = 32
    uid_base: int = 1_500_000_000
    interrupt_grace_seconds: float = 2.0
    start_timeout_seconds: float = 30.0

    @classmethod
    def from_settings(cls, settings: Any) -> "SandboxConfig":
        """From a :class:`runstep.config.Settings` (duck-typed: this package imports nothing
        of the server's)."""
        data_dir = Path(settings.data_dir)
        python = settings.code_interpreter_python or (
            default_environment(data_dir) / "bin" / "python"
        )
        return cls(
            python=Path(python),
            work_dir=Path(settings.code_interpreter_work_dir or data_dir / "code-interpreter"),
            bwrap=settings.code_interpreter_bwrap,
            idle_seconds=settings.code_interpreter_idle_seconds,
            wall_seconds=settings.code_interpreter_wall_seconds,
            cpu_seconds=settings.code_interpreter_cpu_seconds,
            memory_bytes=settings.code_interpreter_memory_mb * MIB,
            max_processes=settings.code_interpreter_max_processes,
            max_output_bytes=settings.code_interpreter_max_output_bytes,
            max_log_bytes=settings.code_interpreter_max_log_bytes,
            max_file_bytes=settings.code_interpreter_max_file_bytes,
            max_dir_bytes=settings.code_interpreter_max_dir_bytes,
            tmp_bytes=settings.code_interpreter_tmp_mb * MIB,
            max_sessions=settings.code_interpreter_max_sessions,
            uid_base=settings.code_interpreter_uid_base,
        )

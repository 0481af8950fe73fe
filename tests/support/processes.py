"""A real ``runstep worker`` process, for tests of the distributed mode.

A worker serves no HTTP, so it is ready once it logs the line that names its lease owner
(``worker worker:HOST:PID:TOKEN executing up to N runs at once``); ``owner`` is that name, the
value the worker writes to ``runs.lease_owner`` for every run it holds.
"""

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

READY = re.compile(r"worker (worker:\S+) executing up to (\d+) runs at once")


@dataclass
class WorkerProcess:
    """``runstep worker`` with the given environment, logging to ``log_path``."""

    env: dict[str, str]
    log_path: Path
    args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    owner: str | None = None  # its lease owner name, known once it is ready
    returncode: int | None = None  # set once it has exited and been reaped
    log_offset: int = 0  # where this start's lines begin in ``log_path``

    def spawn(self) -> "WorkerProcess":
        """Start the process without waiting for it to be ready."""
        env = {**os.environ, **self.env}
        command = [sys.executable, "-m", "runstep", "worker", *self.args]
        self.log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def start(self, timeout: float = 30.0) -> "WorkerProcess":
        return self.spawn().wait_ready(timeout)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        """What this process has logged so far."""
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(self.log_offset)
            return log.read().decode(errors="replace")

    def wait_ready(self, timeout: float = 30.0) -> "WorkerProcess":
        """Wait for the line that names the worker's lease owner."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            found = READY.search(self.log())
            if found:
                self.owner = found.group(1)
                assert f":{self.pid}:" in self.owner, (self.owner, self.pid)
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log()[-4000:]}")
            time.sleep(0.05)
        raise TimeoutError(f"worker not ready after {timeout}s:\n{self.log()[-4000:]}")

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        """``kill -9``: no cleanup at all; its leases lapse."""
        self.signal(signal.SIGKILL)
        self.wait_exit(10)

    def pause(self) -> None:
        """SIGSTOP: it holds its connections but does nothing (see ``resume``)."""
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.alive:
            self.signal(signal.SIGCONT)

    def wait_exit(self, timeout: float) -> int:
        """Wait for the process to exit; its return code."""
        assert self.process is not None
        self.returncode = self.process.wait(timeout=timeout)
        return self.returncode

    def stop(self) -> None:
        """Terminate (continuing it first if paused), killing it if it does not exit."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.returncode = self.process.returncode

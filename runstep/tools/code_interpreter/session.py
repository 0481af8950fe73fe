"""One session: a sandboxed interpreter process, its directory, and the host-side enforcement of
the per-execution limits (wall time, CPU time, output size) that the sandboxed code cannot
touch. Memory, process count and file size are kernel resource limits set inside the sandbox
before any code runs (see ``guest/runner.py``).

A limit hit interrupts the code (SIGINT, through a pidfd taken when the interpreter started,
so never a recycled pid); if the interpreter has not answered within the grace period the whole
sandbox is killed and the session is over.
"""

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import os
import secrets
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from runstep.tools.code_interpreter import command as commands
from runstep.tools.code_interpreter import files as session_files
from runstep.tools.code_interpreter import procfs
from runstep.tools.code_interpreter.config import SandboxConfig
from runstep.tools.code_interpreter.errors import SandboxUnavailable

FRAME_PREFIX = b"\0RUNSTEP:"
CHUNK = 64 * 1024
MAX_FRAME = 64 * 1024 * 1024
MAX_IMAGES = 32
MAX_OUTPUT_FILES = 64
POLL_SECONDS = 0.05
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
UNRESPONSIVE = "it did not stop when interrupted"
# the environment bubblewrap itself runs with (nothing of the server's, so no secrets)
HOST_ENVIRONMENT = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Execution:
    """What one execution produced.

    ``logs``: stdout and stderr interleaved as written (tracebacks included), cut to the
    configured size with a note where output was left out, plus a ``[sandbox]`` note when a
    limit was hit. ``images``: PNG bytes of every matplotlib figure the code showed or left
    open. ``files``: files under /mnt/data that the execution created or changed. ``error``:
    set when a limit was hit or the sandbox failed (also in ``logs``); None otherwise, even when
    the code raised (that is in ``logs``). ``session_ended``: the interpreter was ended, so the
    next execution for this session starts fresh (no variables, empty /mnt/data).
    """

    logs: str
    images: list[bytes] = field(default_factory=list)
    files: list[session_files.OutputFile] = field(default_factory=list)
    error: str | None = None
    session_ended: bool = False


class _Output:
    """An execution's output: the head and the tail (tracebacks are at the end) within the
    log size, and the total written."""

    def __init__(self, max_log_bytes: int) -> None:
        self.tail_limit = min(max_log_bytes // 4, 16 * 1024)
        self.head_limit = max_log_bytes - self.tail_limit
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data[-self.tail_limit :] if self.tail_limit else b""
            excess = len(self.tail) - self.tail_limit
            if excess > 0:
                del self.tail[:excess]

    def text(self) -> str:
        head = self.head.decode("utf-8", "replace")
        tail = self.tail.decode("utf-8", "replace")
        omitted = self.total - len(self.head) - len(self.tail)
        if omitted <= 0:
            return head + tail
        return f"{head}\n[... {omitted:,} bytes of output left out ...]\n{tail}"


class _Broken(Exception):
    """The interpreter's answer cannot be used."""


class _Exited(_Broken):
    """The interpreter's output ended: it exited."""


class _FrameReader:
    """Reads the interpreter's stdout: output up to the frame with the expected nonce, then
    the frame's JSON line."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def _more(self) -> None:
        chunk = await self.stream.read(CHUNK)
        if not chunk:
            raise _Exited("end of output")
        self.buffer += chunk

    async def frame(self, nonce: str, output: _Output | None) -> bytes:
        marker = FRAME_PREFIX + nonce.encode() + b"\n"
        keep = len(marker) - 1
        while True:
            index = self.buffer.find(marker)
            if index >= 0:
                if output is not None:
                    output.add(bytes(self.buffer[:index]))
                del self.buffer[: index + len(marker)]
                while (end := self.buffer.find(b"\n")) < 0:
                    if len(self.buffer) > MAX_FRAME:
                        raise _Broken("answer too large")
                    await self._more()
                body = bytes(self.buffer[:end])
                del self.buffer[: end + 1]
                return body
            if len(self.buffer) > keep:
                if output is not None:
                    output.add(bytes(self.buffer[:-keep]))
                del self.buffer[:-keep]
            try:
                await self._more()
            except _Broken:
                if output is not None:
                    output.add(bytes(self.buffer))
                self.buffer.clear()
                raise


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, CPU ticks of the process plus its reaped children) from /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2 :].split()
    # after "pid (comm) ": state(0) ... utime(11) stime(12) cutime(13) cstime(14)
    return fields[0].decode(), sum(int(value) for value in fields[11:15])


def _ns_pid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError):
        return None
    return None


def _size(count: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale and count % scale == 0:
            return f"{count // scale:,} {unit}"
    return f"{count:,} bytes"


class Session:
    """A running sandbox for one session key. Use :meth:`start`; one execution at a time."""

    def __init__(
        self,
        key: str,
        slot: int,
        uid: int | None,
        directory: Path,
        process: asyncio.subprocess.Process,
        config: SandboxConfig,
    ) -> None:
        self.key = key
        self.slot = slot
        self.uid = uid
        self.directory = directory
        self.process = process
        self.config = config
        assert process.stdout is not None
        self.reader = _FrameReader(process.stdout)
        self.runner_pid = 0
        self.init_pid = 0
        self.pidfd: int | None = None
        self.provided: dict[str, tuple[str, int]] = {}  # input name -> (sha256, size)
        self.ended: str | None = None
        self.last_used = time.monotonic()
        self.idle_mark = (time.monotonic(), 0.0)

    # -- lifecycle -----------------------------------------------------------------------------

    @classmethod
    async def start(
        cls,
        key: str,
        slot: int,
        config: SandboxConfig,
        interpreter: commands.Interpreter,
        bwrap: str,
    ) -> "Session":
        sessions_dir = config.work_dir / "sessions"
        sessions_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        directory = Path(tempfile.mkdtemp(prefix=session_files.slot_prefix(slot), dir=sessions_dir))
        uid = config.uid_base + slot if os.geteuid() == 0 else None
        if uid is not None:
            os.chown(directory, uid, uid)
        nonce = secrets.token_hex(16)
        limits = commands.Limits(
            memory_bytes=config.memory_bytes,
            max_processes=config.max_processes,
            max_file_bytes=config.max_file_bytes,
            tmp_bytes=config.tmp_bytes,
            threads=max(1, min(os.cpu_count() or 1, 4)),
        )
        command = commands.build(
            bwrap=bwrap,
            interpreter=interpreter,
            session_dir=directory,
            limits=limits,
            nonce=nonce,
            uid=uid,
        )
        try:
            process = await asyncio.create_subprocess_exec(
                *command.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=command.fds,
                env=HOST_ENVIRONMENT,
            )
        except OSError as exc:
            session_files.remove_tree(directory)
            raise SandboxUnavailable(
                f"cannot run bubblewrap ({bwrap}): {exc.strerror or exc}"
            ) from exc
        finally:
            command.close()
        session = cls(key, slot, uid, directory, process, config)
        try:
            body = await asyncio.wait_for(
                session.reader.frame(nonce, None), config.start_timeout_seconds
            )
            session._attach(int(json.loads(body)["pid"]))
        except (_Broken, TimeoutError, ValueError, KeyError, TypeError, OSError) as exc:
            detail = await session._stderr()
            await session.kill("did not start")
            await asyncio.to_thread(session_files.remove_tree, directory)
            reason = detail or (
                "it did not answer in time" if isinstance(exc, TimeoutError) else str(exc)
            )
            raise SandboxUnavailable(f"the sandbox did not start: {reason}") from exc
        session.idle_mark = (time.monotonic(), session.cpu_seconds())
        return session

    def _attach(self, inner_pid: int) -> None:
        """Find the interpreter's host pid (the descendant of bubblewrap whose pid in the
        sandbox is ``inner_pid``) and hold a pidfd on it for interrupts."""
        for pid in procfs.descendants(self.process.pid, limit=16):
            if _ns_pid(pid) == inner_pid:
                self.runner_pid = pid
                break
        else:
            raise _Broken("cannot find the interpreter process")
        children = procfs.children(self.process.pid)
        self.init_pid = children[0] if children else 0
        self.pidfd = os.pidfd_open(self.runner_pid)

    async def _stderr(self) -> str:
        stream = self.process.stderr
        if stream is None:
            return ""
        with contextlib.suppress(Exception):
            data = await asyncio.wait_for(stream.read(16 * 1024), 2)
            return data.decode("utf-8", "replace").strip()
        return ""

    async def kill(self, reason: str) -> None:
        """End the sandbox (its pid namespace dies with bubblewrap). The directory stays until
        :meth:`remove`."""
        if self.ended is None:
            self.ended = reason
        if self.pidfd is not None:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.process.wait(), 10)
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None

    async def remove(self) -> None:
        await asyncio.to_thread(session_files.remove_tree, self.directory)

    # -- observation ---------------------------------------------------------------------------

    def cpu_seconds(self) -> float:
        """CPU time used so far by everything in the sandbox (reaped children included)."""
        ticks = 0
        for pid in procfs.descendants(self.process.pid):
            info = _stat(pid)
            if info is not None:
                ticks += info[1]
        return ticks / _TICKS

    def _leftover_processes(self) -> int:
        """Live processes in the sandbox besides bubblewrap's init and the interpreter."""
        count = 0
        for pid in procfs.descendants(self.process.pid):
            if pid in (self.init_pid, self.runner_pid):
                continue
            info = _stat(pid)
            if info is not None and info[0] not in ("Z", "X"):
                count += 1
        return count

    def _interrupt(self) -> None:
        if self.pidfd is not None:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(self.pidfd, signal.SIGINT)

    # -- execution -----------------------------------------------------------------------------

    def _new_inputs(self, inputs: list[session_files.InputFile]) -> list[session_files.InputFile]:
        """Inputs this session has not received yet in this version (the caller may pass all
        of them on every call; a file the code changed is not overwritten with the same
        upload)."""
        latest = {item.name: item for item in inputs}
        fresh = []
        for name, item in latest.items():
            digest = hashlib.sha256(item.content).hexdigest()
            if self.provided.get(name, ("", 0))[0] != digest:
                self.provided[name] = (digest, len(item.content))
                fresh.append(item)
        return fresh

    async def execute(self, code: str, inputs: list[session_files.InputFile]) -> Execution:
        config = self.config
        notes = await asyncio.to_thread(
            session_files.write_inputs, self.directory, self._new_inputs(inputs), self.uid
        )
        before = await asyncio.to_thread(session_files.scan, self.directory)
        output = _Output(config.max_log_bytes)
        nonce = secrets.token_hex(16)
        assert self.process.stdin is not None
        loop = asyncio.get_running_loop()
        started = loop.time()
        cpu_before = self.cpu_seconds()
        stopped: str | None = None
        failure: str | None = None
        frame: dict = {}
        reader = asyncio.create_task(self.reader.frame(nonce, output))
        try:
            self.process.stdin.write(json.dumps({"nonce": nonce, "code": code}).encode() + b"\n")
            await self.process.stdin.drain()
            kill_at = None
            while not reader.done():
                await asyncio.wait({reader}, timeout=POLL_SECONDS)
                if reader.done():
                    break
                now = loop.time()
                if stopped is None:
                    stopped = self._limit_exceeded(now - started, cpu_before, output)
                    if stopped is not None:
                        self._interrupt()
                        kill_at = now + config.interrupt_grace_seconds
                elif kill_at is not None and now >= kill_at:
                    failure = UNRESPONSIVE
                    break
            if failure is None:
                frame = json.loads(reader.result())
                if not isinstance(frame, dict):
                    raise ValueError("not an object")
        except (_Broken, ValueError, ConnectionError) as exc:
            failure = f"sent an unusable answer ({exc})"
            if isinstance(exc, _Exited):
                failure = f"exited unexpectedly ({await self._exit_status()})"
        except BaseException:
            await self.kill("cancelled")
            raise
        finally:
            if not reader.done():
                reader.cancel()
                with contextlib.suppress(BaseException):
                    await reader

        if failure is None and self._leftover_processes():
            failure = "left processes running that could not be stopped"
        if failure is not None:
            await self.kill(failure)

        changed, after, left_out = await asyncio.to_thread(
            session_files.collect,
            self.directory,
            before,
            MAX_OUTPUT_FILES,
            config.max_file_bytes,
            config.max_dir_bytes,
        )
        errors: list[str] = []
        if stopped is not None:
            errors.append(f"Execution stopped: {stopped}.")
        limit = frame.get("limit")
        if isinstance(limit, str) and limit in _LIMIT_MESSAGES:
            errors.append(_LIMIT_MESSAGES[limit](config))
        inputs_bytes = sum(size for _digest, size in self.provided.values())
        if not after.complete or after.total_bytes - inputs_bytes > config.max_dir_bytes:
            changed = []
            errors.append(
                f"The files in /mnt/data exceed the limit of {_size(config.max_dir_bytes)} "
                f"(or {session_files.MAX_ENTRIES:,} files)."
            )
            await self.kill("disk limit")
        if failure == UNRESPONSIVE:
            errors.append("It did not stop when interrupted, so the interpreter was ended:")
        elif failure is not None:
            errors.append(f"The interpreter {failure}:")
        elif self.ended is not None:
            errors.append("The interpreter was ended:")
        if self.ended is not None:
            errors.append(
                "the next execution starts a fresh session (variables and the files in "
                "/mnt/data are gone)."
            )
        if left_out:
            notes.append(f"{left_out} more new or changed files in /mnt/data were not returned")
        images = _images(frame.get("images"))
        logs = output.text()
        for note in notes:
            logs = f"[sandbox] {note}\n{logs}"
        error = " ".join(errors) or None
        if error:
            separator = "" if not logs or logs.endswith("\n") else "\n"
            logs = f"{logs}{separator}[sandbox] {error}"
        self.last_used = time.monotonic()
        if self.ended is None:
            self.idle_mark = (self.last_used, self.cpu_seconds())
        return Execution(
            logs=logs,
            images=images,
            files=changed,
            error=error,
            session_ended=self.ended is not None,
        )

    def _limit_exceeded(self, elapsed: float, cpu_before: float, output: _Output) -> str | None:
        config = self.config
        if output.total > config.max_output_bytes:
            return f"it wrote more than the output limit of {_size(config.max_output_bytes)}"
        if elapsed > config.wall_seconds:
            return f"it ran longer than the wall time limit of {config.wall_seconds:g} s"
        if self.cpu_seconds() - cpu_before > config.cpu_seconds:
            return f"it used more than the CPU time limit of {config.cpu_seconds:g} s"
        return None

    async def _exit_status(self) -> str:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.process.wait(), 2)
        code = self.process.returncode
        if code is None:
            return "no answer"
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit status {code}"


def _images(raw: object) -> list[bytes]:
    images: list[bytes] = []
    if not isinstance(raw, list):
        return images
    for item in raw[:MAX_IMAGES]:
        if not isinstance(item, str):
            continue
        try:
            data = base64.b64decode(item, validate=True)
        except (binascii.Error, ValueError):
            continue
        if data.startswith(PNG_SIGNATURE):
            images.append(data)
    return images


_LIMIT_MESSAGES = {
    "memory": lambda c: f"Memory limit reached: the interpreter may use {_size(c.memory_bytes)}.",
    "file_size": lambda c: f"File size limit reached: files may be {_size(c.max_file_bytes)}.",
    "processes": lambda c: (
        f"Process limit reached: at most {c.max_processes} processes and threads."
    ),
}

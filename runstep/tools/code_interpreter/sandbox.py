"""The sandbox: sessions by key, their slots, idle reaping.

A slot numbers a live session; in root mode it picks the session's uid (``uid_base + slot``).
Slots are claimed with a lock file under ``work_dir/slots`` (``flock``), so several server
processes on one machine sharing the work directory (an API server and its workers) never give
two live sessions the same uid. A session's directory is named after its slot, so one whose
slot nobody holds was left by a process that died (SIGKILL): it is removed when the slot is
taken again and by the periodic sweep."""

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import shutil
import time
from collections import OrderedDict
from collections.abc import Sequence

from runstep.tools.code_interpreter import command as commands
from runstep.tools.code_interpreter import files as session_files
from runstep.tools.code_interpreter.config import SandboxConfig
from runstep.tools.code_interpreter.errors import SandboxBusy, SandboxError, SandboxUnavailable
from runstep.tools.code_interpreter.files import InputFile
from runstep.tools.code_interpreter.session import Execution, Session

log = logging.getLogger(__name__)

MAX_NOTICES = 1000
MAX_SLOTS = 65_536
IDLE_CPU_ALLOWANCE_SECONDS = 1.0
IDLE_CPU_ALLOWANCE_FRACTION = 0.1


class _KeyLock:
    """Serialises the executions of one session key; ``users`` counts holders and waiters."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class Sandbox:
    """Sandboxed Python sessions, one per key. See the package docstring."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self._sessions: dict[str, Session] = {}
        self._locks: dict[str, _KeyLock] = {}
        self._slots: dict[int, int] = {}  # slot -> descriptor of its held lock file
        self._notices: OrderedDict[str, str] = OrderedDict()
        self._interpreter: commands.Interpreter | None = None
        self._bwrap: str | None = None
        self._setup_lock = asyncio.Lock()
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    def from_settings(cls, settings: object) -> "Sandbox":
        return cls(SandboxConfig.from_settings(settings))

    @property
    def sessions(self) -> list[str]:
        """Keys of the sessions alive now."""
        return list(self._sessions)

    # -- the interface -------------------------------------------------------------------------

    async def execute(self, session: str, code: str, files: Sequence[InputFile] = ()) -> Execution:
        """Run ``code`` in the session ``session`` (started, or restarted after it ended, as
        needed), with ``files`` placed under /mnt/data first."""
        if self._closed:
            raise SandboxError("the sandbox is closed")
        inputs = [InputFile(*item) for item in files]
        session_files.names(inputs)
        self._start_reaper()
        holder = self._locks.setdefault(session, _KeyLock())
        holder.users += 1
        try:
            async with holder.lock:
                current = self._sessions.get(session)
                if current is not None and current.process.returncode is not None:
                    await self._end(current, "exited")
                    current = None
                if current is None:
                    current = await self._start(session)
                try:
                    execution = await current.execute(code, inputs)
                finally:
                    if current.ended is not None:
                        await self._end(current, current.ended)
        finally:
            holder.users -= 1
            if holder.users == 0:
                self._locks.pop(session, None)
        notice = self._notices.pop(session, None)
        if notice:
            execution.logs = f"[sandbox] {notice}\n{execution.logs}"
        return execution

    async def end_session(self, session: str) -> None:
        """End a session now (e.g. its thread was deleted)."""
        current = self._sessions.get(session)
        if current is not None:
            await self._end(current, "ended by the caller")

    async def reap_idle(self) -> list[str]:
        """End sessions idle for longer than ``idle_seconds``, and sessions whose code kept
        using CPU since their last execution (a thread left running: more than 1 s plus 10% of
        the time since); returns their keys. Runs by itself in the background (every quarter
        of ``idle_seconds``, at most 30 s) once the first execution started."""
        now = time.monotonic()
        ended: list[str] = []
        for key, current in list(self._sessions.items()):
            holder = self._locks.get(key)
            if holder is not None and holder.users:
                continue
            if current.process.returncode is not None:
                reason = "exited"
            elif now - current.last_used > self.config.idle_seconds:
                reason = "idle"
            else:
                since, cpu = current.idle_mark
                used = current.cpu_seconds() - cpu
                allowance = IDLE_CPU_ALLOWANCE_SECONDS + IDLE_CPU_ALLOWANCE_FRACTION * (now - since)
                if used <= allowance:
                    continue
                reason = "busy while idle"
                self._notice(
                    key,
                    f"The previous session was ended because its code kept running between "
                    f"executions ({used:.1f} s of CPU time in {now - since:.1f} s); this is a "
                    "fresh session.",
                )
            del self._sessions[key]  # synchronously, so no execution picks it up meanwhile
            ended.append(key)
            await self._end(current, reason)
        return ended

    async def sweep_stale(self) -> int:
        """Remove the session directories of slots no live process holds (left by a process
        that was killed); returns how many were removed. Failures are logged, not raised."""
        try:
            return await asyncio.to_thread(self._sweep_stale)
        except OSError:
            log.exception("code interpreter: sweeping stale session directories failed")
            return 0

    async def close(self) -> None:
        """End every session and stop reaping."""
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        await asyncio.gather(
            *(self._end(current, "closed") for current in list(self._sessions.values())),
            return_exceptions=True,
        )

    # -- internals -----------------------------------------------------------------------------

    def _notice(self, key: str, text: str) -> None:
        self._notices[key] = text
        while len(self._notices) > MAX_NOTICES:
            self._notices.popitem(last=False)

    def _start_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.create_task(self._reap_forever())

    async def _reap_forever(self) -> None:
        interval = min(max(self.config.idle_seconds / 4, 0.05), 30.0)
        while True:
            await self.sweep_stale()
            await asyncio.sleep(interval)
            try:
                await self.reap_idle()
            except Exception:  # keep reaping whatever one session did
                log.exception("code interpreter: reaping idle sessions failed")

    async def _prepare(self) -> tuple[commands.Interpreter, str]:
        """Check bubblewrap and the interpreter once; raise SandboxUnavailable if unusable."""
        async with self._setup_lock:
            if self._interpreter is not None and self._bwrap is not None:
                return self._interpreter, self._bwrap
            config = self.config
            bwrap = shutil.which(config.bwrap)
            if bwrap is None:
                raise SandboxUnavailable(
                    f"bubblewrap ({config.bwrap}) is not installed; install it (Debian: "
                    "apt-get install bubblewrap) or set RUNSTEP_CODE_INTERPRETER_BWRAP"
                )
            if os.geteuid() == 0 and not os.access(commands.SETPRIV, os.X_OK):
                raise SandboxUnavailable(f"{commands.SETPRIV} (util-linux) is missing")
            python = config.python
            if not python.is_absolute() or not os.access(python, os.X_OK):
                raise SandboxUnavailable(
                    f"no interpreter for the sandbox at {python}: run `runstep sandbox setup` "
                    "or set RUNSTEP_CODE_INTERPRETER_PYTHON"
                )
            try:
                process = await asyncio.create_subprocess_exec(
                    str(python),
                    "-I",
                    "-c",
                    commands.PROBE_SCRIPT,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    env={"PATH": "/usr/bin:/bin"},
                )
                out, _ = await asyncio.wait_for(process.communicate(), 30)
                probe = json.loads(out)
            except (OSError, ValueError, TimeoutError) as exc:
                raise SandboxUnavailable(f"the sandbox interpreter {python} fails: {exc}") from exc
            self._interpreter = commands.interpreter_from_probe(str(python), probe)
            self._bwrap = bwrap
            return self._interpreter, bwrap

    async def _start(self, key: str) -> Session:
        interpreter, bwrap = await self._prepare()
        slot = self._take_slot()
        if slot is None:
            await self._evict_one()
            slot = self._take_slot()
        if slot is None:
            raise SandboxBusy(
                f"all {self.config.max_sessions} code interpreter sessions are executing"
            )
        try:
            await asyncio.to_thread(self._remove_stale, slot)
            started = await Session.start(key, slot, self.config, interpreter, bwrap)
        except BaseException:
            self._release_slot(slot)
            raise
        self._sessions[key] = started
        return started

    def _take_slot(self) -> int | None:
        if len(self._slots) >= self.config.max_sessions:
            return None
        for slot in range(MAX_SLOTS):
            if slot in self._slots:
                continue
            fd = self._try_lock(slot)
            if fd is not None:  # else another process on this machine holds it
                self._slots[slot] = fd
                return slot
        return None

    def _sweep_stale(self) -> int:
        sessions = self.config.work_dir / "sessions"
        if not sessions.is_dir():
            return 0
        slots = {session_files.slot_of(path) for path in sessions.iterdir()}
        removed = 0
        for slot in sorted(slot for slot in slots if slot is not None and slot not in self._slots):
            fd = self._try_lock(slot)
            if fd is None:  # a live session in another process
                continue
            try:
                removed += self._remove_stale(slot)
            finally:
                os.close(fd)
        return removed

    def _remove_stale(self, slot: int) -> int:
        """Remove what sessions of ``slot`` left behind (the caller holds the slot)."""
        sessions = self.config.work_dir / "sessions"
        stale = list(sessions.glob(f"{session_files.slot_prefix(slot)}*"))
        for directory in stale:
            log.warning("code interpreter: removing %s, left by a process that died", directory)
            session_files.remove_tree(directory)
        return len(stale)

    def _try_lock(self, slot: int) -> int | None:
        """The descriptor of ``slot``'s lock file, locked; None if another holder has it."""
        directory = self.config.work_dir / "slots"
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(directory / str(slot), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def _release_slot(self, slot: int) -> None:
        fd = self._slots.pop(slot, None)
        if fd is not None:
            os.close(fd)  # releases the lock

    async def _evict_one(self) -> None:
        """End the least recently used session that is not executing."""
        idle = [
            current
            for key, current in self._sessions.items()
            if not (self._locks.get(key) and self._locks[key].users)
        ]
        if idle:
            oldest = min(idle, key=lambda current: current.last_used)
            self._notice(
                oldest.key,
                "The previous session was ended to make room for other sessions; this is a "
                "fresh session.",
            )
            await self._end(oldest, "evicted")

    async def _end(self, current: Session, reason: str) -> None:
        if self._sessions.get(current.key) is current:
            del self._sessions[current.key]
        try:
            await current.kill(reason)
            await current.remove()
        finally:
            self._release_slot(current.slot)

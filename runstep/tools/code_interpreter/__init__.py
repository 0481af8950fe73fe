"""The code_interpreter tool's execution engine: sandboxed, persistent Python sessions.

Interface (all async, nothing blocks the event loop)::

    from runstep.tools.code_interpreter import InputFile, Sandbox, SandboxUnavailable

    sandbox = Sandbox.from_settings(settings)          # one per process; cheap until used
    execution = await sandbox.execute(
        thread_id,                                     # the session key: one session per key
        "import pandas as pd\\ndf = pd.read_csv('/mnt/data/data.csv')\\ndf.describe()",
        [InputFile("data.csv", csv_bytes)],            # placed at /mnt/data/<name>
    )
    execution.logs            # str: stdout+stderr as the code wrote them, tracebacks included,
                              #   the value of a final bare expression (like a notebook cell),
                              #   cut to RUNSTEP_CODE_INTERPRETER_MAX_LOG_BYTES with a note
    execution.images          # list[bytes]: a PNG per matplotlib figure shown or left open
    execution.files           # list[OutputFile(name, content)]: files under /mnt/data created
                              #   or changed by this execution (name relative to /mnt/data)
    execution.error           # str | None: why a limit stopped it, or why the sandbox failed
                              #   (also appended to logs); None when the code merely raised
    execution.session_ended   # bool: the interpreter was ended; the next call starts afresh
    await sandbox.end_session(thread_id)               # e.g. when the thread is deleted
    await sandbox.close()                              # at shutdown: ends every session

Sessions. Each key gets one Python process that keeps its variables and its /mnt/data between
executions; executions of one key run one at a time, different keys in parallel (at most
``RUNSTEP_CODE_INTERPRETER_MAX_SESSIONS``; the least recently used idle one is ended to make
room, else :class:`SandboxBusy`). A session idle for ``RUNSTEP_CODE_INTERPRETER_IDLE_SECONDS``
(default one hour) is ended by a background reaper; the next call starts a fresh one
transparently. A fresh session has an empty /mnt/data, so pass the input files on every call:
a file is written only when the session has not received that name with that content yet (so
the code's own changes to it are kept).

Limits (``RUNSTEP_CODE_INTERPRETER_*``): wall time and CPU time per execution (host-enforced:
the code is interrupted, its session and variables survive; if it ignores the interrupt the
interpreter is killed and ``session_ended`` is set), total output (the execution is stopped),
memory (RLIMIT_AS: MemoryError), processes and threads (RLIMIT_NPROC per session), file size
(RLIMIT_FSIZE: the write fails with EFBIG), /tmp size, and the total size of /mnt/data
(checked after each execution; over it the session is ended). Processes the code starts do not
outlive its execution. Every limit hit is named in ``error`` and in ``logs``.

The sandbox (:mod:`.command`): bubblewrap with new pid, net, ipc, uts, mount (and cgroup)
namespaces, no network at all (loopback included), no environment, a read-only filesystem of
/usr, a few /etc files, the interpreter's environment and the guest code; a tmpfs /tmp; only
the session's own directory writable at /mnt/data; an unprivileged uid per session with no
capabilities and no_new_privs; a seccomp filter against namespaces, mounts and other kernel
surface (:mod:`.seccomp`). When bubblewrap or the interpreter is missing or cannot start,
:meth:`Sandbox.execute` raises :class:`SandboxUnavailable`; code never runs unsandboxed.

The interpreter (numpy, pandas, matplotlib) lives in its own virtual environment, created by
``runstep sandbox setup`` (:mod:`.environment`) under the data directory or at
``RUNSTEP_CODE_INTERPRETER_PYTHON``; it runs ``guest/runner.py`` inside the sandbox.
"""

from runstep.tools.code_interpreter.config import SandboxConfig
from runstep.tools.code_interpreter.errors import SandboxBusy, SandboxError, SandboxUnavailable
from runstep.tools.code_interpreter.files import InputFile, OutputFile
from runstep.tools.code_interpreter.sandbox import Sandbox
from runstep.tools.code_interpreter.session import Execution

__all__ = [
    "Execution",
    "InputFile",
    "OutputFile",
    "Sandbox",
    "SandboxBusy",
    "SandboxConfig",
    "SandboxError",
    "SandboxUnavailable",
]

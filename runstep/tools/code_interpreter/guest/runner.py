"""The persistent interpreter inside the sandbox (mounted read-only at /opt/runstep).

Started by the host as ``python -I -u /opt/runstep/runner.py CONFIG_JSON``; standard library
only. It applies its resource limits before any user code runs, then loops: read one request
line (``{"nonce": ..., "code": ...}``) from its private copy of stdin, run the code in one
persistent ``__main__`` namespace, and answer with a result frame on stdout::

    b"\\0RUNSTEP:" + nonce + b"\\n" + json + b"\\n"

Everything the code prints (fd 1 and fd 2, subprocesses included) goes to the same pipe before
the frame, so the host reads the logs up to the frame's nonce. SIGINT interrupts the running
code (the host sends it when a limit is hit). The host treats everything this process sends as
untrusted: user code runs in this very process and may change it.
"""

import ast
import base64
import builtins
import contextlib
import errno
import io
import json
import linecache
import os
import resource
import signal
import sys
import time
import traceback
import types

FRAME_PREFIX = b"\0RUNSTEP:"
GUEST_DIR = os.path.dirname(os.path.abspath(__file__))
MAIN_PID = os.getpid()
MIB = 1024 * 1024

_state = {"executing": False, "images": [], "count": 0}


def _set_limit(which: int, value: int) -> None:
    resource.setrlimit(which, (value, value))


def _on_interrupt(signum, frame):  # type: ignore[no-untyped-def]
    if _state["executing"]:
        raise KeyboardInterrupt


def _send(fd: int, nonce: str, payload: dict) -> None:
    data = FRAME_PREFIX + nonce.encode() + b"\n" + json.dumps(payload).encode() + b"\n"
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def collect_figures() -> None:
    """Render every open matplotlib figure as PNG for this execution, then close them all
    (also ``plt.show()`` through the ``runstep_inline`` backend)."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return
    try:
        for number in pyplot.get_fignums():
            figure = pyplot.figure(number)
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", bbox_inches="tight")
            _state["images"].append(buffer.getvalue())
    finally:
        pyplot.close("all")


def _kill_strays() -> None:
    """End every other process in this sandbox (its pid namespace): nothing the code started
    outlives the execution. Pid 1 (bubblewrap's reaper) is never signalled."""
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        except PermissionError:
            pass
        while True:  # reap our own children (zombies count against the process limit)
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pid = 0
            if pid == 0:
                break
        if len([name for name in os.listdir("/proc") if name.isdigit()]) <= 2:
            return
        time.sleep(0.002)


def _limit_hit(exc: BaseException, config: dict) -> tuple[str, str] | None:
    """Which sandbox limit (if any) an exception comes from, with a note for the logs."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, MemoryError):
            return "memory", f"memory limit reached: at most {config['memory_bytes'] // MIB} MiB"
        if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
            size = config["max_file_bytes"]
            return "file_size", f"file size limit reached: files may be at most {size} bytes"
        if isinstance(exc, BlockingIOError) and exc.errno == errno.EAGAIN:  # fork, clone
            count = config["max_processes"]
            return "processes", f"process limit reached: at most {count} processes and threads"
        if isinstance(exc, RuntimeError) and "can't start new thread" in str(exc):
            count = config["max_processes"]
            return "processes", f"process limit reached: at most {count} processes and threads"
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return "disk", "no space left (/tmp is small; write files to /mnt/data)"
        if isinstance(exc, OSError) and exc.errno == errno.EROFS:
            return None if seen else ("", "only /mnt/data and /tmp are writable")
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def _print_exception(exc: BaseException) -> None:
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    if isinstance(exc, SyntaxError):
        lines = traceback.format_exception_only(type(exc), exc)
    else:
        lines = traceback.format_exception(type(exc), exc, tb)
    sys.stderr.write("".join(lines))


def _run(code: str, namespace: dict) -> None:
    _state["count"] += 1
    filename = f"<execution-{_state['count']}>"
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    tree = ast.parse(code, filename, "exec")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr) and not code.rstrip().endswith(";"):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, filename, "exec"), namespace)
    if last is not None:
        value = eval(compile(last, filename, "eval"), namespace)
        if value is not None:
            namespace["_"] = value
            print(repr(value))


def execute(code: str, namespace: dict, config: dict) -> dict:
    _state["images"] = []
    result: dict = {"images": [], "exception": None, "limit": None}
    try:
        _state["executing"] = True
        try:
            try:
                _run(code, namespace)
            finally:
                if os.getpid() != MAIN_PID:  # a forked child returning: never answer
                    os._exit(0)
            collect_figures()
        finally:
            _state["executing"] = False
    except BaseException as exc:  # everything the code raises
        if os.getpid() != MAIN_PID:
            os._exit(1)
        _state["executing"] = False
        result["exception"] = type(exc).__name__
        if isinstance(exc, SystemExit):
            sys.stderr.write(f"SystemExit: {exc.code!r} (the interpreter keeps running)\n")
        else:
            try:
                _print_exception(exc)
            except BaseException:
                sys.stderr.write(f"{type(exc).__name__}\n")
        hit = _limit_hit(exc, config)
        if hit is not None:
            kind, note = hit
            result["limit"] = kind or None
            sys.stderr.write(f"[sandbox] {note}\n")
        with contextlib.suppress(BaseException):
            collect_figures()
    _kill_strays()
    sys.stdout.flush()
    sys.stderr.flush()
    result["images"] = [base64.b64encode(png).decode() for png in _state["images"]]
    _state["images"] = []
    return result


def main() -> None:
    config = json.loads(sys.argv[1])
    sys.argv = [""]
    _set_limit(resource.RLIMIT_AS, config["memory_bytes"])
    _set_limit(resource.RLIMIT_NPROC, config["max_processes"])
    _set_limit(resource.RLIMIT_FSIZE, config["max_file_bytes"])
    _set_limit(resource.RLIMIT_CORE, 0)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversized write fails with EFBIG
    signal.signal(signal.SIGINT, _on_interrupt)

    # Private channels: requests on a copy of stdin, frames on a copy of stdout. The code sees
    # /dev/null as stdin and the output pipe as both stdout and stderr.
    requests = os.fdopen(os.dup(0), "rb")
    results = os.dup(1)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(1, 2)

    os.chdir("/mnt/data")
    sys.path.insert(0, GUEST_DIR)
    sys.path.append("/mnt/data")  # the code's own modules, never shadowing installed ones
    sys.modules["_runstep_runner"] = sys.modules[__name__]
    module = types.ModuleType("__main__")
    module.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = module
    namespace = module.__dict__

    _send(results, config["nonce"], {"ready": True, "pid": os.getpid()})
    while True:
        line = requests.readline()
        if not line:
            os._exit(0)
        request = json.loads(line)
        result = execute(request["code"], namespace, config)
        _send(results, request["nonce"], result)


if __name__ == "__main__":
    main()

"""What the sandboxed code cannot reach: the network (loopback included), the server's
environment and files, other sessions, a writable filesystem, privileges."""

import json
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runstep.tools.code_interpreter import Sandbox
from tests.code_interpreter.conftest import ROOT


async def run_json(sandbox: Sandbox, code: str, session: str = "t") -> dict:
    """Run code whose last line prints a JSON object; return it."""
    execution = await sandbox.execute(session, code)
    assert execution.error is None, execution.logs
    return json.loads(execution.logs.strip().splitlines()[-1])


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A socket listening on 127.0.0.1, as the server's own port would be."""
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    yield server
    server.close()


async def test_no_network_not_even_the_servers_port(
    sandbox: Sandbox, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    code = f"""
import json, socket
def attempt(action):
    try:
        action()
        return "ok"
    except Exception as exc:
        return type(exc).__name__
result = {{
    "loopback": attempt(lambda: socket.create_connection(("127.0.0.1", {port}), timeout=2)),
    "localhost": attempt(lambda: socket.create_connection(("localhost", {port}), timeout=2)),
    "internet": attempt(lambda: socket.create_connection(("1.1.1.1", 53), timeout=2)),
    "ipv6": attempt(lambda: socket.create_connection(("2606:4700::1111", 53), timeout=2)),
    "dns": attempt(lambda: socket.getaddrinfo("example.com", 80)),
    "udp": attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(
        b"x", ("8.8.8.8", 53))),
    "interfaces": [name for _, name in socket.if_nameindex()],
}}
print(json.dumps(result))
"""
    result = await run_json(sandbox, code)
    assert result["loopback"] == "ConnectionRefusedError"  # a loopback of its own, empty
    assert result["localhost"] == "ConnectionRefusedError"
    assert result["internet"] == "OSError"  # network unreachable
    assert result["ipv6"] == "OSError"
    assert result["dns"] == "gaierror"
    assert result["udp"] == "OSError"
    assert result["interfaces"] == ["lo"]
    with pytest.raises(BlockingIOError):
        listener.accept()  # nothing ever reached the host's socket


async def test_no_server_environment_variables(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNSTEP_UPSTREAM_API_KEY", "sk-very-secret")
    code = """
import glob, json, os
leaks = []
for path in glob.glob("/proc/*/environ"):
    try:
        if b"sk-very-secret" in open(path, "rb").read():
            leaks.append(path)
    except OSError:
        pass
print(json.dumps({"env": sorted(os.environ), "leaks": leaks}))
"""
    result = await run_json(sandbox, code)
    assert result["leaks"] == []
    assert not [name for name in result["env"] if name.startswith("RUNSTEP")]
    assert set(result["env"]) <= {
        "PATH", "HOME", "TMPDIR", "USER", "LOGNAME", "LANG", "MPLBACKEND", "MPLCONFIGDIR",
        "PYTHONPATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "LC_CTYPE", "PWD",
    }  # fmt: skip


async def test_server_files_and_other_sessions_are_invisible(
    sandbox: Sandbox, data_dir: Path, tmp_path: Path
) -> None:
    await sandbox.execute("other", "open('/mnt/data/other.txt', 'w').write('theirs')")
    sessions = data_dir / "code-interpreter" / "sessions"
    other_dir = next(sessions.iterdir())
    secret_outside = tmp_path / "outside-secret.txt"
    secret_outside.write_text("top secret")
    paths = [
        str(data_dir / "runstep.sqlite3"),
        str(data_dir / "secret.txt"),
        str(data_dir),
        str(sessions),
        str(other_dir / "other.txt"),
        str(secret_outside),
        "/root/.profile",
        "/root/.pyenv/shims",
        "/home",
        "/etc/shadow",
        "/var/lib",
        "/run",
        "/sys/class/net",
        "/proc/1/root" + str(data_dir),
        str(ROOT / "pyproject.toml"),  # the server's code and its venv
        str(ROOT / ".venv"),
    ]
    code = f"""
import json, os
seen = {{}}
for path in {paths!r}:
    try:
        seen[path] = os.listdir(path) if os.path.isdir(path) else open(path).read()
    except OSError as exc:
        seen[path] = type(exc).__name__
pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
print(json.dumps({{"seen": seen, "pids": pids, "etc": sorted(os.listdir("/etc"))}}))
"""
    result = await run_json(sandbox, code)
    for path, outcome in result["seen"].items():
        assert outcome in ("FileNotFoundError", "PermissionError"), (path, outcome)
    assert result["pids"] == [1, 2]  # bubblewrap's init and the interpreter: no host process
    assert "shadow" not in result["etc"] and "passwd" in result["etc"]


async def test_filesystem_is_read_only_except_data_and_tmp(
    sandbox: Sandbox, sandbox_python: Path
) -> None:
    targets = [
        "/x",
        "/usr/x",
        "/etc/passwd",
        "/etc/x",
        "/opt/runstep/runner.py",
        "/opt/x",
        "/mnt/x",
        "/dev/x",
        "/proc/x",
        str(sandbox_python.parent / "x"),
        str(sandbox_python.parent.parent / "lib" / "x"),
    ]
    code = f"""
import json
result = {{}}
for path in {targets!r} + ["/tmp/x", "/mnt/data/x", "/dev/shm/x"]:
    try:
        with open(path, "a") as handle:
            handle.write("x")
        result[path] = "written"
    except OSError as exc:
        result[path] = type(exc).__name__
print(json.dumps(result))
"""
    result = await run_json(sandbox, code)
    for path in targets:
        assert result[path] in ("OSError", "PermissionError", "FileNotFoundError"), path
    assert result["/tmp/x"] == result["/mnt/data/x"] == result["/dev/shm/x"] == "written"


async def test_no_privileges_and_no_new_namespaces(sandbox: Sandbox) -> None:
    code = """
import ctypes, errno, json, os
libc = ctypes.CDLL(None, use_errno=True)
def call(function, *args):
    result = function(*args)
    return "ok" if result == 0 else errno.errorcode[ctypes.get_errno()]
status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines()
              if ":\\t" in line)
print(json.dumps({
    "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": os.getgroups(),
    "caps": [status[k].strip() for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")],
    "no_new_privs": status["NoNewPrivs"].strip(), "seccomp": status["Seccomp"].strip(),
    "unshare_user": call(libc.unshare, 0x10000000),
    "unshare_net": call(libc.unshare, 0x40000000),
    "mount": call(libc.mount, b"none", b"/tmp", b"tmpfs", 0, None),
    "chroot": call(libc.chroot, b"/tmp"),
    "setuid_root": call(libc.setuid, 0),
}))
"""
    result = await run_json(sandbox, code)
    assert result["uid"] == result["euid"] != 0
    assert result["groups"] in ([], [result["gid"]])
    assert result["caps"] == ["0000000000000000"] * 5
    assert result["no_new_privs"] == "1" and result["seccomp"] == "2"
    assert result["unshare_user"] == result["unshare_net"] == "EPERM"
    assert result["mount"] == result["chroot"] == result["setuid_root"] == "EPERM"


async def test_sessions_have_distinct_unprivileged_uids(
    make_sandbox: Callable[..., Sandbox],
) -> None:
    if os.geteuid() != 0:
        pytest.skip("unprivileged server: sessions are told apart by user namespaces")
    sandbox, other_process = make_sandbox(), make_sandbox()  # e.g. two workers, one machine
    code = "import json, os\nprint(json.dumps(os.getuid()))"
    uids = [
        await run_json(sandbox, code, "a"),
        await run_json(sandbox, code, "b"),
        await run_json(other_process, code, "a"),
    ]
    assert len(set(uids)) == 3
    assert min(uids) >= sandbox.config.uid_base

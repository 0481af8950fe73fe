"""The sandbox run by an unprivileged server (user-namespace mode): the same guarantees.

The other tests run as root here (root mode: a uid per session). This one starts a server-side
process as ``nobody`` with the system's Python, which drives a Sandbox whose interpreter is
that same system Python (no numpy needed for these checks)."""

import asyncio
import json
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.code_interpreter.conftest import ROOT

SYSTEM_PYTHON = "/usr/bin/python3"
NOBODY = 65534

DRIVER = r"""
import asyncio, json, os, sys
from pathlib import Path
from runstep.tools.code_interpreter import Sandbox, SandboxConfig

port, work = int(sys.argv[1]), Path(sys.argv[2])
os.environ["RUNSTEP_UPSTREAM_API_KEY"] = "sk-very-secret"

PROBE = '''
import ctypes, errno, glob, json, os, socket
libc = ctypes.CDLL(None, use_errno=True)
def code(result):
    return "ok" if result == 0 else errno.errorcode[ctypes.get_errno()]
try:
    socket.create_connection(("127.0.0.1", PORT), timeout=2)
    net = "connected"
except OSError as exc:
    net = type(exc).__name__
leaks = [p for p in glob.glob("/proc/*/environ") if b"sk-very-secret" in open(p, "rb").read()]
status = open("/proc/self/status").read()
print(json.dumps({
    "uid": os.getuid(), "net": net, "leaks": leaks, "env": sorted(os.environ),
    "cap_eff": status.split("CapEff:")[1].split()[0],
    "seccomp": status.split("Seccomp:")[1].split()[0],
    "unshare_user": code(libc.unshare(0x10000000)),
    "root": sorted(os.listdir("/")),
}))
'''.replace("PORT", str(port))

BOMB = '''
import os, time
n = 0
while True:
    if os.fork() == 0:
        time.sleep(60)
        os._exit(0)
    n += 1
'''

async def main():
    config = SandboxConfig(python=Path(sys.executable), work_dir=work, max_processes=16,
                           memory_bytes=256 * 1024 * 1024, wall_seconds=1,
                           interrupt_grace_seconds=1)
    sandbox = Sandbox(config)
    try:
        probe = await sandbox.execute("a", PROBE)
        await sandbox.execute("a", "kept = 1")
        bomb = await sandbox.execute("a", BOMB)
        memory = await sandbox.execute("a", "x = bytearray(512 * 1024 * 1024)")
        wall = await sandbox.execute("a", "while True: pass")
        other = await sandbox.execute("b", "import os; print(os.listdir('/mnt/data'))")
        after = await sandbox.execute("a", "kept")
        print(json.dumps({
            "probe": json.loads(probe.logs), "bomb": bomb.error, "memory": memory.error,
            "wall": wall.error, "ended": wall.session_ended, "other": other.logs,
            "after": after.logs,
        }))
    finally:
        await sandbox.close()

asyncio.run(main())
"""


def _usable_system_python() -> bool:
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return False
    version = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info >= (3, 10))"],
        capture_output=True,
        text=True,
    )
    return version.stdout.strip() == "True"


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another uid needs root")
@pytest.mark.skipif(not _usable_system_python(), reason=f"needs {SYSTEM_PYTHON} >= 3.10")
async def test_unprivileged_server_gets_the_same_sandbox() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    work = Path(tempfile.mkdtemp(prefix="runstep-unprivileged-"))
    os.chown(work, NOBODY, NOBODY)
    try:
        process = await asyncio.create_subprocess_exec(
            "setpriv",
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
            SYSTEM_PYTHON,
            "-c",
            DRIVER,
            str(listener.getsockname()[1]),
            str(work / "w"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
            cwd=str(work),
        )
        out, err = await asyncio.wait_for(process.communicate(), 90)
        assert process.returncode == 0, err.decode()
        result = json.loads(out.decode().strip().splitlines()[-1])
    finally:
        listener.close()
        shutil.rmtree(work, ignore_errors=True)

    probe = result["probe"]
    assert probe["uid"] == NOBODY  # the server's uid, inside its own user namespace
    assert probe["net"] == "ConnectionRefusedError"
    assert probe["leaks"] == [] and not [n for n in probe["env"] if n.startswith("RUNSTEP")]
    assert probe["cap_eff"] == "0000000000000000" and probe["seccomp"] == "2"
    assert probe["unshare_user"] == "EPERM"
    top = {"bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "mnt", "opt", "proc", "sbin"}
    assert set(probe["root"]) <= top | {"tmp", "usr"}  # the system Python lives in /usr
    assert result["bomb"] == "Process limit reached: at most 16 processes and threads."
    assert result["memory"] == "Memory limit reached: the interpreter may use 256 MiB."
    assert "wall time limit of 1 s" in result["wall"] and not result["ended"]
    assert result["other"] == "[]\n"
    assert result["after"] == "1\n"

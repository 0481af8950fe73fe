"""Each limit ends the execution with a clear message; the session (or a fresh one, said so)
and the server carry on."""

import asyncio
import time
from collections.abc import Callable

from runstep.tools.code_interpreter import Sandbox

MIB = 1024 * 1024


async def assert_works(sandbox: Sandbox, session: str = "t") -> None:
    execution = await sandbox.execute(session, "print('next one works')")
    assert execution.logs.endswith("next one works\n"), execution.logs
    assert execution.error is None


async def test_wall_time_interrupts_and_keeps_the_session(
    make_sandbox: Callable[..., Sandbox],
) -> None:
    sandbox = make_sandbox(wall_seconds=1)
    await sandbox.execute("t", "kept = 'yes'")
    execution = await sandbox.execute("t", "while True:\n    pass")
    assert execution.error == "Execution stopped: it ran longer than the wall time limit of 1 s."
    assert "KeyboardInterrupt" in execution.logs
    assert execution.logs.endswith(f"[sandbox] {execution.error}")
    assert not execution.session_ended
    assert (await sandbox.execute("t", "kept")).logs == "'yes'\n"
    execution = await sandbox.execute("t", "import time\ntime.sleep(60)")  # blocked in C
    assert "wall time limit" in (execution.error or "")
    await assert_works(sandbox)


async def test_code_ignoring_the_interrupt_is_killed_and_a_fresh_session_starts(
    make_sandbox: Callable[..., Sandbox],
) -> None:
    sandbox = make_sandbox(wall_seconds=1)
    await sandbox.execute("t", "lost = True")
    code = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
    execution = await sandbox.execute("t", code)
    assert execution.session_ended
    assert execution.error is not None
    assert execution.error.startswith("Execution stopped: it ran longer than the wall time")
    assert "did not stop when interrupted" in execution.error
    assert "next execution starts a fresh session" in execution.error
    assert sandbox.sessions == []
    assert "NameError" in (await sandbox.execute("t", "lost")).logs
    await assert_works(sandbox)


async def test_cpu_time_counts_every_process(make_sandbox: Callable[..., Sandbox]) -> None:
    sandbox = make_sandbox(cpu_seconds=1, wall_seconds=20)
    execution = await sandbox.execute("t", "while True:\n    pass")
    assert execution.error == "Execution stopped: it used more than the CPU time limit of 1 s."
    assert not execution.session_ended
    # CPU burnt by a child process counts as well (measured by the host, outside the sandbox)
    code = "import subprocess, sys\nsubprocess.run([sys.executable, '-c', 'while True: pass'])"
    execution = await sandbox.execute("t", code)
    assert "CPU time limit of 1 s" in (execution.error or "")
    await assert_works(sandbox)


async def test_memory(make_sandbox: Callable[..., Sandbox]) -> None:
    sandbox = make_sandbox(memory_bytes=512 * MIB)
    execution = await sandbox.execute("t", "block = bytearray(1024 * 1024 * 1024)")
    assert execution.error == "Memory limit reached: the interpreter may use 512 MiB."
    assert "MemoryError" in execution.logs
    code = "import numpy as np\nchunks = [np.ones(32 * 1024 * 1024 // 8) for _ in range(64)]"
    execution = await sandbox.execute("t", code)
    assert execution.error == "Memory limit reached: the interpreter may use 512 MiB."
    assert not execution.session_ended
    await assert_works(sandbox)


async def test_fork_bomb_is_contained(make_sandbox: Callable[..., Sandbox]) -> None:
    sandbox = make_sandbox(max_processes=16, wall_seconds=2)
    code = """
import os, time
children = []
try:
    while True:
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        children.append(pid)
finally:
    print("forked", len(children))
"""
    execution = await sandbox.execute("t", code)
    assert execution.error == "Process limit reached: at most 16 processes and threads."
    forked = int(execution.logs.split("forked ")[1].split()[0])
    assert 0 < forked < 16
    assert "BlockingIOError" in execution.logs
    # the children did not outlive the execution
    processes = await sandbox.execute("t", "len([p for p in os.listdir('/proc') if p.isdigit()])")
    assert processes.logs == "2\n"
    # the classic bomb: every process forks forever
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    execution = await sandbox.execute("t", bomb)
    assert "wall time limit" in (execution.error or "")
    await assert_works(sandbox)


async def test_output_is_truncated_and_a_flood_is_stopped(
    make_sandbox: Callable[..., Sandbox],
) -> None:
    sandbox = make_sandbox(max_output_bytes=200_000, max_log_bytes=8_000)
    # ~100 kB: under the output limit, so it runs to the end; the logs keep head and tail
    execution = await sandbox.execute("t", "for i in range(10_000):\n    print('line', i)")
    assert execution.error is None
    assert len(execution.logs.encode()) < 8_200
    assert execution.logs.startswith("line 0\nline 1\n")
    assert "bytes of output left out ...]" in execution.logs
    assert execution.logs.endswith("line 9999\n")

    await sandbox.execute("t", "kept = 1")
    execution = await sandbox.execute("t", "while True:\n    print('x' * 1000)")
    assert (
        execution.error
        == "Execution stopped: it wrote more than the output limit of 200,000 bytes."
    )
    assert len(execution.logs.encode()) < 9_000
    assert "KeyboardInterrupt" in execution.logs  # the tail is kept: where it stopped
    assert not execution.session_ended
    execution = await sandbox.execute("t", "import sys\nsys.stdout.write('y' * 300_000_000);")
    assert "output limit" in (execution.error or "")
    assert (await sandbox.execute("t", "kept")).logs == "1\n"


async def test_file_size(make_sandbox: Callable[..., Sandbox]) -> None:
    sandbox = make_sandbox(max_file_bytes=1 * MIB)
    code = "with open('/mnt/data/big.bin', 'wb') as f:\n    f.write(b'x' * (2 * 1024 * 1024))"
    execution = await sandbox.execute("t", code)
    assert execution.error == "File size limit reached: files may be 1 MiB."
    assert "File too large" in execution.logs
    # what was written up to the limit is still a file
    assert [(name, len(content)) for name, content in execution.files] == [("big.bin", 1 * MIB)]
    execution = await sandbox.execute("t", "open('/tmp/big', 'wb').truncate(10 ** 12)")
    assert execution.error == "File size limit reached: files may be 1 MiB."
    await assert_works(sandbox)


async def test_total_size_of_mnt_data(make_sandbox: Callable[..., Sandbox]) -> None:
    sandbox = make_sandbox(max_file_bytes=1 * MIB, max_dir_bytes=3 * MIB)
    code = "for i in range(5):\n    open(f'/mnt/data/f{i}', 'wb').write(b'x' * 1000 * 1000)"
    execution = await sandbox.execute("t", code)
    assert execution.session_ended
    assert "The files in /mnt/data exceed the limit of 3 MiB" in (execution.error or "")
    assert execution.files == []
    assert sandbox.sessions == []
    await assert_works(sandbox)


async def test_interpreter_exiting_starts_a_fresh_session(sandbox: Sandbox) -> None:
    execution = await sandbox.execute("t", "import os\nprint('bye')\nos._exit(7)")
    assert execution.logs.startswith("bye\n")
    assert execution.session_ended
    assert "exited unexpectedly" in (execution.error or "")
    await assert_works(sandbox)


async def test_code_busy_between_executions_ends_its_session(sandbox: Sandbox) -> None:
    code = "import threading\ndef spin():\n    while True:\n        pass\n"
    code += "threading.Thread(target=spin).start()"
    execution = await sandbox.execute("t", code)
    assert execution.error is None
    deadline = time.monotonic() + 20  # about 1.2 s on an idle machine
    while not (ended := await sandbox.reap_idle()) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert ended == ["t"]
    execution = await sandbox.execute("t", "print('fresh')")
    assert execution.logs.startswith("[sandbox] The previous session was ended because its code")
    assert execution.logs.endswith("fresh\n")

"""Sessions: execution, persistence, files in and out, figures, idle expiry, failures to start."""

import asyncio
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from runstep.tools.code_interpreter import (
    InputFile,
    Sandbox,
    SandboxConfig,
    SandboxUnavailable,
)

PNG = b"\x89PNG\r\n\x1a\n"


async def test_hello_world(sandbox: Sandbox) -> None:
    execution = await sandbox.execute("thread_a", "print('hello, world')")
    assert execution.logs == "hello, world\n"
    assert execution.error is None
    assert execution.images == [] and execution.files == []
    assert not execution.session_ended


async def test_variables_and_imports_persist(sandbox: Sandbox) -> None:
    await sandbox.execute("t", "import numpy as np\nx = np.arange(10)")
    execution = await sandbox.execute("t", "int(x.sum()) + 1")  # a final expression is shown
    assert execution.logs == "46\n"


async def test_stdout_stderr_and_traceback(sandbox: Sandbox) -> None:
    code = (
        "import sys\nprint('out')\nprint('err', file=sys.stderr)\ndef f():\n    return 1 / 0\nf()"
    )
    execution = await sandbox.execute("t", code)
    assert execution.logs.startswith("out\nerr\nTraceback (most recent call last):\n")
    assert "return 1 / 0" in execution.logs  # the source line of the code
    assert execution.logs.rstrip().endswith("ZeroDivisionError: division by zero")
    assert "runner.py" not in execution.logs
    assert execution.error is None  # the code failing is not a sandbox error
    assert (await sandbox.execute("t", "print('still here')")).logs == "still here\n"


async def test_syntax_error_and_system_exit(sandbox: Sandbox) -> None:
    execution = await sandbox.execute("t", "x = = 1")
    assert "SyntaxError" in execution.logs
    execution = await sandbox.execute("t", "import sys\nsys.exit(3)")
    assert "SystemExit: 3" in execution.logs and not execution.session_ended


async def test_sessions_are_separate(sandbox: Sandbox) -> None:
    await sandbox.execute("a", "secret = 'A'\nopen('/mnt/data/a.txt', 'w').write('A')")
    execution = await sandbox.execute("b", "import os\nprint(os.listdir('/mnt/data'))\nsecret")
    assert execution.logs.startswith("[]\n")
    assert "NameError" in execution.logs


async def test_files_in_and_out(sandbox: Sandbox) -> None:
    csv = b"city,temp\nParis,21\nOslo,12\n"
    code = (
        "import os, pandas as pd\n"
        "df = pd.read_csv('/mnt/data/weather.csv')\n"
        "os.makedirs('/mnt/data/out', exist_ok=True)\n"
        "df.assign(f=df.temp * 9 / 5 + 32).to_csv('/mnt/data/out/fahrenheit.csv', index=False)\n"
        "open('/mnt/data/mean.txt', 'w').write(str(df.temp.mean()))\n"
        "print(df.shape)"
    )
    execution = await sandbox.execute("t", code, [InputFile("weather.csv", csv)])
    assert execution.logs == "(2, 2)\n", execution.logs
    files = dict(execution.files)
    assert set(files) == {"mean.txt", "out/fahrenheit.csv"}  # inputs are not outputs
    assert files["mean.txt"] == b"16.5"
    assert files["out/fahrenheit.csv"].splitlines()[1] == b"Paris,21,69.8"

    # Unchanged files are not returned again; a file the code changes is.
    execution = await sandbox.execute(
        "t", "open('/mnt/data/weather.csv', 'a').write('Rome,25\\n')", [("weather.csv", csv)]
    )
    assert [name for name, _ in execution.files] == ["weather.csv"]
    # Passing the same upload again does not overwrite the code's change...
    execution = await sandbox.execute(
        "t", "print(len(open('/mnt/data/weather.csv').readlines()))", [("weather.csv", csv)]
    )
    assert execution.logs == "4\n" and execution.files == []
    # ...a new version of it does.
    execution = await sandbox.execute(
        "t", "print(open('/mnt/data/weather.csv').read())", [("weather.csv", b"new\n")]
    )
    assert execution.logs == "new\n\n"


async def test_matplotlib_figures_become_png(sandbox: Sandbox) -> None:
    code = (
        "import matplotlib.pyplot as plt\n"
        "plt.plot([1, 2, 3], [1, 4, 9])\n"
        "plt.title('squares')\n"
        "plt.show()\n"
        "fig, ax = plt.subplots()\n"  # left open: collected at the end
        "ax.bar(['a', 'b'], [3, 5])\n"
        "fig.savefig('/mnt/data/bars.png')\n"
    )
    execution = await sandbox.execute("t", code)
    assert execution.error is None, execution.logs
    assert execution.logs == ""  # no "non-interactive backend" warning
    assert len(execution.images) == 2
    assert all(image.startswith(PNG) for image in execution.images)
    assert [name for name, _ in execution.files] == ["bars.png"]
    assert dict(execution.files)["bars.png"].startswith(PNG)
    # figures are closed once returned
    execution = await sandbox.execute("t", "plt.get_fignums()")
    assert execution.logs == "[]\n" and execution.images == []


async def test_a_planted_symlink_is_replaced_not_followed(sandbox: Sandbox, tmp_path: Path) -> None:
    outside = tmp_path / "host-file.txt"
    outside.write_text("host content")
    code = (
        "import os\n"
        f"os.symlink({str(outside)!r}, '/mnt/data/data.csv')\n"
        f"os.symlink({str(outside)!r}, '/mnt/data/out.txt')\n"
        "os.mkfifo('/mnt/data/pipe')"
    )
    execution = await sandbox.execute("t", code)
    assert execution.files == []  # symlinks and fifos are not files to return
    execution = await sandbox.execute(
        "t", "print(os.path.islink('/mnt/data/data.csv'))", [InputFile("data.csv", b"upload")]
    )
    assert execution.logs == "False\n"
    assert outside.read_text() == "host content"


async def test_input_file_names_are_plain_names(sandbox: Sandbox) -> None:
    for name in ("../escape.txt", "a/b.txt", "", "..", "x\0y"):
        with pytest.raises(ValueError):
            await sandbox.execute("t", "pass", [InputFile(name, b"")])


async def test_concurrent_sessions_run_in_parallel(sandbox: Sandbox) -> None:
    await asyncio.gather(*(sandbox.execute(key, "pass") for key in "abc"))  # started
    started = time.monotonic()
    results = await asyncio.gather(
        *(sandbox.execute(key, "import time\ntime.sleep(1)\nprint('done')") for key in "abc")
    )
    assert [result.logs for result in results] == ["done\n"] * 3
    assert time.monotonic() - started < 2.5


async def test_executions_of_one_session_run_one_at_a_time(sandbox: Sandbox) -> None:
    await sandbox.execute("t", "n = 0")
    code = "import time\nm = n\ntime.sleep(0.2)\nn = m + 1\nn"
    results = await asyncio.gather(*(sandbox.execute("t", code) for _ in range(3)))
    assert sorted(result.logs for result in results) == ["1\n", "2\n", "3\n"]


async def test_idle_sessions_end_and_restart_transparently(
    make_sandbox: Callable[..., Sandbox],
) -> None:
    sandbox = make_sandbox(idle_seconds=0.3)
    await sandbox.execute("t", "x = 1\nopen('/mnt/data/f.txt', 'w').write('x')")
    assert sandbox.sessions == ["t"]
    deadline = time.monotonic() + 5
    while sandbox.sessions and time.monotonic() < deadline:  # the background reaper
        await asyncio.sleep(0.05)
    assert sandbox.sessions == []
    execution = await sandbox.execute("t", "import os\nprint(os.listdir('/mnt/data'))\nx")
    assert execution.logs.startswith("[]\n") and "NameError" in execution.logs
    assert execution.error is None


async def test_session_directories_are_removed(sandbox: Sandbox, data_dir: Path) -> None:
    await sandbox.execute("t", "open('/mnt/data/f.txt', 'w').write('x')")
    sessions = data_dir / "code-interpreter" / "sessions"
    assert len(list(sessions.iterdir())) == 1
    await sandbox.end_session("t")
    assert list(sessions.iterdir()) == []


HOLDER = """
import asyncio, sys
from pathlib import Path
from runstep.tools.code_interpreter import Sandbox, SandboxConfig

async def main() -> None:
    sandbox = Sandbox(SandboxConfig(python=Path(sys.argv[1]), work_dir=Path(sys.argv[2])))
    await sandbox.execute("k", "open('/mnt/data/f.txt', 'w').write('x')")
    print("ready", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_directories_of_a_killed_process_are_swept(
    make_sandbox: Callable[..., Sandbox], sandbox_python: Path, data_dir: Path
) -> None:
    """A process SIGKILLed with a session open cannot remove its directory: the sweep of any
    other process on the machine does, once nobody holds the session's slot."""
    work = data_dir / "code-interpreter"
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, str(sandbox_python), str(work),
        stdout=asyncio.subprocess.PIPE,
    )
    assert holder.stdout is not None
    assert await asyncio.wait_for(holder.stdout.readline(), 60) == b"ready\n"
    sandbox = make_sandbox()
    await sandbox.execute("mine", "x = 1")
    sessions = work / "sessions"
    assert len(list(sessions.iterdir())) == 2
    assert await sandbox.sweep_stale() == 0  # both sessions are alive
    holder.send_signal(signal.SIGKILL)
    await holder.wait()
    assert await sandbox.sweep_stale() == 1
    [left] = sessions.iterdir()
    assert (await sandbox.execute("mine", "print(x)")).logs == "1\n"  # its own is untouched
    assert left.exists()


async def test_least_recently_used_idle_session_makes_room(
    make_sandbox: Callable[..., Sandbox],
) -> None:
    sandbox = make_sandbox(max_sessions=2)
    await sandbox.execute("a", "x = 'a'")
    await sandbox.execute("b", "x = 'b'")
    await sandbox.execute("c", "x = 'c'")
    assert sorted(sandbox.sessions) == ["b", "c"]
    execution = await sandbox.execute("a", "x")
    assert "NameError" in execution.logs
    assert "ended to make room" in execution.logs


async def test_unavailable_when_bubblewrap_is_missing(make_sandbox: Callable[..., Sandbox]) -> None:
    sandbox = make_sandbox(bwrap="/nonexistent/bwrap")
    with pytest.raises(SandboxUnavailable, match="bubblewrap"):
        await sandbox.execute("t", "print('never runs')")


async def test_unavailable_when_bubblewrap_fails(make_sandbox: Callable[..., Sandbox]) -> None:
    sandbox = make_sandbox(bwrap="/bin/false")  # exits at once: nothing started, nothing ran
    with pytest.raises(SandboxUnavailable, match="did not start"):
        await sandbox.execute("t", "print('never runs')")


async def test_unavailable_without_the_interpreter(sandbox_python: Path, data_dir: Path) -> None:
    config = SandboxConfig(python=data_dir / "missing/bin/python", work_dir=data_dir)
    sandbox = Sandbox(config)
    with pytest.raises(SandboxUnavailable, match="runstep sandbox setup"):
        await sandbox.execute("t", "print('never runs')")
    await sandbox.close()


async def test_logs_are_text_even_for_binary_output(sandbox: Sandbox) -> None:
    # (a trailing semicolon hides the final expression's value, as in a notebook)
    code = "import sys\nsys.stdout.buffer.write(b'\\xff\\xfe ok');"
    execution = await sandbox.execute("t", code)
    assert execution.logs == "\ufffd\ufffd ok"

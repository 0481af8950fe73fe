"""How one sandboxed interpreter is started: the bubblewrap command line.

Two modes, chosen by who runs the server:

- **root** (e.g. in a container): bubblewrap runs privileged and unshares the ipc, pid, net, uts
  and cgroup namespaces (no user namespace: it would map the sandbox to root outside). Inside,
  ``setpriv`` switches to the session's own unprivileged uid/gid (``uid_base + slot``), drops
  every capability (bounding set included) and sets no_new_privs before Python starts. A uid
  per session makes ``RLIMIT_NPROC`` count each session's processes separately.
- **unprivileged**: bubblewrap creates a user namespace as well (``--unshare-all
  --unshare-user --disable-userns``); the sandbox runs as the server's uid, and the kernel counts
  processes per user namespace, so per session again.

Both: ``--die-with-parent``, ``--new-session``, ``--clearenv`` (bubblewrap itself also starts
with an almost empty environment, so nothing leaks through /proc/1/environ), a seccomp filter
(:mod:`.seccomp`), a read-only root built from /usr (and the merged-usr links), a few /etc files
(synthetic passwd, group, hosts, nsswitch.conf), the interpreter's own prefixes, the guest code
at /opt/runstep, a new /proc and /dev, size-limited tmpfs /tmp and /dev/shm, and the session's
directory read-write at /mnt/data. Nothing else of the host is visible. The arguments travel
through ``--args FD``, so not even the sandbox's /proc/1/cmdline shows the host's paths.
"""

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from runstep.tools.code_interpreter import seccomp

GUEST_DIR = Path(__file__).resolve().parent / "guest"
GUEST_MOUNT = "/opt/runstep"
DATA_MOUNT = "/mnt/data"
SHM_BYTES = 16 * 1024 * 1024
_MERGED_USR = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "mime.types", "fonts")
SETPRIV = "/usr/bin/setpriv"


@dataclass(frozen=True)
class Interpreter:
    """The sandbox's Python: the executable to run and the host directories it needs (bound
    read-only at the same paths), found by asking it once (:func:`probe_script`)."""

    executable: str
    binds: tuple[str, ...]
    masks: tuple[str, ...] = ()  # the base installation's site-packages, hidden


@dataclass(frozen=True)
class Limits:
    memory_bytes: int
    max_processes: int
    max_file_bytes: int
    tmp_bytes: int
    threads: int = 2


@dataclass
class Command:
    """The bubblewrap argv and the descriptors it must inherit (close them once started)."""

    argv: list[str]
    fds: list[int] = field(default_factory=list)

    def close(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds.clear()


PROBE_SCRIPT = (
    "import json, os, sys, sysconfig; print(json.dumps({'prefix': sys.prefix, "
    "'base_prefix': sys.base_prefix, 'exec_prefix': sys.exec_prefix, "
    "'base_exec_prefix': sys.base_exec_prefix, 'real': os.path.realpath(sys.executable), "
    "'purelib': sysconfig.get_paths()['purelib'], 'version': list(sys.version_info[:2])}))"
)


def interpreter_from_probe(executable: str, probe: dict) -> Interpreter:
    """Which host directories the interpreter needs, from :data:`PROBE_SCRIPT`'s answer."""
    candidates = [
        probe["prefix"],
        probe["base_prefix"],
        probe["exec_prefix"],
        probe["base_exec_prefix"],
        os.path.dirname(os.path.dirname(probe["real"])),
        os.path.dirname(os.path.dirname(executable)),
    ]
    binds: list[str] = []
    for path in sorted({os.path.normpath(p) for p in candidates}, key=len):
        if _covered_by_root(path) or any(_within(path, bound) for bound in binds):
            continue
        binds.append(path)
    masks: list[str] = []
    major, minor = probe["version"]
    base_site = os.path.join(probe["base_prefix"], "lib", f"python{major}.{minor}", "site-packages")
    if (
        not _covered_by_root(base_site)
        and os.path.normpath(base_site) != os.path.normpath(probe["purelib"])
        and os.path.isdir(base_site)
    ):
        masks.append(base_site)
    return Interpreter(executable=executable, binds=tuple(binds), masks=tuple(masks))


def _within(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _covered_by_root(path: str) -> bool:
    """Whether the sandbox's base (/usr and the merged-usr links) already shows ``path``."""
    return any(_within(path, "/" + top) for top in ("usr", *_MERGED_USR))


def _data_fd(content: bytes) -> int:
    fd = os.memfd_create("runstep-sandbox", 0)
    os.write(fd, content)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def build(
    *,
    bwrap: str,
    interpreter: Interpreter,
    session_dir: Path,
    limits: Limits,
    nonce: str,
    uid: int | None,
) -> Command:
    """The command for one session. ``uid`` is the session's uid in root mode, None when the
    server is unprivileged (user-namespace mode)."""
    command = Command(argv=[])
    args: list[str] = []
    made: set[str] = {"/"}

    def parents(dest: str) -> None:
        parts = Path(dest).parts[1:-1]
        current = ""
        for part in parts:
            current += "/" + part
            if current not in made:
                args.extend(["--perms", "0755", "--dir", current])
                made.add(current)

    def data(dest: str, content: str) -> None:
        fd = _data_fd(content.encode())
        command.fds.append(fd)
        args.extend(["--perms", "0444", "--ro-bind-data", str(fd), dest])

    if uid is None:
        args += ["--unshare-all", "--unshare-user", "--disable-userns"]
        sandbox_uid = sandbox_gid = os.getuid()
    else:
        args += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts"]
        args += ["--unshare-cgroup-try"]
        sandbox_uid = sandbox_gid = uid
    args += ["--die-with-parent", "--new-session", "--hostname", "sandbox", "--clearenv"]

    args += ["--ro-bind", "/usr", "/usr"]
    made.add("/usr")
    for top in _MERGED_USR:
        path = Path("/" + top)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
        made.add(str(path))

    args += ["--perms", "0755", "--dir", "/etc"]
    made.add("/etc")
    for name in _ETC_FILES:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    data("/etc/passwd", f"sandbox:x:{sandbox_uid}:{sandbox_gid}:sandbox:/tmp:/usr/sbin/nologin\n")
    data("/etc/group", f"sandbox:x:{sandbox_gid}:\n")
    data("/etc/hosts", "127.0.0.1 localhost sandbox\n::1 localhost\n")
    data("/etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files\n")

    args += ["--proc", "/proc", "--dev", "/dev"]
    args += ["--perms", "1777", "--size", str(SHM_BYTES), "--tmpfs", "/dev/shm"]
    args += ["--perms", "1777", "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp"]
    made.update(("/proc", "/dev", "/tmp"))
    for path in interpreter.binds:  # after /tmp, so that an interpreter under /tmp shows
        parents(path)
        args += ["--ro-bind", path, path]
        made.add(path)
    for path in interpreter.masks:
        args += ["--perms", "0555", "--size", "4096", "--tmpfs", path, "--remount-ro", path]

    parents(GUEST_MOUNT + "/x")
    args += ["--ro-bind", str(GUEST_DIR), GUEST_MOUNT]
    parents(DATA_MOUNT)
    args += ["--bind", str(session_dir), DATA_MOUNT]

    prefix_bin = os.path.dirname(interpreter.executable)
    environment = {
        "PATH": f"{prefix_bin}:/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "USER": "sandbox",
        "LOGNAME": "sandbox",
        "LANG": "C.UTF-8",
        "MPLBACKEND": "module://runstep_inline",
        "MPLCONFIGDIR": "/tmp/matplotlib",
        "PYTHONPATH": GUEST_MOUNT,
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": str(limits.threads),
        "OPENBLAS_NUM_THREADS": str(limits.threads),
        "MKL_NUM_THREADS": str(limits.threads),
    }
    for name, value in environment.items():
        args += ["--setenv", name, value]

    bpf = seccomp.filter_program()
    if bpf is not None:
        fd = _data_fd(bpf)
        command.fds.append(fd)
        args += ["--seccomp", str(fd)]

    program: list[str] = []
    if uid is not None:
        args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        program += [SETPRIV, f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
        program += ["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
    runner_config = {
        "nonce": nonce,
        "memory_bytes": limits.memory_bytes,
        "max_processes": limits.max_processes,
        "max_file_bytes": limits.max_file_bytes,
    }
    program += [interpreter.executable, "-I", "-u", f"{GUEST_MOUNT}/runner.py"]
    program += [json.dumps(runner_config)]

    # Options through a descriptor (bubblewrap takes only options there, not the command).
    args_fd = _data_fd(b"".join(arg.encode() + b"\0" for arg in args))
    command.fds.append(args_fd)
    command.argv = [bwrap, "--args", str(args_fd), "--", *program]
    return command

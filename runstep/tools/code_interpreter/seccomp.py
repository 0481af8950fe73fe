"""A seccomp filter for the sandbox (bubblewrap's ``--seccomp FD``): a classic BPF program that
refuses the system calls ordinary Python code never needs and that widen the kernel's attack
surface: new namespaces (so no user namespace, hence no capabilities, inside the sandbox),
mounts, keyrings, BPF, perf, io_uring, ptrace, module and kexec loading. Everything else is
allowed; the namespaces and resource limits do the containing, this only narrows the kernel
interface. Calls from another ABI (i386 or x32 on x86-64) are refused outright.
"""

import errno
import platform
import struct

# struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6];
_NR, _ARCH, _ARG0_LOW = 0, 4, 16
_LD_W_ABS = 0x00 | 0x00 | 0x20
_JEQ_K = 0x05 | 0x10 | 0x00
_JGE_K = 0x05 | 0x30 | 0x00
_JSET_K = 0x05 | 0x40 | 0x00
_RET_K = 0x06 | 0x00
_ALLOW = 0x7FFF0000
_ERRNO = 0x00050000

CLONE_NEW_ANY = (
    0x00000080  # CLONE_NEWTIME
    | 0x00020000  # CLONE_NEWNS
    | 0x02000000  # CLONE_NEWCGROUP
    | 0x04000000  # CLONE_NEWUTS
    | 0x08000000  # CLONE_NEWIPC
    | 0x10000000  # CLONE_NEWUSER
    | 0x20000000  # CLONE_NEWPID
    | 0x40000000  # CLONE_NEWNET
)


def _numbers(table: str) -> dict[str, int]:
    pairs = (item.split("=") for item in table.split())
    return {name: int(number) for name, number in pairs}


# (audit arch, the numbers of the refused calls and of clone/clone3, and the first number of a
# foreign ABI sharing the arch value, or None)
_ARCHES: dict[str, tuple[int, dict[str, int], int | None]] = {
    "x86_64": (
        0xC000003E,
        _numbers(
            "unshare=272 setns=308 mount=165 umount2=166 pivot_root=155 chroot=161 "
            "open_tree=428 move_mount=429 fsopen=430 fsconfig=431 fsmount=432 fspick=433 "
            "mount_setattr=442 keyctl=250 add_key=248 request_key=249 bpf=321 "
            "perf_event_open=298 userfaultfd=323 ptrace=101 process_vm_readv=310 "
            "process_vm_writev=311 kexec_load=246 kexec_file_load=320 init_module=175 "
            "finit_module=313 delete_module=176 reboot=169 swapon=167 swapoff=168 acct=163 "
            "syslog=103 quotactl=179 name_to_handle_at=303 open_by_handle_at=304 "
            "io_uring_setup=425 io_uring_enter=426 io_uring_register=427 iopl=172 "
            "ioperm=173 clone=56 clone3=435"
        ),
        0x40000000,  # x32 system calls set this bit
    ),
    "aarch64": (
        0xC00000B7,
        _numbers(
            "unshare=97 setns=268 mount=40 umount2=39 pivot_root=41 chroot=51 open_tree=428 "
            "move_mount=429 fsopen=430 fsconfig=431 fsmount=432 fspick=433 "
            "mount_setattr=442 keyctl=219 add_key=217 request_key=218 bpf=280 "
            "perf_event_open=241 userfaultfd=282 ptrace=117 process_vm_readv=270 "
            "process_vm_writev=271 kexec_load=104 kexec_file_load=294 init_module=105 "
            "finit_module=273 delete_module=106 reboot=142 swapon=224 swapoff=225 acct=89 "
            "syslog=116 quotactl=60 name_to_handle_at=264 open_by_handle_at=265 "
            "io_uring_setup=425 io_uring_enter=426 io_uring_register=427 clone=220 "
            "clone3=435"
        ),
        None,
    ),
}
_ARCHES["amd64"] = _ARCHES["x86_64"]
_ARCHES["arm64"] = _ARCHES["aarch64"]


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k & 0xFFFFFFFF)


def filter_program(machine: str | None = None) -> bytes | None:
    """The BPF program for this machine's architecture, or None when it is not one we know
    (the sandbox then runs without the filter; the namespaces and limits still hold)."""
    arch = _ARCHES.get((machine or platform.machine()).lower())
    if arch is None:
        return None
    audit_arch, numbers, foreign_abi_bit = arch
    denied = [number for name, number in numbers.items() if name not in ("clone", "clone3")]
    # Layout: header, one JEQ per denied call, clone checks, ALLOW, DENY (EPERM), ENOSYS.
    body: list[tuple[int, int | str, int | str, int]] = []
    body.append((_LD_W_ABS, 0, 0, _ARCH))
    body.append((_JEQ_K, 1, 0, audit_arch))
    body.append((_RET_K, 0, 0, _ERRNO | errno.ENOSYS))
    body.append((_LD_W_ABS, 0, 0, _NR))
    if foreign_abi_bit is not None:
        body.append((_JGE_K, "deny", 0, foreign_abi_bit))
    for number in denied:
        body.append((_JEQ_K, "deny", 0, number))
    body.append((_JEQ_K, "enosys", 0, numbers["clone3"]))  # glibc falls back to clone
    body.append((_JEQ_K, 0, "allow", numbers["clone"]))
    body.append((_LD_W_ABS, 0, 0, _ARG0_LOW))  # clone flags (low 32 bits)
    body.append((_JSET_K, "deny", "allow", CLONE_NEW_ANY))
    labels = {"allow": len(body), "deny": len(body) + 1, "enosys": len(body) + 2}
    body.append((_RET_K, 0, 0, _ALLOW))
    body.append((_RET_K, 0, 0, _ERRNO | errno.EPERM))
    body.append((_RET_K, 0, 0, _ERRNO | errno.ENOSYS))
    program = bytearray()
    for index, (code, jt, jf, k) in enumerate(body):
        jt_off = labels[jt] - index - 1 if isinstance(jt, str) else jt
        jf_off = labels[jf] - index - 1 if isinstance(jf, str) else jf
        assert 0 <= jt_off < 256 and 0 <= jf_off < 256
        program += _insn(code, jt_off, jf_off, k)
    return bytes(program)

"""Tests for sandbox.py.

Container tests run for real (namespaces, mounts, seccomp, processes), once
as the calling user and once as uid 65534 (when the suite runs as root: a
forked child drops its privileges, runs the test body and reports back over
a pipe).  Pure functions (BPF generation, mountinfo parsing, argument
checks) get unit tests too.
"""

import ctypes
import hashlib
import errno
import fcntl
import functools
import json
import marshal
import os
import pathlib
import pickle
import pty
import random
import re
import resource
import select
import shlex
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import termios
import textwrap
import threading
import time
import traceback

import pytest

import sandbox

HERE = os.path.dirname(os.path.abspath(__file__))
NOBODY = 65534
ENV = {"PATH": "/usr/bin:/bin"}


# ---------------------------------------------------------------------------
# Running a test body as the caller and as an unprivileged user.
# ---------------------------------------------------------------------------

def _drop_ids():
    os.setgroups([])
    os.setresgid(NOBODY, NOBODY, NOBODY)
    os.setresuid(NOBODY, NOBODY, NOBODY)


def _drop_to_nobody():
    _drop_ids()
    os.chdir("/")


def _run_forked(body, drop):
    """Run body() in a forked child (after dropping privileges if drop);
    re-raise its failure here with the child's traceback."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 0
        try:
            os.close(read_end)
            if drop:
                _drop_to_nobody()
                assert os.getuid() == NOBODY and os.geteuid() == NOBODY
            body()
            result = ("ok", "")
        except BaseException:
            result = ("fail", traceback.format_exc())
        try:
            data = pickle.dumps(result)
            while data:
                data = data[os.write(write_end, data):]
        except BaseException:
            status = 1
        os._exit(status)
    os.close(write_end)
    chunks = []
    while True:
        chunk = os.read(read_end, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    assert chunks, "the test child died without reporting (status %#x)" % status
    kind, text = pickle.loads(b"".join(chunks))
    if kind != "ok":
        pytest.fail("in the %s child:\n%s" % ("unprivileged" if drop else "forked", text),
                    pytrace=False)


@pytest.fixture(params=["caller", "nobody"])
def as_user(request):
    """as_user(body): run body as the caller, or as uid 65534.  When the
    suite itself runs unprivileged, both variants run as the caller."""
    if request.param == "nobody" and os.geteuid() == 0:
        return lambda body: _run_forked(body, drop=True)
    return lambda body: body()


def run_ok(args, **kwargs):
    kwargs.setdefault("env", ENV)
    kwargs.setdefault("capture_output", True)
    cp = sandbox.run(args, **kwargs)
    assert cp.returncode == 0, (cp.returncode, cp.stdout, cp.stderr)
    return cp.stdout.decode()


def running_sleeper():
    """A started and served container running `sleep 30`."""
    c = sandbox.Container("/bin/sleep", "30", ops=sandbox.default_ops())
    c.start()
    c.serve()
    return c


def sh(script, **kwargs):
    return run_ok(["/bin/sh", "-c", script], **kwargs)


def mountinfo_inside(ops, **kwargs):
    text = run_ok(["/bin/cat", "/proc/self/mountinfo"], ops=ops, **kwargs)
    return {e.mountpoint: e for e in sandbox.parse_mountinfo(text)}


def host_state():
    """The mount table and this process's fds (less the helper's socket,
    which lives as long as the process once the first sandbox ran)."""
    fds = []
    for name in os.listdir("/proc/self/fd"):
        try:
            fds.append((int(name), os.readlink("/proc/self/fd/" + name)))
        except OSError:
            pass          # the directory listing itself
    helper = sandbox._Helper.current()
    if helper is not None and helper.pid_owner == os.getpid():
        fds = [fd for fd in fds if fd[0] != helper.sock.fileno()]
    with open("/proc/self/mountinfo") as f:
        mounts = f.read()
    return mounts, sorted(fds)


def zombie_children():
    zombies = []
    with open("/proc/self/task/%d/children" % os.getpid()) as f:
        for pid in f.read().split():
            try:
                with open("/proc/%s/stat" % pid) as stat:
                    if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                        zombies.append(int(pid))
            except OSError:
                pass
    return zombies


@pytest.fixture(autouse=True)
def nothing_left_behind():
    """Every test leaves the host's mount table and this process's fds as
    they were, and no zombie child."""
    mounts, fds = host_state()
    yield
    after_mounts, after_fds = host_state()
    assert after_mounts == mounts
    assert after_fds == fds
    for _ in range(50):
        zombies = zombie_children()
        if not zombies:
            break
        time.sleep(0.01)
    assert zombies == [], "zombie children left: %s" % zombies


# ---------------------------------------------------------------------------
# Seccomp: the policy computed independently, the compiler's decisions
# checked with the module's interpreter for every syscall number.
# ---------------------------------------------------------------------------

ALWAYS = "syslog uselib acct quotactl add_key keyctl request_key move_pages mbind get_mempolicy set_mempolicy set_mempolicy_home_node migrate_pages"
EXT = "adjtimex clock_adjtime clock_adjtime64 clock_settime clock_settime64 settimeofday delete_module finit_module init_module kexec_file_load kexec_load reboot swapoff swapon bpf userfaultfd open_by_handle_at"
EXT_ENOSYS = "io_uring_setup io_uring_enter io_uring_register"
DENY_NS = "unshare setns mount umount umount2 pivot_root chroot"
DENY_NS_ENOSYS = "clone3 open_tree move_mount fsopen fsconfig fsmount fspick mount_setattr"
DEVEL = "perf_event_open ptrace process_vm_readv process_vm_writev kcmp pidfd_getfd"
ARCHES = ["x86_64", "i386", "aarch64", "arm"]
OPTS = [0, 0x2, 0x4, 0x6, 0x8, 0x10, 0x1E, 0x3E, 0x5E, 0x9E, 0x11E, 0x1FE, 0x7E]
EPERM = sandbox.SECCOMP_RET_ERRNO | errno.EPERM
ENOSYS = sandbox.SECCOMP_RET_ERRNO | errno.ENOSYS
EAFNO = sandbox.SECCOMP_RET_ERRNO | errno.EAFNOSUPPORT
ALLOW = sandbox.SECCOMP_RET_ALLOW
KILL = sandbox.SECCOMP_RET_KILL_PROCESS


def expected_by_name(opts):
    """name -> action for the unconditional rules of SPEC section 4."""
    table = {name: EPERM for name in ALWAYS.split()}
    if opts & 2:
        table.update((name, EPERM) for name in EXT.split())
        table.update((name, ENOSYS) for name in EXT_ENOSYS.split())
    if opts & 4:
        table.update((name, EPERM) for name in DENY_NS.split())
        table.update((name, ENOSYS) for name in DENY_NS_ENOSYS.split())
    if opts & 16:
        table.update((name, EPERM) for name in DEVEL.split())
    if not opts & 32:
        table["modify_ldt"] = EPERM
        if opts & 2:
            table.update((name, ENOSYS) for name in "subpage_prot switch_endian vm86 vm86old".split())
    return table


def expected(arch, opts, nr, args=(0,) * 6):
    """The decision libseccomp's filter makes, computed from the rules."""
    args = (list(args) + [0] * 6)[:6]
    bits = 64 if arch in ("x86_64", "aarch64") else 32
    if bits == 32:
        args = [a & 0xFFFFFFFF for a in args]
    if arch == "x86_64" and nr >= 0x40000000 and nr != 0xFFFFFFFF:
        return KILL
    names = [n for n, number in sandbox.SYSCALLS[arch].items() if number == nr]
    if not names:
        return ALLOW
    name = names[0]
    if name in ("socket", "socketpair"):
        allowed = {0, 1, 2, 10, 16} | ({29} if opts & 128 else set()) | ({31} if opts & 256 else set())
        return ALLOW if args[0] in allowed else EAFNO
    if name == "ioctl" and opts & 8:
        return EPERM if args[1] & 0xFFFFFFFF in (0x5412, 0x541C) else ALLOW
    if name == "clone" and opts & 4:
        return EPERM if args[0] & 0x10000000 else ALLOW
    if name == "personality" and opts & 16:
        return ALLOW if args[0] == (8 if opts & 64 else 0) else EPERM
    return expected_by_name(opts).get(name, ALLOW)


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("opts", OPTS)
def test_filter_decides_every_syscall_number_as_the_rules_say(arch, opts):
    program = sandbox.seccomp_filter(opts, arch)
    assert len(program) % 8 == 0
    for nr in list(range(1024)) + [0x40000000, 0x40000001, 0x4000FFFF, 0x7FFFFFFF, 0xFFFFFFFE, 0xFFFFFFFF]:
        action, _ = sandbox.bpf_run(program, nr, arch)
        assert action == expected(arch, opts, nr), (arch, hex(opts), nr)


@pytest.mark.parametrize("arch", ARCHES)
def test_filter_kills_foreign_architectures(arch):
    for opts in (0, 0x1E, 0x3E):
        program = sandbox.seccomp_filter(opts, arch)
        for other, audit in sandbox.AUDIT_ARCH.items():
            accepted = other == arch or (opts & 32 and sandbox._COMPAT_ARCH.get(arch) == other)
            action, _ = sandbox.bpf_run(program, 39, audit)
            assert (action != KILL) == bool(accepted), (arch, other, hex(opts))
        assert sandbox.bpf_run(program, 0, 0x12345678)[0] == KILL


def test_multiarch_filters_compat_syscalls_with_their_own_numbers():
    program = sandbox.seccomp_filter(0x3E, "x86_64")
    i386 = sandbox.AUDIT_ARCH["i386"]
    assert sandbox.bpf_run(program, 103, i386)[0] == EPERM       # syslog on i386
    assert sandbox.bpf_run(program, 21, i386)[0] == EPERM        # mount on i386
    assert sandbox.bpf_run(program, 21, "x86_64")[0] == ALLOW    # access on x86_64
    assert sandbox.bpf_run(program, 359, i386, [17])[0] == EAFNO  # socket(AF_PACKET), i386
    assert sandbox.bpf_run(program, 123, i386)[0] == ALLOW       # modify_ldt allowed with multiarch
    program = sandbox.seccomp_filter(0x3E, "aarch64")
    arm = sandbox.AUDIT_ARCH["arm"]
    assert sandbox.bpf_run(program, 281, arm, [17])[0] == EAFNO
    assert sandbox.bpf_run(program, 21, arm)[0] == EPERM


ARG_CASES = [
    # (name, args, opts)
    ("socket", [2], 0), ("socket", [3], 0), ("socket", [9], 0), ("socket", [10], 0),
    ("socket", [11], 0), ("socket", [15], 0), ("socket", [16], 0), ("socket", [17], 0),
    ("socket", [28], 0x80), ("socket", [29], 0x80), ("socket", [30], 0x80), ("socket", [31], 0x80),
    ("socket", [31], 0x100), ("socket", [30], 0x180), ("socket", [32], 0x180),
    ("socket", [0xFFFFFFFF], 0), ("socket", [1 << 32 | 2], 0), ("socket", [2**64 - 1], 0),
    ("socket", [1 << 32], 0), ("socket", [-1], 0),
    ("socketpair", [1], 0), ("socketpair", [40], 0), ("socketpair", [29], 0x80),
    ("socketpair", [30], 0x180), ("socketpair", [1 << 32 | 1], 0),
    ("ioctl", [0, 0x5412], 0x8), ("ioctl", [0, 0x541C], 0x8), ("ioctl", [0, 0x5413], 0x8),
    ("ioctl", [0, 0xDEAD00005412], 0x8), ("ioctl", [0, 0x5412], 0),
    ("clone", [0x10000000], 0x4), ("clone", [0x10000000 | 0x01200011], 0x4),
    ("clone", [0x01200011], 0x4), ("clone", [0xFFFFFFFF00000000], 0x4), ("clone", [0x10000000], 0),
    ("personality", [0], 0x10), ("personality", [8], 0x10), ("personality", [6], 0x10),
    ("personality", [0xFFFFFFFF], 0x10), ("personality", [1 << 32], 0x10),
    ("personality", [8], 0x50), ("personality", [0], 0x50), ("personality", [6], 0),
]


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("name,args,opts", ARG_CASES)
def test_argument_edge_cases(arch, name, args, opts):
    nr = sandbox.SYSCALLS[arch][name]
    program = sandbox.seccomp_filter(opts, arch)
    args = [a & (2**64 - 1) for a in args]
    assert sandbox.bpf_run(program, nr, arch, args)[0] == expected(arch, opts, nr, args)


def test_argument_comparisons_use_all_64_bits_on_64_bit_architectures():
    program = sandbox.seccomp_filter(0x10, "x86_64")
    assert sandbox.bpf_run(program, 135, "x86_64", [1 << 32])[0] == EPERM
    program = sandbox.seccomp_filter(0x10, "i386")
    assert sandbox.bpf_run(program, 136, "i386", [0])[0] == ALLOW


def header_numbers(path, pattern=r"#define __NR_(\w+)\s+(\d+)"):
    with open(path) as f:
        return {m.group(1): int(m.group(2)) for m in re.finditer(pattern, f.read())}


HEADERS = {
    "x86_64": "/usr/include/x86_64-linux-gnu/asm/unistd_64.h",
    "i386": "/usr/include/x86_64-linux-gnu/asm/unistd_32.h",
    "aarch64": "/usr/include/asm-generic/unistd.h",
}


# The generic header's names that aarch64 does not have: 32-bit only
# (time64, sync_file_range2) or not syscalls.
GENERIC_NOT_AARCH64 = {"arch_specific_syscall", "syscalls", "sync_file_range2"}


def generic_header_numbers(path):
    """The 64-bit names of asm-generic/unistd.h, with its __NR3264_ aliases."""
    with open(path) as f:
        text = f.read()
    numbers = header_numbers(path)
    aliases = dict(re.findall(r"#define __NR3264_(\w+)\s+(\d+)", text))
    block = text[text.index("#if __BITS_PER_LONG == 64"):]
    block = block[:block.index("#else")]
    for name, alias in re.findall(r"#define __NR_(\w+) __NR3264_(\w+)", block):
        if alias in aliases:        # __NR3264_stat: not on new architectures
            numbers[name] = int(aliases[alias])
    return {n: v for n, v in numbers.items()
            if n not in GENERIC_NOT_AARCH64 and not 403 <= v <= 423}


@pytest.mark.parametrize("arch", ["x86_64", "i386", "aarch64"])
def test_syscall_tables_are_the_kernel_headers(arch):
    """Every name of this machine's header with its number, and no other
    name but those newer than the header (numbers above its last)."""
    path = HEADERS[arch]
    if not os.path.exists(path):
        pytest.fail("no %s on this machine (install linux-libc-dev)" % path)
    numbers = generic_header_numbers(path) if arch == "aarch64" else header_numbers(path)
    ours = sandbox.SYSCALLS[arch]
    assert {n: ours.get(n) for n in numbers} == numbers
    newest = max(numbers.values())
    assert all(ours[n] > newest for n in set(ours) - set(numbers)), arch
    assert len(set(ours.values())) == len(ours), "one number, one name"


def test_arm_table_is_libseccomps():
    """No arm header here: the arm table is checked against libseccomp's
    own (its syscalls.csv, from the kernel's arch/arm/tools/syscall.tbl),
    number by number, and beyond libseccomp's last by the unified numbers."""
    script = ("import json, seccomp\nout = {}\n"
              "for nr in list(range(1000)) + list(range(0xf0000, 0xf0010)):\n"
              "    try: name = seccomp.resolve_syscall(seccomp.Arch.ARM, nr)\n"
              "    except Exception: continue\n"
              "    if name: out[name.decode()] = nr\n"
              "print(json.dumps(out))")
    cp = subprocess.run([SYSTEM_PYTHON, "-c", script], capture_output=True, text=True)
    assert cp.returncode == 0, cp.stderr
    theirs = json.loads(cp.stdout)
    # libseccomp 2.5.4 lists map_shadow_stack (453) for every architecture;
    # the kernel has it on 64-bit ones only (arm's table goes 452, 454).
    del theirs["map_shadow_stack"]
    ours = sandbox.SYSCALLS["arm"]
    last = max(n for n in theirs.values() if n < 0xf0000)
    assert {n: v for n, v in ours.items() if v <= last or v >= 0xf0000} == theirs
    assert "memfd_secret" not in ours and "map_shadow_stack" not in ours


def test_unified_syscall_numbers_agree_across_architectures():
    # From 424 (pidfd_send_signal) on, every architecture numbers alike.
    for name in set().union(*(sandbox.SYSCALLS[a] for a in ARCHES)):
        numbers = {sandbox.SYSCALLS[a][name] for a in ARCHES if name in sandbox.SYSCALLS[a]}
        if max(numbers) >= 424 and max(numbers) < 0xf0000:
            assert len(numbers) == 1, (name, numbers)
    for name in ("clone3", "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount",
                 "fspick", "mount_setattr", "io_uring_setup", "file_setattr"):
        assert {sandbox.SYSCALLS[a][name] for a in ARCHES} == {sandbox.SYSCALLS["x86_64"][name]}


# Members of systemd's groups that none of the four architectures has.
OTHER_ARCH_NAMES = {"rtas", "subpage_prot", "swapcontext", "switch_endian",
                    "sync_file_range2", "sys_debug_setcontext"}


def test_syscall_groups_have_systemds_meaning():
    known = set().union(*(sandbox.SYSCALLS[a] for a in ARCHES))
    assert sandbox.syscall_group("@known") == sorted(known)
    for group in sandbox._SYSCALL_GROUPS:
        members = sandbox.syscall_group(group)
        assert members and set(members) - known <= OTHER_ARCH_NAMES, group
    assert sandbox.syscall_group("@mount") == sorted(
        "chroot fsconfig fsmount fsopen fspick mount move_mount open_tree pivot_root umount umount2".split())
    assert sandbox.syscall_group("@io-uring") == ["io_uring_enter", "io_uring_register", "io_uring_setup"]
    assert sandbox.syscall_group("@clock") == sorted(
        "adjtimex clock_adjtime clock_adjtime64 clock_settime clock_settime64 settimeofday stime".split())
    privileged = set(sandbox.syscall_group("@privileged"))
    for nested in ("@chown", "@clock", "@module", "@raw-io", "@reboot", "@swap"):
        assert set(sandbox.syscall_group(nested)) <= privileged
    assert {"bpf", "open_by_handle_at", "setuid", "capset"} <= privileged
    for name in ("@mount", "@module", "@clock", "@reboot", "@swap", "@keyring", "@debug", "@raw-io",
                 "@cpu-emulation", "@obsolete", "@privileged", "@aio", "@basic-io", "@chown",
                 "@default", "@file-system", "@io-event", "@ipc", "@memlock", "@network-io",
                 "@pkey", "@process", "@resources", "@sandbox", "@setuid", "@signal", "@sync",
                 "@system-service", "@timer"):
        assert name in sandbox._SYSCALL_GROUPS, name
    with pytest.raises(sandbox.SandboxError, match="@nope"):
        sandbox.syscall_group("@nope")


@pytest.mark.parametrize("arch", ARCHES)
def test_filter_is_small_and_quick(arch):
    # The bench reports the figures; this only guards the shape: a search
    # tree, not a chain, so the mean stays far below the number of rules.
    for opts in (0, 0x1E, 0x3E, 0x1FE):
        program = sandbox.seccomp_filter(opts, arch)
        counts = [sandbox.bpf_run(program, nr, arch)[1] for nr in range(1024)]
        assert sum(counts) / len(counts) < 16
        assert max(counts) <= 32


LIBSECCOMP_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench",
                                 "libseccomp_filter.py")


def libseccomp_programs(jobs):
    """libseccomp's exported BPF for each (arches, rules, default action),
    from its Python binding under /usr/bin/python3 (python3-seccomp; .ci/run
    installs it): the reference computed by other code than ours."""
    payload = [{"arches": arches, "default": default,
                "rules": [[r.syscall, r.action, [list(a) for a in r.args]] for r in rules]}
               for arches, rules, default in jobs]
    cp = subprocess.run([SYSTEM_PYTHON, LIBSECCOMP_SCRIPT], input=json.dumps(payload),
                        capture_output=True, text=True, timeout=300)
    assert cp.returncode == 0, "libseccomp's binding for %s: %s" % (SYSTEM_PYTHON, cp.stderr)
    return [(bytes.fromhex(r["program"]), r["refused"]) for r in json.loads(cp.stdout)["results"]]


def test_filter_is_shorter_and_at_least_twice_as_quick_as_libseccomps():
    cases = [(arch, opts) for arch in ARCHES for opts in (0, 0x1E, 0x3E, 0x1FE)]
    jobs = [([arch] + ([sandbox._COMPAT_ARCH[arch]] if opts & 32 and arch in sandbox._COMPAT_ARCH else []),
             sandbox.seccomp_rules(opts), ALLOW) for arch, opts in cases]
    for (arch, opts), (theirs, refused) in zip(cases, libseccomp_programs(jobs)):
        assert refused == []
        ours = sandbox.seccomp_filter(opts, arch)
        mean = lambda p: sum(sandbox.bpf_run(p, nr, arch)[1] for nr in range(1024)) / 1024
        assert len(ours) <= len(theirs), (arch, hex(opts), len(ours) // 8, len(theirs) // 8)
        assert mean(ours) < mean(theirs) / 2, (arch, hex(opts), mean(ours), mean(theirs))


def test_long_jumps_get_trampolines():
    rules = [sandbox.Rule("personality", sandbox.SECCOMP_RET_ERRNO | n,
                          sandbox.Arg(0, sandbox.CMP_EQ, n)) for n in range(1, 400)]
    program = sandbox.seccomp_filter(0, "x86_64", rules=rules)
    for n in (1, 200, 399):
        assert sandbox.bpf_run(program, 135, "x86_64", [n])[0] == sandbox.SECCOMP_RET_ERRNO | n
    assert sandbox.bpf_run(program, 135, "x86_64", [400])[0] == ALLOW
    assert sandbox.bpf_run(program, 135, "x86_64", [1 << 32 | 5])[0] == ALLOW


def test_user_rules_with_several_argument_tests():
    C = sandbox
    rules = [C.Rule("ioctl", EPERM, C.Arg(0, C.CMP_GT, 5), C.Arg(1, C.CMP_LE, 1 << 40)),
             C.Rule("ioctl", ENOSYS, C.Arg(0, C.CMP_LT, 3)),
             C.Rule("ioctl", EAFNO, C.Arg(2, C.CMP_MASKED_EQ, 0x30, 0xF0))]
    for arch in ("x86_64", "i386"):
        program = sandbox.seccomp_filter(0, arch, rules=rules)
        nr = sandbox.SYSCALLS[arch]["ioctl"]
        run = lambda *a: sandbox.bpf_run(program, nr, arch, a)[0]
        # i386: libseccomp compares the low halves, so "<= 1 << 40" is "<= 0"
        assert run(6, 7) == (EPERM if arch == "x86_64" else ALLOW)
        assert run(6, 0) == EPERM
        assert run(2, 7) == ENOSYS
        assert run(4, 0, 0x35) == EAFNO
        assert run(4, 0, 0x45) == ALLOW
        if arch == "x86_64":
            assert run(6, (1 << 40) + 1) == ALLOW
            assert run(1 << 33, 1) == EPERM


# -- user rules against libseccomp --------------------------------------------

# libseccomp rewrites rules on these for i386 into socketcall/ipc rules (SPEC 4
# does not copy that): on i386 they are left out of the comparison.
I386_MULTIPLEXED_NAMES = set("""socketcall ipc socket bind connect listen accept getsockname
    getpeername socketpair send recv sendto recvfrom shutdown setsockopt getsockopt sendmsg
    recvmsg accept4 recvmmsg sendmmsg semop semget semctl semtimedop msgsnd msgrcv msgget
    msgctl shmat shmdt shmget shmctl""".split())
I386_MULTIPLEXED = {sandbox.SYSCALLS["i386"][n] for n in I386_MULTIPLEXED_NAMES
                    if n in sandbox.SYSCALLS["i386"]}
SENTINEL = 0x7FF01234      # SCMP_ACT_TRACE(0x1234): libseccomp's default, read as allow
EDGE_VALUES = [0, 1, 2, 3, 5, 16, 17, 29, 40, 0x5412, 0x10000000, 0x7FFFFFFF, 0x80000000,
               0xFFFFFFFE, 0xFFFFFFFF, 1 << 32, (1 << 32) | 1, (1 << 32) | 0x5412, 1 << 40,
               2**63, 2**64 - 2, 2**64 - 1]


def libseccomp_accumulator_confused(program):
    """True when libseccomp 2.5.4's code generator compares an accumulator
    that another path loaded from another argument (a known defect of its
    block sharing): such a program decides by accident, not by its rules."""
    code = list(struct.iter_unpack("<HBBI", program))
    incoming = [set() for _ in code]
    incoming[0].add(None)
    for pc, (op, jt, jf, k) in enumerate(code):
        states = incoming[pc]
        if not states or op & 7 == sandbox.BPF_RET:
            continue
        if op & 7 == sandbox.BPF_JMP:
            if op & 0xF0 == sandbox.BPF_JA:
                incoming[pc + 1 + k] |= states
                continue
            if len(states) > 1:
                return True
            incoming[pc + 1 + jt] |= states
            incoming[pc + 1 + jf] |= states
        elif op & 7 == sandbox.BPF_LD:
            incoming[pc + 1].add(("ld", op, k))
        else:
            incoming[pc + 1] |= {(state, op, k) for state in states}
    return False


def random_rule(rng, arch):
    # libseccomp 2.5.4 knows the calls up to 450 (later ones it refuses)
    names = [n for n, nr in sandbox.SYSCALLS[arch].items() if nr <= 450 and n not in I386_MULTIPLEXED_NAMES]
    name = rng.choice(["socket", "socketpair", "ioctl", "personality", "clone", "ptrace",
                       "@io-uring", "@keyring", "@swap"] + [rng.choice(names) for _ in range(6)])
    action = rng.choice(["allow", "kill", "log", "deny", "deny:ENOSYS", "deny:%d" % rng.randint(1, 4094),
                         sandbox.SECCOMP_RET_ERRNO | errno.EAFNOSUPPORT])
    args = []
    for index in rng.sample(range(6), rng.choice([0, 1, 1, 1, 2, 2, 3])):
        op = rng.choice(["eq", "ne", "lt", "le", "gt", "ge", "masked_eq"])
        value = rng.choice(EDGE_VALUES)
        mask = rng.choice([0xFFFFFFFF, 0xF0, 1 << 32 | 0xFF, 2**64 - 1, 0x10000000, 0]) if op == "masked_eq" else 0
        args.append(sandbox.Arg(index, op, value, mask))
    return sandbox.Rule(name, action, *args)


def expanded(rules):
    """The rules as seccomp_rule_add() calls: groups spelled out by name."""
    out = []
    for rule in rules:
        names = sandbox.syscall_group(rule.syscall) if rule.syscall.startswith("@") else [rule.syscall]
        out += [sandbox.Rule(name, rule.action, *rule.args) for name in names]
    return out


@functools.lru_cache(maxsize=None)
def random_rule_cases():
    """Random user rule lists (once per test run) with libseccomp's program
    for the same list added first, then the preset without the names an
    "allow" rule names; the seed is in every failure message (rerun one
    with SANDBOX_TEST_SEED=N)."""
    seed = int(os.environ.get("SANDBOX_TEST_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    cases = []
    for _ in range(160):
        arch = rng.choice(ARCHES)
        opts = rng.choice([0, 0x1E, 0x1E, 0x9E, 0x3E if arch in ("x86_64", "aarch64") else 0x1E])
        rules = [random_rule(rng, arch) for _ in range(rng.randint(1, 6))]
        arches = [arch] + ([sandbox._COMPAT_ARCH[arch]] if opts & 32 else [])
        allowed = {r.syscall for r in expanded(rules) if r.action == ALLOW}
        preset = [r for r in sandbox.seccomp_rules(opts) if r.syscall not in allowed]
        cases.append((arch, opts, tuple(rules), arches, expanded(rules) + preset))
    programs = libseccomp_programs([(c[3], c[4], SENTINEL) for c in cases])
    return seed, [(c[:4], theirs, refused) for c, (theirs, refused) in zip(cases, programs)]


def test_user_rules_decide_as_libseccomp_does():
    seed, cases = random_rule_cases()
    rng = random.Random(seed)
    compared = confused = 0
    for (arch, opts, rules, arches), theirs, refused in cases:
        if libseccomp_accumulator_confused(theirs):
            confused += 1
            continue
        ours = sandbox.seccomp_filter(opts, arch, rules=rules)
        for block in arches:
            numbers = {sandbox.SYSCALLS[block].get(n) for r in expanded(rules) for n in [r.syscall]}
            numbers |= {0, rng.randrange(1024), sandbox.SYSCALLS[block]["socket"], sandbox.SYSCALLS[block]["ioctl"]}
            if "i386" in arches:    # (with x86_64, libseccomp's transaction drops them from both)
                numbers -= {sandbox.SYSCALLS[block].get(n) for n in I386_MULTIPLEXED_NAMES}
            numbers.discard(None)
            values = sorted({v for r in rules for a in r.args for v in (a.value, a.value - 1, a.value + 1)
                             if 0 <= v < 2**64} | set(EDGE_VALUES))
            for nr in sorted(numbers):
                for _ in range(12):
                    args = [rng.choice(values) for _ in range(6)]
                    want = sandbox.bpf_run(theirs, nr, block, args)[0]
                    want = ALLOW if want == SENTINEL else want
                    got = sandbox.bpf_run(ours, nr, block, args)[0]
                    assert got == want, ("seed %d" % seed, arch, hex(opts), rules, block, nr,
                                         [hex(a) for a in args], hex(got), hex(want), refused)
                    compared += 1
    assert confused < len(cases) // 4, (seed, confused)
    assert compared > 5000


def test_rules_and_args_refuse_bad_input():
    for bad in [lambda: sandbox.Rule("no_such_call", "deny"), lambda: sandbox.Rule("@nope", "deny"),
                lambda: sandbox.Rule("ptrace", "deny:ENOTANERRNO"), lambda: sandbox.Rule("ptrace", "maybe"),
                lambda: sandbox.Rule("ptrace", "deny:0"), lambda: sandbox.Rule("ptrace", "deny:4095"),
                lambda: sandbox.Rule("ptrace", "deny", sandbox.Arg(0, "eq", 1), sandbox.Arg(0, "ne", 2)),
                lambda: sandbox.Rule("ptrace", "deny", (0, "eq", 1)), lambda: sandbox.Arg(6, "eq", 1),
                lambda: sandbox.Arg(0, "equals", 1), lambda: sandbox.Arg(0, "eq", "1"),
                lambda: sandbox.seccomp_filter(0, "x86_64", rules=["ptrace"])]:
        with pytest.raises(sandbox.SandboxError):
            bad()
    assert sandbox.Rule("ptrace", "deny:ENOSYS").action == ENOSYS
    assert sandbox.Rule("ptrace", "deny:38").action == ENOSYS
    assert sandbox.Rule("ptrace", "deny").action == EPERM
    assert sandbox.Rule("ptrace", "kill").action == KILL
    assert sandbox.Rule("ptrace", "log").action == sandbox.SECCOMP_RET_LOG
    assert sandbox.Rule("@mount", "allow").action == ALLOW
    assert sandbox.Rule("ptrace", EPERM).action == EPERM      # the seed's raw actions


def test_user_rules_come_first_and_allow_lifts_the_preset():
    program = sandbox.seccomp_filter(0x1E, "x86_64", rules=[
        sandbox.Rule("ptrace", "allow"), sandbox.Rule("getpid", "deny:ENOSYS"),
        sandbox.Rule("socket", "log", sandbox.Arg(0, "eq", 40)),
        sandbox.Rule("@io-uring", "deny:EPERM"), sandbox.Rule("syslog", "kill")])
    nr = sandbox.SYSCALLS["x86_64"]
    run = lambda name, *args: sandbox.bpf_run(program, nr[name], "x86_64", args)[0]
    assert run("ptrace", 16, 1) == ALLOW                     # the preset's EPERM lifted
    assert run("getpid") == ENOSYS
    assert run("socket", 40) == sandbox.SECCOMP_RET_LOG      # the preset's same test refused
    assert run("socket", 17) == EAFNO and run("socket", 2) == ALLOW
    assert run("io_uring_setup") == EPERM and run("io_uring_enter") == EPERM   # not ENOSYS
    assert run("syslog") == KILL                             # the first unconditional rule
    assert run("mount") == EPERM                             # the rest of the preset


def test_bad_arch_and_opts_are_refused():
    with pytest.raises(sandbox.SandboxError, match="mips"):
        sandbox.seccomp_filter(0, "mips")
    with pytest.raises(sandbox.SandboxError, match="0x400|1024"):
        sandbox.seccomp_filter(0x400, "x86_64")
    with pytest.raises(sandbox.SandboxError):
        sandbox.seccomp_filter(-1, "x86_64")


def test_disassembly_names_what_it_sees():
    text = sandbox.bpf_disasm(sandbox.seccomp_filter(0x1E, "x86_64"))
    lines = text.splitlines()
    assert len(lines) == len(sandbox.seccomp_filter(0x1E, "x86_64")) // 8
    assert lines[0].endswith("A = arch")
    assert "(x86_64)" in lines[1]
    assert any("return ERRNO(EPERM)" in line for line in lines)
    assert any("return KILL_PROCESS" in line for line in lines)
    assert any("args[0] hi" in line for line in lines)


def test_interpreter_runs_classic_bpf():
    pack = lambda op, k, jt=0, jf=0: struct.pack("<HBBI", op, jt, jf, k)
    B = sandbox
    program = b"".join([
        pack(B.BPF_LD | B.BPF_W | B.BPF_ABS, 0),            # A = nr
        pack(B.BPF_ALU | B.BPF_ADD | B.BPF_K, 5),            # A += 5
        pack(B.BPF_MISC | B.BPF_TAX, 0),                     # X = A
        pack(B.BPF_ST, 3),                                   # M[3] = A
        pack(B.BPF_LD | B.BPF_IMM, 7),                       # A = 7
        pack(B.BPF_ALU | B.BPF_MUL | B.BPF_X, 0),            # A *= X
        pack(B.BPF_JMP | B.BPF_JGT | B.BPF_K, 100, 1, 0),
        pack(B.BPF_RET | B.BPF_A, 0),                        # return A
        pack(B.BPF_LD | B.BPF_MEM, 3),                       # A = M[3]
        pack(B.BPF_RET | B.BPF_A, 0),
    ])
    assert sandbox.bpf_run(program, 2, "x86_64") == (49, 8)
    assert sandbox.bpf_run(program, 20, "x86_64") == (25, 9)
    with pytest.raises(sandbox.SandboxError):
        sandbox.bpf_run(b"\x00" * 7, 0)


def _in_child(call):
    """call() in a forked child; returns ("ok", value), ("errno", errno) for
    an OSError, or ("sandbox", message, errno) for a SandboxError."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            try:
                result = ("ok", call())
            except sandbox.SandboxError as err:
                result = ("sandbox", str(err), err.errno)
            except OSError as err:
                result = ("errno", err.errno)
            os.write(write_end, pickle.dumps(result))
        finally:
            os._exit(0)
    os.close(write_end)
    data = os.read(read_end, 65536)
    os.close(read_end)
    os.waitpid(pid, 0)
    assert data, "child died"
    return pickle.loads(data)


def _load_and_call(opts, call):
    """Load the filter for opts in a forked child, then call()."""
    return _in_child(lambda: (sandbox.seccomp_load(opts), call())[1])


libc = ctypes.CDLL(None, use_errno=True)


def raw_syscall(*args):
    # Variadic: an int goes as a C int, whose register's upper half is not
    # cleared; a long fills it.
    ret = libc.syscall(*[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    if ret < 0:
        raise OSError(ctypes.get_errno(), "syscall")
    return ret


NR = sandbox.SYSCALLS[sandbox.HOST_ARCH]


def test_kernel_applies_the_filter():
    opts = 0x1E
    assert _load_and_call(opts, lambda: raw_syscall(NR["syslog"], 3, None, 0)) == ("errno", errno.EPERM)
    assert _load_and_call(opts, lambda: socket.socket(17, socket.SOCK_RAW).close()) == ("errno", errno.EAFNOSUPPORT)
    assert _load_and_call(opts, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()) == ("ok", None)
    assert _load_and_call(opts, lambda: raw_syscall(NR["unshare"], 0x10000000)) == ("errno", errno.EPERM)
    assert _load_and_call(opts, lambda: raw_syscall(NR["clone3"], None, 0)) == ("errno", errno.ENOSYS)
    assert _load_and_call(opts, lambda: raw_syscall(NR["personality"], 0x0006)) == ("errno", errno.EPERM)
    assert _load_and_call(opts, os.getpid)[0] == "ok"
    uring = lambda: raw_syscall(NR["io_uring_setup"], 1, ctypes.create_string_buffer(120))
    assert _load_and_call(opts, uring) == ("errno", errno.ENOSYS)
    assert _load_and_call(0, lambda: os.close(uring()))[0] == "ok"
    assert _load_and_call(opts, lambda: raw_syscall(NR["bpf"], 0, None, 0)) == ("errno", errno.EPERM)
    assert _load_and_call(opts, lambda: socket.socketpair(40, socket.SOCK_STREAM)) == ("errno", errno.EAFNOSUPPORT)
    assert _in_child(lambda: socket.socketpair(40, socket.SOCK_STREAM)) == ("errno", errno.EOPNOTSUPP)
    buffers = [ctypes.create_string_buffer(b"secret"), ctypes.create_string_buffer(8)]
    iovecs = [(ctypes.c_void_p * 2)(ctypes.addressof(b), 6) for b in buffers]
    read_self = lambda: raw_syscall(NR["process_vm_readv"], os.getpid(), iovecs[1], 1, iovecs[0], 1, 0)
    assert _load_and_call(opts, read_self) == ("errno", errno.EPERM)
    assert _load_and_call(0, read_self) == ("ok", 6)


def test_kernel_denies_tiocsti_on_a_pty():
    def inject():
        master, slave = os.openpty()
        return raw_syscall(NR["ioctl"], slave, 0x5412, ctypes.c_char_p(b"x"))
    assert _load_and_call(0x1E, inject) == ("errno", errno.EPERM)
    assert _load_and_call(0, inject) == ("ok", 0)


def test_seccomp_load_reports_refusal():
    def bad():
        sandbox._prctl(sandbox.PR_SET_NO_NEW_PRIVS, 1)
        sandbox._load_filter(b"\x06\x00\x00\x00\x00\x00\x00\x00" * 5000)   # too long
    kind, message, err = _in_child(bad)
    assert kind == "sandbox" and "seccomp" in message and err == errno.EINVAL


# ---------------------------------------------------------------------------
# Pure parts of the runtime: mountinfo, operations, configuration checks.
# ---------------------------------------------------------------------------

MOUNTINFO = textwrap.dedent("""\
    22 27 0:21 / /proc rw,relatime - proc proc rw
    27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
    40 27 0:38 / /a\\040b rw,nosuid - tmpfs with\\011tab rw
    41 40 0:39 / /a\\040b/sub ro,nodev,noatime shared:3 - tmpfs t ro
    42 41 0:40 / /a\\040b/sub rw - tmpfs covering rw
    43 41 0:41 / /a\\040b/sub/hidden rw - tmpfs hidden rw
    44 42 0:42 / /a\\040b/sub/seen rw - tmpfs seen rw
    """)


def test_mountinfo_parsing_decodes_escapes_and_optional_fields():
    entries = sandbox.parse_mountinfo(MOUNTINFO)
    assert entries[2].mountpoint == "/a b"
    assert entries[2].source == "with\ttab"
    assert entries[3].fstype == "tmpfs"
    assert entries[3].options == ["ro", "nodev", "noatime"]
    assert sandbox._mount_flags(entries[3].options) == sandbox.MS_RDONLY | sandbox.MS_NODEV | sandbox.MS_NOATIME
    with pytest.raises(sandbox.SandboxError, match="mountinfo"):
        sandbox.parse_mountinfo("garbage line\n")
    # Characters the kernel leaves unescaped stay inside their line.
    odd = "45 27 0:43 / /odd\rdir rw - tmpfs fs\x1cname\u2028x rw\n"
    entry, = sandbox.parse_mountinfo(odd)
    assert (entry.mountpoint, entry.source) == ("/odd\rdir", "fs\x1cname\u2028x")


def test_mounts_under_skips_covered_mounts():
    entries = sandbox.parse_mountinfo(MOUNTINFO)
    seen = [e.source for e in sandbox.mounts_under(entries, "/a b")]
    assert seen == ["with\ttab", "covering", "seen"]
    assert [e.source for e in sandbox.mounts_under(entries, "/proc")] == ["proc"]


def test_operations_print_and_compare_like_the_seed():
    assert str(sandbox.Bind("/a", "/b", 2)) == '"/a" on "/b" flags 0x2'
    assert str(sandbox.Proc("/proc")) == 'proc on "/proc"'
    assert str(sandbox.Tmpfs("/tmp", 0, 0o755)) == 'tmpfs on "/tmp" size 0'
    assert str(sandbox.Dev("/dev")) == 'dev on "/dev"'
    assert str(sandbox.Mqueue("/mq")) == 'mqueue on "/mq"'
    assert sandbox.Bind("/a", "/b", 2) == sandbox.Bind("/a", "/b", 2)
    assert sandbox.Bind("/a", "/b", 2) != sandbox.Bind("/a", "/b", 0)
    assert sandbox.Proc("/proc") != sandbox.Dev("/proc")
    ops = sandbox.Ops().tmpfs("/tmp", 0, 0o755).bind("/usr", "/usr", 0).proc("/proc").dev("/dev")
    assert ops == [sandbox.Tmpfs("/tmp", 0, 0o755), sandbox.Bind("/usr", "/usr", 0),
                   sandbox.Proc("/proc"), sandbox.Dev("/dev")]
    handle = ops.place_p("/etc/x")
    assert ops[-1] is handle and handle.data is None


def test_container_prints_like_the_seed():
    c = sandbox.Container("ldd", "/usr/bin/env")
    c.flags |= sandbox.FAllowDevel
    c.seccomp = sandbox.FlagMultiarch
    assert str(c) == 'argv: ["ldd" "/usr/bin/env"], flags: 0x2, seccomp: 0x2e'
    assert sandbox.FAllowNet == 16 and sandbox.FlagBluetooth == 256
    assert isinstance(sandbox.FAllowNet, sandbox.HardeningFlags)


@pytest.mark.parametrize("setup,message", [
    (lambda c: None, "empty container"),
    (lambda c: c.ops.bind("relative", "/x"), "not absolute"),
    (lambda c: c.ops.tmpfs("/t", -1), "invalid size"),
    (lambda c: c.ops.tmpfs("/t", 1 << 60), "invalid size"),
    (lambda c: c.ops.tmpfs("/t", 0, 0o77777), "invalid mode"),
    (lambda c: c.ops.place("/f", "not bytes"), "must be bytes"),
    (lambda c: c.ops.bind("/a", "/b", 8), "invalid flags"),
    (lambda c: (c.ops.proc("/proc"), setattr(c, "uid", 1 << 40)), "uid"),
    (lambda c: (c.ops.proc("/proc"), setattr(c, "gid", "x")), "gid"),
    (lambda c: (c.ops.proc("/proc"), setattr(c, "uid", -1)), "uid"),
    (lambda c: (c.ops.proc("/proc"), setattr(c, "path", "bin/true")), "invalid executable path"),
    (lambda c: (c.ops.proc("/proc"), setattr(c, "hostname", "x" * 65)), "hostname"),
    (lambda c: (c.ops.proc("/proc"), setattr(c, "hostname", "\u00e9" * 33)), "longer than 64"),
    (lambda c: (c.ops.proc("/proc"), setattr(c, "hostname", "\udcff")), "not valid UTF-8"),
    (lambda c: (c.ops.proc("/proc"), setattr(c, "uid", -1)), "uid: invalid id -1"),
    (lambda c: (c.ops.proc("/proc"), setattr(c, "gid", -7)), "gid: invalid id -7"),
    (lambda c: (c.ops.proc("/proc"), setattr(c, "uid", 1.0)), "uid: invalid id 1.0"),
    (lambda c: (c.ops.proc("/proc"), setattr(c, "dir", "tmp")), "not absolute"),
    (lambda c: (c.ops.proc("/proc"), setattr(c, "seccomp", 1 << 12)), "syscall options"),
])
def test_bad_input_is_refused_before_anything_starts(setup, message):
    c = sandbox.Container("/bin/true")
    setup(c)
    with pytest.raises(sandbox.SandboxError, match=message) as info:
        c.start()
    assert info.value.errno


def test_bad_hostname_and_ids_are_refused_by_run():
    for kwargs, message in (({"hostname": "\udcff"}, "not valid UTF-8"),
                            ({"hostname": "h" * 65}, "longer than 64"),
                            ({"uid": -2}, "uid: invalid id"), ({"gid": -1}, "gid: invalid id"),
                            ({"gid": "0"}, "gid: invalid id")):
        with pytest.raises(sandbox.SandboxError, match=message):
            sandbox.run(["/bin/true"], **kwargs)


def test_op_errors_name_the_operation_and_its_index():
    c = sandbox.Container("/bin/true", ops=sandbox.Ops().proc("/proc").tmpfs("/t", -5))
    with pytest.raises(sandbox.SandboxError, match=r'tmpfs on "/t" size -5: invalid size \(op 1\)'):
        c.start()


# ---------------------------------------------------------------------------
# Containers, for real.
# ---------------------------------------------------------------------------

def test_identity_and_hostname(as_user):
    def body():
        out = sh("id -u; id -g; hostname; cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups",
                 uid=1000, gid=100, hostname="box")
        lines = out.split("\n")
        assert lines[:3] == ["1000", "100", "box"]
        host_uid, host_gid = (os.geteuid(), os.getegid()) if os.geteuid() else (NOBODY, NOBODY)
        assert lines[3].split() == ["1000", str(host_uid), "1"]
        assert lines[4].split() == ["100", str(host_gid), "1"]
        assert lines[5] == "deny"
        out = sh("id -u; id -g")
        assert out.split() == ["65534", "65534"]
        # None (the default) is the overflow id; 0 is 0.
        assert sh("id -u; id -g", uid=None, gid=None).split() == ["65534", "65534"]
        assert sh("id -u; id -g", uid=0, gid=0).split() == ["0", "0"]
        c = sandbox.Container("/bin/true")
        assert (c.uid, c.gid) == (None, None)
    as_user(body)


def test_hardening_in_proc_status(as_user):
    def body():
        status = sh("cat /proc/self/status")
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(fields[cap], 16) == 0, cap
        assert fields["NoNewPrivs"].strip() == "1"
        assert fields["Seccomp"].strip() == "2"
    as_user(body)


def test_privileged_keeps_only_cap_sys_admin(as_user):
    def body():
        status = sh("cat /proc/self/status", privileged=True)
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        for cap in ("CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(fields[cap], 16) == 1 << 21, cap
    as_user(body)


# -- identity on the host (issue 10 item 1): a root caller's sandbox holds
# the overflow ids on the host, never host root unless asked.

def _needs_root():
    if os.geteuid() != 0:
        pytest.skip("what a root caller's sandbox holds on the host needs a root caller")


def test_a_root_callers_sandbox_cannot_use_host_root_files():
    """core_pattern (a route to code run as host root) cannot be opened for
    writing, /etc/shadow cannot be read, the host's /dev/null cannot be
    chmodded: the command is uid 65534 to every host file it sees."""
    _needs_root()
    mode = os.stat("/dev/null").st_mode
    try:
        out = sh("(exec 3>>/proc/sys/kernel/core_pattern) 2>/dev/null && echo opened-core-pattern; "
                 "cat /etc/shadow >/dev/null 2>&1 && echo read-shadow; "
                 "chmod 600 /dev/null 2>/dev/null && echo chmodded-null; "
                 "(exec 3>>/proc/sysrq-trigger) 2>/dev/null && echo opened-sysrq; echo done")
        assert out == "done\n"
    finally:
        if os.stat("/dev/null").st_mode != mode:
            os.chmod("/dev/null", stat.S_IMODE(mode))
    assert os.stat("/dev/null").st_mode == mode


def test_a_root_callers_sandbox_cannot_chmod_a_bound_host_device():
    _needs_root()
    top = tempfile.mkdtemp(prefix="sandbox-devnode-")
    os.chmod(top, 0o755)
    node = os.path.join(top, "null")
    os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.chmod(node, 0o666)
    try:
        ops = sandbox.default_ops().bind(top, "/d", sandbox.BindWritable | sandbox.BindDevice)
        out = sh("echo x > /d/null && echo used; chmod 600 /d/null 2>/dev/null || echo refused",
                 ops=ops)
        assert out == "used\nrefused\n"
        assert stat.S_IMODE(os.stat(node).st_mode) == 0o666
    finally:
        subprocess.run(["rm", "-rf", top])


def _status(pid):
    with open("/proc/%d/status" % pid) as f:
        return dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)


def test_a_root_callers_sandbox_runs_as_a_non_root_host_uid():
    """Seen from the host while it runs: init and the command have real
    (and every other) uid 65534, and no supplementary group."""
    _needs_root()
    c = running_sleeper()
    try:
        children = ""
        for _ in range(500):
            with open("/proc/%d/task/%d/children" % (c.pid, c.pid)) as f:
                children = f.read().split()
            if children:
                break
            time.sleep(0.01)
        command = int(children[0])
        for pid in (c.pid, command):
            fields = _status(pid)
            assert fields["Uid"].split() == [str(NOBODY)] * 4, (pid, fields["Uid"])
            assert fields["Gid"].split() == [str(NOBODY)] * 4, (pid, fields["Gid"])
            assert fields["Groups"].split() == [], (pid, fields["Groups"])
    finally:
        c.kill()
        c.wait()
        c.close()


def test_a_root_callers_writable_bind_is_idmapped():
    """A root-owned directory (0700) bound writable: the command writes
    there, and what it creates is root's on the host."""
    _needs_root()
    top = tempfile.mkdtemp(prefix="sandbox-idmap-")
    with open(os.path.join(top, "old"), "w") as f:
        f.write("old\n")
    os.chmod(os.path.join(top, "old"), 0o600)
    try:
        ops = sandbox.default_ops().bind(top, "/w", sandbox.BindWritable)
        out = sh("cat /w/old; echo new > /w/new; mkdir /w/dir; stat -c '%u %g' /w/old /w/new",
                 ops=ops)
        assert out == "old\n65534 65534\n65534 65534\n"
        for name in ("new", "dir"):
            st = os.stat(os.path.join(top, name))
            assert (st.st_uid, st.st_gid) == (0, 0), name
        mounts = mountinfo_inside(ops)
        assert "idmapped" in mounts["/w"].options
        assert {"nosuid", "nodev"} <= set(mounts["/w"].options)
    finally:
        subprocess.run(["rm", "-rf", top])


SETUID_PROBE = r"""
import os, stat, sys
made = []
def attempt(name, call):
    try:
        call()
        made.append(name)
    except OSError as err:
        print(name, err.errno)
open("/w/f", "w").close()
attempt("chmod u+s", lambda: os.chmod("/w/f", 0o4755))
attempt("chmod g+s", lambda: os.chmod("/w/f", 0o2755))
fd = os.open("/w/f", os.O_RDONLY)
attempt("fchmod u+s", lambda: os.fchmod(fd, 0o4755))
attempt("chmodat u+s", lambda: os.chmod("f", 0o4755, dir_fd=os.open("/w", os.O_RDONLY)))
attempt("open u+s", lambda: os.close(os.open("/w/g", os.O_CREAT | os.O_WRONLY, 0o4755)))
attempt("mknod u+s", lambda: os.mknod("/w/h", 0o4644 | stat.S_IFREG))
attempt("chmod 0755", lambda: os.chmod("/w/f", 0o755))
print("made", " ".join(made))
"""


def test_a_root_callers_writable_bind_takes_no_setuid_or_setgid_file():
    """What the command makes in a root caller's writable bind is root's on
    the host: a setuid or setgid bit there would make it a way to host
    root (or its group) for whoever runs it.  Setting one is refused."""
    _needs_root()
    top = tempfile.mkdtemp(prefix="sandbox-setuid-")
    try:
        ops = sandbox.default_ops().bind(top, "/w", sandbox.BindWritable)
        out = run_ok(["/usr/bin/python3", "-c", SETUID_PROBE], ops=ops)
        assert out.splitlines()[-1] == "made chmod 0755", out
        for name in os.listdir(top):
            mode = os.lstat(os.path.join(top, name)).st_mode
            assert not mode & (stat.S_ISUID | stat.S_ISGID), (name, oct(mode), out)
        # The sandbox holding the caller's own ids (host_uid=0 for root, or an
        # unprivileged caller) makes files that are its own: nothing refused.
        out = run_ok(["/usr/bin/python3", "-c", SETUID_PROBE], ops=ops, host_uid=0)
        assert out.splitlines()[-1].split()[1:] == [
            "chmod", "u+s", "chmod", "g+s", "fchmod", "u+s", "chmodat", "u+s", "open", "u+s",
            "mknod", "u+s", "chmod", "0755"], out
    finally:
        subprocess.run(["rm", "-rf", top])


def test_a_root_caller_binds_what_only_root_can_reach():
    """A directory below a root-owned 0700 directory: the sandbox's host
    uid cannot reach it by path, the caller opens it."""
    _needs_root()
    top = tempfile.mkdtemp(prefix="sandbox-closed-")
    inner = os.path.join(top, "inner")
    os.mkdir(inner)
    os.chmod(inner, 0o755)
    with open(os.path.join(inner, "f"), "w") as f:
        f.write("reached\n")
    try:
        ops = sandbox.default_ops().bind(inner, "/i").bind(top + "/none", "/n", sandbox.BindOptional)
        assert sh("cat /i/f; touch /i/x 2>&1; test -e /n || echo no-n", ops=ops) == \
            "reached\ntouch: cannot touch '/i/x': Read-only file system\nno-n\n"
        with pytest.raises(sandbox.SandboxError, match=r'bind ".*/missing" on "/m": No such file or directory \(op \d+\)'):
            sandbox.run(["/bin/true"], ops=sandbox.default_ops().bind(top + "/missing", "/m"))
    finally:
        subprocess.run(["rm", "-rf", top])


def test_a_root_caller_may_ask_for_host_root_or_other_host_ids():
    _needs_root()
    assert sh("cat /etc/shadow >/dev/null && echo read", host_uid=0) == "read\n"
    assert sh("cat /proc/self/uid_map /proc/self/gid_map", host_uid=0).split() == \
        ["65534", "0", "1", "65534", "0", "1"]
    assert sh("cat /proc/self/uid_map /proc/self/gid_map", uid=0, host_uid=4321, host_gid=0).split() == \
        ["0", "4321", "1", "65534", "0", "1"]
    top = tempfile.mkdtemp(prefix="sandbox-hostroot-")
    try:
        sh("touch /w/made", host_uid=0, ops=sandbox.default_ops().bind(top, "/w", sandbox.BindWritable))
        assert os.stat(os.path.join(top, "made")).st_uid == 0
    finally:
        subprocess.run(["rm", "-rf", top])


def test_an_unprivileged_caller_cannot_ask_for_other_host_ids(as_user):
    def body():
        if os.geteuid() == 0:
            return
        assert sh("cat /proc/self/uid_map", host_uid=os.geteuid()).split() == \
            ["65534", str(os.geteuid()), "1"]
        for ids in ({"host_uid": 0}, {"host_gid": 0}, {"host_uid": 1, "host_gid": 1}):
            with pytest.raises(sandbox.SandboxError, match="host_uid/host_gid") as info:
                sandbox.run(["/bin/true"], **ids)
            assert info.value.errno == errno.EPERM
    as_user(body)


def test_what_operations_make_and_the_pipes_given_are_the_commands(as_user):
    """Directories made by the operations belong to the command (Landlock,
    when on, keeps --dir scaffold); pipes the caller gives may be reopened
    by path (/dev/stdout), a root caller's too."""
    def body():
        out = sh("echo w > /work/f && cat /work/f; stat -c %u /work; echo e > /dev/stderr; "
                 "echo o > /dev/stdout", ops=sandbox.default_ops().mkdir("/work"), landlock="off")
        assert out == "w\n65534\no\n"
        cp = sandbox.run(["/bin/sh", "-c", "echo e > /dev/stderr"], env=ENV, capture_output=True)
        assert (cp.returncode, cp.stderr) == (0, b"e\n"), cp
    as_user(body)


def test_a_writable_bind_that_cannot_be_idmapped_names_the_remedy():
    """ramfs has no idmapped mounts: a root caller's writable bind of it
    fails, naming the path and the remedy, unless the sandbox's host uid
    may write there as it is."""
    _needs_root()
    top = tempfile.mkdtemp(prefix="sandbox-ramfs-")
    subprocess.run(["mount", "-t", "ramfs", "-o", "mode=0755", "ramfstest", top], check=True)
    try:
        ops = sandbox.default_ops().bind(top, "/r", sandbox.BindWritable)
        with pytest.raises(sandbox.SandboxError) as info:
            sandbox.run(["/bin/true"], ops=ops)
        message = str(info.value)
        assert top in message and "host_uid=0" in message and "idmapped" in message, message
        assert info.value.errno == errno.EINVAL
        os.chmod(top, 0o1777)
        sh("touch /r/made", ops=ops)
        assert os.stat(os.path.join(top, "made")).st_uid == NOBODY
        sh("touch /r/root-made", ops=ops, host_uid=0)
        assert os.stat(os.path.join(top, "root-made")).st_uid == 0
    finally:
        subprocess.run(["umount", top], check=True)
        os.rmdir(top)


def test_only_what_the_operations_made_stays_mounted(as_user):
    """The host's root and the intermediate root setup passed through are
    detached: one root, and every other mount at or under a target of the
    operations; both from a spare (its root built ahead) and cloned for the
    request (uid 0: a shell no spare has)."""
    def body():
        ops = sandbox.default_ops()
        made = [op.dest if hasattr(op, "dest") else op.target
                for op in ops if not isinstance(op, sandbox.Link)]
        for ids in ({}, {"uid": 0, "gid": 0}):
            text = run_ok(["/bin/cat", "/proc/self/mountinfo"], ops=ops, **ids)
            mountpoints = [e.mountpoint for e in sandbox.parse_mountinfo(text)]
            assert mountpoints.count("/") == 1, text
            assert all(any(m == t or m.startswith(t + "/") for t in made)
                       for m in mountpoints if m != "/"), text
    as_user(body)


def test_each_operation_as_seen_in_mountinfo(as_user):
    def body():
        ops = sandbox.default_ops().mqueue("/dev/mqueue").tmpfs("/scratch", 1 << 20, 0o700) \
            .mkdir("/made", 0o711).link("/usr/bin", "/ub").place("/etc/hostname", b"hello").place("/new/placed", b"x")
        ops.bind("/usr", "/rw-usr", sandbox.BindWritable | sandbox.BindOptional)
        mounts = mountinfo_inside(ops)
        assert mounts["/"].fstype == "tmpfs"
        assert "ro" in mounts["/usr"].options and "nosuid" in mounts["/usr"].options
        assert "nodev" in mounts["/usr"].options
        assert "rw" in mounts["/rw-usr"].options and "nosuid" in mounts["/rw-usr"].options
        proc = mounts["/proc"]
        assert proc.fstype == "proc" and {"nosuid", "nodev", "noexec"} <= set(proc.options)
        mq = mounts["/dev/mqueue"]
        assert mq.fstype == "mqueue" and {"nosuid", "nodev", "noexec"} <= set(mq.options)
        tmp = mounts["/scratch"]
        assert tmp.fstype == "tmpfs" and {"nosuid", "nodev"} <= set(tmp.options)
        assert "size=1024k" in tmp.super_options and "mode=700" in tmp.super_options
        assert mounts["/dev"].source == "devtmpfs" and mounts["/dev"].fstype == "tmpfs"
        assert mounts["/dev/pts"].fstype == "devpts"
        assert "ptmxmode=666" in mounts["/dev/pts"].super_options
        assert "ro" in mounts["/etc/hostname"].options and "nodev" in mounts["/etc/hostname"].options
        assert "ro" in mounts["/new/placed"].options
        out = sh("cat /etc/hostname; echo; stat -c %a /made; readlink /ub; ls /",
                 ops=ops)
        lines = out.split("\n")
        assert lines[0] == "hello"
        assert lines[1] == "711"
        assert lines[2] == "/usr/bin"
        assert {"made", "ub", "new", "scratch", "rw-usr"} <= set(lines[3:])
    as_user(body)


def test_a_bind_with_nothing_mounted_under_it_gets_its_flags(as_user):
    """Without submounts a bind is remounted alone (no mountinfo read):
    still nosuid and nodev, and ro unless writable."""
    def body():
        top = tempfile.mkdtemp(prefix="sandbox-plain-")
        os.chmod(top, 0o755)     # (a root caller's sandbox is uid 65534 on the host)
        try:
            ops = sandbox.default_ops().bind(top, "/ro").bind(top, "/rw", sandbox.BindWritable)
            mounts = mountinfo_inside(ops)
            assert {"ro", "nosuid", "nodev"} <= set(mounts["/ro"].options)
            assert {"rw", "nosuid", "nodev"} <= set(mounts["/rw"].options)
            out = sh("touch /ro/x 2>&1; touch /rw/y && echo wrote", ops=ops)
            assert "Read-only file system" in out and "wrote" in out
            assert os.listdir(top) == ["y"]
        finally:
            subprocess.run(["rm", "-rf", top])
    as_user(body)


def test_new_mount_api_wrappers(as_user):
    """_open_tree, _mount_setattr and _move_mount, in a user and mount
    namespace of their own: a detached copy of a directory, made read-only,
    attached elsewhere."""
    def body():
        top = tempfile.mkdtemp(prefix="sandbox-api-")
        try:
            def inside():
                uid, gid = os.geteuid(), os.getegid()
                assert sandbox._libc.unshare(sandbox.CLONE_NEWUSER | sandbox.CLONE_NEWNS) == 0
                sandbox._map_identity(uid, gid, uid, gid)
                assert sandbox._libc.mount(None, b"/", None, sandbox.MS_REC | sandbox.MS_PRIVATE, None) == 0
                os.mkdir(top + "/a")
                os.mkdir(top + "/b")
                fd = sandbox._open_tree(top + "/a", sandbox.OPEN_TREE_CLONE | sandbox.OPEN_TREE_CLOEXEC
                                        | sandbox.AT_RECURSIVE, "open_tree")
                sandbox._mount_setattr("", sandbox.AT_EMPTY_PATH | sandbox.AT_RECURSIVE, "setattr",
                                       attr_set=sandbox.MOUNT_ATTR_RDONLY, dir_fd=fd)
                sandbox._move_mount(fd, top + "/b", "move_mount")
                os.close(fd)
                with pytest.raises(OSError) as info:
                    open(top + "/b/x", "w")
                assert info.value.errno == errno.EROFS
                with pytest.raises(sandbox.SandboxError, match="open_tree") as info:
                    sandbox._open_tree(top + "/missing", sandbox.OPEN_TREE_CLONE, "open_tree")
                assert info.value.errno == errno.ENOENT
            _run_forked(inside, drop=False)
        finally:
            subprocess.run(["rm", "-rf", top])
    as_user(body)


def test_a_bind_thought_alone_falls_back_to_recursive_when_it_is_not():
    """Between reading the host's mount table and binding, something may
    be mounted under the source.  Binding it alone then fails (the new
    mount is locked in a user namespace) and the bind is made recursively,
    its submount read-only too.  Shown with _bind_mount called as if the
    source had nothing under it, in a user and mount namespace of its own."""
    if os.geteuid() != 0:
        pytest.skip("creating a host submount needs root")
    top = tempfile.mkdtemp(prefix="sandbox-alone-")
    target = tempfile.mkdtemp(prefix="sandbox-alone-target-")
    os.mkdir(os.path.join(top, "sub"))
    subprocess.run(["mount", "-t", "tmpfs", "subtest", os.path.join(top, "sub")], check=True)
    try:
        def body():
            assert sandbox._libc.unshare(sandbox.CLONE_NEWUSER | sandbox.CLONE_NEWNS) == 0
            sandbox._map_identity(0, 0, 0, 0)
            assert sandbox._libc.mount(None, b"/", None, sandbox.MS_REC | sandbox.MS_PRIVATE, None) == 0
            assert sandbox._libc.mount(b"tmpfs", target.encode(), b"tmpfs", 0, None) == 0
            os.mkdir(target + "/t")
            sandbox._bind_mount(top, target + "/t", 0, "test bind", alone=True)
            with open("/proc/self/mountinfo") as f:
                mounts = {e.mountpoint: e for e in sandbox.parse_mountinfo(f.read())}
            assert "ro" in mounts[target + "/t"].options
            assert "ro" in mounts[target + "/t/sub"].options
        _run_forked(body, drop=False)
    finally:
        subprocess.run(["umount", os.path.join(top, "sub")], check=True)
        subprocess.run(["rm", "-rf", top, target], check=True)


def test_an_oddly_named_host_mount_breaks_nothing():
    """A mount whose source name holds characters mountinfo does not escape
    (a FUSE user can choose it): sandboxes still start."""
    if os.geteuid() != 0:
        pytest.skip("mounting on the host needs root")
    directory = tempfile.mkdtemp(prefix="sandbox-odd-")
    subprocess.run(["mount", "-t", "tmpfs", "fs\x1cname\rx", directory], check=True)
    try:
        def body():
            assert run_ok(["/bin/echo", "ran"]) == "ran\n"
            ops = sandbox.default_ops().bind(directory, "/odd")
            assert run_ok(["/bin/ls", "-a", "/odd"], ops=ops) == ".\n..\n"
        body()
        _run_forked(body, drop=True)
    finally:
        subprocess.run(["umount", directory], check=True)
        os.rmdir(directory)


def test_host_mounts_made_after_setup_do_not_appear_inside():
    """A bound directory that is a shared mount on the host: a mount made
    under it later would propagate into the sandbox, writable under a
    read-only bind, if the binds stayed its slaves."""
    if os.geteuid() != 0:
        pytest.skip("making a shared mount on the host needs root")
    source = tempfile.mkdtemp(prefix="sandbox-shared-")
    later = os.path.join(source, "sub")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "shared-src", source], check=True)
    subprocess.run(["mount", "--make-shared", source], check=True)
    os.mkdir(later)

    def scenario(mount_later):
        go_r, go_w = os.pipe()
        out_r, out_w = os.pipe()
        c = sandbox.Container("/bin/sh", "-c", "read go <&3; grep ' /data/sub ' /proc/self/mountinfo;"
                              " touch /data/sub/x 2>&1; true",
                              ops=sandbox.default_ops().bind(source, "/data"))
        c.env, c.extra_files, c.stdout, c.stderr = ENV, [go_r], out_w, out_w
        c.start()
        c.serve()
        os.close(go_r)
        os.close(out_w)
        mount_later()
        os.write(go_w, b"go\n")
        os.close(go_w)
        assert c.wait(timeout=30) == 0
        output = sandbox._read_all(out_r).decode()
        assert output.startswith("touch:") and "Read-only file system" in output, output

    def mount():
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=1777", "later", later], check=True)
    try:
        scenario(mount)
        subprocess.run(["umount", later], check=True)
        # The same for a container of uid 65534, the mount still made by root.
        asked_r, asked_w = os.pipe()
        done_r, done_w = os.pipe()

        def mount_when_asked():
            if os.read(asked_r, 1):
                mount()
                os.write(done_w, b"x")
        mounter = threading.Thread(target=mount_when_asked)
        mounter.start()

        def ask():
            os.write(asked_w, b"x")
            assert os.read(done_r, 1) == b"x"
        try:
            _run_forked(lambda: scenario(ask), drop=True)
        finally:
            os.close(asked_w)
            mounter.join()
            for fd in (asked_r, done_r, done_w):
                os.close(fd)
    finally:
        subprocess.run(["umount", "-R", source], check=True)
        os.rmdir(source)


def test_binds_keep_nosymfollow():
    """nosymfollow is not locked in a user namespace, so a remount that
    left it out would drop it silently; both ways of binding keep it."""
    if os.geteuid() != 0:
        pytest.skip("mounting on the host needs root")
    top = tempfile.mkdtemp(prefix="sandbox-nosymfollow-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "nosymfollow,mode=0755", "nsf", top], check=True)
    os.mkdir(os.path.join(top, "sub"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "nosymfollow,mode=0755", "nsf-sub",
                    os.path.join(top, "sub")], check=True)
    try:
        def body():
            ops = sandbox.default_ops().bind(top, "/all").bind(os.path.join(top, "sub"), "/alone")
            mounts = mountinfo_inside(ops)
            for path in ("/all", "/all/sub", "/alone"):
                assert "nosymfollow" in mounts[path].options, (path, mounts[path])
        body()
        _run_forked(body, drop=True)
    finally:
        subprocess.run(["umount", "-R", top], check=True)
        os.rmdir(top)


def test_read_only_binds_hold_including_submounts():
    # A submount of a bound directory must come out read-only too; making
    # one needs root on the host, so this test builds it and cleans up.
    # The target has a space and a backslash, which mountinfo escapes.
    if os.geteuid() != 0:
        pytest.skip("creating a host submount needs root")
    top = tempfile.mkdtemp(prefix="sandbox-sub-")
    os.chmod(top, 0o755)
    sub = os.path.join(top, "sub")
    os.mkdir(sub)
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0777", "subtest", sub], check=True)
        try:
            def body():
                ops = sandbox.default_ops().bind(top, "/da ta\\", 0)
                mounts = mountinfo_inside(ops)
                assert "ro" in mounts["/da ta\\"].options
                assert "ro" in mounts["/da ta\\/sub"].options, mounts["/da ta\\/sub"]
                name = "y%d" % os.getuid()
                out = sh("touch '/da ta\\/x' 2>&1; touch '/da ta\\/sub/%s' 2>&1; echo done" % name,
                         ops=ops)
                assert out.count("Read-only file system") == 2, out
                ops = sandbox.default_ops().bind(top, "/da ta\\", sandbox.BindWritable)
                sh("touch '/da ta\\/sub/%s'" % name, ops=ops)
                assert os.path.exists(os.path.join(sub, name))
            body()
            _run_forked(body, drop=True)
        finally:
            subprocess.run(["umount", sub], check=True)
    finally:
        subprocess.run(["rm", "-rf", top], check=True)


def _submount_below_a_closed_directory():
    """/tmp/X (0755) holding a root-owned 0700 directory with a tmpfs
    (mode 0777) mounted in it: a tree an unprivileged caller may bind,
    whose submount its setup cannot reach by path.  Returns (top, closed,
    sub, cleanup)."""
    top = tempfile.mkdtemp(prefix="sandbox-closed-")
    os.chmod(top, 0o755)
    closed = os.path.join(top, "closed")
    sub = os.path.join(closed, "sub")
    os.makedirs(sub)
    os.chmod(closed, 0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0777", "closedtest", sub], check=True)

    def cleanup():
        subprocess.run(["umount", sub], check=True)
        subprocess.run(["rm", "-rf", top], check=True)
    return top, closed, sub, cleanup


def test_read_only_bind_fails_closed_below_a_directory_setup_cannot_enter():
    """Issue 10 item 5.  Setup cannot remount by path a submount below a
    0700 directory it may not search (EACCES); that submount stayed
    writable.  The directory opens later (the host chmods it): writing
    into the submount through the read-only bind must fail."""
    if os.geteuid() != 0:
        pytest.skip("creating a host submount needs root")
    top, closed, sub, cleanup = _submount_below_a_closed_directory()
    asked, answer = os.pipe(), os.pipe()
    try:
        def body():
            script = ("while ! cd /x/closed/sub 2>/dev/null; do sleep 0.02; done; "
                      "touch /x/closed/sub/written 2>&1; echo done")
            c = sandbox.Container("/bin/sh", "-c", script, ops=sandbox.default_ops().bind(top, "/x"))
            c.env = ENV
            read_end, write_end = os.pipe()
            c.stdout = write_end
            c.start()
            try:
                c.serve()
            finally:
                os.close(write_end)
            # The sandbox runs: the parent (root) opens the directory.
            os.write(asked[1], b"o")
            assert os.read(answer[0], 1) == b"k"
            with open(read_end, "rb") as out:
                text = out.read().decode()
            assert c.wait(timeout=60) == 0
            assert "Read-only file system" in text, text
            assert not os.path.exists(os.path.join(sub, "written"))

        opener = threading.Thread(target=lambda: (os.read(asked[0], 1), os.chmod(closed, 0o755),
                                                  os.write(answer[1], b"k")), daemon=True)
        opener.start()
        _run_forked(body, drop=True)
        opener.join()
    finally:
        _close_fds(asked + answer)
        cleanup()


def _close_fds(fds):
    for fd in fds:
        os.close(fd)


def test_read_only_bind_fails_without_mount_setattr_when_a_submount_is_out_of_reach():
    """Issue 10 item 5, on a kernel without mount_setattr (ENOSYS, given by
    a seccomp filter the helper and its sandboxes inherit): each mount is
    remounted by path, and the submount setup cannot reach fails the bind
    with a clear error instead of staying writable."""
    if os.geteuid() != 0:
        pytest.skip("creating a host submount needs root")
    top, closed, sub, cleanup = _submount_below_a_closed_directory()
    try:
        def body():
            # ld [nr]; jeq mount_setattr; ret ERRNO(ENOSYS); ret ALLOW
            program = struct.pack("<HBBI", 0x20, 0, 0, 0) + \
                struct.pack("<HBBI", 0x15, 0, 1, sandbox.SYS_mount_setattr) + \
                struct.pack("<HBBI", 0x06, 0, 0, sandbox.SECCOMP_RET_ERRNO | errno.ENOSYS) + \
                struct.pack("<HBBI", 0x06, 0, 0, sandbox.SECCOMP_RET_ALLOW)
            sandbox._prctl(sandbox.PR_SET_NO_NEW_PRIVS, 1)
            sandbox._load_filter(program)
            assert run_ok(["/bin/true"], ops=sandbox.default_ops().bind("/usr", "/u")) == ""
            with pytest.raises(sandbox.SandboxError) as info:
                sandbox.run(["/bin/true"], ops=sandbox.default_ops().bind(top, "/x"))
            assert info.value.errno == errno.EACCES
            assert "remounting \"/x/closed/sub\"" in str(info.value), str(info.value)
        _run_forked(body, drop=True)
    finally:
        cleanup()


def test_dev_contents(as_user):
    def body():
        out = sh("ls -A /dev; echo x > /dev/null && echo null-ok; head -c 4 /dev/zero | od -An -tx1; readlink /dev/fd /dev/ptmx")
        names = set(out.split())
        for name in ("null", "zero", "full", "random", "urandom", "tty", "stdin", "stdout",
                     "stderr", "fd", "core", "ptmx", "shm", "pts", "null-ok", "/proc/self/fd", "pts/ptmx"):
            assert name in names, name
        assert "sda" not in names and "vda" not in names
    as_user(body)


def test_proc_shows_only_the_sandbox(as_user):
    def body():
        out = sh("ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '; echo; cat /proc/1/cmdline | tr '\\0' ' '")
        pids = out.split("\n")[0].split()
        assert pids[0] == "1" and max(map(int, pids)) < 10, pids
        assert "python" in out.split("\n")[1] or "sandbox" in out.split("\n")[1]
    as_user(body)


def test_proc_sys_and_friends_are_read_only(as_user):
    """sys, sysrq-trigger, irq and bus inside each new procfs are read-only
    (as bubblewrap makes them): even the namespace's own root, which owns
    the network namespace's sysctls, gets EROFS."""
    def body():
        script = ("import errno, os\n"
                  "try:\n"
                  "    os.close(os.open('/proc/sys/net/ipv4/ping_group_range', os.O_WRONLY | os.O_TRUNC))\n"
                  "    print('opened')\n"
                  "except OSError as err:\n"
                  "    print(errno.errorcode[err.errno])\n"
                  "print(os.getuid())\n")
        result, uid = run_ok(["/usr/bin/python3", "-I", "-c", script], uid=0, gid=0).split()
        # Root inside owns them (a uid that does not, only EACCES before EROFS).
        assert result == "EROFS" or (uid != "0" and result == "EACCES"), (result, uid)
        ops = sandbox.default_ops().proc("/proc2")
        entries = mountinfo_inside(ops, uid=0, gid=0)
        for proc in ("/proc", "/proc2"):
            assert "rw" in entries[proc].options, entries[proc]
            for name in ("sys", "sysrq-trigger", "irq", "bus"):
                if os.path.exists("/proc/" + name):      # the same kernel
                    options = entries[proc + "/" + name].options
                    assert {"ro", "nosuid", "nodev", "noexec"} <= set(options), (name, options)
    as_user(body)


def test_network_is_private_unless_allowed(as_user):
    def body():
        out = sh("cat /proc/net/dev")
        interfaces = [line.split(":")[0].strip() for line in out.splitlines()[2:]]
        assert interfaces == ["lo"]
        out = sh("cat /sys/class/net/lo/operstate 2>/dev/null || grep -c . /proc/net/dev",
                 ops=sandbox.default_ops())
        shared = sh("cat /proc/net/dev", flags=sandbox.FAllowNet)
        assert len(shared.splitlines()) >= len(out.splitlines())
    as_user(body)


def test_loopback_is_up_inside(as_user):
    def body():
        script = ("import socket\n"
                  "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(1)\n"
                  "c = socket.create_connection(s.getsockname()); print('connected')\n")
        out = run_ok(["/usr/bin/python3", "-I", "-c", script])
        assert out.strip() == "connected"
    as_user(body)


def test_exit_status_and_signal_death(as_user):
    def body():
        assert sandbox.run(["/bin/sh", "-c", "exit 7"], env=ENV).returncode == 7
        assert sandbox.run(["/bin/sh", "-c", "kill -TERM $$"], env=ENV).returncode == 128 + 15
        assert sandbox.run(["/bin/sh", "-c", "kill -KILL $$"], env=ENV).returncode == 128 + 9
        with pytest.raises(subprocess.CalledProcessError) as info:
            sandbox.run(["/bin/false"], check=True)
        assert info.value.returncode == 1
    as_user(body)


def test_a_mebibyte_of_arguments_and_environment_runs(as_user):
    """1 MiB of arguments and environment runs (the spawn message outgrows
    a socket message: it travels in a memfd); past the kernel's limits the
    error says E2BIG and why."""
    def body():
        args = ["/bin/sh", "-c", 'echo $# ${#V0} ${#V511} "$PATH"', "sh"] + ["a" * 1000] * 512
        env = dict(ENV, **{"V%d" % i: "v" * 1000 for i in range(512)})
        assert run_ok(args, env=env) == "512 1000 1000 /usr/bin:/bin\n"
        with open(os.devnull, "wb") as devnull:
            c = sandbox.Container(*args, ops=sandbox.default_ops())
            c.env, c.stdout = env, devnull
            c.start()
            c.serve()
            assert c.wait() == 0
            c.close()
        with pytest.raises(sandbox.SandboxError, match="E2BIG: arguments and environment") as info:
            sandbox.run(["/bin/true"] + ["a" * 100000] * 30, env=env)
        assert info.value.errno == errno.E2BIG
        with pytest.raises(sandbox.SandboxError, match="E2BIG: a string of 200001 bytes"):
            sandbox.run(["/bin/true", "a" * 200000])
    as_user(body)


def test_lingering_process_is_killed_after_the_grace_period(as_user):
    def body():
        marker = "linger-%d-%d" % (os.getpid(), time.monotonic_ns())
        start = time.monotonic()
        cp = sandbox.run(["/bin/sh", "-c", "(setsid sh -c 'sleep 30; : %s' &) ; exit 4" % marker],
                         env=ENV)
        took = time.monotonic() - start
        assert cp.returncode == 4
        assert took >= sandbox.LINGER_SECONDS - 0.5
        out = subprocess.run(["pgrep", "-f", marker], capture_output=True)
        assert out.stdout == b"", out
    as_user(body)


LEFTOVERS = r"""
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
SYS_CLONE, CLONE_PARENT = int(sys.argv[1]), 0x8000
def leftover(mark):
    os.close(1)             # run() reads stderr to its end: not theirs
    os.close(2)
    time.sleep(0.3)
    os.write(3, mark)
    os._exit(0)
if os.fork() == 0:          # orphaned: init's child
    if os.fork() == 0:
        leftover(b"o")
    os._exit(0)
if libc.syscall(SYS_CLONE, CLONE_PARENT, 0, 0, 0, 0) == 0:    # init's child, no exit signal asked
    leftover(b"p")
if os.fork() == 0:          # made with no exit signal, then orphaned
    if libc.syscall(SYS_CLONE, 0, 0, 0, 0, 0) == 0:
        leftover(b"z")
    os._exit(0)
"""


@pytest.mark.parametrize("kwargs", [{}, {"hostname": "own"}], ids=["spare", "cloned"])
def test_exit_comes_after_every_process_but_the_worker(as_user, kwargs):
    """Init tells the caller "exit" without waiting for its worker (made
    with no exit signal), yet only once every other process has been
    reaped: the command's leftovers, orphaned or made init's child with
    CLONE_PARENT, with or without an exit signal of their own (the kernel
    gives each SIGCHLD), have all finished when run() returns (init's own
    exit would have killed any still running)."""
    def body():
        r, w = os.pipe2(os.O_NONBLOCK)
        try:
            cp = sandbox.run([SYSTEM_PYTHON, "-I", "-S", "-c", LEFTOVERS, str(sandbox.SYS_clone)],
                             extra_files=[w], env=ENV, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, **kwargs)
            assert cp.returncode == 0, cp.stderr
            os.close(w)
            w = None
            assert sorted(os.read(r, 100)) == sorted(b"opz")
        finally:
            _close_fds([fd for fd in (r, w) if fd is not None])
    as_user(body)


@pytest.mark.parametrize("kwargs", [{}, {"hostname": "own"}], ids=["spare", "cloned"])
def test_the_worker_is_reaped_while_the_command_runs(kwargs):
    """The worker, which init does not wait for before "exit", is reaped
    when it exits all the same (its exit signal wakes init): no zombie
    stays in the sandbox, visible to the command, for as long as it runs."""
    with sandbox.Popen(["/bin/sh", "-c", "echo up; read x"], stdin=sandbox.PIPE,
                       stdout=sandbox.PIPE, env=ENV, **kwargs) as p:
        assert p.stdout.readline() == b"up\n"
        command = None
        for _ in range(500):          # the worker may still be exiting
            processes = sandbox_processes(p.pid)
            if len(processes) == 1:
                command = processes[0]
                break
            time.sleep(0.02)
        assert command is not None and cmdline_of(command).split(b"\0")[:2] == [b"/bin/sh", b"-c"], \
            [(pid, cmdline_of(pid), is_zombie(pid)) for pid in sandbox_processes(p.pid)]
        p.stdin.write(b"\n")
        p.stdin.close()
        assert p.wait(timeout=30) == 0


def test_extra_files_arrive_as_3_and_up(as_user):
    def body():
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
        os.write(w1, b"one")
        os.close(w1)
        try:
            out = sh("cat <&3; echo; echo two >&4; ls /proc/self/fd | sort -n | tr '\\n' ' '",
                     extra_files=[r1, w2])
        finally:
            os.close(r1)
            os.close(w2)
        assert out.split("\n")[0] == "one"
        assert os.read(r2, 100) == b"two\n"
        os.close(r2)
        assert out.split("\n")[1].split() == ["0", "1", "2", "3", "4", "255"] or \
            out.split("\n")[1].split()[:5] == ["0", "1", "2", "3", "4"]
    as_user(body)


def test_pass_fds_keep_their_numbers_as_in_subprocess(as_user):
    def body():
        r, w = os.pipe()
        high = os.dup2(r, 40, inheritable=False)
        os.write(w, b"forty")
        os.close(w)
        extra = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        script = "import os; print(os.read(40, 9).decode(), sorted(int(n) for n in os.listdir('/proc/self/fd')))"
        try:
            out = run_ok([SYSTEM_PYTHON, "-S", "-c", script], pass_fds=[high], extra_files=[extra])
            host = subprocess.run([SYSTEM_PYTHON, "-S", "-c", "import os; print(sorted(int(n) for n in os.listdir('/proc/self/fd')))"],
                                  pass_fds=[high], capture_output=True, text=True).stdout
            with pytest.raises(ValueError, match="pass_fds"):
                sandbox.run(["/bin/true"], pass_fds=[3], extra_files=[extra])
        finally:
            _close_fds([r, high, extra])
        # extra_files numbered from 3, pass_fds at their own number (40), as
        # subprocess keeps it (its python lists one more: the listdir fd).
        assert out == "forty [0, 1, 2, 3, 4, 40]\n", out
        assert host == "[0, 1, 2, 3, 40]\n"
    as_user(body)


def test_no_caller_fd_leaks_into_the_container(as_user):
    def body():
        leaked = os.open("/dev/null", os.O_RDONLY)   # inheritable on purpose
        os.set_inheritable(leaked, True)
        try:
            out = run_ok(["/bin/ls", "/proc/self/fd"])
        finally:
            os.close(leaked)
        assert sorted(int(x) for x in out.split()) == [0, 1, 2, 3]   # 3: ls's own dir fd
    as_user(body)


def test_env_and_cwd(as_user):
    def body():
        out = run_ok(["/usr/bin/env"], env={"A": "1", "B": "two words"})
        assert sorted(out.split("\n")[:-1]) == ["A=1", "B=two words", "PWD=/"]
        assert run_ok(["/usr/bin/env"], env=None) == "PWD=/\n"     # PWD is cwd's
        assert run_ok(["/bin/sh", "-c", "/bin/pwd; echo $PWD"], cwd=pathlib.Path("/usr/bin"),
                      env={"PWD": "/elsewhere"}) == "/usr/bin\n/usr/bin\n"
        # The Container (the seed's shape) passes env as it is.
        c = sandbox.Container("/usr/bin/env", ops=sandbox.default_ops())
        c.env, c.dir = {"A": "1"}, "/usr"
        out_r, out_w = os.pipe()
        c.stdout = out_w
        c.start()
        c.serve()
        os.close(out_w)
        assert c.wait() == 0
        assert os.read(out_r, 100) == b"A=1\n"
        os.close(out_r)
    as_user(body)


def test_timeout_kills_the_whole_sandbox(as_user):
    def body():
        start = time.monotonic()
        with pytest.raises(subprocess.TimeoutExpired):
            sandbox.run(["/bin/sh", "-c", "sleep 30 & sleep 30"], timeout=0.5, env=ENV)
        assert time.monotonic() - start < 5
    as_user(body)


def test_cancel_and_wait_delay(as_user):
    def body():
        c = sandbox.Container("/bin/sh", "-c", "trap '' TERM; sleep 30", ops=sandbox.default_ops())
        c.env = ENV
        c.wait_delay = 0.3
        c.start()
        c.serve()
        time.sleep(0.2)
        c.stop()
        assert c.wait(timeout=10) == 128 + 9
        called = []
        c = sandbox.Container("/bin/sleep", "30", ops=sandbox.default_ops())
        c.cancel = lambda container: (called.append(1), container.kill(signal.SIGTERM))
        c.start()
        c.serve()
        c.stop()
        assert c.wait(timeout=10) == 128 + 15 and called == [1]
    as_user(body)


def test_container_shape_of_the_seed(as_user):
    def body():
        out_r, out_w = os.pipe()
        c = sandbox.Container("sh", "-c", "echo hi")
        c.ops.tmpfs("/tmp", 0, 0o755).bind("/usr", "/usr", 0).link("usr/bin", "/bin") \
            .link("usr/lib", "/lib").link("usr/lib64", "/lib64").proc("/proc").dev("/dev")
        c.uid, c.gid, c.hostname = 1000, 100, "box"
        c.env = ENV
        c.stdout = out_w
        c.flags |= sandbox.FAllowNet
        c.start()
        c.serve()
        os.close(out_w)
        assert c.wait() == 0
        assert os.read(out_r, 100) == b"hi\n"
        os.close(out_r)
    as_user(body)


def test_setup_failures_come_back_as_sandbox_errors(as_user):
    def body():
        with pytest.raises(sandbox.SandboxError, match=r'bind "/nope" on "/x": No such file or directory \(op 0\)') as info:
            sandbox.run(["/bin/true"], ops=sandbox.Ops().bind("/nope", "/x"))
        assert info.value.errno == errno.ENOENT
        cp = sandbox.run(["/bin/true"], ops=sandbox.default_ops().bind("/nope", "/x", sandbox.BindOptional))
        assert cp.returncode == 0
        with pytest.raises(sandbox.SandboxError, match="exec.*No such file") as info:
            sandbox.run(["no-such-command"], env=ENV)
        assert info.value.errno == errno.ENOENT and info.value.exit_status == 127
        with pytest.raises(sandbox.SandboxError, match="Permission denied") as info:
            sandbox.run(["/etc/passwd"])
        assert info.value.exit_status == 126
        with pytest.raises(sandbox.SandboxError, match='chdir "/nowhere"'):
            sandbox.run(["/bin/true"], cwd="/nowhere")
        ops = sandbox.default_ops().mkdir("/d", 0o755).place("/d", b"x")
        with pytest.raises(sandbox.SandboxError, match="directory"):
            sandbox.run(["/bin/true"], ops=ops)
    as_user(body)


def test_allow_tty_binds_the_terminal_as_console(as_user):
    """FAllowTTY through the library: the command's terminal is its stdout
    and /dev/console; without the flag there is no console."""
    def body():
        master, slave = os.openpty()
        try:
            script = "test -t 1 && test -c /dev/console && echo console-ok"
            results = []
            for flags in (sandbox.FAllowTTY, 0):
                code = sandbox.run(["/bin/sh", "-c", script], flags=flags, env=ENV,
                                   stdin=slave, stdout=slave, stderr=slave).returncode
                output = b""
                while select.select([master], [], [], 0.2)[0]:
                    output += os.read(master, 4096)
                results.append((code, output.replace(b"\r", b"")))
            assert results == [(0, b"console-ok\n"), (1, b"")]
        finally:
            os.close(master)
            os.close(slave)
    as_user(body)


def test_symlink_made_by_an_op_cannot_lead_outside(as_user):
    def body():
        victim = tempfile.mkdtemp(prefix="sandbox-victim-")
        os.chmod(victim, 0o777)
        try:
            ops = sandbox.default_ops().link(victim, "/escape").mkdir("/escape/pwned", 0o755) \
                .link("/../../../" + victim, "/escape2").tmpfs("/escape2/t", 0, 0o755)
            try:
                sandbox.run(["/bin/true"], ops=ops)
            except sandbox.SandboxError:
                pass
            assert os.listdir(victim) == []
            # A name an op made a symlink, in a directory already known:
            # mkdir must resolve it inside the new root, not on the host.
            ops = sandbox.default_ops().link(victim, "/tmp/l").mkdir("/tmp/l", 0o700) \
                .mkdir("/tmp/l/sub", 0o700)
            out = sandbox.run(["/bin/sh", "-c", "cd /tmp/l/sub && echo in-root"], ops=ops,
                              capture_output=True, env=ENV).stdout
            assert out == b"in-root\n"
            assert os.listdir(victim) == []
        finally:
            os.rmdir(victim)
    as_user(body)


def test_cgroup_fd_places_the_container():
    if os.geteuid() != 0:
        pytest.skip("creating a cgroup2 directory needs root")
    base = "/sys/fs/cgroup/unified" if os.path.exists("/sys/fs/cgroup/unified/cgroup.procs") else "/sys/fs/cgroup"
    path = os.path.join(base, "sandbox-test-%d" % os.getpid())
    os.mkdir(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            out = sh("cat /proc/self/cgroup", cgroup=fd)
        finally:
            os.close(fd)
        # inside a new cgroup namespace rooted at that directory
        assert "0::/\n" in out
    finally:
        for _ in range(50):
            try:
                os.rmdir(path)
                break
            except OSError:
                time.sleep(0.05)


# ---------------------------------------------------------------------------
# The operations and fields behind bubblewrap's options (issue 11): files and
# their modes, chmod, remount-ro, symlinks, overlays, binds from an fd.
# ---------------------------------------------------------------------------

def _stat_modes(ops, *paths):
    out = sh("stat -c '%%a %%n' %s" % " ".join(paths), ops=ops)
    return dict(reversed(line.split(" ", 1)) for line in out.splitlines())


def test_files_data_and_their_modes(as_user):
    def body():
        ops = sandbox.default_ops().tmpfs("/w") \
            .file("/w/f", b"file data", 0o640).file("/w/a/b/private", b"", 0o600) \
            .place("/w/rw", b"rw data", 0o600, writable=True).place("/w/ro", b"ro", 0o640) \
            .place("/w/default", b"")
        modes = _stat_modes(ops, "/w/f", "/w/a", "/w/a/b", "/w/a/b/private", "/w/rw",
                            "/w/ro", "/w/default")
        assert modes == {"/w/f": "640", "/w/a": "700", "/w/a/b": "700", "/w/a/b/private": "600",
                         "/w/rw": "600", "/w/ro": "640", "/w/default": "444"}
        out = sh("cat /w/f; echo; echo new > /w/rw && cat /w/rw; echo x > /w/ro || echo refused;"
                 "echo more >> /w/f && cat /w/f", ops=ops)
        assert out == "file data\nnew\nrefused\nfile datamore\n"
        mounts = mountinfo_inside(ops)
        assert "rw" in mounts["/w/rw"].options and "ro" in mounts["/w/ro"].options
        assert "/w/f" not in mounts          # a plain file, no mount
    as_user(body)


def test_parents_and_mount_points_get_bubblewraps_modes(as_user):
    """Parents: 0755 less what the op's own mode denies the group and the
    others (an op without a mode: 0700); mount points 0755 (a file: 0444)."""
    def body():
        shared = shared_dir()
        try:
            os.mkdir(shared + "/src-dir")
            open(shared + "/src-file", "w").close()
            ops = sandbox.default_ops().bind(shared, "/s", sandbox.BindWritable) \
                .bind(shared + "/src-dir", "/s/new/dir-point") \
                .bind(shared + "/src-file", "/s/file-point") \
                .mkdir("/s/of-0750/d", 0o750).mkdir("/s/of-0604/d", 0o604) \
                .mkdir("/s/of-1777/d", 0o1777).tmpfs("/s/of-0700/t", 0, 0o700) \
                .proc("/s/p/proc").link("x", "/s/l/link")
            run_ok(["/bin/true"], ops=ops)
            modes = {name: oct(os.stat(shared + "/" + name).st_mode & 0o7777)
                     for name in ("new", "new/dir-point", "file-point", "of-0750", "of-0604",
                                  "of-1777", "of-0700", "of-0700/t", "p", "p/proc", "l")}
            assert modes == {"new": "0o700", "new/dir-point": "0o755", "file-point": "0o444",
                             "of-0750": "0o750", "of-0604": "0o705", "of-1777": "0o755",
                             "of-0700": "0o700", "of-0700/t": "0o755", "p": "0o700",
                             "p/proc": "0o755", "l": "0o700"}
            # Container.parent_perm, when set, is every parent's mode.
            c = sandbox.Container("/bin/true", ops=sandbox.default_ops().bind(
                shared, "/s", sandbox.BindWritable).mkdir("/s/set/d", 0o700))
            c.parent_perm = 0o751
            c.start()
            c.serve()
            assert c.wait() == 0
            assert os.stat(shared + "/set").st_mode & 0o7777 == 0o751
        finally:
            subprocess.run(["rm", "-rf", shared])
    as_user(body)


def test_file_through_a_writable_bind_lands_on_the_host(as_user):
    def body():
        shared = shared_dir()
        try:
            with open(shared + "/existing", "w") as f:
                f.write("a longer old content")
            os.chmod(shared + "/existing", 0o644)
            ops = sandbox.default_ops().bind(shared, "/s", sandbox.BindWritable) \
                .file("/s/new", b"created", 0o640).file("/s/existing", b"short", 0o600)
            run_ok(["/bin/true"], ops=ops)
            with open(shared + "/new") as f:
                assert f.read() == "created"
            assert os.stat(shared + "/new").st_mode & 0o777 == 0o640
            with open(shared + "/existing") as f:
                assert f.read() == "short"             # truncated, mode kept
            assert os.stat(shared + "/existing").st_mode & 0o777 == 0o644
        finally:
            subprocess.run(["rm", "-rf", shared])
    as_user(body)


def test_chmod_in_order_and_on_what_exists(as_user):
    def body():
        ops = sandbox.default_ops().mkdir("/tmp/d", 0o700).chmod("/tmp/d", 0o1755) \
            .link("d", "/tmp/via-link").mkdir("/tmp/e", 0o755).chmod("/tmp/via-link", 0o750)
        assert _stat_modes(ops, "/tmp/d", "/tmp/e") == {"/tmp/d": "750", "/tmp/e": "755"}
        with pytest.raises(sandbox.SandboxError, match=r"^Can't chmod 0755 /tmp/nothing: No such "
                           r"file or directory \(op \d+\)$") as info:
            run_ok(["/bin/true"], ops=sandbox.default_ops().chmod("/tmp/nothing", 0o755))
        assert info.value.errno == errno.ENOENT
    as_user(body)


def test_remount_ro_only_the_mount_at_dest(as_user):
    def body():
        ops = sandbox.default_ops().tmpfs("/w").tmpfs("/w/inner").remount_ro("/w")
        mounts = mountinfo_inside(ops)
        assert {"ro", "nosuid", "nodev"} <= set(mounts["/w"].options)
        assert "rw" in mounts["/w/inner"].options          # not recursive
        out = sh("touch /w/x 2>&1; touch /w/inner/y && echo inner", ops=ops)
        assert "Read-only file system" in out and "inner" in out
        with pytest.raises(sandbox.SandboxError, match=r'^remount read-only "/usr/bin": not a '
                           r'mount point: Invalid argument \(op \d+\)$'):
            run_ok(["/bin/true"], ops=sandbox.default_ops().remount_ro("/usr/bin"))
    as_user(body)


def test_symlink_again_is_fine_a_different_one_is_not(as_user):
    def body():
        ops = sandbox.default_ops().link("target", "/tmp/l").link("target", "/tmp/l")
        assert sh("readlink /tmp/l", ops=ops) == "target\n"
        with pytest.raises(sandbox.SandboxError,
                           match="^Can't make symlink at /tmp/l: existing destination is target"):
            run_ok(["/bin/true"], ops=ops.link("other", "/tmp/l"))
        with pytest.raises(sandbox.SandboxError, match="^Can't make symlink at /tmp/d: "
                           "destination exists and is not a symlink"):
            run_ok(["/bin/true"], ops=sandbox.default_ops().mkdir("/tmp/d").link("x", "/tmp/d"))
    as_user(body)


@pytest.mark.parametrize("op, message", [
    (sandbox.Chmod("/x", 0o10000), "invalid mode"),
    (sandbox.Chmod("x", 0o755), "not absolute"),
    (sandbox.File("/x", "text"), "data must be bytes"),
    (sandbox.File("/x", b"", -1), "invalid mode"),
    (sandbox.Place("/x", b"", 0o777777), "invalid mode"),
    (sandbox.RemountRo("relative"), "not absolute"),
])
def test_bad_new_operations_are_refused_before_start(op, message):
    c = sandbox.Container("/bin/true", ops=sandbox.default_ops() + [op])
    with pytest.raises(sandbox.SandboxError, match=message):
        c.start()


def _layers():
    """A shared directory with lower layers a, b and "we:ir,d\\x", an upper
    and a work directory."""
    top = shared_dir()
    for name in ("a", "b", "we:ir,d\\x", "up", "work"):
        os.mkdir(os.path.join(top, name))
        os.chmod(os.path.join(top, name), 0o777)
    for name, data in (("a/only-a", "A"), ("a/both", "from a"), ("b/both", "from b"),
                       ("we:ir,d\\x/odd", "odd")):
        with open(os.path.join(top, name), "w") as f:
            f.write(data)
    return top


def test_overlays_read_only_writable_and_on_a_hidden_tmpfs(as_user):
    def body():
        top = _layers()
        try:
            ops = sandbox.default_ops() \
                .overlay("/ro", [top + "/a", top + "/b"]) \
                .overlay("/rw", [top + "/a", top + "/we:ir,d\\x"], top + "/up", top + "/work") \
                .overlay("/t", [top + "/a"], "tmp")
            out = sh("cat /ro/both /ro/only-a; echo; touch /ro/x 2>/dev/null || echo ro;"
                     "cat /rw/odd; echo w > /rw/new; echo t > /t/new; cat /t/new; ls /t", ops=ops)
            assert out == "from bA\nro\noddt\nboth\nnew\nonly-a\n"
            assert sorted(os.listdir(top + "/up")) == ["new"]
            assert sorted(os.listdir(top + "/a")) == ["both", "only-a"]     # lower untouched
            mounts = mountinfo_inside(ops)
            assert mounts["/ro"].fstype == "overlay" and "ro" in mounts["/ro"].options
            assert {"nosuid", "nodev"} <= set(mounts["/rw"].options)
            assert "userxattr" in mounts["/t"].super_options
            # the last lower dir is the top layer, each \ , : escaped
            assert "lowerdir=%s/we\\134:ir\\134\\054d\\134\\134x:%s/a" % (
                sandbox._HOST + top, sandbox._HOST + top) in mounts["/rw"].super_options
            # the tmpfs behind /t is out of reach: nothing at / but what ops made
            assert ".overlay" not in sh("ls -a /", ops=ops)
        finally:
            subprocess.run(["rm", "-rf", top])
    as_user(body)


def test_overlay_failures(as_user):
    def body():
        top = _layers()
        try:
            with pytest.raises(sandbox.SandboxError, match=r"^Can't make overlay mount on /o with "
                               r"options upperdir=.*: Overlay directories may not overlap"):
                run_ok(["/bin/true"], ops=sandbox.default_ops().overlay(
                    "/o", [top + "/a"], top + "/a", top + "/work"))
            with pytest.raises(sandbox.SandboxError, match="No such file or directory"):
                run_ok(["/bin/true"], ops=sandbox.default_ops().overlay("/o", [top + "/none"]))
        finally:
            subprocess.run(["rm", "-rf", top])
        for bad in (sandbox.Overlay("/o", []), sandbox.Overlay("/o", ["rel"]),
                    sandbox.Overlay("/o", ["/a"], "/up"), sandbox.Overlay("/o", ["/a"], "tmp", "/w"),
                    sandbox.Overlay("/o", "/a")):
            with pytest.raises(sandbox.SandboxError):
                sandbox.Container("/bin/true", ops=sandbox.default_ops() + [bad]).start()
    as_user(body)


def test_bind_from_an_fd(as_user):
    def body():
        top = _layers()
        fd = os.open(top + "/a", os.O_RDONLY | os.O_DIRECTORY)
        file_fd = os.open(top + "/b/both", os.O_RDONLY)
        try:
            ops = sandbox.default_ops().bind_fd(fd, "/from-fd", sandbox.BindWritable) \
                .bind_fd(file_fd, "/file-from-fd")
            assert sh("cat /from-fd/only-a /file-from-fd; touch /from-fd/made", ops=ops) == \
                "Afrom b"
            assert os.path.exists(top + "/a/made")
            mounts = mountinfo_inside(ops)
            assert "ro" in mounts["/file-from-fd"].options and "rw" in mounts["/from-fd"].options
            # What is bound is checked to be the fd's own file (bubblewrap's race check).
            race = sandbox._BoundFd._from_values((top + "/b", "/x", 0, (0, 0)))
            with pytest.raises(sandbox.SandboxError, match="^Race condition binding dirfd"):
                run_ok(["/bin/true"], ops=sandbox.default_ops() + [race])
            with pytest.raises(sandbox.SandboxError, match="not a directory or file"):
                run_ok(["/bin/true"], ops=sandbox.default_ops().bind_fd(0, "/x"),
                       stdin=subprocess.DEVNULL)
        finally:
            _close_fds([fd, file_fd])
            subprocess.run(["rm", "-rf", top])
    as_user(body)


def test_cli_overlays_and_bind_fd(cli):
    top = _layers()
    fd = os.open(top + "/b", os.O_RDONLY | os.O_DIRECTORY)
    try:
        cp = cli("--ro-bind", "/", "/", "--tmpfs", "/tmp",
                 "--overlay-src", top + "/a", "--overlay-src", top + "/b", "--ro-overlay", "/tmp/ro",
                 "--overlay-src", top + "/a", "--tmp-overlay", "/tmp/t",
                 "--overlay-src", top + "/we:ir,d\\x", "--overlay", top + "/up", top + "/work",
                 "/tmp/rw", "--ro-bind-fd", str(fd), "/tmp/fd",
                 "--", "sh", "-c", "cat /tmp/ro/both /tmp/rw/odd /tmp/fd/both; echo x > /tmp/t/x;"
                 "echo y > /tmp/rw/y; cat /tmp/t/x", pass_fds=[fd])
        assert cp.returncode == 0, cp
        assert cp.stdout == b"from boddfrom bx\n"
        assert os.listdir(top + "/up") == ["y"]
    finally:
        os.close(fd)
        subprocess.run(["rm", "-rf", top])


@pytest.mark.parametrize("args, message", [
    (["--overlay", "/u", "/w", "/d", "true"], b"--overlay requires at least one --overlay-src"),
    (["--tmp-overlay", "/d", "true"], b"--tmp-overlay requires at least one --overlay-src"),
    (["--overlay-src", "/a", "--ro-overlay", "/d", "true"],
     b"--ro-overlay requires at least two --overlay-src"),
    (["--overlay-src", "/a", "--dir", "/d", "true"], b"--overlay-src must be followed by another "
     b"--overlay-src or one of --overlay, --tmp-overlay, or --ro-overlay"),
    (["--overlay-src", "/a", "true"], b"--overlay-src must be followed by another "
     b"--overlay-src or one of --overlay, --tmp-overlay, or --ro-overlay"),
    (["--overlay", "/a", "/b"], b"--overlay takes three arguments"),
    (["--ro-bind-fd", "1"], b"--bind-fd takes two arguments"),
    (["--bind-fd", "-1", "/x", "true"], b"Invalid fd: -1"),
])
def test_cli_bad_overlays_and_bind_fds(cli, args, message):
    cp = cli(*args)
    assert cp.returncode == 2 and cp.stderr == b"sandbox: " + message + b" (see --help)\n", cp


def _bpf_program(numbers, match, otherwise):
    """cBPF: the syscalls numbered `numbers` get `match`, the others `otherwise`."""
    code = [struct.pack("<HBBI", 0x20, 0, 0, 0)]                              # ld [nr]
    for index, number in enumerate(numbers):
        code.append(struct.pack("<HBBI", 0x15, len(numbers) - index, 0, number))  # jeq match
    code += [struct.pack("<HBBI", 0x06, 0, 0, otherwise), struct.pack("<HBBI", 0x06, 0, 0, match)]
    return b"".join(code)


_NR = sandbox.SYSCALLS[sandbox.HOST_ARCH]
_RET_ALLOW = 0x7FFF0000


def _ret_errno(err):
    return 0x00050000 | err


# What /bin/echo and /bin/uname need to start (less uname itself); no clone,
# wait4 or kill, which PID 1 lives on.
_STARTUP = ("execve brk mmap munmap mprotect arch_prctl access openat newfstatat fstat read "
            "pread64 close set_tid_address set_robust_list rseq prlimit64 getrandom write "
            "exit_group futex lseek ioctl fcntl readlink statfs").split()
DENY_CHMOD = _bpf_program([_NR[n] for n in ("fchmodat", "chmod", "fchmodat2") if n in _NR],
                          _ret_errno(errno.ECONNREFUSED), _RET_ALLOW)
ALLOW_LITTLE = _bpf_program([_NR[n] for n in _STARTUP if n in _NR], _RET_ALLOW,
                            _ret_errno(errno.ENOSYS))


def test_argv0(as_user):
    def body():
        assert run_ok(["/bin/sh", "-c", "echo $0"], argv0="right") == "right\n"
        with pytest.raises(ValueError):
            sandbox.run(["/bin/true"], argv0="a\0b")
    as_user(body)


def test_user_seccomp_programs_are_loaded_for_the_command_only(as_user):
    def body():
        out = sh("touch /tmp/f; chmod 600 /tmp/f 2>&1; echo $?", seccomp_programs=[DENY_CHMOD])
        assert out == "chmod: changing permissions of '/tmp/f': Connection refused\n1\n"
        # A program allowing little stops the command, not PID 1 (which forks
        # and reaps with what it does not allow), and stacks with the others.
        assert run_ok(["/bin/echo", "hi"], seccomp_programs=[DENY_CHMOD, ALLOW_LITTLE]) == "hi\n"
        cp = sandbox.run(["/bin/uname"], seccomp_programs=[ALLOW_LITTLE], capture_output=True)
        assert cp.returncode == 1 and b"Function not implemented" in cp.stderr
        # still under the built-in filter too
        cp = sandbox.run(["/bin/sh", "-c", "unshare -U true"], env=ENV,
                         seccomp_programs=[DENY_CHMOD], capture_output=True)
        assert cp.returncode != 0
        with pytest.raises(sandbox.SandboxError, match="prctl.PR_SET_SECCOMP. reported EINVAL"):
            # a jump out of the program: the kernel refuses it
            sandbox.run(["/bin/true"], seccomp_programs=[struct.pack("<HBBI", 0x05, 0, 0, 9)])
        for bad in ([b"1234567"], [b""], b"12345678", ["text"]):
            with pytest.raises(sandbox.SandboxError, match="seccomp_programs"):
                sandbox.run(["/bin/true"], seccomp_programs=bad)
    as_user(body)


def test_lock_files_are_held_while_the_sandbox_lives(as_user):
    def body():
        shared = shared_dir()
        try:
            lock = os.path.join(shared, "lock")
            open(lock, "w").close()
            os.chmod(lock, 0o666)
            c = sandbox.Container("/bin/sleep", "30", ops=sandbox.default_ops().bind(
                shared, "/s"))
            c.lock_files = ["/s/lock"]
            c.start()
            c.serve()
            fd = os.open(lock, os.O_RDWR)
            try:
                with pytest.raises(BlockingIOError):
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                c.kill()
                c.wait()
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)      # released with it
            finally:
                os.close(fd)
            with pytest.raises(sandbox.SandboxError, match="^Unable to open lock file /s/none"):
                sandbox.run(["/bin/true"], ops=sandbox.default_ops().bind(shared, "/s"),
                            lock_files=["/s/none"])
            with pytest.raises(sandbox.SandboxError, match="lock_files"):
                sandbox.run(["/bin/true"], lock_files="/s/lock")
        finally:
            subprocess.run(["rm", "-rf", shared])
    as_user(body)


def test_block_fd_holds_the_command_and_sync_fd_lives_with_the_sandbox(as_user):
    def body():
        block_r, block_w = os.pipe()
        sync_r, sync_w = os.pipe()
        out_r, out_w = os.pipe()
        try:
            c = sandbox.Container("/bin/sh", "-c", "ls /proc/self/fd; echo ran", ops=sandbox.default_ops())
            c.block_fd, c.sync_fd, c.stdout, c.env = block_r, sync_w, out_w, ENV
            c.start()
            c.serve()               # returns with the command held
            os.close(out_w)
            out_w = None
            assert c.pid is not None
            ready, _, _ = select.select([out_r], [], [], 0.5)
            assert not ready                                   # nothing ran yet
            os.close(sync_w)
            sync_w = None
            ready, _, _ = select.select([sync_r], [], [], 0.2)
            assert not ready                                   # PID 1 holds the sync fd
            os.write(block_w, b"x")
            assert c.wait() == 0
            # the command had neither fd (only ls's own directory fd 3)
            assert _read_all_fd(out_r) == b"0\n1\n2\n3\nran\n"
            assert os.read(sync_r, 1) == b""                    # closed when it ended
        finally:
            _close_fds([fd for fd in (block_r, block_w, sync_r, sync_w, out_r, out_w)
                        if fd is not None])
    as_user(body)


def _read_all_fd(fd):
    chunks = []
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def test_cli_argv0_lock_file_sync_and_block_fds(cli):
    shared = shared_dir()
    block_r, block_w = os.pipe()
    sync_r, sync_w = os.pipe()
    try:
        open(shared + "/lock", "w").close()
        os.chmod(shared + "/lock", 0o666)
        os.write(block_w, b"go")
        cp = cli("--ro-bind", "/", "/", "--argv0", "right", "--lock-file", shared + "/lock",
                 "--block-fd", str(block_r), "--sync-fd", str(sync_w), "--",
                 "sh", "-c", "echo $0; ls /proc/self/fd | wc -l", pass_fds=[block_r, sync_w])
        assert cp.returncode == 0 and cp.stdout == b"right\n4\n", cp
        os.close(sync_w)
        sync_w = None
        assert os.read(sync_r, 1) == b""
        cp = cli("--argv0", "a", "--argv0", "b", "true")
        assert cp.returncode == 2 and cp.stderr == b"sandbox: --argv0 used multiple times " \
                                                   b"(see --help)\n"
        cp = cli("--ro-bind", "/", "/", "--lock-file", "/nonexistent", "true")
        assert cp.returncode == 125
        assert cp.stderr == b"sandbox: Unable to open lock file /nonexistent: " \
                            b"No such file or directory\n"
    finally:
        _close_fds([fd for fd in (block_r, block_w, sync_r, sync_w) if fd is not None])
        subprocess.run(["rm", "-rf", shared])


def test_cli_seccomp_programs(cli):
    with tempfile.TemporaryFile() as deny, tempfile.TemporaryFile() as little:
        deny.write(DENY_CHMOD)
        little.write(ALLOW_LITTLE)
        for f in (deny, little):
            f.flush()
            f.seek(0)
        cp = cli("--add-seccomp-fd", str(deny.fileno()), "--add-seccomp-fd", str(little.fileno()),
                 "--", "/bin/echo", "stacked", pass_fds=[deny.fileno(), little.fileno()])
        assert cp.returncode == 0 and cp.stdout == b"stacked\n", cp
        deny.seek(0)
        cp = cli("--seccomp", str(deny.fileno()), "--", "sh", "-c", "chmod 600 /tmp 2>&1",
                 pass_fds=[deny.fileno()])
        assert cp.returncode == 1 and b"Connection refused" in cp.stdout
        deny.seek(0)
        little.seek(0)
        cp = cli("--seccomp", str(deny.fileno()), "--add-seccomp-fd", str(little.fileno()),
                 "true", pass_fds=[deny.fileno(), little.fileno()])
        assert cp.returncode == 2
        assert cp.stderr == b"sandbox: --add-seccomp-fd cannot be combined with --seccomp " \
                            b"(see --help)\n"
    with tempfile.TemporaryFile() as odd:
        odd.write(b"1234567")
        odd.seek(0)
        cp = cli("--seccomp", str(odd.fileno()), "true", pass_fds=[odd.fileno()])
        assert cp.returncode == 2
        assert cp.stderr == b"sandbox: Invalid seccomp data, must be multiple of 8 (see --help)\n"


def test_cli_info_and_json_status_fds(cli):
    info_r, info_w = os.pipe()
    status_r, status_w = os.pipe()
    try:
        cp = cli("--info-fd", str(info_w), "--json-status-fd", str(status_w), "--",
                 "sh", "-c", "readlink /proc/self/ns/pid /proc/self/ns/net; exit 3",
                 pass_fds=[info_w, status_w])
        _close_fds([info_w, status_w])
        info_w = status_w = None
        assert cp.returncode == 3
        info_text = _read_all_fd(info_r).decode()
        status_lines = _read_all_fd(status_r).decode().splitlines()
        info, start, end = json.loads(info_text), json.loads(status_lines[0]), \
            json.loads(status_lines[1])
        assert info == start and end == {"exit-code": 3}
        assert list(info) == ["child-pid", "cgroup-namespace", "ipc-namespace", "mnt-namespace",
                              "net-namespace", "pid-namespace", "uts-namespace"]
        # bubblewrap's layout, byte for byte
        assert info_text == "{\n    %s\n}\n" % ",\n    ".join(
            '"%s": %d' % item for item in info.items())
        assert status_lines[0] == "{ %s }" % ", ".join('"%s": %d' % item for item in info.items())
        pid_ns, net_ns = cp.stdout.decode().split()
        assert pid_ns == "pid:[%d]" % info["pid-namespace"]
        assert net_ns == "net:[%d]" % info["net-namespace"]
    finally:
        _close_fds([fd for fd in (info_r, info_w, status_r, status_w) if fd is not None])
    read_end, write_end = os.pipe()
    try:
        cp = cli("--share-net", "--json-status-fd", str(write_end), "--", "no-such-command",
                 pass_fds=[write_end])
        os.close(write_end)
        write_end = None
        lines = _read_all_fd(read_end).decode().splitlines()
        assert cp.returncode == 127 and len(lines) == 1      # not executed: no exit code
        assert "net-namespace" not in json.loads(lines[0])   # the host's network
    finally:
        _close_fds([fd for fd in (read_end, write_end) if fd is not None])


def test_cli_working_directory_falls_back_and_sets_pwd(cli):
    # the current directory if it exists inside, else $HOME, else /
    cp = cli("--", "sh", "-c", "pwd; echo $PWD", cwd="/usr/bin")
    assert cp.stdout == b"/usr/bin\n/usr/bin\n"
    shared = shared_dir()
    try:
        cp = cli("--", "sh", "-c", "pwd; echo $PWD", cwd=shared,
                 env=dict(os.environ, HOME="/etc", PWD="/elsewhere"))
        assert cp.stdout == b"/etc\n/etc\n", cp
        cp = cli("--setenv", "HOME", "/nonexistent", "--", "sh", "-c", "pwd; echo $PWD", cwd=shared)
        assert cp.stdout == b"/\n/\n", cp
        cp = cli("--clearenv", "--chdir", "/usr", "--", "/usr/bin/env", cwd=shared)
        assert cp.stdout == b"PWD=/usr\n", cp
        cp = cli("--chdir", "/nonexistent", "true")
        assert cp.returncode == 125 and cp.stderr.startswith(b'sandbox: chdir "/nonexistent"')
    finally:
        subprocess.run(["rm", "-rf", shared])


@pytest.mark.parametrize("args, message", [
    (["--exec-label", "x", "true"], b"labeling not supported on this system"),
    (["--file-label", "x", "true"], b"labeling not supported on this system"),
    (["--cap-add", "CAP_KILL", "true"],
     b"--cap-add CAP_KILL: the sandbox keeps no capability (--privileged keeps CAP_SYS_ADMIN)"),
    (["--cap-drop", "kill", "true"], b"unknown cap: kill"),
    (["--sync-fd", "x", "true"], b"Invalid fd: x"),
])
def test_cli_refused_capabilities_and_labels(cli, args, message):
    cp = cli(*args)
    assert cp.returncode == 2 and cp.stderr == b"sandbox: " + message + b" (see --help)\n", cp


def test_cli_cap_drop_is_accepted(cli):
    cp = cli("--cap-drop", "ALL", "--cap-drop", "cap_kill", "--cap-drop", "CAP_SYS_ADMIN",
             "--cap-drop", "5", "--", "grep", "CapEff", "/proc/self/status")
    assert cp.returncode == 0 and cp.stdout.split() == [b"CapEff:", b"0000000000000000"]


def test_cli_files_data_chmod_and_remount(cli):
    fds = [_pipe_with(b"one"), _pipe_with(b"two"), _pipe_with(b"three"), _pipe_with(b"four")]
    try:
        cp = cli("--ro-bind", "/", "/", "--tmpfs", "/tmp",
                 "--file", str(fds[0]), "/tmp/file", "--perms", "0640", "--file", str(fds[1]),
                 "/tmp/file640", "--bind-data", str(fds[2]), "/tmp/rw",
                 "--perms", "0604", "--ro-bind-data", str(fds[3]), "/tmp/sub/ro",
                 "--dir", "/tmp/d", "--chmod", "1755", "/tmp/d",
                 "--tmpfs", "/tmp/sealed", "--remount-ro", "/tmp/sealed",
                 "--symlink", "d", "/tmp/l", "--symlink", "d", "/tmp/l",
                 "--", "sh", "-c", "stat -c '%a %n' /tmp/file /tmp/file640 /tmp/rw /tmp/sub "
                 "/tmp/sub/ro /tmp/d; cat /tmp/file /tmp/file640 /tmp/rw /tmp/sub/ro; echo;"
                 "echo x > /tmp/rw && cat /tmp/rw; touch /tmp/sealed/x || echo sealed",
                 pass_fds=fds)
        assert cp.returncode == 0, cp
        assert cp.stdout.decode().split("\n") == [
            "666 /tmp/file", "640 /tmp/file640", "600 /tmp/rw", "705 /tmp/sub", "604 /tmp/sub/ro",
            "1755 /tmp/d", "onetwothreefour", "x", "sealed", ""]
    finally:
        _close_fds(fds)
    cp = cli("--ro-bind", "/", "/", "--tmpfs", "/tmp",
             "--symlink", "a", "/tmp/l", "--symlink", "a", "/tmp/l", "--symlink", "b", "/tmp/l",
             "true")
    assert cp.returncode == 125
    assert cp.stderr == b"sandbox: Can't make symlink at /tmp/l: existing destination is a " \
                        b"(op 4)\n"


@pytest.mark.parametrize("args, message", [
    (["--chmod", "888", "/x", "true"], b"--chmod takes an octal argument <= 07777"),
    (["--chmod", "755"], b"--chmod takes two arguments"),
    (["--remount-ro"], b"--remount-ro takes one argument"),
    (["--perms", "0600", "--chmod", "755", "/x", "true"],
     b"--perms must be followed by an option that creates a file"),
    (["--file", "x", "/x", "true"], b"Invalid fd: x"),
])
def test_cli_bad_uses_of_the_new_options(cli, args, message):
    cp = cli(*args)
    assert cp.returncode == 2 and cp.stderr == b"sandbox: " + message + b" (see --help)\n", cp


# ---------------------------------------------------------------------------
# Limits and the run report, with real processes.
# ---------------------------------------------------------------------------

PY = "/usr/bin/python3"
MIB = 1 << 20


def sandbox_processes(init_pid):
    """Host pids of init's descendants (the sandbox's processes but init)."""
    found, todo = [], [init_pid]
    while todo:
        pid = todo.pop()
        try:
            for task in os.listdir("/proc/%d/task" % pid):
                with open("/proc/%d/task/%s/children" % (pid, task)) as f:
                    children = [int(c) for c in f.read().split()]
                found += children
                todo += children
        except OSError:
            pass
    return found


def anonymous_rss_of(pid):
    """What of a process's memory is its own (file pages may be charged
    to whoever read them first)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def is_zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in "ZX"
    except OSError:
        return True


def is_exiting(pid):
    """Whether a process is gone or on its way (PF_EXITING: its memory
    being freed; no longer listed in cgroup.procs)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0] in "ZX" or bool(int(fields[6]) & 0x4)
    except OSError:
        return True


def cmdline_of(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read()
    except OSError:
        return b""


class Sampler(threading.Thread):
    """Samples fn() every few milliseconds until stopped; keeps the maximum."""

    def __init__(self, fn):
        super().__init__(daemon=True)
        self.fn, self.peak, self.samples, self.done = fn, 0, 0, threading.Event()

    def run(self):
        while not self.done.is_set():
            self.peak = max(self.peak, self.fn())
            self.samples += 1
            time.sleep(0.002)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.join()


def own_cgroup_children():
    """The cgroups this process made for its sandboxes under its own cgroup
    in each v1 hierarchy and in cgroup2 (none once a run ended)."""
    left = []
    with open("/proc/self/cgroup") as f:
        for line in f.read().splitlines():
            _, controllers, path = line.split(":", 2)
            base = "/sys/fs/cgroup/" + (controllers or "unified") + path
            if os.path.isdir(base):
                left += [n for n in os.listdir(base) if n.startswith("sandbox-%d-" % os.getpid())]
    return left


@pytest.mark.parametrize("limits, message", [
    (dict(memory="12X"), "limits.memory: invalid size"),
    (dict(memory=0), "limits.memory: 0"),
    (dict(pids=0), "limits.pids: invalid number"),
    (dict(pids=True), "limits.pids: invalid number"),
    (dict(cpu_time=-1), "limits.cpu_time: invalid number of seconds"),
    (dict(wall_time="1"), "limits.wall_time: invalid number of seconds"),
    (dict(file_size=-5), "limits.file_size: size -5 is out of range"),
    (dict(open_files=2), "limits.open_files: 2 is fewer than the 3 fds"),
    (dict(rlimits={"NOPE": 1}), "unknown resource 'NOPE'"),
    (dict(rlimits={"RLIMIT_STACK": (2 * MIB, MIB)}), "soft limit above the hard limit"),
    (dict(rlimits={"NOFILE": 64}, open_files=64), "rlimits[RLIMIT_NOFILE] and open_files both"),
    (dict(rlimits=[1]), "limits.rlimits: expected a dict"),
])
def test_bad_limits_are_refused_before_anything_starts(limits, message):
    with pytest.raises(sandbox.SandboxError) as info:
        sandbox.run(["/bin/true"], limits=sandbox.Limits(**limits))
    assert message in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(sandbox.SandboxError, match="expected a sandbox.Limits"):
        sandbox.run(["/bin/true"], limits={"memory": 1})


def test_sizes_and_limits_print():
    parse = sandbox._parse_size
    assert [parse(v, "x") for v in (4096, "4096", "64K", "64KiB", "512M", "1.5G", "2g", "1T")] == \
        [4096, 4096, 64 << 10, 64 << 10, 512 << 20, 3 << 29, 2 << 30, 1 << 40]
    assert repr(sandbox.Limits(memory="512M", pids=8)) == "Limits(memory='512M', pids=8)"
    assert sandbox.Limits(pids=8) == sandbox.Limits(pids=8) != sandbox.Limits(pids=9)


def test_rlimits_are_set_inside(as_user):
    def body():
        limits = sandbox.Limits(open_files=40, file_size="1M", cpu_time=7,
                                rlimits={"RLIMIT_STACK": ("1M", "2M"), "msgqueue": 4096})
        out = sh("ulimit -n; ulimit -f; ulimit -t; ulimit -s; ulimit -c; "
                 "grep msgqueue /proc/self/limits", limits=limits)
        assert out.split()[:5] == ["40", "2048", "7", "1024", "0"]
        assert out.split()[-3:] == ["4096", "4096", "bytes"]
        # with no limits the command keeps what the caller has
        assert sh("ulimit -n").strip() == str(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    as_user(body)


def proc_limits(pid):
    with open("/proc/%d/limits" % pid) as f:
        return {" ".join(line.split()[:-3]): line.split()[-3:-1] for line in f.read().splitlines()[1:]}


def test_init_holds_only_the_limits_that_cannot_hamper_it(as_user):
    def body():
        c = sandbox.Container("/bin/sleep", "30", ops=sandbox.default_ops())
        c.limits = sandbox.Limits(open_files=10, cpu_time=5, file_size="1M",
                                  rlimits={"AS": (1 << 30, 1 << 30)})
        c.start()
        c.serve()
        try:
            for _ in range(500):
                command = [p for p in sandbox_processes(c.pid) if b"sleep" in cmdline_of(p)]
                if command:
                    break
                time.sleep(0.01)
            ours, theirs = proc_limits(os.getpid()), proc_limits(c.pid)
            inside = proc_limits(command[0])
        finally:
            c.close()
        assert inside["Max open files"] == ["10", "10"] and inside["Max cpu time"] == ["5", "6"]
        assert inside["Max address space"] == [str(1 << 30)] * 2
        for name in ("Max open files", "Max cpu time", "Max address space"):
            assert theirs[name] == ours[name], name        # init: as the caller's
        assert theirs["Max file size"] == inside["Max file size"] == [str(MIB)] * 2
    as_user(body)


BOMB = textwrap.dedent("""\
    import os, time
    made = refused = 0
    for _ in range(200):            # bounded: a failure cannot take the host down
        try:
            pid = os.fork()
        except OSError:
            refused += 1
            continue
        if pid == 0:
            time.sleep(2)
            os._exit(0)
        made += 1
    print(made, refused, flush=True)
    """)


def test_a_fork_bomb_stays_under_its_process_limit(as_user):
    def body():
        # Another sandbox of the same caller holds 10 processes meanwhile:
        # the limit counts each sandbox's own processes only.
        other = sandbox.Container("/bin/sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do "
                                  "sleep 30 & done; wait", ops=sandbox.default_ops())
        other.env, other.limits = ENV, sandbox.Limits(pids=20)
        other.start()
        other.serve()
        try:
            for _ in range(500):
                if len(sandbox_processes(other.pid)) >= 11:
                    break
                time.sleep(0.01)
            bomb = sandbox.Container(PY, "-c", BOMB, ops=sandbox.default_ops())
            bomb.env, bomb.limits = ENV, sandbox.Limits(pids=20, wall_time=30)
            r, w = os.pipe()
            bomb.stdout = w
            bomb.start()
            bomb.serve()
            os.close(w)
            # the host's view: every process of the bomb's sandbox but its init
            with Sampler(lambda: len(sandbox_processes(bomb.pid))) as sampler:
                bomb.wait()
            output = _read_all(r)
        finally:
            other.close()
        made, refused = map(int, output.split())
        assert (made, refused) == (19, 181), output      # the command and 19 children
        assert 0 < sampler.peak <= 20 and sampler.samples > 0
        cp = bomb
        # root's sandbox is counted by its cgroup (host uid 0 is exempt from
        # RLIMIT_NPROC), which says it refused forks; RLIMIT_NPROC does not tell
        assert cp.report.status == ("pids" if os.geteuid() == 0 else "exited")
        assert cp.returncode == 0 and cp.report.exit_code == 0
    as_user(body)


def _read_all(fd):
    with os.fdopen(fd, "rb") as f:
        return f.read()


def test_a_process_count_host_root_would_not_hold_is_refused():
    if os.geteuid() != 0:
        pytest.skip("the sandbox holds host uid 0 only for a root caller")
    # The kernel exempts host uid 0 from RLIMIT_NPROC: asked for directly,
    # it would be silently off (20 of 20 forks were made before this check).
    with pytest.raises(sandbox.SandboxError, match=r"^limits.rlimits\[RLIMIT_NPROC\]: the "
                       r"sandbox runs as host uid 0, which RLIMIT_NPROC does not count"):
        sandbox.run(["/bin/true"], host_uid=0, limits=sandbox.Limits(rlimits={"NPROC": 5}))
    cp = sandbox.run([PY, "-c", BOMB], env=ENV, capture_output=True, host_uid=0,
                     limits=sandbox.Limits(pids=5, wall_time=30))
    assert cp.stdout.split() == [b"4", b"196"] and cp.report.status == "pids"
    # a root caller's sandbox holds the overflow id by default: counted
    cp = sandbox.run([PY, "-c", BOMB], env=ENV, capture_output=True,
                     limits=sandbox.Limits(rlimits={"NPROC": 5}, wall_time=30))
    assert int(cp.stdout.split()[0]) <= 4, cp.stdout


ALLOCATE = textwrap.dedent("""\
    chunks = []
    for _ in range(512):
        chunks.append(b"x" * (1 << 20))     # 512 MiB, every page written
    print("allocated")
    """)


def test_memory_limit_holds_and_the_host_never_sees_more(as_user):
    def body():
        c = sandbox.Container(PY, "-c", ALLOCATE, ops=sandbox.default_ops())
        c.env, c.limits = ENV, sandbox.Limits(memory="64M", wall_time=60)
        null = os.open(os.devnull, os.O_WRONLY)
        c.stdout = c.stderr = null
        c.start()
        c.serve()
        os.close(null)
        # (a process not yet the command is init's clone, its pages init's)
        with Sampler(lambda: sum(anonymous_rss_of(p) for p in sandbox_processes(c.pid)
                                 if b"chunks.append" in cmdline_of(p))) as sampler:
            status = c.wait()
        report = c.report
        assert status != 0 and sampler.samples > 0
        assert 0 < sampler.peak <= 64 * MIB, sampler.peak
        if os.geteuid() == 0:          # v1 memory controller here: the whole sandbox
            assert report.memory_limit_kind == "cgroup"
            assert report.status == "memory" and report.oom_kills >= 1
            assert report.memory_peak <= 64 * MIB and status == 128 + signal.SIGKILL
            assert own_cgroup_children() == []
        else:                           # RLIMIT_AS: the allocation fails
            assert report.memory_limit_kind == "address_space"
            assert report.status == "exited" and report.exit_code == 1
            assert report.memory_peak is None and report.oom_kills is None
    as_user(body)


def test_a_busy_loop_ends_at_its_cpu_time(as_user):
    def body():
        cp = sandbox.run(["/bin/sh", "-c", "while :; do :; done"], env=ENV,
                         limits=sandbox.Limits(cpu_time=1, wall_time=60))
        assert cp.report.status == "cpu_time" and cp.report.signal == signal.SIGXCPU
        assert cp.returncode == 128 + signal.SIGXCPU
        assert 0.5 <= cp.report.cpu_user + cp.report.cpu_system < 30
    as_user(body)


def test_wall_time_kills_the_whole_sandbox(as_user):
    def body():
        started = time.monotonic()
        cp = sandbox.run(["/bin/sh", "-c", "sleep 30 & sleep 30"], env=ENV,
                         limits=sandbox.Limits(wall_time=1))
        assert time.monotonic() - started < 20
        assert cp.report.status == "timeout" and cp.returncode == 128 + signal.SIGKILL
        assert 1.0 <= cp.report.wall_time < 20
    as_user(body)


def test_file_size_and_open_files_hold(as_user):
    def body():
        limits = sandbox.Limits(file_size="1M")
        cp = sandbox.run(["/bin/sh", "-c", "exec head -c 2000000 /dev/zero > /tmp/big"],
                         env=ENV, limits=limits)
        assert cp.report.status == "file_size" and cp.report.signal == signal.SIGXFSZ
        out = sh("head -c 2000000 /dev/zero > /tmp/big; stat -c %s /tmp/big", limits=limits)
        assert out.split()[-1] == str(MIB)
        opened = textwrap.dedent("""\
            import errno
            files = []
            try:
                while True:
                    files.append(open("/dev/null"))
            except OSError as err:
                print(len(files), errno.errorcode[err.errno])
            """)
        limits = sandbox.Limits(open_files=10)
        assert run_ok([PY, "-c", opened], limits=limits).split() == ["7", "EMFILE"]
    as_user(body)


CPU_BURN = textwrap.dedent("""\
    import time
    start = time.process_time()
    while time.process_time() - start < 0.5:
        for _ in range(20000):
            pass
    """)
TOUCH_100M = "b = bytearray(100 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\n"


def test_report_figures_for_known_workloads(as_user):
    def body():
        burn = sandbox.run([PY, "-c", CPU_BURN], env=ENV)
        assert burn.returncode == 0 and isinstance(burn, sandbox.CompletedProcess)
        assert isinstance(burn, subprocess.CompletedProcess)
        report = burn.report
        assert report.status == "exited" and report.exit_code == 0 and report.signal is None
        assert 0.3 <= report.cpu_user <= 3 and report.cpu_system < 3
        assert report.wall_time >= 0.4
        assert report.memory_limit_kind is None and report.truncated is False
        touch = sandbox.run([PY, "-c", TOUCH_100M], env=ENV)
        assert touch.returncode == 0 and touch.report.max_rss >= 100 * MIB
        killed = sandbox.run(["/bin/sh", "-c", "kill -TERM $$"], env=ENV)
        assert (killed.report.status, killed.report.signal, killed.report.exit_code) == \
            ("signaled", signal.SIGTERM, None)
        assert sandbox.run(["/bin/sh", "-c", "exit 3"]).report.exit_code == 3
        c = running_sleeper()
        c.kill()
        c.wait()
        assert c.report.status == "signaled" and c.report.signal == signal.SIGKILL
        d = json.loads(report.json())
        assert list(d) == list(sandbox.Report.FIELDS) and d["status"] == "exited"
    as_user(body)


def test_a_setup_failure_has_a_report(as_user):
    def body():
        c = sandbox.Container("/bin/true", ops=sandbox.Ops().bind("/nonexistent-x", "/x"))
        c.start()
        with pytest.raises(sandbox.SandboxError):
            c.serve()
        assert c.report.status == "setup_failed"
    as_user(body)


def _delegated_cgroup2(owner):
    """A cgroup2 directory under /sys/fs/cgroup/unified for the test, owned
    (delegated) by `owner`, with a leaf `caller` for the test's process."""
    path = "/sys/fs/cgroup/unified/sandbox-test-%d-%d" % (os.getpid(), time.monotonic_ns())
    os.mkdir(path)
    os.mkdir(path + "/caller")
    for name in ("", "/cgroup.procs", "/cgroup.subtree_control", "/cgroup.threads",
                 "/caller", "/caller/cgroup.procs"):
        os.chown(path + name, owner, owner)
    return path


def _remove_cgroup_tree(path):
    for _ in range(200):
        try:
            for name in os.listdir(path):
                if os.path.isdir(os.path.join(path, name)):
                    os.rmdir(os.path.join(path, name))
            os.rmdir(path)
            return
        except OSError:
            time.sleep(0.02)      # the test child's helper is still leaving
    pytest.fail("could not remove %s" % path)


@pytest.mark.parametrize("who", ["caller", "nobody"])
def test_a_cgroup2_directory_gets_a_child_cgroup_per_sandbox(who):
    if os.geteuid() != 0 or not os.path.exists("/sys/fs/cgroup/unified/cgroup.procs"):
        pytest.skip("needs root and the cgroup2 hierarchy at /sys/fs/cgroup/unified")
    path = _delegated_cgroup2(NOBODY if who == "nobody" else 0)

    def body():
        with open(path + "/caller/cgroup.procs", "w") as f:
            f.write("0")       # a delegated subtree's user runs inside it
        if who == "nobody":
            _drop_to_nobody()
        c = sandbox.Container("/bin/sh", "-c", "cat /proc/self/cgroup; echo end; sleep 30",
                              ops=sandbox.default_ops())
        c.env, c.cgroup, c.stdout = ENV, path, subprocess.PIPE
        r, w = os.pipe()
        c.stdout = w
        c.start()
        c.serve()
        os.close(w)
        first = b""
        while not first.endswith(b"end\n"):
            first += os.read(r, 4096)
        children = [n for n in os.listdir(path) if n.startswith("sandbox-")]
        assert len(children) == 1 and b"\n0::/\n" in b"\n" + first   # its own cgroup namespace
        live = [p for p in sandbox_processes(c.pid) if not is_exiting(p)]   # (not its worker)
        with open(os.path.join(path, children[0], "cgroup.procs")) as f:
            inside = [int(p) for p in f.read().split()]
        assert c.pid in inside and live and set(live) <= set(inside)
        c.kill()
        c.wait()
        os.close(r)
        assert [n for n in os.listdir(path) if n.startswith("sandbox-")] == []
        burn = sandbox.run([PY, "-c", CPU_BURN], env=ENV, cgroup=path)
        assert 0.3 <= burn.report.cpu_user <= 3       # from the cgroup's cpu.stat
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for field in ("memory", "pids"):
                with pytest.raises(sandbox.SandboxError) as info:
                    sandbox.run(["/bin/true"], cgroup=fd,
                                limits=sandbox.Limits(**{field: 64 * MIB}))
                message = str(info.value)
                assert message.startswith("limits.%s: the cgroup2 directory " % field)
                assert message.endswith("has no %s controller (cgroup.controllers: none)" % field)
        finally:
            os.close(fd)
        assert [n for n in os.listdir(path) if n.startswith("sandbox-")] == []
    try:
        _run_forked(body, drop=False)
    finally:
        _remove_cgroup_tree(path)


def cli_with_report(cli, *args, **kwargs):
    """Run the command line with --report-fd; (CompletedProcess, report dict)."""
    r, w = os.pipe()
    try:
        cp = cli("--report-fd", str(w), *args, pass_fds=(w,), **kwargs)
    finally:
        os.close(w)
    with os.fdopen(r, "rb") as f:
        lines = f.read().splitlines()
    assert len(lines) == 1, lines
    return cp, json.loads(lines[0])


def test_cli_timeout_ends_the_command_with_124(cli):
    started = time.monotonic()
    cp, report = cli_with_report(cli, "--timeout", "1", "--", "sleep", "30")
    assert time.monotonic() - started < 20
    assert cp.returncode == 124 and report["status"] == "timeout", (cp, report)
    assert list(report) == list(sandbox.Report.FIELDS)


def test_cli_limits_hold_and_the_report_says_which(cli):
    cp, report = cli_with_report(cli, "--cpu-time", "1", "--timeout", "60", "--",
                                 "sh", "-c", "while :; do :; done")
    assert cp.returncode == 128 + signal.SIGXCPU and report["status"] == "cpu_time"
    cp, report = cli_with_report(cli, "--pids", "20", "--timeout", "60", "--", PY, "-c", BOMB)
    assert cp.stdout.split() == [b"19", b"181"] and cp.returncode == 0
    cp, report = cli_with_report(cli, "--memory", "64M", "--timeout", "60", "--",
                                 PY, "-c", ALLOCATE)
    assert cp.returncode != 0 and b"allocated" not in cp.stdout
    kind = "address_space" if cli.unprivileged else "cgroup"
    assert report["memory_limit_kind"] == kind and \
        report["status"] == ("exited" if cli.unprivileged else "memory"), report
    cp, report = cli_with_report(cli, "--file-size", "1M", "--", "sh", "-c",
                                 "exec head -c 2000000 /dev/zero > /tmp/big")
    assert report["status"] == "file_size" and report["signal"] == signal.SIGXFSZ
    cp = cli("--open-files", "9", "--rlimit", "STACK=1M:2M", "--rlimit", "core=unlimited",
             "--", "cat", "/proc/self/limits")
    limits = {" ".join(line.split()[:-3]): line.split()[-3:-1]
              for line in cp.stdout.decode().splitlines()[1:]}
    assert limits["Max open files"] == ["9", "9"], limits
    assert limits["Max stack size"] == [str(MIB), str(2 * MIB)]
    assert limits["Max core file size"] == ["unlimited", "unlimited"]


def test_cli_a_setup_failure_is_reported_too(cli):
    cp, report = cli_with_report(cli, "--ro-bind", "/nonexistent-x", "/x", "--", "true")
    assert cp.returncode == 125 and report["status"] == "setup_failed"
    # a memory limit asked of a cgroup2 directory without the memory controller
    cp = cli("--memory", "64M", "--cgroup", "/sys/fs/cgroup/unified", "--", "true")
    assert cp.returncode == 125 and re.match(
        br'sandbox: limits.memory: the cgroup2 directory "/sys/fs/cgroup/unified" has no '
        br'memory controller \(cgroup.controllers: [a-z_ ]+\)\n\Z', cp.stderr), cp.stderr


@pytest.mark.parametrize("args, message", [
    (["--memory", "12X"], b"--memory: invalid size '12X'"),
    (["--memory", "0"], b"limits.memory: 0 leaves nothing to run in"),
    (["--pids", "0"], b"--pids: invalid number 0"),
    (["--pids", "-3"], b"--pids: invalid number \"-3\""),
    (["--cpu-time", "x"], b"--cpu-time: invalid number of seconds \"x\""),
    (["--timeout", "-1"], b"--timeout: invalid number of seconds -1.0"),
    (["--file-size", "1Q"], b"--file-size: invalid size '1Q'"),
    (["--open-files", "many"], b"--open-files: invalid number \"many\""),
    (["--rlimit", "NOPE=1"], b"--rlimit: unknown resource 'NOPE'"),
    (["--rlimit", "STACK"], b"--rlimit: expected NAME=SOFT[:HARD], not \"STACK\""),
    (["--rlimit", "STACK=2M:1M"], b"limits.rlimits[RLIMIT_STACK]: soft limit above the hard limit"),
    (["--rlimit", "NOFILE=5", "--open-files", "7"],
     b"limits: rlimits[RLIMIT_NOFILE] and open_files both set it"),
    (["--report-fd", "x"], b"Invalid fd: x"),
])
def test_cli_bad_limits_get_one_line_and_status_2(cli, args, message):
    cp = cli(*args, "--", "true")
    assert cp.returncode == 2 and cp.stderr == b"sandbox: " + message + b" (see --help)\n", cp


# ---------------------------------------------------------------------------
# The helper process.
# ---------------------------------------------------------------------------

def test_helper_is_reused_and_survives_a_crashed_container():
    sandbox.run(["/bin/true"])
    helper = sandbox._Helper.current()
    assert helper is not None and helper.alive()
    sandbox.run(["/bin/sh", "-c", "kill -SEGV $$"], env=ENV)
    c = running_sleeper()
    os.kill(c.pid, signal.SIGKILL)    # the container's init dies abruptly
    assert c.wait(timeout=10) == 128 + 9
    sandbox.run(["/bin/true"])
    assert sandbox._Helper.current() is helper and helper.alive()


def test_helper_exits_with_its_caller():
    script = textwrap.dedent("""\
        import sys; sys.path.insert(0, %r)
        import sandbox
        sandbox.run(["/bin/true"])
        h = sandbox._Helper.current()
        print(h.pid, flush=True)
        """ % HERE)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    pid = int(out.stdout)
    for _ in range(200):
        if not os.path.exists("/proc/%d" % pid) or \
                open("/proc/%d/stat" % pid).read().split()[2] == "Z":
            break
        time.sleep(0.02)
    else:
        pytest.fail("helper %d outlived its caller" % pid)


def test_the_command_is_pid_2_as_in_bubblewrap(as_user):
    """init is PID 1 and its setup worker is forked first, yet the command
    is PID 2, also when PATH is searched past directories without it."""
    def body():
        for env in (ENV, {"PATH": "/nonexistent:/usr/local/nothing-here:/usr/bin:/bin"}):
            assert sh("echo $$", env=env) == "2\n"
        cp = sandbox.run(["sh", "-c", "echo $$"], env={"PATH": "/nonexistent:/bin"},
                         capture_output=True, limits=sandbox.Limits(open_files=64))
        assert cp.stdout == b"2\n", cp.stderr
    as_user(body)


def test_many_sandboxes_from_many_threads():
    sandbox.run(["/bin/true"])          # the helper's socket is there before
    before_fds = sorted(os.listdir("/proc/self/fd"))
    results, errors = [], []

    def worker():
        for _ in range(8):
            try:
                results.append(sandbox.run(["/bin/sh", "-c", "echo $$"], env=ENV,
                                           capture_output=True).stdout)
            except Exception as err:    # collected and asserted below
                errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    # every command has the same small pid in its own namespace
    assert len(results) == 64 and len(set(results)) == 1 and int(results[0]) <= 3
    assert sorted(os.listdir("/proc/self/fd")) == before_fds


# ---------------------------------------------------------------------------
# bubblewrap's defaults (Container.hardened False): the container the bwrap
# personality sets up, through the library.
# ---------------------------------------------------------------------------

def bwrap_run(script, pass_fd=None, **fields):
    """Run sh -c script with bubblewrap's defaults over a bind of the host's
    /; returns (status, stdout)."""
    c = sandbox.Container("/bin/sh", "-c", script,
                          ops=sandbox.Ops().bind("/", "/", sandbox.BindWritable).tmpfs("/tmp"))
    c.hardened, c.uid, c.gid, c.dir, c.env = False, None, None, None, dict(ENV)
    c.flags = sandbox.FAllowTTY
    for name, value in fields.items():
        setattr(c, name, value)
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    c.stdout = write_end
    try:
        c.start()
        c.serve()
        os.close(write_end)
        write_end = None
        chunks = []
        while True:
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        return c.wait(timeout=30), b"".join(chunks).decode()
    finally:
        c.close()
        os.close(read_end)
        if write_end is not None:
            os.close(write_end)


def status_fields(text):
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def test_bubblewrap_defaults_namespaces_ids_directory_and_fds(as_user):
    def body():
        keep = os.open("/dev/null", os.O_RDONLY)
        os.set_inheritable(keep, True)                # inherited: passed through
        old = os.getcwd()
        os.chdir("/usr")      # not under /tmp, which bwrap_run hides (a checkout may be there)
        try:
            status, out = bwrap_run(
                "id -u; id -g; readlink /proc/self/ns/user /proc/self/ns/net /proc/self/ns/pid"
                " /proc/self/ns/mnt; pwd; echo $PWD; test -e /proc/self/fd/%d && echo fd;"
                " grep -c . /proc/self/uid_map; grep Seccomp: /proc/self/status" % keep)
            cwd = os.getcwd()
        finally:
            os.close(keep)
            os.chdir(old)
        assert status == 0
        lines = out.split("\n")
        assert lines[:2] == [str(os.getuid()), str(os.getgid())]
        host = [os.readlink("/proc/self/ns/" + ns) for ns in ("user", "net", "pid", "mnt")]
        # A user namespace only for a non-root caller; no other but the mount one.
        assert (lines[2] == host[0]) == (os.getuid() == 0)
        assert lines[3:5] == host[1:3] and lines[5] != host[3]
        assert lines[6:9] == [cwd, cwd, "fd"]     # the caller's directory
        assert lines[10].split() == ["Seccomp:", "0"]
        status, out = bwrap_run("readlink /proc/self/ns/net /proc/self/ns/ipc /proc/self/ns/uts;"
                                " echo $$", namespaces={"net", "ipc", "uts", "pid"})
        lines = out.split()
        assert all(a != b for a, b in zip(lines[:3], (os.readlink("/proc/self/ns/" + ns)
                                                        for ns in ("net", "ipc", "uts"))))
        assert lines[3] == "2"        # our init is PID 1 and reaps; the command is 2
    as_user(body)


def test_bubblewrap_directory_falls_back_to_home_then_root(as_user):
    def body():
        here = tempfile.mkdtemp(prefix="sandbox-cwd-")
        os.chmod(here, 0o755)
        old = os.getcwd()
        try:
            os.chdir(here)
            # The caller's directory is hidden under a tmpfs: $HOME, else /.
            _, out = bwrap_run("pwd; echo $PWD", env=dict(ENV, HOME="/usr"),
                               ops=sandbox.Ops().bind("/", "/", 0).tmpfs(here))
            assert out.split() == [here, here]       # the tmpfs's root exists
            _, out = bwrap_run("pwd; echo $PWD", env=dict(ENV, HOME="/usr"),
                               ops=sandbox.Ops().bind("/", "/", 0).tmpfs(os.path.dirname(here)))
            assert out.split() == ["/usr", "/usr"]
            _, out = bwrap_run("pwd; echo $PWD", env=dict(ENV, HOME="/nonexistent"),
                               ops=sandbox.Ops().bind("/", "/", 0).tmpfs(os.path.dirname(here)))
            assert out.split() == ["/", "/"]
        finally:
            os.chdir(old)
            os.rmdir(here)
    as_user(body)


def test_bubblewrap_capabilities(as_user):
    def body():
        own = int(status_fields(open("/proc/self/status").read())["CapEff"], 16)
        _, out = bwrap_run("cat /proc/self/status")
        fields = status_fields(out)
        assert fields["NoNewPrivs"].strip() == "1"
        if os.getuid() == 0:          # a root caller keeps its own, untouched
            assert int(fields["CapEff"], 16) == own
            assert int(fields["CapBnd"], 16) == int(status_fields(
                open("/proc/self/status").read())["CapBnd"], 16)
        else:
            for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
                assert int(fields[cap], 16) == 0, cap
        # Exactly the capabilities asked for (CAP_KILL, CAP_NET_BIND_SERVICE),
        # in every set, and the init keeps none (PID 1 is ours here).
        _, out = bwrap_run("cat /proc/self/status; echo; cat /proc/1/status",
                           caps=[5, 10], namespaces={"user", "pid"},
                           ops=sandbox.Ops().bind("/", "/", 0).proc("/proc"))
        mine, init = out.split("\n\n")
        for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(status_fields(mine)[cap], 16) == 1 << 5 | 1 << 10, cap
        for cap in ("CapPrm", "CapEff"):
            assert int(status_fields(init)[cap], 16) == 0, cap
        _, out = bwrap_run("cat /proc/self/status", caps=[])
        for cap in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
            assert int(status_fields(out)[cap], 16) == 0, cap
    as_user(body)


def test_bubblewrap_as_pid_1_and_die_with_parent(as_user):
    def body():
        _, out = bwrap_run("echo $$", namespaces={"pid"}, as_pid_1=True)
        assert out == "1\n"
        # With die_with_parent the command dies with whatever started it.
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            os.dup2(write_end, 9)        # inheritable; sh takes one digit
            try:
                bwrap_run("echo $$ >&9; exec sleep 60 9>&-", die_with_parent=True)
            finally:
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end) as f:
            sleeper = int(f.readline())
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        for _ in range(500):
            try:
                with open("/proc/%d/stat" % sleeper) as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        break
            except FileNotFoundError:
                break
            time.sleep(0.01)
        else:
            os.kill(sleeper, signal.SIGKILL)
            pytest.fail("the command outlived the process that started it")
    as_user(body)


def test_bubblewrap_disable_userns_and_its_check(as_user):
    def body():
        status, out = bwrap_run("unshare -U true && echo nested",
                                namespaces={"user"}, disable_userns=True)
        assert (status, out) == (1, "")
        status, out = bwrap_run("unshare -U true && echo nested", namespaces={"user"})
        assert (status, out) == (0, "nested\n")
        with pytest.raises(sandbox.SandboxError, match="not disabled as requested"):
            bwrap_run("true", assert_userns_disabled=True)
        with pytest.raises(sandbox.SandboxError, match="disable_userns: needs"):
            bwrap_run("true", disable_userns=True)
    as_user(body)


def test_bubblewrap_joins_given_namespaces(as_user):
    def body():
        first = sandbox.Container("/bin/sh", "-c", "read x", ops=sandbox.Ops().bind("/", "/", 0))
        first.hardened, first.uid, first.gid, first.dir = False, None, None, None
        first.namespaces = {"user", "pid"}
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        first.stdin = read_end
        first.start()
        first.serve()
        os.close(read_end)
        try:
            command = first.pid        # its init, as bubblewrap's info fd gives it
            want = [os.readlink("/proc/%d/ns/%s" % (command, ns)) for ns in ("user", "pid")]
            userns = os.open("/proc/%d/ns/user" % command, os.O_RDONLY | os.O_CLOEXEC)
            pidns = os.open("/proc/%d/ns/pid" % command, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _, out = bwrap_run("readlink /proc/self/ns/user /proc/self/ns/pid",
                                   userns_fd=userns, pidns_fd=pidns)
            finally:
                os.close(userns)
                os.close(pidns)
            assert out.split() == want
        finally:
            os.write(write_end, b"\n")
            os.close(write_end)
            assert first.wait(timeout=30) == 0
            first.close()
        # What is not a user namespace cannot be joined: bubblewrap's words.
        userns = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        try:
            with pytest.raises(sandbox.SandboxError, match="^Joining the specified user namespace"):
                bwrap_run("true", userns_fd=userns)
        finally:
            os.close(userns)
    as_user(body)


NS_GET_PARENT = 0xb702      # _IO(0xb7, 0x2)


def _nspid(pid):
    with open("/proc/%d/status" % pid) as f:
        return [int(n) for n in status_fields(f.read())["NSpid"].split()]


def test_bubblewrap_new_pid_namespace_under_a_joined_one(as_user):
    """pidns_fd with a new PID namespace: it is made under the joined one
    (bubblewrap's --pidns with --unshare-pid): the command's namespace is
    new, its parent is the joined one, and its pid is seen at each level."""
    def body():
        holder = sandbox.Container("/bin/sh", "-c", "read x", ops=sandbox.Ops().bind("/", "/", 0))
        holder.hardened, holder.uid, holder.gid, holder.dir = False, None, None, None
        holder.namespaces = {"user", "pid"}
        hold_r, hold_w = os.pipe2(os.O_CLOEXEC)
        holder.stdin = hold_r
        holder.start()
        holder.serve()
        os.close(hold_r)
        fds = []
        try:
            joined = os.stat("/proc/%d/ns/pid" % holder.pid).st_ino
            for ns in ("user", "pid"):
                fds.append(os.open("/proc/%d/ns/%s" % (holder.pid, ns), os.O_RDONLY | os.O_CLOEXEC))
            c = sandbox.Container("/bin/sh", "-c", "echo $$; readlink /proc/self/ns/pid; read x",
                                  ops=sandbox.Ops().bind("/", "/", 0).proc("/proc"))
            c.hardened, c.uid, c.gid, c.dir, c.env = False, None, None, None, dict(ENV)
            c.namespaces, c.userns_fd, c.pidns_fd = {"pid"}, fds[0], fds[1]
            in_r, in_w = os.pipe2(os.O_CLOEXEC)
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            c.stdin, c.stdout = in_r, out_w
            c.start()
            c.serve()
            os.close(in_r)
            os.close(out_w)
            try:
                with os.fdopen(out_r, "r", closefd=False) as out:
                    pid_inside = int(out.readline())
                    ns_inside = out.readline().strip()
                nested = os.open("/proc/%d/ns/pid" % c.pid, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    assert ns_inside == "pid:[%d]" % os.fstat(nested).st_ino != joined
                    parent = fcntl.ioctl(nested, NS_GET_PARENT)
                    try:
                        assert os.fstat(parent).st_ino == joined
                    finally:
                        os.close(parent)
                finally:
                    os.close(nested)
                # The init (c.pid) is PID 1 one level below the holder's init.
                assert _nspid(c.pid)[-1] == 1
                assert len(_nspid(c.pid)) == len(_nspid(holder.pid)) + 1
                assert pid_inside == 2
            finally:
                os.write(in_w, b"\n")
                os.close(in_w)
                os.close(out_r)
                assert c.wait(timeout=30) == 0
                c.close()
        finally:
            _close_all_fds(*fds)
            os.write(hold_w, b"\n")
            os.close(hold_w)
            assert holder.wait(timeout=30) == 0
            holder.close()
    as_user(body)


OPEN_ROOTS = r'''
import errno, os
while True:
    line = os.read(0, 64)
    if not line:
        break
    try:
        os.close(os.open("/proc/%d/root" % int(line), os.O_PATH | os.O_DIRECTORY))
        os.write(1, b"opened\n")
    except OSError as err:
        os.write(1, errno.errorcode[err.errno].encode() + b"\n")
'''


def test_bubblewrap_processes_made_in_joined_namespaces_are_not_dumpable(as_user, monkeypatch):
    """The init, and with a new PID namespace the second child that clones
    it, are made in the joined PID namespace by copies of the caller (the
    host's root, the caller's fds): a process there with every capability
    in the joined user namespace cannot open their /proc/PID/root, even at
    their first step (each waits there while it tries)."""
    def body():
        # Dumpable, as a caller that never changed its ids is (a change, as
        # the unprivileged variant's from root, made it not).
        sandbox._prctl(sandbox.PR_SET_DUMPABLE, 1, what="dumpable")
        holder = sandbox.Container("/usr/bin/python3", "-I", "-c", OPEN_ROOTS,
                                   ops=sandbox.Ops().bind("/", "/", 0).proc("/proc"))
        holder.hardened, holder.uid, holder.gid, holder.dir = False, 0, 0, None
        holder.namespaces = {"user", "pid"}
        holder.caps = list(range(sandbox._proc_int("/proc/sys/kernel/cap_last_cap", 40) + 1))
        ask_r, ask_w = os.pipe2(os.O_CLOEXEC)
        answer_r, answer_w = os.pipe2(os.O_CLOEXEC)
        holder.stdin, holder.stdout = ask_r, answer_w
        holder.start()
        holder.serve()
        os.close(ask_r)
        os.close(answer_w)
        level = len(_nspid(holder.pid)) - 1       # the holder's namespace in NSpid
        report_r, report_w = os.pipe2(os.O_CLOEXEC)

        def holder_tries(who):
            """In a process being made: the holder's try at our /proc/PID/root."""
            with open("/proc/self/status") as f:
                pid = status_fields(f.read())["NSpid"].split()[level]
            os.write(ask_w, pid.encode() + b"\n")
            os.write(report_w, b"%s %s" % (who, os.read(answer_r, 64)))
        clone, init_process = sandbox._clone, sandbox._init_process

        def second_child_clones(flags, *exit_signal):
            if flags & sandbox.CLONE_PARENT and flags & sandbox.CLONE_NEWPID:
                holder_tries(b"second")
            return clone(flags, *exit_signal)

        def init_starts(*args, **kwargs):
            holder_tries(b"init")
            return init_process(*args, **kwargs)
        monkeypatch.setattr(sandbox, "_clone", second_child_clones)
        monkeypatch.setattr(sandbox, "_init_process", init_starts)
        fds = [os.open("/proc/%d/ns/%s" % (holder.pid, ns), os.O_RDONLY | os.O_CLOEXEC)
               for ns in ("user", "pid")]
        try:
            for namespaces, made in (({"pid"}, [b"second", b"init"]), (set(), [b"init"])):
                c = sandbox.Container("/bin/true", ops=sandbox.Ops().bind("/", "/", 0))
                c.hardened, c.uid, c.gid, c.dir, c.env = False, None, None, None, dict(ENV)
                c.namespaces, c.userns_fd, c.pidns_fd = namespaces, fds[0], fds[1]
                c.start()
                c.serve()
                assert c.wait(timeout=30) == 0
                c.close()
                tries = os.read(report_r, 4096).split(b"\n")[:-1]
                assert tries == [who + b" EACCES" for who in made], tries
        finally:
            monkeypatch.undo()
            _close_all_fds(*fds + [report_r, report_w, answer_r])
            os.close(ask_w)
            assert holder.wait(timeout=30) == 0
            holder.close()
    as_user(body)


# ---------------------------------------------------------------------------
# The command line, driven as a subprocess, as the caller and as uid 65534.
# ---------------------------------------------------------------------------

SANDBOX_PY = os.path.join(HERE, "sandbox.py")
SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture(scope="module")
def world_readable_copy():
    """A copy of sandbox.py that uid 65534 can read (the checkout may sit
    under a home directory it cannot enter)."""
    directory = tempfile.mkdtemp(prefix="sandbox-cli-")
    os.chmod(directory, 0o755)
    copy = os.path.join(directory, "sandbox.py")
    with open(SANDBOX_PY, "rb") as src, open(copy, "wb") as dst:
        dst.write(src.read())
    os.chmod(copy, 0o644)
    yield copy
    os.unlink(copy)
    os.rmdir(directory)


@pytest.fixture(params=["caller", "nobody"])
def cli(request, world_readable_copy):
    """cli(*args, **subprocess_kwargs) -> CompletedProcess of sandbox.py."""
    if request.param == "nobody" and os.geteuid() == 0:
        assert os.access(SYSTEM_PYTHON, os.X_OK), \
            "the unprivileged command-line tests need %s" % SYSTEM_PYTHON
        command, preexec = [SYSTEM_PYTHON, world_readable_copy], _drop_ids
    else:
        command, preexec = [sys.executable, SANDBOX_PY], None

    def run_cli(*args, **kwargs):
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("timeout", 60)
        kwargs.setdefault("cwd", "/")
        return subprocess.run(command + list(args), preexec_fn=preexec, **kwargs)
    run_cli.unprivileged = preexec is not None or os.geteuid() != 0
    run_cli.command, run_cli.preexec = command, preexec
    return run_cli


def shared_dir():
    directory = tempfile.mkdtemp(prefix="sandbox-data-")
    os.chmod(directory, 0o777)
    return directory


def test_cli_runs_a_command_in_the_default_sandbox(cli):
    cp = cli("--", "id", "-u")
    assert cp.returncode == 0 and cp.stdout == b"65534\n", cp
    cp = cli("--", "sh", "-c", "echo hi > /tmp/x; cat /tmp/x")
    assert cp.stdout == b"hi\n" and cp.returncode == 0
    cp = cli("sh", "-c", "touch /usr/x")
    assert cp.returncode == 1 and b"Read-only" in cp.stderr
    # The filter (compiled while the sandbox sets up) is the command's.
    cp = cli("--", "grep", "Seccomp:", "/proc/self/status")
    assert cp.stdout.split() == [b"Seccomp:", b"2"], cp


def lock_is_held(path):
    """Whether another open file holds a flock() on path."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def test_cli_dies_with_its_parent(cli):
    """SIGKILL to whatever started sandbox.py ends the sandbox (SPEC 3.8),
    as bubblewrap's suite checks it: a lock held inside is released."""
    data = shared_dir()
    lock = os.path.join(data, "lock")
    script = " ".join(shlex.quote(a) for a in cli.command + [
        "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64",
        "/lib64", "--bind", data, "/data", "--", "/usr/bin/flock", "/data/lock", "/usr/bin/sleep",
        "600"]) + "; true"
    shell = subprocess.Popen(["/bin/sh", "-c", script], preexec_fn=cli.preexec, cwd="/",
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    launched = None
    try:
        deadline = time.monotonic() + 30
        while not lock_is_held(lock):
            assert shell.poll() is None and time.monotonic() < deadline, "the lock was never taken"
            time.sleep(0.02)
        with open("/proc/%d/task/%d/children" % (shell.pid, shell.pid)) as f:
            launched = int(f.read().split()[0])
        shell.kill()
        shell.wait()
        deadline = time.monotonic() + 10
        while lock_is_held(lock):
            assert time.monotonic() < deadline, "the sandbox outlived the shell that started it"
            time.sleep(0.02)
    finally:
        shell.kill()
        shell.wait()
        if launched is not None:
            try:
                os.kill(launched, signal.SIGKILL)   # (today it outlives the shell)
            except ProcessLookupError:
                pass
        for name in os.listdir(data):
            os.unlink(os.path.join(data, name))
        os.rmdir(data)


def _children_of(pid):
    with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
        return [int(c) for c in f.read().split()]


def _command_line_init(launched, wanted_fds):
    """The init of a command line (Popen `launched`, its command started
    and running) once it holds `wanted_fds` fds, or after 30 s: (its pid,
    {fd: what it is}, its children, /proc/PID/status)."""
    init, = _children_of(launched.pid)
    deadline = time.monotonic() + 30
    while True:
        fds = {}
        for name in os.listdir("/proc/%d/fd" % init):
            try:
                fds[int(name)] = os.readlink("/proc/%d/fd/%s" % (init, name))
            except FileNotFoundError:
                pass
        if len(fds) == wanted_fds or time.monotonic() > deadline:
            return init, fds, _children_of(init), _status(init)
        time.sleep(0.01)


def _init_holding_only_its_channel(launched, *more_caps):
    """The command line's PID 1 while its command runs: it holds one fd, a
    socket (its channel), has one child, no capability (those named and
    `more_caps` empty) and no_new_privs.  Returns (pid, status fields,
    children)."""
    init, fds, children, fields = _command_line_init(launched, 1)
    assert list(fds.values())[0].startswith("socket:") and len(fds) == 1, fds
    assert len(children) == 1, children
    for cap in ("CapInh", "CapPrm", "CapEff", "CapAmb") + more_caps:
        assert int(fields[cap], 16) == 0, (cap, fields[cap])
    assert fields["NoNewPrivs"].strip() == "1", fields
    return init, fields, children


def test_cli_init_sets_up_itself_and_keeps_nothing(cli):
    """The command line's PID 1 sets up the container itself (no worker,
    issue 15).  While the command runs it holds one fd, its channel to the
    command line (no bind source the caller opened, nothing setup opened,
    no stdio), no capability, no_new_privs and the filter; it is not
    dumpable, and its one child is the command, PID 2."""
    _needs_root()       # (the fds of a process that is not dumpable)
    data = shared_dir()     # bound writable: a root caller opens its tree for init
    launched = subprocess.Popen(cli.command + ["--ro-bind", "/", "/", "--bind", data, "/tmp",
                                               "--", "/bin/sh", "-c", "echo $$; exec sleep 60"],
                                preexec_fn=cli.preexec, cwd="/", stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    try:
        assert launched.stdout.readline() == b"2\n"
        init, fields, children = _init_holding_only_its_channel(launched, "CapBnd")
        assert fields["Seccomp"].strip() == "2", fields
        # Not dumpable: its /proc/PID/fd is host root's, the command's its own.
        assert os.stat("/proc/%d/fd" % init).st_uid == 0
        assert os.stat("/proc/%d/fd" % children[0]).st_uid == NOBODY
    finally:
        launched.kill()
        launched.communicate()
        os.rmdir(data)


def test_init_whose_parent_died_before_its_death_signal_exits():
    """init sets its parent-death signal after clone(): a parent that died
    in between is seen by comparing its parent (as /proc shows it) with
    the one that cloned it; a live parent passes."""
    for parent, expected in ((os.getpid(), 0), (os.getpid() + 1000000, sandbox._SETUP_FAILED)):
        pid = os.fork()
        if pid == 0:
            sandbox._clone_parent = parent
            sandbox._check_parent_alive()
            os._exit(0)
        assert os.waitpid(pid, 0)[1] >> 8 == expected, parent


def test_cli_file_system_options_in_order(cli):
    data = shared_dir()
    try:
        read_end, write_end = os.pipe()
        os.write(write_end, b"placed data")
        os.close(write_end)
        cp = cli("--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin",
                 "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
                 "--proc", "/proc", "--dev", "/dev",
                 "--size", "1048576", "--perms", "0700", "--tmpfs", "/tmp",
                 "--perms", "0751", "--dir", "/made", "--bind", data, "/data",
                 "--ro-bind-try", "/does-not-exist", "/nothing",
                 "--ro-bind-data", str(read_end), "/placed", "--mqueue", "/mq",
                 "--", "sh", "-c",
                 "cat /placed; echo; stat -c %a /tmp /made; echo w > /data/f; "
                 "grep -E ' /(tmp|mq) ' /proc/self/mountinfo; test -e /nothing || echo none",
                 pass_fds=[read_end])
        os.close(read_end)
        assert cp.returncode == 0, cp
        lines = cp.stdout.decode().split("\n")
        assert lines[0] == "placed data"
        assert lines[1:3] == ["700", "751"]
        assert "size=1024k" in cp.stdout.decode() and " mqueue " in cp.stdout.decode()
        assert lines[-2] == "none"
        with open(os.path.join(data, "f")) as f:
            assert f.read() == "w\n"
    finally:
        subprocess.run(["rm", "-rf", data])


def test_cli_identity_environment_and_directory(cli):
    cp = cli("--uid", "1000", "--gid", "100", "--hostname", "box", "--chdir", "/usr",
             "--clearenv", "--setenv", "A", "1", "--setenv", "PATH", "/usr/bin:/bin",
             "--setenv", "B", "2", "--unsetenv", "B",
             "--", "sh", "-c", "id -u; id -g; hostname; pwd; env | sort")
    assert cp.returncode == 0, cp
    lines = cp.stdout.decode().split("\n")
    assert lines[:4] == ["1000", "100", "box", "/usr"]
    assert [l for l in lines[4:] if l and not l.startswith(("PWD=", "SHLVL=", "_="))] == \
        ["A=1", "PATH=/usr/bin:/bin"]
    cp = cli("--uid", "0", "--gid", "0", "--", "sh", "-c", "id -u; id -g")
    assert cp.stdout == b"0\n0\n", cp
    cp = cli("--", "sh", "-c", "echo $MARKER", env=dict(os.environ, MARKER="inherited"))
    assert cp.stdout == b"inherited\n"
    cp = cli("--", "pwd", cwd="/usr/bin")     # the default binds /usr at /usr
    assert cp.stdout == b"/usr/bin\n"
    cp = cli("--", "pwd", cwd=tempfile.gettempdir())     # a /tmp is made inside
    assert cp.stdout == b"/tmp\n"


def test_cli_identity_on_the_host(cli):
    """Issue 10 item 1 from the command line (which clones from its own
    process): a root caller's sandbox is uid 65534 on the host, its binds
    are opened by the caller (a writable one idmapped), and directories
    the operations make are the command's to write in."""
    system = ["--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin",
              "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64"]
    root = not cli.unprivileged
    data = shared_dir()
    try:
        # (--no-landlock: Landlock keeps a --dir directory scaffold, unwritten.)
        cp = cli(*system + ["--bind", data, "/data", "--dir", "/work", "--proc", "/proc",
                            "--no-landlock", "--", "sh", "-c",
                            "echo w > /work/f && stat -c '%u %a' /work; echo d > /data/f; "
                            "cat /proc/self/uid_map"])
        assert cp.returncode == 0, cp
        lines = cp.stdout.decode().split("\n")
        assert lines[0] == "65534 755"      # the command's, and it wrote there
        assert lines[1].split() == ["65534", "65534" if root else str(NOBODY), "1"]
        assert os.stat(os.path.join(data, "f")).st_uid == (0 if root else NOBODY)
        cp = cli("--host-uid", "0", "--", "cat", "/proc/self/uid_map")
        if root:
            assert cp.returncode == 0 and cp.stdout.split() == [b"65534", b"0", b"1"], cp
        else:
            assert cp.returncode == 125 and cp.stdout == b"", cp
            assert cp.stderr.decode().count("\n") == 1 and "host_uid/host_gid" in cp.stderr.decode()
        cp = cli("--", "sh", "-c", "cat /etc/shadow >/dev/null 2>&1 || echo refused")
        assert cp.stdout == b"refused\n", cp
    finally:
        subprocess.run(["rm", "-rf", data])


def test_cli_imports_nothing_its_sandbox_could_have_written(cli):
    """A module the command line imports once its sandbox has run is looked
    up on sys.path, whose first entry is this file's directory: a sandbox
    that may write there (a vendored copy in the tree it works on) would
    have its module run on the host, as the caller.  --report-fd's json
    comes before the sandbox."""
    system = ["--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin",
              "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64"]
    data = shared_dir()
    try:
        copy = os.path.join(data, "sandbox.py")
        shutil.copy(SANDBOX_PY, copy)
        os.chmod(copy, 0o644)
        plant = "; ".join("echo 'raise SystemExit(\"%s.py, planted, ran on the host\")' > %s/%s.py"
                          % (name, data, name) for name in ("json", "subprocess"))
        r, w = os.pipe()
        try:
            cp = subprocess.run([cli.command[0], copy, "--report-fd", str(w)] + system
                                + ["--bind", data, data, "--", "sh", "-c", plant],
                                pass_fds=(w,), preexec_fn=cli.preexec, capture_output=True,
                                timeout=60, cwd="/")
        finally:
            os.close(w)
        with os.fdopen(r, "rb") as f:
            report = f.read()
        assert os.path.exists(os.path.join(data, "json.py")), cp       # the sandbox wrote it
        assert cp.returncode == 0 and b"planted" not in cp.stderr, cp
        assert json.loads(report)["status"] == "exited"
    finally:
        subprocess.run(["rm", "-rf", data])


def test_cli_network(cli):
    cp = cli("--", "cat", "/proc/net/dev")
    assert [l.split(":")[0].strip() for l in cp.stdout.decode().splitlines()[2:]] == ["lo"]
    cp = cli("--unshare-all", "--share-net", "--die-with-parent", "--new-session",
             "--", "cat", "/proc/net/dev")
    with open("/proc/net/dev") as f:
        assert len(cp.stdout.decode().splitlines()) == len(f.read().splitlines())
    # as in bubblewrap, a later --unshare-all or --unshare-net unshares it again
    for again in ("--unshare-all", "--unshare-net"):
        cp = cli("--share-net", again, "--", "cat", "/proc/net/dev")
        assert [l.split(":")[0].strip() for l in cp.stdout.decode().splitlines()[2:]] == ["lo"]


def test_cli_landlock_options(cli):
    abstract = socket.socket(socket.AF_UNIX)
    name = "\0sandbox-cli-test-%d-%d" % (os.getpid(), time.monotonic_ns())
    abstract.bind(name)
    abstract.listen(4)
    connect = ("import socket\n"
               "try:\n"
               "    socket.socket(socket.AF_UNIX).connect(%r); print('connected')\n"
               "except OSError as err:\n"
               "    print(err.errno)\n" % name)
    try:
        cp = cli("--share-net", "--", "python3", "-I", "-c", connect)
        assert cp.returncode == 0 and cp.stdout == b"%d\n" % errno.EPERM, cp
        cp = cli("--share-net", "--no-landlock", "--", "python3", "-I", "-c", connect)
        assert cp.returncode == 0 and cp.stdout == b"connected\n", cp
    finally:
        abstract.close()
    ports = ("import socket\n"
             "s = socket.socket(); s.bind(('127.0.0.1', 6001)); s.listen(1)\n"
             "socket.socket().connect(('127.0.0.1', 6001)); print('6001 ok')\n"
             "socket.socket().bind(('127.0.0.1', 6002))\n")
    cp = cli("--allow-bind", "6001", "--allow-connect", "6001", "--allow-connect", "80",
             "--require-landlock", "-v", "--", "python3", "-I", "-c", ports)
    assert cp.returncode == 1 and cp.stdout == b"6001 ok\n", cp
    assert cp.stderr.splitlines()[-1] == b"PermissionError: [Errno 13] Permission denied"
    assert (b"sandbox: landlock: ABI %d; file system: only beneath the operations' targets; "
            b"TCP bind: 6001; TCP connect: 80, 6001; scoped: abstract unix sockets, signals\n"
            % sandbox._landlock_abi()) in cp.stderr
    assert b'op 8: tmpfs on "/tmp" size 0 (landlock: all)\n' in cp.stderr
    for args, message in ((["--allow-bind", "65536"], b'--allow-bind: invalid port "65536"'),
                          (["--allow-connect", "x"], b'--allow-connect: invalid port "x"')):
        cp = cli(*args, "--", "true")
        assert cp.returncode == 2 and message in cp.stderr and cp.stderr.count(b"\n") == 1, cp
    cp = cli("--no-landlock", "--allow-bind", "1", "--", "true")
    assert cp.returncode == 125 and cp.stderr == (
        b"sandbox: landlock: allow_connect/allow_bind need Landlock, and it is off\n"), cp


def test_cli_exit_statuses(cli):
    assert cli("--", "sh", "-c", "exit 9").returncode == 9
    assert cli("--", "sh", "-c", "kill -USR1 $$").returncode == 128 + signal.SIGUSR1
    cp = cli("--ro-bind", "/nope", "/x", "--", "true")
    assert cp.returncode == 125
    assert cp.stderr.decode() == 'sandbox: bind "/nope" on "/x": No such file or directory (op 0)\n'
    cp = cli("--", "no-such-command")
    assert cp.returncode == 127 and cp.stderr.count(b"\n") == 1 and b"no-such-command" in cp.stderr
    cp = cli("--", "/etc/passwd")
    assert cp.returncode == 126 and b"Permission denied" in cp.stderr
    cp = cli("--frobnicate")
    assert cp.returncode == 2 and cp.stderr.count(b"\n") == 1 and b"--frobnicate" in cp.stderr


@pytest.mark.parametrize("args", [
    [], ["--bind"], ["--bind", "/usr"], ["--uid", "x", "--", "true"], ["--uid", "-1", "true"],
    ["--uid", str(2**40), "true"], ["--size", "-5", "--tmpfs", "/t", "true"],
    ["--size", "10", "true"], ["--perms", "9", "--dir", "/d", "true"], ["--bind", "", "/x", "true"],
    ["--bind", "/usr", "", "true"], ["--hostname", "", "true"], ["--hostname", "x" * 100, "true"],
    ["--json-status-fd", "abc", "true"], ["--ro-bind-data", "99", "/x", "true"],
    ["--setenv", "A=B", "1", "true"], ["--tmpfs", "relative", "true"], ["--bind", "/usr", "/a\nb", "true"],
    ["--bind", "/no\nsuch", "/x", "true"], ["--chdir", "relative", "true"],
    ["--ro-bind-data", "0", "/x"], ["--dir", "/a", "--perms"],
])
def test_cli_bad_input_gets_one_line_and_a_status(cli, args):
    cp = cli(*args, stdin=subprocess.DEVNULL)
    assert cp.returncode in (2, 125, 127), cp
    assert b"Traceback" not in cp.stderr
    assert cp.stderr.count(b"\n") == 1 and cp.stderr.startswith(b"sandbox: "), cp.stderr


def test_cli_bad_hostname_is_a_usage_error(cli):
    for name in (b"\xff", b"h" * 65):
        cp = cli("--hostname", name, "--", "true")
        assert cp.returncode == 2 and b"Traceback" not in cp.stderr, cp
        assert cp.stderr.count(b"\n") == 1 and b"--hostname: invalid name" in cp.stderr, cp


def test_cli_runs_a_mebibyte_of_arguments(cli):
    cp = cli("--", "sh", "-c", 'echo $#', "sh", *["a" * 1000] * 1024)
    assert cp.returncode == 0 and cp.stdout == b"1024\n", cp


def test_cli_size_bounds_inodes_and_overrides_the_default(cli):
    cp = cli("--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64",
             "/lib64", "--size", "1048576", "--tmpfs", "/x", "--size", "2097152", "--tmpfs", "/tmp",
             "--", "/usr/bin/python3", "-I", "-c", FILL_SCRIPT, "files:/x:100000",
             "fill:/tmp/f:%d" % (8 << 20))
    assert cp.returncode == 0, cp
    assert cp.stdout == b"files /x 255\nfill /tmp/f 2097152\n", cp


def test_cli_status_json(cli):
    read_end, write_end = os.pipe()
    cp = cli("--json-status-fd", str(write_end), "--", "sh", "-c", "exit 3", pass_fds=[write_end])
    os.close(write_end)
    lines = os.read(read_end, 4096).decode().splitlines()
    os.close(read_end)
    assert cp.returncode == 3
    first, last = json.loads(lines[0]), json.loads(lines[1])
    assert isinstance(first["child-pid"], int) and first["child-pid"] > 1
    assert last == {"exit-code": 3}


def test_cli_seccomp_export_and_disasm(cli):
    directory = shared_dir()
    try:
        path = os.path.join(directory, "filter.bpf")
        cp = cli("--seccomp-export", path)
        assert cp.returncode == 0, cp
        with open(path, "rb") as f:
            assert f.read() == sandbox.seccomp_filter(0x1E)
        cp = cli("--allow-devel", "--multiarch", "--seccomp-export", path)
        with open(path, "rb") as f:
            assert f.read() == sandbox.seccomp_filter(0x2E)
        cp = cli("--seccomp-disasm")
        assert cp.returncode == 0
        assert cp.stdout.decode() == sandbox.bpf_disasm(sandbox.seccomp_filter(0x1E))
    finally:
        subprocess.run(["rm", "-rf", directory])


def test_option_table_rows_are_well_formed():
    for personality in (sandbox.HARDENED, sandbox.BWRAP):
        seen = set()
        for row in sandbox._OPTIONS:
            if isinstance(row, str) or personality not in row.where:
                continue
            texts = row.help_for(personality)
            assert len(texts) == len(row.names) and all(texts), row.names
            assert callable(row.handler), row.names
            # A row both take words its help for each (bubblewrap's words
            # are not this project's): no text shown in the wrong one.
            if len(row.where) > 1:
                assert isinstance(row.help, dict) and set(row.help) == set(row.where), row.names
            for name in row.names:
                assert name.startswith("-") and name not in seen, name
                seen.add(name)
    text = sandbox._help_text(sandbox.HARDENED)
    assert max(len(line) for line in text.splitlines()) <= 80
    # a row of one personality is unknown in the other
    with pytest.raises(sandbox._UsageError, match="^Unknown option --allow-devel$"):
        sandbox.parse_command_line(["--allow-devel", "true"], sandbox.BWRAP)


@pytest.mark.parametrize("args, message", [
    (["--chdir"], "--chdir takes one argument"),
    (["--bind-try", "/a"], "--bind-try takes two arguments"),
    (["--perms", "0700", "--perms", "0700", "--dir", "/d", "true"],
     "--perms given twice for the same action"),
    (["--size", "1", "--size", "1", "--tmpfs", "/d", "true"], "--size given twice for the same action"),
    (["--perms", "0700", "--bind", "/a", "/b", "true"],
     "--perms must be followed by an option that creates a file"),
    (["--size", "4096", "--dir", "/d", "true"], "--size must be followed by --tmpfs"),
    (["--perms", "8", "--dir", "/d", "true"], "--perms takes an octal argument <= 07777"),
    (["--size", "0x", "--tmpfs", "/d", "true"], "--size takes a non-zero number of bytes"),
    (["--size", str(2**63), "--tmpfs", "/d", "true"],
     "--size (for tmpfs) is limited to 9223372036854775807"),
    (["--uid", "-1", "true"], "Invalid uid: -1"),
    (["--info-fd", "x", "true"], "Invalid fd: x"),
    (["-", "true"], "Unknown option -"),
])
def test_option_parser_messages(args, message):
    with pytest.raises(sandbox._UsageError) as info:
        sandbox.parse_command_line(args)
    assert str(info.value) == message


def test_option_parser_modifiers_and_last_wins(capfd):
    cl = sandbox.parse_command_line(["--size", "0x1000", "--perms", "0700", "--tmpfs", "/t",
                                     "--perms", "1741", "--dir", "/d", "--tmpfs", "/u", "true"])
    assert cl.ops == [sandbox.Tmpfs("/t", 4096, 0o700), sandbox.Mkdir("/d", 0o1741),
                      sandbox.Tmpfs("/u", 0, 0o755)]
    cl = sandbox.parse_command_line(["--hostname", "a", "--hostname", "b", "true"])
    assert cl.fields["hostname"] == "b" and cl.command == ["true"]
    assert capfd.readouterr().err == "sandbox: Only the last --hostname option will take effect\n"
    # bubblewrap ignores a dangling modifier before the command
    cl = sandbox.parse_command_line(["--perms", "0700", "true"], sandbox.BWRAP)
    assert cl.command == ["true"]


def _pipe_with(data):
    read_end, write_end = os.pipe()
    os.write(write_end, data)
    os.close(write_end)
    return read_end


def test_cli_args_fd(cli):
    fds = [_pipe_with(b"--dir\0/tmp/hello/world%d\0" % n) for n in range(3)]
    fds.append(_pipe_with(b"--setenv\0A\0in file\0stop-here\0--dir\0/tmp/never"))
    try:
        args = []
        for fd in fds:
            args += ["--args", str(fd)]
        cp = cli("--ro-bind", "/", "/", "--tmpfs", "/tmp", *args, "--",
                 "sh", "-c", 'ls /tmp/hello; echo "$A"; ls /tmp', pass_fds=fds)
        assert cp.returncode == 0, cp
        assert cp.stdout.decode().split("\n") == ["world0", "world1", "world2", "in file",
                                                   "hello", ""]
    finally:
        for fd in fds:
            os.close(fd)
    nested = _pipe_with(b"--args\x003\0")
    try:
        cp = cli("--args", str(nested), "true", pass_fds=[nested])
        assert cp.returncode == 2
        assert cp.stderr == b"sandbox: --args not supported in arguments file (see --help)\n"
    finally:
        os.close(nested)
    with tempfile.TemporaryFile() as many:     # more than a pipe holds
        many.write(b"--clearenv\0" * 9000)
        many.seek(0)
        cp = cli("--args", str(many.fileno()), "true", pass_fds=[many.fileno()])
        assert cp.returncode == 2
        assert cp.stderr == b"sandbox: Exceeded maximum number of arguments 9000 (see --help)\n"


def test_cli_seccomp_deny_and_allow(cli):
    numbers = json.dumps(dict(sandbox.SYSCALLS[sandbox.HOST_ARCH]))
    probe = ["--", "/usr/bin/python3", "-I", "-c", RULES_PROBE, numbers]
    cp = cli("--seccomp-deny", "@io-uring", "--seccomp-deny", "getppid,uname:ENOSYS",
             "--seccomp-allow", "personality", *probe)
    assert cp.returncode == 0, cp.stderr
    assert json.loads(cp.stdout) == {"io_uring_setup": "EPERM", "getppid": "ENOSYS",
                                     "personality": "ok", "socket inet": "ok", "socket unix": "ok"}
    cp = cli("--seccomp-deny", "getppid:38", *probe)
    assert json.loads(cp.stdout)["getppid"] == "ENOSYS"
    for args, word in ((["--seccomp-deny", "no_such_call"], "no_such_call"),
                       (["--seccomp-allow", "@nogroup"], "@nogroup"),
                       (["--seccomp-deny", "ptrace:EWHAT"], "EWHAT"),
                       (["--seccomp-deny", "ptrace:0"], "errno"),
                       (["--seccomp-deny"], "seccomp-deny")):
        cp = cli(*args, "--", "true")
        assert cp.returncode == 2 and word in cp.stderr.decode(), (args, cp.stderr)
        assert len(cp.stderr.decode().splitlines()) == 1, cp.stderr
    directory = shared_dir()
    try:
        path = os.path.join(directory, "filter.bpf")
        assert cli("--seccomp-deny", "getpid:ENOSYS", "--seccomp-export", path).returncode == 0
        with open(path, "rb") as f:
            assert f.read() == sandbox.seccomp_filter(0x1E, rules=[sandbox.Rule("getpid", "deny:ENOSYS")])
    finally:
        shutil.rmtree(directory)


def test_cli_help_and_version(cli):
    cp = cli("--help")
    assert cp.returncode == 0
    text = cp.stdout.decode()
    assert max(len(line) for line in text.splitlines()) <= 80
    for option in ("--bind", "--ro-bind-data", "--seccomp-disasm", "--json-status-fd", "--allow-tty"):
        assert option in text
    # The shared rows in this personality's words, not bubblewrap's.
    assert "accepted: always in force" in text and "Create new pid namespace" not in text
    assert "--userns-block-fd" not in text
    cp = cli("--version")
    assert cp.returncode == 0 and cp.stdout.decode().startswith("sandbox.py ")


def test_cli_as_a_module():
    cp = subprocess.run([sys.executable, "-m", "sandbox", "--", "echo", "module"],
                        capture_output=True, cwd=HERE, timeout=60)
    assert cp.stdout == b"module\n" and cp.returncode == 0


def test_cli_interactive_shell_with_job_control(cli):
    """--allow-tty with a real terminal: bash gets job control."""
    master, slave = pty.openpty()
    command = [SYSTEM_PYTHON if cli.unprivileged and os.geteuid() == 0 else sys.executable]
    proc = subprocess.Popen(
        command + [SANDBOX_PY if not (cli.unprivileged and os.geteuid() == 0) else
                   cli_copy_path(), "--allow-tty", "--", "/bin/bash", "--norc", "-i"],
        stdin=slave, stdout=slave, stderr=slave, start_new_session=True, cwd="/",
        preexec_fn=_controlling_tty(slave, cli.unprivileged and os.geteuid() == 0))
    os.close(slave)
    os.write(master, b"sleep 30 &\njobs\necho answer=$((6*7))\nexit\n")
    output = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        if proc.poll() is not None and not ready:
            break
    proc.wait(timeout=30)
    os.close(master)
    text = output.decode(errors="replace")
    assert "answer=42" in text, text
    assert "no job control" not in text, text
    assert "[1]+" in text and "Running" in text, text


_copy_for_tty = []


def cli_copy_path():
    return _copy_for_tty[0]


@pytest.fixture(autouse=True)
def _remember_copy(world_readable_copy):
    _copy_for_tty[:] = [world_readable_copy]


def _controlling_tty(slave, drop):
    def preexec():
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        if drop:
            _drop_to_nobody()
    return preexec


# ---------------------------------------------------------------------------
# Adversarial: escape attempts from inside the default sandbox, faults, and
# a randomised run of operation lists.  Everything runs for real.
# ---------------------------------------------------------------------------

PROBE = r'''
import ctypes, errno, json, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
NR = json.loads(sys.argv[1])
out = {"fds": sorted(int(p) for p in os.listdir("/proc/self/fd"))}

def attempt(name, call):
    try:
        result = call()
        out[name] = "ok" if result is None or result >= 0 else errno.errorcode[ctypes.get_errno()]
    except OSError as err:
        out[name] = errno.errorcode.get(err.errno, err.errno)

def sys_(name, *args):
    args = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    return lambda: libc.syscall(NR[name], *args)

def write_file(path):
    def call():
        with open(path, "w") as f:
            f.write("x")
    return call

attempt("write /usr", write_file("/usr/escape"))
attempt("write /etc", write_file("/etc/escape"))
attempt("remount /usr rw", lambda: libc.mount(None, b"/usr", None, 0x20 | 0x1000, None))
attempt("mount tmpfs", lambda: libc.mount(b"x", b"/tmp", b"tmpfs", 0, None))
attempt("umount /usr", lambda: libc.umount2(b"/usr", 2))
attempt("unshare user", sys_("unshare", 0x10000000))
attempt("unshare mount", sys_("unshare", 0x00020000))
attempt("clone newuser", sys_("clone", 0x10000000 | 17, 0, 0, 0, 0))
attempt("clone3", sys_("clone3", 0, 0))
attempt("setns", sys_("setns", 0, 0))
attempt("pivot_root", sys_("pivot_root", b"/tmp", b"/tmp"))
attempt("chroot", sys_("chroot", b"/tmp"))
attempt("ptrace attach 1", sys_("ptrace", 16, 1, 0, 0))
attempt("perf_event_open", sys_("perf_event_open", 0, 0, -1, -1, 0))
attempt("setuid 0", sys_("setuid", 0))
attempt("setgid 0", sys_("setgid", 0))
attempt("setgroups", sys_("setgroups", 0, 0))
attempt("chown", sys_("chown", b"/tmp", 0, 0))
attempt("init_module", sys_("init_module", 0, 0, b""))
attempt("finit_module", sys_("finit_module", 0, b"", 0))
attempt("delete_module", sys_("delete_module", b"x", 0))
attempt("settimeofday", sys_("settimeofday", 0, 0))
attempt("clock_settime", sys_("clock_settime", 0, 0))
attempt("adjtimex", sys_("adjtimex", 0))
attempt("keyctl", sys_("keyctl", 0, 0, 0, 0, 0))
attempt("add_key", sys_("add_key", b"user", b"x", b"x", 1, 0))
attempt("request_key", sys_("request_key", b"user", b"x", 0, 0))
attempt("reboot", sys_("reboot", 0, 0, 0, 0))
attempt("swapon", sys_("swapon", b"/tmp", 0))
attempt("acct", sys_("acct", 0))
attempt("syslog", sys_("syslog", 3, 0, 0))
attempt("personality PER_BSD", sys_("personality", 6))
attempt("personality query", sys_("personality", 0xFFFFFFFF))
if "modify_ldt" in NR:
    attempt("modify_ldt", sys_("modify_ldt", 0, 0, 0))
def by_handle():
    # a real handle for /usr, then open_by_handle_at: needs CAP_DAC_READ_SEARCH
    handle = ctypes.create_string_buffer(8 + 128)
    ctypes.c_uint.from_buffer(handle).value = 128
    mount_id = ctypes.c_int()
    if libc.syscall(303, -100, b"/usr", handle, ctypes.byref(mount_id), 0) < 0:
        return -1
    fd = os.open("/", os.O_RDONLY)
    return libc.syscall(304, fd, handle, 0)
if NR["clone"] == 56:
    attempt("open_by_handle_at", by_handle)
def io_uring():
    params = ctypes.create_string_buffer(120)
    return libc.syscall(NR["io_uring_setup"], 1, params)
attempt("io_uring_setup", io_uring)
attempt("io_uring_enter", sys_("io_uring_enter", -1, 0, 0, 0, 0, 0))
attempt("bpf", sys_("bpf", 0, 0, 0))
attempt("userfaultfd", sys_("userfaultfd", 1))      # UFFD_USER_MODE_ONLY
buffers = [ctypes.create_string_buffer(b"secret"), ctypes.create_string_buffer(8)]
iovecs = [(ctypes.c_void_p * 2)(ctypes.addressof(b), 6) for b in buffers]
attempt("process_vm_readv", sys_("process_vm_readv", os.getpid(), iovecs[1], 1, iovecs[0], 1, 0))
attempt("process_vm_writev", sys_("process_vm_writev", os.getpid(), iovecs[0], 1, iovecs[1], 1, 0))
attempt("kcmp", sys_("kcmp", os.getpid(), os.getpid(), 0, 0, 0))
def pidfd_getfd():
    pidfd = os.pidfd_open(os.getpid())
    return libc.syscall(NR["pidfd_getfd"], pidfd, 0, 0)
attempt("pidfd_getfd", pidfd_getfd)
for family, name in ((40, "AF_VSOCK"), (17, "AF_PACKET"), (1, "AF_UNIX")):
    attempt("socketpair " + name, lambda family=family: [s.close() for s in socket.socketpair(family, socket.SOCK_STREAM)] and None)
for family, name in ((17, "AF_PACKET"), (15, "AF_KEY"), (40, "AF_VSOCK"), (38, "AF_ALG"), (2, "AF_INET"), (1, "AF_UNIX"), (16, "AF_NETLINK")):
    attempt("socket " + name, lambda family=family: socket.socket(family, socket.SOCK_DGRAM if family != 15 else socket.SOCK_RAW).close())
master, slave = os.openpty()
attempt("TIOCSTI", lambda: libc.ioctl(slave, 0x5412, ctypes.c_char_p(b"x")))
attempt("TIOCLINUX", lambda: libc.ioctl(slave, 0x541C, ctypes.c_char_p(b"\x0b")))
try:
    out["proc/1/root"] = sorted(os.listdir("/proc/1/root"))
except OSError as err:
    out["proc/1/root"] = errno.errorcode[err.errno]
out["proc/self/root"] = sorted(os.listdir("/proc/self/root"))
os.chdir("/")
out["dotdot"] = sorted(os.listdir("/../../.."))
out["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
print(json.dumps(out))
'''


def assert_gone_soon(marker, message, seconds=5):
    """No process whose command line holds marker, within a few seconds."""
    deadline = time.monotonic() + seconds
    while subprocess.run(["pgrep", "-f", marker], capture_output=True).stdout:
        if time.monotonic() > deadline:
            pytest.fail(message)
        time.sleep(0.02)


def run_probe(**kwargs):
    numbers = dict(sandbox.SYSCALLS[sandbox.HOST_ARCH])
    out = run_ok(["/usr/bin/python3", "-I", "-c", PROBE, json.dumps(numbers)], **kwargs)
    return json.loads(out)


def test_escape_attempts_fail(as_user):
    def body():
        result = run_probe()
        for name in ("write /usr", "write /etc"):
            assert result[name] == "EROFS", (name, result[name])
        for name in ("remount /usr rw", "mount tmpfs", "umount /usr", "unshare user", "unshare mount",
                     "clone newuser", "setns", "pivot_root", "chroot", "ptrace attach 1",
                     "perf_event_open",
                     "init_module", "finit_module", "delete_module", "settimeofday",
                     "clock_settime", "adjtimex", "keyctl", "add_key", "request_key", "reboot",
                     "swapon", "acct", "syslog", "personality PER_BSD", "personality query",
                     "TIOCSTI", "TIOCLINUX"):
            assert result[name] == "EPERM", (name, result[name])
        # The kernel refuses these (no CAP_SETUID/CAP_CHOWN inside; EINVAL
        # for an id the user namespace does not map), not the filter.
        for name in ("setuid 0", "setgid 0", "setgroups", "chown"):
            assert result[name] in ("EPERM", "EINVAL"), (name, result[name])
        if "modify_ldt" in result:
            assert result["modify_ldt"] == "EPERM"
        assert result["clone3"] == "ENOSYS"
        for name in ("io_uring_setup", "io_uring_enter"):
            assert result[name] == "ENOSYS", (name, result[name])
        for name in ("bpf", "userfaultfd", "process_vm_readv", "process_vm_writev", "kcmp",
                     "pidfd_getfd"):
            assert result[name] == "EPERM", (name, result[name])
        for family in ("AF_VSOCK", "AF_PACKET"):
            assert result["socketpair " + family] == "EAFNOSUPPORT", (family, result)
        assert result["socketpair AF_UNIX"] == "ok"
        if sandbox.HOST_ARCH == "x86_64":
            assert result["open_by_handle_at"] == "EPERM"
        for family in ("AF_PACKET", "AF_KEY", "AF_VSOCK", "AF_ALG"):
            assert result["socket " + family] == "EAFNOSUPPORT", (family, result)
        for family in ("AF_INET", "AF_UNIX", "AF_NETLINK"):
            assert result["socket " + family] == "ok", (family, result)
        root = sorted(["bin", "dev", "etc", "lib", "lib64", "proc", "sbin", "tmp", "usr"])
        assert {tuple(result[k]) for k in ("proc/self/root", "dotdot")} == {tuple(root)}
        assert result["proc/1/root"] in ("EACCES", root)    # init is not dumpable
        assert result["pids"][0] == 1 and max(result["pids"]) < 10
        assert result["fds"] == [0, 1, 2, 3], result["fds"]     # 3: listdir's own
    as_user(body)


UNCHANGING = r'''
import errno, json, os, shutil
out = {}
def attempt(name, call):
    try:
        call()
        out[name] = "ok"
    except OSError as err:
        out[name] = errno.errorcode.get(err.errno, err.errno)
uid, gid = os.getuid(), os.getgid()
path = "/tmp/owned"
open(path, "w").close()
fd = os.open(path, os.O_RDONLY)
attempt("chown own ids", lambda: os.chown(path, uid, gid))
attempt("lchown own ids", lambda: os.lchown(path, uid, gid))
attempt("shutil.chown", lambda: shutil.chown(path, uid, gid))
attempt("fchown own ids", lambda: os.fchown(fd, uid, gid))
attempt("fchown -1 -1", lambda: os.fchown(fd, -1, -1))
attempt("fchown bad fd", lambda: os.fchown(999, uid, gid))
attempt("setresuid -1", lambda: os.setresuid(-1, -1, -1))
attempt("setresgid -1", lambda: os.setresgid(-1, -1, -1))
attempt("setuid own", lambda: os.setuid(uid))
attempt("setgid own", lambda: os.setgid(gid))
attempt("setreuid own", lambda: os.setreuid(uid, uid))
def spawn():
    pid = os.posix_spawn("/bin/true", ["true"], {}, resetids=True)
    if os.waitpid(pid, 0)[1] != 0:
        raise OSError(errno.ECHILD, "posix_spawn child failed")
attempt("posix_spawn resetids", spawn)
print(json.dumps(out))
'''


def test_calls_that_change_no_id_behave_as_outside(as_user):
    """No seccomp rule refuses an id or owner 'change' to what already is:
    the kernel alone decides (no CAP_SETUID/CAP_CHOWN inside), so these
    succeed, and a bad fd is EBADF, as outside."""
    def body():
        result = json.loads(run_ok(["/usr/bin/python3", "-I", "-c", UNCHANGING]))
        for name, outcome in result.items():
            assert outcome == ("EBADF" if name == "fchown bad fd" else "ok"), (name, outcome)
    as_user(body)


RULES_PROBE = r'''
import ctypes, errno, json, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
NR = json.loads(sys.argv[1])
out = {}
def attempt(name, *args):
    ret = libc.syscall(*[ctypes.c_long(a) if isinstance(a, int) else a for a in [NR[name]] + list(args)])
    out[name] = "ok" if ret >= 0 else errno.errorcode[ctypes.get_errno()]
attempt("io_uring_setup", 1, ctypes.create_string_buffer(120))
attempt("getppid")
attempt("personality", 6)
for family, name in ((2, "inet"), (1, "unix")):
    try:
        socket.socket(family, socket.SOCK_DGRAM).close()
        out["socket " + name] = "ok"
    except OSError as err:
        out["socket " + name] = errno.errorcode[err.errno]
print(json.dumps(out))
'''


def rules_probe(**kwargs):
    numbers = json.dumps(dict(sandbox.SYSCALLS[sandbox.HOST_ARCH]))
    return json.loads(run_ok(["/usr/bin/python3", "-I", "-c", RULES_PROBE, numbers], **kwargs))


def test_user_seccomp_rules_seen_from_inside(as_user):
    """Rules by name, group and argument, allow lifting the preset; a
    container with rules is cloned for itself (no spare has its filter),
    and the containers before and after it keep the default filter."""
    rules = [sandbox.Rule("@io-uring", "deny:EPERM"), sandbox.Rule("getppid", "deny:ENOSYS"),
             sandbox.Rule("personality", "allow"),
             sandbox.Rule("socket", "deny:EACCES", sandbox.Arg(0, "eq", socket.AF_INET))]
    default = {"io_uring_setup": "ENOSYS", "getppid": "ok", "personality": "EPERM",
               "socket inet": "ok", "socket unix": "ok"}
    ruled = {"io_uring_setup": "EPERM", "getppid": "ENOSYS", "personality": "ok",
             "socket inet": "EACCES", "socket unix": "ok"}

    def body():
        assert rules_probe() == default
        assert rules_probe(seccomp_rules=rules) == ruled
        assert rules_probe() == default
        assert rules_probe(seccomp_rules=iter(rules)) == ruled
        c = sandbox.Container("/usr/bin/python3", "-I", "-c", RULES_PROBE,
                              json.dumps(dict(sandbox.SYSCALLS[sandbox.HOST_ARCH])), ops=sandbox.default_ops())
        c.seccomp_rules = rules[:2]
        read_end, write_end = os.pipe()
        c.stdout = write_end
        c.start()
        c.serve()
        os.close(write_end)
        with os.fdopen(read_end) as f:
            seen = json.loads(f.read())
        assert c.wait() == 0
        assert seen == dict(default, io_uring_setup="EPERM", getppid="ENOSYS")
        with pytest.raises(sandbox.SandboxError, match="seccomp"):
            sandbox.run(["true"], seccomp_rules=["ptrace"])
    as_user(body)


# The tests of CPython's own suite that the seed's chown/setuid-family rules
# failed (13 of test_os, test_posix, test_shutil; Debian's
# libpython3.11-testsuite, which .ci/run installs).
CPYTHON_ID_TESTS = ["test_chown_uid_gid_arguments_must_be_index", "test_fchown", "test_chown",
                    "test_lchown", "test_setresgid", "test_setresuid", "test_chown_dir_fd",
                    "test_resetids", "test_setregid_neg1", "test_setreuid_neg1"]


def test_cpythons_own_id_tests_pass_inside(as_user):
    assert os.path.isdir("/usr/lib/python3.11/test"), "needs libpython3.11-testsuite"
    selection = [arg for name in CPYTHON_ID_TESTS for arg in ("-m", name)]

    def body():
        cp = sandbox.run(["/usr/bin/python3", "-m", "test", "test_os", "test_posix", "test_shutil",
                          "-v"] + selection, env=ENV, cwd="/tmp", capture_output=True, timeout=300)
        out = cp.stdout.decode()
        assert cp.returncode == 0, out[-3000:]
        ran = sum(int(n) for n in re.findall(r"^Ran (\d+) tests?", out, re.M))
        assert ran >= 13 and "... ok" in out, out[-3000:]
    as_user(body)


def test_a_directory_fd_passed_in_is_the_only_way_out(as_user):
    """What the caller passes is reachable, and with Landlock (the default)
    not beyond the fd itself; nothing else of the caller is."""
    def body():
        host_dir = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
        try:
            listing = run_ok(["/bin/ls", "/proc/self/fd/3/"], extra_files=[host_dir], landlock="off")
            cp = sandbox.run(["/bin/ls", "/proc/self/fd/3/"], extra_files=[host_dir], env=ENV,
                             capture_output=True)
        finally:
            os.close(host_dir)
        assert "root" in listing.split() or "home" in listing.split()
        assert cp.returncode == 2 and cp.stdout == b"" and b"Permission denied" in cp.stderr, cp
        assert run_ok(["/bin/ls", "/proc/self/fd"]).split() == ["0", "1", "2", "3"]
    as_user(body)


def test_no_way_to_the_host_network(as_user):
    def body():
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        abstract = socket.socket(socket.AF_UNIX)
        name = "\0sandbox-test-%d-%d" % (os.getpid(), port)
        abstract.bind(name)
        abstract.listen(1)
        script = ("import socket\n"
                  "for family, address in ((socket.AF_INET, ('127.0.0.1', %d)), (socket.AF_UNIX, %r)):\n"
                  "    s = socket.socket(family)\n"
                  "    try:\n"
                  "        s.connect(address); print('connected')\n"
                  "    except OSError as e:\n"
                  "        print(e.errno)\n" % (port, name))
        try:
            out = run_ok(["/usr/bin/python3", "-I", "-c", script])
            assert out.split() == [str(errno.ECONNREFUSED)] * 2, out
            # Sharing the network shares its abstract unix sockets, unless
            # Landlock (ABI 6, the default here) scopes them to the sandbox.
            shared = run_ok(["/usr/bin/python3", "-I", "-c", script], flags=sandbox.FAllowNet,
                            landlock="off")
            assert shared.split() == ["connected", "connected"], shared
            scoped = run_ok(["/usr/bin/python3", "-I", "-c", script], flags=sandbox.FAllowNet)
            assert scoped.split() == ["connected", str(errno.EPERM)], scoped
        finally:
            listener.close()
            abstract.close()
    as_user(body)


# ---------------------------------------------------------------------------
# The bwrap personality (sandbox.py run as `bwrap`, through a symlink), as
# the caller and as uid 65534: bubblewrap's defaults and messages.
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bwrap_symlink():
    """A symlink named bwrap to an executable copy of sandbox.py that uid
    65534 can read, as a user would install it."""
    directory = tempfile.mkdtemp(prefix="sandbox-bwrap-")
    os.chmod(directory, 0o755)
    copy = os.path.join(directory, "sandbox.py")
    with open(SANDBOX_PY, "rb") as src, open(copy, "wb") as dst:
        dst.write(src.read())
    os.chmod(copy, 0o755)
    link = os.path.join(directory, "bwrap")
    os.symlink("sandbox.py", link)
    yield link
    os.unlink(link)
    os.unlink(copy)
    os.rmdir(directory)


@pytest.fixture(params=["caller", "nobody"])
def bwrap(request, bwrap_symlink):
    """bwrap(*args, **subprocess_kwargs) -> CompletedProcess of the symlink,
    found through PATH by its shebang's env (/usr/bin/python3 for 65534)."""
    drop = request.param == "nobody" and os.geteuid() == 0
    path = "/usr/bin:/bin" if drop else os.path.dirname(sys.executable) + ":/usr/bin:/bin"

    def run_bwrap(*args, **kwargs):
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("timeout", 60)
        kwargs.setdefault("cwd", "/")
        kwargs.setdefault("env", {"PATH": path, "HOME": "/"})
        return subprocess.run([bwrap_symlink] + list(args), preexec_fn=_drop_ids if drop else None,
                              **kwargs)
    run_bwrap.path = bwrap_symlink
    run_bwrap.preexec = _drop_ids if drop else None
    run_bwrap.env = {"PATH": path, "HOME": "/"}
    return run_bwrap


def test_bwrap_help_version_messages_and_exit_statuses(bwrap):
    cp = bwrap("--version")
    assert (cp.returncode, cp.stdout, cp.stderr) == (0, b"bubblewrap 0.11.1\n", b"")
    cp = bwrap("--ro-bind", "/", "/", "--help", "true")
    assert cp.returncode == 0 and cp.stderr == b""
    assert cp.stdout.startswith(b"usage: %s [OPTIONS...] [--] COMMAND [ARGS...]\n\n"
                                % bwrap.path.encode())
    # bubblewrap 0.11.1's words, a line per option, in its layout.
    lines = cp.stdout.decode().splitlines()[2:]
    for line in (
            "    --unshare-pid                Create new pid namespace",
            "    --unshare-user-try           Create new user namespace if possible else "
            "continue by skipping it",
            "    --die-with-parent            Kills with SIGKILL child process (COMMAND) when "
            "bwrap or bwrap's parent dies.",
            "    --new-session                Create a new terminal session",
            "    --cap-drop CAP               Drop cap CAP when running as privileged user",
            "    --uid UID                    Custom uid in the sandbox (requires --unshare-user "
            "or --userns)",
            "    --userns-block-fd FD         Block on FD until the user namespace is ready",
            "    --overlay RWSRC WORKDIR DEST Mount overlayfs on DEST, with RWSRC as the host "
            "path for writes and",
            "                                 WORKDIR an empty directory on the same filesystem "
            "as RWSRC"):
        assert line in lines
    names = sorted(line.split()[0] for line in lines if line.startswith("    --"))
    assert names == sorted(sandbox._option_index(sandbox.BWRAP))
    assert b"always in force" not in cp.stdout
    for args in ((), ("--ro-bind", "/", "/")):      # no command: usage on stderr, 1
        cp = bwrap(*args)
        assert (cp.returncode, cp.stdout) == (1, b"")
        assert cp.stderr.startswith(b"usage: %s " % bwrap.path.encode())
    cases = [
        (("--frob", "true"), "bwrap: Unknown option --frob"),
        (("--bind", "/nonexistent-source", "/x", "true"),
         "bwrap: Can't find source path /nonexistent-source: No such file or directory"),
        (("--ro-bind", "/", "/", "no-such-command"),
         "bwrap: execvp no-such-command: No such file or directory"),
        (("--ro-bind", "/", "/", "--chdir", "/nonexistent", "true"),
         "bwrap: Can't chdir to /nonexistent: No such file or directory"),
        (("--level-prefix", "--frob", "true"), "<3>bwrap: Unknown option --frob"),
        (("--uid", "12345", "--userns", "x", "true"), "bwrap: Invalid fd: x"),
        (("--cap-add", "kill", "true"), "bwrap: unknown cap: kill"),
        (("--hostname", "box", "true"), "bwrap: Specifying --hostname requires --unshare-uts"),
        (("--as-pid-1", "true"), "bwrap: Specifying --as-pid-1 requires --unshare-pid"),
        (("--exec-label", "x", "true"), "bwrap: labeling not supported on this system"),
    ]
    for args, message in cases:
        cp = bwrap(*args)
        assert (cp.returncode, cp.stderr.decode()) == (1, message + "\n"), args
    cp = bwrap("--level-prefix", "--chdir", "/", "--chdir", "/", "--ro-bind", "/", "/", "true")
    assert (cp.returncode, cp.stderr) == (
        0, b"<4>bwrap: Only the last --chdir option will take effect\n")
    # The command's own status; 128+N for signal N.
    assert bwrap("--ro-bind", "/", "/", "sh", "-c", "exit 7").returncode == 7
    assert bwrap("--ro-bind", "/", "/", "sh", "-c", "kill -9 $$").returncode == 128 + 9
    # --bwrap as the first argument picks the personality too.
    cp = subprocess.run([sys.executable, SANDBOX_PY, "--bwrap", "--version"],
                        capture_output=True, timeout=60)
    assert cp.stdout == b"bubblewrap 0.11.1\n"


def test_bwrap_defaults(bwrap):
    unprivileged = bwrap.preexec is not None or os.geteuid() != 0
    host = dict((ns, os.readlink("/proc/self/ns/" + ns)) for ns in ("user", "pid", "net", "ipc"))
    keep = os.open("/dev/null", os.O_RDONLY)
    try:
        cp = bwrap("--bind", "/", "/", "--tmpfs", "/tmp", "sh", "-c",
                   "id -u; readlink /proc/self/ns/user /proc/self/ns/pid /proc/self/ns/net"
                   " /proc/self/ns/ipc; echo $PWD; test -e /proc/self/fd/%d && echo fd;"
                   " grep -E 'Seccomp:|CapEff' /proc/self/status" % keep,
                   cwd="/usr", pass_fds=(keep,))
    finally:
        os.close(keep)
    assert cp.returncode == 0, cp.stderr
    lines = cp.stdout.decode().split("\n")
    assert lines[0] == ("65534" if unprivileged else str(os.getuid()))
    # a user namespace for a non-root caller only; the host's pid, net, ipc
    assert (lines[1] == host["user"]) != unprivileged
    assert lines[2:5] == [host["pid"], host["net"], host["ipc"]]
    assert lines[5:7] == ["/usr", "fd"]     # the old directory; inherited fds kept
    assert lines[8].split() == ["Seccomp:", "0"]
    own = int(open("/proc/self/status").read().split("CapEff:\t")[1].split()[0], 16)
    assert int(lines[7].split()[1], 16) == (0 if unprivileged else own)
    # Asked for: new namespaces, the command as PID 1, capabilities.
    cp = bwrap("--unshare-pid", "--ro-bind", "/", "/", "--proc", "/proc", "sh", "-c", "echo $$")
    assert cp.stdout == b"2\n", cp.stderr      # init is 1, the command 2, as bubblewrap's
    cp = bwrap("--unshare-all", "--as-pid-1", "--bind", "/", "/", "--proc", "/proc", "sh", "-c",
               "echo $$; readlink /proc/self/ns/net /proc/self/ns/ipc")
    lines = cp.stdout.decode().split()
    assert lines[0] == "1" and lines[1] != host["net"] and lines[2] != host["ipc"], cp.stderr
    cp = bwrap("--unshare-user", "--cap-drop", "ALL", "--cap-add", "CAP_KILL", "--cap-add", "10",
               "--ro-bind", "/", "/",
               "grep", "-E", "Cap(Eff|Amb|Bnd)", "/proc/self/status")
    assert [int(line.split()[1], 16) for line in cp.stdout.decode().splitlines()] == \
        [1 << 5 | 1 << 10] * 3, cp.stderr
    cp = bwrap("--cap-drop", "ALL", "--ro-bind", "/", "/", "grep", "CapEff", "/proc/self/status")
    assert int(cp.stdout.split()[1], 16) == 0
    # The environment: PWD is always set; the $HOME fallback.
    cp = bwrap("--ro-bind", "/", "/", "--clearenv", "/usr/bin/env", cwd="/usr")
    assert cp.stdout == b"PWD=/usr\n"
    here = tempfile.mkdtemp(dir="/tmp")
    os.chmod(here, 0o755)
    try:       # the old directory is not there inside: $HOME
        cp = bwrap("--ro-bind", "/", "/", "--tmpfs", "/tmp", "--setenv", "HOME", "/etc", "sh",
                   "-c", "pwd; echo $PWD", cwd=here)
    finally:
        os.rmdir(here)
    assert cp.stdout == b"/etc\n/etc\n"


def test_bwrap_relative_paths(bwrap):
    """Sources from the current directory, destinations from the
    sandbox's root, as bubblewrap resolves them."""
    here = tempfile.mkdtemp(prefix="sandbox-rel-")
    try:
        os.chmod(here, 0o755)
        for name in ("sub", "lower"):
            os.mkdir(os.path.join(here, name), 0o755)
            with open(os.path.join(here, name, "f"), "w") as f:
                f.write(name)
        cp = bwrap("--ro-bind", "/", "/", "--tmpfs", "/tmp", "--ro-bind", "sub", "tmp/here",
                   "--symlink", "usr/lib", "tmp/link", "--overlay-src", "lower",
                   "--tmp-overlay", "tmp/ov",
                   "sh", "-c", "cat /tmp/here/f; echo; readlink /tmp/link; cat /tmp/ov/f",
                   cwd=here)
        assert (cp.returncode, cp.stdout) == (0, b"sub\nusr/lib\nlower"), cp.stderr
    finally:
        shutil.rmtree(here)


def test_bwrap_reports_the_command_s_status_at_once(bwrap):
    """As bubblewrap's monitor: with --unshare-pid the status comes when
    the command exits; what it left behind is waited for, not killed."""
    go_r, go_w = os.pipe()
    out_r, out_w = os.pipe()
    try:
        cp = subprocess.run([bwrap.path, "--unshare-pid", "--dev-bind", "/", "/", "bash", "-c",
                             "(read x <&%d; echo late >&%d) & exit 3" % (go_r, out_w)],
                            pass_fds=(go_r, out_w), preexec_fn=bwrap.preexec,
                            env=bwrap.env, cwd="/", timeout=60)
        os.close(go_r)
        go_r = None
        os.close(out_w)
        out_w = None
        assert cp.returncode == 3
        assert select.select([out_r], [], [], 0)[0] == []     # still running
        os.write(go_w, b"\n")
        ready, _, _ = select.select([out_r], [], [], 30)
        assert ready and os.read(out_r, 100) == b"late\n"
        ready, _, _ = select.select([out_r], [], [], 30)
        assert ready and os.read(out_r, 100) == b""
    finally:
        _close_all_fds(go_r, go_w, out_r, out_w)


def _close_all_fds(*fds):
    for fd in fds:
        if fd is not None:
            os.close(fd)


def test_bwrap_disable_userns(bwrap):
    cp = bwrap("--unshare-user", "--disable-userns", "--ro-bind", "/", "/", "sh", "-c",
               "unshare -U true || echo refused")
    assert (cp.returncode, cp.stdout) == (0, b"refused\n"), cp.stderr
    cp = bwrap("--assert-userns-disabled", "--ro-bind", "/", "/", "true")
    assert (cp.returncode, cp.stderr) == (
        1, b"bwrap: creation of new user namespaces was not disabled as requested\n")
    # --unshare-user itself, as bubblewrap checks it before a non-root
    # caller's user namespace is implied (--unshare-all's is a "-try").
    for extra in ((), ("--unshare-all",)):
        cp = bwrap(*(extra + ("--disable-userns", "--ro-bind", "/", "/", "true")))
        assert cp.stderr == b"bwrap: --disable-userns requires --unshare-user\n"


def test_bwrap_disable_userns_leaves_init_no_host_proc(bwrap):
    """--disable-userns: PID 1 writes the nested namespace's maps through
    the caller's /proc, opened before it pivoted; it ends dumpable, so the
    command may take any fd it holds (/proc/1/fd).  It holds no directory:
    with that /proc the command saw the host's processes and, as a root
    caller's uid 0, wrote the host's sysctls (bubblewrap closes it too)."""
    cp = bwrap("--unshare-user", "--disable-userns", "--unshare-pid", "--ro-bind", "/", "/",
               "--proc", "/proc", "sh", "-c",
               "for f in /proc/1/fd/*; do test -d $f && echo $f; done; "
               "test -n \"$(ls /proc/1/fd)\" && echo done")     # (it may look)
    assert (cp.returncode, cp.stdout) == (0, b"done\n"), cp


def test_bwrap_init_loads_the_seccomp_programs_too(bwrap):
    """--seccomp, --add-seccomp-fd: bubblewrap's init loads the programs
    as the command does.  It is dumpable and capability-free: a command
    whose filter refuses a call could make PID 1 make it (ptrace, or a
    write to /proc/1/mem), were PID 1 not under the same filter."""
    with tempfile.TemporaryFile() as deny, tempfile.TemporaryFile() as allow, \
            tempfile.TemporaryFile() as bad:
        deny.write(DENY_CHMOD)
        allow.write(_bpf_program([], _RET_ALLOW, _RET_ALLOW))
        bad.write(struct.pack("<HBBI", 0x05, 0, 0, 9))     # a jump out of the program
        fds = [deny.fileno(), allow.fileno(), bad.fileno()]
        for f in (deny, allow, bad):
            f.flush()
            f.seek(0)
        cp = bwrap("--unshare-pid", "--ro-bind", "/", "/", "--proc", "/proc",
                   "--add-seccomp-fd", str(fds[0]), "--add-seccomp-fd", str(fds[1]), "sh", "-c",
                   "grep ^Seccomp /proc/1/status; echo; grep ^Seccomp /proc/$$/status",
                   pass_fds=fds)
        init, command = cp.stdout.decode().split("\n\n")
        assert cp.returncode == 0 and "Seccomp:\t2\nSeccomp_filters:\t2" in command, cp
        assert init + "\n" == command, cp
        cp = bwrap("--unshare-pid", "--ro-bind", "/", "/", "--seccomp", str(fds[2]), "true",
                   pass_fds=fds)
        assert (cp.returncode, cp.stderr) == (1, b"bwrap: Unable to set up system call filtering "
                                              b"as requested: prctl(PR_SET_SECCOMP) reported "
                                              b"EINVAL. (Hint: this requires a kernel configured "
                                              b"with CONFIG_SECCOMP and CONFIG_SECCOMP_FILTER.)\n")


def test_bwrap_init_holds_only_its_channel(bwrap):
    """bubblewrap's personality on the command line: its PID 1 (which sets
    up the container itself, issue 15) holds, while the command runs, its
    channel and nothing else (the caller passed only stdio, which it
    closed), no capability and no_new_privs; its one child is the command,
    PID 2."""
    _needs_root()
    launched = subprocess.Popen(
        [bwrap.path, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "sh", "-c",
         "echo $$; exec sleep 60"],
        preexec_fn=bwrap.preexec, env=bwrap.env, cwd="/", stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    try:
        assert launched.stdout.readline() == b"2\n"
        _init_holding_only_its_channel(launched)
    finally:
        launched.kill()
        launched.communicate()


def test_container_messages_are_read_as_plain_values_only():
    """What the caller reads off a container's channel: marshal's format for
    the values init's messages hold, each message of a shape init sends;
    everything else (other types, malformed or cut bytes) is refused."""
    sent = [("exit", 0), ("exit", 3, "exited", 0, 0.001, 0.0, 0.25, 4096 * 10 ** 6),
            ("exit", 255), ("exec", 2, b"/no/such"), ("exec", 2, "chdir /x"),
            ("error", "setup: \u00e9", 5), ("pid", 123), ("ready",),
            ("namespaces", [("ipc", 4026531839), ("mnt", 5)])]
    for message in sent:
        assert sandbox._container_message(marshal.dumps(message)) == message
    values = [None, True, -2 ** 70, 1.5, "x" * 300, "\u20ac", b"y" * 300, (1, "a"), [("a", 1)]]
    nested = (values, [values, tuple(values)], values)
    assert sandbox._loads_plain(marshal.dumps(nested)) == nested
    assert sandbox._container_message(marshal.dumps(("error", "a\nb\x1b\udcff", 1))) == \
        ("error", "a\\x0ab\\x1b\\udcff", 1)
    for refused in [b"", b"\x00", marshal.dumps(("exit", 0)) + b"x", marshal.dumps(("exit", "0")),
                    marshal.dumps(("exit", 256)), marshal.dumps(("exit", -1)),
                    marshal.dumps(("exec", 2 ** 31, "x")), marshal.dumps(("pid", 0)),
                    marshal.dumps(("exit", 0, "exited", 0, float("nan"), 0.0, 0.0, 0)),
                    marshal.dumps(("namespaces", [('ipc"', 1)])),
                    marshal.dumps(("exit", True)), marshal.dumps(("nope",)),
                    marshal.dumps(("namespaces", [1])), marshal.dumps(compile("1", "", "eval")),
                    marshal.dumps(frozenset([1])), marshal.dumps({"a": 1}),
                    marshal.dumps(((((((1,),),),),),)), b"r\x00\x00\x00\x00",
                    b"(\xff\xff\xff\x7f"]:
        assert sandbox._container_message(refused) is None, refused
    shuffle = random.Random(15)
    for _ in range(3000):       # cut or changed bytes: refused or read, never raised
        data = bytearray(marshal.dumps(shuffle.choice(sent)))
        data[shuffle.randrange(len(data))] = shuffle.randrange(256)
        sandbox._container_message(bytes(data[:shuffle.randint(0, len(data))]))


# The command, inside: it takes PID 1's channel (PID 1 is dumpable, as
# bubblewrap's, so pidfd_getfd works) and sends what init never would.
_FORGED_MESSAGES = r"""
import ctypes, marshal, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
pidfd = libc.syscall(434, 1, 0)                   # pidfd_open(PID 1)
(number,) = [int(fd) for fd in os.listdir("/proc/1/fd")
             if os.readlink("/proc/1/fd/" + fd).startswith("socket:")]
chan = libc.syscall(438, pidfd, number, 0)        # pidfd_getfd
assert pidfd >= 0 and chan >= 0, ctypes.get_errno()
print("sending", flush=True)
for message in sys.argv[1].split(","):
    os.write(chan, bytes.fromhex(message))
time.sleep(60)
"""


_MALFORMED = b"bwrap: sandbox: a malformed message on the container's channel " \
    b"(the container was killed)\n"


@pytest.mark.parametrize("forged, stderr", [
    ([b"\x00not marshal"], _MALFORMED),
    ([marshal.dumps(("exit", "pwn"))], _MALFORMED),
    ([marshal.dumps(compile("1", "", "eval"))], _MALFORMED),
    ([marshal.dumps(("exit", 2 ** 70))], _MALFORMED),             # os._exit's int
    ([marshal.dumps(("exec", 2 ** 31, "x")), marshal.dumps(("exit", 1))], _MALFORMED),  # strerror's
    ([marshal.dumps(("error", "\x1b[31mred\rover\nsecond line", 5)), marshal.dumps(("exit", 1))],
     b"bwrap: \\x1b[31mred\\x0dover\\x0asecond line\n"),
], ids=["garbage", "status-not-int", "code-object", "status-out-of-range",
        "errno-out-of-range", "error-with-escapes"])
def test_bwrap_caller_refuses_messages_init_never_sends(bwrap, forged, stderr):
    """A message on the channel that is none of init's (bytes marshal
    cannot read, a status that is no number or out of range, a code object,
    an errno out of range) ends the container and gives one line, not a
    traceback in the caller nor a status from the sandbox's words; an
    error's text is said in one line, its control characters escaped."""
    cp = bwrap("--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "--proc", "/proc",
               sys.executable if not bwrap.preexec else "/usr/bin/python3", "-c",
               _FORGED_MESSAGES, ",".join(message.hex() for message in forged), timeout=30)
    assert cp.stdout == b"sending\n", cp
    assert cp.stderr == stderr, cp.stderr
    assert cp.returncode == 1, cp


def test_bwrap_userns_block_fd_lets_another_process_write_the_maps(bwrap):
    """--userns-block-fd: the sandbox writes no maps; once --info-fd says
    the pid, a process outside (of the caller's uid) writes them while
    setup waits for a byte; the command then has the ids they give."""
    for extra in (("--unshare-pid", "--proc", "/proc"), ()):
        info_r, info_w = os.pipe()
        block_r, block_w = os.pipe()
        proc = subprocess.Popen(
            [bwrap.path, "--unshare-user", "--info-fd", str(info_w), "--userns-block-fd",
             str(block_r), "--ro-bind", "/", "/"] + list(extra) + [
             "sh", "-c", "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; "
             "test -e /proc/self/fd/%d && echo block-fd-held" % block_r],
            pass_fds=(info_w, block_r), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            preexec_fn=bwrap.preexec, env=bwrap.env, cwd="/")
        os.close(info_w)
        os.close(block_r)
        try:
            info = json.loads(_read_all_fd(info_r))     # EOF: the sandbox holds no copy
            pid = info["child-pid"]
            # Nothing mapped yet: setup waits.
            with open("/proc/%d/uid_map" % pid) as f:
                assert f.read() == ""
            host_uid, host_gid = (NOBODY, NOBODY) if bwrap.preexec else (os.getuid(), os.getgid())
            writer = subprocess.run(
                ["/bin/sh", "-c", "echo '4321 %d 1' > /proc/%d/uid_map && echo deny > "
                 "/proc/%d/setgroups && echo '4322 %d 1' > /proc/%d/gid_map"
                 % (host_uid, pid, pid, host_gid, pid)],
                preexec_fn=bwrap.preexec, capture_output=True, env=ENV)
            assert writer.returncode == 0, writer.stderr
            os.write(block_w, b"x")
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            _close_all_fds(info_r, block_w)
        assert proc.returncode == 0, err
        lines = out.decode().split("\n")
        assert lines[:2] == ["4321", "4322"]
        assert lines[2].split() == ["4321", str(host_uid), "1"]
        assert lines[3].split() == ["4322", str(host_gid), "1"]
        # As bubblewrap's (0.8, tried): the command inherits the block fd.
        assert lines[4] == "block-fd-held", lines
    # bubblewrap's checks and words: --unshare-user itself, and --info-fd.
    for args, message in (
            (("--userns-block-fd", "0", "--info-fd", "1"),
             "--userns-block-fd requires --unshare-user"),
            (("--unshare-all", "--userns-block-fd", "0", "--info-fd", "1"),
             "--userns-block-fd requires --unshare-user"),
            (("--unshare-user", "--userns-block-fd", "0"), "--userns-block-fd requires --info-fd"),
            (("--unshare-user", "--disable-userns", "--userns-block-fd", "0", "--info-fd", "1"),
             "--disable-userns is not compatible with  --userns-block-fd"),
            (("--userns-block-fd", "x"), "Invalid fd: x"),
            (("--unshare-all", "--userns", "0"), "--userns not compatible --unshare-user-try")):
        cp = bwrap(*(args + ("--ro-bind", "/", "/", "true")))
        assert (cp.returncode, cp.stderr) == (1, b"bwrap: %s\n" % message.encode())
    # The hardened personality maps its ids itself: no such option.
    cp = subprocess.run([sys.executable, SANDBOX_PY, "--userns-block-fd", "0", "true"],
                        capture_output=True)
    assert cp.returncode == 2 and b"Unknown option --userns-block-fd" in cp.stderr


def test_userns_block_fd_is_a_field_of_bubblewraps_defaults_only():
    c = sandbox.Container("/bin/true", ops=sandbox.default_ops())
    c.userns_block_fd = 0
    with pytest.raises(sandbox.SandboxError, match="only with bubblewrap's defaults"):
        c.start()
    c = sandbox.Container("/bin/true", ops=sandbox.default_ops())
    c.hardened, c.userns_block_fd = False, 0
    with pytest.raises(sandbox.SandboxError, match="needs a new user namespace"):
        c.start()


def test_bwrap_die_with_parent_takes_the_tree_down(bwrap):
    # The command holds an inherited pipe: EOF once bwrap, its init and the
    # command are all gone after their starter is killed.
    starter = ("import os, subprocess, sys, time\n"
               "subprocess.Popen(sys.argv[2:], close_fds=False)\n"
               "os.close(int(sys.argv[1]))\n"
               "print('started', flush=True)\n"
               "time.sleep(60)\n")
    for extra in ((), ("--unshare-pid",)):
        read_end, write_end = os.pipe()
        os.set_inheritable(write_end, True)
        proc = subprocess.Popen(
            ["/usr/bin/python3", "-c", starter, str(write_end), bwrap.path, "--die-with-parent"]
            + list(extra) + ["--ro-bind", "/", "/", "sh", "-c", "echo up; exec sleep 60"],
            stdout=subprocess.PIPE, preexec_fn=bwrap.preexec, env=bwrap.env, cwd="/",
            close_fds=False)
        os.close(write_end)
        try:
            assert proc.stdout.readline() == b"started\n"
            assert proc.stdout.readline() == b"up\n"
            proc.kill()
            proc.wait()
            ready, _, _ = select.select([read_end], [], [], 20)
            assert ready and os.read(read_end, 1) == b"", "the sandbox outlived its starter"
        finally:
            proc.stdout.close()
            os.close(read_end)


# ---------------------------------------------------------------------------
# Landlock: the ruleset derived from the operations, scoping, port rules.
# ---------------------------------------------------------------------------

LANDLOCK_PROBE = r"""
import errno, json, os, sys
out = {}
def attempt(name, call):
    try:
        call()
        out[name] = "ok"
    except OSError as err:
        out[name] = errno.errorcode[err.errno]
def write(path, dir_fd=None):
    def call():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o666, dir_fd=dir_fd)
        os.write(fd, b"x")
        os.close(fd)
    return call
def read(path, dir_fd=None):
    return lambda: os.close(os.open(path, os.O_RDONLY, dir_fd=dir_fd))
attempt("mount rw", write("/rw/new"))
attempt("mount ro", write("/ro/new"))
attempt("fd rw write", write("rw/f", 3))
attempt("fd ro read", read("ro/f", 3))
attempt("fd ro write", write("ro/f", 3))
attempt("fd other read", read("other/f", 3))
attempt("fd mkdir", lambda: os.mkdir("made", dir_fd=3))
attempt("fd itself", lambda: os.fstat(3))
print(json.dumps(out))
"""


def landlock_tree():
    """A host directory with rw/, ro/ and other/ (each holding a file f),
    usable by uid 65534; returns its path."""
    top = tempfile.mkdtemp(prefix="sandbox-landlock-")
    os.chmod(top, 0o777)
    for name in ("rw", "ro", "other"):
        os.mkdir(os.path.join(top, name), 0o777)
        os.chmod(os.path.join(top, name), 0o777)
        with open(os.path.join(top, name, "f"), "w") as f:
            f.write("data")
        os.chmod(os.path.join(top, name, "f"), 0o666)
    return top


def test_landlock_ruleset_is_the_one_the_operations_derive(as_user):
    """Reached through a host directory fd (where the host's mount allows
    everything), what lies beneath a writable bind may be written, beneath a
    read-only bind only read, and elsewhere nothing: the rules are the
    operations', not the mounts'."""
    top = landlock_tree()

    def body():
        ops = (sandbox.default_ops().bind(top + "/rw", "/rw", sandbox.BindWritable)
               .bind(top + "/ro", "/ro"))
        fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
        try:
            confined = json.loads(run_ok(["/usr/bin/python3", "-I", "-c", LANDLOCK_PROBE],
                                         ops=ops, extra_files=[fd], landlock="require"))
            free = json.loads(run_ok(["/usr/bin/python3", "-I", "-c", LANDLOCK_PROBE],
                                     ops=ops, extra_files=[fd], landlock="off"))
        finally:
            os.close(fd)
        assert confined == {"mount rw": "ok", "mount ro": "EROFS", "fd rw write": "ok",
                            "fd ro read": "ok", "fd ro write": "EACCES",
                            "fd other read": "EACCES", "fd mkdir": "EACCES",
                            "fd itself": "ok"}, confined
        assert free == dict(confined, **{"fd ro write": "ok", "fd other read": "ok",
                                         "fd mkdir": "ok"}), free
        os.rmdir(os.path.join(top, "made"))
    try:
        as_user(body)
    finally:
        shutil.rmtree(top)


def test_ordinary_programs_run_under_the_derived_ruleset(as_user):
    script = textwrap.dedent(r"""
        set -e
        printf 'b\na\nc\n' | sort | tr a-z A-Z | head -n 2 | wc -l
        python3 -I -c 'import json, subprocess, tempfile; print(json.dumps(subprocess.run(["echo", "py"], capture_output=True, text=True).stdout.strip()))'
        printf '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n' > /tmp/hello.c
        cc -o /tmp/hello /tmp/hello.c
        /tmp/hello
        mkdir -p /tmp/a/b && mv /tmp/hello.c /tmp/a/b/ && ls /tmp/a/b
        echo stderr-again >> /dev/stderr
        ls / >/dev/null && cat /proc/self/stat >/dev/null && echo 0 > /proc/self/oom_score_adj
        python3 -I -c 'import os, pty; m, s = pty.openpty(); print(os.ttyname(s))'
        """)

    def body():
        with tempfile.TemporaryFile() as err:
            # (/dev/stderr reopens the file: a root caller's sandbox is uid
            # 65534 on the host, which root's 0600 file would refuse.)
            os.fchmod(err.fileno(), 0o666)
            cp = sandbox.run(["/bin/sh", "-c", script], env=ENV, stdout=subprocess.PIPE,
                             stderr=err, landlock="require")
            err.seek(0)
            errors = err.read()
        assert cp.returncode == 0, (cp, errors)
        assert cp.stdout.decode().split() == ["2", '"py"', "hello", "hello.c", "/dev/pts/0"]
        assert errors == b"stderr-again\n"
    as_user(body)


def test_landlock_limits_tcp_bind_and_connect_to_the_given_ports(as_user):
    script = textwrap.dedent("""
        import errno, socket
        def attempt(what, call):
            try:
                call()
                print(what, "ok")
            except OSError as err:
                print(what, errno.errorcode[err.errno])
        servers = []
        for port in (5001, 5002, 5003):
            s = socket.socket()
            servers.append(s)
            attempt("bind %d" % port, lambda: (s.bind(("127.0.0.1", port)), s.listen(4)))
        for port in (5001, 5002):
            attempt("connect %d" % port, lambda: socket.socket().connect(("127.0.0.1", port)))
        attempt("udp", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).bind(("127.0.0.1", 5003)))
        """)

    def body():
        out = run_ok(["/usr/bin/python3", "-I", "-c", script],
                     allow_bind=[5001, 5002], allow_connect=[5001])
        assert out.splitlines() == ["bind 5001 ok", "bind 5002 ok", "bind 5003 EACCES",
                                    "connect 5001 ok", "connect 5002 EACCES", "udp ok"]
        out = run_ok(["/usr/bin/python3", "-I", "-c", script], allow_connect=[])
        assert out.splitlines() == ["bind 5001 ok", "bind 5002 ok", "bind 5003 ok",
                                    "connect 5001 EACCES", "connect 5002 EACCES", "udp ok"]
        out = run_ok(["/usr/bin/python3", "-I", "-c", script])
        assert "EACCES" not in out
    as_user(body)


def test_port_rules_cannot_be_bypassed_with_mptcp(as_user):
    """Landlock checks TCP sockets only: an MPTCP one (falling back to TCP
    with a TCP peer) would bind and connect on any port.  With port rules,
    socket() refuses it, the high half of the protocol argument too."""
    script = textwrap.dedent("""
        import ctypes, errno, socket
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        def attempt(what, call):
            try:
                call()
                print(what, "ok")
            except OSError as err:
                print(what, errno.errorcode[err.errno])
        server = socket.socket()
        server.bind(("127.0.0.1", 5002))
        server.listen(4)
        mptcp = lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
        attempt("mptcp bind", lambda: mptcp().bind(("127.0.0.1", 5003)))
        attempt("mptcp connect", lambda: mptcp().connect(("127.0.0.1", 5002)))
        fd = libc.syscall(ctypes.c_long(41), ctypes.c_long(socket.AF_INET6),
                          ctypes.c_long(socket.SOCK_STREAM), ctypes.c_long(262 | 1 << 32))
        print("mptcp high half", errno.errorcode[ctypes.get_errno()] if fd < 0 else "ok")
        """)

    def body():
        out = run_ok(["/usr/bin/python3", "-I", "-c", script], allow_connect=[5001])
        assert out.splitlines() == ["mptcp bind EPROTONOSUPPORT",
                                    "mptcp connect EPROTONOSUPPORT",
                                    "mptcp high half EPROTONOSUPPORT"]
        out = run_ok(["/usr/bin/python3", "-I", "-c", script], allow_bind=[5002])
        assert "ok" not in out
        out = run_ok(["/usr/bin/python3", "-I", "-c", script])   # no port rules: as outside
        assert out.splitlines() == ["mptcp bind ok", "mptcp connect ok", "mptcp high half ok"]
    as_user(body)


def test_the_sandbox_signals_its_own_and_is_signalled_under_landlock(as_user):
    """Signal scoping leaves PID 1 able to kill what it started, and the
    caller able to signal the sandbox."""
    def body():
        out = sh("sleep 30 & kill $!; wait $!; echo $?", landlock="require")
        assert out.split() == [str(128 + signal.SIGTERM)]
        c = sandbox.Container("/bin/sleep", "30", ops=sandbox.default_ops())
        c.landlock = "require"
        c.start()
        c.serve()
        c.stop()
        assert c.wait(timeout=30) == 128 + signal.SIGTERM
        c.close()
    as_user(body)


@pytest.mark.skipif(os.geteuid() != 0, reason="entering a sandbox's namespaces takes root")
def test_landlock_scopes_signals_to_the_sandbox():
    """A process that joins the sandbox's PID namespace from outside (as
    the same user inside) is out of the command's reach under Landlock."""
    script = ("import os, sys\n"
              "pid = int(sys.stdin.readline())\n"
              "try:\n"
              "    os.kill(pid, 0); print('reached')\n"
              "except OSError as err:\n"
              "    print(err.errno)\n")
    results = {}
    for mode in ("off", "require"):
        read_end, write_end = os.pipe()
        c = sandbox.Container("/usr/bin/python3", "-I", "-c", script, ops=sandbox.default_ops())
        c.landlock, c.env, c.stdin, c.stdout = mode, ENV, read_end, subprocess.PIPE
        out_r, out_w = os.pipe()
        c.stdout = out_w
        c.start()
        c.serve()
        os.close(read_end)
        os.close(out_w)
        intruder = subprocess.Popen(["nsenter", "-t", str(c.pid), "-U", "-p", "-S", "65534",
                                     "-G", "65534", "--", "/bin/sleep", "30"])
        try:
            inner = None
            for _ in range(500):
                children = open("/proc/%d/task/%d/children" % (intruder.pid, intruder.pid)).read().split()
                if children:
                    status = open("/proc/%s/status" % children[0]).read()
                    nspid = [line for line in status.splitlines() if line.startswith("NSpid:")]
                    if "sleep" in open("/proc/%s/comm" % children[0]).read():
                        inner = nspid[0].split()[-1]
                        break
                time.sleep(0.01)
            assert inner is not None
            os.write(write_end, inner.encode() + b"\n")
            os.close(write_end)
            assert c.wait(timeout=30) == 0
            with os.fdopen(out_r, "rb") as f:
                results[mode] = f.read().strip()
        finally:
            intruder.kill()
            intruder.wait()
            c.close()
    assert results == {"off": b"reached", "require": str(errno.EPERM).encode()}, results


def test_allow_userns_keeps_mounts_possible_under_auto(as_user):
    """Landlock refuses every mount to a process whose file system it
    restricts: with FAllowUserns "auto" leaves the file system out, and
    "require" does not."""
    script = "unshare -Urm sh -c 'mount -t tmpfs none /tmp && echo mounted'"

    def body():
        cp = sandbox.run(["/bin/sh", "-c", script], env=ENV, capture_output=True,
                         flags=sandbox.FAllowUserns)
        assert cp.stdout == b"mounted\n", cp
        cp = sandbox.run(["/bin/sh", "-c", script], env=ENV, capture_output=True,
                         flags=sandbox.FAllowUserns, landlock="require")
        assert cp.returncode != 0 and b"Operation not permitted" in cp.stderr, cp
    as_user(body)


def _refuse_landlock():
    """A seccomp filter answering ENOSYS to landlock_create_ruleset, as on a
    kernel without Landlock (this process and what it starts)."""
    program = struct.pack("=HBBI", 0x20, 0, 0, 0)                    # ld nr
    program += struct.pack("=HBBI", 0x15, 0, 1, sandbox.SYS_landlock_create_ruleset)
    program += struct.pack("=HBBI", 0x06, 0, 0, sandbox.SECCOMP_RET_ERRNO | errno.ENOSYS)
    program += struct.pack("=HBBI", 0x06, 0, 0, sandbox.SECCOMP_RET_ALLOW)
    sandbox._prctl(sandbox.PR_SET_NO_NEW_PRIVS, 1)
    sandbox._load_filter(program)


def test_without_landlock_auto_runs_and_require_fails_clearly():
    def body():
        assert sandbox._landlock_abi() >= 6      # this machine: ABI 7
        _refuse_landlock()
        assert sandbox._landlock_abi() == 0
        assert run_ok(["/bin/echo", "ran"]) == "ran\n"
        for kwargs, message in (({"landlock": "require"}, "landlock: required"),
                                ({"allow_connect": [80]}, "landlock: allow_connect")):
            with pytest.raises(sandbox.SandboxError, match=message) as info:
                sandbox.run(["/bin/true"], **kwargs)
            assert info.value.errno == errno.EOPNOTSUPP
    _run_forked(body, drop=False)


def test_landlock_rules_of_many_operations_need_no_fd_each(as_user):
    """Each operation's target goes into the ruleset as it is applied, so
    the worker's fd limit does not bound the number of operations."""
    def body():
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        ops = sandbox.default_ops()
        for i in range(100):
            ops.bind("/usr/share", "/tmp/b%d" % i)
        out = sh("ls /tmp/b99 >/dev/null && echo listed; touch /tmp/b0/x 2>&1 | grep -c Read-only",
                 ops=ops, landlock="require")
        assert out.split() == ["listed", "1"]
    as_user(lambda: _run_forked(body, drop=False))


@pytest.mark.parametrize("setup,message", [
    (lambda c: setattr(c, "landlock", "on"), "landlock: invalid mode 'on'"),
    (lambda c: setattr(c, "landlock", None), "landlock: invalid mode None"),
    (lambda c: setattr(c, "allow_connect", [80, 70000]), "allow_connect: invalid port 70000"),
    (lambda c: setattr(c, "allow_bind", ["80"]), "allow_bind: invalid port '80'"),
    (lambda c: setattr(c, "allow_bind", 80), "allow_bind: expected a list of ports"),
    (lambda c: setattr(c, "allow_connect", [True]), "allow_connect: invalid port True"),
])
def test_bad_landlock_settings_are_refused_before_anything_starts(setup, message):
    c = sandbox.Container("/bin/true", ops=sandbox.default_ops())
    setup(c)
    with pytest.raises(sandbox.SandboxError, match=re.escape(message)) as info:
        c.start()
    assert info.value.errno == errno.EINVAL


def test_ports_with_landlock_off_are_refused(as_user):
    def body():
        with pytest.raises(sandbox.SandboxError, match="landlock: allow_connect/allow_bind need"):
            sandbox.run(["/bin/true"], landlock="off", allow_bind=[80])
    as_user(body)


def test_32_bit_syscalls_kill_the_process(as_user):
    if sandbox.HOST_ARCH != "x86_64":
        pytest.skip("int 0x80 is an x86 instruction")
    script = (
        "import ctypes, mmap\n"
        "code = bytes([0xb8, 20, 0, 0, 0, 0xcd, 0x80, 0xc3])   # mov eax, 20 (getpid); int 0x80; ret\n"
        "m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
        "m.write(code)\n"
        "address = ctypes.addressof(ctypes.c_char.from_buffer(m))\n"
        "print('calling', flush=True)\n"
        "ctypes.CFUNCTYPE(ctypes.c_int)(address)()\n"
        "print('survived')\n")

    def body():
        cp = sandbox.run(["/usr/bin/python3", "-I", "-c", script], capture_output=True, env=ENV)
        assert cp.returncode == 128 + signal.SIGSYS, cp
        assert cp.stdout == b"calling\n"
        cp = sandbox.run(["/usr/bin/python3", "-I", "-c", script], capture_output=True, env=ENV,
                         seccomp=sandbox.FlagMultiarch)
        assert cp.returncode == 0 and cp.stdout.endswith(b"survived\n"), cp
    as_user(body)


def test_size_limited_tmpfs_fills_inside_only(as_user):
    def body():
        ops = sandbox.default_ops().tmpfs("/small", 1 << 20, 0o755)
        out = sh("dd if=/dev/zero of=/small/fill bs=64k count=64 2>&1; echo status=$?", ops=ops)
        assert "No space left on device" in out and "status=1" in out
    as_user(body)


FILL_SCRIPT = '''\
import errno, os, sys
def fill(path, limit):
    """Write zeros to path until ENOSPC (or limit bytes): the bytes written."""
    written, chunk = 0, b"\\0" * 65536
    with open(path, "wb") as f:
        try:
            while written < limit:
                written += os.write(f.fileno(), chunk)
        except OSError as err:
            assert err.errno == errno.ENOSPC, err
            return written
    return None
def files(directory, limit):
    """Create empty files until ENOSPC (or limit): how many were made."""
    for i in range(limit):
        try:
            os.close(os.open("%s/f%d" % (directory, i), os.O_CREAT | os.O_WRONLY, 0o644))
        except OSError as err:
            assert err.errno == errno.ENOSPC, err
            return i
    return None
for spec in sys.argv[1:]:
    kind, path, limit = spec.split(":")
    print(kind, path, (fill if kind == "fill" else files)(path, int(limit)))
'''


def fill_inside(specs, **kwargs):
    """{(kind, path): bytes or files made before ENOSPC, None if never}."""
    out = run_ok(["/usr/bin/python3", "-I", "-c", FILL_SCRIPT] + specs, **kwargs)
    result = {}
    for line in out.splitlines():
        kind, path, value = line.split()
        result[kind, path] = None if value == "None" else int(value)
    return result


def test_tmpfs_is_bounded(as_user):
    """The new root and /dev hold what setup put there and little more
    (root inside owns them, and could fill the host's memory); /dev/shm
    and a tmpfs without a size get a default bound; every size bounds
    inodes too (one per 4 KiB)."""
    def body():
        result = fill_inside(["fill:/fill:%d" % (8 << 20), "files:/:100000",
                              "fill:/dev/fill:%d" % (8 << 20), "files:/dev:100000"],
                             uid=0, gid=0, landlock="off")     # (Landlock refuses it first)
        assert result["fill", "/fill"] is not None and result["fill", "/fill"] < 1 << 20, result
        assert result["files", "/"] is not None and result["files", "/"] < 1000, result
        assert result["fill", "/dev/fill"] is not None and result["fill", "/dev/fill"] < 1 << 20
        assert result["files", "/dev"] is not None and result["files", "/dev"] < 1000, result
        # /dev/shm: its own tmpfs of 64 MiB (filled for real once)
        result = fill_inside(["fill:/dev/shm/fill:%d" % (128 << 20)])
        assert result["fill", "/dev/shm/fill"] == 64 << 20, result
        entries = mountinfo_inside(sandbox.default_ops())
        assert {"size=65536k", "nr_inodes=16384"} <= set(entries["/dev/shm"].super_options)
        assert {"size=262144k", "nr_inodes=65536"} <= set(entries["/tmp"].super_options)
        # a size bounds inodes too; a tmpfs over /dev/shm or /tmp overrides the default
        ops = sandbox.default_ops().tmpfs("/x", 1 << 20).tmpfs("/dev/shm", 1 << 20, 0o1777)
        ops.tmpfs("/tmp", 2 << 20, 0o1777)
        result = fill_inside(["files:/x:100000", "fill:/dev/shm/f:%d" % (8 << 20),
                              "fill:/tmp/f:%d" % (8 << 20)], ops=ops)
        # (256 inodes: the root directory is one of them)
        assert result == {("files", "/x"): 255, ("fill", "/dev/shm/f"): 1 << 20,
                          ("fill", "/tmp/f"): 2 << 20}, result
    as_user(body)


def test_staged_data_fits_its_bounded_staging(as_user):
    """Place data is staged on the intermediate root, and File data is
    written into the new root or /dev: each is sized by what the
    operations carry, so 5 MiB of files are placed whole."""
    def body():
        data = [bytes([i]) * (1 << 20) for i in range(5)]
        ops = sandbox.default_ops()
        for i, chunk in enumerate(data):
            ops.place("/placed%d" % i, chunk)
        out = run_ok(["/bin/sh", "-c", "cat /placed0 /placed1 /placed2 /placed3 /placed4 | sha256sum"],
                     ops=ops)
        assert out.split()[0] == hashlib.sha256(b"".join(data)).hexdigest()
        # a file written into the new root itself: the root is sized by it
        ops = sandbox.default_ops().file("/written", data[0]).file("/dev/written", data[1])
        out = run_ok(["/bin/sh", "-c", "cat /written /dev/written | sha256sum"], ops=ops)
        assert out.split()[0] == hashlib.sha256(data[0] + data[1]).hexdigest()
    as_user(body)


def test_nothing_outlives_the_sandbox_or_a_killed_caller(as_user):
    def body():
        marker = "outlive-%d-%d" % (os.getpid(), time.monotonic_ns())
        script = textwrap.dedent("""\
            import os, sys, time
            sys.path.insert(0, %r)
            import sandbox
            c = sandbox.Container("/bin/sh", "-c", "sleep 60; : %s", ops=sandbox.default_ops())
            c.env = {"PATH": "/usr/bin:/bin"}
            c.start(); c.serve()
            print(c.pid, flush=True)
            time.sleep(60)
            """ % (os.path.dirname(sandbox.__file__), marker))
        proc = subprocess.Popen([sys.executable if os.geteuid() == 0 or not os.path.exists(SYSTEM_PYTHON) else SYSTEM_PYTHON,
                                 "-c", script], stdout=subprocess.PIPE)
        line = proc.stdout.readline()
        assert line.strip().isdigit(), line
        assert subprocess.run(["pgrep", "-f", marker], capture_output=True).stdout
        proc.kill()                         # SIGKILL: no cleanup code runs in the caller
        proc.wait()
        proc.stdout.close()
        assert_gone_soon(marker, "the sandbox outlived its killed caller")
    if os.geteuid() == 0:
        body()
    as_user(body) if os.geteuid() != 0 else _run_forked(body, drop=False)


def test_data_written_to_a_writable_bind_is_complete(as_user):
    def body():
        directory = tempfile.mkdtemp(prefix="sandbox-write-")
        try:
            ops = sandbox.default_ops().bind(directory, "/out", sandbox.BindWritable)
            cp = sandbox.run(["/bin/sh", "-c", "head -c 3000000 /dev/zero > /out/data; kill -KILL $$"],
                             ops=ops, env=ENV)
            assert cp.returncode == 128 + 9
            assert os.path.getsize(os.path.join(directory, "data")) == 3000000
        finally:
            subprocess.run(["rm", "-rf", directory])
    as_user(body)


def test_a_dangling_symlink_source_is_refused(as_user):
    def body():
        directory = tempfile.mkdtemp(prefix="sandbox-dangle-")
        link = os.path.join(directory, "dangling")
        os.symlink(os.path.join(directory, "missing"), link)
        try:
            with pytest.raises(sandbox.SandboxError, match="No such file") as info:
                sandbox.run(["/bin/true"], ops=sandbox.default_ops().bind(link, "/x"))
            assert info.value.errno == errno.ENOENT
            cp = sandbox.run(["/bin/true"], ops=sandbox.default_ops().bind(link, "/x", sandbox.BindOptional))
            assert cp.returncode == 0
        finally:
            subprocess.run(["rm", "-rf", directory])
    as_user(body)


def test_user_namespaces_unavailable():
    """max_user_namespaces = 0 in a user namespace of the test's own: a
    clear SandboxError, nothing left behind."""
    def body():
        uid, gid = os.geteuid(), os.getegid()
        sandbox._prctl(sandbox.PR_SET_DUMPABLE, 1)     # setresuid cleared it
        assert libc.unshare(0x10000000) == 0, ctypes.get_errno()
        for path, data in (("/proc/self/uid_map", "0 %d 1" % uid), ("/proc/self/setgroups", "deny"),
                           ("/proc/self/gid_map", "0 %d 1" % gid)):
            with open(path, "w") as f:
                f.write(data)
        with open("/proc/sys/user/max_user_namespaces", "w") as f:
            f.write("0")
        with pytest.raises(sandbox.SandboxError, match="user namespaces") as info:
            sandbox.run(["/bin/true"])
        assert info.value.errno in (errno.ENOSPC, errno.EPERM, errno.EUSERS)
    _run_forked(body, drop=os.geteuid() == 0)


def test_the_callers_stdout_closed(cli):
    command = ["sh", "-c", 'exec 1>&-; exec "$@"', "sh"]
    cp = subprocess.run(command + ([SYSTEM_PYTHON, cli_copy_path()] if cli.unprivileged and os.geteuid() == 0
                                   else [sys.executable, SANDBOX_PY]) + ["--", "sh", "-c", "echo lost; echo kept >&2"],
                        stderr=subprocess.PIPE, timeout=60, cwd="/",
                        preexec_fn=_drop_ids if cli.unprivileged and os.geteuid() == 0 else None)
    assert b"Traceback" not in cp.stderr
    assert b"kept" in cp.stderr
    assert cp.returncode in (0, 1, 2)


def test_sigint_ignored_by_the_callers_caller_is_still_forwarded(cli):
    """A command line started with SIGINT ignored (a shell's background
    job): its handlers are in place before -v says anything, so a SIGINT
    from then on is forwarded, never lost while the sandbox runs on."""
    def preexec():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if cli.preexec is not None:
            cli.preexec()
    marker = "20.%09d" % (time.monotonic_ns() % 10**9)
    for _ in range(3):
        proc = subprocess.Popen(cli.command + ["-v", "--", "/bin/sleep", marker],
                                stderr=subprocess.PIPE, cwd="/", preexec_fn=preexec)
        try:
            assert proc.stderr.readline().startswith(b"sandbox: argv")
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=15)
            assert proc.returncode == 128 + signal.SIGINT and b"Traceback" not in err, err
        finally:
            proc.kill()
            proc.communicate()
    assert_gone_soon(marker, "a sandbox survived a SIGINT to its caller")


def test_signals_to_the_caller_during_setup_leave_nothing(cli):
    # The command is sleep itself (its unique duration is the marker): a
    # shell would be free to defer SIGINT until its child exits.
    marker = "30.%09d" % (time.monotonic_ns() % 10**9)
    drop = cli.unprivileged and os.geteuid() == 0
    command = [SYSTEM_PYTHON, cli_copy_path()] if drop else [sys.executable, SANDBOX_PY]
    for delay in (0.0, 0.001, 0.003, 0.006, 0.02):
        for sig in (signal.SIGINT, signal.SIGTERM):
            proc = subprocess.Popen(command + ["-v", "--", "/bin/sleep", marker],
                                    stderr=subprocess.PIPE, cwd="/",
                                    preexec_fn=_drop_ids if drop else None)
            first = proc.stderr.readline()       # -v: printed just before setup starts
            assert first.startswith(b"sandbox: argv"), first
            time.sleep(delay)
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=30)
            assert b"Traceback" not in err, err
            assert proc.returncode != 0
    assert_gone_soon(marker, "a sandbox survived a signal to its caller")


def test_low_fd_limit(as_user):
    def body():
        resource.setrlimit(resource.RLIMIT_NOFILE, (24, 24))
        try:
            cp = sandbox.run(["/bin/echo", "fine"], capture_output=True)
            assert cp.stdout == b"fine\n"
        except sandbox.SandboxError as err:
            assert err.errno in (errno.EMFILE, errno.ENFILE), err
    _run_forked(body, drop=False) if os.geteuid() != 0 else as_user(lambda: _run_forked(body, drop=False))


def _random_ops(rng, scratch):
    """A random operation list: mostly sensible, some broken on purpose."""
    ops = sandbox.default_ops() if rng.random() < 0.8 else sandbox.Ops()
    paths = ["/a", "/a/b", "/tmp/x", "/usr/lib", "/etc/passwd", "/dev/null", "/proc", "/x/../y",
             "relative", "", "/tmp/" + "n" * 300, "/with space", "/new\nline", "/a/./b//c"]
    sources = [scratch, "/usr", "/etc/hostname", "/nonexistent", "/dev/null", scratch + "/file",
               "relative", "/proc/self", scratch + "/link"]
    for _ in range(rng.randint(0, 6)):
        kind = rng.choice(["bind", "tmpfs", "mkdir", "link", "place", "proc", "dev", "mqueue"])
        dest = rng.choice(paths)
        if kind == "bind":
            ops.bind(rng.choice(sources), dest, rng.choice([0, 1, 2, 3, 4, 7, 9]))
        elif kind == "tmpfs":
            ops.tmpfs(dest, rng.choice([0, 4096, 1 << 20, -1, 1 << 62]), rng.choice([0o755, 0o1777, 0o70000]))
        elif kind == "mkdir":
            ops.mkdir(dest, rng.choice([0o755, 0o700, -5]))
        elif kind == "link":
            ops.link(rng.choice(["/usr", "*/bin", "../..", scratch, "", "x"]), dest)
        elif kind == "place":
            ops.place(dest, rng.choice([b"data", b"", "text", None, bytearray(b"x" * 70000)]))
        else:
            getattr(ops, kind)(dest)
    return ops


def test_randomised_operation_lists_run_or_fail_cleanly():
    scratch = tempfile.mkdtemp(prefix="sandbox-random-")
    os.chmod(scratch, 0o755)
    with open(os.path.join(scratch, "file"), "w") as f:
        f.write("content")
    os.symlink("/etc", os.path.join(scratch, "link"))
    before = sorted(os.listdir(scratch))
    argvs = [["/bin/true"], ["/bin/sh", "-c", "ls / >/dev/null"], ["nope"], ["/etc"], [""],
             ["/bin/echo", "\u00e9\u00e8"], ["/bin/sh", "-c", "exit 3"]]
    deadline = time.monotonic() + 90
    outcomes = {"ran": 0, "refused": 0}
    try:
        for seed in range(80):
            if time.monotonic() > deadline:
                break
            rng = random.Random(seed)
            ops = _random_ops(rng, scratch)
            argv = rng.choice(argvs)
            try:
                cp = sandbox.run(argv, ops=ops, env=ENV, capture_output=True, timeout=20,
                                 uid=rng.choice([0, 1000, -1]))
                assert isinstance(cp.returncode, int)
                outcomes["ran"] += 1
            except sandbox.SandboxError as err:
                assert str(err) and "\n" not in str(err).strip("\n"), repr(str(err))
                outcomes["refused"] += 1
        assert outcomes["ran"] > 5 and outcomes["refused"] > 5, outcomes
        # nothing written outside writable binds of the scratch directory
        leftovers = set(os.listdir(scratch)) - set(before)
        assert all(name in ("a", "b", "x", "y", "new\nline", "with space") or name.startswith("n")
                   for name in leftovers), leftovers
    finally:
        subprocess.run(["rm", "-rf", scratch])


def test_helper_ignores_modules_beside_the_vendored_file():
    """A vendored copy next to a module that shadows the standard library
    (here select.py) still starts its helper from the standard library,
    and the helper writes no bytecode beside it."""
    directory = tempfile.mkdtemp(prefix="sandbox-vendored-")
    try:
        with open(SANDBOX_PY, "rb") as src, open(os.path.join(directory, "sandbox.py"), "wb") as dst:
            dst.write(src.read())
        with open(os.path.join(directory, "select.py"), "w") as f:
            f.write("raise ImportError('the shadowing select.py was imported')\n")
        script = ("import sys; sys.path.append(%r)\n"
                  "import importlib.util as u\n"
                  "s = u.spec_from_file_location('vendored', %r)\n"
                  "m = u.module_from_spec(s); s.loader.exec_module(m)\n"
                  "print(m.run(['/bin/echo', 'ok'], capture_output=True).stdout.decode().strip())\n"
                  "print(m._Helper.current().mode)\n" % (directory, os.path.join(directory, "sandbox.py")))
        cp = subprocess.run([sys.executable, "-B", "-c", script], capture_output=True, timeout=60,
                            cwd="/")
        assert cp.stdout.decode().split() == ["ok", "exec"], cp
        assert sorted(os.listdir(directory)) == ["sandbox.py", "select.py"]
    finally:
        subprocess.run(["rm", "-rf", directory])


def test_a_new_helper_runs_the_imported_code_not_the_file(as_user):
    """A vendored copy inside a writable bind: the command rewrites it with
    code that would run on the host; the helpers started after that (in a
    forked child, after the helper died) run the code the caller imported
    (SPEC 3.9), so the payload never runs.  Run directly, the rewritten
    file does run it: the payload works."""
    def body():
        vendor, outside = shared_dir(), shared_dir()
        marker = os.path.join(outside, "payload-ran")
        try:
            copy = os.path.join(vendor, "sandbox.py")
            with open(SANDBOX_PY, "rb") as src, open(copy, "wb") as dst:
                dst.write(src.read())
            payload = "\nopen(%r, 'w').close()\n" % marker
            script = textwrap.dedent("""\
                import os, signal, sys
                sys.path.insert(0, %(vendor)r)
                import sandbox
                ops = sandbox.default_ops().bind(%(vendor)r, %(vendor)r, sandbox.BindWritable)
                cp = sandbox.run(["/bin/sh", "-c", "printf %%s \\"$1\\" >> %(copy)s", "sh",
                                  %(payload)r], ops=ops, env={"PATH": "/usr/bin:/bin"})
                assert cp.returncode == 0, cp
                assert open(%(copy)r).read().endswith(%(payload)r)
                def again():
                    assert sandbox.run(["/bin/true"]).returncode == 0
                    return sandbox._Helper.current()
                pid = os.fork()
                if pid == 0:            # the child forgets its parent's helper
                    os._exit(0 if again().mode == "exec" else 3)
                assert os.waitpid(pid, 0)[1] == 0
                helper = sandbox._Helper.current()
                os.kill(helper.pid, signal.SIGKILL)
                helper._reap()
                assert again().mode == "exec" and sandbox._Helper.current() is not helper
                print("done")
                """) % {"vendor": vendor, "copy": copy, "payload": payload}
            python = sys.executable if os.geteuid() == 0 else SYSTEM_PYTHON
            cp = subprocess.run([python, "-B", "-c", script], capture_output=True, timeout=60,
                                cwd="/")
            assert cp.stdout == b"done\n", cp
            assert not os.path.exists(marker), "the helper ran code the sandbox wrote"
            subprocess.run([python, "-B", "-c", "import sys; sys.path.insert(0, %r); import sandbox"
                            % vendor], capture_output=True, timeout=60, cwd="/")
            assert os.path.exists(marker), "the payload does not work: this test proves nothing"
        finally:
            subprocess.run(["rm", "-rf", vendor, outside])
    as_user(body)


def test_large_requests_travel_in_a_memfd(as_user):
    def body():
        data = bytes(range(256)) * 4096            # 1 MiB: too large to send inline
        ops = sandbox.default_ops().place("/big", data)
        out = sandbox.run(["/usr/bin/sha256sum", "/big"], ops=ops, capture_output=True).stdout
        assert out.split()[0].decode() == hashlib.sha256(data).hexdigest()
        long_env = {"V%d" % i: "x" * 100 for i in range(500)}
        assert len(run_ok(["/usr/bin/env"], env=long_env).splitlines()) == 501   # and PWD
    as_user(body)


def test_the_helper_follows_a_caller_into_a_new_mount_namespace():
    """A helper acts in the namespaces it started in; a caller that moves
    to another mount namespace gets a new helper there, and the old one
    lives on for the containers it runs."""
    if os.geteuid() != 0:
        pytest.skip("mounting in the caller's own mount namespace needs root")
    directory = tempfile.mkdtemp(prefix="sandbox-ns-")

    def body():
        old = running_sleeper()
        first = sandbox._Helper.current()
        assert sandbox._libc.unshare(sandbox.CLONE_NEWNS) == 0
        assert sandbox._libc.mount(None, b"/", None, sandbox.MS_REC | sandbox.MS_PRIVATE, None) == 0
        assert sandbox._libc.mount(b"tmpfs", directory.encode(), b"tmpfs", 0, None) == 0
        with open(os.path.join(directory, "marker"), "w") as f:
            f.write("new namespace\n")
        ops = sandbox.default_ops().bind(directory, "/x")
        out = sandbox.run(["/bin/cat", "/x/marker"], ops=ops, capture_output=True).stdout
        assert out == b"new namespace\n"
        assert sandbox._Helper.current() is not first and first.alive()
        with pytest.raises(subprocess.TimeoutExpired):
            old.wait(timeout=0.1)          # the old helper's container runs on
        old.kill()
        assert old.wait(timeout=10) == 128 + 9
    try:
        _run_forked(body, drop=False)
    finally:
        os.rmdir(directory)


def test_a_root_built_ahead_is_the_root_built_on_demand(as_user):
    """Spares build default_ops() before a request comes; a container from
    one has the mounts, options and files of one built for its request
    (a uid other than the default makes the helper clone a fresh one)."""
    def body():
        def shape(**kwargs):
            mounts = mountinfo_inside(sandbox.default_ops(), **kwargs)
            return sorted((m.mountpoint, m.fstype, sorted(m.options)) for m in mounts.values())
        listing = "find / /dev /tmp -maxdepth 1 -exec stat -c '%n %F %a %N' {} + | sort"
        ahead = shape(), sh(listing)
        on_demand = shape(uid=1000), sh(listing, uid=1000)
        assert ahead == on_demand
        assert "/dev/null character special file 666" in ahead[1]
    as_user(body)


RECVMSG = {"x86_64": 47, "aarch64": 212, "i386": 372, "arm": 297}


def _spare_workers(helper_pid):
    """The helper's spares' workers that wait for a request (blocked in
    recvmsg), by the mountinfo each one sees."""
    found = {}
    with open("/proc/%d/task/%d/children" % (helper_pid, helper_pid)) as f:
        for child in f.read().split():
            try:
                with open("/proc/%s/task/%s/children" % (child, child)) as f:
                    grandchildren = f.read().split()
                for worker in grandchildren:
                    with open("/proc/%s/syscall" % worker) as f:
                        if f.read().split()[0] != str(RECVMSG[sandbox.HOST_ARCH]):
                            continue
                    with open("/proc/%s/mountinfo" % worker) as f:
                        found[int(worker)] = f.read()
            except OSError:
                pass
    return found


def test_spares_build_default_ops_ahead_only_while_requests_want_them():
    if os.geteuid() != 0:
        pytest.skip("reading a spare's mount table needs root")

    def body():
        def spares_build_ahead():
            """Whether each of the spares, once all are ready, built the
            root ahead (a list, oldest spare first)."""
            helper = sandbox._Helper.current()
            pid = helper.pid
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                workers = _spare_workers(pid)
                if len(workers) == sandbox._SPARES:        # all ready
                    return [any(e.mountpoint == "/sysroot/usr"
                                for e in sandbox.parse_mountinfo(workers[worker]))
                            for worker in sorted(workers)]
                time.sleep(0.02)
            raise AssertionError("the spares did not come: %r" % workers)
        custom = sandbox.default_ops().mkdir("/tmp/x")
        sandbox.run(["/bin/true"])
        assert spares_build_ahead() == [True] * sandbox._SPARES
        # Each request takes the oldest spare; the one made after it builds
        # what that request wanted.
        for made in range(1, sandbox._SPARES + 2):
            sandbox.run(["/bin/true"], ops=custom)
            kept = max(sandbox._SPARES - made, 0)
            assert spares_build_ahead() == [True] * kept + [False] * (sandbox._SPARES - kept)
        sandbox.run(["/bin/true"])
        assert spares_build_ahead() == [False] * (sandbox._SPARES - 1) + [True]
        for _ in range(sandbox._SPARES):
            sandbox.run(["/bin/true"])
        assert spares_build_ahead() == [True] * sandbox._SPARES
    _run_forked(body, drop=False)


def _spares_ready():
    """Wait until all the helper's spares are ready."""
    pid = sandbox._Helper.current().pid
    deadline = time.monotonic() + 10
    while len(_spare_workers(pid)) != sandbox._SPARES:
        assert time.monotonic() < deadline, "the spares did not come"
        time.sleep(0.02)


def test_spares_never_show_an_old_view_of_the_hosts_mounts():
    """Each spare holds a copy of the host's mount table made when it was
    cloned: every one made before a host mount is replaced before the
    next request (mountinfo polls POLLPRI), whichever spare it takes."""
    if os.geteuid() != 0:
        pytest.skip("mounting on the host needs root")
    directory = tempfile.mkdtemp(prefix="sandbox-fresh-")
    os.chmod(directory, 0o755)      # reached by the sandbox's ids: bound by path, by the spare
    with open(os.path.join(directory, "marker"), "w") as f:
        f.write("host\n")
    ops = sandbox.default_ops().bind(directory, "/data")

    def marker():
        return sandbox.run(["/bin/cat", "/data/marker"], ops=ops, capture_output=True).stdout

    mounted = 0
    try:
        assert marker() == b"host\n"
        # With the spares ready, then at once after a run (a spare may be
        # being cloned as the host's table changes).
        for round in range(2 * sandbox._SPARES + 2):
            if round <= sandbox._SPARES:
                _spares_ready()
            subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "fresh%d" % round,
                            directory], check=True)
            mounted += 1
            with open(os.path.join(directory, "marker"), "w") as f:
                f.write("mount %d\n" % round)
            assert marker() == b"mount %d\n" % round
    finally:
        for _ in range(mounted):
            subprocess.run(["umount", directory], check=True)
        shutil.rmtree(directory)


def test_a_root_built_ahead_is_rebuilt_when_the_host_changed():
    """What the early pass learned (a symlink's target here) is checked
    again at the request; the root built before is swapped for a new one
    when it no longer holds.  Run on a small host of the test's own, in a
    private mount namespace, with real mounts."""
    if os.geteuid() != 0:
        pytest.skip("mounting in a private mount namespace needs root")
    base = tempfile.mkdtemp(prefix="sandbox-ahead-")

    def body():
        assert sandbox._libc.unshare(sandbox.CLONE_NEWNS) == 0
        assert sandbox._libc.mount(None, b"/", None, sandbox.MS_REC | sandbox.MS_PRIVATE, None) == 0
        host, sysroot = base + "/host", base + "/sysroot"
        for path in (host + "/usr/bin", host + "/usr/sbin", host + "/dev", host + "/etc", sysroot):
            os.makedirs(path)
        os.symlink("usr/bin", host + "/bin")
        assert sandbox._libc.mount(b"/dev", (host + "/dev").encode(), None,
                                   sandbox.MS_BIND | sandbox.MS_REC, None) == 0
        assert sandbox._libc.mount(b"tmpfs", sysroot.encode(), b"tmpfs", 0, None) == 0
        sandbox._HOST, sandbox._SYSROOT, sandbox._proc = host, sysroot, "/proc"
        state = sandbox._SetupState({"flags": 0, "parent_perm": 0o755}, None)

        def request():
            return [sandbox._OP_TYPES[kind]._from_values(values) for kind, values in ahead.records]
        ahead = sandbox._RootAhead(True)
        assert ahead.facts is not None and os.readlink(sysroot + "/bin") == "usr/bin"
        with open(sysroot + "/tmp/marker", "w"):
            pass
        sandbox._build_root(request(), state, ahead, wanted=True)
        assert os.path.exists(sysroot + "/tmp/marker")        # used as built
        os.unlink(host + "/bin")
        os.symlink("usr/sbin", host + "/bin")
        sandbox._build_root(request(), state, ahead, wanted=True)
        assert not os.path.exists(sysroot + "/tmp/marker")    # built again
        assert os.readlink(sysroot + "/bin") == "usr/sbin"
        assert os.path.isdir(sysroot + "/usr") and os.path.exists(sysroot + "/dev/null")
        # A host directory that became a symlink (say, a /usr merge) while
        # the spare waited is followed by the next request, whatever it is.
        os.makedirs(host + "/usr/share")
        with open(host + "/usr/share/marker", "w") as f:
            f.write("merged\n")
        sandbox._empty_sysroot()
        ahead = sandbox._RootAhead(True)
        assert ahead.facts is not None
        os.rename(host + "/usr", host + "/usr.old")
        os.symlink("/usr.old", host + "/usr")
        custom = sandbox.Bind("/usr/share/marker", "/marker")
        sandbox._build_root([custom], state, ahead, wanted=False)
        with open(sysroot + "/marker") as f:
            assert f.read() == "merged\n"
    try:
        _run_forked(body, drop=False)
    finally:
        subprocess.run(["rm", "-rf", base], check=True)


def test_a_thread_in_its_own_mount_namespace_gets_its_own_helper():
    if os.geteuid() != 0:
        pytest.skip("mounting in a thread's own mount namespace needs root")
    directory = tempfile.mkdtemp(prefix="sandbox-thread-ns-")

    def body():
        ops = sandbox.default_ops().bind(directory, "/x")
        seen = {}

        def in_thread():
            assert sandbox._libc.unshare(sandbox.CLONE_NEWNS) == 0
            assert sandbox._libc.mount(None, b"/", None, sandbox.MS_REC | sandbox.MS_PRIVATE, None) == 0
            assert sandbox._libc.mount(b"tmpfs", directory.encode(), b"tmpfs", 0, None) == 0
            with open(os.path.join(directory, "marker"), "w") as f:
                f.write("thread\n")
            seen["thread"] = sandbox.run(["/bin/ls", "/x"], ops=ops, capture_output=True).stdout
        thread = threading.Thread(target=in_thread)
        thread.start()
        thread.join()
        seen["main"] = sandbox.run(["/bin/ls", "/x"], ops=ops, capture_output=True).stdout
        assert seen == {"thread": b"marker\n", "main": b""}
    try:
        _run_forked(body, drop=False)
    finally:
        os.rmdir(directory)


def test_helpers_past_the_limit_retire_when_their_containers_end():
    """Each new network namespace gets a helper; past four, the least
    recently used retires: it keeps running the containers it has and
    exits when they end, and one with none exits at once."""
    if os.geteuid() != 0:
        pytest.skip("unsharing the network namespace needs root")

    def body():
        first = running_sleeper()
        helpers = [sandbox._Helper.current()]
        for _ in range(5):
            assert sandbox._libc.unshare(sandbox.CLONE_NEWNET) == 0
            assert sandbox.run(["/bin/true"]).returncode == 0
            helpers.append(sandbox._Helper.current())
        assert len(set(map(id, helpers))) == 6 and len(sandbox._Helper._by_identity) == 4

        def settled(expected):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if [h.alive() for h in helpers] == expected:
                    return True
                time.sleep(0.05)
            return [h.alive() for h in helpers]
        assert settled([True, False, True, True, True, True]) is True
        with pytest.raises(subprocess.TimeoutExpired):
            first.wait(timeout=0.1)                  # still running
        first.kill()
        assert first.wait(timeout=10) == 128 + 9
        assert settled([False, False, True, True, True, True]) is True
    _run_forked(body, drop=False)


def test_a_helper_whose_template_died_still_retires_cleanly():
    if os.geteuid() != 0:
        pytest.skip("unsharing the network namespace needs root")

    def body():
        c = running_sleeper()
        helper = sandbox._Helper.current()
        pid = helper.pid
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            children = f.read().split()
        own_pid_ns = os.readlink("/proc/self/ns/pid")
        template, = [int(p) for p in children if os.readlink("/proc/%s/ns/pid" % p) == own_pid_ns]
        os.kill(template, signal.SIGKILL)       # (say, the OOM killer)
        while os.path.exists("/proc/%d" % template):
            time.sleep(0.01)                     # until the helper has reaped it
        for _ in range(4):
            assert sandbox._libc.unshare(sandbox.CLONE_NEWNET) == 0
            assert sandbox.run(["/bin/true"]).returncode == 0
        assert sandbox._Helper.current() is not helper
        with pytest.raises(subprocess.TimeoutExpired):
            c.wait(timeout=0.2)                  # the retired helper still runs it
        c.kill()
        assert c.wait(timeout=10) == 128 + 9
    _run_forked(body, drop=False)


def test_the_template_clones_mapped_spares_and_ends_on_a_bad_message(as_user):
    """The template's loop, driven as the helper drives it: each socket sent
    comes back as the pid of a spare that is its parent's child
    (CLONE_PARENT) in a PID namespace of its own, with the shell key's ids
    mapped before the pid comes (from outside for root's overflow ids,
    from inside for a caller's own); a message with no fd or with more
    than one ends the template (status 1), as EOF does (status 0)."""
    def body():
        key = (65534, 65534) + sandbox._default_host_ids() + (0, 0, sandbox._DEFAULT_SECCOMP, 0)
        program = sandbox._compiled_filter(sandbox._DEFAULT_SECCOMP, sandbox.HOST_ARCH, None)
        outside = sandbox._maps_from_outside(key[2], key[3])
        assert outside == (os.geteuid() == 0)

        def template():
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            pid = os.fork()
            if pid == 0:
                try:
                    ours.close()
                    sandbox._template_main(theirs.fileno(), key, program)
                finally:
                    os._exit(2)
            theirs.close()
            return pid, ours

        def status_of(pid):
            deadline = time.monotonic() + 10
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    return status >> 8
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    raise AssertionError("%d has not ended" % pid)
                time.sleep(0.01)

        pid, ours = template()
        for message in (b"spare", b"spare+root"):
            spare_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            sandbox._send_fds(ours, message, [child_end.fileno()])
            child_end.close()
            spare = struct.unpack("q", ours.recv(8))[0]
            assert spare > 0
            with open("/proc/%d/status" % spare) as f:
                status = dict(line.split(":", 1) for line in f.read().splitlines())
            assert int(status["PPid"]) == os.getpid()
            assert status["NSpid"].split()[1:] == ["1"]
            def mapped(name):
                with open("/proc/%d/%s" % (spare, name)) as f:
                    return f.read().split()
            deadline = time.monotonic() + 10
            while not outside and not mapped("gid_map"):
                assert time.monotonic() < deadline, "the spare did not map its ids"
                time.sleep(0.01)         # (as it sets up, after its pid came)
            assert mapped("uid_map") == ["65534", str(key[2]), "1"]
            assert mapped("gid_map") == ["65534", str(key[3]), "1"]
            with open("/proc/%d/setgroups" % spare) as f:
                assert f.read() == "deny\n"
            spare_end.close()          # its worker sees EOF: the spare ends
            assert status_of(spare) == 0
        sandbox._send_fds(ours, b"spare", [])
        assert status_of(pid) == 1 and ours.recv(8) == b""
        ours.close()
        pid, ours = template()
        first, second = os.pipe()
        sandbox._send_fds(ours, b"spare", [first, second])
        os.close(first)
        os.close(second)
        assert status_of(pid) == 1 and ours.recv(8) == b""
        ours.close()
        pid, ours = template()
        ours.close()
        assert status_of(pid) == 0
    as_user(body)


def test_a_caller_with_over_1024_fds_is_served():
    script = textwrap.dedent("""\
        import os, resource, sys; sys.path.insert(0, %r)
        import sandbox
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        keep = [os.open("/dev/null", os.O_RDONLY) for _ in range(1100)]
        cp = sandbox.run(["/bin/cat"], input=b"through", capture_output=True, timeout=60)
        print(cp.stdout.decode(), keep[-1] > 1024)
        """ % HERE)
    cp = subprocess.run([sys.executable, "-B", "-c", script], capture_output=True, timeout=120)
    assert (cp.stdout.split(), cp.stderr) == ([b"through", b"True"], b""), cp


def test_a_caller_ignoring_sigchld_still_gets_an_exec_helper():
    script = textwrap.dedent("""\
        import signal, sys; sys.path.insert(0, %r)
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)
        import sandbox
        print(sandbox.run(["/bin/echo", "ok"], capture_output=True).stdout.decode().strip())
        print(sandbox._Helper.current().mode)
        """ % HERE)
    cp = subprocess.run([sys.executable, "-B", "-c", script], capture_output=True, timeout=60)
    assert (cp.stdout.split(), cp.stderr) == ([b"ok", b"exec"], b""), cp


def test_a_helper_that_cannot_start_is_replaced_at_once_by_a_fork():
    """A fresh interpreter that exits at once (here sys.executable is
    /bin/false; a vendored file removed after import no longer matters: the
    helper gets the imported code): the caller forks its helper instead (at
    once: it holds no end of the socket that would hide the exit)."""
    directory = tempfile.mkdtemp(prefix="sandbox-gone-")
    try:
        path = os.path.join(directory, "sandbox.py")
        with open(SANDBOX_PY, "rb") as src, open(path, "wb") as dst:
            dst.write(src.read())
        script = textwrap.dedent("""\
            import importlib.util, os, sys, time
            spec = importlib.util.spec_from_file_location("gone", %r)
            m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
            os.unlink(%r)
            sys.executable = "/bin/false"
            print(m.run(["/bin/echo", "ok"], capture_output=True).stdout.decode().strip())
            print(m._Helper.current().mode)
            """ % (path, path))
        cp = subprocess.run([sys.executable, "-B", "-c", script], capture_output=True, timeout=60)
        assert (cp.stdout.split(), cp.stderr) == ([b"ok", b"fork"], b""), cp
    finally:
        subprocess.run(["rm", "-rf", directory])


def test_a_forked_child_lets_go_of_its_parents_helper():
    sandbox.run(["/bin/true"])
    parents = sandbox._Helper.current()
    fd = parents.sock.fileno()

    def body():
        assert sandbox._Helper.current() is None
        with pytest.raises(OSError):
            os.fstat(fd)          # the inherited socket is closed
        assert sandbox.run(["/bin/true"]).returncode == 0
        assert sandbox._Helper.current() is not parents
    _run_forked(body, drop=False)
    assert parents.alive()


def test_closing_fds_without_close_range():
    """On a kernel without close_range, every fd but those kept is closed."""
    def call():
        def is_open(fd):
            try:
                os.fstat(fd)
                return True
            except OSError:
                return False
        sandbox.SYS_close_range = 100000          # no such syscall: ENOSYS
        before = [fd for fd in map(int, os.listdir("/proc/self/fd")) if is_open(fd)]
        fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(5)]
        sandbox._close_fds_except(before + [fds[2]])
        return [is_open(fd) for fd in fds]
    assert _in_child(call) == ("ok", [False, False, True, False, False])


# ---------------------------------------------------------------------------
# The subprocess-shaped API (issue 14): the same calls through subprocess and
# sandbox give the same results and exceptions; Popen; max_output.
# ---------------------------------------------------------------------------

def _write_file_and_read(run, **kw):
    with tempfile.TemporaryFile() as f:
        cp = run(["/bin/sh", "-c", "echo to-file; echo err >&2"], stdout=f, stderr=f.fileno(),
                 env=ENV, **kw)
        f.seek(0)
        return cp.returncode, f.read()


def _read_stdin_file(run, **kw):
    with tempfile.TemporaryFile() as f:
        f.write(b"from a file\n")
        f.seek(0)
        return run(["/bin/cat"], stdin=f, capture_output=True, env=ENV, **kw)


def _closed_fd():
    fd = 1000
    while True:
        try:
            os.fstat(fd)
        except OSError:
            return fd
        fd += 1


# Each row: name -> call(run, **extra).  Both runs get env (PATH only) and the
# sandbox gets default_ops(); outputs that depend on ids are avoided.
PARITY = {
    "capture": lambda run, **kw: run(["/bin/echo", "hi"], capture_output=True, env=ENV, **kw),
    "text and newlines": lambda run, **kw: run(
        ["/bin/sh", "-c", "printf 'a\\r\\nb\\rc\\n'; printf err >&2"], capture_output=True,
        text=True, env=ENV, **kw),
    "universal_newlines": lambda run, **kw: run(["/bin/sh", "-c", "printf 'x\\r\\n'"],
                                                stdout=subprocess.PIPE, universal_newlines=True,
                                                env=ENV, **kw),
    "encoding": lambda run, **kw: run(["/bin/sh", "-c", "printf '\\303\\251'"], capture_output=True,
                                      encoding="latin-1", env=ENV, **kw),
    "errors": lambda run, **kw: run(["/bin/sh", "-c", "printf 'a\\377b'"], capture_output=True,
                                    encoding="utf-8", errors="replace", env=ENV, **kw),
    "input bytes, large": lambda run, **kw: run(["/bin/cat"], input=bytes(range(256)) * 2000,
                                                capture_output=True, env=ENV, **kw),
    "input str": lambda run, **kw: run(["/bin/cat"], input="é\r\n", text=True, capture_output=True,
                                       env=ENV, **kw),
    "stderr to stdout": lambda run, **kw: run(["/bin/sh", "-c", "echo o; echo e >&2"],
                                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                              env=ENV, **kw),
    "devnull": lambda run, **kw: run(["/bin/sh", "-c", "cat; echo done; echo x >&2"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=ENV, **kw),
    "file objects and fds": _write_file_and_read,
    "stdin from a file": _read_stdin_file,
    "exit status": lambda run, **kw: run(["/bin/sh", "-c", "exit 7"], env=ENV, **kw),
    "check": lambda run, **kw: run(["/bin/sh", "-c", "echo out; echo err >&2; exit 3"],
                                   check=True, capture_output=True, env=ENV, **kw),
    "check passes": lambda run, **kw: run(["/bin/true"], check=True, env=ENV, **kw),
    "timeout with partial output": lambda run, **kw: run(
        ["/bin/sh", "-c", "echo early; echo late >&2; exec sleep 30"], timeout=1,
        capture_output=True, env=ENV, **kw),
    "timeout without output": lambda run, **kw: run(["/bin/sleep", "30"], timeout=0.3,
                                                    capture_output=True, env=ENV, **kw),
    "cwd": lambda run, **kw: run(["/bin/pwd"], cwd="/usr", stdout=subprocess.PIPE, env=ENV, **kw),
    "cwd PathLike": lambda run, **kw: run(["/bin/pwd"], cwd=pathlib.Path("/usr/bin"),
                                          stdout=subprocess.PIPE, env=ENV, **kw),
    "env": lambda run, **kw: run(["/bin/sh", "-c", 'echo "$A $B"'], env=dict(ENV, A="1", B="2 3"),
                                 stdout=subprocess.PIPE, **kw),
    "str args": lambda run, **kw: run("/bin/true", env=ENV, **kw),
    "shell": lambda run, **kw: run("echo $((1 + 2))", shell=True, stdout=subprocess.PIPE,
                                   env=ENV, **kw),
    "executable": lambda run, **kw: run(["zero", "-c", "echo $0"], executable="/bin/sh",
                                        stdout=subprocess.PIPE, env=ENV, **kw),
    "command not found": lambda run, **kw: run(["/nonexistent"], env=ENV, **kw),
    "command not executable": lambda run, **kw: run(["/etc/passwd"], env=ENV, **kw),
    "cwd not found": lambda run, **kw: run(["/bin/true"], cwd="/nonexistent", env=ENV, **kw),
    "empty args": lambda run, **kw: run([], env=ENV, **kw),
    "capture_output with stdout": lambda run, **kw: run(["/bin/true"], capture_output=True,
                                                        stdout=subprocess.PIPE, **kw),
    "input with stdin": lambda run, **kw: run(["/bin/true"], input=b"", stdin=subprocess.DEVNULL,
                                              **kw),
    "text and universal_newlines differ": lambda run, **kw: run(
        ["/bin/true"], text=True, universal_newlines=False, **kw),
    "str input without text": lambda run, **kw: run(["/bin/cat"], input="x", env=ENV, **kw),
    "bytes input with text": lambda run, **kw: run(["/bin/cat"], input=b"x", text=True, env=ENV,
                                                   **kw),
    "env value not a string": lambda run, **kw: run(["/bin/true"], env={"A": 1}, **kw),
    "env name with =": lambda run, **kw: run(["/bin/true"], env={"A=B": "1"}, **kw),
    "env with NUL": lambda run, **kw: run(["/bin/true"], env={"A": "1\0"}, **kw),
    "argument with NUL": lambda run, **kw: run(["/bin/echo", "a\0"], env=ENV, **kw),
    "argument not a string": lambda run, **kw: run(["/bin/echo", 1], env=ENV, **kw),
    "cwd not a path": lambda run, **kw: run(["/bin/true"], cwd=5, env=ENV, **kw),
    "bufsize not an int": lambda run, **kw: run(["/bin/true"], bufsize="x", env=ENV, **kw),
    "unknown encoding": lambda run, **kw: run(["/bin/true"], stdout=subprocess.PIPE,
                                              encoding="no-such-codec", env=ENV, **kw),
    "pass_fds not numbers": lambda run, **kw: run(["/bin/true"], pass_fds=["x"], env=ENV, **kw),
    "pass_fds negative": lambda run, **kw: run(["/bin/true"], pass_fds=[-1], env=ENV, **kw),
    "pass_fds not open": lambda run, **kw: run(["/bin/true"], pass_fds=[_closed_fd()], env=ENV,
                                               **kw),
    "stdin a bad fd": lambda run, **kw: run(["/bin/true"], stdin=-5, env=ENV, **kw),
    "unknown keyword": lambda run, **kw: run(["/bin/true"], no_such_argument=1, **kw),
}


def _outcome(call, run, **extra):
    """What a call gives: the result's fields, or the exception."""
    try:
        cp = call(run, **extra)
    except Exception as err:        # compared below
        return err
    if isinstance(cp, tuple):
        return cp
    assert isinstance(cp, subprocess.CompletedProcess)
    return ("completed", cp.args, cp.returncode, cp.stdout, cp.stderr)


def _same_exception(expected, got):
    assert isinstance(got, type(expected)), (expected, got)
    if isinstance(expected, subprocess.TimeoutExpired):
        assert (str(got), got.stdout, got.stderr) == (str(expected), expected.stdout, expected.stderr)
    elif isinstance(expected, subprocess.CalledProcessError):
        assert (str(got), got.stdout, got.stderr) == (str(expected), expected.stdout, expected.stderr)
    elif type(expected) in (FileNotFoundError, PermissionError, NotADirectoryError):
        assert isinstance(got, sandbox.SandboxError)
        assert (got.errno, got.filename) == (expected.errno, expected.filename)
        assert os.strerror(expected.errno) in str(got)
    elif isinstance(expected, OSError):
        assert got.errno == expected.errno, (expected, got)
    elif "unexpected keyword" in str(expected):
        assert "unexpected keyword argument 'no_such_argument'" in str(got)
    elif isinstance(expected, (ValueError, TypeError, IndexError, LookupError)):
        # The same words, after the sandbox's name of the argument.
        assert str(expected).split(": ")[-1] in str(got), (expected, got)


@pytest.mark.parametrize("name", sorted(PARITY))
def test_run_behaves_as_subprocess_run(name, as_user):
    def body():
        call = PARITY[name]
        expected = _outcome(call, subprocess.run)
        got = _outcome(call, sandbox.run, ops=sandbox.default_ops())
        if isinstance(expected, Exception):
            _same_exception(expected, got)
        else:
            assert got == expected
    as_user(body)


def test_run_returns_a_completed_process_with_a_report(as_user):
    def body():
        cp = sandbox.run(["/bin/true"])
        assert isinstance(cp, sandbox.CompletedProcess) and isinstance(cp, subprocess.CompletedProcess)
        assert hasattr(cp, "report") and repr(cp) == "CompletedProcess(args=['/bin/true'], returncode=0)"
        # A signal's death is 128+N, as init reports it (subprocess says -N).
        assert sandbox.run(["/bin/sh", "-c", "kill -9 $$"], env=ENV).returncode == 128 + 9
        for call in (lambda: sandbox.run([]), lambda: sandbox.run(["/bin/true"], env={"A": 1}),
                     lambda: sandbox.run(["/bin/true"], capture_output=True, stdout=1)):
            with pytest.raises(sandbox.SandboxError):
                call()
    as_user(body)


def test_timeout_leaves_nothing_running(as_user):
    def body():
        marker = "sandbox-timeout-%d" % os.getpid()
        with pytest.raises(subprocess.TimeoutExpired) as info:
            sandbox.run(["/bin/sh", "-c", "echo started; sleep 30 & exec sleep 31 %s" % marker],
                        timeout=1, capture_output=True, text=True, env=ENV)
        assert info.value.stdout == b"started\n"      # bytes, as subprocess gives them
        assert info.value.report.status == "timeout"   # the exception carries the report
        left = subprocess.run(["pgrep", "-f", marker], capture_output=True)
        assert left.stdout == b""
    as_user(body)


def test_popen_pipes_line_by_line_in_text_mode(as_user):
    def body():
        with sandbox.Popen(["/bin/cat"], stdin=sandbox.PIPE, stdout=sandbox.PIPE, text=True,
                           bufsize=1, env=ENV) as p:
            assert isinstance(p.pid, int) and p.pid > 0 and p.poll() is None
            for line in ("one\n", "two\n"):
                p.stdin.write(line)
                assert p.stdout.readline() == line    # an answer before the end
            p.stdin.close()
            assert p.stdout.read() == "" and p.wait(timeout=10) == 0
        assert p.returncode == 0 and p.poll() == 0
    as_user(body)


def test_popen_wait_poll_signals_and_communicate_timeout(as_user):
    def body():
        p = sandbox.Popen(["/bin/sh", "-c", "echo started; exec sleep 30"], stdout=sandbox.PIPE,
                          env=ENV)
        with pytest.raises(subprocess.TimeoutExpired) as info:
            p.wait(timeout=0.2)
        assert info.value.cmd == ["/bin/sh", "-c", "echo started; exec sleep 30"]
        with pytest.raises(subprocess.TimeoutExpired) as info:
            p.communicate(timeout=1)
        assert info.value.stdout == b"started\n" and p.poll() is None
        p.terminate()                          # init forwards SIGTERM to the command
        assert p.communicate(timeout=10) == (b"started\n", None)
        assert p.returncode == 128 + signal.SIGTERM
        with sandbox.Popen(["/bin/sleep", "30"], env=ENV) as p:
            p.kill()
        assert p.returncode == 128 + signal.SIGKILL
        # (the trap ends the sleep too: a process left behind would be given
        # init's grace period before it is killed)
        with sandbox.Popen(["/bin/sh", "-c", "trap 'kill $!; exit 42' INT; sleep 30 & echo set; wait"],
                           stdout=sandbox.PIPE, env=ENV) as p:
            assert p.stdout.readline() == b"set\n"     # the trap is in place
            p.send_signal(signal.SIGINT)
        assert p.returncode == 42
        p.send_signal(signal.SIGKILL)          # after the end: nothing happens, as in subprocess
    as_user(body)


def test_popen_raises_at_once_when_the_command_cannot_start(as_user):
    def body():
        with pytest.raises(FileNotFoundError) as info:
            sandbox.Popen(["no-such-command"], env=ENV, stdout=sandbox.PIPE)
        assert isinstance(info.value, sandbox.SandboxError) and info.value.filename == "no-such-command"
        with pytest.raises(sandbox.SandboxError, match="bind"):
            sandbox.Popen(["/bin/true"], ops=sandbox.Ops().bind("/nope", "/x"))
        with pytest.raises(TypeError, match="unexpected keyword argument 'dir'"):
            sandbox.Popen(["/bin/true"], dir="/")       # subprocess's name: cwd
        p = sandbox.Popen(["/bin/sh", "-c", "echo $(hostname)"], hostname="box", stdout=sandbox.PIPE,
                          env=ENV, flags=sandbox.FAllowNet)
        assert p.communicate() == (b"box\n", None) and hasattr(p, "report")
    as_user(body)


def test_max_output_keeps_n_bytes_and_drains_the_rest(as_user):
    def body():
        # The command writes far more than the cap and finishes: the rest
        # was read (a full pipe would have blocked it until the timeout).
        cp = sandbox.run(["/bin/sh", "-c", "head -c 3000000 /dev/zero; echo done >&2"],
                         capture_output=True, max_output=100, timeout=60, env=ENV)
        assert (cp.returncode, cp.stdout, cp.stderr) == (0, b"\0" * 100, b"done\n")
        assert cp.report.truncated is True and cp.report.status == "exited"
        assert sandbox.run(["/bin/true"], capture_output=True, max_output=1).report.truncated is False
        with sandbox.Popen(["/bin/sh", "-c", "printf 'ééé'"], stdout=sandbox.PIPE, text=True,
                           encoding="utf-8", max_output=3, env=ENV) as p:
            assert p.communicate() == ("é", None)      # the cut character is dropped
            assert p.truncated == ["stdout"]
        cp = sandbox.run(["/bin/echo", "short"], capture_output=True, max_output=100)
        assert cp.stdout == b"short\n"
        with pytest.raises(ValueError, match="max_output"):
            sandbox.run(["/bin/true"], max_output=-1)
    as_user(body)


# ---------------------------------------------------------------------------
# asyncio: streaming, a responsive loop with many sandboxes, run_async.
# ---------------------------------------------------------------------------

def test_import_does_not_import_asyncio():
    cp = subprocess.run([sys.executable, "-c", "import sandbox, sys; print('asyncio' in sys.modules)"],
                        cwd=HERE, capture_output=True, text=True)
    assert cp.stdout == "False\n", cp


def test_asyncio_streams_a_line_before_the_end(as_user):
    import asyncio

    async def main():
        proc = await sandbox.create_subprocess_exec(
            "/bin/sh", "-c", "echo first; read x; echo got $x; echo err >&2",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=ENV)
        assert isinstance(proc.pid, int)
        first = await proc.stdout.readline()
        running = proc.returncode          # the command waits for our line
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
        out, err = await proc.communicate()
        return first, running, out, err, proc.returncode, await proc.wait()

    def body():
        result = asyncio.run(asyncio.wait_for(main(), 60))
        assert result == (b"first\n", None, b"got go\n", b"err\n", 0, 0)
    as_user(body)


def test_asyncio_loop_keeps_ticking_while_many_sandboxes_run(as_user):
    import asyncio
    count = 12

    async def main():
        ticks = []

        async def ticker():
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.005)

        tick_task = asyncio.ensure_future(ticker())
        # Each waits for a line on stdin (coreutils' timeout ends it should
        # the loop be blocked and never send it: the test then fails).
        procs = await asyncio.gather(*(sandbox.create_subprocess_exec(
            "/usr/bin/timeout", "20", "/bin/sh", "-c", "read x; echo done $x",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=ENV)
            for _ in range(count)))
        waits = [asyncio.ensure_future(p.wait()) for p in procs]
        seen = len(ticks)
        while len(ticks) < seen + 10:      # the loop runs while all of them wait
            await asyncio.sleep(0.005)
        alive = [w.done() for w in waits]
        outs = await asyncio.gather(*(p.communicate(b"%d\n" % i) for i, p in enumerate(procs)))
        tick_task.cancel()
        gaps = [b - a for a, b in zip(ticks, ticks[1:])]
        return alive, [out for out, _ in outs], [p.returncode for p in procs], max(gaps)

    def body():
        alive, outs, codes, longest_gap = asyncio.run(asyncio.wait_for(main(), 60))
        assert alive == [False] * count
        assert outs == [b"done %d\n" % i for i in range(count)] and codes == [0] * count
        assert longest_gap < 5          # a generous bound: the loop never stalled on one
    as_user(body)


def test_asyncio_wait_signals_and_start_failures(as_user):
    import asyncio

    async def main():
        proc = await sandbox.create_subprocess_exec("/bin/sleep", "30", env=ENV)
        proc.terminate()
        terminated = await proc.wait()
        proc = await sandbox.create_subprocess_exec("/bin/sleep", "30", env=ENV)
        proc.kill()
        killed = await proc.wait()
        with pytest.raises(FileNotFoundError):
            await sandbox.create_subprocess_exec("no-such-command", env=ENV)
        with pytest.raises(sandbox.SandboxError, match="bind"):
            await sandbox.create_subprocess_exec("/bin/true", ops=sandbox.Ops().bind("/nope", "/x"))
        with pytest.raises(ValueError):
            await sandbox.create_subprocess_exec("/bin/true", text=True)
        return terminated, killed

    def body():
        assert asyncio.run(asyncio.wait_for(main(), 60)) == (128 + signal.SIGTERM, 128 + signal.SIGKILL)
    as_user(body)


ASYNC_PARITY = ["capture", "text and newlines", "encoding", "input bytes, large", "input str",
                "stderr to stdout", "devnull", "exit status", "check", "check passes",
                "timeout with partial output", "timeout without output", "cwd", "env",
                "command not found", "cwd not found", "capture_output with stdout",
                "input with stdin", "str input without text", "env value not a string"]


@pytest.mark.parametrize("name", ASYNC_PARITY)
def test_run_async_gives_what_run_gives(name, as_user):
    import asyncio

    def run_in_loop(*args, **kwargs):
        return asyncio.run(asyncio.wait_for(sandbox.run_async(*args, **kwargs), 60))

    def body():
        expected = _outcome(PARITY[name], subprocess.run)
        got = _outcome(PARITY[name], run_in_loop, ops=sandbox.default_ops())
        if isinstance(expected, Exception):
            _same_exception(expected, got)
        else:
            assert got == expected
    as_user(body)


def test_run_async_max_output():
    import asyncio
    cp = asyncio.run(sandbox.run_async(["/bin/sh", "-c", "head -c 1000000 /dev/zero; echo done >&2"],
                                       capture_output=True, max_output=10, env=ENV, timeout=60))
    assert (cp.returncode, cp.stdout, cp.stderr) == (0, b"\0" * 10, b"done\n")
    assert cp.report.truncated is True and cp.report.status == "exited"


# ---------------------------------------------------------------------------
# The host check: real conditions made in a child (a user namespace whose
# limit on user namespaces is 0; a seccomp filter refusing namespaces).
# ---------------------------------------------------------------------------

def test_check_on_this_host(as_user):
    def body():
        result = sandbox.check()
        assert result["ok"] is True
        checks = result["checks"]
        assert list(checks) == ["user_namespaces", "seccomp", "landlock", "overlayfs",
                                "idmapped_mounts", "cgroup2", "cgroup_v1", "default_sandbox"]
        for name, item in checks.items():
            assert set(item) == {"ok", "required", "detail", "reason", "remedy"}
            assert (item["reason"] is None) == item["ok"] and (item["remedy"] is None) == item["ok"]
        assert checks["landlock"]["detail"] == (
            "ABI %d: file system (with renames across directories, truncate, device ioctls); "
            "TCP port rules; abstract unix sockets and signals scoped" % sandbox._landlock_abi())
        assert checks["user_namespaces"]["ok"] and checks["seccomp"]["ok"]
        assert checks["overlayfs"]["ok"] and checks["default_sandbox"]["ok"]
        # idmapped mounts of host directories need root on the host
        assert checks["idmapped_mounts"]["ok"] == (os.geteuid() == 0)
    as_user(body)


def test_cli_check(cli):
    cp = cli("--check")
    assert cp.returncode == 0, cp
    assert b"the default sandbox works here" in cp.stdout and b"user_namespaces  ok" in cp.stdout
    cp = cli("--check", "--json")
    assert cp.returncode == 0 and json.loads(cp.stdout)["ok"] is True
    assert cli("--check", "--verbose").returncode == 2


def _unshare_user_namespace_with_no_room_for_more():
    """This process enters a user namespace of its own (root in it) and sets
    that namespace's user.max_user_namespaces to 0, as a host with the sysctl
    at 0 is: nothing can create a user namespace from here."""
    uid, gid = os.geteuid(), os.getegid()
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.unshare(sandbox.CLONE_NEWUSER) == 0, os.strerror(ctypes.get_errno())
    sandbox._map_identity(0, 0, uid, gid)
    with open("/proc/sys/user/max_user_namespaces", "w") as f:
        f.write("0\n")


@pytest.mark.parametrize("drop", [False, True], ids=["caller", "nobody"])
def test_disabled_user_namespaces_are_named_by_check_and_by_a_failing_sandbox(drop):
    def body():
        _unshare_user_namespace_with_no_room_for_more()
        result = sandbox.check()
        item = result["checks"]["user_namespaces"]
        assert result["ok"] is False and item["ok"] is False and item["required"]
        assert "max_user_namespaces is 0" in item["reason"], item
        assert "sysctl -w user.max_user_namespaces=" in item["remedy"]
        assert result["checks"]["default_sandbox"]["ok"] is False
        with pytest.raises(sandbox.SandboxError) as info:
            sandbox.run(["/bin/true"])
        message = str(info.value)
        assert "max_user_namespaces is 0" in message and "sandbox.py --check" in message, message
        if not drop:
            cp = subprocess.run([sys.executable, SANDBOX_PY, "--check"], capture_output=True)
            assert cp.returncode == 1 and b"max_user_namespaces is 0" in cp.stdout, cp
    _run_forked(body, drop)


@pytest.mark.parametrize("drop", [False, True], ids=["caller", "nobody"])
def test_a_seccomp_filter_refusing_namespaces_is_named(drop):
    def body():
        sandbox.seccomp_load(sandbox.FlagDenyNS)    # as a container runtime's profile does
        result = sandbox.check()
        item = result["checks"]["user_namespaces"]
        assert result["ok"] is False and item["ok"] is False
        assert "seccomp filter" in item["reason"] and "seccomp" in item["remedy"], item
        assert result["checks"]["seccomp"]["ok"]       # filters still load: they stack
        with pytest.raises(sandbox.SandboxError, match=r"seccomp filter.*sandbox\.py --check"):
            sandbox.run(["/bin/true"])
    _run_forked(body, drop)


THREADED_CLONES = r"""
import sys, threading
sys.path.insert(0, sys.argv[1])
import sandbox
sys.setswitchinterval(1e-6)     # the spinning threads ask for the GIL all the time
stop = []
def spin():
    while not stop:
        sum(range(1000))
threads = [threading.Thread(target=spin) for _ in range(3)]
for t in threads:
    t.start()
try:
    for i in range(40):
        c = sandbox.Container("/bin/true", ops=sandbox.Ops().bind("/", "/", 0).tmpfs("/tmp"))
        c.hardened, c.uid, c.gid, c.dir, c.env = False, None, None, None, {"PATH": "/usr/bin:/bin"}
        c.start()
        c.serve()
        assert c.wait(timeout=20) == 0, i
        c.close()
    print("ok")
finally:
    stop.append(1)
"""


def test_a_caller_with_busy_threads_clones_itself_safely():
    """bubblewrap's personality clones the caller itself: with other
    threads running Python, the child must not inherit a GIL (or its lock)
    held by one of them, or a request from one of them for it, or it waits
    forever (a raw clone() hung at once here with a short switch interval).
    A child that hangs has no parent-death signal yet: the whole process
    group goes on a timeout."""
    proc = subprocess.Popen([sys.executable, "-c", THREADED_CLONES, HERE], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd="/", start_new_session=True)
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        out, err = b"", b"timed out"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    assert proc.returncode == 0 and out == b"ok\n", (proc.returncode, out, err)


@pytest.mark.parametrize("drop", [False, True], ids=["caller", "nobody"])
def test_a_caller_with_threads_whose_fork_fails_gets_the_clone_error_and_its_state_back(drop):
    """A caller with other threads clones from a fork of itself: when that
    fork fails (EAGAIN: RLIMIT_NPROC, here a filter), the caller gets the
    clone's error, and its signal mask and fds as they were."""
    def body():
        waiting = threading.Event()
        thread = threading.Thread(target=waiting.wait)
        thread.start()
        try:
            # fork() is clone(CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID | SIGCHLD);
            # the container's own clone() has neither.
            forks = sandbox.Arg(0, sandbox.CMP_MASKED_EQ, 0x01200000, 0x01200000)
            sandbox.seccomp_load(0, [sandbox.Rule("clone", "deny:EAGAIN", forks)])
            mask, fds = signal.pthread_sigmask(signal.SIG_BLOCK, ()), os.listdir("/proc/self/fd")
            c = sandbox.Container("/bin/true", ops=sandbox.Ops().bind("/", "/", 0).tmpfs("/tmp"))
            c.hardened, c.uid, c.gid, c.dir = False, None, None, None
            c.start()
            with pytest.raises(sandbox.SandboxError, match="clone: creating namespaces") as info:
                c.serve()
            c.close()
            assert info.value.errno == errno.EAGAIN
            assert signal.pthread_sigmask(signal.SIG_BLOCK, ()) == mask
            assert sorted(os.listdir("/proc/self/fd")) == sorted(fds)
        finally:
            waiting.set()
            thread.join()
    _run_forked(body, drop)

#!/usr/bin/env python3
"""Run a program in an unprivileged, hardened Linux container.

One file, CPython 3.8+ standard library and ctypes only: copy it into a
project and ``import sandbox``, or run ``python3 sandbox.py -- COMMAND``.

The container gets new user, PID, mount, IPC, UTS, cgroup and (unless
FAllowNet) network namespaces, a root file system assembled from an ordered
list of operations (``Ops``), no capabilities, no_new_privs and a seccomp
filter compiled to BPF by this module.

Layout, top-down: kernel constants and the ctypes binding; the seccomp
compiler (syscall table, rules, BPF code generation, interpreter,
disassembler); mountinfo parsing; the operations; the container's init;
the helper process that forks containers; the parent-side Container;
Popen, run() and CompletedProcess (subprocess's shape); asyncio's
create_subprocess_exec() and run_async(); the host check (check(),
--check); the command line.
"""

import gc
if __name__ == "__main__":
    # The command line's process lives as long as its sandbox and leaves
    # without finalization (_leave): the cyclic collector would only walk
    # this module's objects as they are made (~0.25 ms of every start,
    # issue 15), and in the init and worker cloned from it copy the pages
    # it touches.  The helper's processes run without it too (serve()).
    gc.disable()
import codecs
import ctypes
import enum
import errno
import fcntl
import io
import itertools
import marshal
import os
import resource
import select
# The C modules under signal.py and socket.py: the same constants and
# functions, without their enum conversions (signal.py's ~0.4 ms and
# socket.py's imports: selectors, array; ~1.3 ms) on every start of the
# command line (issue 15).  Here signals are plain ints (nothing shows
# their names) and the sockets have no `with`.
import _signal as signal
import _socket as socket
import stat
import struct
import sys
import threading
import time


class _SubprocessOnDemand:
    """subprocess for the command line (this file run as a program), which
    needs it only off its common path (--check, a timeout): the module is
    imported on first use of a name, saving ~1.8 ms of every run (issue 15:
    subprocess imports locale and selectors).  Safe there and only there:
    the command line's own process never drops privileges, and the code
    its sandboxes run (init, worker, the command's clone) never uses
    subprocess.  The library, whose caller may drop privileges after
    importing it, imports subprocess at once (below)."""
    PIPE, STDOUT, DEVNULL = -1, -2, -3      # subprocess's values

    class CompletedProcess:
        """The base of CompletedProcess here: what check() reads of run()'s
        result (the command line's one use of run())."""

        def __init__(self, args, returncode, stdout=None, stderr=None):
            self.args, self.returncode, self.stdout, self.stderr = args, returncode, stdout, stderr

    def __getattr__(self, name):
        import subprocess
        return getattr(subprocess, name)


if __name__ == "__main__":
    subprocess = _SubprocessOnDemand()
else:
    import subprocess

__version__ = "0.1.0"

# This module's code as the caller imported it: the helper runs it (see
# _HELPER_BOOT), never the file read again.  (CPython: the module's frame.)
_OWN_CODE = sys._getframe().f_code if hasattr(sys, "_getframe") else None

__all__ = [
    "Container", "Ops", "Op", "Bind", "Proc", "Dev", "Mqueue", "Tmpfs",
    "Link", "Mkdir", "Place", "run", "default_ops", "SandboxError",
    # operations for bubblewrap's options
    "File", "Chmod", "RemountRo", "Overlay", "BindFd",
    "Popen", "CompletedProcess", "PIPE", "STDOUT", "DEVNULL",
    "create_subprocess_exec", "run_async", "check",
    "HardeningFlags", "SyscallOpts", "seccomp_filter", "seccomp_load",
    "bpf_run", "bpf_disasm",
    "FSyscallCompat", "FAllowDevel", "FAllowUserns", "FAllowTTY", "FAllowNet",
    "FlagExt", "FlagDenyNS", "FlagDenyTTY", "FlagDenyDevel", "FlagMultiarch",
    "FlagLinux32", "FlagCan", "FlagBluetooth",
    "BindOptional", "BindWritable", "BindDevice",
    # seccomp rules by name and group
    "Rule", "Arg", "SYSCALLS", "syscall_group",
    # limits and the run report
    "Limits", "Report",
]


class SandboxError(OSError):
    """A sandbox could not be built or run; ``str()`` names the step and path."""

    def __init__(self, message, err=0):
        super().__init__(err or None, message)
        self.message = message

    def __str__(self):
        return self.message

    def __reduce__(self):
        return (type(self), (self.message, self.errno or 0))


def _at_op(error, index):
    """The error, naming the index of the operation it happened in."""
    return SandboxError("%s (op %d)" % (error, index), error.errno or 0)


def _fail(message, err=0):
    if err:
        message = "%s: %s" % (message, os.strerror(err))
    raise SandboxError(message, err)


# Where subprocess raises a ValueError, a TypeError or an OSError subclass for
# an argument or a failed exec, the sandbox raises a SandboxError that is also
# that type, so that code written for subprocess catches it (where subprocess
# lets an AttributeError through, for an object without fileno() or items(),
# a TypeError: AttributeError's layout cannot be combined with OSError's).
class _SandboxValueError(SandboxError, ValueError):
    pass


class _SandboxTypeError(SandboxError, TypeError):
    pass


class _SandboxIndexError(SandboxError, IndexError):
    pass


class _SandboxFileNotFoundError(SandboxError, FileNotFoundError):
    pass


class _SandboxPermissionError(SandboxError, PermissionError):
    pass


class _SandboxNotADirectoryError(SandboxError, NotADirectoryError):
    pass


_TYPED_ERRORS = {ValueError: _SandboxValueError, TypeError: _SandboxTypeError,
                 IndexError: _SandboxIndexError,
                 errno.ENOENT: _SandboxFileNotFoundError, errno.EACCES: _SandboxPermissionError,
                 errno.EPERM: _SandboxPermissionError, errno.ENOTDIR: _SandboxNotADirectoryError}


def _typed_error(kind, message, err=errno.EINVAL):
    """A SandboxError that is also `kind` (an exception type or an errno)."""
    return _TYPED_ERRORS.get(kind, SandboxError)(message, err)


# ---------------------------------------------------------------------------
# Kernel constants and the ctypes binding.
#
# Everything the container needs from the kernel that os/socket do not offer
# (clone with namespace flags, mount, pivot_root, prctl, capset, seccomp) goes
# through libc's syscall(2) with numbers for the host architecture.
# ---------------------------------------------------------------------------

CLONE_PARENT = 0x00008000
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
# wait4() option: children of any exit signal (without it, a child whose exit
# signal is not SIGCHLD is not waited for, nor counted: ECHILD once only it
# is left).
WAIT_ALL = 0x40000000       # __WALL

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000
MNT_DETACH = 2
ST_NOSYMFOLLOW = 0x2000       # statvfs's flag for it (os has none)

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_SET_CHILD_SUBREAPER = 36
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
SECCOMP_MODE_FILTER = 2
CAP_SYS_ADMIN = 21
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
# Capability names as libcap spells them (without "cap_"), by number.
_CAP_NAMES = (
    "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid",
    "setuid", "setpcap", "linux_immutable", "net_bind_service", "net_broadcast",
    "net_admin", "net_raw", "ipc_lock", "ipc_owner", "sys_module", "sys_rawio",
    "sys_chroot", "sys_ptrace", "sys_pacct", "sys_admin", "sys_boot", "sys_nice",
    "sys_resource", "sys_time", "sys_tty_config", "mknod", "lease", "audit_write",
    "audit_control", "setfcap", "mac_override", "mac_admin", "syslog", "wake_alarm",
    "block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore")

# Syscalls the runtime makes itself; the unified numbers (>= 403) are the same
# on every architecture.
_HOST_SYSCALLS = {
    # machine: (clone, pivot_root, capset)
    "x86_64": (56, 155, 126),
    "i386": (120, 217, 185),
    "aarch64": (220, 41, 91),
    "arm": (120, 218, 185),
}
SYS_close_range = 436
SYS_open_tree = 428
SYS_move_mount = 429
SYS_mount_setattr = 442

# open_tree / move_mount / mount_setattr (the new mount API, 5.2+ and 5.12+).
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR_IDMAP = 0x100000
MOUNT_ATTR_NOSYMFOLLOW = 0x200000


def _host_arch():
    machine = os.uname().machine
    if machine in ("i386", "i486", "i586", "i686"):
        return "i386"
    if machine.startswith("arm") and machine != "arm64":
        return "arm"
    return {"arm64": "aarch64"}.get(machine, machine)


HOST_ARCH = _host_arch()

_proc_values = {}


def _proc_int(path, fallback):
    """An integer from /proc (overflow ids, cap_last_cap), read once."""
    if path not in _proc_values:
        try:
            with open(path, "rb") as f:
                _proc_values[path] = int(f.read())
        except (OSError, ValueError):
            _proc_values[path] = fallback
    return _proc_values[path]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
# clone() goes through a binding that keeps the GIL across the call (the
# child must come back holding it); a process with other threads clones
# from a fork of itself (see _clone).
_libc_with_gil = ctypes.PyDLL(None, use_errno=True)
_libc_with_gil.syscall.restype = ctypes.c_long
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                        ctypes.c_ulong, ctypes.c_void_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_libc.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong, ctypes.c_ulong)
_libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)


def _check(ret, what):
    if ret < 0:
        _fail(what, ctypes.get_errno())
    return ret


def _prctl(option, arg2=0, arg3=0, what="prctl"):
    return _check(_libc.prctl(option, arg2, arg3, 0, 0), what)


def _mount(source, target, fstype, flags, data, what):
    _forget_under(target)
    _check(_libc.mount(source and os.fsencode(source), os.fsencode(target),
                       fstype and fstype.encode(), flags,
                       data and data.encode()), what)


def _syscall_numbers():
    try:
        return _HOST_SYSCALLS[HOST_ARCH]
    except KeyError:
        return (None, None, None)


SYS_clone, SYS_pivot_root, SYS_capset = _syscall_numbers()
SYS_capget = None if SYS_capset is None else SYS_capset - 1   # on each architecture


def _capabilities():
    """This thread's (effective, permitted, inheritable) sets as 64-bit masks."""
    header = ctypes.create_string_buffer(struct.pack("Ii", _LINUX_CAPABILITY_VERSION_3, 0))
    data = ctypes.create_string_buffer(24)
    _check(_libc.syscall(SYS_capget, header, data), "capget")
    e0, p0, i0, e1, p1, i1 = struct.unpack("6I", data.raw)
    return e0 | e1 << 32, p0 | p1 << 32, i0 | i1 << 32


def _capset(effective, permitted, inheritable):
    header = ctypes.create_string_buffer(struct.pack("Ii", _LINUX_CAPABILITY_VERSION_3, 0))
    low, high = 0xFFFFFFFF, 32
    data = ctypes.create_string_buffer(struct.pack(
        "6I", effective & low, permitted & low, inheritable & low,
        effective >> high, permitted >> high, inheritable >> high))
    _check(_libc.syscall(SYS_capset, header, data), "capset")


def _pivot_root(new_root, put_old, what="pivot_root"):
    _check(_libc.syscall(SYS_pivot_root, os.fsencode(new_root),
                         os.fsencode(put_old)), what)


def _open_tree(path, flags, what, dir_fd=-100):
    """open_tree(2): an fd for the mount at path, or with OPEN_TREE_CLONE
    (and AT_RECURSIVE) a detached copy of it (and of what is under it).
    dir_fd defaults to AT_FDCWD."""
    return _check(_libc.syscall(SYS_open_tree, ctypes.c_int(dir_fd), os.fsencode(path),
                                ctypes.c_uint(flags)), what)


def _move_mount(from_fd, to_path, what, from_path="", to_fd=-100,
                flags=MOVE_MOUNT_F_EMPTY_PATH):
    """move_mount(2): by default, attach the tree of from_fd at to_path."""
    _check(_libc.syscall(SYS_move_mount, ctypes.c_int(from_fd), os.fsencode(from_path),
                         ctypes.c_int(to_fd), os.fsencode(to_path), ctypes.c_uint(flags)),
           what)


def _mount_setattr(path, flags, what, attr_set=0, attr_clr=0, propagation=0,
                   userns_fd=0, dir_fd=-100):
    """mount_setattr(2) (5.12+): set and clear mount attributes on the mount
    at path (with AT_RECURSIVE: on every mount of its tree, however deep and
    whatever its path's permissions), optionally its propagation, and with
    MOUNT_ATTR_IDMAP the user namespace userns_fd as its idmapping.  A
    kernel without it fails with ENOSYS."""
    # struct mount_attr { __u64 attr_set, attr_clr, propagation, userns_fd; }
    attr = ctypes.create_string_buffer(struct.pack("4Q", attr_set, attr_clr, propagation,
                                                   userns_fd), 32)
    _check(_libc.syscall(SYS_mount_setattr, ctypes.c_int(dir_fd), os.fsencode(path),
                         ctypes.c_uint(flags), attr, ctypes.c_size_t(len(attr))), what)


def _close_fds_except(keep):
    """Close every fd >= 3 not in keep: close_range over the gaps, or, on a
    kernel without it, one close per fd listed in /proc/self/fd."""
    keep = sorted(set(keep))
    lowest = 3
    for fd in keep + [None]:
        if fd is not None and fd < lowest:
            continue
        top = 0xFFFFFFFF if fd is None else fd - 1
        if top >= lowest and _libc.syscall(SYS_close_range, lowest, top, 0) != 0:
            for name in os.listdir("/proc/self/fd"):
                if int(name) >= 3 and int(name) not in keep:
                    try:
                        os.close(int(name))
                    except OSError:
                        pass
            return
        if fd is not None:
            lowest = fd + 1


# ---------------------------------------------------------------------------
# Seccomp: syscall table, policy rules, BPF compiler, interpreter, disassembler.
#
# The policy is a list of Rule(syscall name, action, conditions).  The compiler
# turns it into classic BPF with libseccomp's decisions: architecture checked
# first, 64-bit argument comparisons on two 32-bit halves, names an
# architecture lacks skipped.  Dispatch on the syscall number is a search tree
# over sorted number ranges, weighted so that the common case (a number no
# rule names) leaves it after few tests.
# ---------------------------------------------------------------------------

class HardeningFlags(enum.IntFlag):
    FSyscallCompat = 1
    FAllowDevel = 2
    FAllowUserns = 4
    FAllowTTY = 8
    FAllowNet = 16


class SyscallOpts(enum.IntFlag):
    FlagVerbose = 1          # reserved
    FlagExt = 2
    FlagDenyNS = 4
    FlagDenyTTY = 8
    FlagDenyDevel = 16
    FlagMultiarch = 32
    FlagLinux32 = 64
    FlagCan = 128
    FlagBluetooth = 256


FSyscallCompat = HardeningFlags.FSyscallCompat
FAllowDevel = HardeningFlags.FAllowDevel
FAllowUserns = HardeningFlags.FAllowUserns
FAllowTTY = HardeningFlags.FAllowTTY
FAllowNet = HardeningFlags.FAllowNet
FlagExt = SyscallOpts.FlagExt
FlagDenyNS = SyscallOpts.FlagDenyNS
FlagDenyTTY = SyscallOpts.FlagDenyTTY
FlagDenyDevel = SyscallOpts.FlagDenyDevel
FlagMultiarch = SyscallOpts.FlagMultiarch
FlagLinux32 = SyscallOpts.FlagLinux32
FlagCan = SyscallOpts.FlagCan
FlagBluetooth = SyscallOpts.FlagBluetooth
_SYSCALL_OPTS_MASK = 0x1FF

AUDIT_ARCH = {"x86_64": 0xC000003E, "i386": 0x40000003,
              "aarch64": 0xC00000B7, "arm": 0x40000028}
_ARCH_BITS = {"x86_64": 64, "i386": 32, "aarch64": 64, "arm": 32}
_COMPAT_ARCH = {"x86_64": "i386", "aarch64": "arm"}
_X32_SYSCALL_BIT = 0x40000000

# Every syscall of the four architectures, Linux 6.17/6.18 (numbers up to 469):
# arch/x86/entry/syscalls/syscall_{64,32}.tbl, the generic table
# (include/uapi/asm-generic/unistd.h, 64-bit names) for aarch64, and
# arch/arm/tools/syscall.tbl (EABI: no OABI-only calls) plus ARM's private
# calls (breakpoint .. get_tls, 0xf0001..).  One line a name: its number on
# x86_64 i386 arm aarch64; "-" where the architecture has no such call, "="
# for the same number as the column before.
_SYSCALL_TABLE = """
name x86_64 i386 arm aarch64
_llseek - 140 = -
_newselect - 142 = -
_sysctl 156 149 = -
accept 43 - 285 202
accept4 288 364 366 242
access 21 33 = -
acct 163 51 = 89
add_key 248 286 309 217
adjtimex 159 124 = 171
afs_syscall 183 137 - -
alarm 37 27 - -
arch_prctl 158 384 - -
arm_fadvise64_64 - - 270 -
arm_sync_file_range - - 341 -
bdflush - 134 = -
bind 49 361 282 200
bpf 321 357 386 280
break - 17 - -
breakpoint - - 983041 -
brk 12 45 = 214
cacheflush - - 983042 -
cachestat 451 = = =
capget 125 184 = 90
capset 126 185 = 91
chdir 80 12 = 49
chmod 90 15 = -
chown 92 182 = -
chown32 - 212 = -
chroot 161 61 = 51
clock_adjtime 305 343 372 266
clock_adjtime64 - 405 = -
clock_getres 229 266 264 114
clock_getres_time64 - 406 = -
clock_gettime 228 265 263 113
clock_gettime64 - 403 = -
clock_nanosleep 230 267 265 115
clock_nanosleep_time64 - 407 = -
clock_settime 227 264 262 112
clock_settime64 - 404 = -
clone 56 120 = 220
clone3 435 = = =
close 3 6 = 57
close_range 436 = = =
connect 42 362 283 203
copy_file_range 326 377 391 285
creat 85 8 = -
create_module 174 127 - -
delete_module 176 129 = 106
dup 32 41 = 23
dup2 33 63 = -
dup3 292 330 358 24
epoll_create 213 254 250 -
epoll_create1 291 329 357 20
epoll_ctl 233 255 251 21
epoll_ctl_old 214 - - -
epoll_pwait 281 319 346 22
epoll_pwait2 441 = = =
epoll_wait 232 256 252 -
epoll_wait_old 215 - - -
eventfd 284 323 351 -
eventfd2 290 328 356 19
execve 59 11 = 221
execveat 322 358 387 281
exit 60 1 = 93
exit_group 231 252 248 94
faccessat 269 307 334 48
faccessat2 439 = = =
fadvise64 221 250 - 223
fadvise64_64 - 272 - -
fallocate 285 324 352 47
fanotify_init 300 338 367 262
fanotify_mark 301 339 368 263
fchdir 81 133 = 50
fchmod 91 94 = 52
fchmodat 268 306 333 53
fchmodat2 452 = = =
fchown 93 95 = 55
fchown32 - 207 = -
fchownat 260 298 325 54
fcntl 72 55 = 25
fcntl64 - 221 = -
fdatasync 75 148 = 83
fgetxattr 193 231 = 10
file_getattr 468 = = =
file_setattr 469 = = =
finit_module 313 350 379 273
flistxattr 196 234 = 13
flock 73 143 = 32
fork 57 2 = -
fremovexattr 199 237 = 16
fsconfig 431 = = =
fsetxattr 190 228 = 7
fsmount 432 = = =
fsopen 430 = = =
fspick 433 = = =
fstat 5 108 = 80
fstat64 - 197 = -
fstatat64 - 300 327 -
fstatfs 138 100 = 44
fstatfs64 - 269 267 -
fsync 74 118 = 82
ftime - 35 - -
ftruncate 77 93 = 46
ftruncate64 - 194 = -
futex 202 240 = 98
futex_requeue 456 = = =
futex_time64 - 422 = -
futex_wait 455 = = =
futex_waitv 449 = = =
futex_wake 454 = = =
futimesat 261 299 326 -
get_kernel_syms 177 130 - -
get_mempolicy 239 275 320 236
get_robust_list 274 312 339 100
get_thread_area 211 244 - -
get_tls - - 983046 -
getcpu 309 318 345 168
getcwd 79 183 = 17
getdents 78 141 = -
getdents64 217 220 217 61
getegid 108 50 = 177
getegid32 - 202 = -
geteuid 107 49 = 175
geteuid32 - 201 = -
getgid 104 47 = 176
getgid32 - 200 = -
getgroups 115 80 = 158
getgroups32 - 205 = -
getitimer 36 105 = 102
getpeername 52 368 287 205
getpgid 121 132 = 155
getpgrp 111 65 = -
getpid 39 20 = 172
getpmsg 181 188 - -
getppid 110 64 = 173
getpriority 140 96 = 141
getrandom 318 355 384 278
getresgid 120 171 = 150
getresgid32 - 211 = -
getresuid 118 165 = 148
getresuid32 - 209 = -
getrlimit 97 76 - 163
getrusage 98 77 = 165
getsid 124 147 = 156
getsockname 51 367 286 204
getsockopt 55 365 295 209
gettid 186 224 = 178
gettimeofday 96 78 = 169
getuid 102 24 = 174
getuid32 - 199 = -
getxattr 191 229 = 8
getxattrat 464 = = =
gtty - 32 - -
idle - 112 - -
init_module 175 128 = 105
inotify_add_watch 254 292 317 27
inotify_init 253 291 316 -
inotify_init1 294 332 360 26
inotify_rm_watch 255 293 318 28
io_cancel 210 249 247 3
io_destroy 207 246 244 1
io_getevents 208 247 245 4
io_pgetevents 333 385 399 292
io_pgetevents_time64 - 416 = -
io_setup 206 245 243 0
io_submit 209 248 246 2
io_uring_enter 426 = = =
io_uring_register 427 = = =
io_uring_setup 425 = = =
ioctl 16 54 = 29
ioperm 173 101 - -
iopl 172 110 - -
ioprio_get 252 290 315 31
ioprio_set 251 289 314 30
ipc - 117 - -
kcmp 312 349 378 272
kexec_file_load 320 - 401 294
kexec_load 246 283 347 104
keyctl 250 288 311 219
kill 62 37 = 129
landlock_add_rule 445 = = =
landlock_create_ruleset 444 = = =
landlock_restrict_self 446 = = =
lchown 94 16 = -
lchown32 - 198 = -
lgetxattr 192 230 = 9
link 86 9 = -
linkat 265 303 330 37
listen 50 363 284 201
listmount 458 = = =
listxattr 194 232 = 11
listxattrat 465 = = =
llistxattr 195 233 = 12
lock - 53 - -
lookup_dcookie 212 253 249 18
lremovexattr 198 236 = 15
lseek 8 19 = 62
lsetxattr 189 227 = 6
lsm_get_self_attr 459 = = =
lsm_list_modules 461 = = =
lsm_set_self_attr 460 = = =
lstat 6 107 = -
lstat64 - 196 = -
madvise 28 219 220 233
map_shadow_stack 453 - - 453
mbind 237 274 319 235
membarrier 324 375 389 283
memfd_create 319 356 385 279
memfd_secret 447 = - 447
migrate_pages 256 294 400 238
mincore 27 218 219 232
mkdir 83 39 = -
mkdirat 258 296 323 34
mknod 133 14 = -
mknodat 259 297 324 33
mlock 149 150 = 228
mlock2 325 376 390 284
mlockall 151 152 = 230
mmap 9 90 - 222
mmap2 - 192 = -
modify_ldt 154 123 - -
mount 165 21 = 40
mount_setattr 442 = = =
move_mount 429 = = =
move_pages 279 317 344 239
mprotect 10 125 = 226
mpx - 56 - -
mq_getsetattr 245 282 279 185
mq_notify 244 281 278 184
mq_open 240 277 274 180
mq_timedreceive 243 280 277 183
mq_timedreceive_time64 - 419 = -
mq_timedsend 242 279 276 182
mq_timedsend_time64 - 418 = -
mq_unlink 241 278 275 181
mremap 25 163 = 216
mseal 462 = = =
msgctl 71 402 304 187
msgget 68 399 303 186
msgrcv 70 401 302 188
msgsnd 69 400 301 189
msync 26 144 = 227
munlock 150 151 = 229
munlockall 152 153 = 231
munmap 11 91 = 215
name_to_handle_at 303 341 370 264
nanosleep 35 162 = 101
newfstatat 262 - - 79
nfsservctl 180 169 = 42
nice - 34 = -
oldfstat - 28 - -
oldlstat - 84 - -
oldolduname - 59 - -
oldstat - 18 - -
olduname - 109 - -
open 2 5 = -
open_by_handle_at 304 342 371 265
open_tree 428 = = =
open_tree_attr 467 = = =
openat 257 295 322 56
openat2 437 = = =
pause 34 29 = -
pciconfig_iobase - - 271 -
pciconfig_read - - 272 -
pciconfig_write - - 273 -
perf_event_open 298 336 364 241
personality 135 136 = 92
pidfd_getfd 438 = = =
pidfd_open 434 = = =
pidfd_send_signal 424 = = =
pipe 22 42 = -
pipe2 293 331 359 59
pivot_root 155 217 218 41
pkey_alloc 330 381 395 289
pkey_free 331 382 396 290
pkey_mprotect 329 380 394 288
poll 7 168 = -
ppoll 271 309 336 73
ppoll_time64 - 414 = -
prctl 157 172 = 167
pread64 17 180 = 67
preadv 295 333 361 69
preadv2 327 378 392 286
prlimit64 302 340 369 261
process_madvise 440 = = =
process_mrelease 448 = = =
process_vm_readv 310 347 376 270
process_vm_writev 311 348 377 271
prof - 44 - -
profil - 98 - -
pselect6 270 308 335 72
pselect6_time64 - 413 = -
ptrace 101 26 = 117
putpmsg 182 189 - -
pwrite64 18 181 = 68
pwritev 296 334 362 70
pwritev2 328 379 393 287
query_module 178 167 - -
quotactl 179 131 = 60
quotactl_fd 443 = = =
read 0 3 = 63
readahead 187 225 = 213
readdir - 89 - -
readlink 89 85 = -
readlinkat 267 305 332 78
readv 19 145 = 65
reboot 169 88 = 142
recv - - 291 -
recvfrom 45 371 292 207
recvmmsg 299 337 365 243
recvmmsg_time64 - 417 = -
recvmsg 47 372 297 212
remap_file_pages 216 257 253 234
removexattr 197 235 = 14
removexattrat 466 = = =
rename 82 38 = -
renameat 264 302 329 38
renameat2 316 353 382 276
request_key 249 287 310 218
restart_syscall 219 0 = 128
rmdir 84 40 = -
rseq 334 386 398 293
rt_sigaction 13 174 = 134
rt_sigpending 127 176 = 136
rt_sigprocmask 14 175 = 135
rt_sigqueueinfo 129 178 = 138
rt_sigreturn 15 173 = 139
rt_sigsuspend 130 179 = 133
rt_sigtimedwait 128 177 = 137
rt_sigtimedwait_time64 - 421 = -
rt_tgsigqueueinfo 297 335 363 240
sched_get_priority_max 146 159 = 125
sched_get_priority_min 147 160 = 126
sched_getaffinity 204 242 = 123
sched_getattr 315 352 381 275
sched_getparam 143 155 = 121
sched_getscheduler 145 157 = 120
sched_rr_get_interval 148 161 = 127
sched_rr_get_interval_time64 - 423 = -
sched_setaffinity 203 241 = 122
sched_setattr 314 351 380 274
sched_setparam 142 154 = 118
sched_setscheduler 144 156 = 119
sched_yield 24 158 = 124
seccomp 317 354 383 277
security 185 - - -
select 23 82 - -
semctl 66 394 300 191
semget 64 393 299 190
semop 65 - 298 193
semtimedop 220 - 312 192
semtimedop_time64 - 420 = -
send - - 289 -
sendfile 40 187 = 71
sendfile64 - 239 = -
sendmmsg 307 345 374 269
sendmsg 46 370 296 211
sendto 44 369 290 206
set_mempolicy 238 276 321 237
set_mempolicy_home_node 450 = = =
set_robust_list 273 311 338 99
set_thread_area 205 243 - -
set_tid_address 218 258 256 96
set_tls - - 983045 -
setdomainname 171 121 = 162
setfsgid 123 139 = 152
setfsgid32 - 216 = -
setfsuid 122 138 = 151
setfsuid32 - 215 = -
setgid 106 46 = 144
setgid32 - 214 = -
setgroups 116 81 = 159
setgroups32 - 206 = -
sethostname 170 74 = 161
setitimer 38 104 = 103
setns 308 346 375 268
setpgid 109 57 = 154
setpriority 141 97 = 140
setregid 114 71 = 143
setregid32 - 204 = -
setresgid 119 170 = 149
setresgid32 - 210 = -
setresuid 117 164 = 147
setresuid32 - 208 = -
setreuid 113 70 = 145
setreuid32 - 203 = -
setrlimit 160 75 = 164
setsid 112 66 = 157
setsockopt 54 366 294 208
settimeofday 164 79 = 170
setuid 105 23 = 146
setuid32 - 213 = -
setxattr 188 226 = 5
setxattrat 463 = = =
sgetmask - 68 - -
shmat 30 397 305 196
shmctl 31 396 308 195
shmdt 67 398 306 197
shmget 29 395 307 194
shutdown 48 373 293 210
sigaction - 67 = -
sigaltstack 131 186 = 132
signal - 48 - -
signalfd 282 321 349 -
signalfd4 289 327 355 74
sigpending - 73 = -
sigprocmask - 126 = -
sigreturn - 119 = -
sigsuspend - 72 = -
socket 41 359 281 198
socketcall - 102 - -
socketpair 53 360 288 199
splice 275 313 340 76
ssetmask - 69 - -
stat 4 106 = -
stat64 - 195 = -
statfs 137 99 = 43
statfs64 - 268 266 -
statmount 457 = = =
statx 332 383 397 291
stime - 25 - -
stty - 31 - -
swapoff 168 115 = 225
swapon 167 87 = 224
symlink 88 83 = -
symlinkat 266 304 331 36
sync 162 36 = 81
sync_file_range 277 314 - 84
syncfs 306 344 373 267
sysfs 139 135 = -
sysinfo 99 116 = 179
syslog 103 = = 116
tee 276 315 342 77
tgkill 234 270 268 131
time 201 13 - -
timer_create 222 259 257 107
timer_delete 226 263 261 111
timer_getoverrun 225 262 260 109
timer_gettime 224 261 259 108
timer_gettime64 - 408 = -
timer_settime 223 260 258 110
timer_settime64 - 409 = -
timerfd_create 283 322 350 85
timerfd_gettime 287 326 354 87
timerfd_gettime64 - 410 = -
timerfd_settime 286 325 353 86
timerfd_settime64 - 411 = -
times 100 43 = 153
tkill 200 238 = 130
truncate 76 92 = 45
truncate64 - 193 = -
tuxcall 184 - - -
ugetrlimit - 191 = -
ulimit - 58 - -
umask 95 60 = 166
umount - 22 - -
umount2 166 52 = 39
uname 63 122 = 160
unlink 87 10 = -
unlinkat 263 301 328 35
unshare 272 310 337 97
uselib 134 86 = -
userfaultfd 323 374 388 282
usr26 - - 983043 -
usr32 - - 983044 -
ustat 136 62 = -
utime 132 30 - -
utimensat 280 320 348 88
utimensat_time64 - 412 = -
utimes 235 271 269 -
vfork 58 190 = -
vhangup 153 111 = 58
vm86 - 166 - -
vm86old - 113 - -
vmsplice 278 316 343 75
vserver 236 273 313 -
wait4 61 114 = 260
waitid 247 284 280 95
waitpid - 7 - -
write 1 4 = 64
writev 20 146 = 66
"""


class _SyscallTables(dict):
    """arch -> {name: number}, each architecture's column read from the
    table the first time it is asked for (most runs need only one)."""

    def __init__(self, text):
        tokens = text.split()
        self._columns, self._rows = tokens[1:5], tokens[5:]
        super().__init__()

    def __missing__(self, arch):
        if arch not in self._columns:
            raise KeyError(arch)
        rows, column, numbers = self._rows, self._columns.index(arch) + 1, {}
        for start in range(0, len(rows), 5):
            at = start + column
            while rows[at] == "=":
                at -= 1
            if rows[at] != "-":
                numbers[rows[start]] = int(rows[at])
        self[arch] = numbers
        return numbers

    def _all(self):
        for arch in self._columns:
            self[arch]
        return self

    __iter__ = lambda self: iter(self._columns)
    __len__ = lambda self: len(self._columns)
    __contains__ = lambda self, arch: arch in self._columns
    keys = lambda self: dict.keys(self._all())
    items = lambda self: dict.items(self._all())
    values = lambda self: dict.values(self._all())
    get = lambda self, arch, default=None: self[arch] if arch in self._columns else default


SYSCALLS = _SyscallTables(_SYSCALL_TABLE)

# Named groups of syscalls, with systemd's meaning: the sets of its
# SystemCallFilter= (src/shared/seccomp-util.c, syscall_filter_sets[], as of
# systemd commit 000c05207d68658b76af9e1caf9aa3a4e3fa697b), plus @sandbox of
# later systemd and @io-uring, which systemd has not (its @aio holds them).
# A member an architecture lacks is skipped for it, as in the policy.
_SYSCALL_GROUPS_TEXT = """
@default clock_getres clock_getres_time64 clock_gettime clock_gettime64
 clock_nanosleep clock_nanosleep_time64 execve exit exit_group futex
 futex_time64 get_robust_list get_thread_area getegid getegid32 geteuid
 geteuid32 getgid getgid32 getgroups getgroups32 getpgid getpgrp getpid
 getppid getresgid getresgid32 getresuid getresuid32 getrlimit getsid gettid
 gettimeofday getuid getuid32 membarrier nanosleep pause prlimit64
 restart_syscall rseq rt_sigreturn sched_yield set_robust_list
 set_thread_area set_tid_address set_tls sigreturn time ugetrlimit
@aio io_cancel io_destroy io_getevents io_pgetevents io_pgetevents_time64
 io_setup io_submit io_uring_enter io_uring_register io_uring_setup
@basic-io _llseek close dup dup2 dup3 lseek pread64 preadv preadv2 pwrite64
 pwritev pwritev2 read readv write writev
@chown chown chown32 fchown fchown32 fchownat lchown lchown32
@clock adjtimex clock_adjtime clock_adjtime64 clock_settime clock_settime64
 settimeofday stime
@cpu-emulation modify_ldt subpage_prot switch_endian vm86 vm86old
@debug lookup_dcookie perf_event_open pidfd_getfd ptrace rtas
 sys_debug_setcontext
@file-system access chdir chmod close creat faccessat faccessat2 fallocate
 fchdir fchmod fchmodat fcntl fcntl64 fgetxattr flistxattr fremovexattr
 fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 ftruncate ftruncate64
 futimesat getcwd getdents getdents64 getxattr inotify_add_watch
 inotify_init inotify_init1 inotify_rm_watch lgetxattr link linkat listxattr
 llistxattr lremovexattr lsetxattr lstat lstat64 mkdir mkdirat mknod mknodat
 mmap mmap2 munmap newfstatat oldfstat oldlstat oldstat open openat openat2
 readlink readlinkat removexattr rename renameat renameat2 rmdir setxattr
 stat stat64 statfs statfs64 statx symlink symlinkat truncate truncate64
 unlink unlinkat utime utimensat utimensat_time64 utimes
@io-event _newselect epoll_create epoll_create1 epoll_ctl epoll_ctl_old
 epoll_pwait epoll_wait epoll_wait_old eventfd eventfd2 poll ppoll
 ppoll_time64 pselect6 pselect6_time64 select
@io-uring io_uring_enter io_uring_register io_uring_setup
@ipc ipc memfd_create mq_getsetattr mq_notify mq_open mq_timedreceive
 mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink msgctl
 msgget msgrcv msgsnd pipe pipe2 process_vm_readv process_vm_writev semctl
 semget semop semtimedop semtimedop_time64 shmat shmctl shmdt shmget
@keyring add_key keyctl request_key
@memlock mlock mlock2 mlockall munlock munlockall
@module delete_module finit_module init_module
@mount chroot fsconfig fsmount fsopen fspick mount move_mount open_tree
 pivot_root umount umount2
@network-io accept accept4 bind connect getpeername getsockname getsockopt
 listen recv recvfrom recvmmsg recvmmsg_time64 recvmsg send sendmmsg sendmsg
 sendto setsockopt shutdown socket socketcall socketpair
@obsolete _sysctl afs_syscall bdflush break create_module ftime
 get_kernel_syms getpmsg gtty idle lock mpx prof profil putpmsg query_module
 security sgetmask ssetmask stty sysfs tuxcall ulimit uselib ustat vserver
@pkey pkey_alloc pkey_free pkey_mprotect
@privileged @chown @clock @module @raw-io @reboot @swap _sysctl acct bpf
 capset chroot fanotify_init fanotify_mark nfsservctl open_by_handle_at
 pivot_root quotactl setdomainname setfsuid setfsuid32 setgroups setgroups32
 sethostname setresuid setresuid32 setreuid setreuid32 setuid setuid32
 vhangup
@process arch_prctl capget clone clone3 execveat fork getrusage kill
 pidfd_open pidfd_send_signal prctl rt_sigqueueinfo rt_tgsigqueueinfo setns
 swapcontext tgkill times tkill unshare vfork wait4 waitid waitpid
@raw-io ioperm iopl pciconfig_iobase pciconfig_read pciconfig_write
@reboot kexec_file_load kexec_load reboot
@resources ioprio_set mbind migrate_pages move_pages nice sched_setaffinity
 sched_setattr sched_setparam sched_setscheduler set_mempolicy setpriority
 setrlimit
@sandbox landlock_add_rule landlock_create_ruleset landlock_restrict_self
 seccomp
@setuid setgid setgid32 setgroups setgroups32 setregid setregid32 setresgid
 setresgid32 setresuid setresuid32 setreuid setreuid32 setuid setuid32
@signal rt_sigaction rt_sigpending rt_sigprocmask rt_sigsuspend
 rt_sigtimedwait rt_sigtimedwait_time64 sigaction sigaltstack signal
 signalfd signalfd4 sigpending sigprocmask sigsuspend
@swap swapoff swapon
@sync fdatasync fsync msync sync sync_file_range sync_file_range2 syncfs
@system-service @aio @basic-io @chown @default @file-system @io-event @ipc
 @keyring @memlock @network-io @process @resources @setuid @signal @sync
 @timer brk capget capset copy_file_range fadvise64 fadvise64_64 flock
 get_mempolicy getcpu getpriority getrandom ioctl ioprio_get kcmp madvise
 mprotect mremap name_to_handle_at oldolduname olduname personality
 readahead readdir remap_file_pages sched_get_priority_max
 sched_get_priority_min sched_getaffinity sched_getattr sched_getparam
 sched_getscheduler sched_rr_get_interval sched_rr_get_interval_time64
 sched_yield sendfile sendfile64 setfsgid setfsgid32 setfsuid setfsuid32
 setpgid setsid splice sysinfo tee umask uname userfaultfd vmsplice
@timer alarm getitimer setitimer timer_create timer_delete timer_getoverrun
 timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create
 timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 times
"""


def _parse_groups(text):
    """A line starting with the group's name, continued on indented lines."""
    groups = {}
    for line in text.strip("\n").split("\n"):
        words = line.split()
        if not line.startswith(" "):
            members = groups[words.pop(0)] = []
        members.extend(words)
    return groups


_SYSCALL_GROUPS = _parse_groups(_SYSCALL_GROUPS_TEXT)


def syscall_group(name):
    """The syscall names of a group ("@mount", ...) with nested groups
    expanded, sorted; "@known" is every name of the four tables."""
    if name == "@known":
        return sorted(set().union(*SYSCALLS.values()))
    if name not in _SYSCALL_GROUPS:
        raise SandboxError("seccomp: unknown syscall group %r (one of %s)" % (
            name, ", ".join(sorted(_SYSCALL_GROUPS) + ["@known"])), errno.EINVAL)
    names = set()
    for member in _SYSCALL_GROUPS[name]:
        names.update(syscall_group(member) if member.startswith("@") else [member])
    return sorted(names)


SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_LOG = 0x7FFC0000
SECCOMP_RET_ALLOW = 0x7FFF0000
_MAX_ERRNO = 4094        # libseccomp's limit (below the kernel's MAX_ERRNO)


def _errno_action(err):
    return SECCOMP_RET_ERRNO | err


def _parse_errno(text):
    """An errno by name ("ENOSYS") or number (38)."""
    text = str(text).strip()
    number = int(text) if text.isdigit() else getattr(errno, text.upper(), None) \
        if text.upper().startswith("E") else None
    if not isinstance(number, int) or not 1 <= number <= _MAX_ERRNO:
        raise SandboxError("seccomp: %r is not an errno (a name such as EPERM, or 1..%d)"
                           % (text, _MAX_ERRNO), errno.EINVAL)
    return number


def _parse_action(action):
    """A rule's action: "allow", "kill", "log", "deny" (EPERM), "deny:ERRNO"
    (a name or a number), or a raw SECCOMP_RET_* value."""
    if isinstance(action, str):
        word, colon, err = action.partition(":")
        word = word.strip().lower()
        if word == "deny":
            return _errno_action(_parse_errno(err) if colon else errno.EPERM)
        named = {"allow": SECCOMP_RET_ALLOW, "kill": SECCOMP_RET_KILL_PROCESS,
                 "log": SECCOMP_RET_LOG}.get(word)
        if named is not None and not colon:
            return named
    elif isinstance(action, int) and not isinstance(action, bool) and 0 <= action <= _WORD:
        return int(action)
    raise SandboxError("seccomp: bad action %r (allow, kill, log, deny or deny:ERRNO)"
                       % (action,), errno.EINVAL)


# Argument comparisons (libseccomp's SCMP_CMP_*): value and mask are 64-bit.
CMP_NE, CMP_LT, CMP_LE, CMP_EQ, CMP_GE, CMP_GT, CMP_MASKED_EQ = (
    "ne", "lt", "le", "eq", "ge", "gt", "masked_eq")
_CMP_OPS = (CMP_NE, CMP_LT, CMP_LE, CMP_EQ, CMP_GE, CMP_GT, CMP_MASKED_EQ)


class Arg(tuple):
    """One argument test: ``Arg(index, op, value, mask=0)``: argument
    `index` (0..5) compared with `value` by `op` (CMP_EQ, ... or "eq", ...);
    CMP_MASKED_EQ tests ``arg & mask == value & mask``.  Values are 64-bit
    (negative ones wrap); a 32-bit architecture compares the low halves."""

    def __new__(cls, index, op, value, mask=0):
        ints = [x for x in (index, value, mask) if isinstance(x, int) and not isinstance(x, bool)]
        if len(ints) != 3 or op not in _CMP_OPS or not 0 <= index <= 5:
            raise SandboxError("seccomp: bad argument test Arg(%r, %r, %r, %r): index 0..5, "
                               "op one of %s, integer value and mask"
                               % (index, op, value, mask, ", ".join(_CMP_OPS)), errno.EINVAL)
        return tuple.__new__(cls, (index, op, value & (2**64 - 1), mask & (2**64 - 1)))

    index = property(lambda self: self[0])
    op = property(lambda self: self[1])
    value = property(lambda self: self[2])
    mask = property(lambda self: self[3])


class Rule(tuple):
    """``Rule(name_or_group, action, *args)``: for the syscall (or each of
    the group, "@mount"), when every Arg holds, the action: "allow", "kill",
    "log", "deny" (EPERM), "deny:ERRNO", or a raw SECCOMP_RET_* value.  At
    most one Arg per argument (as libseccomp)."""

    def __new__(cls, syscall, action, *args):
        if not isinstance(syscall, str) or not (
                syscall in _SYSCALL_GROUPS or syscall == "@known"
                or any(syscall in SYSCALLS[arch] for arch in SYSCALLS)):
            raise SandboxError("seccomp: unknown syscall or group %r" % (syscall,), errno.EINVAL)
        if not all(isinstance(arg, Arg) for arg in args) or \
                len({arg.index for arg in args}) != len(args):
            raise SandboxError("seccomp: the conditions of a rule on %s are Args, at most one "
                               "per argument" % syscall, errno.EINVAL)
        return tuple.__new__(cls, (syscall, _parse_action(action), args))

    syscall = property(lambda self: self[0])
    action = property(lambda self: self[1])
    args = property(lambda self: self[2])


def _rule(syscall, action, *args):
    """A preset rule: any name (one no architecture has is skipped)."""
    return tuple.__new__(Rule, (syscall, action, args))


AF_CAN = 29
AF_BLUETOOTH = 31
TIOCSTI = 0x5412
TIOCLINUX = 0x541C
PER_LINUX = 0
PER_LINUX32 = 8


def _deny(err, *names):
    return [_rule(name, _errno_action(err)) for name in names]


def seccomp_rules(opts):
    """The policy of SPEC section 4 as a list of Rules (first match wins)."""
    opts = _check_syscall_opts(opts)
    rules = _deny(errno.EPERM, "syslog", "uselib", "acct", "quotactl",
                  "add_key", "keyctl", "request_key", "move_pages", "mbind",
                  "get_mempolicy", "set_mempolicy", "set_mempolicy_home_node",
                  "migrate_pages")
    if opts & FlagExt:
        rules += _deny(errno.EPERM, "adjtimex", "clock_adjtime",
                       "clock_adjtime64", "clock_settime", "clock_settime64",
                       "settimeofday", "delete_module", "finit_module",
                       "init_module", "kexec_file_load", "kexec_load",
                       "reboot", "swapoff", "swapon", "bpf", "userfaultfd",
                       "open_by_handle_at")
        # ENOSYS, as on a kernel without io_uring, so programs fall back to
        # ordinary calls: io_uring's own operations (IORING_OP_SOCKET, ...)
        # never pass through this filter.
        rules += _deny(errno.ENOSYS, "io_uring_setup", "io_uring_enter",
                       "io_uring_register")
    if opts & FlagDenyNS:
        rules += _deny(errno.EPERM, "unshare", "setns", "mount", "umount",
                       "umount2", "pivot_root", "chroot")
        rules.append(_rule("clone", _errno_action(errno.EPERM),
                          Arg(0, CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER)))
        rules += _deny(errno.ENOSYS, "clone3", "open_tree", "move_mount",
                       "fsopen", "fsconfig", "fsmount", "fspick",
                       "mount_setattr")
    if opts & FlagDenyTTY:
        for request in (TIOCSTI, TIOCLINUX):
            rules.append(_rule("ioctl", _errno_action(errno.EPERM),
                              Arg(1, CMP_MASKED_EQ, request, 0xFFFFFFFF)))
    if opts & FlagDenyDevel:
        rules += _deny(errno.EPERM, "perf_event_open", "ptrace",
                       "process_vm_readv", "process_vm_writev", "kcmp",
                       "pidfd_getfd")
        allowed = PER_LINUX32 if opts & FlagLinux32 else PER_LINUX
        rules.append(_rule("personality", _errno_action(errno.EPERM),
                          Arg(0, CMP_NE, allowed)))
    if not opts & FlagMultiarch:
        rules += _deny(errno.EPERM, "modify_ldt")
        if opts & FlagExt:
            rules += _deny(errno.ENOSYS, "subpage_prot", "switch_endian",
                           "vm86", "vm86old")
    allowed = [socket.AF_UNSPEC, socket.AF_UNIX, socket.AF_INET,
               socket.AF_INET6, socket.AF_NETLINK]
    if opts & FlagCan:
        allowed.append(AF_CAN)
    if opts & FlagBluetooth:
        allowed.append(AF_BLUETOOTH)
    for call in ("socket", "socketpair"):
        previous = -1
        for family in sorted(allowed):
            for denied in range(previous + 1, family):
                rules.append(_rule(call, _errno_action(errno.EAFNOSUPPORT),
                                  Arg(0, CMP_EQ, denied)))
            previous = family
        rules.append(_rule(call, _errno_action(errno.EAFNOSUPPORT),
                          Arg(0, CMP_GE, previous + 1)))
    return rules


def _check_syscall_opts(opts):
    if not isinstance(opts, int) or opts < 0 or opts & ~_SYSCALL_OPTS_MASK:
        raise SandboxError("seccomp: invalid syscall options %r" % (opts,), errno.EINVAL)
    return opts


def _check_arch(arch):
    arch = HOST_ARCH if arch is None else arch
    if arch not in AUDIT_ARCH:
        raise SandboxError("seccomp: unsupported architecture %r (one of %s)"
                           % (arch, ", ".join(sorted(AUDIT_ARCH))), errno.EINVAL)
    return arch


# -- libseccomp's rule database ----------------------------------------------
#
# How libseccomp 2.5 merges the rules added for one syscall (src/db.c:
# _db_rule_gen_64/_32, _db_tree_prune, _db_tree_add, db_rule_add), followed
# step by step so that the filter decides exactly as libseccomp's would for
# the same rule list, its quirks included.  A rule becomes a chain of 32-bit
# comparison nodes; chains merge into a tree of levels (sibling lists kept in
# libseccomp's order), each node jumping on true/false to a deeper level, an
# action, or the next sibling; the end of a level falls back to the level
# above, and the end of the top level to the default action.

_SCMP_EQ, _SCMP_GT, _SCMP_GE, _SCMP_MEQ = "eq", "gt", "ge", "masked_eq"
_OP_PRIORITY = {CMP_MASKED_EQ: 3, CMP_EQ: 3, CMP_NE: 3, CMP_LE: 2, CMP_LT: 2,
                CMP_GE: 1, CMP_GT: 1}


class _Node:
    __slots__ = ("arg", "hi", "op", "op_orig", "mask", "datum", "datum_full",
                 "nxt_t", "nxt_f", "act_t", "act_f", "act_t_flg", "act_f_flg",
                 "lvl_prv", "lvl_nxt", "refcnt")

    def __init__(self, arg, hi, op_orig, mask, datum, datum_full):
        self.arg, self.hi, self.op, self.op_orig = arg, hi, op_orig, op_orig
        self.mask, self.datum, self.datum_full = mask, datum & mask, datum_full
        self.nxt_t = self.nxt_f = self.lvl_prv = self.lvl_nxt = None
        self.act_t = self.act_f = 0
        self.act_t_flg = self.act_f_flg = False
        self.refcnt = 0

    def copied(self, memo):
        """This node and the nodes it links to, each copied once (memo: id
        -> copy) and linked as the originals are (what copy.deepcopy() would
        make, without importing copy on the command line's path)."""
        copy = memo.get(id(self))
        if copy is None:
            copy = memo[id(self)] = _Node.__new__(_Node)
            for name in _Node.__slots__:
                value = getattr(self, name)
                setattr(copy, name, value.copied(memo) if isinstance(value, _Node) else value)
        return copy


def _get(node):
    if node is not None:
        node.refcnt += 1
    return node


def _prio(node):
    return (node.arg << 1) + (1 if node.hi else 0)


def _chain_lt(a, b):
    if _prio(a) != _prio(b):
        return _prio(a) < _prio(b)
    a_op, b_op = _OP_PRIORITY[a.op_orig], _OP_PRIORITY[b.op_orig]
    if a_op != b_op:
        return a_op < b_op
    if a.op_orig in (CMP_LE, CMP_LT):
        return a.datum > b.datum
    return a.datum < b.datum


def _chain_eq(a, b):
    return (_prio(a) == _prio(b) and a.op == b.op and a.datum == b.datum
            and a.mask == b.mask)


def _leaf(node):
    return node.nxt_t is None and node.nxt_f is None


def _zombie(node):
    return _leaf(node) and not node.act_t_flg and not node.act_f_flg


def _node_put(node):
    """Drop a reference; (nodes freed, what the holder's pointer becomes)."""
    if node is None:
        return 0, None
    node.refcnt -= 1
    if node.refcnt:
        return 0, node
    count = 0
    lvl_p, lvl_n, nxt_t, nxt_f = node.lvl_prv, node.lvl_nxt, node.nxt_t, node.nxt_f
    if lvl_p is not None:
        lvl_p.lvl_nxt = None
    if lvl_n is not None:
        lvl_n.lvl_prv = None
    if lvl_p is not None:
        freed, lvl_p = _node_put(lvl_p)
        count += freed
    if lvl_n is not None:
        freed, lvl_n = _node_put(lvl_n)
        count += freed
    if lvl_p is not None:
        lvl_p.lvl_nxt = _get(lvl_n)
    if lvl_n is not None:
        lvl_n.lvl_prv = _get(lvl_p)
    count += _tree_put(nxt_t)[0] + _tree_put(nxt_f)[0] + 1
    return count, lvl_p if lvl_p is not None else lvl_n


def _level_clean(node):
    count, n = 0, node
    while n.lvl_prv is not None:
        n = n.lvl_prv
    start = n
    while n is not None:
        links = (n.lvl_prv is not None) + (n.lvl_nxt is not None)
        if n.refcnt > links:
            return count
        n = n.lvl_nxt
    n = start
    while n is not None:
        freed, n = _node_put(n)
        count += freed
    return count


def _tree_put(tree):
    count, tree = _node_put(tree)
    if tree is not None:
        count += _level_clean(tree)
    return count, tree


class _Ref:
    """A pointer to a node pointer (C's struct db_arg_chain_tree **)."""
    __slots__ = ("obj", "attr")

    def __init__(self, obj, attr):
        self.obj, self.attr = obj, attr

    def get(self):
        return getattr(self.obj, self.attr)

    def set(self, value):
        setattr(self.obj, self.attr, value)


def _tree_remove(ref, node):
    if ref is None or ref.get() is None or node is None:
        return 0
    c_iter = ref.get()
    while c_iter.lvl_prv is not None:
        c_iter = c_iter.lvl_prv
    count = 0
    while True:
        if c_iter is node:
            break
        count += _tree_remove(_Ref(c_iter, "nxt_t"), node)
        count += _tree_remove(_Ref(c_iter, "nxt_f"), node)
        if _zombie(c_iter):
            break
        c_iter = c_iter.lvl_nxt
        if c_iter is None or count:
            return count
    if c_iter is ref.get():
        ref.set(c_iter.lvl_prv if c_iter.lvl_prv is not None else c_iter.lvl_nxt)
    if c_iter.lvl_prv is not None:
        c_iter.lvl_prv.lvl_nxt = c_iter.lvl_nxt
    if c_iter.lvl_nxt is not None:
        c_iter.lvl_nxt.lvl_prv = c_iter.lvl_prv
    c_iter.lvl_prv = c_iter.lvl_nxt = None
    return count + _node_put(c_iter)[0]


def _act_check(tree, action):
    if tree is None:
        return True
    c_iter = tree
    while c_iter.lvl_prv is not None:
        c_iter = c_iter.lvl_prv
    while c_iter is not None:
        if c_iter.act_t_flg and c_iter.act_t != action:
            return False
        if c_iter.act_f_flg and c_iter.act_f != action:
            return False
        if not _act_check(c_iter.nxt_t, action) or not _act_check(c_iter.nxt_f, action):
            return False
        c_iter = c_iter.lvl_nxt
    return True


_IST_MATCH, _IST_MATCH_ONCE = 0x1, 0x2
_IST_X_FINISHED, _IST_N_FINISHED = 0x10, 0x20
_IST_X_PREFIX, _IST_N_PREFIX = 0x100, 0x200
_IST_M_MATCHSET = _IST_MATCH | _IST_MATCH_ONCE
_IST_M_REDUNDANT = _IST_MATCH | _IST_X_FINISHED | _IST_N_PREFIX


class _State:
    __slots__ = ("flags", "action", "sx")

    def __init__(self, sx, action=0, flags=0):
        self.sx, self.action, self.flags = sx, action, flags

    def copy(self):
        return _State(self.sx, self.action, self.flags)


class _ExistsError(Exception):
    """libseccomp's -EEXIST: the rule conflicts with one added before."""


def _tree_prune(ref, new, state):
    count = 0
    state_new = state.copy()
    x_iter, n_iter = ref.get(), new
    if n_iter is None or x_iter is None:
        return _prune_return(state, state_new, count)
    if state.flags & _IST_M_MATCHSET == _IST_MATCH_ONCE:
        return _prune_return(state, state_new, count)
    while x_iter.lvl_prv is not None:
        x_iter = x_iter.lvl_prv
    while True:
        x_iter_next = x_iter.lvl_nxt
        if _chain_eq(x_iter, n_iter):
            state_new.flags |= _IST_M_MATCHSET
            if _leaf(n_iter):
                state_new.flags |= _IST_N_FINISHED
            if _leaf(x_iter):
                state_new.flags |= _IST_X_FINISHED
            if ((x_iter.act_t_flg or x_iter.nxt_t) and not (n_iter.act_t_flg or n_iter.nxt_t)):
                return _prune_return(state, state_new, count)
            if ((x_iter.act_f_flg or x_iter.nxt_f) and not (n_iter.act_f_flg or n_iter.nxt_f)):
                return _prune_return(state, state_new, count)
            if state_new.flags & _IST_N_FINISHED and state_new.flags & _IST_X_FINISHED:
                if (n_iter.act_t_flg != x_iter.act_t_flg or n_iter.act_t != x_iter.act_t
                        or n_iter.act_f_flg != x_iter.act_f_flg or n_iter.act_f != x_iter.act_f):
                    return _prune_return(state, state_new, count)
            gone = False
            for branch in ("nxt_t", "nxt_f"):
                if getattr(n_iter, branch) is not None:
                    _get(x_iter)
                    state_nxt = state.copy()
                    state_nxt.flags |= _IST_M_MATCHSET
                    count += _tree_prune(_Ref(x_iter, branch), getattr(n_iter, branch), state_nxt)
                    freed, x_iter = _node_put(x_iter)
                    count += freed
                    if state_nxt.flags & _IST_MATCH:
                        state_new.flags |= state_nxt.flags
                    if x_iter is None:
                        gone = True
                        break
            if not gone:
                if (_act_check(x_iter, state_new.action) and state_new.flags & _IST_MATCH
                        and state_new.flags & _IST_N_FINISHED and state_new.flags & _IST_X_PREFIX):
                    count += _tree_remove(_Ref(state.sx, "chains"), x_iter)
                    if state.sx.chains is None:
                        return _prune_return(state, state_new, count)
                elif (_act_check(x_iter, state_new.action) and state_new.flags & _IST_MATCH
                      and state_new.flags & _IST_X_FINISHED and state_new.flags & _IST_N_PREFIX):
                    return _prune_return(state, state_new, count)
        elif _chain_lt(x_iter, n_iter):
            if state.flags & _IST_N_PREFIX:
                return _prune_return(state, state_new, count)
            for branch in ("nxt_t", "nxt_f"):
                if getattr(x_iter, branch) is not None:
                    _get(x_iter)
                    state_nxt = state.copy()
                    state_nxt.flags &= ~_IST_MATCH
                    state_nxt.flags |= _IST_X_PREFIX
                    count += _tree_prune(_Ref(x_iter, branch), n_iter, state_nxt)
                    freed, x_iter = _node_put(x_iter)
                    count += freed
                    if state_nxt.flags & _IST_MATCH:
                        state_new.flags |= state_nxt.flags
                        return _prune_return(state, state_new, count)
                    if x_iter is None:
                        break
        else:
            if state.flags & _IST_X_PREFIX:
                return _prune_return(state, state_new, count)
            for branch in ("nxt_t", "nxt_f"):
                if getattr(n_iter, branch) is not None:
                    _get(x_iter)
                    state_nxt = state.copy()
                    state_nxt.flags &= ~_IST_MATCH
                    state_nxt.flags |= _IST_N_PREFIX
                    holder = _Holder(x_iter)
                    count += _tree_prune(_Ref(holder, "node"), getattr(n_iter, branch), state_nxt)
                    x_iter = holder.node
                    freed, x_iter = _node_put(x_iter)
                    count += freed
                    if state_nxt.flags & _IST_MATCH:
                        state_new.flags |= state_nxt.flags
                        return _prune_return(state, state_new, count)
                    if x_iter is None:
                        break
        x_iter = x_iter_next
        if x_iter is None:
            break
    state_new.flags &= ~_IST_MATCH
    return _prune_return(state, state_new, count)


class _Holder:
    __slots__ = ("node",)

    def __init__(self, node):
        self.node = node


def _prune_return(state, state_new, count):
    if state_new.flags & _IST_MATCH:
        state.flags |= state_new.flags
    else:
        state.flags &= ~_IST_MATCH
    return count


def _tree_add(ref, new, state):
    x_iter, n_iter = ref.get(), new
    while x_iter is not None:
        if _chain_eq(x_iter, n_iter):
            for flg, act, nxt, greater in (("act_t_flg", "act_t", "nxt_t", True),
                                           ("act_f_flg", "act_f", "nxt_f", False)):
                if not getattr(n_iter, flg):
                    continue
                if not getattr(x_iter, flg):
                    if not _act_check(getattr(x_iter, nxt), getattr(n_iter, act)):
                        raise _ExistsError()
                    freed, _ = _node_put(getattr(x_iter, nxt))
                    setattr(x_iter, nxt, None)
                    setattr(x_iter, act, getattr(n_iter, act))
                    setattr(x_iter, flg, True)
                elif getattr(n_iter, act) != getattr(x_iter, act):
                    # libseccomp's 64-bit GT/GE (LT/LE) adjustment, which
                    # sets act_t in both cases
                    if n_iter.hi and ((n_iter.datum_full > x_iter.datum_full) if greater
                                      else (n_iter.datum_full < x_iter.datum_full)):
                        x_iter.act_t = n_iter.act_t
                    if _leaf(x_iter) or _leaf(n_iter):
                        raise _ExistsError()
            for nxt, flg in (("nxt_t", "act_t_flg"), ("nxt_f", "act_f_flg")):
                if getattr(n_iter, nxt) is not None:
                    if getattr(x_iter, nxt) is not None:
                        _tree_add(_Ref(x_iter, nxt), getattr(n_iter, nxt), state)
                    elif not getattr(x_iter, flg):
                        setattr(x_iter, nxt, _get(getattr(n_iter, nxt)))
                    else:
                        return
            return
        elif not _chain_lt(x_iter, n_iter):
            if x_iter.lvl_nxt is None:
                n_iter.lvl_prv = _get(x_iter)
                x_iter.lvl_nxt = _get(n_iter)
                return
            x_iter = x_iter.lvl_nxt
        else:
            if x_iter.lvl_prv is not None:
                x_iter.lvl_prv.lvl_nxt = _get(n_iter)
                n_iter.lvl_prv = x_iter.lvl_prv
                x_iter.lvl_prv = _get(n_iter)
                n_iter.lvl_nxt = x_iter
            else:
                x_iter.lvl_prv = _get(n_iter)
                n_iter.lvl_nxt = _get(x_iter)
            if ref.get() is x_iter:
                ref.set(_get(n_iter))
                _node_put(x_iter)
            return


def _chain_64(args, action):
    """_db_rule_gen_64: the chain of nodes for a rule's conditions (args
    sorted by index, at most one each) on a 64-bit architecture."""
    head = prev = prev_op = None
    last = None
    for arg in args:
        op, datum = arg.op, arg.value
        mask = arg.mask if op == CMP_MASKED_EQ else 2**64 - 1
        if op == CMP_MASKED_EQ and not mask:
            continue        # a no-op in both halves
        hi_mask, lo_mask = mask >> 32, mask & _WORD
        if op in (CMP_GT, CMP_GE, CMP_LE, CMP_LT):
            level = [_Node(arg.index, True, op, hi_mask, datum >> 32, datum),
                     _Node(arg.index, True, op, hi_mask, datum >> 32, datum),
                     _Node(arg.index, False, op, lo_mask, datum & _WORD, datum)]
            level[0].op, level[1].op = _SCMP_GT, _SCMP_EQ
            level[2].op = _SCMP_GT if op in (CMP_GT, CMP_LE) else _SCMP_GE
            level[0].nxt_f = _get(level[1])
            level[1].nxt_t = _get(level[2])
        else:
            level = [_Node(arg.index, True, op, hi_mask, datum >> 32, datum),
                     _Node(arg.index, False, op, lo_mask, datum & _WORD, datum), None]
            level[0].op = level[1].op = _SCMP_MEQ if op == CMP_MASKED_EQ else _SCMP_EQ
            level[0].nxt_t = _get(level[1])
        if prev is None:
            head = _get(level[0])
        elif prev_op in (CMP_GT, CMP_GE):
            prev[0].nxt_t = _get(level[0])
            prev[2].nxt_t = _get(level[0])
        elif prev_op in (CMP_EQ, CMP_MASKED_EQ):
            prev[1].nxt_t = _get(level[0])
        elif prev_op in (CMP_LE, CMP_LT):
            prev[1].nxt_f = _get(level[0])
            prev[2].nxt_f = _get(level[0])
        else:
            prev[0].nxt_f = _get(level[0])
            prev[1].nxt_f = _get(level[0])
        prev, prev_op, last = level, op, level
    if last is not None:
        if prev_op in (CMP_GT, CMP_GE):
            ends = [(last[0], True), (last[2], True)]
        elif prev_op in (CMP_LE, CMP_LT):
            ends = [(last[1], False), (last[2], False)]
        elif prev_op in (CMP_EQ, CMP_MASKED_EQ):
            ends = [(last[1], True)]
        else:
            ends = [(last[0], False), (last[1], False)]
        for node, on_true in ends:
            if on_true:
                node.act_t_flg, node.act_t = True, action
            else:
                node.act_f_flg, node.act_f = True, action
    return head


def _chain_32(args, action):
    """_db_rule_gen_32: one node per condition, on the low 32 bits."""
    head = prev = None
    on_true = True
    for arg in args:
        if arg.op == CMP_MASKED_EQ and not arg.mask & _WORD:
            continue
        mask = arg.mask & _WORD if arg.op == CMP_MASKED_EQ else _WORD
        node = _Node(arg.index, False, arg.op, mask, arg.value & _WORD, arg.value)
        if prev is None:
            head = _get(node)
        elif on_true:
            prev.nxt_t = _get(node)
        else:
            prev.nxt_f = _get(node)
        node.op, on_true = {CMP_NE: (_SCMP_EQ, False), CMP_LT: (_SCMP_GE, False),
                            CMP_LE: (_SCMP_GT, False), CMP_EQ: (_SCMP_EQ, True),
                            CMP_MASKED_EQ: (_SCMP_MEQ, True), CMP_GE: (_SCMP_GE, True),
                            CMP_GT: (_SCMP_GT, True)}[arg.op]
        prev = node
    if prev is not None:
        if on_true:
            prev.act_t_flg, prev.act_t = True, action
        else:
            prev.act_f_flg, prev.act_f = True, action
    return head


class _SyscallEntry:
    """db_sys_list: the merged rules of one syscall number."""
    __slots__ = ("chains", "action")

    def __init__(self, chains, action):
        self.chains, self.action = chains, action

    def copied(self):
        return _SyscallEntry(self.chains.copied({}) if self.chains else None, self.action)


def _entry_actions(entry):
    if entry.chains is None:
        return {entry.action}
    seen, out, stack = set(), set(), [entry.chains]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if node.act_t_flg:
            out.add(node.act_t)
        if node.act_f_flg:
            out.add(node.act_f)
        stack += [node.nxt_t, node.nxt_f, node.lvl_prv, node.lvl_nxt]
    return out


def _db_rule_add(entries, number, bits, action, args):
    """db_rule_add for one architecture; raises _ExistsError where
    libseccomp returns -EEXIST (the caller then restores `entries`)."""
    chains = (_chain_64 if bits == 64 else _chain_32)(args, action)
    entry = entries.get(number)
    if entry is None:
        entries[number] = _SyscallEntry(chains, action)
        return
    removed_all = False
    while True:
        if entry.chains is None:
            if removed_all:
                entry.chains, entry.action = chains, action
            return      # an unconditional rule came first: it stays
        if chains is None:
            _tree_put(entry.chains)
            entry.chains, entry.action = None, action
            return
        state = _State(entry, action)
        if _tree_prune(_Ref(entry, "chains"), chains, state) > 0:
            removed_all = True
            if entry.chains is None:
                continue
        elif state.flags & _IST_M_REDUNDANT == _IST_M_REDUNDANT:
            return
        _tree_add(_Ref(entry, "chains"), chains, _State(entry))
        return


def _decide(entry, args, bits):
    """What the merged rules of one syscall return for these arguments
    (None: no rule decided, the default action applies)."""
    if entry.chains is None:
        return entry.action
    return _decide_level(entry.chains, args)


def _node_value(node, args):
    value = args[node.arg]
    value = (value >> 32 if node.hi else value) & _WORD & node.mask
    if node.op in (_SCMP_EQ, _SCMP_MEQ):
        return value == node.datum
    return value > node.datum if node.op == _SCMP_GT else value >= node.datum


def _decide_level(node, args):
    while node.lvl_prv is not None:
        node = node.lvl_prv
    while node is not None:
        if _node_value(node, args):
            nxt, flg, act = node.nxt_t, node.act_t_flg, node.act_t
        else:
            nxt, flg, act = node.nxt_f, node.act_f_flg, node.act_f
        if nxt is not None:
            decided = _decide_level(nxt, args)
            if decided is not None:
                return decided
        elif flg:
            return act
        node = node.lvl_nxt
    return None


# -- BPF instructions -------------------------------------------------------

BPF_LD, BPF_LDX, BPF_ST, BPF_STX, BPF_ALU, BPF_JMP, BPF_RET, BPF_MISC = range(8)
BPF_W, BPF_H, BPF_B = 0x00, 0x08, 0x10
BPF_IMM, BPF_ABS, BPF_IND, BPF_MEM, BPF_LEN = 0x00, 0x20, 0x40, 0x60, 0x80
BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_OR, BPF_AND, BPF_LSH, BPF_RSH = (
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70)
BPF_NEG, BPF_MOD, BPF_XOR = 0x80, 0x90, 0xA0
BPF_JA, BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET = 0x00, 0x10, 0x20, 0x30, 0x40
BPF_K, BPF_X, BPF_A = 0x00, 0x08, 0x10
BPF_TAX, BPF_TXA = 0x00, 0x80

_OFFSET_NR, _OFFSET_ARCH = 0, 4


def _arg_offset(index, high):
    return 16 + 8 * index + (4 if high else 0)


class _Asm:
    """Instructions with symbolic jump targets; assemble() lays them out and
    inserts `ja` trampolines where a conditional jump would exceed 255."""

    def __init__(self):
        self.code = []          # [op, k, jt_label, jf_label] or ("label", name)
        self.labels = 0

    def label(self):
        self.labels += 1
        return self.labels

    def place(self, label):
        self.code.append(("label", label))

    def ins(self, op, k=0, jt=None, jf=None):
        self.code.append([op, k, jt, jf])

    def load(self, offset):
        self.ins(BPF_LD | BPF_W | BPF_ABS, offset)

    def ret(self, action):
        self.ins(BPF_RET | BPF_K, action)

    def assemble(self):
        code = self.code
        while True:
            where, index = {}, 0
            for item in code:
                if item[0] == "label":
                    where[item[1]] = index
                else:
                    index += 1
            out, index, patched = [], 0, None
            for position, item in enumerate(code):
                if item[0] == "label":
                    continue
                op, k, jt, jf = item
                if op & 7 == BPF_JMP and op != BPF_JMP | BPF_JA:
                    offsets = [0 if t is None else where[t] - index - 1 for t in (jt, jf)]
                    if max(offsets) > 255:
                        patched = (position, index)
                        break
                    out.append(struct.pack("<HBBI", op, offsets[0], offsets[1], k))
                elif op == BPF_JMP | BPF_JA:
                    out.append(struct.pack("<HBBI", op, 0, 0, where[k] - index - 1))
                else:
                    out.append(struct.pack("<HBBI", op, 0, 0, k))
                index += 1
            if patched is None:
                return b"".join(out)
            self._trampoline(*patched, where)

    def _trampoline(self, position, index, where):
        """Route the far targets of the jump at code[position] (instruction
        `index`) through `ja` instructions placed right after it."""
        op, k, jt, jf = self.code[position]
        fixed, after = [op, k, jt, jf], []
        for slot, target in ((2, jt), (3, jf)):
            if target is not None and where[target] - index - 1 > 255:
                hop = self.label()
                after += [("label", hop), [BPF_JMP | BPF_JA, target, None, None]]
                fixed[slot] = hop
        resume = self.label()
        for slot in (2, 3):
            if fixed[slot] is None:
                fixed[slot] = resume
        self.code[position:position + 1] = [fixed] + after + [("label", resume)]


# -- code generation --------------------------------------------------------

_WORD = 0xFFFFFFFF
# A subtree with at most _CHAIN_MAX marked ranges over at most _CHAIN_WEIGHT of
# the numbers 0..1023 is scanned linearly: shorter than splitting further,
# and little slower on the few numbers it covers.
_CHAIN_MAX = 24
_CHAIN_WEIGHT = 256


def _range_weight(start, end):
    """Weight of a number range in the search tree: how many of the numbers
    0..1023 it covers (at least 1), so wide 'allow' ranges sit near the root."""
    return max(0, min(end, 1023) - start + 1) or 1


def _emit_tree(asm, segments):
    """Code that jumps, for A in [segments[0].start, segments[-1].end], to the
    label of the segment holding A.  segments: sorted, contiguous
    (start, end, label) with neighbours of different labels.  Returns the
    label where the code starts (a leaf's own label when no test is needed)."""
    if len(segments) == 1:
        return segments[0][2]
    lowest, highest = segments[0][0], segments[-1][1]

    def cost(segment):
        return 1 if segment[0] == segment[1] or lowest in segment or highest in segment[:2] else 2

    best = None
    for background in {s[2] for s in segments}:
        special = [s for s in segments if s[2] != background]
        total = sum(cost(s) for s in special)
        if best is None or total < best[0]:
            best = (total, background, special)
    _, background, special = best
    if len(special) <= _CHAIN_MAX and (
            len(special) <= 1 or _range_weight(lowest, highest) <= _CHAIN_WEIGHT):
        # A linear scan, lowest first: a singleton costs one test, a range
        # two (one at either end of what this subtree covers).
        start = asm.label()
        asm.place(start)
        for n, (first, last, target) in enumerate(special):
            after = background if n == len(special) - 1 else None
            if first == last:
                asm.ins(BPF_JMP | BPF_JEQ | BPF_K, first, target, after)
            elif first == lowest:
                asm.ins(BPF_JMP | BPF_JGT | BPF_K, last, after, target)
            elif last == highest:
                asm.ins(BPF_JMP | BPF_JGE | BPF_K, first, target, background)
            else:
                above = after or asm.label()
                asm.ins(BPF_JMP | BPF_JGT | BPF_K, last, above, None)
                asm.ins(BPF_JMP | BPF_JGE | BPF_K, first, target, background)
                if after is None:
                    asm.place(above)
        return start
    weights = [_range_weight(s[0], s[1]) for s in segments]
    total, running, split, best = sum(weights), 0, 1, None
    for i in range(1, len(segments)):
        running += weights[i - 1]
        balance = abs(total - 2 * running)
        if best is None or balance < best:
            best, split = balance, i
    start = asm.label()
    asm.place(start)
    jump = [BPF_JMP | BPF_JGE | BPF_K, segments[split][0], None, None]
    asm.code.append(jump)
    jump[3] = _emit_tree(asm, segments[:split])
    jump[2] = _emit_tree(asm, segments[split:])
    return start


def _emit_dispatch(asm, segments):
    """_emit_tree for A loaded just before: jump to a leaf when no test is
    needed."""
    emitted = len(asm.code)
    target = _emit_tree(asm, segments)
    if len(asm.code) == emitted:
        asm.ins(BPF_JMP | BPF_JA, target)


def _segments(marks, end, default):
    """Contiguous (start, end, label) segments over [0, end] from sorted,
    disjoint marked ranges, `default` between them; equal neighbours merged."""
    out = []
    position = 0
    for start, stop, label in sorted(marks):
        if start > position:
            out.append([position, start - 1, default])
        out.append([start, stop, label])
        position = stop + 1
    if position <= end:
        out.append([position, end, default])
    merged = []
    for seg in out:
        if merged and merged[-1][2] == seg[2] and merged[-1][1] + 1 == seg[0]:
            merged[-1][1] = seg[1]
        else:
            merged.append(seg)
    return [tuple(s) for s in merged]


def _intervals_minus(intervals, start, end):
    out = []
    for a, b in intervals:
        if b < start or a > end:
            out.append((a, b))
            continue
        if a < start:
            out.append((a, start - 1))
        if b > end:
            out.append((end + 1, b))
    return out


def _intervals_and(intervals, start, end):
    return [(max(a, start), min(b, end)) for a, b in intervals if b >= start and a <= end]


def _node_true_range(node):
    """The values of the (full-mask) accumulator for which `node` holds."""
    if node.op in (_SCMP_EQ, _SCMP_MEQ):
        return node.datum, node.datum
    return (node.datum + 1 if node.op == _SCMP_GT else node.datum), _WORD


def _simple(node, arg, hi):
    """A node that a range search can stand for: full mask, no sub-level."""
    return (node.arg == arg and node.hi == hi and node.mask == _WORD
            and node.nxt_t is None and node.nxt_f is None
            and not (node.op == _SCMP_GT and node.datum == _WORD))


def _signature(node, memo):
    """A level's structure (equal for identical trees of other syscalls)."""
    while node.lvl_prv is not None:
        node = node.lvl_prv
    key = id(node)
    if key not in memo:
        out = []
        while node is not None:
            out.append((node.arg, node.hi, node.op, node.mask, node.datum,
                        node.act_t if node.act_t_flg else None,
                        node.act_f if node.act_f_flg else None,
                        node.nxt_t and _signature(node.nxt_t, memo),
                        node.nxt_f and _signature(node.nxt_f, memo)))
            node = node.lvl_nxt
        memo[key] = tuple(out)
    return memo[key]


class _Codegen:
    """BPF for the merged rules: per architecture a search tree over the
    syscall numbers, then each syscall's tree of argument tests (levels as
    libseccomp evaluates them; runs of plain tests on one argument become a
    range search).  The accumulator is reloaded wherever a path could have
    left another argument in it."""

    def __init__(self, asm):
        self.asm = asm
        self.returns = {}
        self.trees, self.levels, self.pending, self.signatures = {}, {}, [], {}

    def ret_label(self, action):
        if action not in self.returns:
            self.returns[action] = self.asm.label()
        return self.returns[action]

    def emit_returns(self):
        for action, label in sorted(self.returns.items(), key=lambda item: item[1]):
            self.asm.place(label)
            self.asm.ret(action)
        self.returns = {}

    def arch_block(self, arch, entries, x32_check):
        """Dispatch on the syscall number of one architecture."""
        asm = self.asm
        allow = self.ret_label(SECCOMP_RET_ALLOW)
        marks = []
        for number, entry in sorted(entries.items()):
            if entry.chains is None:
                label = self.ret_label(entry.action)
            else:
                signature = _signature(entry.chains, self.signatures)
                label = self.trees.get(signature)
                if label is None:
                    label = self.trees[signature] = self.level_label(entry.chains, allow, None)
            marks.append((number, number, label))
        if x32_check:
            marks.append((_X32_SYSCALL_BIT, _WORD - 1, self.ret_label(SECCOMP_RET_KILL_PROCESS)))
        asm.load(_OFFSET_NR)
        _emit_dispatch(asm, _segments(marks, _WORD, allow))
        while self.pending:
            label, start, fallthrough, acc = self.pending.pop(0)
            asm.place(label)
            self.emit_level(start, fallthrough, acc)

    def level_label(self, node, fallthrough, acc):
        """A label for a syscall's top level, emitted after the dispatch."""
        label = self.asm.label()
        self.pending.append((label, node, fallthrough, acc))
        return label

    def load(self, node, acc):
        """Get the node's (masked) argument half into A; the new state."""
        offset = _arg_offset(node.arg, node.hi)
        if acc is None or acc[0] != offset or node.mask & acc[1] != node.mask:
            self.asm.load(offset)
            acc = (offset, _WORD)
        if node.mask != acc[1]:
            self.asm.ins(BPF_ALU | BPF_AND | BPF_K, node.mask)
            acc = (offset, node.mask)
        return acc

    def emit_level(self, node, fallthrough, acc):
        """The level's nodes in order: a node's true/false branch goes to
        its sub-level (placed right after it, as jumps go forward only, and
        falling back to the next node), its action, or the next node; past
        the last node, `fallthrough`."""
        asm, nodes = self.asm, []
        while node.lvl_prv is not None:
            node = node.lvl_prv
        while node is not None:
            nodes.append(node)
            node = node.lvl_nxt
        i = 0
        while i < len(nodes):
            first = nodes[i]
            run = 1
            if _simple(first, first.arg, first.hi):
                while i + run < len(nodes) and _simple(nodes[i + run], first.arg, first.hi):
                    run += 1
            after = fallthrough if i + run == len(nodes) else asm.label()
            acc = self.load(first, acc)
            if run > 1:
                undecided, marks = [(0, _WORD)], []
                for node in nodes[i:i + run]:
                    start, end = _node_true_range(node)
                    false = _intervals_minus([(0, _WORD)], start, end)
                    for flag, action, where in ((node.act_t_flg, node.act_t, [(start, end)]),
                                                (node.act_f_flg, node.act_f, false)):
                        if not flag:
                            continue        # on to the next node
                        for a, b in where:
                            taken = _intervals_and(undecided, a, b)
                            marks += [(x, y, self.ret_label(action)) for x, y in taken]
                            for x, y in taken:
                                undecided = _intervals_minus(undecided, x, y)
                _emit_dispatch(asm, _segments(sorted(marks), _WORD, after))
            else:
                subs = {}

                def target(nxt, flag, action):
                    if nxt is None:
                        return self.ret_label(action) if flag else after
                    while nxt.lvl_prv is not None:
                        nxt = nxt.lvl_prv
                    if id(nxt) not in subs:
                        subs[id(nxt)] = (asm.label(), nxt)
                    return subs[id(nxt)][0]
                jump = {_SCMP_EQ: BPF_JEQ, _SCMP_MEQ: BPF_JEQ, _SCMP_GT: BPF_JGT,
                        _SCMP_GE: BPF_JGE}[first.op]
                jt = target(first.nxt_t, first.act_t_flg, first.act_t)
                jf = target(first.nxt_f, first.act_f_flg, first.act_f)
                asm.ins(BPF_JMP | jump | BPF_K, first.datum, jt, jf)
                for label, start in subs.values():
                    asm.place(label)
                    self.emit_level(start, after, acc)
                if subs:
                    acc = None      # the sub-levels come back with any A
            i += run
            if after is not fallthrough:
                asm.place(after)


def _user_rules(rules):
    """User rules as (name, action, args) with groups expanded, in order."""
    out = []
    for rule in rules:
        if not isinstance(rule, Rule):
            raise SandboxError("seccomp: a rule is a sandbox.Rule, not %r" % (rule,), errno.EINVAL)
        names = syscall_group(rule.syscall) if rule.syscall.startswith("@") else [rule.syscall]
        out += [(name, rule.action, rule.args) for name in names]
    return out


def _rule_database(arches, rules):
    """Each architecture's merged rules {number: _SyscallEntry}, the rules
    added in order as seccomp_rule_add() would: a rule libseccomp refuses
    (-EEXIST: the same conditions as an earlier one with another action)
    leaves no trace on any architecture (its transaction is undone)."""
    dbs = {arch: {} for arch in arches}
    for name, action, args in rules:
        args = sorted(args, key=lambda arg: arg.index)
        targets = [(arch, SYSCALLS[arch][name]) for arch in arches if name in SYSCALLS[arch]]
        saved = None
        if any(number in dbs[arch] and _entry_actions(dbs[arch][number]) - {action}
               for arch, number in targets):
            saved = [(arch, number, dbs[arch][number].copied() if number in dbs[arch] else None)
                     for arch, number in targets]
        try:
            for arch, number in targets:
                _db_rule_add(dbs[arch], number, _ARCH_BITS[arch], action, args)
        except _ExistsError:
            for arch, number, entry in saved:
                if entry is None:
                    dbs[arch].pop(number, None)
                else:
                    dbs[arch][number] = entry
    return dbs


def seccomp_filter(opts, arch=None, rules=None):
    """The BPF program (struct sock_filter[], 8 bytes each, little-endian)
    for the policy of `opts` on `arch` ("x86_64", "i386", "aarch64", "arm";
    default: this machine).  `rules`: user Rules, added before the policy's
    own (the decision is libseccomp's for that order); an "allow" rule
    drops the policy's rules on its syscalls."""
    arch = _check_arch(arch)
    opts = _check_syscall_opts(opts)
    rules = tuple(rules) if rules is not None else ()
    _user_rules(rules)
    return _compiled_filter(opts, arch, rules)


_filter_cache = {}


def _compiled_filter(opts, arch, rules=()):
    rules = tuple(rules or ())
    key = (opts, arch, rules)
    program = _filter_cache.get(key)
    if program is None:
        program = _filter_cache[key] = _compile(opts, arch, rules)
    return program


def _compile(opts, arch, rules=()):
    user = _user_rules(rules or ())
    allowed = {name for name, action, _ in user if action == SECCOMP_RET_ALLOW}
    preset = [(r.syscall, r.action, r.args) for r in seccomp_rules(opts)
              if r.syscall not in allowed]
    asm = _Asm()
    gen = _Codegen(asm)
    arches = [arch]
    if opts & FlagMultiarch and arch in _COMPAT_ARCH:
        arches.append(_COMPAT_ARCH[arch])
    dbs = _rule_database(arches, user + preset)
    kill = gen.ret_label(SECCOMP_RET_KILL_PROCESS)
    asm.load(_OFFSET_ARCH)
    blocks = [asm.label() for _ in arches]
    for n, name in enumerate(arches):
        last = n == len(arches) - 1
        asm.ins(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH[name], blocks[n], None if not last else kill)
    for n, name in enumerate(arches):
        asm.place(blocks[n])
        gen.arch_block(name, dbs[name], x32_check=(name == "x86_64"))
    gen.emit_returns()
    return asm.assemble()


def seccomp_load(opts, rules=None):
    """Load the filter for `opts` into the calling thread (setting
    no_new_privs first, as an unprivileged process must)."""
    program = seccomp_filter(opts, rules=rules)
    if _libc.prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1:
        _prctl(PR_SET_NO_NEW_PRIVS, 1, what="seccomp: no_new_privs")
    _load_filter(program)


def _load_filter(program):
    _load_fprog(_fprog(program))


def _fprog(program):
    """`program` made ready to load: (the address of its struct sock_fprog,
    the buffers that hold it).  The template makes its spares' once: made
    in each init, the ctypes types and objects would cost it ~12 more pages
    of its own (~0.05 MiB per idle sandbox)."""
    buffer = ctypes.create_string_buffer(program, len(program))
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
    fprog = struct.pack("@HP", len(program) // 8, ctypes.addressof(buffer))
    fprog_buffer = ctypes.create_string_buffer(fprog, len(fprog))
    return ctypes.addressof(fprog_buffer), (buffer, fprog_buffer)


def _load_fprog(fprog):
    _prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, fprog[0], what="seccomp: loading the filter")


def _decode(program):
    if not isinstance(program, (bytes, bytearray)) or len(program) % 8:
        raise SandboxError("bpf: a program is bytes, 8 per instruction", errno.EINVAL)
    return list(struct.iter_unpack("<HBBI", program))


def bpf_run(program, nr, arch=None, args=(), ip=0):
    """Run a seccomp BPF program on one syscall as the kernel would; returns
    (action, instructions executed).  arch: a name or an AUDIT_ARCH value."""
    arch = AUDIT_ARCH[_check_arch(arch)] if not isinstance(arch, int) else arch
    args = (list(args) + [0] * 6)[:6]
    data = struct.pack("<IIQ6Q", nr & _WORD, arch, ip, *[a & (2**64 - 1) for a in args])
    code = _decode(program)
    a = x = pc = count = 0
    mem = [0] * 16
    while True:
        if pc >= len(code):
            raise SandboxError("bpf: ran past the end at %d" % pc, errno.EINVAL)
        op, jt, jf, k = code[pc]
        count += 1
        pc += 1
        cls = op & 7
        if cls == BPF_LD or cls == BPF_LDX:
            mode = op & 0xE0
            if mode == BPF_ABS:
                value = struct.unpack_from("<I", data, k)[0]
            elif mode == BPF_IMM:
                value = k
            elif mode == BPF_MEM:
                value = mem[k]
            elif mode == BPF_LEN:
                value = len(data)
            else:
                raise SandboxError("bpf: bad load at %d" % (pc - 1), errno.EINVAL)
            if cls == BPF_LD:
                a = value
            else:
                x = value
        elif cls == BPF_ST:
            mem[k] = a
        elif cls == BPF_STX:
            mem[k] = x
        elif cls == BPF_ALU:
            operand = x if op & BPF_X else k
            alu = op & 0xF0
            if alu == BPF_NEG:
                a = -a
            elif alu in (BPF_DIV, BPF_MOD) and operand == 0:
                return SECCOMP_RET_KILL_PROCESS, count
            else:
                a = {BPF_ADD: lambda: a + operand, BPF_SUB: lambda: a - operand,
                     BPF_MUL: lambda: a * operand, BPF_DIV: lambda: a // operand,
                     BPF_MOD: lambda: a % operand, BPF_OR: lambda: a | operand,
                     BPF_AND: lambda: a & operand, BPF_XOR: lambda: a ^ operand,
                     BPF_LSH: lambda: a << (operand & 31),
                     BPF_RSH: lambda: a >> (operand & 31)}[alu]()
            a &= _WORD
        elif cls == BPF_JMP:
            test = op & 0xF0
            if test == BPF_JA:
                pc += k
                continue
            operand = x if op & BPF_X else k
            taken = {BPF_JEQ: a == operand, BPF_JGT: a > operand,
                     BPF_JGE: a >= operand, BPF_JSET: a & operand != 0}[test]
            pc += jt if taken else jf
        elif cls == BPF_RET:
            return (a if op & 0x18 == BPF_A else k), count
        else:
            if op & 0xF8 == BPF_TXA:
                a = x
            else:
                x = a


def _action_name(action):
    kind = action & 0xFFFF0000
    if kind == SECCOMP_RET_ERRNO:
        data = action & 0xFFFF
        return "ERRNO(%s)" % (errno.errorcode.get(data, data),)
    return {SECCOMP_RET_ALLOW: "ALLOW", SECCOMP_RET_KILL_PROCESS: "KILL_PROCESS",
            0: "KILL_THREAD", 0x7FFC0000: "LOG", 0x7FF00000: "TRACE",
            0x00030000: "TRAP"}.get(kind, "0x%08x" % action)


def _field_name(offset):
    if offset == _OFFSET_NR:
        return "nr"
    if offset == _OFFSET_ARCH:
        return "arch"
    if offset in (8, 12):
        return "ip" + (" hi" if offset == 12 else "")
    index, half = divmod(offset - 16, 8)
    return "args[%d] %s" % (index, "hi" if half else "lo")


def bpf_disasm(program):
    """A readable listing of a seccomp BPF program, one line an instruction."""
    arch_names = {v: k for k, v in AUDIT_ARCH.items()}
    lines = []
    for pc, (op, jt, jf, k) in enumerate(_decode(program)):
        cls = op & 7
        if cls in (BPF_LD, BPF_LDX):
            reg = "A" if cls == BPF_LD else "X"
            mode = op & 0xE0
            text = ("%s = %s" % (reg, _field_name(k)) if mode == BPF_ABS else
                    "%s = M[%d]" % (reg, k) if mode == BPF_MEM else
                    "%s = 0x%x" % (reg, k) if mode == BPF_IMM else "%s = len" % reg)
        elif cls in (BPF_ST, BPF_STX):
            text = "M[%d] = %s" % (k, "A" if cls == BPF_ST else "X")
        elif cls == BPF_ALU:
            names = {BPF_ADD: "+", BPF_SUB: "-", BPF_MUL: "*", BPF_DIV: "/",
                     BPF_MOD: "%", BPF_OR: "|", BPF_AND: "&", BPF_XOR: "^",
                     BPF_LSH: "<<", BPF_RSH: ">>"}
            text = ("A = -A" if op & 0xF0 == BPF_NEG else "A %s= %s" % (
                names.get(op & 0xF0, "?"), "X" if op & BPF_X else "0x%x" % k))
        elif cls == BPF_JMP and op & 0xF0 == BPF_JA:
            text = "goto %04d" % (pc + 1 + k)
        elif cls == BPF_JMP:
            names = {BPF_JEQ: "==", BPF_JGT: ">", BPF_JGE: ">=", BPF_JSET: "&"}
            operand = "X" if op & BPF_X else "0x%x" % k
            note = "  (%s)" % arch_names[k] if k in arch_names else ""
            text = "if (A %s %s) goto %04d else goto %04d%s" % (
                names.get(op & 0xF0, "?"), operand, pc + 1 + jt, pc + 1 + jf, note)
        elif cls == BPF_RET:
            text = "return A" if op & 0x18 == BPF_A else "return %s" % _action_name(k)
        else:
            text = "X = A" if op & 0xF8 == BPF_TAX else "A = X"
        lines.append("%04d: %04x %02x %02x %08x  %s" % (pc, op, jt, jf, k, text))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# Mountinfo: /proc/self/mountinfo parsed into entries, used to find every
# mount at or under a bind target so that all of them get the bind's flags.
# ---------------------------------------------------------------------------

def _unescape(field):
    """Mountinfo escapes space, tab, newline and backslash as \\ooo."""
    if "\\" not in field:
        return field
    out, i = bytearray(), 0
    raw = os.fsencode(field)
    while i < len(raw):
        digits = raw[i + 1:i + 4]
        if raw[i] == 0x5C and len(digits) == 3 and digits.isdigit():
            out.append(int(raw[i + 1:i + 4], 8))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return os.fsdecode(bytes(out))


class MountInfo(tuple):
    """One line of mountinfo: (mount_id, parent_id, mountpoint, options,
    fstype, source, super_options)."""

    __slots__ = ()
    mount_id = property(lambda self: self[0])
    parent_id = property(lambda self: self[1])
    mountpoint = property(lambda self: self[2])
    options = property(lambda self: self[3])
    fstype = property(lambda self: self[4])
    source = property(lambda self: self[5])
    super_options = property(lambda self: self[6])


def parse_mountinfo(text):
    entries = []
    # Only "\n" ends a line: the kernel escapes it but not "\r", "\x1c" and
    # the other characters str.splitlines() would also split at.
    for line in text.split("\n"):
        if not line:
            continue
        fields = line.split(" ")
        try:
            dash = fields.index("-", 6)
            entries.append(MountInfo((
                int(fields[0]), int(fields[1]), _unescape(fields[4]),
                fields[5].split(","), fields[dash + 1], _unescape(fields[dash + 2]),
                fields[dash + 3].split(","))))
        except (ValueError, IndexError):
            raise SandboxError("mountinfo: malformed line %r" % line, errno.EINVAL)
    return entries


# Where procfs is: during setup, after the first pivot_root, the host's /proc
# is under /host.
_proc = "/proc"


def _read_all(fd):
    """Everything left to read from fd, which is then closed."""
    chunks = []
    try:
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


_MOUNTINFO_ESCAPES = {" ": "\\040", "\t": "\\011", "\n": "\\012", "\\": "\\134"}


def _read_mountinfo(under):
    """This process's mounts that may lie at or under the path `under`:
    only lines holding the path as mountinfo escapes it are parsed, which
    keeps a bind's cost flat as the table grows (mounts_under() decides)."""
    fd = os.open(_proc + "/self/mountinfo", os.O_RDONLY | os.O_CLOEXEC)
    needle = "".join(_MOUNTINFO_ESCAPES.get(c, c) for c in under)
    return parse_mountinfo("\n".join(line for line in os.fsdecode(_read_all(fd)).split("\n")
                                      if needle in line))


def mounts_under(entries, path):
    """The visible mounts at or under path, in mountinfo order (parents
    first).  A mount covered by another on the same mountpoint, and all that
    hangs below it, is left out: remounting it by path would reach the
    covering mount instead."""
    prefix = path.rstrip("/") + "/"
    inside = [e for e in entries if e.mountpoint == path or e.mountpoint.startswith(prefix)]
    by_id = {e.mount_id: e for e in inside}
    covered = {e.parent_id for e in inside
               if e.parent_id in by_id and by_id[e.parent_id].mountpoint == e.mountpoint}
    visible = {}

    def is_visible(entry):
        if entry.mount_id not in visible:
            visible[entry.mount_id] = False        # cycles in bad input end here
            parent = by_id.get(entry.parent_id)
            while parent is not None and parent.mountpoint == entry.mountpoint:
                parent = by_id.get(parent.parent_id)   # skip what this one stacks on
            visible[entry.mount_id] = entry.mount_id not in covered and (
                is_visible(parent) if parent is not None else entry.mountpoint == path)
        return visible[entry.mount_id]

    return [e for e in inside if is_visible(e)]


_MOUNT_OPTION_FLAGS = {"ro": MS_RDONLY, "nosuid": MS_NOSUID, "nodev": MS_NODEV,
                       "noexec": MS_NOEXEC, "noatime": MS_NOATIME,
                       "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME,
                       "strictatime": MS_STRICTATIME, "nosymfollow": MS_NOSYMFOLLOW}


def _mount_flags(options):
    flags = 0
    for option in options:
        flags |= _MOUNT_OPTION_FLAGS.get(option, 0)
    return flags


# ---------------------------------------------------------------------------
# Operations: the ordered steps that build the container's root.
#
# Each Op has an early() pass, run before anything is mounted while the host
# file system is still the root (resolving sources and host symlinks), and an
# apply() pass, run after the first pivot_root with the new root at
# /sysroot and the host at /host.  Targets are resolved inside the new root,
# so a symlink an earlier op made can never lead a later one onto the host.
# ---------------------------------------------------------------------------

BindOptional = 1
BindWritable = 2
BindDevice = 4

_SYSROOT = "/sysroot"
_HOST = "/host"
_MAX_TMPFS_SIZE = 1 << 50

# Bounded memory (SPEC 3.3): what is written to a tmpfs is charged to no
# process, so every tmpfs the sandbox gets has a size and an inode count.
# Those only setup fills (the intermediate root, the new root, /dev) hold
# what the operations put there and little more; those the command fills
# get a default: a Tmpfs op of size 0 (default_ops()' /tmp) 256 MiB, and
# /dev/shm (a tmpfs of its own) 64 MiB.  Every size bounds inodes too: one
# per 4 KiB of size, at least 64.
_DEFAULT_TMPFS_SIZE = 256 << 20
_DEFAULT_SHM_SIZE = 64 << 20
_PAGE = 4096
_BYTES_PER_INODE = 4096
_MIN_INODES = 64


def _tmpfs_bounds(size):
    """tmpfs options bounding a tmpfs of `size` bytes (0: the default)."""
    size = size or _DEFAULT_TMPFS_SIZE
    return "size=%d,nr_inodes=%d" % (size, max(size // _BYTES_PER_INODE, _MIN_INODES))


def _setup_bounds(ops):
    """tmpfs options for what setup alone fills (the new root, /dev): an
    inode for each component of every path the operations name (symlink
    targets included: paths made through a symlink follow it), the pages
    of what they write there (Op._written_bytes), and a margin."""
    inodes, pages = 32, 4
    for op in ops:
        values = list(op._values()) + [getattr(op, "_target", None)]
        inodes += sum(v.count("/") + 1 for v in values if isinstance(v, str))
        pages += -(-op._written_bytes() // _PAGE)
    return "size=%d,nr_inodes=%d" % (pages * _PAGE, inodes)


def _staging_bounds(ops):
    """tmpfs options for the intermediate root: its two directories and
    what operations stage there (Place data) before binding it."""
    pages, inodes = 1, 8
    for op in ops:
        staged = op._staged_bytes()
        if staged is not None:
            pages += -(-staged // _PAGE) + 1
            inodes += 1
    return "size=%d,nr_inodes=%d" % (pages * _PAGE, inodes)


def _q(value):
    """Go's %q for a path: double-quoted, with escapes, for error messages."""
    if not isinstance(value, str):
        return repr(value)
    if value.isprintable() and "\\" not in value and '"' not in value:
        return '"%s"' % value       # nothing to escape: setup quotes every path it mounts
    return '"%s"' % _printable(value.replace("\\", "\\\\").replace('"', '\\"'))


def _octal(value):
    return "%#o" % value if isinstance(value, int) else repr(value)


def _check_abs(path, what):
    """path, if it is an absolute path; `what` (a string or an object whose
    str() names the step) is only formatted on failure."""
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
        raise SandboxError("%s: path %s is not absolute" % (what, _q(path)), errno.EINVAL)
    return path


# Paths known to be directories, not symlinks, under the new root or the
# host's (/host): resolving skips them.  Operations only add to the tree, a
# mount forgets what lies under its target, and a root built ahead of its
# request forgets everything before the request's own early pass.
_known_dirs = set()


def _forget_under(target):
    prefix = target.rstrip("/") + "/"
    for path in [p for p in _known_dirs if p.startswith(prefix)]:
        _known_dirs.discard(path)


def _resolve_in_root(root, path, follow_last=True):
    """Where `path` leads when `root` is /: symlinks on the way are followed
    with `root` as /, and `..` stops at it.  Returns root + the resolved path;
    missing components are kept as they are."""
    parts = [p for p in path.split("/") if p and p != "."]
    resolved, hops = [], 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root + "/" + "/".join(resolved + [part])
        if candidate in _known_dirs:
            resolved.append(part)
            continue
        try:
            mode = os.lstat(candidate).st_mode
        except OSError:
            mode = 0
        if (parts or follow_last) and stat.S_ISLNK(mode):
            hops += 1
            if hops > 40:
                raise SandboxError("%s: too many symlinks" % path, errno.ELOOP)
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p and p != "."] + parts
            continue
        if stat.S_ISDIR(mode):
            _known_dirs.add(candidate)
        resolved.append(part)
    return root + "/" + "/".join(resolved)


def _in_known_dir(root, path):
    """root + path, when path names an entry directly in a directory already
    known under root (so nothing before its last component is a symlink);
    else None, and the caller resolves the long way."""
    parent, _, name = path.rpartition("/")
    parent = root + parent
    if name and name != "." and name != ".." and parent in _known_dirs:
        return parent + "/" + name
    return None


def _make_dirs(path, mode):
    """mkdir -p with `mode` for what it creates (umask is 0 during setup)."""
    missing = []
    while path not in _known_dirs and not os.path.isdir(path):
        missing.append(path)
        path = os.path.dirname(path)
    for directory in reversed(missing):
        os.mkdir(directory, mode)
        _known_dirs.add(directory)


def _touch(path, mode):
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, mode))


def _parent_mode(perm):
    """bubblewrap's mode for the parents an operation creates: 0755, less
    the group's r-x when `perm` (the op's own mode, 0 for an op without
    one) gives the group nothing, less the others' when it gives them
    nothing; so a private file does not sit in a world-readable parent."""
    mode = 0o755
    if not perm & 0o070:
        mode &= ~0o050
    if not perm & 0o007:
        mode &= ~0o005
    return mode


def _mount_point_dir(target, parent_mode, what):
    """The directory a mount goes on: parents with parent_mode, itself 0755
    (an existing one is left as it is)."""
    try:
        _make_dirs(os.path.dirname(target), parent_mode)
        _make_dirs(target, 0o755)
    except OSError as err:
        _fail("%s: creating %s" % (what, _q(target)), err.errno)


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


_STATVFS_FLAGS = ((os.ST_RDONLY, MS_RDONLY), (os.ST_NOSUID, MS_NOSUID),
                  (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
                  (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME),
                  (os.ST_RELATIME, MS_RELATIME), (ST_NOSYMFOLLOW, MS_NOSYMFOLLOW))


def _make_private(target, rec, what):
    """A bound copy of a host mount is a slave of it: what the host mounts
    under it later would appear inside, unremounted.  Private, it gets
    nothing more."""
    _check(_libc.mount(None, os.fsencode(target), None, MS_PRIVATE | rec, None),
           "%s: making %s private" % (what, _q(target)))


def _bind_attributes(flags):
    """The MOUNT_ATTR_* a bind with `flags` gets on every mount of it."""
    attr = MOUNT_ATTR_NOSUID
    if not flags & BindWritable:
        attr |= MOUNT_ATTR_RDONLY
    if not flags & BindDevice:
        attr |= MOUNT_ATTR_NODEV
    return attr


def _bind_mount(source, target, flags, what, alone=False):
    """Bind source on target, then give every mount at or under target
    nosuid, and ro unless writable, and nodev unless device, and make them
    private (a bound copy of a host mount is a slave of it: what the host
    mounts under it later would appear inside, unremounted).  The flags a
    mount already has are kept: in a user namespace they are locked.
    `alone` (a file, or a directory with nothing mounted under it): bind
    source by itself; a mount appearing under source meanwhile is then not
    brought along.  Otherwise the bind is recursive.  mount_setattr
    (AT_RECURSIVE) reaches every mount of the tree whatever the
    permissions on the way to it; where the kernel lacks it, each mount is
    remounted by path, and one that cannot be fails the bind."""
    _forget_under(target)
    if not alone or _libc.mount(os.fsencode(source), os.fsencode(target), None, MS_BIND, None) < 0:
        # (A bind alone fails with EINVAL when something locked is mounted
        # under source after all: then it is done recursively.)
        alone = False
        _check(_libc.mount(os.fsencode(source), os.fsencode(target), None, MS_BIND | MS_REC,
                           None), what)
    try:
        _mount_setattr(target, AT_RECURSIVE, "%s: remounting %s" % (what, _q(target)),
                       attr_set=_bind_attributes(flags), propagation=MS_PRIVATE)
    except SandboxError as err:
        if err.errno != errno.ENOSYS:
            raise
        _remount_each(target, flags, what, alone)


def _remount_each(target, flags, what, alone):
    """_bind_mount's flags for a kernel without mount_setattr: each mount
    at or under target (found in mountinfo, unless `alone`) made private
    and remounted by path; any that cannot be (EACCES below a directory
    setup may not search) fails the bind rather than stay writable."""
    extra = MS_NOSUID
    if not flags & BindWritable:
        extra |= MS_RDONLY
    if not flags & BindDevice:
        extra |= MS_NODEV
    if alone:
        _make_private(target, 0, what)
        current = os.statvfs(target).f_flag
        flags_now = sum(ms for st, ms in _STATVFS_FLAGS if current & st)
        _check(_libc.mount(None, os.fsencode(target), None,
                           MS_BIND | MS_REMOUNT | flags_now | extra, None),
               "%s: remounting %s" % (what, _q(target)))
        return
    _make_private(target, MS_REC, what)
    fd = os.open(target, os.O_PATH | os.O_CLOEXEC)
    try:
        canonical = os.readlink("%s/self/fd/%d" % (_proc, fd))
    finally:
        os.close(fd)
    for entry in mounts_under(_read_mountinfo(canonical), canonical):
        flags_now = _mount_flags(entry.options)
        if _libc.mount(None, os.fsencode(entry.mountpoint), None,
                       MS_BIND | MS_REMOUNT | flags_now | extra, None) < 0:
            inside = entry.mountpoint
            if inside.startswith(_SYSROOT + "/"):
                inside = inside[len(_SYSROOT):]
            _fail("%s: remounting %s (the kernel has no mount_setattr)" % (what, _q(inside)),
                  ctypes.get_errno())


class Op:
    """Base of the operations; subclasses are small value objects."""

    fields = ()

    def __init__(self, *values):
        for name, value in zip(self.fields, values):
            setattr(self, name, value)

    @classmethod
    def _from_values(cls, values):
        """The op whose fields hold `values`, as _values() returned them."""
        op = cls.__new__(cls)
        op.__dict__.update(zip(cls.fields, values))
        return op

    def __eq__(self, other):
        return type(self) is type(other) and self._values() == other._values()

    def __hash__(self):
        return hash((type(self).__name__,) + self._values())

    def __repr__(self):
        return "<%s %s>" % (type(self).__name__, self)

    def _values(self):
        return tuple(map(self.__dict__.__getitem__, self.fields))

    @property
    def what(self):
        """How error messages name this operation."""
        return str(self)

    paths = ()     # the fields that hold absolute paths

    def validate(self):
        for name in self.paths:
            _check_abs(getattr(self, name), self)

    def early(self, state):
        pass

    def _host_facts(self):
        """What the early pass learned from the host: a root built ahead of
        a request serves it only while these still hold."""
        return ()

    def _staged_bytes(self):
        """How many bytes this op writes to the intermediate root (a file
        staged there and bound into the new root), or None; the
        intermediate root is sized by them."""
        return None

    def _written_bytes(self):
        """How many bytes of file data this op may write into the tree it
        builds (the new root's tmpfs or /dev's, which are sized by them)."""
        return 0

    def apply(self, state):
        raise NotImplementedError

    def landlock_rule(self):
        """Landlock (SPEC section 6): (path in the new root, rights) that the
        command gets beneath what this operation made, or None for nothing
        of its own (a link or a directory gets what its surroundings get).
        Rights: LANDLOCK_READ (read and execute), LANDLOCK_FULL,
        LANDLOCK_PROC or any mask of LANDLOCK_ACCESS_FS_*.  Asked right
        after apply(), which must have made the path."""
        return None


class Bind(Op):
    fields = ("source", "target", "flags")
    paths = ("source", "target")

    def __str__(self):
        return "%s on %s flags %#x" % (_q(self.source), _q(self.target), self.flags)

    def __init__(self, source, target, flags=0):
        super().__init__(source, target, flags)

    @property
    def what(self):
        return "bind %s on %s" % (_q(self.source), _q(self.target))

    def validate(self):
        if not isinstance(self.flags, int) or self.flags & ~7 or self.flags < 0:
            raise SandboxError("%s: invalid flags" % self, errno.EINVAL)
        super().validate()

    def early(self, state):
        self._resolved = self._identity = None
        self._tree = state.trees.get(state.index, False)
        if self._tree is not False:
            # The caller opened the source (see _open_bind_trees); None: an
            # optional bind whose source does not exist.
            self._resolved = None if self._tree is None else "tree"
            return
        try:
            resolved = _resolve_in_root(_HOST, self.source)
            st = os.stat(resolved)
        except OSError as err:
            if self.flags & BindOptional and err.errno == errno.ENOENT:
                return
            _fail("Can't find source path %s" % self.source if state.bubblewrap else self.what,
                  err.errno)
        self._resolved, self._identity = resolved, (st.st_dev, st.st_ino)

    def _host_facts(self):
        return self._resolved, self._identity

    def apply(self, state):
        if self._resolved is None:
            return
        what = self.what
        source = self._resolved
        target = _resolve_in_root(_SYSROOT, self.target)
        if self._tree is not False:
            is_dir = stat.S_ISDIR(os.fstat(self._tree).st_mode)
        else:
            is_dir = os.path.isdir(source)
        try:
            _make_dirs(os.path.dirname(target), state.parent_mode(0))
            if is_dir:
                _make_dirs(target, 0o755)
            elif not os.path.lexists(target):
                _touch(target, 0o444)
        except OSError as err:
            _fail("%s: creating %r" % (what, self.target), err.errno)
        if self._tree is not False:
            _forget_under(target)
            _move_mount(self._tree, target, what)
            os.close(self._tree)
            return
        _bind_mount(source, target, self.flags, what,
                    alone=not is_dir or not state.host_mounts_under(source))

    def landlock_rule(self):
        if getattr(self, "_resolved", "") is None:     # (unset before setup)
            return None
        if self.flags & BindWritable:
            return self.target, LANDLOCK_FULL
        return self.target, LANDLOCK_READ_DEVICES if self.flags & BindDevice else LANDLOCK_READ


# Parts of a procfs that write to the kernel itself (sysctls, magic SysRq,
# IRQ affinity, PCI config space): bound read-only onto themselves, as
# bubblewrap does.  The namespace's root owns its network namespace's
# sysctls, so permissions alone would leave those writable.
_PROC_READ_ONLY = ("sys", "sysrq-trigger", "irq", "bus")
_PROC_FLAGS = MS_NOSUID | MS_NOEXEC | MS_NODEV


class Proc(Op):
    fields = ("dest",)
    paths = ("dest",)

    def __str__(self):
        return "proc on %s" % _q(self.dest)

    def apply(self, state):
        target = _resolve_in_root(_SYSROOT, self.dest)
        _mount_point_dir(target, state.parent_mode(0), self)
        if not state.own_pid_ns:
            # bubblewrap's way in the host's PID namespace: a bind of its
            # /proc (a new instance needs a PID namespace of one's own).
            _bind_mount(_HOST + "/proc", target, BindWritable, str(self))
        else:
            _mount("proc", target, "proc", _PROC_FLAGS, None, str(self))
        for name in _PROC_READ_ONLY:
            path = os.fsencode(target + "/" + name)
            if _libc.mount(path, path, None, MS_BIND, None) < 0:
                err = ctypes.get_errno()
                if err == errno.ENOENT:
                    continue      # not built into this kernel
                _fail("%s: binding %s" % (self, name), err)
            _check(_libc.mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | _PROC_FLAGS,
                               None), "%s: making %s read-only" % (self, name))

    def landlock_rule(self):
        return self.dest, LANDLOCK_PROC


class Mqueue(Op):
    fields = ("dest",)
    paths = ("dest",)

    def __str__(self):
        return "mqueue on %s" % _q(self.dest)

    def apply(self, state):
        target = _resolve_in_root(_SYSROOT, self.dest)
        _mount_point_dir(target, state.parent_mode(0), self)
        _mount("mqueue", target, "mqueue", MS_NOSUID | MS_NOEXEC | MS_NODEV, None, str(self))

    def landlock_rule(self):
        return self.dest, LANDLOCK_FULL


class Tmpfs(Op):
    fields = ("dest", "size", "perm")
    paths = ("dest",)

    def __init__(self, dest, size=0, perm=0o755):
        super().__init__(dest, size, perm)

    def __str__(self):
        return "tmpfs on %s size %s" % (_q(self.dest), self.size)

    def validate(self):
        super().validate()
        if not isinstance(self.size, int) or not 0 <= self.size <= _MAX_TMPFS_SIZE:
            raise SandboxError("%s: invalid size" % self, errno.EINVAL)
        if not isinstance(self.perm, int) or not 0 <= self.perm <= 0o7777:
            raise SandboxError("%s: invalid mode" % self, errno.EINVAL)

    def apply(self, state):
        target = _resolve_in_root(_SYSROOT, self.dest)
        _mount_point_dir(target, state.parent_mode(self.perm), self)
        data = "mode=%o,%s" % (self.perm, _tmpfs_bounds(self.size))
        _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, data, str(self))

    def landlock_rule(self):
        return self.dest, LANDLOCK_FULL


_DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
_DEV_LINKS = (("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
              ("stderr", "/proc/self/fd/2"), ("fd", "/proc/self/fd"),
              ("core", "/proc/kcore"), ("ptmx", "pts/ptmx"))


class Dev(Op):
    fields = ("dest",)
    paths = ("dest",)

    def __str__(self):
        return "dev on %s" % _q(self.dest)

    def early(self, state):
        self._console = None
        if state.flags & FAllowTTY and state.stdout_fd is not None and os.isatty(state.stdout_fd):
            # The fd was opened in the caller's mount namespace: its path is
            # relative to the host's root, which is /host from here.
            self._console = _HOST + os.readlink("%s/self/fd/%d" % (_proc, state.stdout_fd))

    def _host_facts(self):
        return self._console,

    def apply(self, state):
        what = str(self)
        target = _resolve_in_root(_SYSROOT, self.dest)
        _mount_point_dir(target, state.parent_mode(0), what)
        _mount("devtmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV,
               "mode=0755," + state.setup_bounds, what)
        for node in _DEV_NODES:
            _touch(target + "/" + node, 0o444)
            _bind_mount(_HOST + "/dev/" + node, target + "/" + node,
                        BindWritable | BindDevice, "%s: %s" % (what, node), alone=True)
        for name, link in _DEV_LINKS:
            os.symlink(link, target + "/" + name)
        os.mkdir(target + "/shm", 0o755)
        _mount("shm", target + "/shm", "tmpfs", MS_NOSUID | MS_NODEV,
               "mode=1777,%s" % _tmpfs_bounds(_DEFAULT_SHM_SIZE), what + ": shm")
        os.mkdir(target + "/pts", 0o755)
        _mount("devpts", target + "/pts", "devpts", MS_NOSUID | MS_NOEXEC,
               "newinstance,ptmxmode=0666,mode=620", what + ": devpts")
        if self._console:
            _touch(target + "/console", 0o444)
            _bind_mount(self._console, target + "/console",
                        BindWritable | BindDevice, what + ": console", alone=True)

    def landlock_rule(self):
        # Device nodes with their ioctls, /dev/shm, /dev/pts: all of it.
        return self.dest, LANDLOCK_FULL


class Link(Op):
    """A symlink at linkname; a target starting with '*' names a host
    symlink whose own target is used (read in the early pass)."""

    fields = ("target", "linkname")

    def __str__(self):
        return "symlink %s -> %s" % (_q(self.linkname), _q(self.target))

    def _written_bytes(self):
        return _PAGE          # a long target takes a page

    def validate(self):
        if not isinstance(self.target, str) or not self.target or "\0" in self.target:
            raise SandboxError("%s: invalid target" % self, errno.EINVAL)
        _check_abs(self.linkname, self)

    def early(self, state):
        self._target = self.target
        if self.target.startswith("*"):
            try:
                self._target = os.readlink(_HOST + self.target[1:])
            except OSError as err:
                _fail("%s: readlink %r" % (self, self.target[1:]), err.errno)

    def _host_facts(self):
        return self._target,

    def apply(self, state):
        linkname = _resolve_in_root(_SYSROOT, self.linkname, follow_last=False)
        _mkdirs_or_fail(os.path.dirname(linkname), state.parent_mode(0), self)
        try:
            os.symlink(self._target, linkname)
        except FileExistsError:
            # As bubblewrap: the same link again is fine, anything else not.
            try:
                existing = os.readlink(linkname)
            except OSError:
                raise SandboxError("Can't make symlink at %s: destination exists and is not "
                                   "a symlink" % self.linkname, errno.EEXIST)
            if existing != self._target:
                raise SandboxError("Can't make symlink at %s: existing destination is %s"
                                   % (self.linkname, existing), errno.EEXIST)
        except OSError as err:
            _fail(str(self), err.errno)


class Mkdir(Op):
    fields = ("dest", "perm")
    paths = ("dest",)

    def __init__(self, dest, perm=0o755):
        super().__init__(dest, perm)

    def __str__(self):
        return "mkdir %s perm %s" % (_q(self.dest), _octal(self.perm))

    def validate(self):
        super().validate()
        if not isinstance(self.perm, int) or not 0 <= self.perm <= 0o7777:
            raise SandboxError("%s: invalid mode" % self, errno.EINVAL)

    def apply(self, state):
        target = _in_known_dir(_SYSROOT, self.dest)
        if target is not None:
            # mkdir never follows a symlink in the last component; only an
            # existing entry needs the full resolution below.
            try:
                os.mkdir(target, self.perm)
                _known_dirs.add(target)
                return
            except FileExistsError:
                pass
            except OSError as err:
                _fail(str(self), err.errno)
        target = _resolve_in_root(_SYSROOT, self.dest)
        _mkdirs_or_fail(os.path.dirname(target), state.parent_mode(self.perm), self)
        try:
            os.mkdir(target, self.perm)
            _known_dirs.add(target)
        except FileExistsError:
            if not os.path.isdir(target):
                _fail(str(self), errno.ENOTDIR)
        except OSError as err:
            _fail(str(self), err.errno)


class Place(Op):
    """A file holding `data` at `name`, with mode `perm`: a hidden file
    bound there, read-only unless `writable` (bubblewrap's --ro-bind-data
    and --bind-data, whose default mode is 0600)."""

    fields = ("name", "data", "perm", "writable")

    def __init__(self, name, data=None, perm=0o444, writable=False):
        super().__init__(name, data, perm, writable)

    def __str__(self):
        return "placing %s (%s)%s" % (
            _q(self.name), "%d bytes" % len(self.data)
            if isinstance(self.data, (bytes, bytearray)) else "no data",
            " writable" if self.writable else "")

    def validate(self):
        _check_abs(self.name, self)
        if not isinstance(self.data, (bytes, bytearray)):
            raise SandboxError("%s: data must be bytes, not %s"
                               % (self, type(self.data).__name__), errno.EINVAL)
        _check_perm(self.perm, self)

    def _staged_bytes(self):
        return len(self.data)

    def apply(self, state):
        what = str(self)
        target = _resolve_in_root(_SYSROOT, self.name)
        staging = "/.place%d" % state.index
        try:
            fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, self.perm)
            try:
                _write_all(fd, self.data)
            finally:
                os.close(fd)
            _make_dirs(os.path.dirname(target), state.parent_mode(self.perm))
            if os.path.isdir(target):
                _fail("%s: is a directory" % what, errno.EISDIR)
            if not os.path.lexists(target):
                _touch(target, 0o444)
        except OSError as err:
            _fail(what, err.errno)
        _bind_mount(staging, target, BindWritable if self.writable else 0, what, alone=True)
        os.unlink(staging)

    def landlock_rule(self):
        return self.name, LANDLOCK_FULL if self.writable else LANDLOCK_READ


class File(Op):
    """A file created at `dest` (or an existing one truncated: through a
    writable bind, on the host) holding `data`, mode `perm` when created
    (bubblewrap's --file)."""

    fields = ("dest", "data", "perm")
    paths = ("dest",)

    def __init__(self, dest, data=b"", perm=0o666):
        super().__init__(dest, data, perm)

    def __str__(self):
        return "file %s (%s) perm %s" % (
            _q(self.dest), "%d bytes" % len(self.data)
            if isinstance(self.data, (bytes, bytearray)) else "no data", _octal(self.perm))

    def validate(self):
        super().validate()
        if not isinstance(self.data, (bytes, bytearray)):
            raise SandboxError("%s: data must be bytes, not %s"
                               % (self, type(self.data).__name__), errno.EINVAL)
        _check_perm(self.perm, self)

    def _written_bytes(self):
        return len(self.data)

    def apply(self, state):
        target = _resolve_in_root(_SYSROOT, self.dest)
        _mkdirs_or_fail(os.path.dirname(target), state.parent_mode(self.perm), self)
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
                         | os.O_NOFOLLOW, self.perm)
        except OSError as err:
            _fail("Can't create file %s" % self.dest, err.errno)
        try:
            _write_all(fd, self.data)
        except OSError as err:
            _fail("Can't write data to file %s" % self.dest, err.errno)
        finally:
            os.close(fd)

    def landlock_rule(self):
        return self.dest, LANDLOCK_FULL


class Chmod(Op):
    """chmod of `path` (which must exist; a symlink is followed inside the
    new root) to `perm`, in its place among the operations."""

    fields = ("path", "perm")
    paths = ("path",)

    def __str__(self):
        return "chmod %s %s" % (_octal(self.perm), _q(self.path))

    def validate(self):
        super().validate()
        _check_perm(self.perm, self)

    def apply(self, state):
        try:
            os.chmod(_resolve_in_root(_SYSROOT, self.path), self.perm)
        except OSError as err:
            _fail("Can't chmod 0%o %s" % (self.perm, self.path), err.errno)


class RemountRo(Op):
    """Remount the mount at `dest` (it must be a mount point) read-only,
    nosuid and nodev; the mounts under it are left as they are."""

    fields = ("dest",)
    paths = ("dest",)

    def __str__(self):
        return "remount read-only %s" % _q(self.dest)

    def apply(self, state):
        what = str(self)
        target = _resolve_in_root(_SYSROOT, self.dest).rstrip("/")
        if not any(e.mountpoint == target for e in _read_mountinfo(target)):
            _fail("%s: not a mount point" % what, errno.EINVAL)
        try:
            _mount_setattr(target, 0, what,
                           attr_set=MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)
        except SandboxError as err:
            if err.errno != errno.ENOSYS:
                raise
            current = os.statvfs(target).f_flag
            flags_now = sum(ms for st, ms in _STATVFS_FLAGS if current & st)
            _check(_libc.mount(None, os.fsencode(target), None, MS_BIND | MS_REMOUNT | flags_now
                               | MS_RDONLY | MS_NOSUID | MS_NODEV, None), what)


def _overlay_escape(path):
    """A path in overlayfs's options: \\, "," and ":" escaped with a \\."""
    return path.replace("\\", "\\\\").replace(",", "\\,").replace(":", "\\:")


class Overlay(Op):
    """overlayfs on `target` from `lower_dirs` (host directories, lowest
    first, as bubblewrap's --overlay-src lists them): read-only without
    `upper`; writable into the host directories `upper` and `work` (on one
    file system, work empty); writable into a hidden tmpfs, lost at exit,
    when `upper` is "tmp".  Mounted in the container's user namespace with
    userxattr, as bubblewrap does."""

    fields = ("target", "lower_dirs", "upper", "work")

    def __init__(self, target, lower_dirs, upper=None, work=None):
        if isinstance(lower_dirs, list):
            lower_dirs = tuple(lower_dirs)
        super().__init__(target, lower_dirs, upper, work)

    def __str__(self):
        text = "overlay on %s lower %s" % (_q(self.target), ":".join(map(_q, self.lower_dirs))
                                           if isinstance(self.lower_dirs, tuple) else
                                           repr(self.lower_dirs))
        if self.upper == "tmp":
            return text + " upper tmp"
        if self.upper is not None:
            text += " upper %s work %s" % (_q(self.upper), _q(self.work))
        return text

    def validate(self):
        _check_abs(self.target, self)
        if not isinstance(self.lower_dirs, tuple) or not self.lower_dirs:
            raise SandboxError("%s: lower_dirs must be a non-empty list of paths" % self,
                               errno.EINVAL)
        for path in self.lower_dirs:
            _check_abs(path, self)
        if self.upper is None or self.upper == "tmp":
            if self.work is not None:
                raise SandboxError("%s: work needs an upper directory" % self, errno.EINVAL)
        else:
            _check_abs(self.upper, self)
            _check_abs(self.work, self)

    def early(self, state):
        layers = list(self.lower_dirs)
        if self.work is not None:
            layers += [self.upper, self.work]
        self._layers = []
        for path in layers:
            resolved = _resolve_in_root(_HOST, path)
            try:
                if not stat.S_ISDIR(os.stat(resolved).st_mode):
                    _fail("%s: %s" % (self, _q(path)), errno.ENOTDIR)
            except OSError as err:
                _fail("%s: %s" % (self, _q(path)), err.errno)
            self._layers.append(resolved)

    def _host_facts(self):
        return tuple(self._layers)

    def _staged_bytes(self):
        return 0 if self.upper == "tmp" else None     # the hidden directory

    def apply(self, state):
        target = _resolve_in_root(_SYSROOT, self.target)
        _mount_point_dir(target, state.parent_mode(0), self)
        layers = list(self._layers)
        options, flags = "", MS_NOSUID | MS_NODEV
        if self.upper == "tmp":
            # On the intermediate root: out of the command's reach; a tmpfs
            # of its own with the default bound (what is written is kept).
            hidden = "/.overlay%d" % state.index
            os.mkdir(hidden, 0o755)
            _mount("tmpfs", hidden, "tmpfs", MS_NOSUID | MS_NODEV,
                   "mode=0755," + _tmpfs_bounds(0), str(self))
            for name in ("/upper", "/work"):
                os.mkdir(hidden + name, 0o755)
            options = "upperdir=%s/upper,workdir=%s/work," % (hidden, hidden)
        elif self.upper is not None:
            work, upper = layers.pop(), layers.pop()
            options = "upperdir=%s,workdir=%s," % (_overlay_escape(upper), _overlay_escape(work))
        else:
            flags |= MS_RDONLY
        options += "lowerdir=%s,userxattr" % ":".join(map(_overlay_escape, reversed(layers)))
        if _libc.mount(b"overlay", os.fsencode(target), b"overlay", flags,
                       os.fsencode(options)) < 0:
            err = ctypes.get_errno()
            reason = ("Overlay directories may not overlap" if err == errno.ELOOP
                      else os.strerror(err))
            raise SandboxError("Can't make overlay mount on %s with options %s: %s"
                               % (self.target, options, reason), err)
        _forget_under(target)

    def landlock_rule(self):
        return self.target, LANDLOCK_READ if self.upper is None else LANDLOCK_FULL


class BindFd(Op):
    """A bind on `target` of what `fd` (a directory or file the caller has
    open) is: bubblewrap's --bind-fd / --ro-bind-fd.  The caller's path of
    the fd is bound, and the bind is checked to be the fd's own file after
    mounting (else "Race condition binding dirfd"), as bubblewrap does."""

    fields = ("fd", "target", "flags")
    paths = ("target",)

    def __init__(self, fd, target, flags=0):
        super().__init__(fd, target, flags)

    def __str__(self):
        return "fd %s on %s flags %#x" % (self.fd, _q(self.target), self.flags)

    def validate(self):
        if isinstance(self.fd, bool) or not isinstance(self.fd, int) or self.fd < 0:
            raise SandboxError("%s: invalid fd" % self, errno.EBADF)
        if not isinstance(self.flags, int) or self.flags & ~(BindWritable | BindDevice):
            raise SandboxError("%s: invalid flags" % self, errno.EINVAL)
        super().validate()
        self._source()

    def _source(self):
        """(path, (st_dev, st_ino)) of the fd, in the caller."""
        try:
            st = os.fstat(self.fd)
            path = os.readlink("/proc/self/fd/%d" % self.fd)
        except OSError as err:
            _fail("%s: fd %d" % (self, self.fd), err.errno)
        if not path.startswith("/") or not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
            raise SandboxError("%s: fd %d is not a directory or file (%s)"
                               % (self, self.fd, path), errno.EINVAL)
        return path, (st.st_dev, st.st_ino)

    def _record(self):
        path, identity = self._source()
        return "_BoundFd", (path, self.target, self.flags, identity)


class _BoundFd(Bind):
    """BindFd as it travels to the container: the fd's path and identity."""

    fields = ("source", "target", "flags", "identity")

    def apply(self, state):
        Bind.apply(self, state)
        target = _resolve_in_root(_SYSROOT, self.target)
        st = os.lstat(target)
        if (st.st_dev, st.st_ino) != tuple(self.identity):
            _libc.umount2(os.fsencode(target), MNT_DETACH)
            raise SandboxError("Race condition binding dirfd (%s)" % self.what, errno.ESTALE)


def _check_perm(perm, op):
    if isinstance(perm, bool) or not isinstance(perm, int) or not 0 <= perm <= 0o7777:
        raise SandboxError("%s: invalid mode %r" % (op, perm), errno.EINVAL)


def _mkdirs_or_fail(path, perm, what):
    """_make_dirs; `what` (an op or a string) is formatted only on failure."""
    try:
        _make_dirs(path, perm)
    except OSError as err:
        _fail("%s: creating %s" % (what, _q(path)), err.errno)


_OP_TYPES = {cls.__name__: cls for cls in (Bind, Proc, Dev, Mqueue, Tmpfs, Link, Mkdir, Place,
                                             File, Chmod, RemountRo, Overlay, _BoundFd)}


class Ops(list):
    """The container's operations, in order, with chaining builders."""

    def bind(self, source, target, flags=0):
        self.append(Bind(source, target, flags))
        return self

    def proc(self, dest):
        self.append(Proc(dest))
        return self

    def dev(self, dest):
        self.append(Dev(dest))
        return self

    def mqueue(self, dest):
        self.append(Mqueue(dest))
        return self

    def tmpfs(self, dest, size=0, perm=0o755):
        self.append(Tmpfs(dest, size, perm))
        return self

    def link(self, target, linkname):
        self.append(Link(target, linkname))
        return self

    def mkdir(self, dest, perm=0o755):
        self.append(Mkdir(dest, perm))
        return self

    def place(self, name, data, perm=0o444, writable=False):
        self.append(Place(name, data, perm, writable))
        return self

    def file(self, dest, data, perm=0o666):
        self.append(File(dest, data, perm))
        return self

    def chmod(self, path, perm):
        self.append(Chmod(path, perm))
        return self

    def remount_ro(self, dest):
        self.append(RemountRo(dest))
        return self

    def overlay(self, target, lower_dirs, upper=None, work=None):
        self.append(Overlay(target, lower_dirs, upper, work))
        return self

    def bind_fd(self, fd, target, flags=0):
        self.append(BindFd(fd, target, flags))
        return self

    def place_p(self, name):
        """Append a Place whose data is set later (``op.data = b"..."``),
        before serve(); returns the op."""
        op = Place(name, None)
        self.append(op)
        return op


def default_ops():
    """A read-only host system: /usr, /bin, /sbin, /lib*, /etc bound
    read-only (merged-/usr symlinks kept as symlinks), /proc, /dev, /tmp."""
    return _default_ops("")


def _default_ops(host):
    """default_ops() as it comes out with the host's root at `host`."""
    ops = Ops()
    for path in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc"):
        # One lstat: a spare's worker makes these every time it starts.
        try:
            mode = os.lstat(host + path).st_mode
        except OSError:
            continue
        if stat.S_ISLNK(mode):
            ops.link("*" + path, path)
        else:
            ops.bind(path, path, BindOptional)
    return ops.proc("/proc").dev("/dev").tmpfs("/tmp", 0, 0o1777)


def _op_record(op):
    """How an operation travels to the container: its class name and its
    field values (validated already)."""
    if isinstance(op, Place):
        return "Place", (op.name, bytes(op.data), op.perm, op.writable)
    if isinstance(op, BindFd):
        return op._record()
    return type(op).__name__, op._values()


# ---------------------------------------------------------------------------
# Limits and Landlock: what the command may use and reach once it runs.
#
# Limits (SPEC section 5) hold for every caller with nothing to configure.
# rlimits are set by PID 1 inside the sandbox's own user namespace, so a
# process count (RLIMIT_NPROC, counted per user namespace and uid since
# Linux 5.14) counts that sandbox's processes only.  Where a cgroup can be used (a
# cgroup2 directory the caller can write, or a root caller on a host with
# controllers, v2 or v1), a child cgroup per sandbox carries the memory and
# process limits for the whole sandbox: init joins it before anything else
# runs, and the caller reads its figures, kills what is left and removes
# it at the end.  A limit the host cannot enforce is an error, never off.
# The Report says how the run ended; PID 1 measures it (it reaps
# everything) and the cgroup adds what only it knows.
#
# Landlock (SPEC section 6) confines the command to the tree the operations
# built.  Each operation says, with landlock_rule(), what the command may do
# beneath what it mounted: read and execute beneath a read-only bind;
# everything beneath a writable bind, a tmpfs, an overlay's upper, /dev and an
# mqueue; what procfs allows beneath /proc.  The worker opens each target as
# the operation is applied (before a later one can mount over it), builds the
# ruleset once the root is built and hands its fd to PID 1 with the command's
# fds; PID 1 enforces it last before the command, after the capabilities and
# rlimits (the seccomp filter it loaded earlier lets the Landlock calls
# through).  Nothing else gets a right: a host directory reached through an
# fd passed in gives nothing beyond the fd itself.  With ABI >= 6 abstract
# unix sockets and signals are scoped to the sandbox; with ABI >= 4 TCP bind
# and connect can be limited to given ports.  "auto" (the default) takes what
# the kernel has, "require" fails where it has no Landlock, "off" uses none.
# ---------------------------------------------------------------------------

_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
_RLIM_MAX = 2**63 - 1
_RLIMIT_NAMES = {name[7:]: getattr(resource, name) for name in dir(resource)
                 if name.startswith("RLIMIT_") and name != "RLIMIT_OFILE"}


def _parse_size(value, what):
    """Bytes from an int or a string like "512M", "1.5G", "64KiB", "100"."""
    if isinstance(value, bool):
        raise SandboxError("%s: invalid size %r" % (what, value), errno.EINVAL)
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        text = value.strip().upper()
        for suffix in ("IB", "B"):
            if text.endswith(suffix) and len(text) > len(suffix):
                text = text[:-len(suffix)]
                break
        unit = text[-1:] if text[-1:] in _SIZE_UNITS and text[-1:] else ""
        digits = text[:-1] if unit else text
        try:
            number = int(float(digits) * _SIZE_UNITS[unit]) if "." in digits else \
                int(digits) * _SIZE_UNITS[unit]
        except ValueError:
            raise SandboxError("%s: invalid size %r" % (what, value), errno.EINVAL)
    else:
        raise SandboxError("%s: invalid size %r" % (what, value), errno.EINVAL)
    if not 0 <= number <= _RLIM_MAX:
        raise SandboxError("%s: size %r is out of range" % (what, value), errno.EINVAL)
    return number


def _parse_count(value, what, low=1):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= _RLIM_MAX:
        raise SandboxError("%s: invalid number %r" % (what, value), errno.EINVAL)
    return value


def _parse_seconds(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not 0 < value < 10**9 or value != value:
        raise SandboxError("%s: invalid number of seconds %r" % (what, value), errno.EINVAL)
    return float(value)


def _rlimit_number(name, what):
    key = name.upper() if isinstance(name, str) else None
    if key is not None and key.startswith("RLIMIT_"):
        key = key[7:]
    if key not in _RLIMIT_NAMES:
        raise SandboxError("%s: unknown resource %r" % (what, name), errno.EINVAL)
    return _RLIMIT_NAMES[key]


def _rlimit_name(number):
    return "RLIMIT_" + min(k for k, v in _RLIMIT_NAMES.items() if v == number)


def _rlimit_value(value, what):
    if value is None or value == resource.RLIM_INFINITY or value == "unlimited":
        return resource.RLIM_INFINITY
    return _parse_size(value, what)


class Limits:
    """What a sandbox may use.  Sizes in bytes or strings like "512M";
    seconds as numbers; rlimits a dict of RLIMIT_* names (or resource
    numbers) to (soft, hard), or to one value for both.  `pids` counts the
    command's processes (the sandbox's init is not one of them); `cpu_time`
    is per process, in whole seconds (rounded up), the command getting
    SIGXCPU at the limit and SIGKILL a second later; `wall_time` kills the
    whole sandbox at the deadline; `core` is the core file size (0: none)."""

    _FIELDS = ("memory", "pids", "cpu_time", "wall_time", "file_size", "open_files",
               "core", "rlimits")

    def __init__(self, memory=None, pids=None, cpu_time=None, wall_time=None,
                 file_size=None, open_files=None, core=0, rlimits=None):
        self.memory, self.pids, self.cpu_time = memory, pids, cpu_time
        self.wall_time, self.file_size, self.open_files = wall_time, file_size, open_files
        self.core, self.rlimits = core, rlimits

    def __repr__(self):
        return "Limits(%s)" % ", ".join("%s=%r" % (name, getattr(self, name))
                                         for name in self._FIELDS
                                         if getattr(self, name) != Limits().__dict__[name])

    def __eq__(self, other):
        return isinstance(other, Limits) and all(
            getattr(self, name) == getattr(other, name) for name in self._FIELDS)

    def _checked(self):
        """The limits in numbers (a dict), or SandboxError naming the field."""
        out = {
            "memory": None if self.memory is None else _parse_size(self.memory, "limits.memory"),
            "pids": None if self.pids is None else _parse_count(self.pids, "limits.pids"),
            "cpu_time": None if self.cpu_time is None else
            _parse_seconds(self.cpu_time, "limits.cpu_time"),
            "wall_time": None if self.wall_time is None else
            _parse_seconds(self.wall_time, "limits.wall_time"),
            "file_size": None if self.file_size is None else
            _parse_size(self.file_size, "limits.file_size"),
            "open_files": None if self.open_files is None else
            _parse_count(self.open_files, "limits.open_files"),
            "core": None if self.core is None else _parse_size(self.core, "limits.core"),
            "rlimits": {},
        }
        if out["memory"] == 0:
            raise SandboxError("limits.memory: 0 leaves nothing to run in", errno.EINVAL)
        rlimits = self.rlimits or {}
        try:
            items = list(rlimits.items())
        except AttributeError:
            raise SandboxError("limits.rlimits: expected a dict, not %s" % type(rlimits).__name__,
                               errno.EINVAL)
        for name, value in items:
            known = isinstance(name, int) and not isinstance(name, bool) and \
                name in _RLIMIT_NAMES.values()
            what = "limits.rlimits[%s]" % (_rlimit_name(name) if known else repr(name))
            number = name if known else _rlimit_number(name, what)
            pair = value if isinstance(value, (tuple, list)) else (value, value)
            if len(pair) != 2:
                raise SandboxError("%s: expected (soft, hard)" % what, errno.EINVAL)
            soft, hard = (_rlimit_value(v, what) for v in pair)
            if hard != resource.RLIM_INFINITY and (soft == resource.RLIM_INFINITY or soft > hard):
                raise SandboxError("%s: soft limit above the hard limit" % what, errno.EINVAL)
            out["rlimits"][number] = (soft, hard)
        for field, number in (("cpu_time", resource.RLIMIT_CPU),
                              ("file_size", resource.RLIMIT_FSIZE),
                              ("open_files", resource.RLIMIT_NOFILE)):
            if out[field] is not None and number in out["rlimits"]:
                raise SandboxError("limits: rlimits[%s] and %s both set it"
                                   % (_rlimit_name(number), field), errno.EINVAL)
        return out


class Report:
    """How a sandbox's run ended (SPEC section 5): `status` is one of
    exited, signaled, timeout, memory, cpu_time, pids, file_size, output,
    setup_failed; `exit_code` (when it exited) or `signal` (when a signal
    ended it); `wall_time`, `cpu_user`, `cpu_system` in seconds and
    `max_rss` in bytes for the whole sandbox; `memory_peak` (bytes) and
    `oom_kills` where a cgroup was used (else None); `memory_limit_kind`
    ("cgroup", "address_space", or None with no memory limit); `truncated`
    (output was cut at max_output)."""

    FIELDS = ("status", "exit_code", "signal", "wall_time", "cpu_user", "cpu_system",
              "max_rss", "memory_peak", "oom_kills", "memory_limit_kind", "truncated")

    def __init__(self, status="exited", exit_code=None, signal=None, wall_time=0.0,
                 cpu_user=0.0, cpu_system=0.0, max_rss=0, memory_peak=None, oom_kills=None,
                 memory_limit_kind=None, truncated=False):
        self.status, self.exit_code, self.signal = status, exit_code, signal
        self.wall_time, self.cpu_user, self.cpu_system = wall_time, cpu_user, cpu_system
        self.max_rss, self.memory_peak, self.oom_kills = max_rss, memory_peak, oom_kills
        self.memory_limit_kind, self.truncated = memory_limit_kind, truncated

    def as_dict(self):
        return dict((name, getattr(self, name)) for name in self.FIELDS)

    def json(self):
        """One line of JSON (what --report-fd writes)."""
        import json     # the caller's side only; not worth the helper's memory
        return json.dumps(self.as_dict())

    def __repr__(self):
        return "Report(%s)" % ", ".join("%s=%r" % item for item in self.as_dict().items())

    def __eq__(self, other):
        return isinstance(other, Report) and self.as_dict() == other.as_dict()


def _limits_for_init(checked, cgroup_covers, host_uid):
    """What PID 1 sets: {"rlimits": [(resource, (soft, hard))...] for PID 1
    and the command, "command_rlimits" for the command only (address
    space and open files, which would hamper PID 1, and CPU time, which a
    long run's reaping must not spend), "wall_time", "cpu_time"
    (the soft limit, to tell its SIGKILL from another), "reap_worker" (a
    process count must not count the worker)}."""
    rlimits = dict(checked["rlimits"])

    def put(number, value, field):
        if number in rlimits and field != "core":
            raise SandboxError("limits: rlimits[%s] and %s both set it" % (
                _rlimit_name(number), field), errno.EINVAL)
        rlimits.setdefault(number, value)

    cpu = None
    if checked["cpu_time"] is not None:
        cpu = int(-(-checked["cpu_time"] // 1))
        put(resource.RLIMIT_CPU, (cpu, cpu + 1), "cpu_time")
    if checked["memory"] is not None and "memory" not in cgroup_covers:
        put(resource.RLIMIT_AS, (checked["memory"],) * 2, "memory")
    if checked["pids"] is not None and "pids" not in cgroup_covers:
        if host_uid == 0:
            raise SandboxError(
                "limits.pids: the sandbox runs as host uid 0, which RLIMIT_NPROC does not "
                "count, and no cgroup with the pids controller is available (give cgroup=)",
                errno.EPERM)
        put(resource.RLIMIT_NPROC, (checked["pids"] + 1,) * 2, "pids")
    if host_uid == 0 and resource.RLIMIT_NPROC in checked["rlimits"] and \
            checked["rlimits"][resource.RLIMIT_NPROC][1] != resource.RLIM_INFINITY:
        raise SandboxError(
            "limits.rlimits[RLIMIT_NPROC]: the sandbox runs as host uid 0, which RLIMIT_NPROC "
            "does not count (use pids=, which a cgroup can hold)", errno.EPERM)
    if checked["file_size"] is not None:
        put(resource.RLIMIT_FSIZE, (checked["file_size"],) * 2, "file_size")
    if checked["open_files"] is not None:
        put(resource.RLIMIT_NOFILE, (checked["open_files"],) * 2, "open_files")
    if checked["core"] is not None:
        put(resource.RLIMIT_CORE, (checked["core"],) * 2, "core")
    for number, (soft, hard) in rlimits.items():
        _, caller_hard = resource.getrlimit(number)
        if caller_hard != resource.RLIM_INFINITY and (
                hard == resource.RLIM_INFINITY or hard > caller_hard):
            raise SandboxError("limits: %s hard limit %s is above this process's (%d), which "
                               "the sandbox cannot raise" % (_rlimit_name(number), hard,
                                                             caller_hard), errno.EPERM)
    command_only = [(number, rlimits.pop(number)) for number in
                    (resource.RLIMIT_AS, resource.RLIMIT_NOFILE, resource.RLIMIT_CPU)
                    if number in rlimits]
    return {"rlimits": sorted(rlimits.items()), "command_rlimits": command_only,
            "wall_time": checked["wall_time"], "cpu_time": cpu,
            "reap_worker": checked["pids"] is not None}


def _set_rlimits(limits):
    """PID 1, at request time: the limits it and the command hold (none
    of them can be raised again without CAP_SYS_RESOURCE on the host)."""
    for number, pair in limits["rlimits"]:
        try:
            resource.setrlimit(number, pair)
        except (OSError, ValueError) as err:
            _fail("rlimits: setting %s to %s" % (_rlimit_name(number), pair),
                getattr(err, "errno", None) or errno.EINVAL)


def _end_of_run(status, command_rusage, limits, timed_out):
    """What ended the command, as far as PID 1 can tell: the Report status."""
    if timed_out:
        return "timeout"
    if not os.WIFSIGNALED(status):
        return "exited"
    sig = os.WTERMSIG(status)
    if sig == signal.SIGXFSZ:
        return "file_size"
    if sig == signal.SIGXCPU or (
            sig == signal.SIGKILL and limits is not None and limits["cpu_time"] is not None
            and command_rusage is not None
            and command_rusage.ru_utime + command_rusage.ru_stime >= limits["cpu_time"]):
        return "cpu_time"
    return "signaled"


_LIMITED_CONTROLLERS = ("memory", "pids")
_cgroup_serial = itertools.count(1)


def _read_cgroup_file(dir_fd, name):
    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    return os.fsdecode(_read_all(fd))


def _write_cgroup_file(dir_fd, name, text, what):
    try:
        fd = os.open(name, os.O_WRONLY | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
    except OSError as err:
        _fail("%s: writing %r to %s" % (what, text, name), err.errno)


def _cgroup_keyed(dir_fd, name):
    """A "key value" file (memory.events, pids.events, cpu.stat) as a dict,
    or {} when it cannot be read."""
    try:
        fields = (line.split() for line in _read_cgroup_file(dir_fd, name).splitlines())
        return dict((f[0], int(f[1])) for f in fields if len(f) == 2 and f[1].isdigit())
    except OSError:
        return {}


def _cgroup_number(dir_fd, name):
    try:
        return int(_read_cgroup_file(dir_fd, name).split()[0])
    except (OSError, ValueError, IndexError):
        return None


class _CgroupDir:
    """One child cgroup: `version` 1 or 2, made as `name` under the
    directory `parent_fd` (shown as `where`), open as `fd`, holding the
    v1 `controllers` (for v2: those enabled for it)."""

    def __init__(self, version, parent_fd, where, controllers):
        self.version, self.parent_fd, self.where = version, parent_fd, where
        self.controllers = set(controllers)
        self.name = "sandbox-%d-%d" % (os.getpid(), next(_cgroup_serial))
        self.fd = None
        try:
            os.mkdir(self.name, 0o755, dir_fd=parent_fd)
        except OSError as err:
            os.close(parent_fd)
            _fail("cgroup: creating %s/%s" % (where, self.name), err.errno)
        try:
            self.fd = os.open(self.name, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC,
                              dir_fd=parent_fd)
        except OSError as err:
            self.remove()
            _fail("cgroup: opening %s/%s" % (where, self.name), err.errno)

    def pids(self):
        try:
            return [int(pid) for pid in _read_cgroup_file(self.fd, "cgroup.procs").split()]
        except (OSError, ValueError):
            return []

    def kill_all(self):
        """Kill whatever is left in it: cgroup.kill on v2, else each pid
        listed, until none is."""
        if self.version == 2:
            try:
                _write_cgroup_file(self.fd, "cgroup.kill", "1", "cgroup")
                return
            except SandboxError:
                pass       # before Linux 5.14
        for _ in range(100):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.001)

    def remove(self):
        """Empty it and remove it (the init may take a moment to exit)."""
        if self.fd is not None:
            self.kill_all()
            os.close(self.fd)
            self.fd = None
        delay = 0.0005
        for _ in range(60):
            try:
                os.rmdir(self.name, dir_fd=self.parent_fd)
                break
            except FileNotFoundError:
                break
            except OSError as err:
                if err.errno != errno.EBUSY:
                    break
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        os.close(self.parent_fd)


class _SandboxCgroup:
    """The child cgroup(s) of one sandbox (one on v2, one per controller
    hierarchy on v1), `covers` naming the limits they carry."""

    def __init__(self, dirs, covers):
        self.dirs, self.covers = dirs, set(covers)

    @classmethod
    def in_directory(cls, given, need):
        """A child of the cgroup2 directory `given` (an fd or a path), which
        must have the controllers the limits need."""
        if isinstance(given, (str, bytes, os.PathLike)):
            where = os.fsdecode(given)
            try:
                parent_fd = os.open(where, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError as err:
                _fail("cgroup: opening %s" % _q(where), err.errno)
        else:
            fd = _fd_of(given, "cgroup")
            if fd is None:
                raise SandboxError("cgroup: invalid file descriptor %r" % (given,), errno.EBADF)
            where = "cgroup fd %d" % fd
            parent_fd = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
        try:
            try:
                controllers = set(_read_cgroup_file(parent_fd, "cgroup.controllers").split())
            except OSError:
                raise SandboxError("cgroup: %s is not a cgroup2 directory" % _q(where),
                                   errno.ENOTDIR)
            for name in sorted(need):
                if name not in controllers:
                    raise SandboxError(
                        "limits.%s: the cgroup2 directory %s has no %s controller "
                        "(cgroup.controllers: %s)" % (name, _q(where), name,
                                                      " ".join(sorted(controllers)) or "none"),
                        errno.EOPNOTSUPP)
            _enable_controllers(parent_fd, need, where)
        except BaseException:
            os.close(parent_fd)
            raise
        return cls([_CgroupDir(2, parent_fd, where, need)], need)

    @classmethod
    def for_root(cls, need):
        """For a root caller: under its own cgroup in each v1 hierarchy that
        has a needed controller (plus cpuacct, for the figures), or under
        the root of a cgroup2 hierarchy that has them; None when the host
        has none of them."""
        try:
            with open("/proc/self/mountinfo", "rb") as f:
                mounts = parse_mountinfo(os.fsdecode(f.read()))
            with open("/proc/self/cgroup", "rb") as f:
                membership = [line.split(":", 2) for line in os.fsdecode(f.read()).splitlines()]
        except (OSError, SandboxError):
            return None
        for entry in mounts:
            if entry.fstype == "cgroup2":
                try:
                    with open(os.path.join(entry.mountpoint, "cgroup.controllers")) as f:
                        available = set(f.read().split()) & need
                except OSError:
                    continue
                if available == need:
                    return cls._make([(2, entry.mountpoint, need)], need)
        paths = dict((frozenset(c.split(",")), path) for _, c, path in
                     (m for m in membership if len(m) == 3))
        wanted, covers = [], set()
        for entry in mounts:
            if entry.fstype != "cgroup":
                continue
            controllers = set(entry.super_options) & (need | {"cpuacct"})
            own = [path for names, path in paths.items() if controllers and controllers <= names]
            if controllers and own and os.access(entry.mountpoint, os.W_OK):
                wanted.append((1, entry.mountpoint + own[0].rstrip("/"), controllers))
                covers |= controllers & need
        if not covers:
            return None
        return cls._make(wanted, covers)

    @classmethod
    def _make(cls, wanted, covers):
        dirs = []
        try:
            for version, path, controllers in wanted:
                try:
                    parent_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                except OSError as err:
                    _fail("cgroup: opening %s" % _q(path), err.errno)
                if version == 2:
                    try:
                        _enable_controllers(parent_fd, controllers, path)
                    except BaseException:
                        os.close(parent_fd)
                        raise
                dirs.append(_CgroupDir(version, parent_fd, path, controllers))
        except BaseException:
            for d in dirs:
                d.remove()
            raise
        return cls(dirs, covers)

    def _dir_with(self, controller):
        for d in self.dirs:
            if d.version == 2 or controller in d.controllers:
                return d
        return None

    def set_limits(self, checked):
        memory, pids = self._dir_with("memory"), self._dir_with("pids")
        if checked["memory"] is not None and "memory" in self.covers:
            value = str(checked["memory"])
            if memory.version == 2:
                _write_cgroup_file(memory.fd, "memory.max", value, "limits.memory")
                if os.path.exists("/proc/self/fd/%d/memory.swap.max" % memory.fd):
                    _write_cgroup_file(memory.fd, "memory.swap.max", "0", "limits.memory")
            else:
                _write_cgroup_file(memory.fd, "memory.limit_in_bytes", value, "limits.memory")
                if os.path.exists("/proc/self/fd/%d/memory.memsw.limit_in_bytes" % memory.fd):
                    _write_cgroup_file(memory.fd, "memory.memsw.limit_in_bytes", value,
                                       "limits.memory")
        if checked["pids"] is not None and "pids" in self.covers:
            _write_cgroup_file(pids.fd, "pids.max", str(checked["pids"] + 1), "limits.pids")

    def join_fds(self):
        return [d.fd for d in self.dirs]

    def figures(self):
        """What the cgroup recorded: {cpu_user, cpu_system (None when it does
        not count CPU), memory_peak, oom_kills, pids_refused}."""
        out = {"cpu_user": None, "cpu_system": None, "memory_peak": None,
               "oom_kills": None, "pids_refused": 0}
        for d in self.dirs:
            if d.version == 2:
                stat = _cgroup_keyed(d.fd, "cpu.stat")
                if "user_usec" in stat:
                    out["cpu_user"] = stat["user_usec"] / 1e6
                    out["cpu_system"] = stat.get("system_usec", 0) / 1e6
            elif "cpuacct" in d.controllers:
                user = _cgroup_number(d.fd, "cpuacct.usage_user")
                system = _cgroup_number(d.fd, "cpuacct.usage_sys")
                if user is not None and system is not None:
                    out["cpu_user"], out["cpu_system"] = user / 1e9, system / 1e9
            if "memory" in d.controllers:
                if d.version == 2:
                    out["memory_peak"] = _cgroup_number(d.fd, "memory.peak")
                    out["oom_kills"] = _cgroup_keyed(d.fd, "memory.events").get("oom_kill", 0)
                else:
                    out["memory_peak"] = _cgroup_number(d.fd, "memory.max_usage_in_bytes")
                    out["oom_kills"] = _cgroup_keyed(d.fd, "memory.oom_control").get("oom_kill", 0)
            if "pids" in d.controllers:
                out["pids_refused"] = _cgroup_keyed(d.fd, "pids.events").get("max", 0)
        return out

    def remove(self):
        for d in self.dirs:
            d.remove()
        self.dirs = []


def _enable_controllers(dir_fd, controllers, where):
    """Enable `controllers` for the children of a cgroup2 directory."""
    try:
        enabled = set(_read_cgroup_file(dir_fd, "cgroup.subtree_control").split())
    except OSError as err:
        _fail("cgroup: reading %s/cgroup.subtree_control" % where, err.errno)
    missing = sorted(set(controllers) - enabled)
    if missing:
        _write_cgroup_file(dir_fd, "cgroup.subtree_control",
                           " ".join("+" + name for name in missing),
                           "cgroup: enabling %s in %s" % (" ".join(missing), where))


def _plan_limits(checked, given_cgroup, host_uid):
    """(what PID 1 sets or None, the sandbox's child cgroup or None)."""
    need = set()
    if checked is not None:
        need = set(name for name in _LIMITED_CONTROLLERS if checked[name] is not None)
    cgroup = None
    if given_cgroup is not None:
        cgroup = _SandboxCgroup.in_directory(given_cgroup, need)
    elif need and os.geteuid() == 0:
        cgroup = _SandboxCgroup.for_root(need)
    try:
        for_init = None
        if checked is not None:
            for_init = _limits_for_init(checked, cgroup.covers if cgroup else set(), host_uid)
            if cgroup is not None:
                cgroup.set_limits(checked)
    except BaseException:
        if cgroup is not None:
            cgroup.remove()
        raise
    return for_init, cgroup


# The unified syscall numbers: the same on every architecture.
SYS_landlock_create_ruleset = 444
SYS_landlock_add_rule = 445
SYS_landlock_restrict_self = 446
LANDLOCK_CREATE_RULESET_VERSION = 1 << 0
LANDLOCK_RULE_PATH_BENEATH = 1
LANDLOCK_RULE_NET_PORT = 2

# include/uapi/linux/landlock.h; the ABI that brought each right is noted.
LANDLOCK_ACCESS_FS_EXECUTE = 1 << 0
LANDLOCK_ACCESS_FS_WRITE_FILE = 1 << 1
LANDLOCK_ACCESS_FS_READ_FILE = 1 << 2
LANDLOCK_ACCESS_FS_READ_DIR = 1 << 3
LANDLOCK_ACCESS_FS_REMOVE_DIR = 1 << 4
LANDLOCK_ACCESS_FS_REMOVE_FILE = 1 << 5
LANDLOCK_ACCESS_FS_MAKE_CHAR = 1 << 6
LANDLOCK_ACCESS_FS_MAKE_DIR = 1 << 7
LANDLOCK_ACCESS_FS_MAKE_REG = 1 << 8
LANDLOCK_ACCESS_FS_MAKE_SOCK = 1 << 9
LANDLOCK_ACCESS_FS_MAKE_FIFO = 1 << 10
LANDLOCK_ACCESS_FS_MAKE_BLOCK = 1 << 11
LANDLOCK_ACCESS_FS_MAKE_SYM = 1 << 12
LANDLOCK_ACCESS_FS_REFER = 1 << 13            # ABI 2
LANDLOCK_ACCESS_FS_TRUNCATE = 1 << 14         # ABI 3
LANDLOCK_ACCESS_FS_IOCTL_DEV = 1 << 15        # ABI 5
LANDLOCK_ACCESS_NET_BIND_TCP = 1 << 0         # ABI 4
LANDLOCK_ACCESS_NET_CONNECT_TCP = 1 << 1      # ABI 4
LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
LANDLOCK_SCOPE_SIGNAL = 1 << 1                # ABI 6

# What an operation grants beneath its target (masked, when the ruleset is
# built, to what the kernel handles, and to a file's rights for a file).
LANDLOCK_READ = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR
LANDLOCK_FULL = (1 << 16) - 1
LANDLOCK_PROC = (LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR
                 | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_TRUNCATE)
# A read-only bind that keeps devices: their nodes may still be written to
# and their ioctls made, as the mount allows.
LANDLOCK_READ_DEVICES = LANDLOCK_READ | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_IOCTL_DEV
_LANDLOCK_FILE_RIGHTS = (LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE
                         | LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_TRUNCATE
                         | LANDLOCK_ACCESS_FS_IOCTL_DEV)
_LANDLOCK_MODES = ("auto", "off", "require")
_LANDLOCK_RIGHT_NAMES = (
    (LANDLOCK_FULL, "all"), (LANDLOCK_READ_DEVICES, "read, execute, write and ioctl devices"),
    (LANDLOCK_READ, "read, execute"), (LANDLOCK_PROC, "read, write"))


def _landlock_abi():
    """The kernel's Landlock ABI version; 0 where there is none (not built
    in, not enabled at boot, or refused by a seccomp filter around us)."""
    return max(_libc.syscall(SYS_landlock_create_ruleset, None, ctypes.c_size_t(0),
                             ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION)), 0)


def _landlock_handled_fs(abi):
    handled = LANDLOCK_ACCESS_FS_MAKE_SYM * 2 - 1
    if abi >= 2:
        handled |= LANDLOCK_ACCESS_FS_REFER
    if abi >= 3:
        handled |= LANDLOCK_ACCESS_FS_TRUNCATE
    if abi >= 5:
        handled |= LANDLOCK_ACCESS_FS_IOCTL_DEV
    return handled


def _check_landlock_mode(mode):
    if not isinstance(mode, str) or mode not in _LANDLOCK_MODES:
        raise SandboxError("landlock: invalid mode %r (expected %s)"
                           % (mode, ", ".join(map(repr, _LANDLOCK_MODES))), errno.EINVAL)
    return mode


def _check_ports(ports, what):
    """None (not limited) or a sorted list of TCP ports."""
    if ports is None:
        return None
    if isinstance(ports, (str, bytes)) or not hasattr(ports, "__iter__"):
        raise SandboxError("%s: expected a list of ports, not %r" % (what, ports), errno.EINVAL)
    checked = set()
    for port in ports:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise SandboxError("%s: invalid port %r" % (what, port), errno.EINVAL)
        checked.add(port)
    return sorted(checked)


def _landlock_plan(mode, abi, flags, allow_connect, allow_bind):
    """What Landlock enforces for these settings on a kernel of `abi`:
    (abi, handled fs rights, handled net rights, scopes), all 0 when
    nothing applies.  A SandboxError where "require" or a port list asks
    for what the kernel lacks: a limit asked for is never ignored."""
    ports = allow_connect is not None or allow_bind is not None
    if mode == "off":
        if ports:
            raise SandboxError("landlock: allow_connect/allow_bind need Landlock, "
                               "and it is off", errno.EINVAL)
        return abi, 0, 0, 0
    if abi < 1:
        if mode == "require" or ports:
            raise SandboxError(
                "landlock: %s, and this kernel has no Landlock (Linux 5.13+ with "
                "lsm=landlock; see --check)" % ("required" if mode == "require" else
                                                "allow_connect/allow_bind need it"),
                errno.EOPNOTSUPP)
        return abi, 0, 0, 0
    net = ((LANDLOCK_ACCESS_NET_BIND_TCP if allow_bind is not None else 0)
           | (LANDLOCK_ACCESS_NET_CONNECT_TCP if allow_connect is not None else 0))
    if net and abi < 4:
        raise SandboxError("landlock: allow_connect/allow_bind need Landlock ABI 4 "
                           "(Linux 6.7); this kernel has ABI %d" % abi, errno.EOPNOTSUPP)
    # Landlock refuses every mount to a process whose file system access it
    # restricts, even in a user namespace of its own: with FAllowUserns
    # (namespaces and mounts inside) "auto" leaves the file system to the
    # mount namespace.
    fs = 0 if mode == "auto" and flags & FAllowUserns else _landlock_handled_fs(abi)
    scoped = LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | LANDLOCK_SCOPE_SIGNAL if abi >= 6 else 0
    return abi, fs, net, scoped


def _landlock_features(abi):
    """What a kernel of Landlock `abi` gives a sandbox (for check())."""
    extras = [name for needed, name in ((2, "renames across directories"), (3, "truncate"),
                                         (5, "device ioctls")) if abi >= needed]
    features = ["file system" + (" (with %s)" % ", ".join(extras) if extras else "")]
    if abi >= 4:
        features.append("TCP port rules")
    if abi >= 6:
        features.append("abstract unix sockets and signals scoped")
    return "ABI %d: %s" % (abi, "; ".join(features))


def _landlock_rights_name(access):
    for mask, name in _LANDLOCK_RIGHT_NAMES:
        if access == mask:
            return name
    return "%#x" % access


def _landlock_describe(plan, allow_connect, allow_bind):
    """One line saying what Landlock enforces (for -v and check())."""
    abi, fs, net, scoped = plan
    if not (fs or net or scoped):
        return "not used" + (" (the kernel has none)" if abi < 1 else "")
    parts = ["ABI %d" % abi,
             "file system: only beneath the operations' targets" if fs else
             "file system: not restricted (FAllowUserns: mounts inside)"]
    for bit, name, ports in ((LANDLOCK_ACCESS_NET_BIND_TCP, "bind", allow_bind),
                             (LANDLOCK_ACCESS_NET_CONNECT_TCP, "connect", allow_connect)):
        if net & bit:
            parts.append("TCP %s: %s" % (name, ", ".join(map(str, ports)) or "no port"))
    parts.append("scoped: abstract unix sockets, signals" if scoped else
                 "scoped: nothing (needs ABI 6)")
    return "; ".join(parts)


def _landlock_verbose(container):
    """-v: write what Landlock will enforce; returns a function giving the
    text to add to an operation's line (its rights, when they apply)."""
    try:
        plan = _landlock_plan(_check_landlock_mode(container.landlock), _landlock_abi(),
                              container.flags, _check_ports(container.allow_connect, "allow_connect"),
                              _check_ports(container.allow_bind, "allow_bind"))
    except SandboxError:
        return lambda op: ""        # the run says why
    sys.stderr.write("sandbox: landlock: %s\n" % _landlock_describe(
        plan, _check_ports(container.allow_connect, ""), _check_ports(container.allow_bind, "")))

    def rights(op):
        rule = op.landlock_rule() if plan[1] else None
        return " (landlock: %s)" % _landlock_rights_name(rule[1]) if rule else ""
    return rights


def _landlock_add_rule(ruleset, kind, attr, what):
    buf = ctypes.create_string_buffer(attr, len(attr))
    _check(_libc.syscall(SYS_landlock_add_rule, ruleset, kind, buf, 0), what)


def _landlock_ruleset(plan, rules=()):
    """A new ruleset (in the worker) for `plan`, holding `rules`: (fd,
    rights) of targets of the operations (and of the root, see
    _build_root)."""
    abi, fs, net, scoped = plan
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    attr = ctypes.create_string_buffer(struct.pack("=QQQ", fs, net, scoped)[:size], size)
    ruleset = _check(_libc.syscall(SYS_landlock_create_ruleset, attr, ctypes.c_size_t(size),
                                   ctypes.c_uint32(0)), "landlock: creating the ruleset")
    try:
        for fd, access in rules if fs else ():
            _landlock_path_rule(ruleset, fs, fd, access)
    except BaseException:
        os.close(ruleset)
        raise
    return ruleset


def _landlock_path_rule(ruleset, fs, fd, access):
    """Rights `access` (as far as the ruleset handles them, `fs`) beneath
    what fd is: a directory, or only a file's rights for a file."""
    if not stat.S_ISDIR(os.fstat(fd).st_mode):
        access &= _LANDLOCK_FILE_RIGHTS
    if access & fs:
        _landlock_add_rule(ruleset, LANDLOCK_RULE_PATH_BENEATH,
                           struct.pack("=Qi", access & fs, fd), "landlock: adding a rule")


class _LandlockTargets:
    """Where the operations' targets go as they are applied.  With a plan
    (a request), into the ruleset at once, each fd closed again: a thousand
    binds need no thousand fds.  Without one (a spare building ahead, before
    the request's settings are known), kept open as (fd, rights): a few, to
    make any ruleset from."""

    def __init__(self, plan=None):
        self.plan, self.ruleset, self.kept = plan, None, []

    def add(self, fd, access):
        if self.plan is None:
            self.kept.append((fd, access))
            return
        try:
            if self.ruleset is None:
                self.ruleset = _landlock_ruleset(self.plan)
            _landlock_path_rule(self.ruleset, self.plan[1], fd, access)
        finally:
            os.close(fd)


def _landlock_request_rules(ruleset, plan, stdio, allow_connect, allow_bind):
    """Add what depends on the request: the command's own stdin, stdout and
    stderr when they are files or devices (so that /dev/stdout can be opened
    again, with the rights the fd has), and the port rules."""
    fs = plan[1]
    for fd in stdio if fs else ():
        access = _landlock_stdio_rights(fd) & fs
        if access:
            buf = ctypes.create_string_buffer(struct.pack("=Qi", access, fd), 12)
            # (EBADFD: a pipe or socket, which Landlock never checks.)
            if _libc.syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH,
                             buf, 0) < 0 and ctypes.get_errno() != errno.EBADFD:
                _fail("landlock: adding the rule for stdio", ctypes.get_errno())
    for port in sorted(set(allow_connect or ()) | set(allow_bind or ())):
        access = ((LANDLOCK_ACCESS_NET_BIND_TCP if port in (allow_bind or ()) else 0)
                  | (LANDLOCK_ACCESS_NET_CONNECT_TCP if port in (allow_connect or ()) else 0))
        _landlock_add_rule(ruleset, LANDLOCK_RULE_NET_PORT, struct.pack("=QQ", access, port),
                           "landlock: adding the rule for port %d" % port)


# Landlock's port rules hold for TCP sockets only: a stream of MPTCP, SCTP
# or SMC (IPPROTO_MPTCP, IPPROTO_SCTP, IPPROTO_SMC on AF_INET/AF_INET6),
# which Landlock does not check, connects to and listens on any port, and
# MPTCP falls back to plain TCP with a TCP peer.  With port rules, socket()
# refuses those protocols as a kernel without them does (EPROTONOSUPPORT:
# programs fall back to TCP).  The protocol is an int: the high half is
# masked off.
_PORT_UNCHECKED_PROTOCOLS = (132, 256, 262)


def _landlock_port_seccomp_rules(allow_connect, allow_bind):
    """The seccomp rules that keep port rules whole (none without them)."""
    if allow_connect is None and allow_bind is None:
        return ()
    return tuple(_rule("socket", _errno_action(errno.EPROTONOSUPPORT),
                       Arg(2, CMP_MASKED_EQ, protocol, 0xFFFFFFFF))
                 for protocol in _PORT_UNCHECKED_PROTOCOLS)


def _landlock_stdio_rights(fd):
    """What reopening the file or device `fd` refers to may do: what the fd
    itself may (nothing for a pipe, socket or directory)."""
    if fd is None:
        return 0
    try:
        mode = os.fstat(fd).st_mode
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    except OSError:
        return 0
    if not (stat.S_ISREG(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode)) or flags & os.O_PATH:
        return 0
    access = 0
    if flags & os.O_ACCMODE in (os.O_RDONLY, os.O_RDWR):
        access |= LANDLOCK_ACCESS_FS_READ_FILE
    if flags & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR):
        access |= LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_TRUNCATE
    if not stat.S_ISREG(mode):
        access |= LANDLOCK_ACCESS_FS_IOCTL_DEV
    return access


def _landlock_restrict(ruleset):
    """PID 1, last before the command: enforce the ruleset (no_new_privs is
    set) on itself, and so on everything it starts."""
    try:
        _check(_libc.syscall(SYS_landlock_restrict_self, ruleset, 0), "landlock: restricting")
    finally:
        os.close(ruleset)


# ---------------------------------------------------------------------------
# The container's init.
#
# clone() with every namespace flag makes a child that is PID 1 of the new
# PID namespace.  Its setup has two halves.  The shell depends only on the
# ids it maps, on whether it keeps the terminal and the network, and on the
# seccomp policy.  PID 1 sets what is its own (signals, parent-death signal,
# session, dumpable, bounding set, cgroup) and forks a worker, which sets
# what the namespaces share: it maps the ids, makes / rslave, mounts the
# intermediate root and pivots into it (host under /host), and brings lo up.
# The second half is the worker's: the file system (the operations and the
# second pivot_root).  Meanwhile PID 1 sets no_new_privs and loads the
# seccomp filter; when the worker hands over the command's fds and exits,
# PID 1 drops its capabilities, spawns the command and reaps until
# everything has exited.  Setup's Python work is done in the worker, whose
# pages go when it exits, so an idle init stays small.  (The command line's
# init, a clone of a process that lives as long, does all of it itself, as
# bubblewrap's does: _init_sets_up.)  The helper
# keeps shells ready ahead of time ("spares", _SPARES) so that most containers
# start from the second half; while the requests it serves ask for
# default_ops(), the spare's worker builds them in sysroot before a request
# comes, and checks at the request that what it learned from the host still
# holds (the helper replaces a spare whenever the host's mount table
# changes).  Init runs Python from memory only: after
# pivot_root nothing can be imported, so everything it calls is imported at
# the top of this module.  Messages to the parent travel as marshal'd tuples
# over a SOCK_SEQPACKET channel: ("error", message, errno) if setup fails;
# ("ready",) once the command has started; ("exec", errno, what) if it
# could not be executed; ("exit", status) once everything is reaped (the
# worker, done before the command started, need not be: _init_serve).
# ---------------------------------------------------------------------------

LINGER_SECONDS = 5.0
_DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
_SETUP_FAILED = 125
# The seccomp options of a container with no flags: what spares are made for.
_DEFAULT_SECCOMP = 0x1E
_FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# The exit signal of PID 1's worker: not SIGCHLD, so that waiting for the
# command and the rest passes the worker over (_init_serve); on this one
# PID 1 reaps the worker alone (the command may send it too: it changes
# nothing).
_WORKER_SIGNAL = signal.SIGUSR1
_INIT_SIGNALS = {signal.SIGCHLD, _WORKER_SIGNAL} | set(_FORWARDED_SIGNALS)
# Python and the helper ignore some signals; the command starts with none ignored.
_RESET_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM,
                  signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD, signal.SIGTSTP,
                  signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR1, signal.SIGUSR2,
                  signal.SIGALRM)


class _SetupState:
    """What operations see while they are applied."""

    def __init__(self, cfg, stdout_fd):
        self.flags = cfg["flags"]
        self.parent_perm = cfg["parent_perm"]    # 0: each op's own, as bubblewrap's
        self.stdout_fd = stdout_fd
        bwrap = cfg.get("bwrap")
        self.bubblewrap = bwrap is not None     # its error texts
        # With bubblewrap's defaults a PID namespace may be the host's.
        self.own_pid_ns = bwrap is None or bool(bwrap["clone"] & CLONE_NEWPID) or (
            bwrap["pidns_fd"] is not None)
        self.index = 0
        self.trees = {}        # op index -> the fd of its bind's tree (caller-made)
        self._host_mountpoints = None
        # Landlock: a _LandlockTargets taking each op's target as it is
        # applied; None when no ruleset restricts the file system.
        self.landlock = None
        self.setup_bounds = _setup_bounds(())     # set per request by _build_root

    def parent_mode(self, perm):
        """The mode of the parent directories an op with mode `perm` (0
        for an op without one) creates."""
        return self.parent_perm or _parent_mode(perm)

    def host_mounts_under(self, path):
        """Whether anything is mounted strictly under `path` (a path under
        /host).  The host's mount table is read once per setup: binds that
        bring no submounts then cost no more as the table grows."""
        if self._host_mountpoints is None:
            self._host_mountpoints = [e.mountpoint for e in _read_mountinfo(_HOST + "/")]
        prefix = path.rstrip("/") + "/"
        return any(mountpoint.startswith(prefix) for mountpoint in self._host_mountpoints)


def _trees_by_op(records, fds):
    """{op index: tree fd, or None for an optional bind with no source}
    from the request's ("trees") record [(index, present), ...]."""
    fds, trees = list(fds), {}
    for index, present in records:
        trees[index] = fds.pop(0) if present else None
    return trees


def _send(chan, *message):
    try:
        os.write(chan, marshal.dumps(message))
    except OSError:
        pass


# A container's messages are read by its caller, outside the sandbox, and a
# command can take over a PID 1 that is dumpable (the bwrap personality's,
# as bubblewrap's) and send anything on its channel; marshal.loads is not
# meant for what an adversary made.  The caller reads marshal's format for
# the plain values these messages hold, and refuses every other shape.
_PLAIN_STRINGS = {ord("u"): "utf-8", ord("t"): "utf-8", ord("a"): "latin-1",
                  ord("A"): "latin-1", ord("s"): None}
_SHORT_STRINGS = (ord("z"), ord("Z"))     # ASCII, with a one-byte length
_PLAIN_CONSTANTS = {ord("N"): None, ord("T"): True, ord("F"): False}
_INT32 = struct.Struct("<i")
_FLOAT64 = struct.Struct("<d")
# Each field of a message: a range of ints or of floats (low, high), or the
# types it may be.  Statuses are _wait_status's, as PID 1's and the
# helper's; a value out of range would reach os.strerror, os._exit, kill.
_ERRNO_RANGE = (0, 4095)
_SECONDS_RANGE = (0.0, 1e9)
_MESSAGE_SHAPES = {
    "pid": [((1, 1 << 22),)],
    "ready": [()],
    "namespaces": [(list,)],
    "error": [(str, _ERRNO_RANGE)],
    "exec": [(_ERRNO_RANGE, (str, bytes))],
    # status, or status and (Report status, signal, wall time, user and
    # system CPU seconds, max RSS)
    "exit": [((0, 255),), ((0, 255), str, (0, 64), _SECONDS_RANGE, _SECONDS_RANGE,
                           _SECONDS_RANGE, (0, 1 << 62))],
}
_NAMESPACE_NAMES = frozenset(("cgroup", "ipc", "mnt", "net", "pid", "uts"))


def _loads_plain(data):
    """marshal.loads for None, booleans, ints, floats, str, bytes, and
    tuples and lists of them (nested at most 4 deep); ValueError,
    IndexError or struct.error for anything else or anything malformed."""
    refs = []

    def value(pos, depth):
        code = data[pos]
        kind, pos = code & 0x7F, pos + 1
        slot = -1
        if code & 0x80:             # marshal's FLAG_REF: a later "r" names it
            slot = len(refs)
            refs.append(refs)       # (a placeholder no value can be)
        if kind == 0x69:            # "i"
            result, pos = _INT32.unpack_from(data, pos)[0], pos + 4
        elif kind in _SHORT_STRINGS or kind in _PLAIN_STRINGS:
            if kind in _SHORT_STRINGS:
                size, pos = data[pos], pos + 1
            else:
                size, pos = _INT32.unpack_from(data, pos)[0], pos + 4
            if size < 0 or pos + size > len(data):
                raise ValueError("truncated")
            result, pos = data[pos:pos + size], pos + size
            encoding = _PLAIN_STRINGS.get(kind, "latin-1")
            if encoding is not None:
                result = result.decode(encoding, "surrogatepass")
        elif kind == 0x67:          # "g"
            result, pos = _FLOAT64.unpack_from(data, pos)[0], pos + 8
        elif kind in (0x28, 0x29, 0x5B):     # "(", ")", "["
            if kind == 0x29:
                count, pos = data[pos], pos + 1
            else:
                count, pos = _INT32.unpack_from(data, pos)[0], pos + 4
            if not 0 <= count <= len(data) or depth >= 4:
                raise ValueError("bad length or nested too deep")
            items = []
            for _ in range(count):
                item, pos = value(pos, depth + 1)
                items.append(item)
            result = items if kind == 0x5B else tuple(items)
        elif kind in _PLAIN_CONSTANTS:
            result = _PLAIN_CONSTANTS[kind]
        elif kind == 0x6C:          # "l": signed count of 15-bit digits
            count, pos = _INT32.unpack_from(data, pos)[0], pos + 4
            if not 0 < abs(count) <= 8:
                raise ValueError("integer too large")
            digits = struct.unpack_from("<%dH" % abs(count), data, pos)
            pos += 2 * abs(count)
            if max(digits) >> 15:
                raise ValueError("bad digit")
            result = sum(digit << (15 * index) for index, digit in enumerate(digits))
            result = -result if count < 0 else result
        elif kind == 0x72:          # "r"
            index, pos = _INT32.unpack_from(data, pos)[0], pos + 4
            if not 0 <= index < len(refs) or refs[index] is refs:
                raise ValueError("bad reference")
            result = refs[index]
        else:
            raise ValueError("type %r" % chr(kind))
        if slot >= 0:
            refs[slot] = result
        return result, pos

    result, end = value(0, 0)
    if end != len(data):
        raise ValueError("trailing data")
    return result


def _fits(field, kind):
    """Whether a message's field is of `kind` (see _MESSAGE_SHAPES); an
    int is no bool, and NaN is in no range."""
    if isinstance(kind, tuple) and not isinstance(kind[0], type):
        return type(field) is type(kind[0]) and kind[0] <= field <= kind[1]
    return isinstance(field, kind)


def _printable(text):
    """text with what a terminal would act on (newlines, escapes) escaped,
    as Go's %q escapes them (_q)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else
                   ("\\x%02x" if ord(c) < 0x100 else "\\u%04x" if ord(c) < 0x10000 else
                    "\\U%08x") % ord(c) for c in text)


def _container_message(data):
    """A message from a container's channel, or None when it is none that
    init sends (see _MESSAGE_SHAPES); an error's text is made printable,
    so that the command line says it in one line."""
    try:
        message = _loads_plain(data)
    except (ValueError, IndexError, struct.error):
        return None
    if not isinstance(message, tuple) or not message or not isinstance(message[0], str):
        return None
    kind = message[0]
    for shape in _MESSAGE_SHAPES.get(kind, ()):
        if len(shape) == len(message) - 1 and all(
                _fits(field, field_kind) for field, field_kind in zip(message[1:], shape)):
            if kind == "namespaces" and not all(
                    isinstance(item, tuple) and len(item) == 2 and item[0] in _NAMESPACE_NAMES
                    and _fits(item[1], (0, 1 << 64)) for item in message[1]):
                return None
            if kind == "error":
                return (kind, _printable(message[1]), message[2])
            return message
    return None


def _write_file(path, data, what):
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as err:
        _fail("%s: writing %s" % (what, path), err.errno)


def _map_identity(uid, gid, host_uid, host_gid):
    _prctl(PR_SET_DUMPABLE, 1, what="uid_map: dumpable")
    _write_file("/proc/self/uid_map", b"%d %d 1\n" % (uid, host_uid), "uid_map")
    _write_file("/proc/self/setgroups", b"deny\n", "setgroups")
    _write_file("/proc/self/gid_map", b"%d %d 1\n" % (gid, host_gid), "gid_map")
    _prctl(PR_SET_DUMPABLE, 0, what="uid_map: dumpable")


# Identity (SPEC 3.2).  A sandbox whose host ids are the cloner's own maps
# them itself, from inside (the kernel lets any process map its own ids).
# Other host ids (a root caller's default: the overflow ids) are mapped from
# outside: the cloner, which has CAP_SETUID in the parent user namespace,
# writes the child's maps while the child waits, then releases it.  The
# child then holds host root's credentials, unmapped inside, and setresuid/
# setresgid to the inner ids (mapped to the host ids) before anything else:
# capabilities in its own namespace survive that (no inner root to leave),
# setup creates files as a mapped id, and the command runs as the host ids.
# The user namespace stays host root's, so no host process of the sandbox's
# host uid holds capabilities over it.

def _maps_from_outside(host_uid, host_gid):
    return (host_uid, host_gid) != (os.geteuid(), os.getegid())


def _write_maps(pid, uid, gid, host_uid, host_gid, what="uid_map"):
    """Map uid/gid of pid's user namespace to host_uid/host_gid, from
    outside (setgroups denied first, as the kernel requires)."""
    base = "/proc/%d/" % pid
    _write_file(base + "uid_map", b"%d %d 1\n" % (uid, host_uid), what)
    _write_file(base + "setgroups", b"deny\n", what + ": setgroups")
    _write_file(base + "gid_map", b"%d %d 1\n" % (gid, host_gid), what + ": gid_map")


def _clone_mapped(flags, key):
    """_clone(flags) of a container's init for shell key `key`; when its
    ids are mapped from outside, they are written before the child goes
    on (it waits for that, and exits if the cloner fails).  Returns the
    pid (0 in the child), or -1 with errno set."""
    uid, gid, host_uid, host_gid = key[:4]
    if not _maps_from_outside(host_uid, host_gid):
        return _clone(flags)
    if os.getgroups():
        # setgroups is denied inside: the supplementary groups the cloner
        # has when it clones stay the sandbox's.
        os.setgroups([])
    release_r, release_w = os.pipe2(os.O_CLOEXEC)
    pid = _clone(flags)
    if pid == 0:
        os.close(release_w)
        go = os.read(release_r, 1)
        os.close(release_r)
        if go != b"g":
            os._exit(_SETUP_FAILED)
        return 0
    errno_saved = ctypes.get_errno()
    os.close(release_r)
    try:
        if pid > 0:
            try:
                _write_maps(pid, uid, gid, host_uid, host_gid)
            except SandboxError:
                os.kill(pid, signal.SIGKILL)
                raise
            os.write(release_w, b"g")
    finally:
        os.close(release_w)
    ctypes.set_errno(errno_saved)
    return pid


def _become_mapped(key):
    """In an init whose maps were written from outside: take the inner ids
    (what is created from now on is theirs; capabilities stay)."""
    uid, gid = key[:2]
    try:
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except OSError as err:
        _fail("setresuid to the mapped ids", err.errno)
    # A change of euid resets dumpable to fs.suid_dumpable: keep the host's
    # processes of that uid from ptracing init and the worker.
    _prctl(PR_SET_DUMPABLE, 0, what="init: not dumpable")


def _make_userns(uid_line, gid_line):
    """An fd of a new user namespace with these maps (written from
    outside, so any ids a privileged cloner may map): what an idmapped
    bind is given.  Its one process only waits while it is made."""
    release_r, release_w = os.pipe2(os.O_CLOEXEC)
    pid = _clone(CLONE_NEWUSER)
    if pid == 0:
        os.close(release_w)
        os.read(release_r, 1)
        os._exit(0)
    os.close(release_r)
    try:
        if pid < 0:
            _fail("idmap: creating a user namespace", ctypes.get_errno())
        base = "/proc/%d/" % pid
        _write_file(base + "uid_map", uid_line, "idmap: uid_map")
        _write_file(base + "setgroups", b"deny\n", "idmap: setgroups")
        _write_file(base + "gid_map", gid_line, "idmap: gid_map")
        return os.open(base + "ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(release_w)
        if pid > 0:
            os.waitpid(pid, 0)


def _enter_intermediate_root():
    """Make / rslave, mount a tmpfs as intermediate root holding sysroot
    (the new root: a tmpfs of its own, so that a root built ahead and not
    wanted can be swapped for an empty one) and pivot into it, the host's
    root moving to /host."""
    global _proc
    _mount(None, "/", None, MS_REC | MS_SLAVE, None, "making / rslave")
    base = "/tmp" if os.path.isdir("/tmp") else "/mnt"
    _mount("rootfs", base, "tmpfs", MS_NODEV | MS_NOSUID, "mode=0755," + _staging_bounds(()),
           "intermediate root")
    os.chdir(base)
    os.mkdir("sysroot", 0o755)
    os.mkdir("host", 0o755)
    _mount("rootfs", "sysroot", "tmpfs", MS_NODEV | MS_NOSUID, "mode=0755," + _setup_bounds(()),
           "new root")
    _pivot_root(".", "host", "pivot_root to the intermediate root")
    os.chdir("/")
    _proc = _HOST + "/proc"


def _each_op(ops, state, step):
    """Run one pass (early or apply) over the operations; errors name the
    operation and its index.  Operations that have no early pass of their
    own (most) are not called in it."""
    for index, op in enumerate(ops):
        method = getattr(type(op), step)
        if method is Op.early:
            continue
        state.index = index
        try:
            method(op, state)
            if step == "apply" and state.landlock is not None:
                _open_landlock_target(op, state.landlock)
        except SandboxError as err:
            raise err if state.bubblewrap else _at_op(err, index)
        except OSError as err:
            err = SandboxError("%s: %s" % (op.what, err.strerror), err.errno)
            raise err if state.bubblewrap else _at_op(err, index)


def _open_landlock_target(op, targets):
    """The target of op's Landlock rule, opened now: a later op may mount
    over it, and the rule is for what this op made."""
    rule = op.landlock_rule()
    if rule is not None:
        path, access = rule
        targets.add(os.open(_resolve_in_root(_SYSROOT, path),
                            os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC), access)


def _build_root(ops, state, ahead=None, wanted=False):
    """The early pass, then each operation, unless `ahead` (a _RootAhead)
    built the same in sysroot and what it learned from the host still
    holds: then True (its Landlock targets are this request's).  A root
    built ahead and not wanted is swapped for an empty one."""
    _each_op(ops, state, "early")
    if ahead is not None and ahead.facts is not None:
        if wanted and [op._host_facts() for op in ops] == ahead.facts:
            return True
        _empty_sysroot()
    # The new root and /dev hold what these operations make, and the
    # intermediate root what they stage.  (Both are empty but for the
    # intermediate root's two directories: the bounds can shrink.)
    state.setup_bounds = _setup_bounds(ops)
    _remount_bounds(_SYSROOT, state.setup_bounds, "new root")
    staging = _staging_bounds(ops)
    if staging != _staging_bounds(()):
        _remount_bounds("/", staging, "intermediate root")
    _known_dirs.add(_SYSROOT)
    if state.landlock is not None:
        # The root tmpfs holds only setup's mount points, directories and
        # symlinks: the command may list them (ls /, find /), as ordinary
        # programs do, and write or execute nothing there.
        state.landlock.add(os.open(_SYSROOT, os.O_PATH | os.O_CLOEXEC),
                           LANDLOCK_ACCESS_FS_READ_DIR)
    _each_op(ops, state, "apply")
    return False


def _remount_bounds(path, bounds, what):
    _mount(None, path, "tmpfs", MS_REMOUNT | MS_NODEV | MS_NOSUID, bounds, what + ": bounds")


def _empty_sysroot():
    """Swap sysroot, with all that is mounted in it, for an empty tmpfs."""
    _check(_libc.umount2(_SYSROOT.encode(), MNT_DETACH), "discarding the root built ahead")
    _known_dirs.clear()
    _mount("rootfs", _SYSROOT, "tmpfs", MS_NODEV | MS_NOSUID, "mode=0755," + _setup_bounds(()),
           "new root")


class _RootAhead:
    """A spare's worker, while it waits for a request: default_ops() as it
    sees the host, built into sysroot when `build` (then `facts` holds
    what the early pass learned, else None), and the Landlock ruleset of
    its operations under "auto".  Most requests ask for default_ops(), and
    building them is most of a worker's time."""

    def __init__(self, build):
        ops = _default_ops(_HOST)
        self.records = [_op_record(op) for op in ops]
        self.facts = None
        self.landlock = _LandlockTargets()
        if build:
            state = _SetupState({"flags": 0, "parent_perm": 0}, None)
            state.landlock = self.landlock
            try:
                _build_root(ops, state)
                self.facts = [op._host_facts() for op in ops]
            except SandboxError:
                _empty_sysroot()       # the request builds its own
        self.landlock_plan = self.landlock_ruleset = None
        if self.facts is not None:
            try:
                self.landlock_plan = _landlock_plan("auto", _landlock_abi(), 0, None, None)
                if any(self.landlock_plan[1:]):
                    self.landlock_ruleset = _landlock_ruleset(self.landlock_plan,
                                                              self.landlock.kept)
            except SandboxError:
                pass                   # the request tries again, and says why
        # What the early pass cached of the host may be stale by the request.
        _known_dirs.clear()

    def wanted(self, cfg):
        # (default_ops() make no parents: any parent_perm builds the same)
        return cfg["ops"] == self.records and not cfg.get("trees")


def _enter_sysroot():
    """Make sysroot the root and detach the intermediate root, and with it
    the host beneath it: one detach (each costs the kernel an RCU grace
    period on the request path).  The detached mounts are made private
    as they go, and none of them passes a propagation on: the namespace's
    mounts are slaves of the host's, and nothing receives from them."""
    os.chdir(_SYSROOT)
    _pivot_root(".", ".", "pivot_root to sysroot")
    _check(_libc.umount2(b".", MNT_DETACH), "detaching intermediate root and host")
    os.chdir("/")


def _loopback_up():
    # struct ifreq: char ifr_name[16]; short ifr_flags; (padding)
    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        request = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | IFF_UP))
    finally:
        sock.close()


def _drop_bounding_set(last_cap):
    """Drop every capability but CAP_SYS_ADMIN from the bounding set (the
    shell does this early: the bounding set only limits what a later
    execve can gain, and setup needs none of it)."""
    for cap in range(last_cap + 1):
        if cap != CAP_SYS_ADMIN:
            _prctl(PR_CAPBSET_DROP, cap, what="dropping capability %d" % cap)


def _confine(fprog):
    """no_new_privs and the seccomp filter.  PID 1 does this as soon as its
    worker is forked (it makes no more mounts), before the configuration
    arrives when it is a spare: the filter is part of the shell's key."""
    _prctl(PR_SET_NO_NEW_PRIVS, 1, what="no_new_privs")
    if fprog is not None:      # None: bubblewrap's defaults, no built-in filter
        _load_fprog(fprog)


def _drop_capabilities(privileged):
    """Clear the ambient set, drop the last of the bounding set and empty
    the permitted and effective sets (CAP_SYS_ADMIN stays when privileged)."""
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, what="clearing ambient capabilities")
    if not privileged:
        _prctl(PR_CAPBSET_DROP, CAP_SYS_ADMIN, what="dropping CAP_SYS_ADMIN")
    keep = (1 << CAP_SYS_ADMIN) if privileged else 0
    # struct __user_cap_header_struct + two __user_cap_data_struct
    header = ctypes.create_string_buffer(struct.pack("Ii", _LINUX_CAPABILITY_VERSION_3, 0))
    data = ctypes.create_string_buffer(struct.pack("6I", keep, keep, keep, 0, 0, 0))
    _check(_libc.syscall(SYS_capset, header, data), "capset")
    if privileged:
        _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_SYS_ADMIN, what="raising CAP_SYS_ADMIN")


# -- bubblewrap's defaults (Container.hardened False) ------------------------
# The container is set up as bubblewrap sets it up: only the namespaces
# asked for (always a mount namespace), the caller's ids, the capabilities
# asked for (a root caller's own by default), inherited fds kept, no
# built-in seccomp filter.  cfg["bwrap"] holds what differs; init takes it
# here, after the worker has built the root.

def _bwrap_finish(bwrap):
    """PID 1's steps before the command, in bubblewrap's order: userns2,
    the nested user namespace that disables more of them, the check that
    none can be made, and the capabilities."""
    if bwrap["userns2_fd"] is not None:
        if _libc.setns(bwrap["userns2_fd"], CLONE_NEWUSER) != 0:
            _fail("Setting userns2 failed", ctypes.get_errno())
    if bwrap["disable_userns"]:
        proc = bwrap["proc_fd"]
        _write_at(proc, "sys/user/max_user_namespaces", b"1",
                  "sysctl user.max_user_namespaces = 1")
        _check(_libc.unshare(CLONE_NEWUSER), "unshare user ns")
        uid, gid = bwrap["ids"]
        _prctl(PR_SET_DUMPABLE, 1, what="uid_map: dumpable")    # else /proc/self is not ours
        _write_at(proc, "self/uid_map", b"%d %d 1\n" % (uid, uid), "uid_map")
        _write_at(proc, "self/setgroups", b"deny\n", "setgroups")
        _write_at(proc, "self/gid_map", b"%d %d 1\n" % (gid, gid), "gid_map")
        _prctl(PR_SET_DUMPABLE, 0, what="uid_map: dumpable")
        # The caller's /proc, read-write: PID 1 ends dumpable, and a command
        # that took this fd from it would reach the host's processes and,
        # as a root caller's uid 0, write the host's sysctls.
        bwrap["proc_fd"] = None
        os.close(proc)
    if bwrap["disable_userns"] or bwrap["assert_userns_disabled"]:
        if _libc.unshare(CLONE_NEWUSER) == 0:
            _fail("creation of new user namespaces was not disabled as requested")
    _set_capabilities(bwrap["caps"], bwrap["in_userns"], bwrap["own_caps"])
    # Its namespaces can be joined by the caller's uid (--userns, --pidns).
    _prctl(PR_SET_DUMPABLE, 1, what="dumpable")


def _write_at(dir_fd, path, data, what):
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as err:
        _fail(what, err.errno)


def _set_capabilities(mask, in_userns, own_caps):
    """bubblewrap's capabilities for the command: `mask` in the permitted,
    effective, inheritable and ambient sets, the bounding set cut to it in
    a user namespace; None leaves a root caller's own (its effective set)
    untouched but for the bounding set.  As bubblewrap, EINVAL and EPERM
    from prctl are ignored (no_new_privs holds the line), others fail."""
    keep = own_caps if mask is None else mask
    if in_userns:
        for cap in range(_proc_int("/proc/sys/kernel/cap_last_cap", 40) + 1):
            if not keep >> cap & 1:
                _cap_prctl(PR_CAPBSET_DROP, cap, "Dropping capability %d from bounds")
    if mask is not None:
        _capset(mask, mask, mask)
        _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, what="clearing ambient capabilities")
    for cap in range(64):
        if keep >> cap & 1:
            _cap_prctl(PR_CAP_AMBIENT, cap, "Adding ambient capability %d", PR_CAP_AMBIENT_RAISE)


def _cap_prctl(option, cap, what, arg2=None):
    args = (cap, 0) if arg2 is None else (arg2, cap)
    if _libc.prctl(option, args[0], args[1], 0, 0) < 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.EPERM):
            _fail(what % cap, err)


def _exec_command(cfg, chan, stdio, extras, programs=()):
    """bubblewrap's way when nothing needs an init (no new PID namespace, or
    --as-pid-1): this process becomes the command; never returns."""
    slots = list(stdio) + list(extras)
    targets = [0, 1, 2] + list(cfg["fd_targets"])
    high = [None if fd is None else fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, max(targets) + 1)
            for fd in slots]
    if chan <= max(targets):     # it may have come in at 0 (this process's stdio went)
        chan = fcntl.fcntl(chan, fcntl.F_DUPFD_CLOEXEC, max(targets) + 1)
    for target, fd in zip(targets, high):
        if fd is None:
            try:
                os.close(target)
            except OSError:
                pass
        else:
            os.dup2(fd, target)
    _close_all(set(fd for fd in high + slots if fd is not None) - set(targets))
    for sig in _RESET_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    what, status = "chdir %s" % _q(cfg["dir"] or "/"), _SETUP_FAILED
    try:
        env = _enter_dir(cfg)
        for index, program in enumerate(programs):    # the user's, last before execve
            what = "seccomp program %d" % index
            _load_filter(program)
        what, status, err = cfg["path"] or cfg["args"][0], 127, errno.ENOENT
        args = _command_args(cfg)
        for candidate in _command_candidates(cfg, env):
            try:
                os.execve(candidate, args, env)
            except OSError as error:
                if err == errno.ENOENT or error.errno not in (errno.ENOENT, errno.ENOTDIR):
                    err = error.errno
        raise OSError(err, os.strerror(err))
    except OSError as error:
        if status == 127 and error.errno != errno.ENOENT:
            status = 126
        _send(chan, "exec", error.errno or errno.EINVAL, what)
        os._exit(status)


def _fork_command(cfg, chan, stdio, extras, programs=()):
    """The command as a child of an init that keeps no capability, as
    bubblewrap's PID 1: the child inherits this process's capabilities
    (the ambient set needs them here) and waits to execute until this
    process has dropped them and loaded the user's seccomp programs
    (bubblewrap's init loads them too: it is dumpable, and the command may
    ptrace it or write its memory, to make the calls its own filter
    refuses); returns once it has executed (or failed to, which it has
    reported by then)."""
    hold_r, hold_w = os.pipe2(os.O_CLOEXEC)
    started_r, started_w = os.pipe2(os.O_CLOEXEC)
    command = _clone(0)
    if command == 0:
        os.close(hold_w)
        os.close(started_r)
        go = os.read(hold_r, 1)
        os.close(hold_r)
        if not go:
            os._exit(_SETUP_FAILED)      # this process failed: nothing runs
        if cfg["bwrap"]["die_with_parent"]:
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, what="parent-death signal")
        if not cfg["flags"] & FAllowTTY:
            os.setpgid(0, 0)
        _exec_command(cfg, chan, stdio, extras, programs)
    _close_all([hold_r, started_w])
    try:
        if command < 0:
            _fail("fork: starting the command", ctypes.get_errno())
        _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, what="clearing ambient capabilities")
        try:
            _capset(0, 0, 0)
        except SandboxError:
            pass          # as bubblewrap: a policy denying capset does not stop it
        for program in programs:
            try:
                _load_filter(program)
            except SandboxError as err:
                if err.errno == errno.EINVAL:       # bubblewrap's words for it
                    err = SandboxError(
                        "Unable to set up system call filtering as requested: prctl(PR_SET_SECCOMP) "
                        "reported EINVAL. (Hint: this requires a kernel configured with "
                        "CONFIG_SECCOMP and CONFIG_SECCOMP_FILTER.)", err.errno)
                _report_setup_failure(chan, err)
        os.write(hold_w, b"g")
    finally:
        os.close(hold_w)
    _read_all(started_r)      # EOF: executed (its copy closed on exec) or exited
    return command


def _enter_dir(cfg):
    """chdir to the command's directory and set the umask; returns its
    environment.  With no directory (bubblewrap's default) the caller's old
    one if it exists inside, else $HOME, else /; the hardened command line
    gives its fallbacks in cfg["dir_fallbacks"] (the same, issue 11).  PWD
    then names where it went."""
    env, fallbacks = cfg["env"], cfg["dir_fallbacks"]
    if cfg["dir"] is None:
        fallbacks = [cfg["bwrap"]["old_cwd"], os.fsdecode(env.get(b"HOME", b"")), "/"]
    candidates = [d for d in [cfg["dir"]] + list(fallbacks or ()) if d]
    for index, candidate in enumerate(candidates):
        try:
            os.chdir(candidate)
            break
        except OSError:
            if index == len(candidates) - 1:
                raise
    if cfg.get("bwrap") is not None or fallbacks is not None:
        env = dict(env)
        env[b"PWD"] = os.fsencode(candidate)
    os.umask(cfg["umask"])
    return env


def _command_args(cfg):
    """The command's argv: args, with argv0 (issue 11) as its argv[0]."""
    return cfg["args"] if cfg["argv0"] is None else [cfg["argv0"]] + cfg["args"][1:]


def _command_candidates(cfg, env):
    path = cfg["path"] or cfg["args"][0]
    if b"/" in path:
        return [path]
    search = env.get(b"PATH", _DEFAULT_PATH.encode())
    return [os.path.join(d or b".", path) for d in search.split(b":")]


def _spawn_command(cfg, chan, stdio, extras, programs=()):
    """Start the command with posix_spawn (a vfork: nothing of this process
    is copied) and return its pid; exec failures come back at once and are
    reported as ("exec", errno, what) before exiting 127/126.  The extra
    fds go to the numbers in cfg["fd_targets"] (3, 4, ... for extra_files,
    their own for pass_fds)."""
    slots = list(stdio) + list(extras)
    targets = [0, 1, 2] + list(cfg["fd_targets"])
    # Move every fd above the slots they go to, so no dup2 clobbers another.
    high = [None if fd is None else fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, max(targets) + 1)
            for fd in slots]
    actions = [(os.POSIX_SPAWN_CLOSE, target) if fd is None else (os.POSIX_SPAWN_DUP2, fd, target)
               for target, fd in zip(targets, high)]
    # Without a terminal, the command leads a process group of its own.
    group = {} if cfg["flags"] & FAllowTTY else {"setpgroup": 0}
    what, status = "chdir %s" % _q(cfg["dir"] or "/"), _SETUP_FAILED
    try:
        env = _enter_dir(cfg)
        path = cfg["path"] or cfg["args"][0]
        args = _command_args(cfg)
        what, status, err = path, 127, errno.ENOENT
        candidates = _command_candidates(cfg, env)
        limits = cfg["limits"]["command_rlimits"] if cfg["limits"] is not None else ()
        if limits or programs:
            return _exec_in_clone(path, candidates, args, env, targets, high, bool(group),
                                  limits, programs)
        for candidate in candidates:
            try:
                if len(candidates) > 1:
                    # What is not there fails as stat() fails, without a
                    # process (each would take a pid: the command is PID 2).
                    os.stat(candidate)
                return os.posix_spawn(candidate, args, env, file_actions=actions,
                                      setsigmask=(), setsigdef=_RESET_SIGNALS, **group)
            except OSError as error:
                if err == errno.ENOENT or error.errno not in (errno.ENOENT, errno.ENOTDIR):
                    err = error.errno
        raise OSError(err, os.strerror(err))
    except SandboxError as error:
        _report_setup_failure(chan, error)
    except OSError as error:
        if status == 127 and error.errno != errno.ENOENT:
            status = 126
        _send(chan, "exec", error.errno or errno.EINVAL, what)
        os._exit(status)
    finally:
        _close_all(high)


def _read_programs(fd, lengths):
    """The user's seccomp programs (issue 11) from the worker's memfd."""
    try:
        data = os.pread(fd, sum(lengths), 0)
    finally:
        os.close(fd)
    programs, offset = [], 0
    for length in lengths:
        programs.append(data[offset:offset + length])
        offset += length
    return programs


def _hold_lock_files(paths):
    """--lock-file: PID 1 opens each path and holds a read lock on it (an
    fcntl lock, seen by F_GETLK and lockf outside) until the sandbox ends."""
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as err:
            _fail("Unable to open lock file %s" % path, err.errno)
        try:
            fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as err:
            _fail("Unable to lock file %s" % path, err.errno)


def _wait_for_block_fd(fd):
    """--block-fd: one byte (or end of file) before the command starts."""
    try:
        os.read(fd, 1)
    except OSError as err:
        _fail("block-fd: reading fd", err.errno)
    finally:
        os.close(fd)


def _exec_in_clone(path, candidates, args, env, targets, high, setpgroup, rlimits, programs):
    """Start the command in a bare clone of PID 1 that sets what only the
    command may hold, then execs: rlimits that would bind PID 1 (limits:
    posix_spawn would map its stack in PID 1's address space, which may be
    larger than an address-space limit), and the user's seccomp programs
    (issue 11: loaded last before execve, by the command's own process, as
    bubblewrap does; a program that allows little would stop PID 1).
    Returns the pid; what the clone could not do (load a program, exec)
    comes back on a close-on-exec pipe and is raised here."""
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    pid = _clone(0)
    if pid == 0:
        failure = ("exec", errno.EINVAL, path)
        try:
            os.close(report_r)
            for sig in _RESET_SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
            if setpgroup:
                os.setpgid(0, 0)
            for target, fd in zip(targets, high):
                if fd is not None:
                    os.dup2(fd, target)
                else:
                    try:
                        os.close(target)
                    except OSError:
                        pass
            signal.pthread_sigmask(signal.SIG_SETMASK, ())
            for number, pair in rlimits:
                resource.setrlimit(number, pair)
            for index, program in enumerate(programs):
                failure = ("seccomp", errno.EINVAL, index)
                _load_filter(program)
            err = errno.ENOENT
            for candidate in candidates:
                try:
                    os.execve(candidate, args, env)
                except OSError as error:
                    if err == errno.ENOENT or error.errno not in (errno.ENOENT, errno.ENOTDIR):
                        err = error.errno
            failure = ("exec", err, path)
        except OSError as error:
            failure = (failure[0], error.errno or errno.EINVAL, failure[2])
        except BaseException:
            pass
        try:
            os.write(report_w, marshal.dumps(failure))
        finally:
            os._exit(127)
    os.close(report_w)
    if pid < 0:
        os.close(report_r)
        _fail("forking the command", ctypes.get_errno())
    report = _read_all(report_r)
    if not report:
        return pid
    kind, err, what = marshal.loads(report)
    os.waitpid(pid, 0)
    if kind == "seccomp":
        if err == errno.EINVAL:
            raise SandboxError("Unable to set up system call filtering as requested: "
                               "prctl(PR_SET_SECCOMP) reported EINVAL (seccomp program %d)"
                               % what, err)
        _fail("seccomp: loading program %d" % what, err)
    raise OSError(err, os.strerror(err))


def _shell_key(cfg, cgroup):
    """What the first half of init's setup depends on."""
    return (cfg["uid"], cfg["gid"], cfg["host_uid"], cfg["host_gid"],
            cfg["flags"] & (FAllowTTY | FAllowNet), int(cgroup is not None), cfg["seccomp"],
            # user seccomp rules: a filter no spare has (spares: 0)
            int(cfg.get("user_seccomp", 0)))


def _init_process(key, keep, cgroup, bwrap=None, outside=False):
    """PID 1's part of the shell: its own state, most of which the command
    inherits (signals, session, bounding set, cgroup).  With bubblewrap's
    defaults (`bwrap`), inherited fds stay open, the bounding set is cut
    later and the parent-death signal is set only when asked."""
    flags = key[4]
    os.chdir("/")      # not to pin the caller's directory: pivot_root moves only /
    signal.set_wakeup_fd(-1)
    signal.pthread_sigmask(signal.SIG_BLOCK, _INIT_SIGNALS)
    for sig in _INIT_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    if bwrap is None or bwrap["die_with_parent"]:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, what="parent-death signal")
        _check_parent_alive()
    if bwrap is None:
        _close_fds_except(keep)
    else:
        _close_cloexec_fds(keep)
    if bwrap is not None and bwrap["disable_userns"]:
        # bubblewrap reaches the sysctl and the nested map through the /proc
        # it saw before pivoting.
        bwrap["proc_fd"] = os.open("/proc", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    if not flags & FAllowTTY:
        os.setsid()
    if bwrap is None or bwrap["userns_block_fd"] is None:
        _prctl(PR_SET_DUMPABLE, 0, what="init: not dumpable")
    # (else dumpable, as bubblewrap's child is: its /proc/PID/uid_map is
    # the caller's uid's to open, and the maps are written from outside)
    if bwrap is None:
        _drop_bounding_set(_proc_int("/proc/sys/kernel/cap_last_cap", 40))
    if cgroup is not None:
        # Every child cgroup the sandbox has (one per v1 hierarchy), before
        # the worker exists: the container starts in them.
        for directory in cgroup:
            fd = os.open("cgroup.procs", os.O_WRONLY | os.O_CLOEXEC, dir_fd=directory)
            try:
                os.write(fd, b"0\n")
            except OSError as err:
                _fail("cgroup: joining", err.errno)
            finally:
                os.close(fd)
            os.close(directory)
        _check(_libc.unshare(CLONE_NEWCGROUP), "cgroup namespace")
    if outside:
        _become_mapped(key)     # (after joining the cgroup: as host root)
        if bwrap is None or bwrap["die_with_parent"]:
            # A change of ids clears the parent-death signal: set it again.
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, what="parent-death signal")
            _check_parent_alive()
    if bwrap is None or bwrap["clone"] & CLONE_NEWPID and not bwrap["exec"]:
        _open_last_pid()


# PID numbering as bubblewrap's: the command is PID 2 (init 1), though the
# worker is forked first.  PID 1 holds /proc/sys/kernel/ns_last_pid open,
# opened before setup pivots (the sandbox's own /proc/sys is read-only, or
# absent); the kernel applies a write to the writer's own PID namespace and
# wants CAP_SYS_ADMIN over it, so PID 1 writes while it has its
# capabilities: 2 before forking the worker (which is then PID 3), 1 just
# before it drops them (the next process, the command, is then PID 2).
# Where the file cannot be opened (a kernel without CHECKPOINT_RESTORE, a
# read-only /proc/sys), the numbering is as it comes: the command is PID 3.
_last_pid_fd = None


def _open_last_pid():
    global _last_pid_fd
    try:
        _last_pid_fd = os.open("/proc/sys/kernel/ns_last_pid", os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        _last_pid_fd = None


def _set_last_pid(pid, close=False):
    """The next process this PID 1 makes is pid + 1 (if that is free)."""
    global _last_pid_fd
    fd = _last_pid_fd
    if fd is None:
        return
    try:
        os.pwrite(fd, b"%d" % pid, 0)     # at offset 0: sysctl_writes_strict
    except OSError:
        pass
    if close:
        _last_pid_fd = None
        os.close(fd)


def _close_cloexec_fds(keep):
    """Close what an exec would (fds with FD_CLOEXEC), but `keep`: a clone
    of the caller must not hold its private fds (a pipe's write end would
    never see EOF); the inherited ones pass through, as to bubblewrap."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd in keep:
            continue
        try:
            if fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC:
                os.close(fd)
        except OSError:
            pass      # the directory listing itself


def _init_namespaces(key, bwrap=None, outside=False):
    """The worker's part of the shell: what the container's namespaces
    share (done here, its Python work leaves PID 1's pages untouched).
    With bubblewrap's defaults, ids are mapped only in a user namespace of
    its own and lo brought up only in a network namespace of its own."""
    uid, gid, host_uid, host_gid, flags = key[:5]
    if (bwrap is None or bwrap["clone"] & CLONE_NEWUSER and bwrap["userns_block_fd"] is None) \
            and not outside:
        try:
            _map_identity(uid, gid, host_uid, host_gid)
        except SandboxError as err:     # a namespace without capabilities (AppArmor)
            raise SandboxError("%s (%s; %s)" % (err, _userns_diagnosis(err.errno, "uid_map")[0],
                                                _CHECK_HINT), err.errno)
    os.umask(0)
    _enter_intermediate_root()
    if bwrap is None and not flags & FAllowNet or bwrap is not None and bwrap["clone"] & CLONE_NEWNET:
        try:
            _loopback_up()
        except OSError as err:
            _fail("loopback: bringing lo up", err.errno)


_SPAWN_FIELDS = ("args", "path", "dir", "env", "umask", "privileged", "flags", "quiet",
                 "fd_targets", "limits", "bwrap")
# bubblewrap's options (issue 11)
_SPAWN_FIELDS += ("argv0", "lock_files", "held_fds", "dir_fallbacks")


def _set_up(cfg, chan, stdio, extras, to_init, helper=None, ahead=None, trees=()):
    """The worker: the second half of setup (_set_up_root); then it hands
    PID 1 what it needs to start the command, and exits.  Its exit (the
    teardown of a copy of a Python process) overlaps PID 1's work.  A
    spare's worker tells the helper whether the request wanted
    default_ops(), so that the next spare builds them ahead or not."""
    wanted = ahead is not None and ahead.wanted(cfg)
    try:
        spawn, ruleset = _set_up_root(cfg, chan, stdio, extras, ahead, wanted, trees)
        # The user's seccomp programs (issue 11) go in a memfd: they may be
        # larger than a message.
        programs = cfg["seccomp_programs"]
        program_fds = [_memfd_holding(b"".join(programs))] if programs else []
        message = marshal.dumps(spawn)
        fds = ([chan] + list(stdio) + list(extras) + program_fds
               + ([ruleset] if ruleset is not None else []))
        # Arguments and environment may be megabytes (up to ARG_MAX).
        if len(message) > _INLINE_LIMIT:
            fds.insert(0, _memfd_holding(message, "sandbox-spawn"))
            message = b"M"
        else:
            message = b"I" + message
        _send_fds(to_init, message, fds)
        # Init has them now: no pipe of the command's waits for EOF on this
        # process's exit (its memory is freed first: ~1 ms).
        _close_all(fds)
    except BaseException as err:
        _report_setup_failure(chan, err)
    if helper is not None:
        try:
            helper.send(b"default" if wanted else b"custom")
        except OSError:
            pass
        helper.close()      # the helper may make the next spare now
    os._exit(0)


def _set_up_root(cfg, chan, stdio, extras, ahead=None, wanted=False, trees=()):
    """The second half of setup (the file system), in the worker or in a
    PID 1 without one: hostname, the operations, the second pivot and the
    Landlock ruleset.  Returns (what PID 1 needs to start the command, the
    ruleset's fd or None).  `trees`: the bind sources the caller opened
    (see _open_bind_trees)."""
    if cfg["report_namespaces"]:
        _send(chan, "namespaces", _own_namespaces())
    if cfg["hostname"]:
        try:
            socket.sethostname(cfg["hostname"])
        except OSError as err:
            _fail("sethostname %s" % _q(cfg["hostname"]), err.errno)
    ops = [_OP_TYPES[kind]._from_values(values) for kind, values in cfg["ops"]]
    landlock = _landlock_plan(cfg["landlock"], _landlock_abi(), cfg["flags"],
                              cfg["allow_connect"], cfg["allow_bind"])
    state = _SetupState(cfg, stdio[1])
    state.trees = _trees_by_op(cfg.get("trees", ()), trees)
    if landlock[1]:
        state.landlock = _LandlockTargets(landlock)
    built_ahead = _build_root(ops, state, ahead, wanted)
    _enter_sysroot()
    ruleset = None
    if any(landlock[1:]):
        if built_ahead and landlock == ahead.landlock_plan and ahead.landlock_ruleset is not None:
            ruleset = ahead.landlock_ruleset
        elif built_ahead:
            ruleset = _landlock_ruleset(landlock, ahead.landlock.kept)
        elif state.landlock is not None and state.landlock.ruleset is not None:
            ruleset = state.landlock.ruleset
        else:
            ruleset = _landlock_ruleset(landlock)
        _landlock_request_rules(ruleset, landlock, stdio, cfg["allow_connect"],
                                cfg["allow_bind"])
    spawn = dict((name, cfg[name]) for name in _SPAWN_FIELDS)
    spawn["slots"], spawn["extras"] = [fd is not None for fd in stdio], len(extras)
    spawn["landlock"] = ruleset is not None
    spawn["seccomp_programs"] = [len(program) for program in cfg["seccomp_programs"]]
    return spawn, ruleset


def _own_namespaces():
    """(name, inode) of this process's namespaces, as bubblewrap's
    --info-fd lists them (the parent may not look: init is not dumpable)."""
    ids = []
    for name in ("cgroup", "ipc", "mnt", "net", "pid", "uts"):
        try:
            ids.append((name, os.stat("%s/self/ns/%s" % (_proc, name)).st_ino))
        except OSError:
            pass
    return ids


def _report_setup_failure(chan, err):
    """Send the error to the parent and exit 125; never a traceback."""
    if isinstance(err, SandboxError):
        _send(chan, "error", str(err), err.errno or 0)
    else:
        _send(chan, "error", "setup: %s" % (err,), getattr(err, "errno", 0) or 0)
    os._exit(_SETUP_FAILED)


def _init_serve(worker, from_worker, fprog, bwrap=None, set_up=None):
    """PID 1 while the worker sets up and after: take what the worker sends
    (nothing if setup failed: its status is the result), drop privileges,
    start the command, reap until everything has exited, report and leave;
    never returns.  With bubblewrap's defaults and nothing to reap for (no
    PID namespace of its own, or --as-pid-1) it becomes the command.  A
    PID 1 that set up itself (_init_sets_up: no worker, no from_worker)
    gives what a worker would have sent as `set_up`."""
    chan = None
    try:
        _confine(fprog)
        taken = set_up if set_up is not None else _take_from_worker(from_worker, bwrap)
        if taken is None:
            status = _wait_status(os.waitpid(worker, WAIT_ALL)[1])
        else:
            spawn, chan, stdio, fds, programs, ruleset = taken
            held = dict(zip(spawn["held_fds"], fds[len(spawn["fd_targets"]):]))
            fds = fds[:len(spawn["fd_targets"])]
            limits = spawn["limits"]
            try:
                _set_last_pid(1, close=True)     # the command is PID 2
                if bwrap is None:
                    _drop_capabilities(spawn["privileged"])
                else:
                    _bwrap_finish(spawn["bwrap"])
                _hold_lock_files(spawn["lock_files"])
                if limits is not None:
                    _set_rlimits(limits)
                    if limits["reap_worker"] and worker is not None:
                        os.waitpid(worker, WAIT_ALL)    # a process count is the command's
                        worker = None   # (its pid may be another's next: counted, reaped)
                if ruleset is not None:
                    _landlock_restrict(ruleset)
                if "block" in held:
                    _wait_for_block_fd(held.pop("block"))
            except BaseException as err:
                _report_setup_failure(chan, err)
            # held["sync"], if any, stays open as long as PID 1 lives.
            if bwrap is not None and bwrap["exec"]:
                if worker is not None:
                    _reap(worker, in_pid_namespace=False)
                if not spawn["quiet"]:
                    _send(chan, "ready")      # before: nothing of ours runs after
                _exec_command(spawn, chan, stdio, fds, programs)
            if bwrap is None:
                command = _spawn_command(spawn, chan, stdio, fds, programs)
            else:
                command = _fork_command(spawn, chan, stdio, fds, programs)
            # "ready" once the command runs: an exec failure has been
            # reported by then, so Popen() raises it as subprocess does.
            if not spawn["quiet"]:
                _send(chan, "ready")
            _close_all(stdio + fds)
            # Signals go to the command's whole group, as a terminal sends them.
            report = None
            if bwrap is not None:
                # As bubblewrap's monitor: the status as soon as the command exits.
                report = lambda status: _send(chan, "exit", status)   # noqa: E731
            status, usage = _reap(command, command if spawn["flags"] & FAllowTTY else -command,
                                  worker, limits,
                                  in_pid_namespace=bwrap is None or bool(bwrap["clone"] & CLONE_NEWPID),
                                  bubblewrap=report)
            if bwrap is not None:
                os._exit(status)
    except BaseException as err:
        if chan is not None:
            _send(chan, "error", "init: %s" % (err,), getattr(err, "errno", 0) or 0)
        os._exit(_SETUP_FAILED)
    if chan is not None:
        # Everything in the namespace has been reaped but a worker made with
        # _WORKER_SIGNAL (wait4 without WAIT_ALL passes it over; a process
        # of the command's made init's child, reparented or CLONE_PARENT,
        # always has SIGCHLD): it handed over and closed the channel and the
        # command's files before the command started, and has exited or is
        # about to, no more than telling the helper it is done; the kernel
        # may still be freeing its copy of this process's memory (~1 ms),
        # which the parent need not wait for.  It goes before PID 1 does,
        # as all else in the namespace.  The parent may know now, without
        # waiting for the kernel to tear the namespaces down.
        _send(chan, "exit", status, *usage)
    os._exit(status)


def _take_from_worker(from_worker, bwrap):
    """What the worker sent (_set_up): (spawn, chan, stdio, the extra fds,
    the user's seccomp programs, the Landlock ruleset or None); None when
    it sent nothing (setup failed)."""
    message, fds = _recv_fds(from_worker, _INLINE_LIMIT + 1)
    from_worker.close()
    if not message:
        return None
    if message == b"M":
        memfd = fds.pop(0)
        message = b"I" + os.pread(memfd, os.fstat(memfd).st_size, 0)
        os.close(memfd)
    chan, fds = fds[0], fds[1:]
    spawn = marshal.loads(message[1:])
    if bwrap is not None:
        spawn["bwrap"].update(bwrap)    # what this process opened (proc_fd)
    ruleset = fds.pop() if spawn["landlock"] else None
    programs = _read_programs(fds.pop(), spawn["seccomp_programs"]) \
        if spawn["seccomp_programs"] else ()
    stdio = [fds.pop(0) if present else None for present in spawn["slots"]]
    return spawn, chan, stdio, fds, programs, ruleset


def _await_id_maps(cfg, chan, fd):
    """userns_block_fd: the worker (or a PID 1 without one) reports the
    namespaces (the command line writes --info-fd: the pid whose maps are
    to be written), then waits for a byte or EOF on fd, as bubblewrap's
    parent does before it lets its child go on; meanwhile another process
    writes the maps.  The fd stays open: PID 1's copy reaches the
    command, as bubblewrap's command inherits it."""
    _send(chan, "namespaces", _own_namespaces())
    cfg["report_namespaces"] = False
    try:
        os.read(fd, 1)
    except OSError:
        pass            # bubblewrap ignores it too: setup then fails unmapped


def _fork_worker(stdio, extras, exit_signal=_WORKER_SIGNAL):
    """Fork PID 1's worker; returns (worker pid, PID 1's end of their
    socket) in PID 1 and (0, the worker's end) in the worker.  With
    _WORKER_SIGNAL as its exit signal (PID 1 of its own PID namespace)
    _reap does not wait for it: see _init_serve."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    _set_last_pid(2)        # the worker is PID 3: 2 is the command's
    # A bare clone, as init itself was made: os.fork()'s Python hooks would
    # touch (and so copy) pages of this process for nothing.
    worker = _clone(0, exit_signal)
    if worker < 0:
        _fail("forking the worker", ctypes.get_errno())
    if worker == 0:
        global _last_pid_fd
        if _last_pid_fd is not None:
            os.close(_last_pid_fd)
            _last_pid_fd = None
        ours.close()
        return 0, theirs
    theirs.close()
    _close_all(list(stdio) + list(extras))
    return worker, ours


def _container_init(cfg, chan, stdio, extras, cgroup, trees=(), outside=False):
    """Body of a child cloned for this configuration; never returns."""
    bwrap = cfg["bwrap"]
    try:
        key = _shell_key(cfg, cgroup)
        keep = [chan] + list(stdio) + list(extras) + list(cgroup or ()) + list(trees)
        if bwrap is not None:
            keep.append(bwrap["userns_block_fd"])
        _init_process(key, [fd for fd in keep if fd is not None], cgroup, bwrap, outside)
        if cfg["init_sets_up"]:
            _init_sets_up(cfg, chan, stdio, extras, key, trees, outside)
        # (with bubblewrap's defaults init may be no PID 1: it reaps the
        # worker, whose exit signal is SIGCHLD, as any child)
        worker, link = _fork_worker(stdio, list(extras) + list(trees),
                                    _WORKER_SIGNAL if bwrap is None else signal.SIGCHLD)
    except BaseException as err:
        _report_setup_failure(chan, err)
    if worker == 0:
        try:
            if bwrap is not None and bwrap["userns_block_fd"] is not None:
                _await_id_maps(cfg, chan, bwrap["userns_block_fd"])
            _init_namespaces(key, bwrap, outside)
        except BaseException as err:
            _report_setup_failure(chan, err)
        _set_up(cfg, chan, stdio, extras, link, trees=trees)
    filter_program = cfg["filter"]
    if cfg["filter_follows"]:
        filter_program = _filter_from_caller(chan)
    os.close(chan)
    _init_serve(worker, link, None if filter_program is None else _fprog(filter_program), bwrap)


def _init_sets_up(cfg, chan, stdio, extras, key, trees=(), outside=False):
    """The command line's PID 1 sets up the container itself, as
    bubblewrap's does, then serves it; never returns.  A worker (a second
    copy of the Python process, its clone, the hand-over and its exit)
    earns its keep where PID 1 lives long and must stay small (the
    helper's containers, spares); the command line's process is as large
    as the init it clones and lives as long.  What PID 1 holds once setup
    is done is what a worker would have handed it."""
    bwrap = cfg["bwrap"]
    try:
        # Close-on-exec, as a worker hands them over: the command gets them
        # at their targets only, not at the caller's numbers too.
        for fd in list(stdio) + list(extras):
            if fd is not None:
                os.set_inheritable(fd, False)
        if bwrap is not None and bwrap["userns_block_fd"] is not None:
            _await_id_maps(cfg, chan, bwrap["userns_block_fd"])
        _init_namespaces(key, bwrap, outside)
        # (each bind closes its tree once it is mounted)
        spawn, ruleset = _set_up_root(cfg, chan, stdio, extras, trees=trees)
        program = _filter_from_caller(chan) if cfg["filter_follows"] else cfg["filter"]
    except BaseException as err:
        _report_setup_failure(chan, err)
    _init_serve(None, None, None if program is None else _fprog(program), bwrap,
                (spawn, chan, list(stdio), list(extras), cfg["seccomp_programs"], ruleset))


def _filter_from_caller(chan):
    """The seccomp program the command line's process compiles while this
    init sets up (see Container._request); nothing (the caller failed or
    died): exit."""
    try:
        message = os.read(chan, _INLINE_LIMIT + 1)
    except OSError as err:
        _report_setup_failure(chan, err)
    if not message.startswith(b"F"):
        os._exit(_SETUP_FAILED)
    return message[1:]


def _spare_main(key, sock, fprog, build_ahead, outside):
    """Body of a spare: the shell for `key` and a forked worker that waits
    for a request from the helper (having built default_ops() ahead if
    `build_ahead`) and carries on as that container's worker; never
    returns."""
    try:
        _init_process(key, [sock], None, outside=outside)
        worker, link = _fork_worker((), ())
        if worker == 0:
            _init_namespaces(key, outside=outside)
            helper = socket.socket(fileno=sock)
            ahead = _RootAhead(build_ahead)
            payload, fds = _recv_fds(helper)
            if not payload:
                os._exit(0)
            cfg, taken, memfd = _decode_request(payload, fds)
            _close_all([memfd] + taken["cgroup"])
            _set_up(cfg, taken["chan"], (taken["stdin"], taken["stdout"], taken["stderr"]),
                    taken["extras"], link, helper, ahead, taken.get("trees", ()))
        os.close(sock)
    except BaseException:
        os._exit(_SETUP_FAILED)
    _init_serve(worker, link, fprog)


def _wait_status(status):
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _reap(command, forward_to=None, worker=None, limits=None, in_pid_namespace=True,
          bubblewrap=None):
    """PID 1's loop: forward SIGINT/SIGTERM/SIGHUP to the command (or to
    forward_to, a pid or -pgid), reap everything (a worker made with
    _WORKER_SIGNAL, which wait4 passes over, when that signal says it has
    exited, and never waited for), and once the command has
    exited give the rest LINGER_SECONDS, then kill and reap them; at the
    wall-time limit, kill everything.  Returns the command's status and
    the usage of all but the worker: (Report status, signal or 0, wall
    time, user and system CPU seconds, max RSS in bytes).  Outside a PID
    namespace of its own (bubblewrap's default) it is no reaper: its
    children are the command alone.  With bubblewrap's defaults
    (`bubblewrap`, called with the command's status as soon as it exits)
    the rest are waited for, never killed."""
    forward_to = command if forward_to is None else forward_to
    started = time.monotonic()
    wall_deadline = None if limits is None or limits["wall_time"] is None else \
        started + limits["wall_time"]
    raw = command_usage = deadline = None
    user = system = 0.0
    max_rss = 0
    timed_out = False
    killing = False
    while True:
        while True:
            try:
                pid, status, usage = os.wait4(-1, 0 if killing else os.WNOHANG)
            except ChildProcessError:
                pid = None
            except InterruptedError:
                continue
            if not pid:
                break
            if pid != worker:
                user += usage.ru_utime
                system += usage.ru_stime
                max_rss = max(max_rss, usage.ru_maxrss)
            if pid == command:
                raw, command_usage = status, usage
                if bubblewrap is not None:
                    bubblewrap(_wait_status(status))
                else:
                    deadline = time.monotonic() + LINGER_SECONDS
        if pid is None:
            break           # nothing left to reap
        limit = deadline if wall_deadline is None or (
            deadline is not None and deadline < wall_deadline) else wall_deadline
        if limit is not None:
            remaining = limit - time.monotonic()
            if remaining <= 0:
                timed_out = raw is None
                if not in_pid_namespace:      # never kill(-1) outside one's own
                    try:
                        os.kill(forward_to, signal.SIGKILL)
                    except OSError:
                        pass
                    killing = True
                    continue
                os.kill(-1, signal.SIGKILL)     # from PID 1: all the others
                killing = True
                continue
            info = signal.sigtimedwait(_INIT_SIGNALS, remaining)
        else:
            info = signal.sigwaitinfo(_INIT_SIGNALS)
        if info is None:
            continue
        if info.si_signo == _WORKER_SIGNAL and worker is not None:
            try:
                if os.waitpid(worker, os.WNOHANG | WAIT_ALL)[0]:
                    worker = None       # (its pid may be another's next)
            except ChildProcessError:
                worker = None
        elif info.si_signo in _FORWARDED_SIGNALS and raw is None:
            try:
                os.kill(forward_to, info.si_signo)
            except OSError:
                pass
    if raw is None:
        return _SETUP_FAILED, ("setup_failed", 0, 0.0, user, system, max_rss * 1024)
    return _wait_status(raw), (_end_of_run(raw, command_usage, limits, timed_out),
                               os.WTERMSIG(raw) if os.WIFSIGNALED(raw) else 0,
                               time.monotonic() - started, user, system, max_rss * 1024)


def _clone_flags(flags, cgroup):
    value = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS
    if cgroup is None:
        value |= CLONE_NEWCGROUP
    if not flags & FAllowNet:
        value |= CLONE_NEWNET
    return value


# The parent of the last clone() as /proc shows it (init checks it after
# setting its parent-death signal: a parent that died before then would
# leave it running), or None when /proc cannot tell.
_clone_parent = None


def _procfs_pid():
    try:
        return int(os.readlink("/proc/self"))
    except (OSError, ValueError):
        return None


def _procfs_ppid():
    # (os.read, not open(): read per spare, two or three times, and a
    # buffered file object costs more than the read itself)
    try:
        fd = os.open("/proc/self/stat", os.O_RDONLY | os.O_CLOEXEC)
        try:
            return int(os.read(fd, 4096).rsplit(b")", 1)[1].split()[1])
        finally:
            os.close(fd)
    except (OSError, ValueError, IndexError):
        return None


def _check_parent_alive():
    """After PR_SET_PDEATHSIG: exit if the parent died before it took
    effect (init is in a new PID namespace, where getppid() says 0, so its
    parent is compared as /proc shows it, as bubblewrap compares getppid())."""
    if _clone_parent is not None and _procfs_ppid() not in (_clone_parent, None):
        os._exit(_SETUP_FAILED)


def _clone(flags, exit_signal=signal.SIGCHLD):
    """clone() as fork() does it, with the init signals blocked across it:
    the child must not run this process's Python signal handlers before it
    has reset them, and what arrives meanwhile stays pending for it.  The
    child's `exit_signal` is SIGCHLD where this process has other threads
    (the child of _clone_from_fork inherits it)."""
    global _clone_parent
    _clone_parent = _procfs_ppid() if flags & CLONE_PARENT else _procfs_pid()
    saved = signal.pthread_sigmask(signal.SIG_BLOCK, _INIT_SIGNALS)
    # (CLONE_PARENT: only the single-threaded children of _launch_joined)
    if threading.active_count() > 1 and not flags & CLONE_PARENT:
        pid = _clone_from_fork(flags)
    else:
        pid = _libc_with_gil.syscall(SYS_clone, flags | exit_signal, 0, 0, 0, 0)
    if pid != 0:
        signal.pthread_sigmask(signal.SIG_SETMASK, saved)
    return pid


def _clone_from_fork(flags):
    """_clone(flags) for a process with other threads (a caller that clones
    itself: bubblewrap's personality, check()): a child made by os.fork(),
    which the interpreter makes safe with threads, clones the new process
    as this one's child (CLONE_PARENT) and exits.  A raw clone() here would
    copy the threads' claims on the interpreter: with another thread
    asking for the GIL at that instant, the child's first check of its
    eval loop hands the GIL over and waits, forever, for a thread that
    does not exist in it.  Returns the pid, 0 in the new process, or -1
    with errno set."""
    # A pipe or fork that fails (EMFILE; EAGAIN at RLIMIT_NPROC) fails as
    # clone() would: -1, so that _clone restores the signal mask and the
    # caller says what failed.
    pipe = ()
    try:
        pipe = result_r, result_w = os.pipe2(os.O_CLOEXEC)
        middle = os.fork()
    except OSError as err:
        _close_all(pipe)
        ctypes.set_errno(err.errno)
        return -1
    if middle == 0:
        pid = _libc_with_gil.syscall(SYS_clone, flags | CLONE_PARENT | signal.SIGCHLD, 0, 0, 0, 0)
        if pid == 0:
            os.close(result_r)
            os.close(result_w)
            return 0
        try:
            os.write(result_w, struct.pack("ii", pid, ctypes.get_errno()))
        finally:
            os._exit(0)
    os.close(result_w)
    try:
        result = os.read(result_r, 8)
    finally:
        os.close(result_r)
        os.waitpid(middle, 0)
    pid, err = struct.unpack("ii", result) if len(result) == 8 else (-1, errno.ECHILD)
    if pid < 0:
        ctypes.set_errno(err)
    return pid


def _launch(cfg, chan, stdio, extras, cgroup, trees=()):
    """Clone the container's init from this (single-threaded) process;
    returns its pid."""
    if SYS_clone is None:
        _fail("clone: unsupported architecture %s" % HOST_ARCH, errno.ENOSYS)
    bwrap = cfg["bwrap"]
    if bwrap is not None and (bwrap["userns_fd"] is not None or bwrap["pidns_fd"] is not None):
        return _launch_joined(cfg, chan, stdio, extras)
    outside = bwrap is None and _maps_from_outside(cfg["host_uid"], cfg["host_gid"])
    if bwrap is not None:
        pid = _clone(bwrap["clone"])
    else:
        pid = _clone_mapped(_clone_flags(cfg["flags"], cgroup), _shell_key(cfg, cgroup))
    if pid == 0:
        try:
            _container_init(cfg, chan, stdio, extras, cgroup, trees, outside)
        finally:
            os._exit(_SETUP_FAILED)
    if pid < 0:
        err = ctypes.get_errno()
        hint = ""
        if err in (errno.EPERM, errno.ENOSPC, errno.EINVAL, errno.EUSERS):
            hint = " (%s; %s)" % (_userns_diagnosis(err)[0], _CHECK_HINT)
        _fail("clone: creating namespaces%s" % hint, err)
    return pid


def _launch_joined(cfg, chan, stdio, extras):
    """--userns/--pidns: a short-lived child joins those namespaces (which
    would change this process for good) and clones the init as this
    process's child (CLONE_PARENT); returns the init's pid.  A new PID
    namespace under a joined one takes one more step: the kernel makes one
    only under the cloner's active PID namespace, which setns() leaves as
    it was, so a second child, made in the joined namespace (this
    process's child too), clones the init.  Pids there are not this
    process's: the init tells its own by its credentials (SO_PASSCRED: the
    kernel gives its pid as the receiver sees it)."""
    bwrap = cfg["bwrap"]
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    middle = _clone(0)
    if middle == 0:
        ours.close()
        _join_and_clone(cfg, chan, stdio, extras, theirs.detach())
    theirs.close()
    init = error = None
    second = []
    try:
        if middle < 0:
            _fail("clone: creating namespaces", ctypes.get_errno())
        while True:     # until the middle, the second child and the init have closed it
            data, ancillary, _, _ = ours.recvmsg(4096, socket.CMSG_SPACE(12))
            if not data:
                break
            message = marshal.loads(data)
            if message[0] == "init":
                for level, kind, value in ancillary:
                    if (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS):
                        init = struct.unpack("i", value[:4])[0]
            elif message[0] == "second":
                second.append(message[1])
            elif error is None:
                error = message
    finally:
        ours.close()
        for pid in [middle] + second:
            if pid > 0:
                os.waitpid(pid, 0)
    if error is not None:
        raise SandboxError(error[1], error[2])
    if init is None:
        raise SandboxError("clone: creating namespaces", errno.ECHILD)
    return init


def _join_and_clone(cfg, chan, stdio, extras, report):
    """The middle child of _launch_joined; never returns."""
    bwrap = cfg["bwrap"]
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        # Not dumpable, and so neither are the second child and the init,
        # from their birth in the joined PID namespace: a process there with
        # capabilities in the joined user namespace could otherwise open
        # their /proc/PID/root, the host's file system, and their fds (the
        # caller's), before they can say otherwise.  (bubblewrap's
        # intermediate process is exposed so.)
        _prctl(PR_SET_DUMPABLE, 0, what="not dumpable")
        if bwrap["userns_fd"] is not None and _libc.setns(bwrap["userns_fd"], CLONE_NEWUSER) != 0:
            err = ctypes.get_errno()
            if err == errno.EINVAL:
                _fail("Joining the specified user namespace failed, it might not be "
                      "a descendant of the current user namespace.")
            _fail("Joining specified user namespace failed", err)
        flags = bwrap["clone"] | CLONE_PARENT
        if bwrap["pidns_fd"] is not None:
            if _libc.setns(bwrap["pidns_fd"], CLONE_NEWPID) != 0:
                _fail("Setting pidns failed", ctypes.get_errno())
            if flags & CLONE_NEWPID:
                second = _clone(CLONE_PARENT)     # active in the joined namespace
                if second < 0:
                    _fail("fork", ctypes.get_errno())
                if second > 0:
                    os.write(report, marshal.dumps(("second", second)))
                    os._exit(0)
        pid = _clone(flags)
        if pid == 0:
            try:
                os.write(report, marshal.dumps(("init",)))     # with its credentials
                os.close(report)
                _container_init(cfg, chan, stdio, extras, None)
            finally:
                os._exit(_SETUP_FAILED)
        if pid < 0:
            _fail("Creating new namespace failed", ctypes.get_errno())
        message = None
    except SandboxError as err:
        message = ("error", str(err), err.errno or 0)
    except BaseException as err:
        message = ("error", "clone: %s" % (err,), getattr(err, "errno", 0) or 0)
    try:
        if message is not None:
            os.write(report, marshal.dumps(message))
    finally:
        os._exit(0)


# ---------------------------------------------------------------------------
# The helper: one small process per caller, started on first use, that
# clones every container of that caller.
#
# Cloning from the caller would copy its page tables and pin a copy-on-write
# image of it for the container's life, and is unsafe when the caller has
# threads.  The helper is a fresh interpreter (or, where this interpreter
# cannot be executed again, a fork made once) that is single-threaded, so
# clone() is safe in it.  Requests arrive over a SOCK_SEQPACKET socket with
# the container's fds attached (SCM_RIGHTS); the helper answers on each
# container's own channel: ("pid", n) after clone, ("exit", status) after
# reaping, ("error", message, errno) if clone failed.  The caller may send
# ("kill", signal) on the channel; closing it kills the container.
# ---------------------------------------------------------------------------

_MAX_FDS = 250
_INLINE_LIMIT = 32768
_BPF_MAXINSNS = 4096        # the kernel's limit on a seccomp program (8 bytes each)
# Spares the helper keeps ready.  With two, a request takes one while the
# other stays ready, and the one taken is replaced once its container has
# ended (or has run _SPARE_DEFER_SECONDS): making a spare (a clone with new
# namespaces, a worker building default_ops()) would otherwise compete for
# the CPU and the kernel's mount and namespace locks with the container it
# was taken for, which is still setting up or starting its command.  When
# none is left (requests back to back, from threads) the next is made at
# once.  Memory: each idle spare is an idle init and its worker (holding
# the root built ahead), about 2.8 MiB private (5.2 MiB Pss) per helper.
_SPARES = 2
_SPARE_DEFER_SECONDS = 0.02


def _ready_fds(reading, writing=(), timeout=None):
    """select() for fds of any number: those of `reading` that can be read
    (or are at end of file) and those of `writing` that can be written,
    waiting at most `timeout` seconds (None: until one can)."""
    poller = select.poll()
    for fd in reading:
        poller.register(fd, select.POLLIN)
    for fd in writing:
        poller.register(fd, select.POLLOUT)
    events = poller.poll(None if timeout is None else max(int(timeout * 1000 + 0.999), 0))
    return ([fd for fd, _ in events if fd in reading],
            [fd for fd, _ in events if fd in writing])


def _send_fds(sock, payload, fds):
    fds = [fd for fd in fds if fd is not None]
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("%di" % len(fds), *fds))]
    sock.sendmsg([payload], ancillary if fds else [])


def _recv_fds(sock, size=65536):
    payload, ancillary, flags, _ = sock.recvmsg(size, socket.CMSG_SPACE(_MAX_FDS * 4),
                                                socket.MSG_CMSG_CLOEXEC)
    fds = []
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.extend(struct.unpack("%di" % (len(data) // 4), data[:len(data) - len(data) % 4]))
    if flags & (socket.MSG_CTRUNC | socket.MSG_TRUNC):
        for fd in fds:
            os.close(fd)
        raise SandboxError("helper: message truncated", errno.EMSGSIZE)
    return payload, fds


# A request is a header (the shell key, so the helper can pick a spare
# without decoding the rest) and marshal'd (cfg, slots), inline or, when
# large (place data), in a memfd sent as the first fd.
_REQUEST_HEADER = struct.Struct("<c9q")   # kind, the shell key, quiet


def _encode_request(cfg, slots, cgroup):
    payload = marshal.dumps((cfg, slots))
    inline = len(payload) <= _INLINE_LIMIT
    header = _REQUEST_HEADER.pack(b"I" if inline else b"M", *_shell_key(cfg, cgroup),
                                  int(cfg["quiet"]))
    if inline:
        return header + payload, None
    return header, _memfd_holding(payload, "sandbox-request")


def _memfd_holding(data, name="sandbox-data"):
    """A memfd (close-on-exec) holding data, for messages too large to
    travel inline over a SOCK_SEQPACKET socket (the user's seccomp
    programs, large requests and spawn messages)."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    _write_all(fd, data)
    return fd


def _request_key(payload):
    """(shell key, quiet) from a request's header."""
    fields = _REQUEST_HEADER.unpack_from(payload)
    return fields[1:-1], fields[-1]


def _decode_request(payload, fds):
    """(cfg, fds by slot name, memfd or None) from a request; closes nothing."""
    fds, memfd = list(fds), None
    body = payload[_REQUEST_HEADER.size:]
    if payload[:1] == b"M":
        memfd = fds.pop(0)
        body = os.pread(memfd, os.fstat(memfd).st_size, 0)
    cfg, slots = marshal.loads(body)
    taken = {}
    for name, present in slots:
        if isinstance(present, int) and not isinstance(present, bool):
            taken[name] = [fds.pop(0) for _ in range(present)]
        else:
            taken[name] = fds.pop(0) if present else None
    return cfg, taken, memfd


def _close_all(fds):
    for fd in fds:
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass


class _HelperServer:
    """The helper's loop (in the helper process)."""

    def __init__(self, control_fd):
        self.control = socket.socket(fileno=control_fd)
        self.poller = select.poll()
        self.running = {}     # chan fd -> init pid, None once killed
        self.by_pid = {}      # init pid -> chan fd
        self.spares = []      # (pid, socket, shell key) of the shells kept ready, oldest first
        self.starting = {}    # chan fd -> when its container, set up from a spare, no longer
                              # holds back the next spare (or until its init exits)
        self.spare_made_at = 0.0
        self.making = None    # [socket, stale] of the spare the template is cloning
        self.unknown = set()  # pids reaped meanwhile that were none of ours (yet)
        self.waiting = []     # a request that waits for that spare
        self.template = None  # (pid, socket) of the process that clones spares
        self.setting_up = {}  # fd -> socket of spares given a request, until set up
        self.spares_work = True
        self.retired = False
        self.build_ahead = True   # whether spares build default_ops() ahead
        self.spare_key = (_proc_int("/proc/sys/kernel/overflowuid", 65534),
                          _proc_int("/proc/sys/kernel/overflowgid", 65534))
        self.spare_key += _default_host_ids() + (0, 0, _DEFAULT_SECCOMP, 0)
        self.usernses = {}    # (uid map, gid map) -> fd, for idmapped binds
        self.spare_filter = _compiled_filter(_DEFAULT_SECCOMP, HOST_ARCH, None)

    def serve(self):
        gc.disable()
        gc.freeze()
        for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU):
            signal.signal(sig, signal.SIG_IGN)
        _prctl(PR_SET_CHILD_SUBREAPER, 1, what="helper: subreaper")
        self.wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.poller.register(self.control, select.POLLIN)
        self.poller.register(self.wake_r, select.POLLIN)
        # A spare's view of the host's mounts is a copy made when it was
        # cloned; mountinfo becomes readable with POLLPRI when the mount table
        # changes, and then the spare is replaced before any later request.
        self.mounts = os.open("/proc/self/mountinfo", os.O_RDONLY | os.O_CLOEXEC)
        self.poller.register(self.mounts, select.POLLPRI)
        self.start_template()
        self.make_spare()
        _send_fds(self.control, b"ready", [])
        while True:
            events = sorted(self.poller.poll(self.refill_timeout()),
                            key=lambda event: event[0] != self.mounts)
            for fd, _ in events:
                try:
                    if fd == self.mounts:
                        self.replace_spare()
                    elif fd == self.control.fileno():
                        self.on_request()
                    elif fd == self.wake_r:
                        self.on_children()
                    elif fd in self.setting_up:
                        self.on_set_up(fd)
                    elif self.template is not None and fd == self.template[1].fileno():
                        self.on_spare_made()
                    elif self.running.get(fd) is not None:
                        self.on_channel(fd)
                except SandboxError:
                    pass       # a bad request: its sender hears of it or sees EOF
            self.refill()
            if self.retired and not self.by_pid:
                os._exit(0)

    def start_template(self):
        """Fork the template: an idle copy of this process that clones the
        spares.  Spares share memory with it, and it stays still, so a
        container's init keeps few private pages however busy the helper is."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            try:
                _close_fds_except([theirs.fileno()])
                _template_main(theirs.fileno(), self.spare_key, self.spare_filter)
            finally:
                os._exit(1)
        theirs.close()
        self.template = (pid, ours)

    def refill_timeout(self):
        """How long the loop may wait before refill() may make a spare
        (milliseconds for poll; None: until something happens)."""
        if (not self.spares_work or self.setting_up or self.making is not None
                or len(self.spares) >= _SPARES):
            return None
        if not self.spares:
            return 0
        deadline = max([self.spare_made_at + _SPARE_DEFER_SECONDS] + list(self.starting.values()))
        return max(0, int((deadline - time.monotonic()) * 1000 + 0.999))

    def refill(self):
        """Make the next spare when one is missing: at once when none is
        ready, else once the containers lately set up from one have ended
        or run a while, and the spare made last has had time to build."""
        if (not self.spares_work or self.setting_up or self.making is not None
                or len(self.spares) >= _SPARES):
            return
        now = time.monotonic()
        for chan, until in list(self.starting.items()):
            if until <= now:
                del self.starting[chan]
        if self.spares and (self.starting or now < self.spare_made_at + _SPARE_DEFER_SECONDS):
            return
        self.make_spare()

    def make_spare(self):
        """Ask the template for a spare; its pid comes later (on_spare_made):
        the helper goes on serving requests and exits while it clones."""
        if not self.spares_work or self.making is not None or len(self.spares) >= _SPARES:
            return
        self.spare_made_at = time.monotonic()
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            _send_fds(self.template[1], b"spare+root" if self.build_ahead else b"spare",
                      [child_end.fileno()])
        except OSError:
            parent_end.close()
            self.spares_work = False
            return
        finally:
            child_end.close()
        self.making = [parent_end, False]
        self.poller.register(self.template[1], select.POLLIN)

    def flush_waiting(self):
        """The request that waited for the spare being cloned: to that spare
        if it came, else cloned for itself."""
        waiting, self.waiting = self.waiting, []
        for payload, fds, key, quiet, chan in waiting:
            spare = next((spare for spare in self.spares if spare[2] == key), None)
            try:
                self.dispatch(payload, fds, key, quiet, chan, spare)
            except SandboxError:
                pass

    def on_spare_made(self):
        """The template's answer: the new spare's pid (-1: clone failed)."""
        self.poller.unregister(self.template[1])
        sock, stale = self.making
        self.making = None
        try:
            pid = struct.unpack("q", self.template[1].recv(8))[0]
        except (OSError, struct.error):
            pid = -1
        # A spare that died before its pid came has been reaped: never
        # signal that pid (it may be another process's by now).
        died, self.unknown = pid in self.unknown, set()
        if pid < 0 or died:
            # (one that dies unused will not work next time either)
            sock.close()
            self.spares_work = False
        elif stale:         # cloned with a mount table older than the host's
            sock.close()
            os.kill(pid, signal.SIGKILL)
        else:
            self.spares.append((pid, sock, self.spare_key))
        self.flush_waiting()

    def forget_template(self):
        if self.making is not None:
            self.poller.unregister(self.template[1])
            self.making[0].close()
            self.making = None
        self.template[1].close()
        self.template = None
        self.flush_waiting()

    def replace_spare(self):
        """The host's mount table changed: every spare's copy of it is old,
        and so may be that of the one being cloned."""
        spares, self.spares = self.spares, []
        for pid, sock, _ in spares:
            sock.close()
            os.kill(pid, signal.SIGKILL)
        if self.making is not None:
            self.making[1] = True
        self.make_spare()

    def on_request(self):
        payload, fds = _recv_fds(self.control)
        if not payload:      # the caller is gone: so are its containers
            for pid in (list(self.by_pid) + ([self.template[0]] if self.template else [])
                        + [spare[0] for spare in self.spares]):
                os.kill(pid, signal.SIGKILL)    # (each unreaped: the pid is still its own)
            os._exit(0)
        if payload == b"R":
            self.retire()
            return
        if payload[:1] == b"U":
            self.on_userns(payload, fds)
            return
        try:
            key, quiet = _request_key(payload)
            chan = fds[1 if payload[:1] == b"M" else 0]
        except (struct.error, IndexError):
            _close_all(fds)
            raise SandboxError("helper: malformed request", errno.EINVAL)
        spare = next((spare for spare in self.spares if spare[2] == key), None)
        if spare is None and self.making is not None and not self.waiting and \
                key == self.spare_key:
            # The spare being cloned is ready sooner than a clone made now.
            self.waiting.append((payload, fds, key, quiet, chan))
            return
        self.dispatch(payload, fds, key, quiet, chan, spare)

    def dispatch(self, payload, fds, key, quiet, chan, spare):
        """Hand the request to `spare` (None: clone its container now)."""
        try:
            pid = None
            if spare is not None:
                self.spares.remove(spare)
                pid, sock, _ = spare
                try:
                    _send_fds(sock, payload, fds)
                    # Its worker says when it is set up (on_set_up): no
                    # spare is made before, not to contend with it for the
                    # kernel's mount and namespace locks.
                    self.setting_up[sock.fileno()] = sock
                    self.poller.register(sock, select.POLLIN)
                except OSError:
                    os.kill(pid, signal.SIGKILL)
                    sock.close()
                    pid = None
            if pid is None:
                try:
                    cfg, taken, _ = _decode_request(payload, fds)
                except Exception:
                    raise SandboxError("helper: malformed request", errno.EINVAL)
                pid = _launch(cfg, chan, (taken["stdin"], taken["stdout"], taken["stderr"]),
                              taken["extras"], taken["cgroup"] or None, taken.get("trees", ()))
        except SandboxError as err:
            _send(chan, "error", str(err), err.errno or 0)
            _send(chan, "exit", _SETUP_FAILED)    # no process: nothing else will come
            _close_all(fds)
            return
        if not quiet:
            _send(chan, "pid", pid)
        _close_all(fd for fd in fds if fd != chan)
        self.running[chan], self.by_pid[pid] = pid, chan
        self.poller.register(chan, select.POLLIN)
        if spare is not None and pid == spare[0]:
            self.starting[chan] = time.monotonic() + _SPARE_DEFER_SECONDS

    def on_userns(self, payload, fds):
        """A caller's idmapped binds need a user namespace with these maps
        (written from outside, which the caller cannot do from a process
        that may have threads): its fd, made once, goes back on fds[0]."""
        try:
            answer = socket.socket(fileno=fds.pop(0))
        except IndexError:
            raise SandboxError("helper: malformed request", errno.EINVAL)
        _close_all(fds)
        try:
            maps = marshal.loads(payload[1:])
            if maps not in self.usernses:
                self.usernses[maps] = _make_userns(*maps)
            _send_fds(answer, b"ok", [self.usernses[maps]])
        except SandboxError as err:
            answer.send(marshal.dumps((str(err), err.errno or 0)))
        except (OSError, ValueError, TypeError, EOFError):
            pass
        finally:
            answer.close()      # (_socket's sockets have no `with`)

    def retire(self):
        """The caller has moved on to another helper: make no more
        containers, and exit once those running have ended."""
        self.retired, self.spares_work = True, False
        if self.template is not None:
            os.kill(self.template[0], signal.SIGKILL)
            self.forget_template()
        for pid, sock, _ in self.spares:
            os.kill(pid, signal.SIGKILL)
            sock.close()
        self.spares = []

    def on_set_up(self, fd):
        """A spare's worker is done; it said what its request wanted."""
        self.poller.unregister(fd)
        sock = self.setting_up.pop(fd)
        try:
            wanted = sock.recv(16)
        except OSError:
            wanted = b""
        sock.close()
        if wanted:
            self.build_ahead = wanted == b"default"

    def on_children(self):
        try:
            os.read(self.wake_r, 4096)
        except BlockingIOError:
            pass
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.template is not None and pid == self.template[0]:
                self.forget_template()
                self.spares_work = False
            for spare in self.spares:
                if pid == spare[0]:
                    # A shell that dies unused will not work next time either:
                    # clone per request from now on (and report why there).
                    self.spares.remove(spare)
                    spare[1].close()
                    self.spares_work = False
                    break
            chan = self.by_pid.pop(pid, None)
            if chan is None and self.making is not None:
                self.unknown.add(pid)
            if chan is not None:
                self.starting.pop(chan, None)
                _send(chan, "exit", _wait_status(status))
                if self.running.pop(chan) is not None:
                    self.poller.unregister(chan)
                os.close(chan)

    def on_channel(self, fd):
        try:
            message = marshal.loads(os.read(fd, 4096))
        except (OSError, EOFError, ValueError, TypeError):
            message = ("kill", signal.SIGKILL)    # the caller let go
        if message[:1] == ("kill",) and isinstance(message[1], int):
            try:
                os.kill(self.running[fd], message[1])
            except OSError:
                pass
        if message == ("kill", signal.SIGKILL):
            self.poller.unregister(fd)   # nothing more to read; the exit follows
            self.running[fd] = None


def _template_main(sock_fd, key, filter_program):
    """The template's loop: for each socket received, clone a spare with
    CLONE_PARENT (so the helper is its parent) and answer with its pid.
    Each clone shares all of the template's pages with the new spare, and
    each page the template writes afterwards is copied again: what the loop
    needs is made once before it (the clone's arguments, the maps' lines,
    functions bound to locals), so that it touches few objects, where
    _clone_mapped and _recv_fds (an enum flag's arithmetic, threading,
    /proc/self/stat, formatting) wrote over three times as many pages.
    The ids are mapped as _clone_mapped maps them."""
    global _clone_parent
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, what="template: parent-death signal")
    # Blocked for good, not around each clone (as _clone does): a spare is
    # born with them blocked, and the template has no use for them (it dies
    # with the helper, by the parent-death signal or its socket's EOF).
    signal.pthread_sigmask(signal.SIG_BLOCK, _INIT_SIGNALS)
    _clone_parent = _procfs_ppid()      # the helper, each spare's parent
    fprog = _fprog(filter_program)
    sock = socket.socket(fileno=sock_fd)
    outside = _maps_from_outside(key[2], key[3])
    if outside and os.getgroups():
        os.setgroups([])      # (as _clone_mapped: they would stay the spare's)
    maps = ((b"uid_map", b"%d %d 1\n" % (key[0], key[2])), (b"setgroups", b"deny\n"),
            (b"gid_map", b"%d %d 1\n" % (key[1], key[3])))
    recvmsg = sock.recvmsg
    # Room for one fd (two, with the alignment's padding); what does not fit
    # is MSG_CTRUNC, closed by the kernel.
    ancillary_size, recv_flags = socket.CMSG_SPACE(4), int(socket.MSG_CMSG_CLOEXEC)
    truncated = int(socket.MSG_CTRUNC | socket.MSG_TRUNC)
    sol_socket, scm_rights = int(socket.SOL_SOCKET), int(socket.SCM_RIGHTS)
    syscall, sys_clone = _libc_with_gil.syscall, SYS_clone
    clone_flags = _clone_flags(0, None) | CLONE_PARENT | signal.SIGCHLD
    pack_pid, unpack_fd = struct.Struct("q").pack, struct.Struct("i").unpack
    pipe2, close, read, write, open_ = os.pipe2, os.close, os.read, os.write, os.open
    o_cloexec, o_write = os.O_CLOEXEC, os.O_WRONLY | os.O_CLOEXEC
    o_directory = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
    while True:
        payload, ancillary, flags, _ = recvmsg(64, ancillary_size, recv_flags)
        if not payload:
            os._exit(0)
        if flags & truncated or not ancillary:
            os._exit(1)       # (the helper sends one socket; it sees EOF)
        level, kind, data = ancillary[0]
        if level != sol_socket or kind != scm_rights or len(data) != 4:
            os._exit(1)
        spare_sock, = unpack_fd(data)
        if outside:
            release_r, release_w = pipe2(o_cloexec)
        pid = syscall(sys_clone, clone_flags, 0, 0, 0, 0)
        if pid == 0:
            try:
                if outside:       # wait for the maps (as _clone_mapped's child)
                    close(release_w)
                    go = read(release_r, 1)
                    close(release_r)
                    if go != b"g":
                        os._exit(_SETUP_FAILED)
                _spare_main(key, spare_sock, fprog, payload == b"spare+root", outside)
            finally:
                os._exit(_SETUP_FAILED)
        if outside:
            close(release_r)
            if pid > 0:
                try:
                    proc = open_(b"/proc/%d" % pid, o_directory)
                    try:
                        for name, line in maps:
                            fd = open_(name, o_write, dir_fd=proc)
                            try:
                                write(fd, line)
                            finally:
                                close(fd)
                    finally:
                        close(proc)
                    write(release_w, b"g")
                except OSError:
                    os.kill(pid, signal.SIGKILL)
                    pid = -1
            close(release_w)
        close(spare_sock)
        write(sock_fd, pack_pid(pid if pid > 0 else -1))


def _helper_main(control_fd):
    """Entry point of the helper process; never returns."""
    _HelperServer(control_fd).serve()


# The helper runs the code the caller imported (SPEC 3.9), never this file
# read again by path: a vendored copy may sit where a sandbox can write, and
# what it appended would run on the host as the caller.  The module's code
# object, kept at import (_OWN_CODE), is marshal'd into a memfd that only
# the new interpreter gets; nothing on sys.path (a module that shadows the
# standard library, another "sandbox") is used and no bytecode is written.
# Nothing is compiled in the helper: the compiler's garbage would stay in
# its heap among the objects containers' inits touch (each page an init
# touches becomes its own: about 0.4 MiB more per idle sandbox).
_HELPER_BOOT = """\
import marshal, os, signal, sys, types
signal.signal(signal.SIGCHLD, signal.SIG_DFL)   # the caller's SIG_IGN would reap it
code_fd, control_fd = int(sys.argv[1]), int(sys.argv[2])
code = os.pread(code_fd, os.fstat(code_fd).st_size, 0)
os.close(code_fd)
module = types.ModuleType("sandbox_helper")
module.__file__ = sys.argv[3] or None     # where the caller imported it from, for tracebacks
sys.modules[module.__name__] = module
exec(marshal.loads(code), module.__dict__)
del code
module._OWN_CODE = None       # a helper starts no helper
module._helper_main(control_fd)
"""


def _caller_identity():
    """What the helper must share with its caller to act for it: the
    effective ids, and the mount, network and user namespaces (a caller
    may unshare or setns after the helper started)."""
    namespaces = []
    for name in ("mnt", "net", "user"):
        # A thread may unshare its own mount and network namespaces.
        for directory in ("/proc/thread-self/ns/", "/proc/self/ns/"):
            try:
                namespaces.append(os.stat(directory + name).st_ino)
                break
            except OSError:
                pass
        else:
            namespaces.append(None)
    return (os.geteuid(), os.getegid(), tuple(namespaces))


class _Helper:
    """The caller's end of the helper process.  There is one per caller
    identity; past _MAX_HELPERS the least recently used one is retired: it
    makes no more containers and exits when those it runs have ended."""

    _lock = threading.Lock()
    _by_identity = {}      # identity -> helper, the most recently used last
    _retired = []          # retired helpers, until they exit
    _MAX_HELPERS = 4

    def __init__(self):
        self.pid_owner = os.getpid()
        for start in (self._exec, self._fork):
            parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                self.mode = start(child_end)
            finally:
                child_end.close()      # a helper that dies is seen at once
            if self.mode and self._ready(parent_end):
                self.sock = parent_end
                return
            parent_end.close()
        raise SandboxError("helper: could not start", errno.ECHILD)

    def _exec(self, child_end):
        """Start a fresh interpreter as the helper, handing it this module's
        code in a memfd; "exec", or None when this interpreter cannot be run
        again (or the code was not kept)."""
        executable = sys.executable
        if _OWN_CODE is None or not executable or not os.access(executable, os.X_OK):
            return None
        path = globals().get("__file__")
        try:
            code_fd = _memfd_holding(marshal.dumps(_OWN_CODE), "sandbox-helper-code")
        except (OSError, ValueError):
            return None
        try:
            self.process = subprocess.Popen(
                [executable, "-I", "-S", "-c", _HELPER_BOOT, str(code_fd),
                 str(child_end.fileno()), os.path.abspath(path) if path else ""],
                pass_fds=[child_end.fileno(), code_fd], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, cwd="/")
        except OSError:
            return None
        finally:
            os.close(code_fd)
        return "exec"

    def _fork(self, child_end):
        """Fork this process as the helper; "fork"."""
        pid = os.fork()
        if pid == 0:
            try:
                fd = child_end.fileno()
                devnull = os.open(os.devnull, os.O_RDWR)
                os.dup2(devnull, 0)
                os.dup2(devnull, 1)
                _close_fds_except([fd])
                for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1,
                            signal.SIGUSR2, signal.SIGALRM):
                    signal.signal(sig, signal.SIG_DFL)
                _helper_main(fd)
            finally:
                os._exit(1)
        self.process = pid
        return "fork"

    def _ready(self, sock):
        ready, _ = _ready_fds([sock.fileno()], timeout=30)
        try:
            answer = sock.recv(16) if ready else b""
        except OSError:
            answer = b""
        if answer == b"ready":
            return True
        try:
            os.kill(self.pid, signal.SIGKILL)
        except OSError:
            pass
        self._reap()
        return False

    @property
    def pid(self):
        """The helper's pid (exec mode keeps the Popen, which reaps it)."""
        return self.process.pid if self.mode == "exec" else self.process

    def _reap(self):
        try:
            self.process.wait() if self.mode == "exec" else os.waitpid(self.process, 0)
        except OSError:
            pass

    def alive(self):
        """Whether the helper runs; one that has exited is reaped."""
        if self.sock.fileno() < 0:
            return False
        if not _ready_fds([self.sock.fileno()], timeout=0)[0]:
            return True        # (a live helper never writes to this socket)
        self._reap()
        self.sock.close()
        return False

    def _retire(self):
        try:
            _send_fds(self.sock, b"R", [])
        except OSError:
            pass
        _Helper._retired.append(self)

    @classmethod
    def submit(cls, payload, fds):
        """Send a request to this caller's helper, starting it if need be.
        Finding the helper and sending are one step: a helper retired by
        another thread in between would exit without reading the request."""
        identity = _caller_identity()
        with cls._lock:
            cls._retired = [helper for helper in cls._retired if helper.alive()]
            helper = cls._by_identity.pop(identity, None)
            if helper is None or helper.pid_owner != os.getpid() or not helper.alive():
                helper = cls()
            cls._by_identity[identity] = helper
            while len(cls._by_identity) > cls._MAX_HELPERS:
                cls._by_identity.pop(next(iter(cls._by_identity)))._retire()
            _send_fds(helper.sock, payload, fds)

    @classmethod
    def userns(cls, maps):
        """The fd of a user namespace with maps (uid_map line, gid_map
        line), made by the helper (see _HelperServer.on_userns)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            try:
                cls.submit(b"U" + marshal.dumps(maps), [theirs.fileno()])
            finally:
                theirs.close()
            if not _ready_fds([ours.fileno()], timeout=30)[0]:
                raise OSError(errno.ETIMEDOUT, "no answer")
            payload, fds = _recv_fds(ours)
        except OSError as err:
            raise SandboxError("idmap: asking the helper for a user namespace", err.errno)
        finally:
            ours.close()        # (_socket's sockets have no `with`)
        if payload == b"ok" and len(fds) == 1:
            return fds[0]
        _close_all(fds)
        message, err = marshal.loads(payload) if payload else ("idmap: the helper failed", errno.ECHILD)
        raise SandboxError(message, err)

    @classmethod
    def current(cls):
        """The helper this caller would use now, if it has started one."""
        return cls._by_identity.get(_caller_identity())

    @classmethod
    def _forget_after_fork(cls):
        """In a forked child: the parent's helpers are not ours; holding
        their sockets would keep them alive after the parent exits."""
        cls._lock = threading.Lock()
        for helper in list(cls._by_identity.values()) + cls._retired:
            helper.sock.close()
        cls._by_identity, cls._retired = {}, []


os.register_at_fork(after_in_child=_Helper._forget_after_fork)


# ---------------------------------------------------------------------------
# The parent side: Container (prepare, start, serve, wait).
# ---------------------------------------------------------------------------

_MAX_ID = 0xFFFFFFFE
# Container.namespaces: the names bubblewrap's --unshare-* options use.
_NAMESPACES = {"user": CLONE_NEWUSER, "pid": CLONE_NEWPID, "ipc": CLONE_NEWIPC,
               "uts": CLONE_NEWUTS, "net": CLONE_NEWNET, "cgroup": CLONE_NEWCGROUP}


def _current_umask():
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _fd_of(value, what, default=None):
    """An fd number from None (default), an int, or an object with fileno();
    None when that fd is not open (the command then has it closed)."""
    fd = default if value is None else value
    if fd is not None and not isinstance(fd, int):
        try:
            fd = fd.fileno()
        except (AttributeError, OSError, ValueError) as err:
            raise _typed_error(TypeError if isinstance(err, AttributeError) else errno.EBADF,
                               "%s: %r has no file descriptor" % (what, value),
                               getattr(err, "errno", None) or errno.EBADF)
    if isinstance(fd, bool) or not isinstance(fd, int) or fd < 0:
        if value is None:
            return None
        raise SandboxError("%s: invalid file descriptor %r" % (what, value), errno.EBADF)
    try:
        os.fstat(fd)
    except OSError:
        if value is None:
            return None
        raise SandboxError("%s: file descriptor %d is not open" % (what, fd), errno.EBADF)
    return fd


def _check_id(value, what):
    """An id (int, 0 to 2**32-2), or None (the overflow id)."""
    if value is None:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_ID:
        raise SandboxError("%s: invalid id %r" % (what, value), errno.EINVAL)
    return value


# -- identity on the host (SPEC 3.2): the host ids, and the bind sources a
# root caller opens itself.  The sandbox of a root caller holds the overflow
# ids on the host (no host privilege); its setup then cannot reach by path
# what only root may (a directory under /root), so the caller, root in the
# host's mount namespace, makes each bind's tree: a detached copy
# (open_tree) given its flags (mount_setattr, recursively) and, when
# writable, an idmapping (caller's ids on disk <-> the sandbox's host ids),
# so that the command may write there and what it creates is the caller's.
# The worker attaches each tree (move_mount).  A read-only bind whose source
# the sandbox's host ids may reach is bound by path as usual (it gives them
# nothing more): default_ops(), so a spare's root built ahead serves it.

def _default_host_ids():
    """The caller's ids, or for root the overflow ids."""
    if os.geteuid() != 0:
        return os.geteuid(), os.getegid()
    return (_proc_int("/proc/sys/kernel/overflowuid", 65534),
            _proc_int("/proc/sys/kernel/overflowgid", 65534))


def _host_ids(host_uid, host_gid):
    """host_uid/host_gid with their defaults: host_gid follows an explicit
    host_uid that is the caller's (host_uid=0 for root: today's root)."""
    default_uid, default_gid = _default_host_ids()
    uid = default_uid if host_uid is None else host_uid
    if host_gid is not None:
        gid = host_gid
    elif host_uid is not None and host_uid == os.geteuid():
        gid = os.getegid()
    elif host_uid is not None:
        gid = _proc_int("/proc/sys/kernel/overflowgid", 65534)
    else:
        gid = default_gid
    return uid, gid


def _reachable(path, uid, gid):
    """Whether a process of uid/gid (and no other group) may search every
    directory above path, resolved: then the worker binds it by path."""
    directory = os.path.dirname(os.path.realpath(path))
    while True:
        try:
            st = os.stat(directory)
        except OSError:
            return False
        shift = 6 if st.st_uid == uid else 3 if st.st_gid == gid else 0
        if not st.st_mode >> shift & 1:
            return False
        if directory == "/":
            return True
        directory = os.path.dirname(directory)


def _needs_tree(op, cfg):
    """Whether the caller opens this op's source (see above): a root
    caller's writable bind (to be idmapped), or a source that the sandbox's
    host ids cannot reach by path.  default_ops() has none."""
    return isinstance(op, Bind) and (_idmapped(op.flags) or not _reachable(
        op.source, cfg["host_uid"], cfg["host_gid"]))


def _open_bind_trees(ops, cfg, local):
    """For each Bind of ops that needs one, the tree it binds, made here
    (see above): returns ([(op index, present)], fds).  `local`: this
    process clones (and may make the idmap's user namespace itself)."""
    records, fds, userns = [], [], None
    try:
        for index, op in enumerate(ops):
            if not _needs_tree(op, cfg):
                continue
            try:
                fd = _open_tree(op.source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE,
                                op.what)
            except SandboxError as err:
                if err.errno == errno.ENOENT and op.flags & BindOptional:
                    records.append((index, False))
                    continue
                raise _at_op(_tree_error(err, op, cfg), index)
            fds.append(fd)
            records.append((index, True))
            if _idmapped(op.flags) and userns is None:
                maps = (b"%d %d 1\n" % (os.geteuid(), cfg["host_uid"]),
                        b"%d %d 1\n" % (os.getegid(), cfg["host_gid"]))
                userns = _make_userns(*maps) if local else _Helper.userns(maps)
            try:
                _set_tree_attributes(fd, op, cfg, userns)
            except SandboxError as err:
                raise _at_op(err, index)
    except BaseException:
        _close_all(fds)
        raise
    finally:
        if userns is not None:
            os.close(userns)
    return records, fds


def _idmapped(flags):
    """Whether a root caller's bind is idmapped: writable ones, but not
    device binds (the host's device nodes would become the sandbox's to
    chmod)."""
    return flags & (BindWritable | BindDevice) == BindWritable


# What the command makes through an idmapped bind is the caller's on the
# host (root's, for a root caller): a setuid or setgid bit on it would be a
# way to the caller's privilege for whoever runs the file on the host (the
# bind's own nosuid holds only inside).  Such a sandbox is refused the
# calls that set either bit; openat2, whose mode lies in a struct the
# filter cannot read, answers ENOSYS (libc falls back to openat).
_MODE_ARGUMENT = (("chmod", 1), ("fchmod", 1), ("fchmodat", 2), ("fchmodat2", 2),
                  ("creat", 1), ("open", 2), ("openat", 3), ("mknod", 1), ("mknodat", 2))


def _idmap_seccomp_rules(ops, host_uid, host_gid):
    """The seccomp rules of a sandbox with idmapped binds (none without)."""
    if not _maps_from_outside(host_uid, host_gid) or not any(
            isinstance(op, Bind) and _idmapped(op.flags) for op in ops):
        return ()
    rules = [_rule(name, _errno_action(errno.EPERM), Arg(index, CMP_MASKED_EQ, bit, bit))
             for name, index in _MODE_ARGUMENT for bit in (stat.S_ISUID, stat.S_ISGID)]
    return tuple(rules) + (_rule("openat2", _errno_action(errno.ENOSYS)),)


def _set_tree_attributes(fd, op, cfg, userns):
    attr = _bind_attributes(op.flags)
    idmap = MOUNT_ATTR_IDMAP if _idmapped(op.flags) else 0
    what = "%s: mount_setattr" % op.what
    try:
        _mount_setattr("", AT_EMPTY_PATH | AT_RECURSIVE, what, attr_set=attr | idmap,
                       propagation=MS_PRIVATE, userns_fd=userns if idmap else 0, dir_fd=fd)
        return
    except SandboxError as err:
        if not idmap or err.errno != errno.EINVAL:
            raise _tree_error(err, op, cfg)
    # Its file system cannot be idmapped: bound as it is, it is writable
    # to the sandbox only if its host uid may write there already.
    st = os.fstat(fd)
    if st.st_uid != cfg["host_uid"] and not st.st_mode & 0o002:
        raise SandboxError(
            "%s: cannot be idmapped to the sandbox's host uid %d (its file system does not "
            "support idmapped mounts), so the sandbox could not write there: set host_uid=0 "
            "(the sandbox then holds the caller's host ids), make %s writable by uid %d, or "
            "bind it read-only" % (op.what, cfg["host_uid"], _q(op.source), cfg["host_uid"]),
            errno.EINVAL)
    _mount_setattr("", AT_EMPTY_PATH | AT_RECURSIVE, what, attr_set=attr,
                   propagation=MS_PRIVATE, dir_fd=fd)


def _tree_error(err, op, cfg):
    if err.errno == errno.ENOSYS:
        return SandboxError(
            "%s: a sandbox whose host ids (%d/%d) are not the caller's needs open_tree and "
            "mount_setattr (Linux 5.12+) for its binds: set host_uid=0"
            % (op.what, cfg["host_uid"], cfg["host_gid"]), errno.ENOSYS)
    return err


_pipefs = []


def _give_pipes(fds, cfg):
    """Anonymous pipes among the fds a sandbox gets, owned by a root caller
    (mode 0600): given to the sandbox's host ids, so that the command may
    reopen them by path (/dev/stdout is /proc/self/fd/1) as it could
    before.  Named FIFOs, files and terminals keep their owner."""
    if not _pipefs:
        read_end, write_end = os.pipe()
        _pipefs.append(os.fstat(read_end).st_dev)
        _close_all((read_end, write_end))
    for fd in fds:
        if fd is None:
            continue
        st = os.fstat(fd)
        if st.st_dev == _pipefs[0] and stat.S_ISFIFO(st.st_mode) and st.st_uid == os.geteuid():
            os.fchown(fd, cfg["host_uid"], cfg["host_gid"])


_HOST_NAME_MAX = 64


def _hostname_error(name):
    """Why `name` cannot be the hostname (sethostname takes at most 64
    bytes, and it travels as UTF-8), or None."""
    if not isinstance(name, str):
        return "not a string"
    if "\0" in name:
        return "contains NUL"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "not valid UTF-8"
    if size > _HOST_NAME_MAX:
        return "longer than %d bytes" % _HOST_NAME_MAX
    return None


# execve's E2BIG: the kernel takes ARG_MAX (a quarter of the stack limit)
# of arguments and environment in all, and 32 pages per string.
_MAX_ARG_STRLEN = 131072


def _e2big_reason(args, env):
    """Why execve said E2BIG, as far as the caller's args and env tell."""
    strings = [os.fsencode(a) + b"\0" for a in args] + [
        os.fsencode(k) + b"=" + os.fsencode(v) + b"\0" for k, v in (env or {}).items()]
    total = sum(len(string) + 8 for string in strings)     # and a pointer each
    longest = max(map(len, strings), default=0)
    if longest > _MAX_ARG_STRLEN:
        return ("E2BIG: a string of %d bytes, the kernel takes at most %d per argument or"
                " variable" % (longest, _MAX_ARG_STRLEN))
    return ("E2BIG: arguments and environment take %d bytes, the kernel's ARG_MAX is %d"
            % (total, _arg_max()))


def _arg_max():
    try:
        return os.sysconf("SC_ARG_MAX")
    except (ValueError, OSError):
        return 131072


def _encode_env(env):
    if env is None:
        return {}
    try:
        items = env.items()
    except AttributeError:
        raise _typed_error(TypeError, "env: expected a mapping, not %s" % type(env).__name__)
    encoded = {}
    for key, value in items:
        try:
            key, value = os.fsencode(key), os.fsencode(value)
        except TypeError as err:
            raise _typed_error(TypeError, "env: %r=%r: %s" % (key, value, err))
        if b"\0" in key or b"\0" in value:
            raise _typed_error(ValueError, "env: invalid variable %r: embedded null byte" % (key,))
        if not key or b"=" in key:
            raise _typed_error(ValueError, "env: illegal environment variable name %r" % (key,))
        encoded[key] = value
    return encoded


class Container:
    """A container being prepared or run: set the fields, then start(),
    serve() and wait().  Not safe for concurrent use from several threads;
    separate Containers are."""

    def __init__(self, name=None, *args, ops=None):
        self.args = [name] + list(args) if name is not None else []
        self.path = None
        self.dir = "/"
        self.env = None
        self.uid = None           # None: the overflow id
        self.gid = None
        # Identity on the host (SPEC 3.2): None is the caller's ids, or for
        # a root caller the overflow ids.
        self.host_uid = None
        self.host_gid = None
        self.hostname = ""
        self.ops = Ops() if ops is None else ops
        self.seccomp = 0
        # user seccomp rules (sandbox.Rule), added before the policy's
        self.seccomp_rules = []
        self.parent_perm = 0
        self.privileged = False
        self.flags = HardeningFlags(0)
        self.cgroup = None
        # limits: what the sandbox may use, and the Report of its run
        self.limits = None
        self.report = None
        self._limits = None       # the limits in numbers, from start()
        self._cgroup = None       # its child cgroup while it exists
        self._exit_figures = None   # what init's ("exit", ...) measured
        self._setup_failed = False
        self.extra_files = []
        self._pass_fds = []       # Popen's pass_fds: kept at their own numbers
        self.stdin = self.stdout = self.stderr = None
        self.cancel = None
        self.wait_delay = None
        # Landlock (SPEC section 6): "auto", "off" or "require"; TCP ports
        # the command may connect to / bind (None: not limited).
        self.landlock = "auto"
        self.allow_connect = None
        self.allow_bind = None
        # bubblewrap's defaults (the bwrap personality; issue 11).  hardened
        # False: the namespaces in `namespaces` only (a mount namespace
        # always, a user namespace too for a non-root caller), uid/gid None
        # for the caller's own, `caps` the capability numbers the command
        # keeps (None: a root caller's own, else none), inherited fds kept,
        # no built-in seccomp filter, cloned from this process.
        self.hardened = True
        self.namespaces = ()
        self.caps = None
        self.die_with_parent = False
        self.as_pid_1 = False
        self.userns_fd = self.userns2_fd = self.pidns_fd = None
        # userns_block_fd: the new user namespace gets no id maps from the
        # sandbox; once it exists (pid and namespace ids known: the command
        # line has written --info-fd) its setup waits for a byte (or EOF)
        # on this fd, while another process writes /proc/PID/uid_map and
        # gid_map (bubblewrap's --userns-block-fd).
        self.userns_block_fd = None
        self.disable_userns = self.assert_userns_disabled = False
        # bubblewrap's options (issue 11): the command's argv[0] (the path
        # run is still args[0] or path); paths inside on which PID 1 holds a
        # read lock while the sandbox lives; an fd PID 1 keeps open as long
        # (sync_fd) and one it reads a byte from before the command starts
        # (block_fd: serve() then returns once the sandbox exists, before
        # the command runs); seccomp programs (struct sock_filter[] each) loaded
        # by the command's process just before execve, after the built-in
        # filter.
        self.argv0 = None
        self.lock_files = []
        self.sync_fd = None
        self.block_fd = None
        self.seccomp_programs = []
        self._dir_fallbacks = None  # the command line's: bubblewrap's chdir fallbacks
        self._want_namespaces = False   # the command line's --info-fd/--json-status-fd
        self._namespaces = None
        self.pid = None
        self.returncode = None
        self._chan = None
        self._local = False       # the command line clones from its own process
        self._command_line = False    # its init sets up itself (_init_sets_up)
        self._quiet = False       # run(): no "pid"/"ready" messages, one wake-up at exit
        self._reaped = False
        self._stage = "new"
        self._exec_error = None
        self._late_error = None
        self._ready = False

    def effective_seccomp(self):
        opts = _check_syscall_opts(int(self.seccomp))
        flags = int(self.flags)
        # In ints: each & or | with an IntFlag member makes a new member
        # (this runs twice per start).
        for flag, opt in ((FSyscallCompat, FlagExt), (FAllowDevel, FlagDenyDevel),
                          (FAllowUserns, FlagDenyNS), (FAllowTTY, FlagDenyTTY)):
            if not flags & int(flag):
                opts |= int(opt)
        return SyscallOpts(opts)

    def _seccomp_rules(self):
        try:
            return tuple(self.seccomp_rules or ())
        except TypeError:
            raise SandboxError("seccomp_rules: a list of sandbox.Rule, not %r"
                               % (self.seccomp_rules,), errno.EINVAL)

    def _filter_rules(self):
        """The user's rules, then those that keep Landlock's port rules
        whole and those that keep setuid files off idmapped binds."""
        return self._seccomp_rules() + _landlock_port_seccomp_rules(
            _check_ports(self.allow_connect, "allow_connect"),
            _check_ports(self.allow_bind, "allow_bind")) + _idmap_seccomp_rules(
            self.ops, *_host_ids(self.host_uid, self.host_gid))

    def __str__(self):
        return "argv: [%s], flags: %#x, seccomp: %#x" % (
            " ".join(_q(a) for a in self.args), int(self.flags), int(self.effective_seccomp()))

    def __repr__(self):
        return "<Container %s>" % self

    # -- start: check everything that can be checked before a process exists
    def start(self):
        if self._stage != "new":
            raise SandboxError("sandbox: already started", errno.EBUSY)
        if not self.ops and self.hardened:     # bubblewrap's: an empty tmpfs root
            raise SandboxError("sandbox: starting an empty container", errno.EINVAL)
        for index, op in enumerate(self.ops):
            if not isinstance(op, Op):
                raise _at_op(SandboxError("%r is not an operation" % (op,), errno.EINVAL), index)
            if not isinstance(op, Place) or op.data is not None:
                try:
                    op.validate()
                except SandboxError as err:
                    raise _at_op(err, index) if self.hardened else err
        if not isinstance(self.flags, int) or self.flags < 0 or self.flags & ~0x1F:
            raise SandboxError("flags: invalid hardening flags %r" % (self.flags,), errno.EINVAL)
        self.effective_seccomp()
        self.seccomp_rules = list(self._seccomp_rules())    # once, if an iterator
        _user_rules(self.seccomp_rules)
        _check_id(self.uid, "uid")
        _check_id(self.gid, "gid")
        if not self.hardened:
            self._check_bwrap()
        _check_id(self.host_uid, "host_uid")
        _check_id(self.host_gid, "host_gid")
        host = _host_ids(self.host_uid, self.host_gid)
        if os.geteuid() != 0 and host != (os.geteuid(), os.getegid()):
            raise SandboxError(
                "host_uid/host_gid: %d/%d asked, but the sandbox of an unprivileged caller "
                "holds the caller's own ids on the host (%d/%d): the kernel maps no other"
                % (host + (os.geteuid(), os.getegid())), errno.EPERM)
        if self.path is not None and self.path != "":
            if not isinstance(self.path, str) or not self.path.startswith("/"):
                raise SandboxError("invalid executable path %s" % _q(self.path), errno.EINVAL)
        problem = _hostname_error(self.hostname)
        if problem:
            raise SandboxError("hostname: invalid %s (%s)" % (_q(self.hostname), problem),
                               errno.EINVAL)
        if (self.hardened or self.dir is not None) and (
                not isinstance(self.dir, str) or not self.dir.startswith("/")):
            raise SandboxError("dir: %s is not absolute" % _q(self.dir), errno.EINVAL)
        if not isinstance(self.parent_perm, int) or not 0 <= self.parent_perm <= 0o7777:
            raise SandboxError("parent_perm: invalid mode %r" % (self.parent_perm,), errno.EINVAL)
        if len(self.extra_files) + len(self._pass_fds) > _MAX_FDS - 8:
            raise SandboxError("extra_files: too many (%d)" % len(self.extra_files), errno.EINVAL)
        # Landlock
        _check_landlock_mode(self.landlock)
        ports = (_check_ports(self.allow_connect, "allow_connect"),
                 _check_ports(self.allow_bind, "allow_bind"))
        if self.landlock == "off":
            _landlock_plan("off", 0, 0, *ports)      # ports without Landlock: refused
        self._check_bubblewrap_fields()
        targets = self._fd_targets()
        if len(set(targets)) != len(targets):
            raise _typed_error(ValueError, "pass_fds: fd %d is also one of extra_files (3..%d)"
                               % (min(set(t for t in targets if targets.count(t) > 1)),
                                  2 + len(self.extra_files)))
        # limits
        if self.limits is not None:
            if not isinstance(self.limits, Limits):
                raise SandboxError("limits: expected a sandbox.Limits, not %s"
                                   % type(self.limits).__name__, errno.EINVAL)
            self._limits = self.limits._checked()
            fds = max([2] + targets) + 1
            if self._limits["open_files"] is not None and self._limits["open_files"] < fds:
                raise SandboxError("limits.open_files: %d is fewer than the %d fds the command "
                                   "is given" % (self._limits["open_files"], fds), errno.EINVAL)
        self._stage = "started"

    def _check_bwrap(self):
        unknown = set(self.namespaces) - set(_NAMESPACES)
        if unknown:
            raise SandboxError("namespaces: unknown %s" % ", ".join(sorted(unknown)), errno.EINVAL)
        if self.caps is not None:
            if any(isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < 64
                   for c in self.caps):
                raise SandboxError("caps: invalid capability in %r" % (self.caps,), errno.EINVAL)
        if "user" in self.namespaces and self.userns_fd is not None:
            raise SandboxError("userns_fd: not with a new user namespace", errno.EINVAL)
        if (self.disable_userns and "user" not in self.namespaces):
            raise SandboxError("disable_userns: needs a new user namespace", errno.EINVAL)
        if self.as_pid_1 and "pid" not in self.namespaces:
            raise SandboxError("as_pid_1: needs a new PID namespace", errno.EINVAL)
        if self.userns_block_fd is not None and "user" not in self.namespaces:
            raise SandboxError("userns_block_fd: needs a new user namespace", errno.EINVAL)
        if self.userns_block_fd is not None and self.disable_userns:
            raise SandboxError("userns_block_fd: not with disable_userns (the maps are "
                               "written from outside)", errno.EINVAL)
        for name in ("userns_fd", "userns2_fd", "pidns_fd", "userns_block_fd"):
            if getattr(self, name) is not None:
                setattr(self, name, _fd_of(getattr(self, name), name))
        self._local = True      # fds inherited, namespaces joined: from this process

    def _bwrap_config(self):
        """cfg["bwrap"]: what bubblewrap's defaults change in the setup."""
        names = set(self.namespaces)
        new_user = "user" in names or (os.getuid() != 0 and self.userns_fd is None)
        clone = CLONE_NEWNS | (CLONE_NEWUSER if new_user else 0)
        for name in names - {"user"}:
            clone |= _NAMESPACES[name]
        caps = None
        if self.caps is not None:
            caps = sum(1 << c for c in set(self.caps))
        elif os.getuid() != 0:
            caps = 0
        try:
            old_cwd = os.getcwd()
        except OSError:
            old_cwd = ""
        return {
            "clone": clone, "caps": caps, "in_userns": new_user or self.userns_fd is not None,
            "die_with_parent": bool(self.die_with_parent),
            # Nothing to reap for without a PID namespace of its own, nor
            # lock files or a sync fd to hold: the init becomes the command
            # (bubblewrap execs it directly).
            "exec": bool(self.as_pid_1) or not (clone & CLONE_NEWPID or self.lock_files
                                                or self.sync_fd is not None),
            "userns_fd": self.userns_fd, "userns2_fd": self.userns2_fd,
            "pidns_fd": self.pidns_fd, "disable_userns": bool(self.disable_userns),
            "userns_block_fd": self.userns_block_fd,
            "assert_userns_disabled": bool(self.assert_userns_disabled),
            "old_cwd": old_cwd, "proc_fd": None, "own_caps": _capabilities()[0],
        }

    def _check_bubblewrap_fields(self):
        if self.hardened and self.userns_block_fd is not None:
            raise SandboxError("userns_block_fd: only with bubblewrap's defaults (hardened "
                               "False); a hardened sandbox maps its ids itself", errno.EINVAL)
        if self.argv0 is not None and (not isinstance(self.argv0, str) or "\0" in self.argv0):
            raise _typed_error(ValueError, "argv0: invalid %r" % (self.argv0,))
        if isinstance(self.lock_files, (str, bytes)) or not all(
                isinstance(p, str) and p.startswith("/") and "\0" not in p
                for p in self.lock_files):
            raise SandboxError("lock_files: not a list of absolute paths: %r"
                               % (self.lock_files,), errno.EINVAL)
        if isinstance(self.seccomp_programs, (bytes, bytearray)):
            raise SandboxError("seccomp_programs: a list of programs, not one", errno.EINVAL)
        for index, program in enumerate(self.seccomp_programs):
            if not isinstance(program, (bytes, bytearray)) or not program or len(program) % 8:
                raise SandboxError("seccomp_programs[%d]: invalid seccomp data, must be a "
                                   "non-empty multiple of 8 bytes" % index, errno.EINVAL)

    def _held_fds(self):
        """(name, fd) of the fds PID 1 holds for itself (issue 11)."""
        held = []
        for name, value in (("sync", self.sync_fd), ("block", self.block_fd)):
            if value is not None:
                held.append((name, _fd_of(value, name + "_fd")))
        return held

    def _config(self):
        if not self.args and not self.path:
            shell = os.environ.get("SHELL", "")
            if not shell.startswith("/"):
                raise SandboxError("no command specified and $SHELL is invalid", errno.EBADE)
            self.path, self.args = shell, [shell]
        try:
            args = [os.fsencode(a) for a in self.args] or [os.fsencode(self.path)]
        except TypeError as err:
            raise _typed_error(TypeError, "args: %r: %s" % (self.args, err))
        if any(b"\0" in a for a in args):
            raise _typed_error(ValueError, "args: %r: embedded null byte" % (self.args,))
        if not args[0]:
            raise _typed_error(ValueError, "args: invalid argument vector %r" % (self.args,))
        ops = []
        for index, op in enumerate(self.ops):
            if isinstance(op, Place):      # its data may have come after start()
                try:
                    op.validate()
                except SandboxError as err:
                    raise _at_op(err, index)
            ops.append(_op_record(op))
        seccomp = int(self.effective_seccomp())
        host_uid, host_gid = _host_ids(self.host_uid, self.host_gid)
        cfg = {
            "args": args, "path": os.fsencode(self.path) if self.path else None,
            "dir": self.dir, "env": _encode_env(self.env),
            "uid": _proc_int("/proc/sys/kernel/overflowuid", 65534) if self.uid is None else self.uid,
            "gid": _proc_int("/proc/sys/kernel/overflowgid", 65534) if self.gid is None else self.gid,
            "hostname": self.hostname, "ops": ops, "flags": int(self.flags),
            "parent_perm": self.parent_perm, "privileged": bool(self.privileged),
            "host_uid": host_uid, "host_gid": host_gid, "umask": _current_umask(),
            "seccomp": seccomp,
            "quiet": self._quiet,
            # Landlock
            "landlock": _check_landlock_mode(self.landlock),
            "allow_connect": _check_ports(self.allow_connect, "allow_connect"),
            "allow_bind": _check_ports(self.allow_bind, "allow_bind"),
            "fd_targets": self._fd_targets(),
            "limits": None,       # limits: set by _request() when there are any
            # bubblewrap's options (issue 11)
            "argv0": None if self.argv0 is None else os.fsencode(self.argv0),
            "lock_files": list(self.lock_files),
            "seccomp_programs": [bytes(program) for program in self.seccomp_programs],
            "held_fds": [name for name, _ in self._held_fds()],
            "dir_fallbacks": self._dir_fallbacks,
            "report_namespaces": self._want_namespaces,
            # The command line clones first and compiles while the sandbox
            # sets up (its init waits for the program only once it has set
            # up): ~1 ms less to wait for (issue 15).
            "filter": None if self._filter_follows() else
            _compiled_filter(seccomp, HOST_ARCH, self._filter_rules()),
            "filter_follows": self._filter_follows(),
            "init_sets_up": self._local and self._command_line,
            "user_seccomp": int(bool(self._filter_rules())),
            "bwrap": None,
        }
        if not self.hardened:
            # bubblewrap's defaults: the caller's real ids, no built-in filter.
            cfg["uid"] = os.getuid() if self.uid is None else self.uid
            cfg["gid"] = os.getgid() if self.gid is None else self.gid
            cfg["host_uid"], cfg["host_gid"] = os.getuid(), os.getgid()
            cfg["filter"], cfg["landlock"] = None, "off"
            cfg["bwrap"] = self._bwrap_config()
            cfg["bwrap"]["ids"] = (cfg["uid"], cfg["gid"])
        return cfg

    # -- serve: send the configuration; the container exists when it returns
    def serve(self):
        self._request()
        if self._quiet:
            return      # errors come with the exit status, to _communicate()
        while not self._setup_step(self._receive()):
            pass

    def _request(self):
        """Send the configuration (to the helper, or clone here); returns
        at once, the container's messages come on its channel."""
        if self._stage != "started":
            raise SandboxError("sandbox: serve() needs start() first and runs once", errno.EINVAL)
        self._stage = "served"
        cfg = self._config()
        stdio = [_fd_of(self.stdin, "stdin", 0), _fd_of(self.stdout, "stdout", 1),
                 _fd_of(self.stderr, "stderr", 2)]
        extras = [_fd_of(f, "extra_files[%d]" % i) for i, f in enumerate(self.extra_files)]
        extras += [_fd_of(fd, "pass_fds") for fd in self._pass_fds]
        extras += [fd for _, fd in self._held_fds()]
        # limits: what PID 1 sets and the child cgroup init joins (none of it
        # without limits or a cgroup)
        cgroup = None
        if self._limits is not None or self.cgroup is not None:
            cfg["limits"], self._cgroup = _plan_limits(self._limits, self.cgroup,
                                                       cfg["host_uid"])
            cgroup = self._cgroup.join_fds() if self._cgroup is not None else None
        cfg["trees"], trees = [], []
        if _maps_from_outside(cfg["host_uid"], cfg["host_gid"]):
            _give_pipes(stdio + extras, cfg)
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._chan = parent_end
        try:
            if _maps_from_outside(cfg["host_uid"], cfg["host_gid"]):
                cfg["trees"], trees = _open_bind_trees(self.ops, cfg, self._local)
            if self._local:
                self.pid = _launch(cfg, child_end.fileno(), stdio, extras, cgroup, trees)
                if cfg["filter_follows"]:
                    self._send_filter(cfg)
            else:
                self._submit(cfg, child_end.fileno(), stdio, extras, cgroup, trees)
        except BaseException:
            self._conclude()
            raise
        finally:
            child_end.close()
            _close_all(trees)

    def _filter_follows(self):
        return self._local and self.hardened

    def _send_filter(self, cfg):
        """The command line's filter, compiled once init exists (init
        reads it from the channel before it confines itself)."""
        try:
            program = _compiled_filter(cfg["seccomp"], HOST_ARCH, self._filter_rules())
            if len(program) > 8 * _BPF_MAXINSNS:     # (nor could init read it whole)
                raise SandboxError("seccomp: the filter has %d instructions, more than the "
                                   "kernel's %d" % (len(program) // 8, _BPF_MAXINSNS), errno.EINVAL)
            self._chan.send(b"F" + program)
        except BaseException:
            os.kill(self.pid, signal.SIGKILL)
            raise

    def _setup_step(self, message):
        """One message while serve() waits for the command to start: True
        once it runs (the helper's ("pid", n) and init's ("ready",) race
        each other).  A failure is raised once the exit status is known
        (the helper sends one even when clone failed)."""
        kind = message[0]
        if kind == "pid":
            # The helper's, once; a container cloned here has its pid from
            # clone() (kill() signals it by number: none the sandbox names).
            if not self._local and self.pid is None:
                self.pid = message[1]
        elif kind == "ready":
            self._ready = True
        elif kind == "namespaces":
            if self._namespaces is None:
                self._namespaces = message[1]
        elif kind == "error":
            if self._late_error is None:
                self._late_error = SandboxError(message[1], message[2])
        else:
            self._handle(message)
        if self.returncode is not None:
            self._setup_failed = not self._exec_error
            if self._late_error is None and not self._exec_error:
                self._late_error = SandboxError(
                    "sandbox: init exited with status %s during setup" % self.returncode,
                    errno.ECHILD)
            self._finish()    # raises
        # With a block_fd the command waits for the caller, who may want the
        # pid first: serve() returns once the sandbox exists.
        return ((self._ready or self.block_fd is not None) and self.pid is not None
                and self._late_error is None
                and (self._namespaces is not None or not self._want_namespaces))

    def _fd_targets(self):
        """The numbers the extra fds have inside: extra_files from 3 on,
        then pass_fds at their own."""
        return list(range(3, 3 + len(self.extra_files))) + list(self._pass_fds)

    def _finish_quietly(self):
        self._stage = "done"
        if self._chan is not None:
            self._chan.close()
        self._conclude()

    def _conclude(self):
        """The Report, from init's figures and the cgroup's, which is then
        emptied and removed; once."""
        if self.report is not None:
            return
        cgroup, self._cgroup = self._cgroup, None
        figures = cgroup.figures() if cgroup is not None else None
        if cgroup is not None:
            cgroup.remove()
        code = self.returncode
        report = Report(exit_code=code)
        if self._exit_figures is not None:
            (report.status, sig, wall_time, cpu_user, cpu_system,
             report.max_rss) = self._exit_figures[:6]
            report.wall_time, report.cpu_user, report.cpu_system = (
                round(wall_time, 6), round(cpu_user, 6), round(cpu_system, 6))
            if sig:
                report.exit_code, report.signal = None, sig
        elif code is None or self._late_error is not None:
            report.status = "setup_failed"
        elif code > 128:
            report.status, report.exit_code, report.signal = "signaled", None, code - 128
        if self._late_error is not None or self._setup_failed:
            report.status = "setup_failed"
        limits = self._limits
        if limits is not None and limits["memory"] is not None:
            report.memory_limit_kind = "cgroup" if cgroup is not None and \
                "memory" in cgroup.covers else "address_space"
        if figures is not None:
            if figures["cpu_user"] is not None:
                report.cpu_user = round(figures["cpu_user"], 6)
                report.cpu_system = round(figures["cpu_system"], 6)
            report.memory_peak, report.oom_kills = figures["memory_peak"], figures["oom_kills"]
            if report.status != "timeout" and report.status != "setup_failed":
                if figures["oom_kills"]:
                    report.status = "memory"
                elif figures["pids_refused"] and report.status in ("exited", "signaled"):
                    report.status = "pids"
        self.report = report

    def _submit(self, cfg, chan, stdio, extras, cgroup, trees):
        slots = [("chan", True), ("stdin", stdio[0] is not None),
                 ("stdout", stdio[1] is not None), ("stderr", stdio[2] is not None),
                 ("extras", len(extras)), ("cgroup", len(cgroup or ())),
                 ("trees", len(trees))]
        if any(fd is None for fd in extras):
            raise SandboxError("extra_files: not open", errno.EBADF)
        if len(extras) + len(trees) > _MAX_FDS - 8:
            raise SandboxError("binds and extra_files: too many for one request (%d, at most %d)"
                               % (len(extras) + len(trees), _MAX_FDS - 8), errno.EINVAL)
        payload, memfd = _encode_request(cfg, slots, cgroup)
        fds = ([memfd] if memfd is not None else []) + [chan] + stdio + extras + \
            list(cgroup or ()) + trees
        try:
            for attempt in (1, 2):
                try:
                    _Helper.submit(payload, fds)
                    break
                except (BrokenPipeError, ConnectionResetError):
                    if attempt == 2:
                        raise
        except OSError as err:
            raise SandboxError("helper: sending the request", err.errno)
        finally:
            if memfd is not None:
                os.close(memfd)

    def _receive(self, timeout=None):
        """The next message from the container's channel; ("eof",) when it
        closed; None on timeout."""
        if timeout is not None and not _ready_fds([self._chan.fileno()], timeout=timeout)[0]:
            return None
        try:
            data = self._chan.recv(65536)
        except ConnectionResetError:
            # The sandbox's end went with a message of ours unread (the
            # command line's filter, when setup failed before init read
            # it): the kernel says so once, and what init sent is queued.
            try:
                data = self._chan.recv(65536)
            except OSError:
                data = b""
        except OSError:
            data = b""
        if not data:
            return ("eof",)
        message = _container_message(data)
        if message is None:
            # Not a message init sends: the command has taken over a PID 1
            # it could (the bwrap personality's is dumpable) or its channel.
            # End the container; wait() says why once it has exited.
            if self._late_error is None:
                self._late_error = SandboxError(
                    "sandbox: a malformed message on the container's channel (the container "
                    "was killed)", errno.EPROTO)
            self.kill()
            return ("malformed",)
        return message

    # -- wait, kill, stop
    def wait(self, timeout=None):
        """The command's exit status (128+N for signal N).  Raises
        subprocess.TimeoutExpired when timeout passes first (the container
        keeps running), SandboxError when the command could not be run."""
        if self._stage == "done" and self.returncode is not None:
            return self._finish()
        if self._stage != "served":
            raise SandboxError("sandbox: wait() before serve()", errno.EINVAL)
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            remaining = None if deadline is None else deadline - time.monotonic()
            message = self._receive(remaining)
            if message is None:
                raise subprocess.TimeoutExpired(self.args, timeout)
            self._handle(message)
        return self._finish()

    def _handle(self, message):
        kind = message[0]
        if kind == "exit":
            self.returncode = message[1]
            if len(message) > 2:
                self._exit_figures = message[2:]
        elif kind == "exec":
            self._exec_error = message
        elif kind == "error":     # init failed after the command was set up
            self._late_error = SandboxError(message[1], message[2])
        elif kind == "eof" and self._local:
            self._wait_local()
        elif kind == "eof":     # the helper died: so did the container
            self.returncode = 128 + signal.SIGKILL

    def _finish(self):
        self._finish_quietly()
        if self._exec_error:
            _, err, what = self._exec_error
            what = filename = os.fsdecode(what) if isinstance(what, bytes) else what
            if what.startswith("chdir"):
                filename = self.dir
            else:
                what = "exec %s" % _q(what)
            reason = os.strerror(err)
            if err == errno.E2BIG:
                reason += " (%s)" % _e2big_reason(self.args, self.env)
            # Also the OSError subclass subprocess raises (FileNotFoundError...).
            error = _typed_error(err, "%s: %s" % (what, reason), err)
            error.filename = filename
            error.exit_status = self.returncode
            raise error
        if self._late_error is not None:
            raise self._late_error
        return self.returncode

    def _wait_local(self):
        # Only the command line clones from its own process, and it waits
        # without a timeout.
        self.returncode = _wait_status(os.waitpid(self.pid, 0)[1])
        self._reaped = True

    def kill(self, sig=signal.SIGKILL):
        """Send sig to the container's init (SIGKILL ends the container)."""
        if self.returncode is not None or self._chan is None or (
                self.pid is None and not self._quiet):
            return
        if self._local:
            os.kill(self.pid, sig)
        else:
            try:
                self._chan.send(marshal.dumps(("kill", int(sig))))
            except OSError:
                pass

    def stop(self):
        """Cancel: call `cancel(container)` if set, else send SIGTERM (init
        forwards it to the command); kill after wait_delay seconds."""
        if self.cancel is not None:
            self.cancel(self)
        else:
            self.kill(signal.SIGTERM)
        if self.wait_delay is not None:
            timer = threading.Timer(self.wait_delay, self.kill)
            timer.daemon = True
            timer.start()

    def close(self):
        """Kill the container if it still runs, release its channel and (when
        cloned from this process) reap its init."""
        if self._stage == "served" and self._chan is not None and self.returncode is None and (
                self.pid is not None or self._quiet):
            self.kill()
            try:
                self.wait()
            except SandboxError:
                pass
        if self._chan is not None:
            self._chan.close()
        if self._local and self.pid is not None and not self._reaped:
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
            self._reaped = True
        if self._cgroup is not None:
            self._conclude()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------------------
# The subprocess-shaped interface: Popen, run() and CompletedProcess.
#
# Popen prepares a Container from subprocess's arguments (pipes, text mode,
# cwd, env, pass_fds) and sandbox's own fields as keywords; run() is Popen +
# communicate(), as subprocess.run is, with the helper's quiet mode (no
# "pid"/"ready" messages: its only wake-up is the exit).  communicate() is
# one poll loop over the pipes and the container's status channel.
# ---------------------------------------------------------------------------

PIPE = subprocess.PIPE
STDOUT = subprocess.STDOUT
DEVNULL = subprocess.DEVNULL

# Container attributes that Popen sets itself, under subprocess's names.
_POPEN_OWN_FIELDS = frozenset(("args", "path", "dir", "env", "stdin", "stdout", "stderr",
                               "ops", "pid", "returncode", "report"))
_READ_SIZE = 65536


class CompletedProcess(subprocess.CompletedProcess):
    """subprocess.CompletedProcess with the sandbox's run report."""

    def __init__(self, args, returncode, stdout=None, stderr=None, report=None):
        super().__init__(args, returncode, stdout, stderr)
        self.report = report


def _text_encoding():
    # subprocess's choice for text mode without an encoding (3.11+), else
    # the locale's, as TextIOWrapper takes it.
    choose = getattr(subprocess, "_text_encoding", None)
    return choose() if choose is not None else None


class Popen:
    """subprocess.Popen for a sandboxed command: the same arguments where
    they are shared (stdin/stdout/stderr, text, encoding, errors, bufsize,
    executable, shell, cwd, env, pass_fds), the Container fields as
    keywords (uid, hostname, flags, limits, ...), `ops` (default_ops() by
    default) and `max_output` (bytes kept of each stream communicate()
    collects).  `pid` is the sandbox's init on the host; `returncode` is the
    command's status, 128+N when it died of signal N.  send_signal()
    reaches the command for SIGINT/SIGTERM/SIGHUP (init forwards them);
    kill() ends the whole sandbox."""

    def __init__(self, args, bufsize=-1, executable=None, stdin=None, stdout=None,
                 stderr=None, *, ops=None, close_fds=True, shell=False, cwd=None, env=None,
                 universal_newlines=None, pass_fds=(), encoding=None, errors=None, text=None,
                 max_output=None, _mode="popen", **fields):
        self.args = args
        self.stdin = self.stdout = self.stderr = None
        self.pid = None
        self.encoding, self.errors = encoding, errors
        self._container = None
        self._pipes = {}           # name -> our end, until a file object owns it
        self._state = None         # communicate()'s, kept across a timeout
        self._truncated = []
        self._started_at = time.monotonic()
        if text is not None and universal_newlines is not None and \
                bool(universal_newlines) != bool(text):
            raise subprocess.SubprocessError(
                "Cannot disambiguate when both text and universal_newlines are supplied "
                "but different. Pass one or the other.")
        self.text_mode = bool(encoding or errors or text or universal_newlines)
        if self.text_mode and encoding is None:
            self.encoding = encoding = _text_encoding()
        if bufsize is None:
            bufsize = -1
        if not isinstance(bufsize, int):
            raise TypeError("bufsize must be an integer")
        line_buffering = self.text_mode and bufsize == 1
        if line_buffering:
            bufsize = -1
        if not close_fds:
            raise _typed_error(ValueError, "close_fds=False: a sandbox gets only its stdio "
                                           "and pass_fds")
        if max_output is not None and (isinstance(max_output, bool) or
                                       not isinstance(max_output, int) or max_output < 0):
            raise _typed_error(ValueError, "max_output: expected a number of bytes >= 0, not %r"
                               % (max_output,))
        self._max_output = max_output
        argv = [args] if isinstance(args, (str, bytes, os.PathLike)) else list(args)
        if shell:
            argv = [executable or "/bin/sh", "-c"] + argv
            executable = None
        if not argv:
            raise _typed_error(IndexError, "args: empty command (list index out of range)")
        container = Container(*argv, ops=default_ops() if ops is None else ops)
        for name, value in fields.items():
            if name.startswith("_") or name in _POPEN_OWN_FIELDS or name not in vars(container):
                raise TypeError("Popen() got an unexpected keyword argument %r" % name)
            setattr(container, name, value)
        if executable is not None:
            container.path = os.fsdecode(executable)
        container.dir = "/" if cwd is None else os.fsdecode(os.fspath(cwd))
        container.env = self._environment(env, container.dir)
        keep = set(int(fd) for fd in pass_fds)
        if any(fd < 0 for fd in keep):
            raise _typed_error(ValueError, "pass_fds: bad value(s) in fds_to_keep")
        container._pass_fds = sorted(fd for fd in keep if fd > 2)   # 0-2: stdio's
        container._quiet = _mode == "run"
        self._container = container
        theirs = []
        try:
            devnull = None
            for name, value in (("stdin", stdin), ("stdout", stdout), ("stderr", stderr)):
                if value is None:
                    continue
                if value == PIPE:
                    read_end, write_end = os.pipe2(os.O_CLOEXEC)
                    ours, value = (write_end, read_end) if name == "stdin" else (read_end, write_end)
                    self._pipes[name] = ours
                    theirs.append(value)
                elif value == DEVNULL:
                    if devnull is None:
                        devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                        theirs.append(devnull)
                    value = devnull
                elif value == STDOUT and name == "stderr":
                    value = 1 if container.stdout is None else container.stdout
                setattr(container, name, value)
            if _mode != "async":
                self._open_pipes(bufsize, line_buffering)
            container.start()
            if _mode == "async":
                container._request()
            else:
                container.serve()
        except BaseException:
            self._release()
            raise
        finally:
            _close_all(theirs)
        self.pid = container.pid

    @staticmethod
    def _environment(env, cwd):
        """env with PWD set to the working directory inside."""
        if env is None:
            return {"PWD": cwd}
        try:
            items = env.items()
        except AttributeError:
            raise _typed_error(TypeError, "env: expected a mapping, not %s" % type(env).__name__)
        environment = dict(items)
        environment.pop(b"PWD", None)
        environment["PWD"] = cwd
        return environment

    def _open_pipes(self, bufsize, line_buffering):
        """Our ends of the pipes as file objects, as subprocess makes them."""
        for name in ("stdin", "stdout", "stderr"):
            if name not in self._pipes:
                continue
            stream = io.open(self._pipes.pop(name), "wb" if name == "stdin" else "rb", bufsize)
            setattr(self, name, stream)     # owned here even if wrapping fails
            if self.text_mode:
                if name == "stdin":
                    stream = io.TextIOWrapper(stream, write_through=True,
                                              line_buffering=line_buffering,
                                              encoding=self.encoding, errors=self.errors)
                else:
                    stream = io.TextIOWrapper(stream, encoding=self.encoding, errors=self.errors)
            setattr(self, name, stream)

    def _release(self):
        """After a failed start: close our ends and whatever the container holds."""
        _close_all(self._pipes.values())
        self._pipes = {}
        for stream in (self.stdin, self.stdout, self.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        if self._container is not None:
            self._container.close()

    def __repr__(self):
        return "<%s: returncode: %s args: %.80r>" % (type(self).__name__, self.returncode,
                                                     self.args)

    @property
    def returncode(self):
        return None if self._container is None else self._container.returncode

    @property
    def universal_newlines(self):
        return self.text_mode

    @property
    def report(self):
        """The run report (sandbox.Report) once the command has ended."""
        report = getattr(self._container, "report", None)
        if report is not None and self._truncated:
            report.truncated = True     # (cut before the report existed)
        return report

    # -- waiting
    def poll(self):
        """The returncode if the command has ended, else None; never blocks."""
        container = self._container
        while container.returncode is None:
            message = container._receive(0)
            if message is None:
                return None
            container._handle(message)
        return container.wait()

    def wait(self, timeout=None):
        """Wait for the command; subprocess.TimeoutExpired when timeout
        passes first (the sandbox keeps running)."""
        try:
            return self._container.wait(timeout)
        except subprocess.TimeoutExpired:
            raise subprocess.TimeoutExpired(self.args, timeout) from None

    def communicate(self, input=None, timeout=None):
        """Send input, read stdout and stderr to the end and wait, as
        subprocess's communicate(); returns (stdout, stderr).  On timeout
        (subprocess.TimeoutExpired, with what was read so far) nothing is
        lost: call it again to carry on."""
        if self._state is not None and input:
            raise ValueError("Cannot send input after starting communication")
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._state is None:
            self._state = self._start_communication(input)
        try:
            self._exchange(deadline, timeout)
        except subprocess.TimeoutExpired:
            raise
        chunks, kept = self._state["chunks"], {}
        for name in ("stdout", "stderr"):
            kept[name] = None
            if name in chunks:
                data = b"".join(chunks[name])
                kept[name] = self._decode(name, data) if self.text_mode else data
        self.wait(None if deadline is None else max(0, deadline - time.monotonic()))
        return kept["stdout"], kept["stderr"]

    def _start_communication(self, input):
        if self.stdin is not None and not self.stdin.closed:
            if input is not None:
                if self.text_mode and not isinstance(input, str):
                    raise _typed_error(TypeError, "input: write() argument must be str, not %s"
                                       % type(input).__name__)
                if not self.text_mode and isinstance(input, str):
                    raise _typed_error(TypeError, "input: a bytes-like object is required, "
                                                  "not 'str'")
                if self.text_mode:
                    input = input.encode(self.stdin.encoding, self.stdin.errors)
            try:
                self.stdin.flush()
            except BrokenPipeError:
                pass
        state = {"chunks": {}, "reading": {}, "sizes": {}, "pending": memoryview(b"")}
        for name in ("stdout", "stderr"):
            stream = getattr(self, name)
            if stream is not None:
                state["chunks"][name], state["sizes"][name] = [], 0
                if not stream.closed:
                    state["reading"][stream.fileno()] = name
        if self.stdin is not None and not self.stdin.closed:
            if input:
                state["pending"] = memoryview(input).cast("B")
                os.set_blocking(self.stdin.fileno(), False)
            else:
                self._close_stdin()
        return state

    def _close_stdin(self):
        try:
            self.stdin.close()
        except BrokenPipeError:
            pass

    def _exchange(self, deadline, timeout):
        """The poll loop: pipes and the status channel until all is done."""
        state, container = self._state, self._container
        reading = state["reading"]
        while reading or (self.stdin is not None and not self.stdin.closed) or \
                container.returncode is None:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                chunks = state["chunks"]
                raise subprocess.TimeoutExpired(
                    self.args, timeout,
                    b"".join(chunks["stdout"]) if chunks.get("stdout") else None,
                    b"".join(chunks["stderr"]) if chunks.get("stderr") else None)
            writing = [self.stdin.fileno()] if self.stdin is not None and not self.stdin.closed else []
            status = [container._chan.fileno()] if container.returncode is None else []
            ready_r, ready_w = _ready_fds(list(reading) + status, writing, remaining)
            for fd in ready_r:
                if status and fd == status[0]:
                    container._handle(container._receive())
                else:
                    self._take(fd, os.read(fd, _READ_SIZE))
            if ready_w:
                pending = state["pending"]
                try:
                    state["pending"] = pending[os.write(writing[0], pending[:_READ_SIZE]):]
                except BlockingIOError:
                    pass
                except BrokenPipeError:
                    state["pending"] = pending[:0]
                if not state["pending"]:
                    self._close_stdin()

    def _take(self, fd, data):
        """Keep what max_output allows of data read from fd; at EOF, close it."""
        state = self._state
        name = state["reading"][fd]
        if not data:
            del state["reading"][fd]
            getattr(self, name).close()
            return
        if self._max_output is not None:
            room = self._max_output - state["sizes"][name]
            if len(data) > room:
                data = data[:max(room, 0)]
                if name not in self._truncated:
                    self._truncated.append(name)
        if data:
            state["chunks"][name].append(data)
            state["sizes"][name] += len(data)

    @property
    def truncated(self):
        """Names of the streams cut at max_output ("stdout", "stderr")."""
        return list(self._truncated)

    def _decode(self, name, data):
        stream = getattr(self, name)
        return _decode_text(data, stream.encoding, stream.errors, name in self._truncated)

    # -- signals
    def send_signal(self, sig):
        """Send sig to the sandbox's init: SIGINT, SIGTERM and SIGHUP reach
        the command, SIGKILL ends the whole sandbox."""
        if self.poll() is None:
            self._container.kill(sig)

    def terminate(self):
        self.send_signal(signal.SIGTERM)

    def kill(self):
        self.send_signal(signal.SIGKILL)

    # -- context manager
    def __enter__(self):
        return self

    def __exit__(self, exc_type, value, traceback):
        try:
            for stream in (self.stdout, self.stderr):
                if stream is not None:
                    stream.close()
            if self.stdin is not None:
                try:
                    self.stdin.close()
                except BrokenPipeError:
                    pass
        finally:
            try:
                self.wait()
            except SandboxError:
                if exc_type is None:
                    raise


def _timed_out(report, started):
    """The report of a run that its timeout ended (killed whole: init could
    not measure its own time)."""
    if report is not None:
        report.status, report.exit_code, report.signal = "timeout", None, int(signal.SIGKILL)
        report.wall_time = report.wall_time or time.monotonic() - started
    return report


def run(args, ops=None, *, input=None, capture_output=False, timeout=None, check=False,
        max_output=None, **kwargs):
    """Run args in a sandbox, like subprocess.run: the same arguments where
    they are shared, the Container fields as keywords, `ops` (default
    default_ops()) and `max_output`; returns a sandbox.CompletedProcess
    (with `report`).  On timeout the whole sandbox is killed and
    subprocess.TimeoutExpired carries the output read so far."""
    if input is not None:
        if kwargs.get("stdin") is not None:
            raise _typed_error(ValueError, "stdin and input arguments may not both be used.")
        kwargs["stdin"] = PIPE
    if capture_output:
        if kwargs.get("stdout") is not None or kwargs.get("stderr") is not None:
            raise _typed_error(ValueError, "stdout and stderr arguments may not be used "
                                           "with capture_output.")
        kwargs["stdout"] = kwargs["stderr"] = PIPE
    with Popen(args, ops=ops, max_output=max_output, _mode="run", **kwargs) as process:
        try:
            stdout, stderr = process.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired as err:
            process.kill()
            process._container.wait()
            err.report = _timed_out(process.report, process._started_at)
            raise
        except BaseException:
            process.kill()
            raise
        returncode = process.returncode
        if check and returncode:
            raise subprocess.CalledProcessError(returncode, process.args, stdout, stderr)
    return CompletedProcess(process.args, returncode, stdout, stderr, process.report)


# ---------------------------------------------------------------------------
# asyncio: create_subprocess_exec() and run_async().
#
# The Popen core prepares the sandbox and sends the request without waiting;
# the event loop then watches the container's status channel (add_reader)
# and its pipes (connect_read_pipe/connect_write_pipe): no thread per
# sandbox, and the loop never blocks on one.  asyncio is imported here, in
# the functions the caller runs, never by `import sandbox`.
# ---------------------------------------------------------------------------

_STREAM_LIMIT = 2 ** 16      # asyncio.streams' default line limit


class _AsyncProcess:
    """What create_subprocess_exec() returns: asyncio.subprocess.Process's
    shape (stdin StreamWriter, stdout/stderr StreamReader, wait(),
    communicate(), returncode, send_signal/terminate/kill) plus `report`."""

    def __init__(self, popen, loop):
        self._popen, self._container, self._loop = popen, popen._container, loop
        self.stdin = self.stdout = self.stderr = None
        self._transports = {}      # stream name -> the loop's transport
        self._started = loop.create_future()
        self._exited = loop.create_future()
        self._chunks, self._sizes, self._truncated = {}, {}, []
        self._status_fd = self._container._chan.fileno()
        loop.add_reader(self._status_fd, self._on_status)
        self._watching = True

    def __repr__(self):
        return "<%s %s>" % (type(self).__name__, self.pid)

    @property
    def pid(self):
        return self._container.pid

    @property
    def returncode(self):
        return self._container.returncode

    @property
    def report(self):
        """The run report (sandbox.Report) once the command has ended; its
        status stays what ended the run (max_output never ends it)."""
        report = self._container.report
        if report is not None and self._truncated:
            report.truncated = True
        return report

    @property
    def truncated(self):
        """Names of the streams communicate() cut at max_output."""
        return list(self._truncated)

    def _on_status(self):
        """A message on the status channel (the loop saw it readable)."""
        container = self._container
        message = container._receive()
        if message[0] in ("exit", "eof"):
            self._stop_watching()     # before the channel is closed (by _finish, below)
        try:
            if not self._started.done():
                if container._setup_step(message):
                    self._started.set_result(None)
            else:
                container._handle(message)
            if container.returncode is not None and not self._exited.done():
                self._exited.set_result(container.wait())
        except BaseException as err:       # handed to whoever awaits
            if not self._started.done():
                self._started.set_exception(err)
            elif not self._exited.done():
                self._exited.set_exception(err)
            else:
                raise

    def _stop_watching(self):
        if self._watching:
            self._watching = False
            self._loop.remove_reader(self._status_fd)

    async def _connect(self, limit):
        """Our ends of the pipes as the loop's transports and streams."""
        import asyncio
        loop, pipes = self._loop, self._popen._pipes
        if "stdin" in pipes:
            transport, protocol = await loop.connect_write_pipe(
                lambda: _stream_protocol(loop), io.open(pipes.pop("stdin"), "wb", 0))
            self._transports["stdin"] = transport
            self.stdin = asyncio.StreamWriter(transport, protocol, None, loop)
        for name in ("stdout", "stderr"):
            if name in pipes:
                reader = asyncio.StreamReader(limit=limit, loop=loop)
                transport, _ = await loop.connect_read_pipe(
                    lambda: asyncio.StreamReaderProtocol(reader, loop=loop),
                    io.open(pipes.pop(name), "rb", 0))
                self._transports[name] = transport
                setattr(self, name, reader)

    def _abandon(self):
        """After a failed start: kill the sandbox and release everything."""
        self._stop_watching()
        self._close_transports()
        self._popen._release()

    async def wait(self):
        """Wait for the command to end; its returncode."""
        import asyncio
        return await asyncio.shield(self._exited)

    async def communicate(self, input=None):
        """Send input, read stdout and stderr to their end (keeping at most
        max_output bytes of each) and wait; (stdout, stderr)."""
        import asyncio
        await asyncio.gather(self._feed(input), self._collect("stdout"), self._collect("stderr"))
        await self.wait()
        return (b"".join(self._chunks["stdout"]) if self.stdout is not None else None,
                b"".join(self._chunks["stderr"]) if self.stderr is not None else None)

    async def _feed(self, input):
        if self.stdin is None:
            return
        if input:
            self.stdin.write(input)
        try:
            await self.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass       # the command did not read it all, as asyncio allows
        self.stdin.close()

    async def _collect(self, name):
        stream = getattr(self, name)
        if stream is None:
            return
        chunks = self._chunks.setdefault(name, [])
        cap = self._popen._max_output
        while True:
            data = await stream.read(_READ_SIZE)
            if not data:
                break
            if cap is not None:
                room = cap - self._sizes.get(name, 0)
                if len(data) > room:
                    data = data[:max(room, 0)]
                    if name not in self._truncated:
                        self._truncated.append(name)
            if data:
                chunks.append(data)
                self._sizes[name] = self._sizes.get(name, 0) + len(data)
        self._transports.pop(name).close()

    def partial_output(self):
        """(stdout, stderr) collected so far, None where nothing was."""
        return tuple(b"".join(self._chunks[name]) if self._chunks.get(name) else None
                     for name in ("stdout", "stderr"))

    def send_signal(self, sig):
        """SIGINT, SIGTERM and SIGHUP reach the command; SIGKILL ends the sandbox."""
        if self.returncode is None:
            self._container.kill(sig)

    def terminate(self):
        self.send_signal(signal.SIGTERM)

    def kill(self):
        self.send_signal(signal.SIGKILL)

    def _close_transports(self):
        for transport in self._transports.values():
            transport.close()
        self._transports = {}


def _stream_protocol(loop):
    """A protocol for stdin's write pipe: flow control for StreamWriter.drain()."""
    import asyncio.streams
    return asyncio.streams.FlowControlMixin(loop=loop)


async def create_subprocess_exec(program, *args, stdin=None, stdout=None, stderr=None,
                                 limit=_STREAM_LIMIT, **kwargs):
    """asyncio.create_subprocess_exec for a sandboxed command: Popen's
    keywords (ops, cwd, env, pass_fds, the Container fields, max_output for
    communicate()); returns a Process-like object once the command runs
    (an exec failure raises here, as asyncio's does)."""
    import asyncio
    for name in ("text", "universal_newlines", "shell"):
        if kwargs.get(name):
            raise _typed_error(ValueError, "%s must be False" % name)
    for name in ("encoding", "errors"):
        if kwargs.get(name) is not None:
            raise _typed_error(ValueError, "%s must be None" % name)
    loop = asyncio.get_running_loop()
    popen = Popen((program,) + args, stdin=stdin, stdout=stdout, stderr=stderr,
                  _mode="async", **kwargs)
    try:
        process = _AsyncProcess(popen, loop)
    except BaseException:
        popen._release()
        raise
    try:
        await process._connect(limit)
        await process._started
    except BaseException:
        process._abandon()
        raise
    return process


async def run_async(args, ops=None, *, input=None, capture_output=False, timeout=None,
                    check=False, max_output=None, text=None, universal_newlines=None,
                    encoding=None, errors=None, **kwargs):
    """sandbox.run() for asyncio: the same arguments and results
    (a sandbox.CompletedProcess; subprocess.TimeoutExpired with the output
    read so far, the whole sandbox killed), without blocking the loop."""
    import asyncio
    if text is not None and universal_newlines is not None and \
            bool(universal_newlines) != bool(text):
        raise subprocess.SubprocessError(
            "Cannot disambiguate when both text and universal_newlines are supplied "
            "but different. Pass one or the other.")
    text_mode = bool(encoding or errors or text or universal_newlines)
    if input is not None:
        if kwargs.get("stdin") is not None:
            raise _typed_error(ValueError, "stdin and input arguments may not both be used.")
        kwargs["stdin"] = PIPE
        if text_mode and not isinstance(input, str):
            raise _typed_error(TypeError, "input: write() argument must be str, not %s"
                               % type(input).__name__)
        if not text_mode and isinstance(input, str):
            raise _typed_error(TypeError, "input: a bytes-like object is required, not 'str'")
    if capture_output:
        if kwargs.get("stdout") is not None or kwargs.get("stderr") is not None:
            raise _typed_error(ValueError, "stdout and stderr arguments may not be used "
                                           "with capture_output.")
        kwargs["stdout"] = kwargs["stderr"] = PIPE
    if text_mode:
        encoding = encoding or _text_encoding() or _locale_encoding()
        if input is not None:
            input = input.encode(encoding, errors or "strict")
    argv = [args] if isinstance(args, (str, bytes, os.PathLike)) else list(args)
    if not argv:
        raise _typed_error(IndexError, "args: empty command (list index out of range)")
    process = await create_subprocess_exec(*argv, ops=ops, max_output=max_output, **kwargs)
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(input), timeout)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        process._close_transports()
        output = process.partial_output()
        err = subprocess.TimeoutExpired(args, timeout, output[0], output[1])
        err.report = _timed_out(process.report, process._popen._started_at)
        raise err from None
    except BaseException:
        process.kill()
        await process.wait()
        process._close_transports()
        raise
    if text_mode:
        stdout, stderr = (None if data is None else
                          _decode_text(data, encoding, errors or "strict",
                                       name in process._truncated)
                          for name, data in (("stdout", stdout), ("stderr", stderr)))
    if check and process.returncode:
        raise subprocess.CalledProcessError(process.returncode, args, stdout, stderr)
    return CompletedProcess(args, process.returncode, stdout, stderr, process.report)


def _locale_encoding():
    import locale
    return locale.getpreferredencoding(False)


def _decode_text(data, encoding, errors, truncated):
    """Bytes to text as subprocess decodes them (universal newlines); a
    stream cut at max_output may end inside a character: it is dropped."""
    decoder = codecs.getincrementaldecoder(encoding)(errors)
    text = decoder.decode(data, final=not truncated)
    return text.replace("\r\n", "\n").replace("\r", "\n")


# ---------------------------------------------------------------------------
# The host check: what this host lets a sandbox use, why not, and what to do.
#
# check() probes for real (a clone with the sandbox's namespace flags, the
# id maps and a mount in it, a seccomp filter, Landlock's ABI, an overlay and
# an idmapped mount, the cgroup hierarchies) and starts a default sandbox.
# Each probe runs in a child cloned for it, or on detached mounts, so nothing
# on the host changes.  _userns_diagnosis() is shared with the clone failure
# of a sandbox, which names the reason and points at --check.
# ---------------------------------------------------------------------------

_CHECK_HINT = "see python3 sandbox.py --check"


def _sysctl(name):
    """An integer sysctl (/proc/sys/...), None where there is none."""
    try:
        with open("/proc/sys/" + name.replace(".", "/"), "rb") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _status_field(name):
    """A field of /proc/self/status (e.g. "Seccomp", "CapEff"), or None."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                key, _, value = line.decode().partition(":")
                if key == name:
                    return value.strip()
    except OSError:
        pass
    return None


def _userns_diagnosis(err, step="clone"):
    """(reason, remedy) for a user namespace that this process cannot
    create (err at clone) or use (err at `step`: "uid_map", "mount")."""
    maximum = _sysctl("user.max_user_namespaces")
    seccomp = _status_field("Seccomp")
    caps = _status_field("CapEff")
    if maximum == 0:
        return ("user namespaces are disabled: user.max_user_namespaces is 0",
                "as root on the host: sysctl -w user.max_user_namespaces=10000 "
                "(and in /etc/sysctl.d/ to keep it)")
    if _sysctl("kernel.unprivileged_userns_clone") == 0 and os.geteuid() != 0:
        return ("unprivileged user namespaces are disabled: "
                "kernel.unprivileged_userns_clone is 0 (Debian's switch)",
                "as root: sysctl -w kernel.unprivileged_userns_clone=1")
    if _sysctl("kernel.apparmor_restrict_unprivileged_userns") == 1 and step != "clone":
        return ("AppArmor restricts unprivileged user namespaces "
                "(kernel.apparmor_restrict_unprivileged_userns is 1, Ubuntu 23.10+): "
                "the namespace is made but has no capabilities (%s: %s)"
                % (step, os.strerror(err)),
                "as root: sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or an "
                "AppArmor profile for this interpreter with 'userns,' "
                "(/etc/apparmor.d/, as Ubuntu documents for bwrap)")
    if err == errno.ENOSPC:
        return ("the limit on user namespaces is reached (user.max_user_namespaces is %s)"
                % maximum, "raise user.max_user_namespaces, or end other sandboxes")
    if err == errno.EUSERS:
        return ("user namespaces nest too deep here (the kernel allows 32 levels)",
                "run the sandbox from a shallower namespace")
    if err == errno.EPERM and seccomp == "2":
        no_admin = caps is not None and not int(caps, 16) & (1 << CAP_SYS_ADMIN)
        return ("a seccomp filter on this process refuses to create namespaces%s "
                "(a container runtime's profile: Docker's allows it only with "
                "CAP_SYS_ADMIN)" % (" and it lacks CAP_SYS_ADMIN" if no_admin else ""),
                "run the container with a seccomp profile that allows clone/unshare with "
                "CLONE_NEWUSER (e.g. docker run --security-opt seccomp=unconfined), "
                "or with CAP_SYS_ADMIN")
    if err == errno.EPERM:
        return ("creating a user namespace is not permitted (%s: %s; in a chroot, or a "
                "security module refuses it)" % (step, os.strerror(err)),
                "run outside the chroot, or allow user namespaces in the security policy")
    return ("creating a user namespace fails (%s: %s)" % (step, os.strerror(err)),
            "see the kernel's user_namespaces(7) requirements")


def _in_clone(flags, body):
    """Clone a child with `flags`; it runs body(report) and exits, report
    sends ("step", errno) pairs back.  Returns [(step, errno), ...], the
    clone's own failure as ("clone", errno)."""
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    pid = _clone(flags)
    if pid == 0:
        try:
            os.close(read_end)

            def report(step, err):
                os.write(write_end, ("%s %d\n" % (step, err)).encode())
            body(report)
        finally:
            os._exit(0)
    os.close(write_end)
    if pid < 0:
        os.close(read_end)
        return [("clone", ctypes.get_errno())]
    try:
        text = _read_all(read_end).decode()     # (which closes it)
    finally:
        os.waitpid(pid, 0)
    return [(line.split()[0], int(line.split()[1])) for line in text.splitlines()]


def _step(report, name, call):
    """Run call(); report (name, errno); True when it worked."""
    try:
        call()
    except OSError as err:
        report(name, err.errno or errno.EINVAL)
        return False
    report(name, 0)
    return True


def _probe_namespaces(report, host_uid, host_gid):
    """In the clone: map ids as a sandbox does, mount a tmpfs, an overlay."""
    if not _step(report, "uid_map", lambda: _map_identity(0, 0, host_uid, host_gid)):
        return
    base = "/tmp" if os.path.isdir("/tmp") else "/"
    if not _step(report, "mount", lambda: (
            _mount(None, "/", None, MS_REC | MS_PRIVATE, None, "making / private"),
            _mount("tmpfs", base, "tmpfs", 0, "size=1m", "tmpfs"))):
        return

    def overlay():
        for name in ("lower", "upper", "work", "merged"):
            os.mkdir(os.path.join(base, name))
        _mount("overlay", os.path.join(base, "merged"), "overlay", 0,
               "lowerdir={0}/lower,upperdir={0}/upper,workdir={0}/work".format(base), "overlay")
    _step(report, "overlay", overlay)


def _probe_seccomp(report):
    # One instruction: return ALLOW.
    _step(report, "seccomp", lambda: (
        _prctl(PR_SET_NO_NEW_PRIVS, 1, what="no_new_privs"),
        _load_filter(struct.pack("<HBBI", 0x06, 0, 0, SECCOMP_RET_ALLOW))))


def _probe_idmap():
    """(step, errno) of an idmapped copy of /tmp's mount (detached, never
    attached anywhere), mapped through a child's user namespace."""
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    pid = _clone(CLONE_NEWUSER)
    if pid == 0:
        try:
            os.close(ready_w)
            os.read(ready_r, 1)
        finally:
            os._exit(0)
    os.close(ready_r)
    if pid < 0:
        os.close(ready_w)
        return "clone", ctypes.get_errno()
    tree = userns = None
    try:
        _write_file("/proc/%d/uid_map" % pid, b"0 %d 1" % os.geteuid(), "uid_map")
        _write_file("/proc/%d/setgroups" % pid, b"deny", "setgroups")
        _write_file("/proc/%d/gid_map" % pid, b"0 %d 1" % os.getegid(), "gid_map")
        userns = os.open("/proc/%d/ns/user" % pid, os.O_RDONLY | os.O_CLOEXEC)
        tree = _open_tree("/tmp" if os.path.isdir("/tmp") else "/",
                          OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC, "open_tree")
        _mount_setattr("", AT_EMPTY_PATH, "mount_setattr", attr_set=MOUNT_ATTR_IDMAP,
                       userns_fd=userns, dir_fd=tree)
        return "mount_setattr", 0
    except OSError as err:
        return "mount_setattr", err.errno or errno.EINVAL
    finally:
        _close_all([tree, userns, ready_w])
        os.waitpid(pid, 0)


def _cgroup_mounts():
    """{"cgroup2": [mount points], "cgroup": [(mount point, options)]}."""
    found = {"cgroup2": [], "cgroup": []}
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            entries = parse_mountinfo(f.read().decode("utf-8", "surrogateescape"))
    except OSError:
        return found
    for entry in entries:
        if entry.fstype == "cgroup2":
            found["cgroup2"].append(entry.mountpoint)
        elif entry.fstype == "cgroup":
            found["cgroup"].append((entry.mountpoint, entry.super_options))
    return found


def _own_cgroup2():
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        pass
    return None


def _read_words(path):
    try:
        with open(path) as f:
            return f.read().split()
    except OSError:
        return None


def _item(ok, detail, reason=None, remedy=None, required=False):
    return {"ok": bool(ok), "required": required, "detail": detail,
            "reason": None if ok else reason, "remedy": None if ok else remedy}


def check():
    """What this host supports for sandboxes, each with the reason and the
    remedy when it is missing: a dict {"ok": the default sandbox starts
    here, "checks": {name: {"ok", "required", "detail", "reason",
    "remedy"}}}.  Call it from a single-threaded process (the probes clone)."""
    checks = {}
    flags = _clone_flags(0, None)
    uid, gid = os.geteuid(), os.getegid()      # (in the clone: the overflow ids, until mapped)
    steps = dict(_in_clone(flags, lambda report: _probe_namespaces(report, uid, gid))) if SYS_clone is not None else {"clone": errno.ENOSYS}
    failed = next(((step, steps[step]) for step in ("clone", "uid_map", "mount")
                   if steps.get(step)), None)
    if failed is None and "mount" not in steps:
        failed = ("clone", errno.ECHILD)
    if failed is None:
        checks["user_namespaces"] = _item(True, "user, PID, mount, IPC, UTS, cgroup and network "
                                          "namespaces; ids mapped; mounts inside", required=True)
    else:
        reason, remedy = _userns_diagnosis(failed[1], failed[0])
        checks["user_namespaces"] = _item(False, "%s: %s" % (failed[0], os.strerror(failed[1])),
                                          reason, remedy, required=True)
    seccomp = dict(_in_clone(0, _probe_seccomp)).get("seccomp", errno.ECHILD)
    checks["seccomp"] = _item(
        seccomp == 0, "filters load" if seccomp == 0 else "loading a filter: %s" % os.strerror(seccomp),
        "the kernel refuses seccomp filters (CONFIG_SECCOMP_FILTER)" if seccomp == errno.EINVAL
        else "loading a seccomp filter fails", "a kernel built with CONFIG_SECCOMP_FILTER",
        required=True)
    abi = _libc.syscall(SYS_landlock_create_ruleset, None, ctypes.c_size_t(0),
                        ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION))
    landlock_err = ctypes.get_errno() if abi < 0 else 0
    abi = _landlock_abi()
    checks["landlock"] = _item(
        abi >= 1, _landlock_features(abi) if abi >= 1 else os.strerror(landlock_err),
        {errno.ENOSYS: "the kernel has no Landlock (5.13+, CONFIG_SECURITY_LANDLOCK)",
         errno.EOPNOTSUPP: "Landlock is built in but not enabled at boot"}.get(
            landlock_err, "Landlock is refused here (a seccomp filter around this process?)"),
        {errno.EOPNOTSUPP: "add landlock to the lsm= boot parameter"}.get(
            landlock_err, "a kernel with Landlock; sandboxes run without it (landlock=\"auto\")"))
    userns = checks["user_namespaces"]
    overlay = steps.get("overlay")
    if overlay is None:
        checks["overlayfs"] = _item(False, "not tried", userns["reason"], userns["remedy"])
    else:
        checks["overlayfs"] = _item(
            overlay == 0, "in a user namespace" if overlay == 0 else
            "mounting an overlay in a user namespace: %s" % os.strerror(overlay),
            "overlayfs is not available in a user namespace",
            "a kernel of 5.11 or later with overlayfs (modprobe overlay)")
    step, idmap = _probe_idmap()
    if step == "clone":
        checks["idmapped_mounts"] = _item(False, "not tried (no user namespace to map through)",
                                          userns["reason"], userns["remedy"])
    else:
        checks["idmapped_mounts"] = _item(
            idmap == 0, "an idmapped copy of /tmp's mount" if idmap == 0 else
            "mount_setattr(MOUNT_ATTR_IDMAP): %s" % os.strerror(idmap),
            "needs root on the host (CAP_SYS_ADMIN over the file system)"
            if idmap in (errno.EPERM, errno.EACCES) and os.geteuid() != 0
            else "the kernel or the file system has no idmapped mounts (5.12+)",
            "writable binds keep the caller's ids without them")
    mounts, own = _cgroup_mounts(), _own_cgroup2()
    if not mounts["cgroup2"]:
        checks["cgroup2"] = _item(False, "no cgroup2 mount", "no cgroup2 hierarchy is mounted",
                                  "mount -t cgroup2 none /sys/fs/cgroup (or boot with "
                                  "systemd.unified_cgroup_hierarchy=1)")
    else:
        directory = (mounts["cgroup2"][0].rstrip("/") + (own or "/")).rstrip("/")
        controllers = _read_words(os.path.join(directory, "cgroup.controllers")) or []
        delegated = os.access(directory, os.W_OK) and \
            os.access(os.path.join(directory, "cgroup.procs"), os.W_OK)
        detail = "%s: controllers %s; %s" % (directory, " ".join(controllers) or "none",
                                            "writable" if delegated else "not writable")
        wanted = [name for name in ("memory", "pids", "cpu") if name not in controllers]
        checks["cgroup2"] = _item(
            delegated and not wanted, detail,
            "%s%s" % ("not writable by this user (not delegated)" if not delegated else "",
                      ("; " if not delegated and wanted else "") +
                      ("controllers missing: %s" % " ".join(wanted) if wanted else "")),
            "a delegated cgroup (systemd-run --user --scope -p Delegate=yes, or cgroup= a "
            "writable cgroup2 directory) whose parent enables memory, pids and cpu")
    v1 = sorted(set(option for _, options in mounts["cgroup"] for option in options
                    if option in ("memory", "pids", "cpu", "cpuacct", "cpuset", "blkio",
                                  "devices", "freezer")))
    checks["cgroup_v1"] = _item(
        bool(v1), "controllers %s%s" % (" ".join(v1), "" if os.geteuid() == 0 else
                                        " (used by root callers only)") if v1 else "none",
        "no cgroup v1 controller is mounted", "none needed where cgroup2 has the controllers")
    if checks["user_namespaces"]["ok"]:
        try:
            cp = run(["true"], env={"PATH": _DEFAULT_PATH}, timeout=30)
            started, detail = cp.returncode == 0, "run(['true']) exited %d" % cp.returncode
        except (OSError, subprocess.SubprocessError) as err:
            started, detail = False, str(err)
        checks["default_sandbox"] = _item(started, detail, "the default sandbox fails: %s" % detail,
                                          "see the items above", required=True)
    else:
        checks["default_sandbox"] = _item(False, "not tried", checks["user_namespaces"]["reason"],
                                          checks["user_namespaces"]["remedy"], required=True)
    return {"ok": checks["default_sandbox"]["ok"], "checks": checks}


def _check_text(result):
    lines = []
    for name, item in result["checks"].items():
        lines.append("%-16s %-4s %s" % (name, "ok" if item["ok"] else
                                          ("FAIL" if item["required"] else "no"), item["detail"]))
        if not item["ok"]:
            lines.append("%-21s why: %s" % ("", item["reason"]))
            lines.append("%-21s fix: %s" % ("", item["remedy"]))
    lines.append("the default sandbox %s here" % ("works" if result["ok"] else "does NOT start"))
    return "\n".join(lines) + "\n"


def _run_check(as_json):
    """--check [--json]: print the host check; exit 0 when the default
    sandbox works here, 1 when it does not."""
    result = check()
    if as_json:
        import json
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        sys.stdout.write(_check_text(result))
    return 0 if result["ok"] else 1


# ---------------------------------------------------------------------------
# The command line: one option table that both personalities read.
#
# Each row of _OPTIONS is an _Option: its name(s), the names of its
# arguments (their count is the row's arity), a handler, the personalities
# that accept it (HARDENED: `sandbox.py` itself; BWRAP: the drop-in `bwrap`)
# and its help text.  Strings in the table are help headings.  The parser
# walks argv in order and calls handler(cl, option, *arguments) with the
# _CommandLine being built: a handler stores onto cl (cl.ops, cl.fields =
# Container fields, or an attribute of its own) and raises _UsageError for a
# bad value.  Most rows use a handler factory (_field, _set, _flag, _op...),
# so that a new option is one line.  An option whose meaning differs between
# the personalities is two rows with the same name, one for each.  --help is
# generated from the table.
#
# Exit status (hardened): the command's own; 128+N when it died of signal N;
# 125 when the sandbox could not be set up; 126 when the command cannot be
# executed and 127 when it is not found; 2 for a usage error.
# ---------------------------------------------------------------------------

EXIT_USAGE = 2
EXIT_SETUP = _SETUP_FAILED

HARDENED = "sandbox"
BWRAP = "bwrap"
_BOTH = (HARDENED, BWRAP)
_MAX_ARGS = 9000                   # bubblewrap's limit on argv plus --args words
_MAX_SIZE_ARG = 2**63 - 1          # bubblewrap's SIZE_MAX / 2


class _UsageError(Exception):
    """A bad command line: one line, without the program's prefix."""


class _Stop(Exception):
    """Raised by a handler to end parsing at once (--help, --version)."""


_ARGUMENT_WORDS = {1: "an argument", 2: "two arguments", 3: "three arguments"}


class _Option:
    """A row of the option table.

    names: the spellings; metavar: its arguments' names ("SRC DEST"), whose
    count is how many it takes; handler(cl, option, *args); where: the
    personalities that accept it; help: the text --help shows, or
    {personality: text} where the personalities word it differently (a
    tuple of texts, one per name, for bubblewrap's help, which lists each
    name on a line of its own); missing: the
    message when arguments are missing (%s is the option), bubblewrap's
    "takes N arguments" by default; last: given twice, a warning says the
    last wins (bubblewrap's warn_only_last_option); modifier: it modifies
    the next operation (--perms, --size), which may follow it."""

    __slots__ = ("names", "metavar", "nargs", "handler", "where", "help",
                 "missing", "last", "modifier")

    def __init__(self, names, metavar, handler, help, where=_BOTH, missing=None,
                 last=False, modifier=False):
        self.names = (names,) if isinstance(names, str) else tuple(names)
        self.metavar = metavar
        self.nargs = len(metavar.split())
        self.handler = handler
        self.where = (where,) if isinstance(where, str) else tuple(where)
        self.help = help
        self.missing = missing or "%%s takes %s" % _ARGUMENT_WORDS.get(self.nargs, "arguments")
        self.last = last
        self.modifier = modifier

    def help_for(self, personality):
        """The help text of each name, as `personality` words it."""
        text = self.help[personality] if isinstance(self.help, dict) else self.help
        return text if isinstance(text, tuple) else (text,) * len(self.names)


class _CommandLine:
    """What the options say, as the handlers leave it."""

    def __init__(self, personality):
        self.personality = personality
        self.index = _option_index(personality)
        self.ops = Ops()
        self.fields = {}           # Container fields, set as given
        self.flags = 0
        self.seccomp = 0
        self.env = dict(os.environ)
        self.chdir = None
        self.unshare = set()       # namespaces asked for: "user", "pid", ...
        # --unshare-user itself (not -try, not --unshare-all): what
        # bubblewrap's checks of --userns-block-fd and --disable-userns want
        self.unshare_user = False
        self.share_net = False     # hardened: FAllowNet
        self.die_with_parent = False
        self.new_session = False
        self.export = None
        self.disasm = False
        self.info_fd = None        # --info-fd: the start, then closed
        self.json_status_fd = None  # --json-status-fd: the start and the exit status
        self.seccomp_program = None     # --seccomp
        self.added_programs = []        # --add-seccomp-fd
        self.verbose = False
        self.level_prefix = False
        self.command = []
        self.action = None         # "help", "version"
        self.check = self.check_json = False     # --check [--json]
        # The parser's state: modifiers waiting for the next operation, the
        # options seen (for `last`), --args.
        self.next_perms = None
        self.next_size = None
        self.overlay_sources = []
        self.seen = set()
        self.in_args_file = False
        self.total_args = 0

    @property
    def program(self):
        return "bwrap" if self.personality == BWRAP else "sandbox"

    def warn(self, text):
        sys.stderr.write("%s%s: %s\n" % ("<4>" if self.level_prefix else "", self.program, text))

    def take_perms(self, default):
        """The mode --perms gave for this operation, else `default`."""
        perms, self.next_perms = self.next_perms, None
        return default if perms is None else perms

    def take_size(self):
        size, self.next_size = self.next_size, None
        return size or 0


# -- argument converters: (option, text) -> value, or _UsageError

def _path(option, text):
    if not text:
        raise _UsageError("%s: empty path" % option)
    if "\0" in text:
        raise _UsageError("%s: path contains NUL" % option)
    return text


def _decimal(text):
    """strtol base 10 for a non-negative int, or None."""
    return int(text) if text.isascii() and text.isdigit() else None


def _fd(option, text):
    value = _decimal(text)
    if value is None or value > 2**31 - 1:
        raise _UsageError("Invalid fd: %s" % text)
    return value


def _id(option, text):
    value = _decimal(text)
    if value is None or value > _MAX_ID:
        raise _UsageError("Invalid %s: %s" % (option.lstrip("-"), text))
    return value


def _mode(option, text):
    if not text or not text.isascii() or text.strip("01234567") or int(text, 8) > 0o7777:
        raise _UsageError("%s takes an octal argument <= 07777" % option)
    return int(text, 8)


def _size(option, text):
    """strtoull base 0, as bubblewrap reads --size."""
    digits, base = text, 10
    if text[:2] in ("0x", "0X"):
        digits, base = text[2:], 16
    elif text[:1] == "0" and len(text) > 1:
        digits, base = text[1:], 8
    try:
        value = int(digits, base) if text[:1].isdigit() and digits.isalnum() and digits.isascii() else 0
    except ValueError:
        value = 0
    if value == 0:
        raise _UsageError("%s takes a non-zero number of bytes" % option)
    if value > _MAX_SIZE_ARG:
        raise _UsageError("%s (for tmpfs) is limited to %d" % (option, _MAX_SIZE_ARG))
    return value


def _hostname(option, text):
    problem = "empty" if not text else _hostname_error(text)
    if problem:
        raise _UsageError("%s: invalid name %s (%s)" % (option, _q(text), problem))
    return text


def _text(option, text):
    return text


def _read_fd(option, fd):
    try:
        data = _read_all(fd)
    except OSError as err:
        raise _UsageError("%s: reading fd %d: %s" % (option, fd, err.strerror))
    try:
        os.close(fd)
    except OSError:
        pass
    return data


# -- handler factories: each returns handler(cl, option, *args)

def _field(name, convert=_text):
    """The argument, converted, is Container field `name`."""
    def handler(cl, option, value):
        cl.fields[name] = convert(option, value)
    return handler


def _field_is(name, value):
    """Container field `name` is a constant."""
    def handler(cl, option):
        cl.fields[name] = value
    return handler


def _set(attr, value):
    """Sets cl.<attr> to a constant."""
    def handler(cl, option):
        setattr(cl, attr, value)
    return handler


def _store(attr, convert=_text):
    """The argument, converted, is cl.<attr>."""
    def handler(cl, option, value):
        setattr(cl, attr, convert(option, value))
    return handler


def _append(attr, convert=_text):
    def handler(cl, option, value):
        getattr(cl, attr).append(convert(option, value))
    return handler


def _port(name):
    """Adds a TCP port to Container field `name` (a list)."""
    def handler(cl, option, value):
        port = _decimal(value)
        if port is None or port > 65535:
            raise _UsageError("%s: invalid port %s" % (option, _q(value)))
        cl.fields.setdefault(name, []).append(port)
    return handler


def _flag(bit):
    """Adds a HardeningFlags bit."""
    def handler(cl, option):
        cl.flags |= bit
    return handler


def _accepted(cl, option):
    """Accepted and meaningless here: the hardening always does it."""


def _unshare(*namespaces):
    def handler(cl, option):
        cl.unshare.update(namespaces)
        if "net" in namespaces:
            cl.share_net = False
    return handler


# -- handlers of their own

def _unshare_named(cl, option):
    """--unshare-X and --unshare-X-try: namespace X."""
    cl.unshare.add(option[len("--unshare-"):].replace("-try", ""))
    if option == "--unshare-user":
        cl.unshare_user = True


_BIND_FLAGS = {
    "--bind": BindWritable, "--ro-bind": 0, "--dev-bind": BindWritable | BindDevice,
    "--bind-try": BindWritable | BindOptional, "--ro-bind-try": BindOptional,
    "--dev-bind-try": BindWritable | BindDevice | BindOptional,
}


def _bind(cl, option, source, dest):
    cl.ops.bind(_path(option, source), _path(option, dest), _BIND_FLAGS[option])


def _mount_op(method):
    def handler(cl, option, dest):
        getattr(cl.ops, method)(_path(option, dest))
    return handler


def _tmpfs(cl, option, dest):
    cl.ops.tmpfs(_path(option, dest), cl.take_size(), cl.take_perms(0o755))


def _dir(cl, option, dest):
    cl.ops.mkdir(_path(option, dest), cl.take_perms(0o755))


def _symlink(cl, option, target, link):
    cl.ops.link(_path(option, target), _path(option, link))


def _bind_data(cl, option, fd, dest):
    """--bind-data, --ro-bind-data: a hidden file, mode 0600 unless --perms."""
    data = _read_fd(option, _fd(option, fd))
    cl.ops.place(_path(option, dest), data, cl.take_perms(0o600), option == "--bind-data")


def _file(cl, option, fd, dest):
    data = _read_fd(option, _fd(option, fd))
    cl.ops.file(_path(option, dest), data, cl.take_perms(0o666))


def _chmod(cl, option, perms, path):
    cl.ops.chmod(_path(option, path), _mode(option, perms))


def _bind_fd(cl, option, fd, dest):
    flags = BindWritable if option == "--bind-fd" else 0
    cl.ops.bind_fd(_fd(option, fd), _path(option, dest), flags)


def _overlay_src(cl, option, source):
    cl.overlay_sources.append(_path(option, source))


def _overlay(cl, option, *args):
    """--overlay RW WORK DEST, --tmp-overlay DEST, --ro-overlay DEST: on
    the --overlay-src given since the last overlay."""
    needed = 2 if option == "--ro-overlay" else 1
    if len(cl.overlay_sources) < needed:
        raise _UsageError("%s requires at least %s --overlay-src"
                          % (option, "two" if needed == 2 else "one"))
    upper = work = None
    if option == "--overlay":
        upper, work = _path(option, args[0]), _path(option, args[1])
    elif option == "--tmp-overlay":
        upper = "tmp"
    cl.ops.overlay(_path(option, args[-1]), cl.overlay_sources, upper, work)
    cl.overlay_sources = []


def _argv0(cl, option, value):
    if "argv0" in cl.fields:
        raise _UsageError("--argv0 used multiple times")
    cl.fields["argv0"] = value


def _lock_file(cl, option, path):
    cl.fields.setdefault("lock_files", []).append(_path(option, path))


def _seccomp_program(option, fd):
    try:
        data = _read_all(_fd(option, fd))
    except OSError as err:       # bubblewrap's words
        raise _UsageError("Can't read seccomp data: %s" % err.strerror)
    if len(data) % 8:
        raise _UsageError("Invalid seccomp data, must be multiple of 8")
    return data


def _seccomp_fd(cl, option, fd):
    """--seccomp FD: the program (the last given), loaded after the
    built-in filter."""
    if cl.added_programs:
        raise _UsageError("--seccomp cannot be combined with --add-seccomp-fd")
    cl.seccomp_program = _seccomp_program(option, fd)


def _add_seccomp_fd(cl, option, fd):
    if cl.seccomp_program is not None:
        raise _UsageError("--add-seccomp-fd cannot be combined with --seccomp")
    cl.added_programs.append(_seccomp_program(option, fd))


def _capability(option, text):
    """--cap-drop's argument checked as --cap-add/--cap-drop read it."""
    scratch = _CommandLine.__new__(_CommandLine)
    scratch.fields = {}
    _cap_option(scratch, option, text)


def _cap_drop(cl, option, name):
    """--cap-drop (hardened): no capability is kept anyway."""
    _capability(option, name)


def _cap_add(cl, option, name):
    _capability(option, name)
    raise _UsageError("--cap-add %s: the sandbox keeps no capability (--privileged keeps "
                      "CAP_SYS_ADMIN)" % name)


def _remount_ro(cl, option, dest):
    cl.ops.remount_ro(_path(option, dest))


def _perms(cl, option, value):
    if cl.next_perms is not None:
        raise _UsageError("--perms given twice for the same action")
    cl.next_perms = _mode(option, value)


def _size_modifier(cl, option, value):
    if cl.next_size is not None:
        raise _UsageError("--size given twice for the same action")
    cl.next_size = _size(option, value)


def _share_net(cl, option):
    cl.unshare.discard("net")
    cl.share_net = True


def _setenv(cl, option, name, value):
    if not name or "=" in name or "\0" in name + value:
        raise _UsageError("%s: invalid variable %s" % (option, _q(name)))
    cl.env[name] = value


def _unsetenv(cl, option, name):
    cl.env.pop(name, None)


def _clearenv(cl, option):
    cl.env = {}


def _chdir(cl, option, value):
    cl.chdir = _path(option, value)


def _multiarch(cl, option):
    cl.seccomp |= FlagMultiarch


def _seccomp_rule_option(action_of):
    """--seccomp-deny NAME[,NAME...][:ERRNO] / --seccomp-allow NAME[,...]:
    user seccomp Rules (names or @groups), in the order given."""
    def handler(cl, option, value):
        names, errno_text = value, None
        if action_of is not None and ":" in value:
            names, _, errno_text = value.rpartition(":")
        try:
            action = "allow" if action_of is None else (
                "deny:" + errno_text if errno_text is not None else "deny")
            rules = [Rule(name.strip(), action) for name in names.split(",")]
        except SandboxError as err:
            raise _UsageError("%s %s: %s" % (option, value, str(err).replace("seccomp: ", "")))
        cl.fields.setdefault("seccomp_rules", []).extend(rules)
    return handler


def _limit(name, convert):
    """Sets field `name` of the Container's Limits (made on first use)."""
    def handler(cl, option, value):
        limits = cl.fields.setdefault("limits", Limits())
        setattr(limits, name, convert(option, value))
    return handler


def _limit_value(parse):
    """A converter from one of the Limits parsers: a bad value is a usage error."""
    def convert(option, text):
        try:
            return parse(text.strip(), option)
        except SandboxError as err:
            raise _UsageError(str(err))
    return convert


def _count_text(text, what):
    if not text.isascii() or not text.isdigit():
        raise SandboxError("%s: invalid number %s" % (what, _q(text)), errno.EINVAL)
    return _parse_count(int(text), what)


def _seconds_text(text, what):
    try:
        value = float(text)
    except ValueError:
        raise SandboxError("%s: invalid number of seconds %s" % (what, _q(text)), errno.EINVAL)
    return _parse_seconds(value, what)


def _rlimit_option(cl, option, value):
    """--rlimit NAME=SOFT[:HARD]: any RLIMIT_* (NAME with or without the
    prefix, any case), values in bytes or with a unit, or "unlimited"."""
    name, equals, values = value.partition("=")
    soft, _, hard = values.partition(":")
    try:
        if not equals or not soft:
            raise SandboxError("%s: expected NAME=SOFT[:HARD], not %s" % (option, _q(value)),
                               errno.EINVAL)
        number = _rlimit_number(name, option)
        pair = tuple(_rlimit_value(None if v in ("unlimited", "infinity") else v, option)
                     for v in (soft, hard or soft))
    except SandboxError as err:
        raise _UsageError(str(err))
    limits = cl.fields.setdefault("limits", Limits())
    limits.rlimits = dict(limits.rlimits or {})
    limits.rlimits[number] = pair


def _args_file(cl, option, fd):
    """--args FD: the NUL-separated words read from FD are parsed right
    here, as if they stood in argv; a non-option ends them."""
    if cl.in_args_file:
        raise _UsageError("--args not supported in arguments file")
    fd = _fd(option, fd)
    try:
        data = _read_all(fd)
    except OSError as err:
        raise _UsageError("Can't read --args data: %s" % err.strerror)
    try:
        os.close(fd)
    except OSError:
        pass
    words = data.split(b"\0")
    if not words[-1]:
        words.pop()              # the final NUL is optional
    cl.total_args += len(words)
    if cl.total_args > _MAX_ARGS:
        raise _UsageError("Exceeded maximum number of arguments %d" % _MAX_ARGS)
    cl.in_args_file = True
    try:
        _parse_words(cl, [os.fsdecode(word) for word in words])
    finally:
        cl.in_args_file = False


def _cap_option(cl, option, name):
    """--cap-add/--cap-drop, in order, as libcap's cap_from_name reads CAP."""
    if name.lower() == "all":
        cap = None
    elif name.isascii() and name.isdigit():
        cap = int(name)
        if cap > 63:
            raise _UsageError("unknown cap: %s" % name)
    else:
        lowered = name.lower()
        if not lowered.startswith("cap_") or lowered[4:] not in _CAP_NAMES:
            raise _UsageError("unknown cap: %s" % name)
        cap = _CAP_NAMES.index(lowered[4:])
    cl.fields.setdefault("_cap_changes", []).append((option == "--cap-add", cap))


def _label(cl, option, label):
    raise _UsageError("labeling not supported on this system")


def _action(name):
    def handler(cl, option):
        cl.action = name
        raise _Stop
    return handler


_OPTIONS = [
    # help: one text, or {personality: text} where they differ; bubblewrap's
    # personality prints bubblewrap 0.11.1's own words, one line per name
    # (a row of several names gives a tuple of texts).
    "File system (applied in order):",
    _Option("--bind", "SRC DEST", _bind, {
        HARDENED: "bind SRC on DEST read-write",
        BWRAP: "Bind mount the host path SRC on DEST"}),
    _Option("--ro-bind", "SRC DEST", _bind, {
        HARDENED: "bind SRC on DEST read-only",
        BWRAP: "Bind mount the host path SRC readonly on DEST"}),
    _Option("--dev-bind", "SRC DEST", _bind, {
        HARDENED: "bind SRC on DEST, devices allowed",
        BWRAP: "Bind mount the host path SRC on DEST, allowing device access"}),
    _Option(("--bind-try", "--ro-bind-try", "--dev-bind-try"), "SRC DEST", _bind, {
        HARDENED: "the same, skipped when SRC does not exist",
        BWRAP: ("Equal to --bind but ignores non-existent SRC",
                "Equal to --ro-bind but ignores non-existent SRC",
                "Equal to --dev-bind but ignores non-existent SRC")}),
    _Option("--bind-fd", "FD DEST", _bind_fd, {
        HARDENED: "bind the directory open as FD on DEST",
        BWRAP: "Bind open directory or path fd on DEST"}),
    _Option("--ro-bind-fd", "FD DEST", _bind_fd, {
        HARDENED: "the same, read-only",
        BWRAP: "Bind open directory or path fd read-only on DEST"},
            missing="--bind-fd takes two arguments"),
    _Option("--overlay-src", "SRC", _overlay_src, {
        HARDENED: "a lower layer of the next overlay (the last given is the top)",
        BWRAP: "Read files from SRC in the following overlay"}),
    _Option("--overlay", "RWSRC WORKDIR DEST", _overlay, {
        HARDENED: "mount an overlay on DEST, writes going to RWSRC (WORKDIR: an empty "
                  "directory on its file system)",
        BWRAP: "Mount overlayfs on DEST, with RWSRC as the host path for writes and\n"
               "WORKDIR an empty directory on the same filesystem as RWSRC"}),
    _Option("--tmp-overlay", "DEST", _overlay, {
        HARDENED: "an overlay on DEST, writes going to a tmpfs lost at exit",
        BWRAP: "Mount overlayfs on DEST, with writes going to an invisible tmpfs"}),
    _Option("--ro-overlay", "DEST", _overlay, {
        HARDENED: "a read-only overlay on DEST",
        BWRAP: "Mount overlayfs read-only on DEST"}),
    _Option("--proc", "DEST", _mount_op("proc"), {
        HARDENED: "mount a new procfs on DEST",
        BWRAP: "Mount new procfs on DEST"}),
    _Option("--dev", "DEST", _mount_op("dev"), {
        HARDENED: "mount a minimal /dev on DEST",
        BWRAP: "Mount new dev on DEST"}),
    _Option("--tmpfs", "DEST", _tmpfs, {
        HARDENED: "mount a tmpfs on DEST",
        BWRAP: "Mount new tmpfs on DEST"}),
    _Option("--mqueue", "DEST", _mount_op("mqueue"), {
        HARDENED: "mount a new mqueue on DEST",
        BWRAP: "Mount new mqueue on DEST"}),
    _Option("--dir", "DEST", _dir, {
        HARDENED: "create a directory",
        BWRAP: "Create dir at DEST"}),
    _Option("--symlink", "SRC DEST", _symlink, {
        HARDENED: "create a symlink DEST pointing to SRC",
        BWRAP: "Create symlink at DEST with target SRC"}),
    _Option("--file", "FD DEST", _file, {
        HARDENED: "create DEST holding the bytes read from FD (mode 0666)",
        BWRAP: "Copy from FD to destination DEST"}),
    _Option("--bind-data", "FD DEST", _bind_data, {
        HARDENED: "bind a file holding the bytes read from FD on DEST (mode 0600)",
        BWRAP: "Copy from FD to file which is bind-mounted on DEST"}),
    _Option("--ro-bind-data", "FD DEST", _bind_data, {
        HARDENED: "the same, read-only",
        BWRAP: "Copy from FD to file which is readonly bind-mounted on DEST"}),
    _Option("--chmod", "OCTAL PATH", _chmod, {
        HARDENED: "change the mode of PATH",
        BWRAP: "Change permissions of PATH (must already exist)"}),
    _Option("--remount-ro", "DEST", _remount_ro, {
        HARDENED: "remount the mount at DEST read-only",
        BWRAP: "Remount DEST as readonly; does not recursively remount"},
            missing="%s takes one argument"),
    _Option("--size", "BYTES", _size_modifier, {
        HARDENED: "size of the next --tmpfs",
        BWRAP: "Set size of next argument (only for --tmpfs)"}, modifier=True),
    _Option("--perms", "OCTAL", _perms, {
        HARDENED: "mode of the next --tmpfs, --dir, --file, --bind-data or --ro-bind-data",
        BWRAP: "Set permissions of next argument (--bind-data, --file, etc.)"},
            modifier=True),
    "Identity and environment:",
    _Option("--uid", "UID", _field("uid", _id), {
        HARDENED: "uid inside (default: the overflow id, 65534)",
        BWRAP: "Custom uid in the sandbox (requires --unshare-user or --userns)"}, last=True),
    _Option("--gid", "GID", _field("gid", _id), {
        HARDENED: "gid inside (default: the overflow id, 65534)",
        BWRAP: "Custom gid in the sandbox (requires --unshare-user or --userns)"}, last=True),
    _Option("--host-uid", "N", _field("host_uid", _id), "uid the sandbox holds on the host "
            "(default: the caller's; for root, the overflow id)", where=HARDENED, last=True),
    _Option("--host-gid", "N", _field("host_gid", _id), "gid the sandbox holds on the host "
            "(default: the caller's; for root, the overflow id)", where=HARDENED, last=True),
    _Option("--hostname", "NAME", _field("hostname", _hostname), {
        HARDENED: "hostname inside",
        BWRAP: "Custom hostname in the sandbox (requires --unshare-uts)"}, last=True),
    _Option("--chdir", "DIR", _chdir, {
        HARDENED: "working directory (default: the current one if it is bound at the same "
                  "path, else /)",
        BWRAP: "Change directory to DIR"}, missing="%s takes one argument", last=True),
    _Option("--setenv", "VAR VALUE", _setenv, {
        HARDENED: "set VAR in the environment",
        BWRAP: "Set an environment variable"}),
    _Option("--unsetenv", "VAR", _unsetenv, {
        HARDENED: "remove VAR from the environment",
        BWRAP: "Unset an environment variable"}),
    _Option("--clearenv", "", _clearenv, {
        HARDENED: "start from an empty environment (else inherited)",
        BWRAP: "Unset all environment variables"}),
    _Option("--argv0", "VALUE", _argv0, {
        HARDENED: "argv[0] of the command (COMMAND is still what runs)",
        BWRAP: "Set argv[0] to the value VALUE before running the program"},
            missing="%s takes one argument"),
    "Hardening (everything is denied unless allowed):",
    _Option("--share-net", "", _share_net, {
        HARDENED: "keep the host's network",
        BWRAP: "Retain the network namespace (can only combine with --unshare-all)"}),
    _Option("--allow-devel", "", _flag(FAllowDevel), "allow ptrace, perf_event_open, personality",
            where=HARDENED),
    _Option("--allow-userns", "", _flag(FAllowUserns), "allow namespaces and mounts inside",
            where=HARDENED),
    _Option("--allow-tty", "", _flag(FAllowTTY), "keep the terminal (job control; TIOCSTI "
            "allowed)", where=HARDENED),
    _Option("--syscall-compat", "", _flag(FSyscallCompat), "drop the extended syscall denials",
            where=HARDENED),
    _Option("--multiarch", "", _multiarch, "accept the compat architecture (i386, arm)",
            where=HARDENED),
    _Option("--privileged", "", _field_is("privileged", True), "keep CAP_SYS_ADMIN inside",
            where=HARDENED),
    _Option("--cap-drop", "CAP", _cap_drop, "accepted: no capability is kept",
            where=HARDENED),
    _Option("--cap-add", "CAP", _cap_add, "refused (--privileged keeps CAP_SYS_ADMIN)",
            where=HARDENED),
    _Option("--seccomp", "FD", _seccomp_fd, {
        HARDENED: "load the seccomp program read from FD too (after the built-in filter)",
        BWRAP: "Load and use seccomp rules from FD (not repeatable)"}, last=True),
    _Option("--add-seccomp-fd", "FD", _add_seccomp_fd, {
        HARDENED: "the same, repeatable, loaded in order",
        BWRAP: "Load and use seccomp rules from FD (repeatable)"}),
    _Option("--unshare-all", "", _unshare("user", "ipc", "pid", "net", "uts", "cgroup"), {
        HARDENED: "accepted: always in force (and undoes an earlier --share-net)",
        BWRAP: "Unshare every namespace we support by default"}),
    _Option("--unshare-net", "", _unshare("net"), {
        HARDENED: "the same for the network",
        BWRAP: "Create new network namespace"}),
    _Option(("--unshare-user", "--unshare-user-try", "--unshare-pid", "--unshare-ipc",
             "--unshare-uts", "--unshare-cgroup", "--unshare-cgroup-try"), "",
            _unshare_named, {
                HARDENED: "accepted: always in force",
                BWRAP: ("Create new user namespace (may be automatically implied if not "
                        "setuid)",
                        "Create new user namespace if possible else continue by skipping it",
                        "Create new pid namespace",
                        "Create new ipc namespace",
                        "Create new uts namespace",
                        "Create new cgroup namespace",
                        "Create new cgroup namespace if possible else continue by skipping "
                        "it")}),
    _Option("--die-with-parent", "", _set("die_with_parent", True), {
        HARDENED: "accepted: always in force",
        BWRAP: "Kills with SIGKILL child process (COMMAND) when bwrap or bwrap's parent "
               "dies."}),
    _Option("--new-session", "", _set("new_session", True), {
        HARDENED: "accepted: always in force",
        BWRAP: "Create a new terminal session"}),
    "Landlock (on where the kernel has it; -v says what applies):",
    _Option("--no-landlock", "", _field_is("landlock", "off"), "no Landlock ruleset",
            where=HARDENED),
    _Option("--require-landlock", "", _field_is("landlock", "require"),
            "fail where the kernel has no Landlock", where=HARDENED),
    _Option("--allow-connect", "PORT", _port("allow_connect"),
            "TCP connect only to PORT (repeatable)", where=HARDENED),
    _Option("--allow-bind", "PORT", _port("allow_bind"),
            "TCP bind only to PORT (repeatable)", where=HARDENED),
    "Seccomp:",
    _Option("--seccomp-export", "FILE", _store("export"),
            "write the filter (struct sock_filter[]) and exit", where=HARDENED),
    _Option("--seccomp-disasm", "", _set("disasm", True), "print the filter readably and exit",
            where=HARDENED),
    _Option("--seccomp-deny", "NAME[,NAME...][:ERRNO]", _seccomp_rule_option("deny"),
            "refuse these syscalls or @groups with ERRNO (a name or a number; default "
            "EPERM)",
            where=HARDENED),
    _Option("--seccomp-allow", "NAME[,NAME...]", _seccomp_rule_option(None),
            "allow these syscalls or @groups, which the policy refuses", where=HARDENED),
    "Limits (the run report: --report-fd):",
    _Option("--memory", "SIZE", _limit("memory", _limit_value(_parse_size)),
            "memory of the whole sandbox where a cgroup is used, else of each process "
            "(RLIMIT_AS); SIZE in bytes or with K, M, G", where=HARDENED),
    _Option("--pids", "N", _limit("pids", _limit_value(_count_text)),
            "at most N processes of the command at once", where=HARDENED),
    _Option("--cpu-time", "SECONDS", _limit("cpu_time", _limit_value(_seconds_text)),
            "CPU time of each process (SIGXCPU, then SIGKILL a second later)", where=HARDENED),
    _Option("--timeout", "SECONDS", _limit("wall_time", _limit_value(_seconds_text)),
            "kill the whole sandbox after SECONDS; exit 124", where=HARDENED),
    _Option("--file-size", "SIZE", _limit("file_size", _limit_value(_parse_size)),
            "largest file the command may write (SIGXFSZ)", where=HARDENED),
    _Option("--open-files", "N", _limit("open_files", _limit_value(_count_text)),
            "open files of each process", where=HARDENED),
    _Option("--rlimit", "NAME=SOFT[:HARD]", _rlimit_option,
            "any other RLIMIT_* (e.g. STACK=8M, NOFILE=64:128, CORE=unlimited)",
            where=HARDENED),
    _Option("--cgroup", "DIR", _field("cgroup", _path),
            "a cgroup2 directory this user can write (e.g. delegated): each sandbox gets a "
            "child cgroup there that carries --memory and --pids", where=HARDENED),
    _Option("--report-fd", "FD", _store("report_fd", _fd),
            "write the run report to FD: one JSON object (status, exit_code, signal, "
            "wall_time, cpu_user, cpu_system, max_rss, memory_peak, ...)", where=HARDENED),
    "Host:",
    _Option("--check", "", _set("check", True), "what this host supports for sandboxes, why "
            "not and what to do; exit 0 when the default sandbox works here", where=HARDENED),
    _Option("--json", "", _set("check_json", True), "with --check: one JSON object",
            where=HARDENED),
    "Status and the command line:",
    _Option("--info-fd", "FD", _store("info_fd", _fd), {
        HARDENED: "write the command's pid and the namespaces' ids to FD as JSON once it is "
                  "created, then close FD",
        BWRAP: "Write information about the running container to FD"}, last=True),
    _Option("--json-status-fd", "FD", _store("json_status_fd", _fd), {
        HARDENED: 'the same on one line, then {"exit-code": N} at the end',
        BWRAP: "Write container status to FD as multiple JSON documents"}, last=True),
    _Option("--lock-file", "DEST", _lock_file, {
        HARDENED: "hold a read lock on DEST (inside) while the sandbox runs",
        BWRAP: "Take a lock on DEST while sandbox is running"}),
    _Option("--sync-fd", "FD", _field("sync_fd", _fd), {
        HARDENED: "keep FD open while the sandbox runs",
        BWRAP: "Keep this fd open while sandbox is running"}, last=True),
    _Option("--block-fd", "FD", _field("block_fd", _fd), {
        HARDENED: "read a byte from FD before the command starts",
        BWRAP: "Block on FD until some data to read is available"}, last=True),
    _Option("--userns-block-fd", "FD", _field("userns_block_fd", _fd),
            "Block on FD until the user namespace is ready", where=BWRAP, last=True),
    _Option("--args", "FD", _args_file, {
        HARDENED: "read more options from FD, NUL-separated",
        BWRAP: "Parse NUL-separated args from FD"}),
    _Option(("-v", "--verbose"), "", _set("verbose", True), "say what is being run",
            where=HARDENED),
    _Option(("-h", "--help"), "", _action("help"), "this help", where=HARDENED),
    _Option("--help", "", _action("help"), "Print this help", where=BWRAP),
    _Option("--version", "", _action("version"), {
        HARDENED: "the version",
        BWRAP: "Print version"}),
    "Namespaces, identity and capabilities (bwrap):",
    _Option("--userns", "FD", _field("userns_fd", _fd),
            "Use this user namespace (cannot combine with --unshare-user)",
            where=BWRAP, last=True),
    _Option("--userns2", "FD", _field("userns2_fd", _fd),
            "After setup switch to this user namespace, only useful with --userns",
            where=BWRAP, last=True),
    _Option("--pidns", "FD", _field("pidns_fd", _fd),
            "Use this pid namespace (as parent namespace if using --unshare-pid)",
            where=BWRAP, last=True),
    _Option("--disable-userns", "", _field_is("disable_userns", True),
            "Disable further use of user namespaces inside sandbox", where=BWRAP),
    _Option("--assert-userns-disabled", "", _field_is("assert_userns_disabled", True),
            "Fail unless further use of user namespace inside sandbox is disabled",
            where=BWRAP),
    _Option("--as-pid-1", "", _field_is("as_pid_1", True),
            "Do not install a reaper process with PID=1", where=BWRAP),
    _Option(("--cap-add", "--cap-drop"), "CAP", _cap_option,
            ("Add cap CAP when running as privileged user",
             "Drop cap CAP when running as privileged user"), where=BWRAP),
    _Option(("--exec-label", "--file-label"), "LABEL", _label, {
        HARDENED: "SELinux labels (not supported)",
        BWRAP: ("Exec label for the sandbox",
                "File label for temporary sandbox content")}, last=True),
    _Option("--level-prefix", "", _set("level_prefix", True),
            "Prepend e.g. <3> to diagnostic messages", where=BWRAP),
]


def _option_index(personality):
    """{spelling: row} of the rows `personality` accepts."""
    index = {}
    for row in _OPTIONS:
        if isinstance(row, _Option) and personality in row.where:
            for name in row.names:
                index[name] = row
    return index


def parse_command_line(argv, personality=HARDENED):
    """Parse argv (without the program name) the way bubblewrap does, with
    the table's rows for `personality`; returns the _CommandLine."""
    cl = _CommandLine(personality)
    cl.total_args = len(argv)
    try:
        rest = _parse_words(cl, argv)
    except _Stop:
        return cl
    if cl.overlay_sources:
        raise _UsageError("--overlay-src must be followed by another --overlay-src or one of "
                          "--overlay, --tmp-overlay, or --ro-overlay")
    if personality == HARDENED:
        # bubblewrap ignores a dangling modifier; here it is a mistake.
        if cl.next_size is not None:
            raise _UsageError("--size must be followed by --tmpfs")
        if cl.next_perms is not None:
            raise _UsageError("--perms must be followed by an option that creates a file")
    cl.command = rest
    if cl.check_json and not cl.check:
        raise _UsageError("--json goes with --check")
    if not cl.command and cl.export is None and not cl.disasm and not cl.check:
        raise _UsageError("no command given")
    return cl


def _parse_words(cl, words):
    """Apply the options at the start of `words`; returns what follows them
    (after a `--`)."""
    if cl.total_args > _MAX_ARGS:
        raise _UsageError("Exceeded maximum number of arguments %d" % _MAX_ARGS)
    i = 0
    while i < len(words):
        option = words[i]
        if option == "--":
            i += 1
            break
        if not option.startswith("-"):
            break
        row = cl.index.get(option)
        if row is None:
            raise _UsageError("Unknown option %s" % option)
        if i + row.nargs >= len(words):
            raise _UsageError(row.missing.replace("%s", option))
        if row.last:
            if row.names[0] in cl.seen:
                cl.warn("Only the last %s option will take effect" % option)
            cl.seen.add(row.names[0])
        row.handler(cl, option, *words[i + 1:i + 1 + row.nargs])
        if not row.modifier:
            # A modifier applies to the very next operation, which took it.
            if cl.next_perms is not None:
                raise _UsageError("--perms must be followed by an option that creates a file")
            if cl.next_size is not None:
                raise _UsageError("--size must be followed by --tmpfs")
        if option != "--overlay-src" and cl.overlay_sources:
            raise _UsageError("--overlay-src must be followed by another --overlay-src or one "
                              "of --overlay, --tmp-overlay, or --ro-overlay")
        i += 1 + row.nargs
    return words[i:]


_HELP_INTRO = """\
usage: python3 sandbox.py [OPTION...] [--] COMMAND [ARG...]

Run COMMAND in an unprivileged container with new user, PID, mount, IPC, UTS,
cgroup and network namespaces, no capabilities and a seccomp filter.  With no
file-system option, the host's /usr, /bin, /sbin, /lib*, /etc are bound
read-only and /proc, /dev and a /tmp are made.

"""
_HELP_OUTRO = """
Exit status: the command's; 128+N if it died of signal N; 125 setup failed;
126 cannot execute; 127 not found; 2 usage error.
"""


def _wrap(text, width):
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = line + " " + word if line else word
    return lines + [line]


def _help_text(personality=HARDENED, intro=_HELP_INTRO, outro=_HELP_OUTRO):
    """--help, from the table: each heading and the rows `personality`
    accepts under it."""
    out, heading = [intro], None
    for row in _OPTIONS:
        if isinstance(row, str):
            heading = row
            continue
        if personality not in row.where:
            continue
        if heading is not None:          # a heading without rows here is left out
            out.append(heading + "\n")
            heading = None
        usage = "  " + ", ".join(row.names) + (" " + row.metavar if row.metavar else "")
        help_lines = _wrap(row.help_for(personality)[0], 80 - 27)
        if len(usage) > 25:
            out.extend("  " * (1 + (n > 0)) + line + "\n"
                       for n, line in enumerate(_wrap(usage, 80 - 4)))
        else:
            out.append("%-27s%s\n" % (usage, help_lines.pop(0)))
        out.extend(" " * 27 + line + "\n" for line in help_lines)
    out.append(outro)
    return "".join(out)


def _seccomp_programs_of(cl):
    """--seccomp's program, or --add-seccomp-fd's in order."""
    if cl.seccomp_program is not None:
        return [cl.seccomp_program]
    return list(cl.added_programs)


def _working_directory(container, cl):
    """bubblewrap's: --chdir, else the current directory if it exists
    inside, else $HOME (as --setenv left it), else /; PWD is set to it."""
    if cl.chdir is not None:
        container.dir, container._dir_fallbacks = cl.chdir, []
        return
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = "/"
    home = cl.env.get("HOME", "")
    container.dir = cwd
    container._dir_fallbacks = ([home] if home.startswith("/") else []) + ["/"]


def _namespace_ids(container, cl):
    """(name, inode) of the namespaces the sandbox has of its own, as
    bubblewrap lists them (cgroup, ipc, mnt, net, pid, uts; never user)."""
    if cl.personality == HARDENED:
        shown = {"cgroup", "ipc", "mnt", "pid", "uts"} | (
            set() if container.flags & FAllowNet else {"net"})
    else:
        shown = {"mnt"} | cl.unshare
    return [(name, ino) for name, ino in container._namespaces if name in shown]


def _write_status(fd, text, what="--info-fd"):
    try:
        _write_all(fd, text.encode())
    except OSError as err:
        raise SandboxError("Write to info_fd (%s %d)" % (what, fd), err.errno)


def _report_start(container, cl):
    """--info-fd and --json-status-fd, right after the sandbox is created:
    bubblewrap's JSON, byte for byte."""
    if cl.info_fd is None and cl.json_status_fd is None:
        return
    ids = _namespace_ids(container, cl)
    if cl.info_fd is not None:
        _write_status(cl.info_fd, '{\n    "child-pid": %d%s\n}\n' % (container.pid, "".join(
            ',\n    "%s-namespace": %d' % item for item in ids)))
        os.close(cl.info_fd)
    if cl.json_status_fd is not None:
        _write_status(cl.json_status_fd, '{ "child-pid": %d%s }\n' % (container.pid, "".join(
            ', "%s-namespace": %d' % item for item in ids)), "--json-status-fd")


def _die_with_parent():
    """SIGKILL this process when its parent dies (SPEC 3.8): its death
    kills init (whose parent-death signal is set too), and so the whole
    sandbox.  A parent that died before the prctl() took effect is seen
    as a change of getppid(), as bubblewrap checks it."""
    parent = os.getppid()
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, what="parent-death signal")
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)


def main(argv=None):
    """The command line; returns the exit status."""
    program = sys.argv[0] if argv is None else "sandbox.py"
    argv = sys.argv[1:] if argv is None else list(argv)
    if os.path.basename(program) == "bwrap":
        return _bwrap_main(program, argv)
    if argv[:1] == ["--bwrap"]:
        return _bwrap_main(program, argv[1:])
    _die_with_parent()      # (bubblewrap's personality: only with --die-with-parent)
    try:
        cl = parse_command_line(argv)
        if cl.check and (cl.command or len(argv) > 1 + cl.check_json):
            raise _UsageError("--check takes only --json")
        if "limits" in cl.fields:     # limits: a bad combination is a usage error too
            try:
                cl.fields["limits"]._checked()
            except SandboxError as err:
                raise _UsageError(str(err))
    except _UsageError as err:
        sys.stderr.write("sandbox: %s (see --help)\n" % err)
        return EXIT_USAGE
    if cl.check and cl.action is None:
        return _run_check(cl.check_json)
    if cl.action == "help":
        sys.stdout.write(_help_text(HARDENED))
        return 0
    if cl.action == "version":
        sys.stdout.write("sandbox.py %s\n" % __version__)
        return 0
    container = Container(*cl.command, ops=cl.ops or default_ops())
    for name, value in cl.fields.items():
        setattr(container, name, value)
    flags = cl.flags | (FAllowNet if cl.share_net else 0)
    container.flags, container.seccomp = HardeningFlags(flags), SyscallOpts(cl.seccomp)
    container.env = cl.env
    _working_directory(container, cl)
    container.seccomp_programs = _seccomp_programs_of(cl)
    container._local = True
    try:
        if cl.export is not None or cl.disasm:
            program = seccomp_filter(container.effective_seccomp(),
                                     rules=container._filter_rules())
            if cl.disasm:
                sys.stdout.write(bpf_disasm(program))
            if cl.export is not None:
                try:
                    with open(cl.export, "wb") as f:
                        f.write(program)
                except OSError as err:
                    raise SandboxError("--seccomp-export %s: %s" % (_q(cl.export), err.strerror), err.errno)
            return 0
        # From here on signals are forwarded (held until the container
        # exists): one that came in between would be lost when this process
        # started with it ignored (SIGINT in a shell's background job).
        forward, held = _forward_signals(container)
        if cl.verbose:
            sys.stderr.write("sandbox: %s\n" % container)
            landlock = _landlock_verbose(container)
            for index, op in enumerate(container.ops):
                sys.stderr.write("sandbox:   op %d: %s%s\n" % (index, op, landlock(op)))
        return _run_command_line(container, cl, forward, held)
    except SandboxError as err:
        sys.stderr.write("sandbox: %s\n" % err)
        return getattr(err, "exit_status", None) or EXIT_SETUP
    except KeyboardInterrupt:
        return 128 + signal.SIGINT


def _forward_signals(container):
    """Forward SIGTERM, SIGHUP, SIGQUIT (and SIGINT without a terminal) to
    the container's init; returns (the handler, the signals held until the
    container exists)."""
    forwarded = [signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT]
    if not container.flags & FAllowTTY:
        forwarded.append(signal.SIGINT)   # with a terminal, Ctrl-C reaches the command itself

    held = []     # signals that came before the container existed

    def forward(signum, frame):
        if container.pid is None:
            held.append(signum)
        elif container.returncode is None:
            try:
                os.kill(container.pid, signum)
            except OSError:
                pass

    for sig in forwarded:
        signal.signal(sig, forward)
    if container.flags & FAllowTTY:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    return forward, held


def _run_command_line(container, cl, forward=None, held=None):
    if forward is None:
        forward, held = _forward_signals(container)
    if getattr(cl, "report_fd", None) is not None:
        # Report.json()'s module, imported before the sandbox runs: later,
        # the import would search sys.path, whose first entry (this file's
        # directory; with -m the working directory) the sandbox may write.
        import json     # noqa: F401
    container._want_namespaces = cl.info_fd is not None or cl.json_status_fd is not None
    container._command_line = True
    try:
        container.start()
        container._request()
        reported = False
        while True:
            done = container._setup_step(container._receive())
            if not reported and container._namespaces is not None:
                _report_start(container, cl)     # as soon as the sandbox exists
                reported = True
            if done:
                break
        for signum in held:
            forward(signum, None)
        status = container.wait()
        if cl.json_status_fd is not None:
            try:
                os.write(cl.json_status_fd, b'{ "exit-code": %d }\n' % status)
                os.close(cl.json_status_fd)
            except OSError:
                pass
    finally:
        _write_report(container, getattr(cl, "report_fd", None))
    if container.report.status == "timeout":
        return 124       # as timeout(1) exits
    return status


def _write_report(container, fd):
    """--report-fd: the run report as one JSON object and a newline (a
    setup failure too: status "setup_failed")."""
    if fd is None:
        return
    report = container.report or Report(status="setup_failed", exit_code=_SETUP_FAILED)
    try:
        os.write(fd, (report.json() + "\n").encode())
    except OSError:
        pass


# ---------------------------------------------------------------------------
# The bwrap personality: bubblewrap 0.11.1's command line (SPEC 2b).
#
# The table's BWRAP rows parse it; this part checks what bubblewrap checks
# after parsing, turns the options into a container with bubblewrap's
# defaults (Container.hardened False), and speaks as bubblewrap: messages
# "bwrap: ..." (<3>/<4> with --level-prefix), exit status 1 for its own
# errors, the command's otherwise.
# ---------------------------------------------------------------------------

BWRAP_VERSION = "0.11.1"
_BWRAP_EXIT = 1


def _bwrap_usage(program, out):
    """bubblewrap's --help: its usage line, then a line of its words for
    each name the table's BWRAP rows take (in the table's order)."""
    lines = ["usage: %s [OPTIONS...] [--] COMMAND [ARGS...]\n\n" % program]
    for row in _OPTIONS:
        if not isinstance(row, _Option) or BWRAP not in row.where:
            continue
        for name, text in zip(row.names, row.help_for(BWRAP)):
            first, *more = text.split("\n")
            lines.append("    %-29s%s\n" % (name + (" " + row.metavar if row.metavar else ""),
                                            first))
            lines.extend(" " * 33 + line + "\n" for line in more)
    out.write("".join(lines))


def _bwrap_main(program, argv):
    level_prefix = "--level-prefix" in argv[:argv.index("--") if "--" in argv else len(argv)]

    def die(message):
        sys.stderr.write("%sbwrap: %s\n" % ("<3>" if level_prefix else "", message))
        return _BWRAP_EXIT

    if not argv:
        _bwrap_usage(program, sys.stderr)
        return _BWRAP_EXIT
    try:
        cl = parse_command_line(argv, BWRAP)
    except _UsageError as err:
        if str(err) == "no command given":
            _bwrap_usage(program, sys.stderr)
            return _BWRAP_EXIT
        return die(err)
    if cl.action == "help":
        _bwrap_usage(program, sys.stdout)
        return 0
    if cl.action == "version":
        sys.stdout.write("bubblewrap %s\n" % BWRAP_VERSION)
        return 0
    try:
        container = _bwrap_container(cl)
    except _UsageError as err:
        return die(err)
    if cl.die_with_parent:
        # The whole tree dies with whatever started it: this process first.
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, what="parent-death signal")
    # bubblewrap's child closes these (the sandbox keeps inherited fds, a
    # reader of --info-fd would wait for EOF until the sandbox ended): here
    # they are close-on-exec, which its init closes.
    for fd in (cl.info_fd, cl.json_status_fd):
        try:
            if fd is not None:
                os.set_inheritable(fd, False)
        except OSError:
            pass        # not open: writing to it says so
    try:
        return _run_command_line(container, cl)
    except SandboxError as err:
        failure = container._exec_error
        if failure is not None and not os.fsdecode(failure[2]).startswith("chdir"):
            return die("execvp %s: %s" % (cl.command[0], os.strerror(failure[1])))
        if failure is not None:
            return die("Can't chdir to %s: %s" % (container.dir, os.strerror(failure[1])))
        return die(err)
    except KeyboardInterrupt:
        return 128 + signal.SIGINT


def _bwrap_container(cl):
    """A Container with bubblewrap's defaults from what the options say,
    after bubblewrap's own checks (its messages, as _UsageError)."""
    fields = dict(cl.fields)
    names = set(cl.unshare)
    if cl.share_net:
        names.discard("net")
    # bubblewrap's checks, in its order, before a non-root caller's user
    # namespace is implied: they want --unshare-user itself.
    block = fields.get("userns_block_fd") is not None
    if block and not cl.unshare_user:
        raise _UsageError("--userns-block-fd requires --unshare-user")
    if block and cl.info_fd is None:
        raise _UsageError("--userns-block-fd requires --info-fd")
    if fields.get("userns_fd") is not None and "user" in names:
        raise _UsageError("--userns not compatible --unshare-user%s"
                          % ("" if cl.unshare_user else "-try"))
    if fields.get("disable_userns") and not cl.unshare_user:
        raise _UsageError("--disable-userns requires --unshare-user")
    if fields.get("disable_userns") and block:
        raise _UsageError("--disable-userns is not compatible with  --userns-block-fd")
    root = os.getuid() == 0
    in_userns = "user" in names or (not root and fields.get("userns_fd") is None)
    for name, option in (("uid", "--uid"), ("gid", "--gid")):
        own = os.getuid() if name == "uid" else os.getgid()
        if fields.get(name, own) != own and not in_userns and fields.get("userns_fd") is None:
            raise _UsageError("Specifying %s requires --unshare-user or --userns" % option)
    if fields.get("hostname") and "uts" not in names:
        raise _UsageError("Specifying --hostname requires --unshare-uts")
    if fields.get("as_pid_1") and "pid" not in names:
        raise _UsageError("Specifying --as-pid-1 requires --unshare-pid")
    if fields.get("as_pid_1") and fields.get("lock_files"):
        raise _UsageError("Specifying --as-pid-1 and --lock-file is not permitted")
    changes = fields.pop("_cap_changes", None)
    if changes is not None:
        last = _proc_int("/proc/sys/kernel/cap_last_cap", 40)
        caps = set(c for c in range(last + 1) if _capabilities()[0] >> c & 1) if root else set()
        for add, cap in changes:
            every = set(range(last + 1)) if cap is None else {cap}
            caps = caps | every if add else caps - every
        fields["caps"] = sorted(caps)
    if in_userns:
        names.add("user")
    container = Container(*cl.command, ops=cl.ops)
    container.hardened = False
    container.uid = container.gid = None
    container.namespaces = names
    container.env, container.dir = cl.env, cl.chdir
    container.die_with_parent = cl.die_with_parent
    container.seccomp_programs = _seccomp_programs_of(cl)
    # No setsid unless --new-session: the terminal stays the command's.
    container.flags = HardeningFlags(0 if cl.new_session else FAllowTTY)
    for name, value in fields.items():
        setattr(container, name, value)
    # Paths as bubblewrap resolves them: sources from this directory,
    # destinations from the sandbox's root.
    for op in container.ops:
        inside = ("linkname",) if isinstance(op, Link) else ("dest", "target", "path")
        for name in op.fields:
            value = getattr(op, name)
            if not isinstance(value, str) or not value or value.startswith("/"):
                continue
            if name == "source":
                setattr(op, name, os.path.abspath(value))
            elif name in inside:
                setattr(op, name, "/" + value)
        if isinstance(op, Overlay):
            op.lower_dirs = tuple(os.path.abspath(d) for d in op.lower_dirs)
            if op.work is not None:         # (upper "tmp" and no work: --tmp-overlay)
                op.upper, op.work = os.path.abspath(op.upper), os.path.abspath(op.work)
    return container


def _leave(status):
    """Exit with main()'s status as sys.exit() would, but without the
    interpreter's finalization: its garbage collections over this module's
    objects cost ~10 ms of CPU, as much as the sandbox itself (issue 15).
    Nothing of the command line needs it: no threads, no atexit handlers,
    no files but stdout and stderr, flushed here (a stdout that cannot be
    flushed exits 120, as the interpreter's own exit does; either may be
    None, when the caller closed it)."""
    status = 0 if status is None else status
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            if stream is sys.stdout:
                status = 120
    os._exit(status)


if __name__ == "__main__":
    _leave(main())

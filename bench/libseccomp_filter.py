"""libseccomp's BPF for a rule list: the independent reference that the bench
and the tests compare sandbox.py's own compiler with.

Run by an interpreter that has libseccomp's Python binding (Debian's
python3-seccomp for /usr/bin/python3), never imported by sandbox.py:

    /usr/bin/python3 bench/libseccomp_filter.py < jobs.json > programs.json

Input: a JSON list of jobs, each {"arches": ["x86_64", ...], "default":
action, "rules": [[name, action, [[index, op, value, mask], ...]], ...]}
with ops named as sandbox.py names them ("eq", "masked_eq", ...) and actions
as SECCOMP_RET_* values.  The rules are added in order, as a caller of
seccomp_rule_add() would.  Output: {"version": libseccomp's version, "results": [for each
job {"program": hex of the exported struct sock_filter array, "refused":
[[rule index, errno], ...]}]} (a rule libseccomp refuses is reported and
left out).
"""

import ctypes
import json
import sys
import tempfile

import seccomp

ARCHES = {"x86_64": seccomp.Arch.X86_64, "i386": seccomp.Arch.X86,
          "aarch64": seccomp.Arch.AARCH64, "arm": seccomp.Arch.ARM}
OPS = {"ne": seccomp.NE, "lt": seccomp.LT, "le": seccomp.LE, "eq": seccomp.EQ,
       "ge": seccomp.GE, "gt": seccomp.GT, "masked_eq": seccomp.MASKED_EQ}


def action(value):
    """The binding takes a C int: SECCOMP_RET_KILL_PROCESS is negative."""
    return value - (1 << 32) if value & 0x80000000 else value


def build(job):
    f = seccomp.SyscallFilter(defaction=action(job["default"]))
    f.set_attr(seccomp.Attr.ACT_BADARCH, seccomp.KILL_PROCESS)
    arches = [ARCHES[a] for a in job["arches"]]
    if seccomp.Arch.NATIVE not in arches and seccomp.system_arch() not in arches:
        f.remove_arch(seccomp.Arch.NATIVE)
    for arch in arches:
        if not f.exist_arch(arch):
            f.add_arch(arch)
    refused = []
    for n, (name, act, args) in enumerate(job["rules"]):
        conditions = [seccomp.Arg(index, OPS[op], mask, value) if op == "masked_eq"
                      else seccomp.Arg(index, OPS[op], value)
                      for index, op, value, mask in args]
        try:
            f.add_rule(action(act), name, *conditions)
        except (OSError, RuntimeError, ValueError, OverflowError) as err:
            refused.append([n, getattr(err, "errno", None) or str(err)])
    with tempfile.TemporaryFile() as tmp:      # export_bpf() writes to an fd
        f.export_bpf(tmp)
        tmp.seek(0)
        program = tmp.read()
    return {"program": program.hex(), "refused": refused}


def version():
    """The library's own version (the binding does not tell it)."""
    lib = ctypes.CDLL("libseccomp.so.2")
    lib.seccomp_version.restype = ctypes.POINTER(ctypes.c_uint * 3)
    return "%d.%d.%d" % tuple(lib.seccomp_version().contents)


def main():
    jobs = json.load(sys.stdin)
    json.dump({"version": version(), "results": [build(job) for job in jobs]}, sys.stdout)


if __name__ == "__main__":
    main()

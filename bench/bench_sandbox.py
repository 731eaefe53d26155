#!/usr/bin/env python3
"""Benchmark sandbox.py side by side with bubblewrap (when installed).

    python3 bench/bench_sandbox.py [--quick] [--seccomp]

Prints one table: the seccomp filter's size and instructions executed per
syscall, start-up time from a warm process and from the command line, the
memory an idle sandbox adds to a 512 MiB caller, 64 sandboxes from 8 threads,
and time per sandbox as operations are added.  Times are medians of
interleaved runs; ratios are medians of per-pair ratios.  Standard library
only; bubblewrap's column says "absent" when `bwrap` is not on PATH.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import sandbox  # noqa: E402

SANDBOX_PY = os.path.join(os.path.dirname(HERE), "sandbox.py")
BWRAP = shutil.which("bwrap")
QUICK = "--quick" in sys.argv
ROUNDS = 30 if QUICK else 200

# libseccomp's program for the same policy is computed by its Python binding
# (Debian's python3-seccomp for /usr/bin/python3) in a child process, so this
# file stays standard-library only for the interpreter running it.
LIBSECCOMP_PYTHON = "/usr/bin/python3"
LIBSECCOMP_SCRIPT = os.path.join(HERE, "libseccomp_filter.py")

rows = []


def row(section, what, ours, theirs="", ratio="", note=""):
    rows.append((section, what, ours, theirs, ratio, note))


def bwrap_args(extra=()):
    """bubblewrap with the mounts of sandbox.default_ops() and all namespaces."""
    args = [BWRAP, "--unshare-all", "--die-with-parent"]
    for op in sandbox.default_ops():
        if isinstance(op, sandbox.Bind):
            args += ["--ro-bind-try", op.source, op.target]
        elif isinstance(op, sandbox.Link):
            args += ["--symlink", os.readlink(op.target[1:]) if op.target.startswith("*") else op.target,
                     op.linkname]
        elif isinstance(op, sandbox.Proc):
            args += ["--proc", op.dest]
        elif isinstance(op, sandbox.Dev):
            args += ["--dev", op.dest]
        elif isinstance(op, sandbox.Tmpfs):
            args += ["--tmpfs", op.dest]
    return args + list(extra)


def median_ms(values):
    return "%.2f ms" % (statistics.median(values) * 1000)


def interleaved(ours, theirs, rounds=ROUNDS, pause=0.0):
    """Time ours() and theirs() alternately, each after `pause` seconds of
    sleep when given; (our times, their times, ratios)."""
    a, b, ratios = [], [], []
    for _ in range(rounds):
        if pause:
            time.sleep(pause)
        start = time.perf_counter()
        ours()
        a.append(time.perf_counter() - start)
        if theirs is not None:
            if pause:
                time.sleep(pause)
            start = time.perf_counter()
            theirs()
            b.append(time.perf_counter() - start)
            ratios.append(a[-1] / b[-1])
    return a, b, ratios


def ratio_text(ratios):
    return "%.2fx" % statistics.median(ratios) if ratios else ""


# -- seccomp -----------------------------------------------------------------

def libseccomp_programs(jobs):
    """[(arches, rules)] -> (libseccomp's version, its BPF for each), or
    ("absent", [None, ...]) when it is not installed."""
    payload = [{"arches": arches, "default": sandbox.SECCOMP_RET_ALLOW,
                "rules": [[r.syscall, r.action, [list(a) for a in r.args]] for r in rules]}
               for arches, rules in jobs]
    try:
        cp = subprocess.run([LIBSECCOMP_PYTHON, LIBSECCOMP_SCRIPT], input=json.dumps(payload),
                            capture_output=True, text=True, timeout=120)
    except OSError:
        cp = None
    if cp is None or cp.returncode != 0:
        return "absent", [None] * len(jobs)
    out = json.loads(cp.stdout)
    return out["version"], [bytes.fromhex(r["program"]) for r in out["results"]]


def shape(program, arch):
    counts = [sandbox.bpf_run(program, nr, arch)[1] for nr in range(1024)]
    return len(program) // 8, sum(counts) / len(counts), max(counts)


# A user rule list for the row "with rules": a group, an argument test, an
# allow that lifts the policy's denial.
SAMPLE_RULES = [sandbox.Rule("@keyring", "deny:ENOSYS"), sandbox.Rule("@mount", "log"),
                sandbox.Rule("socket", "deny:EACCES", sandbox.Arg(0, "eq", 2)),
                sandbox.Rule("personality", "allow")]


def bench_seccomp():
    cases = [(arch, opts, ()) for arch in ("x86_64", "i386", "aarch64", "arm")
             for opts in (0x0, 0x1E, 0x3E, 0x1FE)] + [("x86_64", 0x1E, tuple(SAMPLE_RULES))]
    jobs = []
    for arch, opts, rules in cases:
        user = [sandbox.Rule(name, action, *args) for name, action, args in sandbox._user_rules(rules)]
        allowed = {r.syscall for r in user if r.action == sandbox.SECCOMP_RET_ALLOW}
        jobs.append(([arch] + ([sandbox._COMPAT_ARCH[arch]] if opts & sandbox.FlagMultiarch
                               and arch in sandbox._COMPAT_ARCH else []),
                     user + [r for r in sandbox.seccomp_rules(opts) if r.syscall not in allowed]))
    version, theirs = libseccomp_programs(jobs)
    for (arch, opts, rules), reference in zip(cases, theirs):
        length, mean, worst = shape(sandbox.seccomp_filter(opts, arch, rules=rules), arch)
        text, ratio = "(libseccomp absent)", ""
        if reference is not None:
            their_length, their_mean, their_worst = shape(reference, arch)
            text = "%d / %.1f (%d)" % (their_length, their_mean, their_worst)
            ratio = "len %.2fx, mean %.2fx" % (length / their_length, mean / their_mean)
        row("seccomp", "%s opts %#x%s: length / mean (worst)" % (arch, opts, " + rules" if rules else ""),
            "%d / %.1f (%d)" % (length, mean, worst), text, ratio,
            "libseccomp %s, same rules" % version)


# -- start-up ----------------------------------------------------------------

# The pause before each timed run of the paced rows (both sides): a caller
# that does not start sandboxes back to back, with spares ready.
PAUSE = 0.03


def bench_library():
    ops = sandbox.default_ops()
    sandbox.run(["/bin/true"], ops=ops)        # the helper starts once
    ours = lambda: sandbox.run(["/bin/true"], ops=ops)
    theirs = (lambda: subprocess.run(bwrap_args(["/bin/true"]))) if BWRAP else None
    a, b, ratios = interleaved(ours, theirs, pause=PAUSE)
    row("start", "library: run(['/bin/true'], default_ops()), paced", median_ms(a),
        median_ms(b) if b else "absent", ratio_text(ratios),
        "target <= 0.5x; %d ms pause before each run, both sides" % (PAUSE * 1000))
    ours = lambda: sandbox.run(["/bin/true"], ops=ops, timeout=60)
    a, b, ratios = interleaved(ours, theirs, pause=PAUSE)
    row("start", "library: the same with timeout=60", median_ms(a),
        median_ms(b) if b else "absent", ratio_text(ratios), "same cost expected")
    # Landlock is on by default: what it adds to a start, paired with "off"
    # (which of the two goes first alternates).  On a busy machine the
    # spread of the differences is wider than the cost; see bench_landlock
    # for its pieces.
    auto, off, differences = [], [], []
    for i in range(ROUNDS * 2):
        pair = {}
        for mode in (("auto", "off") if i % 2 == 0 else ("off", "auto")):
            start = time.perf_counter()
            sandbox.run(["/bin/true"], ops=ops, landlock=mode)
            pair[mode] = time.perf_counter() - start
        auto.append(pair["auto"])
        off.append(pair["off"])
        differences.append(pair["auto"] - pair["off"])
    differences.sort()
    quarter = len(differences) // 4
    row("start", "library: Landlock, landlock=\"auto\" / \"off\"",
        "%s / %s" % (median_ms(auto), median_ms(off)), "", "",
        "paired difference: median %+.3f ms, quartiles %+.2f / %+.2f ms; ABI %d" % (
            statistics.median(differences) * 1000, differences[quarter] * 1000,
            differences[-quarter - 1] * 1000, sandbox._landlock_abi()))
    # Limits, each paired with no limits and with a pause before each run
    # (so a spare is ready, as for a caller that does not run back to back):
    # rlimits PID 1 sets (a spare serves it), rlimits the command sets in its
    # own clone of PID 1 (address space, open files, CPU time), and memory +
    # pids (for a root caller on this host: a child cgroup per sandbox,
    # cloned for itself as any cgroup= sandbox).
    def timed(limits):
        time.sleep(0.05)
        start = time.perf_counter()
        sandbox.run(["/bin/true"], ops=ops, limits=limits)
        return time.perf_counter() - start
    for what, limits in (
            ("file_size, core: set by init", sandbox.Limits(file_size="1G")),
            ("open_files, cpu_time: the command's clone",
             sandbox.Limits(cpu_time=60, open_files=256)),
            ("memory, pids: a cgroup", sandbox.Limits(memory="512M", pids=64))):
        timed(limits)
        pairs = [(timed(limits), timed(None)) for _ in range(ROUNDS)]
        a, b = [x for x, _ in pairs], [y for _, y in pairs]
        report = sandbox.run(["/bin/true"], ops=ops, limits=limits).report
        row("start", "library: limits (%s) / none" % what,
            "%s / %s" % (median_ms(a), median_ms(b)), "",
            ratio_text([x / y for x, y in pairs]),
            "cost %+.3f ms (median paired difference); memory: %s" % (
                statistics.median(sorted(x - y for x, y in pairs)) * 1000,
                report.memory_limit_kind or "-"))
    # Runs with no pause between them, in blocks of 30 of each (the ratio:
    # the median of the blocks' ratios of medians).
    ours = lambda: sandbox.run(["/bin/true"], ops=ops)
    a, b, ratios = [], [], []
    for _ in range(max(3, ROUNDS // 30)):
        block = interleaved(ours, None, 30)[0]
        a += block
        if theirs is not None:
            their_block = interleaved(theirs, None, 30)[0]
            b += their_block
            ratios.append(statistics.median(block) / statistics.median(their_block))
    row("start", "library: back to back, no pause between runs", median_ms(a),
        median_ms(b) if b else "absent", ratio_text(ratios), "target <= 1.0x")


def bench_command_line():
    """The interpreter's floor, `python3 -m sandbox` (bytecode cached),
    `python3 sandbox.py` (compiled on every run: CPython caches no script's
    bytecode) and bubblewrap, one after another in each round, so that load
    from elsewhere falls on all four alike.  Target 3: (-m sandbox - floor)
    <= 2x bubblewrap, from the medians."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    here = os.path.dirname(SANDBOX_PY)
    module = [sys.executable, "-m", "sandbox", "--", "/bin/true"]
    subprocess.run(module, env=env, cwd=here)      # writes the bytecode
    commands = [("floor", [sys.executable, "-I", "-c", "pass"], None),
                ("module", module, env),
                ("script", [sys.executable, SANDBOX_PY, "--", "/bin/true"], None)]
    if BWRAP:
        commands.append(("bwrap", bwrap_args(["/bin/true"]), None))
    times = {name: [] for name, _, _ in commands}
    for _ in range(max(10, ROUNDS // 4)):
        for name, args, environment in commands:
            start = time.perf_counter()
            subprocess.run(args, env=environment, cwd=here)
            times[name].append(time.perf_counter() - start)
    floor = statistics.median(times["floor"])
    theirs = statistics.median(times["bwrap"]) if BWRAP else None
    row("start", "interpreter floor: python3 -I -c pass", median_ms(times["floor"]))
    for name, what, target in (
            ("module", "command line: python3 -m sandbox -- /bin/true (cached bytecode)", 2.0),
            ("script", "command line: python3 sandbox.py -- /bin/true (compiled each run)", None)):
        ours = statistics.median(times[name])
        if theirs is None:
            row("start", what, median_ms(times[name]), "absent")
            continue
        note = "ratio: (time - floor) / bwrap; time - floor = %.2f ms" % ((ours - floor) * 1000)
        if target is not None:
            note += ", target <= %gx" % target
        row("start", what, median_ms(times[name]), "%.2f ms" % (theirs * 1000),
            "%.2fx" % ((ours - floor) / theirs), note)


def bench_bwrap_personality():
    """The drop-in: the same bubblewrap command line, run by sandbox.py in
    its bwrap personality and by bubblewrap."""
    args = ["--unshare-all", "--ro-bind", "/", "/", "/bin/true"]
    ours = lambda: subprocess.run([sys.executable, SANDBOX_PY, "--bwrap"] + args)
    theirs = (lambda: subprocess.run([BWRAP] + args)) if BWRAP else None
    a, b, ratios = interleaved(ours, theirs, max(10, ROUNDS // 4))
    row("start", "command line: bwrap personality start (--unshare-all --ro-bind / / "
        "/bin/true)", median_ms(a), median_ms(b) if b else "absent", ratio_text(ratios))


# -- Landlock ----------------------------------------------------------------

def _median_us(call, rounds):
    """Median CPU time of call(), in microseconds."""
    times = []
    for _ in range(rounds):
        start = time.thread_time()
        call()
        times.append(time.thread_time() - start)
    return statistics.median(times) * 1e6


def _in_children(body, rounds):
    """Median of what body() returns (seconds), each run in a fresh child."""
    times = []
    for _ in range(rounds):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(r)
                os.write(w, ("%r" % body()).encode())
            finally:
                os._exit(0)
        os.close(w)
        data = os.read(r, 100)
        os.close(r)
        os.waitpid(pid, 0)
        times.append(float(data))
    return statistics.median(times) * 1e6


def bench_landlock():
    """Landlock's own work per start, piece by piece: medians of the CPU
    time of many runs, which a loaded machine disturbs much less than the
    wall time of whole starts."""
    abi = sandbox._landlock_abi()
    if abi < 1:
        row("landlock", "pieces", "absent (no Landlock)")
        return
    plan = sandbox._landlock_plan("auto", abi, 0, None, None)
    rounds = 2000 if QUICK else 10000
    targets = [op.landlock_rule()[0] for op in sandbox.default_ops() if op.landlock_rule()]
    open_targets = lambda: [os.close(os.open(t, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC))
                            for t in targets + ["/"]]
    rules = [(os.open(t, os.O_PATH | os.O_CLOEXEC), sandbox.LANDLOCK_READ) for t in targets + ["/"]]
    row("landlock", "opening the %d targets of default_ops() (O_PATH)" % len(rules),
        "%.1f us" % _median_us(open_targets, rounds), "", "", "ahead in a spare")
    row("landlock", "ruleset: create, %d rules" % len(rules),
        "%.1f us" % _median_us(lambda: os.close(sandbox._landlock_ruleset(plan, rules)), rounds),
        "", "", "ahead in a spare")
    ruleset = sandbox._landlock_ruleset(plan, rules)
    row("landlock", "the request's rules: stdin, stdout, stderr",
        "%.1f us" % _median_us(lambda: sandbox._landlock_request_rules(
            ruleset, plan, (0, 1, 2), None, None), rounds))
    os.close(ruleset)

    def restrict():
        fd = sandbox._landlock_ruleset(plan, rules)
        sandbox._prctl(sandbox.PR_SET_NO_NEW_PRIVS, 1)
        start = time.thread_time()        # CPU time: the machine may be busy
        sandbox._landlock_restrict(fd)
        return time.thread_time() - start
    row("landlock", "PID 1: landlock_restrict_self", "%.1f us" % _in_children(restrict, 200))
    library = "/usr/lib/%s-linux-gnu/libc.so.6" % os.uname().machine
    library = library if os.path.exists(library) else sys.executable

    def opens(confined):
        def body():
            if confined:
                restrict()
            start = time.thread_time()
            for _ in range(1000):
                os.close(os.open(library, os.O_RDONLY))
            return (time.thread_time() - start) / 1000
        return body
    # Interleaved, so that each pair sees the same load.
    pairs = [(_in_children(opens(True), 1), _in_children(opens(False), 1)) for _ in range(40)]
    confined = statistics.median(c for c, _ in pairs)
    free = statistics.median(f for _, f in pairs)
    row("landlock", "the command: open(%s)" % library, "%.2f us / %.2f us" % (confined, free),
        "", "%.2fx" % statistics.median(c / f for c, f in pairs), "under the ruleset / without")
    for fd, _ in rules:
        os.close(fd)


# -- memory ------------------------------------------------------------------

def pss_kib(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendants(pid):
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        try:
            for task in os.listdir("/proc/%d/task" % current):
                with open("/proc/%d/task/%s/children" % (current, task)) as f:
                    queue.extend(int(x) for x in f.read().split())
        except OSError:
            pass
    return found


def open_fds():
    """This process's fds, without the one listing them."""
    fds = []
    for name in os.listdir("/proc/self/fd"):
        try:
            os.readlink("/proc/self/fd/" + name)
            fds.append(name)
        except OSError:
            pass
    return sorted(fds)


def direct_children():
    with open("/proc/self/task/%d/children" % os.getpid()) as f:
        return sorted(f.read().split())


def mem_available_kib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])


def bench_memory(count=16):
    ballast = bytearray(512 << 20)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    sandbox.run(["/bin/true"])
    time.sleep(0.5)
    before = mem_available_kib()
    containers = []
    for _ in range(count):
        c = sandbox.Container("/bin/sleep", "1000", ops=sandbox.default_ops())
        c.start()
        c.serve()
        containers.append(c)
    time.sleep(0.5)
    ours = sum(pss_kib(p) for c in containers for p in descendants(c.pid)) / count
    drop = (before - mem_available_kib()) / count
    helper = sandbox._Helper.current()
    helper_pid = helper.pid
    for c in containers:
        c.close()
    # The helper's Pss once its sandboxes are gone (while they live, they
    # share its pages and lower its figure): itself, the template and a spare.
    time.sleep(1.0)
    helper_pss = pss_kib(helper_pid)
    theirs = theirs_drop = None
    if BWRAP:
        time.sleep(0.5)
        before = mem_available_kib()
        procs = [subprocess.Popen(bwrap_args(["/bin/sleep", "1000"])) for _ in range(count)]
        time.sleep(1.0)
        theirs = sum(pss_kib(p) for proc in procs for p in descendants(proc.pid)) / count
        theirs_drop = (before - mem_available_kib()) / count
        for proc in procs:
            proc.kill()
            proc.wait()
    row("memory", "Pss per idle sandbox (init + sleep), caller 512 MiB",
        "%.2f MiB" % (ours / 1024), "%.2f MiB" % (theirs / 1024) if theirs else "absent",
        "%.2fx" % (ours / theirs) if theirs else "", "target <= 1.0 MiB")
    row("memory", "MemAvailable drop per sandbox", "%.2f MiB" % (drop / 1024),
        "%.2f MiB" % (theirs_drop / 1024) if theirs_drop is not None else "absent", "",
        "noisy: other processes share the machine")
    row("memory", "the helper, once per caller (Pss)", "%.2f MiB" % (helper_pss / 1024),
        "", "", "target <= 4 MiB; mode: %s" % helper.mode)
    del ballast


# -- concurrency and scale ---------------------------------------------------

def threads_wall(run_one, threads=8, each=8):
    """Wall time of `threads` threads each calling run_one() `each` times."""
    def worker():
        for _ in range(each):
            run_one()
    started = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return time.perf_counter() - started


def bench_concurrency():
    """64 sandboxes from 8 threads, against 8 threads each running bwrap 8
    times with subprocess.run: rounds of each, interleaved, after a pause
    (spares ready; bubblewrap's side the same)."""
    sandbox.run(["/bin/true"])
    fds = open_fds()
    with open("/proc/self/mountinfo") as f:
        mounts = f.read()
    children = direct_children()
    failures = []

    def ours():
        try:
            if sandbox.run(["/bin/true"]).returncode != 0:
                failures.append("status")
        except Exception as err:
            failures.append(repr(err))
    theirs = (lambda: subprocess.run(bwrap_args(["/bin/true"]))) if BWRAP else None
    a, b, ratios = interleaved(lambda: threads_wall(ours),
                               (lambda: threads_wall(theirs)) if theirs else None,
                               5 if QUICK else 15, pause=0.2)
    after_fds = open_fds()
    with open("/proc/self/mountinfo") as f:
        changed = [name for name, same in (("fds %s -> %s" % (fds, after_fds), after_fds == fds),
                                           ("mounts", f.read() == mounts),
                                           ("children", direct_children() == children)) if not same]
    row("threads", "64 sandboxes from 8 threads (wall)",
        "%s, %d failed" % (median_ms(a), len(failures)),
        median_ms(b) if b else "absent", ratio_text(ratios),
        "target <= 1.0x; changed afterwards: %s" % (
            ", ".join(changed) or "nothing (fds, children, mounts)"))


def least_squares_slope(points):
    """Slope of the least-squares line through (x, y) points."""
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    return (sum((x - mean_x) * (y - mean_y) for x, y in points)
            / sum((x - mean_x) ** 2 for x, _ in points))


def bench_scale():
    """Time per sandbox with 1, 10 and 100 extra operations (issue 5) of two
    kinds.  For directories also 1000: at 100 the whole difference is under
    a millisecond, about the noise of one run on a shared machine, so the
    slope is fitted over all the medians.  bubblewrap reads the mount table
    for every bind, so its binds grow faster than linearly."""
    kinds = (("--dir", (1, 10, 100, 1000), max(10, ROUNDS // 4),
              lambda ops, i: ops.mkdir("/tmp/d%d" % i, 0o755),
              lambda i: ["--dir", "/tmp/d%d" % i]),
             ("--ro-bind", (1, 10, 100), max(10, ROUNDS // 10),
              lambda ops, i: ops.bind("/usr/share", "/tmp/b%d" % i),
              lambda i: ["--ro-bind", "/usr/share", "/tmp/b%d" % i]))
    for option, sizes, rounds, add_op, bwrap_op in kinds:
        ours_points, theirs_points = [], []
        for extra in sizes:
            ops = sandbox.default_ops()
            extra_args = []
            for i in range(extra):
                add_op(ops, i)
                extra_args += bwrap_op(i)
            ours = lambda: sandbox.run(["/bin/true"], ops=ops)
            theirs = (lambda: subprocess.run(bwrap_args(extra_args + ["/bin/true"]))) if BWRAP else None
            a, b, ratios = interleaved(ours, theirs, rounds)
            ours_points.append((extra, statistics.median(a)))
            if b:
                theirs_points.append((extra, statistics.median(b)))
            row("scale", "%d extra operations (%s)" % (extra, option), median_ms(a),
                median_ms(b) if b else "absent", ratio_text(ratios))
        ours_slope = least_squares_slope(ours_points)
        theirs_slope = least_squares_slope(theirs_points) if theirs_points else None
        row("scale", "slope per %s (least squares)" % option, "%.1f us" % (ours_slope * 1e6),
            "%.1f us" % (theirs_slope * 1e6) if theirs_slope else "absent",
            "%.2fx" % (ours_slope / theirs_slope) if theirs_slope else "", "target <= 1.0x")


def bench_import():
    """`import sandbox` in a fresh interpreter, from a copy of the file with
    its bytecode cached (as a vendored file is, after its first import) and
    compiled from source (PYTHONDONTWRITEBYTECODE, a read-only directory);
    `import subprocess` beside it, for scale.  asyncio is never imported."""
    import tempfile
    directory = tempfile.mkdtemp(prefix="sandbox-bench-import-")
    try:
        shutil.copy(SANDBOX_PY, directory)
        script = ("import time, sys; t = time.perf_counter(); import %s; "
                  "print(time.perf_counter() - t, 'asyncio' in sys.modules)")
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        source = dict(env, PYTHONDONTWRITEBYTECODE="1")

        uncached = os.path.join(directory, "source")     # never gets a __pycache__
        os.mkdir(uncached)
        shutil.copy(SANDBOX_PY, uncached)

        def timed(module, environment):
            where = uncached if environment is source else directory
            out = subprocess.run([sys.executable, "-I" if module == "subprocess" else "-s", "-c",
                                  script % module], cwd=where, env=environment,
                                 capture_output=True, text=True, check=True).stdout.split()
            assert out[1] == "False", "import %s imported asyncio" % module
            return float(out[0])

        timed("sandbox", env)           # writes the bytecode
        rounds = max(10, ROUNDS // 4)
        cached = [timed("sandbox", env) for _ in range(rounds)]
        compiled = [timed("sandbox", source) for _ in range(rounds)]
        baseline = [timed("subprocess", env) for _ in range(rounds)]
        row("import", "import sandbox, bytecode cached (fresh interpreter)", median_ms(cached),
            "", "", "import subprocess alone: %s; asyncio not imported" % median_ms(baseline))
        row("import", "import sandbox, compiled from source", median_ms(compiled), "", "",
            "no __pycache__ (PYTHONDONTWRITEBYTECODE or a read-only directory)")
    finally:
        shutil.rmtree(directory)


def bench_asyncio(count=16):
    """Sandboxes run from one event loop at once (run_async), per sandbox,
    against the same number run one after another with run()."""
    import asyncio
    ops = sandbox.default_ops()

    async def together():
        await asyncio.gather(*(sandbox.run_async(["/bin/true"], ops=ops) for _ in range(count)))

    asyncio.run(together())
    a, _, _ = interleaved(lambda: asyncio.run(together()), None, max(5, ROUNDS // 10))
    b, _, _ = interleaved(lambda: [sandbox.run(["/bin/true"], ops=ops) for _ in range(count)],
                          None, max(5, ROUNDS // 10))
    row("asyncio", "run_async(['/bin/true']) x%d from one loop, per sandbox" % count,
        median_ms([x / count for x in a]), "", "",
        "run() x%d one by one: %s per sandbox" % (count, median_ms([x / count for x in b])))


def main():
    print("sandbox.py %s, Python %s, Linux %s, %d cores%s" % (
        sandbox.__version__, sys.version.split()[0], os.uname().release, os.cpu_count(),
        "" if BWRAP else "; bubblewrap absent: its column is skipped"))
    bench_seccomp()
    if "--seccomp" not in sys.argv:     # --seccomp: the filter's rows only
        bench_library()
        bench_import()
        bench_asyncio()
        bench_command_line()
        bench_bwrap_personality()
        bench_landlock()
        bench_memory()
        bench_concurrency()
        bench_scale()
    widths = [max(len(str(r[i])) for r in rows + [("", "what", "sandbox.py", "bubblewrap", "ratio", "")])
              for i in range(6)]
    header = ("", "what", "sandbox.py", "bubblewrap", "ratio", "note")
    for r in [header] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())


if __name__ == "__main__":
    main()

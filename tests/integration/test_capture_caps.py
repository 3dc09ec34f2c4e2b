"""`tracevault capture`'s capabilities (client/capture/privs.c): without one it needs it exits 1
with one line naming the missing ones, before anything is loaded; with exactly the set
`--print-capabilities` names, as a non-root uid, it captures a real curl -> nginx exchange
(and a connection open before the start, which needs /proc seeding), logs what it dropped,
and /proc/PID/task/*/status of the running capture shows the reduced sets in every thread;
run as root with every capability it drops them all, bounding set included; a run under
strace makes only system calls contrib/tracevault-capture.service's SystemCallFilter
allows. Runs as root (setpriv
changes uid and sets); ~15 s. Loads eBPF: run under flock /work/capture-tests.lock (ctest:
RESOURCE_LOCK ebpf_capture)."""
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402

NOBODY = 65534
CAP_NUMBERS = {"CAP_DAC_READ_SEARCH": 2, "CAP_NET_RAW": 13, "CAP_SYS_PTRACE": 19,
               "CAP_PERFMON": 38, "CAP_BPF": 39}
MISSING_RE = (r"^tracevault: capture --mode (\w+) needs ([A-Z_, ]+) \(effective\): missing "
              r"([A-Z_, ]+); run as root or grant them \(see contrib/tracevault-capture.service\)$")
DROP_RE = r"tracevault: capabilities dropped after the [^:]*: ([^;]*); kept: ([^;]*);"


def needed(mode):
    """The code's own list (the one source the systemd unit's test reads too)."""
    p = tvtest.run(["capture", "--mode", mode, "--print-capabilities"], check=True)
    caps = p.stdout.split()
    assert caps and all(c in CAP_NUMBERS for c in caps), p.stdout
    return caps


def setpriv(caps, uid=NOBODY):
    """A prefix running a command as uid with exactly caps (names) inherited, ambient (so a
    non-root uid keeps them over execve) and bounding."""
    s = "".join(",+" + c[len("CAP_"):].lower() for c in caps)
    pre = ["setpriv"]
    if uid != 0:
        pre += ["--reuid=%d" % uid, "--regid=%d" % uid, "--clear-groups"]
    return pre + ["--inh-caps=-all" + s, "--ambient-caps=-all" + s, "--bounding-set=-all" + s,
                  "--"]


def status_caps(pid):
    """The capability sets of pid over all its threads (capabilities belong to each thread,
    and gRPC's and the write pipeline's run beside the capturing one): each Cap* the union of
    the threads' sets, NoNewPrivs the least; "threads" how many were read."""
    st, n = {}, 0
    for task in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/status" % (pid, task)) as f:
                lines = f.readlines()
        except FileNotFoundError:
            continue  # a thread that ended meanwhile
        n += 1
        for line in lines:
            k, _, v = line.partition(":")
            if k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
                st[k] = st.get(k, 0) | int(v.strip(), 16)
            elif k == "NoNewPrivs":
                st[k] = min(st.get(k, 1), int(v.strip()))
    st["threads"] = n
    return st


def mask(caps):
    return sum(1 << CAP_NUMBERS[c] for c in caps)


def refused(mode, caps, uid=NOBODY):
    """Runs capture with caps; asserts exit 1 and the one line, returns (needed, missing)."""
    p = subprocess.run(setpriv(caps, uid) + [tvtest.binary("tracevault"), "capture", "--mode",
                       mode, "--server", "127.0.0.1:9", "--duration", "1"],
                       capture_output=True, text=True, timeout=60)
    lines = p.stderr.splitlines()
    assert p.returncode == 1 and len(lines) == 1, (p.returncode, p.stderr)
    m = re.match(MISSING_RE, lines[0])
    assert m and m.group(1) == mode, lines[0]
    return m.group(2).split(", "), m.group(3).split(", ")


def test_missing_caps_one_line_per_mode():
    for mode in ("tracepoint", "sockfilter"):
        caps = needed(mode)
        # each one left out is named alone, so every listed capability is checked
        for c in caps:
            want, missing = refused(mode, [x for x in caps if x != c])
            assert want == caps and missing == [c], (mode, c, want, missing)
        assert refused(mode, [])[1] == caps
    # root without them (bounding set emptied before execve): refused all the same
    assert refused("tracepoint", [], uid=0)[1] == needed("tracepoint")


def start_capture(prefix, srv, port, env=None):
    r, w = os.pipe()
    try:
        p = subprocess.Popen(prefix + [tvtest.binary("tracevault"), "capture", "--server",
                             srv.addr, "--port", str(port), "--block-age-ms", "200",
                             "--ready-fd", str(w)], pass_fds=(w,), env=env,
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    finally:
        os.close(w)
    try:
        ready, _, _ = select.select([r], [], [], 30)
        line = os.read(r, 64) if ready else b""
    finally:
        os.close(r)
    if line != b"ready\n":
        p.kill()
        raise AssertionError("capture not ready: %s" % p.communicate()[1])
    return p


def child_of(pid):
    with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
        return int(f.read().split()[0])


def capture_exchange(prefix, traced=False):
    """A capture (command prefix) of an old keep-alive connection and a curl, against nginx.
    traced: the prefix ends in strace, which runs capture as its child. Returns (records,
    capture stderr, /proc status of the running capture)."""
    with tvtest.Server() as srv, tvtest.Nginx({"index.html": b"caps\n"}) as ng:
        old = tvtest.RawHttp(ng.port)
        try:
            old.send(tvtest.http_request("GET", "/before-capture"))
            assert old.read_response()[0] == 404
            from_ns = time.time_ns()
            # LeakSanitizer cannot run under ptrace (an ASan build's exit would fail)
            env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0") if traced else None
            p = start_capture(prefix, srv, ng.port, env)
            try:
                pid = child_of(p.pid) if traced else p.pid
                st = status_caps(pid)
                old.send(tvtest.http_request("GET", "/old-conn"))
                assert old.read_response()[0] == 404
                assert tvtest.curl("http://127.0.0.1:%d/index.html" % ng.port) == ["200"]
            finally:
                os.kill(pid, signal.SIGINT)
                _, err = p.communicate(timeout=60)
        finally:
            old.close()
        assert p.returncode == 0, (p.returncode, err)
        q = tvtest.run(["query", "--server", srv.addr, "--from", str(from_ns), "--to",
                        str(time.time_ns() + 1), "--format", "jsonl"], check=True)
        import json
        recs = [json.loads(line) for line in q.stdout.splitlines() if line.strip()]
    return recs, err, st


def check_records(recs, err):
    got = sorted((r["role"], r["path"], r["status"]) for r in recs)
    want = sorted([("client", "/index.html", 200), ("server", "/index.html", 200),
                   ("client", "/old-conn", 404), ("server", "/old-conn", 404)])
    assert got == want, (got, err)


def check_every_thread(st, err):
    """The sets above are the union over the running capture's threads: gRPC's, the write
    pipeline's and the capturing one at least, all started after the drop, which says so."""
    assert st["threads"] >= 3, st
    assert "; before any other thread started (each inherits this)" in err, err


def test_exact_caps_non_root_captures_and_drops():
    caps = needed("tracepoint")
    recs, err, st = capture_exchange(setpriv(caps))
    check_records(recs, err)  # the old connection too: /proc seeding worked as uid 65534
    m = re.search(DROP_RE, err)
    assert m, err
    assert sorted(m.group(1).split(", ")) == sorted(caps), m.group(1)
    assert m.group(2).startswith("none"), m.group(2)
    # nothing left to use; the bounding set needs CAP_SETPCAP to shrink, no_new_privs covers it
    assert st["CapEff"] == 0 and st["CapPrm"] == 0 and st["CapInh"] == 0, st
    assert st["CapAmb"] == 0 and st["NoNewPrivs"] == 1, st
    assert st["CapBnd"] == mask(caps), st
    check_every_thread(st, err)


def test_root_drops_everything():
    recs, err, st = capture_exchange([])
    check_records(recs, err)
    m = re.search(DROP_RE, err)
    assert m and m.group(1) == "all held by root (uid 0 stays, its privileges go)", \
        (m and m.group(1), err)
    assert "bounding set cleared, SECBIT_NOROOT locked" in err, err
    assert st["CapEff"] == 0 and st["CapPrm"] == 0 and st["CapBnd"] == 0, st
    assert st["CapAmb"] == 0 and st["NoNewPrivs"] == 1, st
    check_every_thread(st, err)


def test_capture_unit_syscall_filter_covers_a_run():
    """Every system call of a capture run with the unit's capabilities is one the unit's
    SystemCallFilter= allows (the filter's EPERM would otherwise fail it in production)."""
    if not shutil.which("strace") or not shutil.which("systemd-analyze"):
        raise tvtest.Unavailable("strace or systemd-analyze absent")
    unit = "tracevault-capture.service"
    caps = tvtest.systemd.read_unit(unit)["AmbientCapabilities"][0].split()
    allowed = tvtest.systemd.unit_syscalls(unit)
    with tempfile.TemporaryDirectory(prefix="tv-caps-") as tmp:
        os.chmod(tmp, 0o755)
        trace = os.path.join(tmp, "strace.log")
        with open(trace, "w"):
            os.chown(trace, NOBODY, NOBODY)
        recs, err, st = capture_exchange(setpriv(caps) + tvtest.systemd.strace_prefix(trace),
                                         traced=True)
        check_records(recs, err)
        assert st["CapEff"] == 0, st
        made = tvtest.systemd.straced_syscalls(trace)
    assert {"bpf", "perf_event_open", "capset"} <= made, sorted(made)
    assert made <= allowed, "filtered by %s: %s" % (unit, sorted(made - allowed))


def main():
    if os.geteuid() != 0:
        tvtest.skip("needs root to run capture as another uid with chosen capabilities")
    reason = tvtest.bpf_unavailable_reason()
    if reason:
        tvtest.skip(reason)
    tests = tvtest.cases(globals())
    res = tvtest.Results(len(tests))
    for t in tests:
        res.run(t)
    return res.exit_code()


if __name__ == "__main__":
    sys.exit(main())

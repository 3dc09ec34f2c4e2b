"""contrib/tracevaultd.service and contrib/tracevault-capture.service: `systemd-analyze verify`
passes on both with no warning (the ExecStart paths point at this build's binaries in a temp
copy; a copy with an unknown key must warn, so the check can fail); the capture unit's
capabilities are exactly `tracevault capture --print-capabilities` (the code's own list,
client/capture/privs.c); tracevaultd's unit holds none, runs as a non-root user, and its --data
(a subdirectory of a 0700 StateDirectory) works for tracevaultd run as another uid in a tree
laid out the same way; README's recipe to verify them before they are installed works as
written. ~3 s; SKIP when systemd-analyze is absent."""
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402

UNITS = ("tracevaultd.service", "tracevault-capture.service")
INSTALL_DIR = "/usr/local/bin/"
NOBODY = 65534
CONTRIB = tvtest.systemd.CONTRIB
read_unit = tvtest.systemd.read_unit


def verify(tmp, texts):
    """Writes texts ({file name: unit text}) into tmp; returns systemd-analyze verify's
    output lines that name one of them."""
    paths = []
    for name, text in texts.items():
        paths.append(os.path.join(tmp, name))
        with open(paths[-1], "w") as f:
            f.write(text)
    p = subprocess.run(["systemd-analyze", "verify"] + paths, capture_output=True, text=True,
                       timeout=60)
    out = (p.stdout + p.stderr).splitlines()
    return p.returncode, [ln for ln in out if any(n in ln for n in texts)]


def built(name):
    with open(os.path.join(CONTRIB, name)) as f:
        text = f.read()
    assert INSTALL_DIR + "tracevault" in text, name
    return text.replace(INSTALL_DIR, tvtest.BIN_DIR.rstrip("/") + "/")


def test_verify_passes_without_warnings():
    with tempfile.TemporaryDirectory(prefix="tv-units-") as tmp:
        rc, lines = verify(tmp, {n: built(n) for n in UNITS})
        assert rc == 0 and not lines, (rc, lines)
        # the control: a warning about a unit is seen
        bad = built(UNITS[0]).replace("[Service]\n", "[Service]\nNoSuchKey=1\n")
        rc, lines = verify(tmp, {"tv-bad.service": bad})
        assert any("NoSuchKey" in ln for ln in lines), lines


README = os.path.join(os.path.dirname(CONTRIB), "README.md")


def test_readme_verify_recipe_works_before_install():
    """README's "Running it as a service" says how to verify the units before the binaries
    are installed (`systemd-analyze verify contrib/*.service` fails then: their ExecStart=
    does not exist yet). Its sh block that runs systemd-analyze is run as written, from a
    directory whose contrib/ and build/ are this tree's: exit 0, no line about a unit."""
    with open(README) as f:
        readme = f.read()
    section = readme[readme.index("## Running it as a service"):]
    section = section[:section.index("\n## ", 1)]
    blocks = [b for b in re.findall(r"```sh\n(.*?)```", section, re.S)
              if "systemd-analyze verify" in b]
    assert len(blocks) == 1, "README has no sh block that runs systemd-analyze verify"
    with tempfile.TemporaryDirectory(prefix="tv-readme-units-") as tmp:
        os.symlink(CONTRIB, os.path.join(tmp, "contrib"))
        os.symlink(tvtest.BIN_DIR.rstrip("/"), os.path.join(tmp, "build"))
        p = subprocess.run(["bash", "-euc", blocks[0]], cwd=tmp, capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 0 and p.stdout + p.stderr == "", (blocks[0], p.returncode,
                                                                 p.stdout, p.stderr)
        # the control: what the recipe replaces fails while nothing is installed
        if not any(os.path.exists(INSTALL_DIR + n) for n in ("tracevaultd", "tracevault")):
            p = subprocess.run("systemd-analyze verify contrib/*.service", shell=True,
                               cwd=tmp, capture_output=True, text=True, timeout=60)
            assert p.returncode != 0 and "is not executable" in p.stdout + p.stderr, \
                (p.returncode, p.stdout, p.stderr)


def test_capture_unit_caps_are_the_codes():
    u = read_unit("tracevault-capture.service")
    exec_args = shlex.split(u["ExecStart"][0])
    assert exec_args[1] == "capture" and "--mode" not in exec_args, exec_args
    p = tvtest.run(["capture", "--print-capabilities"], check=True)
    want = sorted(p.stdout.split())
    assert want, p.stdout
    for key in ("AmbientCapabilities", "CapabilityBoundingSet"):
        assert len(u[key]) == 1 and sorted(u[key][0].split()) == want, (key, u[key], want)
    assert u.get("DynamicUser") == ["yes"] or u.get("User", ["root"])[0] != "root", u
    assert u["NoNewPrivileges"] == ["yes"], u


def put_and_query(srv, d):
    st = os.stat(d)
    assert st.st_uid == NOBODY and st.st_mode & 0o777 == 0o700, oct(st.st_mode)
    recs = "".join('{"ts_ns":%d,"method":"GET","path":"/u%d","status":200}\n'
                   % (10**18 + i, i) for i in range(50))
    tvtest.run(["put", "--server", srv.addr, "-"], input=recs, check=True)
    q = tvtest.run(["query", "--server", srv.addr, "--from", "0", "--to", str(2 * 10**18),
                    "--format", "jsonl"], check=True)
    assert len(q.stdout.splitlines()) == 50, q.stdout


def test_server_unit_no_caps_and_its_paths_work():
    u = read_unit("tracevaultd.service")
    assert u["CapabilityBoundingSet"] == [""] and u["AmbientCapabilities"] == [""], u
    assert u["User"] != ["root"] and "DynamicUser" not in u, u
    assert u["StateDirectoryMode"] == ["0700"], u
    state = "/var/lib/" + u["StateDirectory"][0]
    args = shlex.split(u["ExecStart"][0])
    data = args[args.index("--data") + 1]
    assert os.path.dirname(data) == state, (data, state)  # a subdirectory, not the symlink
    allowed = tvtest.systemd.unit_syscalls("tracevaultd.service")
    assert {"io_uring_setup", "io_uring_enter"} <= allowed, "the store's io_uring is filtered"
    if os.geteuid() != 0:
        return  # the run as another uid below needs root
    # the same tree as systemd makes it: StateDirectory 0700 owned by the service user
    root = tempfile.mkdtemp(prefix="tv-unit-")
    try:
        os.chmod(root, 0o755)
        sd = os.path.join(root, os.path.basename(state))
        os.mkdir(sd, 0o700)
        os.chown(sd, NOBODY, NOBODY)
        d = os.path.join(sd, os.path.basename(data))

        def as_nobody():
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os.umask(0o077)
        trace = os.path.join(root, "strace.log")
        srv = tvtest.Server(data_dir=d, preexec_fn=as_nobody)
        if shutil.which("strace"):  # every system call of a put and a query, by the filter
            with open(trace, "w"):
                os.chown(trace, NOBODY, NOBODY)  # strace runs as the daemon's uid
            srv.prefix = tvtest.systemd.strace_prefix(trace)
        with srv:
            try:
                put_and_query(srv, d)
            finally:
                if srv.prefix:  # strace does not pass SIGTERM on: the daemon gets it itself
                    pid = srv.proc.pid
                    with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
                        os.kill(int(f.read().split()[0]), signal.SIGTERM)
                    assert srv.proc.wait(20) == 0, srv.log()
        if os.path.exists(trace):
            made = tvtest.systemd.straced_syscalls(trace)
            assert "io_uring_enter" in made, sorted(made)
            assert made <= allowed, "filtered by the unit: %s" % sorted(made - allowed)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main():
    if not shutil.which("systemd-analyze"):
        tvtest.skip("systemd-analyze is absent (Debian package systemd)")
    tests = tvtest.cases(globals())
    res = tvtest.Results(len(tests))
    for t in tests:
        res.run(t)
    return res.exit_code()


if __name__ == "__main__":
    sys.exit(main())

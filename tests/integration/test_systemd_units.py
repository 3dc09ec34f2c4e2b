"""contrib/tracevaultd.service and contrib/tracevault-capture.service: `systemd-analyze verify`
passes on both with no warning (the ExecStart paths point at this build's binaries in a temp
copy; a copy with an unknown key must warn, so the check can fail); the capture unit's
capabilities are exactly `tracevault capture --print-capabilities` (the code's own list,
client/capture/privs.c); tracevaultd's unit holds none, runs as a non-root user, and its --data
(a subdirectory of a 0700 StateDirectory) works for tracevaultd run as another uid in a tree
laid out the same way. ~3 s; SKIP when systemd-analyze is absent."""
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402

CONTRIB = os.path.join(os.environ.get("TV_SOURCE_DIR", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..")), "contrib")
UNITS = ("tracevaultd.service", "tracevault-capture.service")
INSTALL_DIR = "/usr/local/bin/"
NOBODY = 65534


def read_unit(name):
    """{key: [values]} of the [Service] section (comments and other sections left out)."""
    keys, section = {}, None
    with open(os.path.join(CONTRIB, name)) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("["):
                section = line
                continue
            k, _, v = line.partition("=")
            if section == "[Service]":
                keys.setdefault(k, []).append(v)
    return keys


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


def syscalls(names, seen=None):
    """The system calls of a SystemCallFilter= list, its @groups expanded (systemd-analyze
    lists a group's own calls and the groups it includes)."""
    seen = set() if seen is None else seen
    out = set()
    for n in names:
        if not n.startswith("@"):
            out.add(n)
        elif n not in seen:
            seen.add(n)
            p = subprocess.run(["systemd-analyze", "syscall-filter", n], capture_output=True,
                               text=True, timeout=60, check=True)
            body = [ln.strip() for ln in p.stdout.splitlines()
                    if ln.startswith("    ") and not ln.strip().startswith("#")]
            out |= syscalls(body, seen)
    return out


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


def test_server_unit_no_caps_and_its_paths_work():
    u = read_unit("tracevaultd.service")
    assert u["CapabilityBoundingSet"] == [""] and u["AmbientCapabilities"] == [""], u
    assert u["User"] != ["root"] and "DynamicUser" not in u, u
    assert u["StateDirectoryMode"] == ["0700"], u
    state = "/var/lib/" + u["StateDirectory"][0]
    args = shlex.split(u["ExecStart"][0])
    data = args[args.index("--data") + 1]
    assert os.path.dirname(data) == state, (data, state)  # a subdirectory, not the symlink
    allowed = syscalls(u["SystemCallFilter"][0].split())
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
        with tvtest.Server(data_dir=d, preexec_fn=as_nobody) as srv:
            st = os.stat(d)
            assert st.st_uid == NOBODY and st.st_mode & 0o777 == 0o700, oct(st.st_mode)
            tvtest.run(["query", "--server", srv.addr, "--from", "0", "--to", "1"], check=True)
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

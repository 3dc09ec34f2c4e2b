"""The data dir is checked before it is used (issue 10, kinds 1 and 8; server/RECOVERY.md):
permissions are enforced on everything already in it (0700 dirs, 0600 files, each fix logged),
a file of another owner is a refusal naming it, a directory that does not look like a data dir
(someone's home: no FORMAT marker, names not of our layout) is refused before anything is
written into it, a FORMAT of a newer version or foreign text is refused, a dir with our layout
and no marker (made before the marker existed) is adopted and marked, and a symlink or a file
where blocks/ should be is refused, as is a symlink where the lock file should be. Each refusal: exit 1, one line with the reason."""
import os
import shutil
import stat
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402

grpc, pb = tvtest.grpc_modules()
BASE = 1_764_100_000_000_000_000
FORMAT_LINE = "tracevault-data 1\n"


def run_tvd(data_dir, *args):
    return subprocess.run([tvtest.binary("tracevaultd"), "--data", data_dir, "--listen",
                           "127.0.0.1:0"] + list(args), capture_output=True, text=True,
                          timeout=60)


def mode(p):
    return stat.S_IMODE(os.lstat(p).st_mode)


def written_server():
    """A stopped server with one committed segment of two blocks (block ids 0x21, 0x22)."""
    srv = tvtest.Server()
    srv.start()
    cl = tvtest.GrpcClient(srv.addr)
    cl.write_segment(0x20, [(0x21 + b, [tvtest.trace_record(BASE + 10 * b + i, 10 * b + i)
                                        for i in range(10)]) for b in range(2)])
    cl.close()
    assert srv.stop() == 0
    return srv


def served(srv):
    cl = tvtest.GrpcClient(srv.addr)
    try:
        return sorted(r.pid for r in cl.query(0, 1 << 63))
    finally:
        cl.close()


def refused(data_dir, want_line):
    p = run_tvd(data_dir)
    assert p.returncode == 1 and p.stdout == "", (p.returncode, p.stdout, p.stderr)
    assert p.stderr == "tracevaultd: " + want_line + "\n", (p.stderr, want_line)


def test_mounted_file_system_root_is_a_new_dir():
    """The root of a file system mounted as the data dir: only lost+found, which stays as it
    is (root's, 0700 or not)."""
    d = tempfile.mkdtemp(prefix="tv-mnt-")
    os.mkdir(os.path.join(d, "lost+found"), 0o755)
    os.chmod(os.path.join(d, "lost+found"), 0o755)
    srv = tvtest.Server(data_dir=d)
    try:
        srv.start()
        assert mode(os.path.join(d, "lost+found")) == 0o755
        assert "lost+found" not in srv.log(), srv.log()
        with open(os.path.join(d, "FORMAT")) as f:
            assert f.read() == FORMAT_LINE
    finally:
        srv.cleanup()
        shutil.rmtree(d)


def test_new_dir_gets_format_and_modes():
    srv = tvtest.Server(data_dir=os.path.join(tempfile.mkdtemp(prefix="tv-new-"), "d"))
    try:
        srv.start()
        d = srv.data_dir
        with open(os.path.join(d, "FORMAT")) as f:
            assert f.read() == FORMAT_LINE
        assert mode(d) == 0o700 and mode(os.path.join(d, "FORMAT")) == 0o600
        assert sorted(os.listdir(d)) == ["FORMAT", "blocks", "catalog.db", "catalog.db-shm",
                                         "catalog.db-wal", "lock", "tmp"], os.listdir(d)
        assert "no FORMAT file: adopted" not in srv.log(), srv.log()
    finally:
        srv.cleanup()
        shutil.rmtree(os.path.dirname(srv.data_dir))


def test_permissions_are_enforced_on_existing_files():
    srv = written_server()
    try:
        d = srv.data_dir
        loose = {"": 0o755, "catalog.db": 0o644, "lock": 0o666, "FORMAT": 0o644,
                 "blocks": 0o755, "tmp": 0o750, "blocks/" + tvtest.block_name(0x20, 0x21): 0o644,
                 "blocks/" + tvtest.block_name(0x20, 0x22): 0o604}
        os.mkdir(os.path.join(d, "quarantine"), 0o755)
        with open(os.path.join(d, "quarantine", "old.tvb"), "w") as f:
            f.write("x")
        os.chmod(os.path.join(d, "quarantine"), 0o755)
        os.chmod(os.path.join(d, "quarantine", "old.tvb"), 0o644)
        loose.update({"quarantine": 0o755, "quarantine/old.tvb": 0o644})
        for rel, m in loose.items():
            os.chmod(os.path.join(d, rel), m)
        n = len(srv.log())
        srv.start()
        log = srv.log()[n:]
        for rel, m in loose.items():
            p = os.path.join(d, rel) if rel else d
            want = 0o700 if os.path.isdir(p) else 0o600
            assert mode(p) == want, (rel, oct(mode(p)))
            assert "tracevaultd: permissions: %s was %04o, now %04o" % (
                p.rstrip("/"), m, want) in log, (rel, log)
        assert served(srv) == list(range(20))
        # a second start has nothing to fix
        assert srv.stop() == 0
        n = len(srv.log())
        srv.start()
        assert "permissions:" not in srv.log()[n:], srv.log()[n:]
    finally:
        srv.cleanup()


def test_file_of_another_owner_is_refused():
    if os.geteuid() != 0:
        tvtest.skip("chown to another uid needs root")
    srv = written_server()
    try:
        d = srv.data_dir
        victim = os.path.join(d, "blocks", tvtest.block_name(0x20, 0x22))
        os.chown(victim, 12345, 12345)
        os.chmod(victim, 0o644)
        refused(d, "%s/blocks/%s is owned by uid 12345, not by tracevaultd's uid 0 (1 such "
                   "entry): chown it to uid 0, or run tracevaultd as its owner"
                % (d, tvtest.block_name(0x20, 0x22)))
        other = os.path.join(d, "blocks", tvtest.block_name(0x20, 0x21))
        os.chown(other, 12345, 12345)
        p = run_tvd(d)
        assert p.returncode == 1 and "(2 such entries): chown them to uid 0, or run " \
            "tracevaultd as their owner\n" in p.stderr, p.stderr
        os.chown(other, 0, 0)
        assert mode(victim) == 0o644 and os.stat(victim).st_uid == 12345  # nothing changed
        os.chown(d, 12345, 12345)
        refused(d, "data dir %s is owned by uid 12345, not by tracevaultd's uid 0: chown it, or "
                   "run tracevaultd as its owner" % d)
        os.chown(d, 0, 0)
        os.chown(victim, 0, 0)
        srv.start()
        assert served(srv) == list(range(20))
    finally:
        srv.cleanup()


def test_foreign_directory_is_refused_untouched():
    home = tempfile.mkdtemp(prefix="tv-home-")
    try:
        for n in (".bashrc", "notes.txt"):
            with open(os.path.join(home, n), "w") as f:
                f.write("mine\n")
        os.mkdir(os.path.join(home, "blocks"))  # even with a name of ours among them
        os.chmod(home, 0o755)
        refused(home, "%s does not look like a tracevault data dir: no FORMAT file, and "
                      "'.bashrc' is not part of tracevault's layout (use an empty or new "
                      "directory)" % home)
        assert sorted(os.listdir(home)) == [".bashrc", "blocks", "notes.txt"]  # no lock made
        assert mode(home) == 0o755
        # our names only, but blocks/ holds photos and there is no catalog: not ours either
        for n in (".bashrc", "notes.txt"):
            os.unlink(os.path.join(home, n))
        with open(os.path.join(home, "blocks", "cat.jpg"), "w") as f:
            f.write("jpeg\n")
        refused(home, "%s does not look like a tracevault data dir: no FORMAT file, no "
                      "catalog.db, and none of the 1 entries of blocks/ is named as a block file"
                % home)
        assert os.listdir(os.path.join(home, "blocks")) == ["cat.jpg"]
        f = os.path.join(home, "file")
        open(f, "w").close()
        refused(f, "data dir %s is not a directory" % f)
    finally:
        shutil.rmtree(home)


def test_format_marker_rules():
    srv = written_server()
    try:
        d = srv.data_dir
        fmt = os.path.join(d, "FORMAT")
        with open(fmt, "w") as f:
            f.write("tracevault-data 2\n")
        refused(d, "%s was written by a newer tracevaultd (data format 2; this one reads "
                   "format 1)" % d)
        with open(fmt, "w") as f:
            f.write("something else\n")
        refused(d, "%s/FORMAT is not tracevault's: 'something else' (expected "
                   "'tracevault-data 1')" % d)
        with open(fmt, "w") as f:
            f.write("tracevault-data 1")  # the right line without its newline: said so
        refused(d, "%s/FORMAT lacks its final newline (expected 'tracevault-data 1\\n')" % d)
        open(fmt, "w").close()  # empty: a crash while it was written; as if absent
        srv.start()
        with open(fmt) as f:
            assert f.read() == FORMAT_LINE
        assert served(srv) == list(range(20))
    finally:
        srv.cleanup()


def test_dir_without_marker_is_adopted():
    """A data dir made before FORMAT existed: our names only, blocks named <block hex>.tvb.
    Adopted, marked, the names given their segments, nothing lost."""
    srv = written_server()
    try:
        d = srv.data_dir
        os.unlink(os.path.join(d, "FORMAT"))
        for b in (0x21, 0x22):
            os.rename(tvtest.block_path(d, b), os.path.join(d, "blocks", "%016x.tvb" % b))
        n = len(srv.log())
        srv.start()
        assert ("tracevaultd: %s had tracevault's layout and no FORMAT file: adopted as a data "
                "dir of format 1" % d) in srv.log()[n:], srv.log()[n:]
        with open(os.path.join(d, "FORMAT")) as f:
            assert f.read() == FORMAT_LINE
        assert sorted(os.listdir(os.path.join(d, "blocks"))) == [
            tvtest.block_name(0x20, 0x21), tvtest.block_name(0x20, 0x22)]
        assert served(srv) == list(range(20))
    finally:
        srv.cleanup()


def test_store_dirs_must_be_directories():
    srv = written_server()
    try:
        d = srv.data_dir
        elsewhere = tempfile.mkdtemp(prefix="tv-elsewhere-")
        os.rmdir(os.path.join(d, "tmp"))
        os.symlink(elsewhere, os.path.join(d, "tmp"))
        refused(d, "%s/tmp is a symlink, not a directory: tracevaultd keeps its files in DIR "
                   "itself (move it away)" % d)
        os.unlink(os.path.join(d, "tmp"))
        shutil.rmtree(elsewhere)
        open(os.path.join(d, "quarantine"), "w").close()
        refused(d, "%s/quarantine is a file, not a directory: tracevaultd keeps its files in "
                   "DIR itself (move it away)" % d)
        os.unlink(os.path.join(d, "quarantine"))
        srv.start()  # tmp/ absent: made again
        assert mode(os.path.join(d, "tmp")) == 0o700
        assert served(srv) == list(range(20))
    finally:
        srv.cleanup()


def test_writable_by_others_is_refused():
    """DIR, blocks/, tmp/ or quarantine/ writable by group or world is refused, mode left as it
    is (another user could have put or swapped files there: the operator checks); readable
    ones are only fixed (above). A file's loose mode is fixed too: its bytes are checked."""
    srv = written_server()
    try:
        d = srv.data_dir
        for rel, m, who in (("", 0o770, "group"), ("", 0o707, "world"),
                            ("blocks", 0o720, "group"), ("tmp", 0o777, "world"),
                            ("quarantine", 0o702, "world")):
            p = os.path.join(d, rel) if rel else d
            if not os.path.exists(p):
                os.mkdir(p, 0o700)
            os.chmod(p, m)
            refused(d, "%s is %s-writable (mode %04o): another user could have changed what "
                    "is in it; check it, then chmod 700 it" % (p, who, m))
            assert mode(p) == m, (rel, oct(mode(p)))
            os.chmod(p, 0o700)
        srv.start()
        assert served(srv) == list(range(20))
    finally:
        srv.cleanup()


def test_data_dir_symlink_is_refused():
    """DIR itself a symlink (with or without a trailing slash) is refused: whoever can change
    the link would choose where the archive goes; through a parent that is a symlink it is
    served (test_data_dir.py)."""
    top = tempfile.mkdtemp(prefix="tv-dirlink-")
    try:
        os.mkdir(os.path.join(top, "real"), 0o700)
        link = os.path.join(top, "link")
        os.symlink("real", link)
        for given in (link, link + "/", link + "//"):
            refused(given, "data dir %s is a symlink: give the directory it points to as "
                    "--data" % given)
        assert os.listdir(os.path.join(top, "real")) == []  # nothing made through it
    finally:
        shutil.rmtree(top)


def test_lock_file_symlink_is_refused_as_such():
    """DIR/lock a symlink (planted: the lock and the pid written into it would go where it
    points) is refused with a line that says so, not as 'Too many levels of symbolic links';
    the file it points to is untouched."""
    srv = written_server()
    elsewhere = tempfile.mkdtemp(prefix="tv-lock-target-")
    try:
        d = srv.data_dir
        target = os.path.join(elsewhere, "victim")
        with open(target, "w") as f:
            f.write("keep\n")
        os.unlink(os.path.join(d, "lock"))
        os.symlink(target, os.path.join(d, "lock"))
        refused(d, "%s/lock is a symlink, not tracevaultd's lock file: remove it (tracevaultd "
                   "makes the file again)" % d)
        with open(target) as f:
            assert f.read() == "keep\n"
        os.unlink(os.path.join(d, "lock"))
        srv.start()
        assert served(srv) == list(range(20))
    finally:
        srv.cleanup()
        shutil.rmtree(elsewhere)


def main():
    tests = tvtest.cases(globals())
    results = tvtest.Results(len(tests))
    for t in tests:
        results.run(t)
    return results.exit_code()


if __name__ == "__main__":
    sys.exit(main())

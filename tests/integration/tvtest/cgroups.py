"""cgroup v2 for tests that filter by cgroup: the cgroup2 mount point and TempCgroup, a fresh
cgroup directory a child process can join."""
import os


def cgroup2_mount():
    """The cgroup v2 mount point (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts),
    or None."""
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 2 and parts[2] == "cgroup2":
                return parts[1]
    return None


class TempCgroup:
    """A fresh cgroup v2 directory for one test (removed on exit; it must be empty by then:
    stop the processes put in it first), and join, a preexec_fn that moves a child process
    into it. path is None without a cgroup2 mount (the test then has nothing to run)."""

    def __init__(self, tag):
        root = cgroup2_mount()
        self.path = os.path.join(root, "tv-test-%s-%d" % (tag, os.getpid())) if root else None

    def join(self):
        with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
            f.write("0")

    def __enter__(self):
        if self.path:
            os.mkdir(self.path)
        return self

    def __exit__(self, *exc):
        if self.path:
            os.rmdir(self.path)

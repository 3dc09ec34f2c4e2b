"""A fresh tmpfs of a given size on a temp dir, for tests that fill a disk (needs CAP_SYS_ADMIN)."""
import os
import subprocess
import tempfile

from .caps import CAP_SYS_ADMIN, Unavailable, effective_caps


def mount_tmpfs(size):
    """A fresh tmpfs of size mounted on a new temp dir; remove it with umount_tmpfs. Without
    CAP_SYS_ADMIN this raises Unavailable; with it, a failed mount is a test failure."""
    if not effective_caps() >> CAP_SYS_ADMIN & 1:
        raise Unavailable("mounting a tmpfs needs CAP_SYS_ADMIN, absent from the effective set")
    d = tempfile.mkdtemp(prefix="tv-tmpfs-")
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "tmpfs", d],
                       capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        os.rmdir(d)
        raise AssertionError("mount -t tmpfs failed with CAP_SYS_ADMIN: " + p.stderr.strip())
    return d


def umount_tmpfs(d):
    p = subprocess.run(["umount", d], capture_output=True, text=True, timeout=30)
    if p.returncode != 0:  # still busy: detach it, the kernel frees it when unused
        subprocess.run(["umount", "-l", d], check=True, timeout=30)
    os.rmdir(d)

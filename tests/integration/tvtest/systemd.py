"""The systemd units of contrib/: their [Service] keys, the system calls a SystemCallFilter=
list allows (systemd-analyze expands its @groups), and the system calls a strace -f log shows a
run made, to check a unit's filter against a real run."""
import os
import re
import subprocess

CONTRIB = os.path.join(os.environ.get("TV_SOURCE_DIR", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")), "contrib")


def read_unit(name):
    """{key: [values]} of the [Service] section of contrib/name (comments and other sections
    left out)."""
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


def unit_syscalls(name):
    """What the unit's SystemCallFilter= lines allow (allow lists only)."""
    allowed = set()
    for v in read_unit(name)["SystemCallFilter"]:
        assert not v.startswith("~"), "a deny list: check it by hand (%s)" % v
        allowed |= syscalls(v.split())
    return allowed


def strace_prefix(log_path):
    """A command prefix logging every system call of the command and its threads."""
    return ["strace", "-f", "-qq", "-o", log_path]


def straced_syscalls(log_path):
    """The system call names in a strace -f log."""
    names = set()
    with open(log_path) as f:
        for line in f:
            m = re.match(r"^\d+\s+(\w+)\(", line)
            if m:
                names.add(m.group(1))
    return names

"""What this machine lets a test do: the effective capability set, whether eBPF programs can be
loaded, and Unavailable, the exception a test turns into SKIP for a missing capability."""
import os


CAP_SYS_ADMIN = 21
CAP_BPF = 39
CAP_PERFMON = 38


def effective_caps():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def bpf_unavailable_reason():
    """None when this process can load tracepoint eBPF programs, else why not."""
    caps = effective_caps()
    if not (caps >> CAP_SYS_ADMIN & 1 or (caps >> CAP_BPF & 1 and caps >> CAP_PERFMON & 1)):
        return "CAP_BPF+CAP_PERFMON (or CAP_SYS_ADMIN) absent from the effective capability set"
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        return "kernel has no BTF (/sys/kernel/btf/vmlinux missing)"
    return None


class Unavailable(Exception):
    """A capability the test needs is absent from this machine (not a failure): the test
    file reports SKIP (exit 77) with this reason, after running its other cases."""

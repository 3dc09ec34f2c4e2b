"""Processes the tests start and wait for: where the build's binaries are (BIN_DIR, GEN_DIR),
run() for the tracevault CLI, the real tracevaultd (Server) on a temp data dir and an ephemeral
port, free ports, the wait helpers, and skip() (ctest's SKIP exit code). The valgrind run
(VALGRIND) runs every Server under memcheck: SLOWDOWN is what a test multiplies the bounds of
its waits on the daemon by, rlimit_nofile() and daemon_fds() its descriptor limit and its open
descriptors as the daemon itself has them."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time


# default: build/ at the top of the source tree (tests/integration/../../build)
BIN_DIR = os.environ.get("TV_BIN_DIR", os.path.join(os.path.dirname(os.path.dirname(__file__)),
                                                    "../../build"))
GEN_DIR = os.environ.get("TV_GEN_DIR", os.path.join(BIN_DIR, "gen"))
SKIP = 77  # ctest SKIP_RETURN_CODE
# The valgrind run (tests/valgrind_suite.py): with TV_VALGRIND_DIR set, every Server runs the
# tracevaultd at TV_VALGRIND_SERVER (a build without sanitizers: valgrind cannot run an ASan
# binary) under memcheck, its report in TV_VALGRIND_DIR/tracevaultd-PID.log (a directory every
# uid can create files in: a daemon may run as nobody).
VALGRIND_DIR = os.environ.get("TV_VALGRIND_DIR")
VALGRIND_SERVER = os.environ.get("TV_VALGRIND_SERVER")
VALGRIND = bool(VALGRIND_DIR)
VALGRIND_ERROR_EXIT = 97  # what tracevaultd exits with when memcheck found an error
# How many times longer than in the tests' own builds the daemon takes to do a thing: every
# bound on a wait for its work (start, stop, a deadline, a time-bounded loop) is multiplied by
# it. Memcheck runs tracevaultd 10-50x slower; with 10 the whole suite passes under it
# (tests/VALGRIND.md), most waits being far above what the work takes.
SLOWDOWN = 10 if VALGRIND else 1
# valgrind keeps the top 12 descriptors of RLIMIT_NOFILE for itself and gives the daemon
# soft = hard = what is left; the daemon cannot raise it (valgrind 3.19, coregrind/m_main.c
# setup_file_descriptors: N_RESERVED_FDS; syswrap-generic.c refuses a setrlimit above it).
VALGRIND_RESERVED_FDS = 12


def binary(name):
    return os.path.join(BIN_DIR, name)


def server_command():
    """argv[0:] that starts tracevaultd: the binary, or memcheck over it in the valgrind run
    (invalid accesses, uses of undefined values and definite leaks are errors)."""
    if not VALGRIND_DIR:
        return [binary("tracevaultd")]
    return ["valgrind", "--error-exitcode=%d" % VALGRIND_ERROR_EXIT, "--leak-check=full",
            "--show-leak-kinds=definite", "--errors-for-leak-kinds=definite",
            "--log-file=%s" % os.path.join(VALGRIND_DIR, "tracevaultd-%p.log"),
            VALGRIND_SERVER or binary("tracevaultd")]


def rlimit_nofile(n):
    """preexec_fn for Server: the daemon runs with RLIMIT_NOFILE n, soft and hard, as it sees
    it (getrlimit). In the valgrind run the process gets n + VALGRIND_RESERVED_FDS, so that
    the daemon under memcheck sees n too."""
    import resource
    real = n + VALGRIND_RESERVED_FDS if VALGRIND else n
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (real, real))


def daemon_fds(pid):
    """The descriptor numbers the daemon pid holds open, without valgrind's own in the
    valgrind run: those at or above the limit it gives the daemon (RLIMIT_NOFILE's soft
    value less VALGRIND_RESERVED_FDS) and its report file."""
    fds = [int(n) for n in os.listdir("/proc/%d/fd" % pid)]
    if not VALGRIND:
        return fds
    with open("/proc/%d/limits" % pid) as f:
        soft = int([ln for ln in f if ln.startswith("Max open files")][0].split()[3])
    own = []
    for fd in fds:
        try:
            own.append(os.readlink("/proc/%d/fd/%d" % (pid, fd)).startswith(
                VALGRIND_DIR.rstrip("/") + "/"))
        except OSError:  # closed meanwhile
            own.append(True)
    return [fd for fd, vg in zip(fds, own) if fd < soft - VALGRIND_RESERVED_FDS and not vg]


def skip(reason):
    print("SKIP: " + reason)
    sys.exit(SKIP)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_accepting(proc, port, timeout):
    """True once 127.0.0.1:port accepts a connection (a server has no other readiness signal
    we can read), False if proc exits or timeout seconds pass first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def wait_for(pred, what, timeout_s=30, interval_s=0.01):
    """Bounded poll, for the few signals that only exist as file content (a server log line).
    The bound is timeout_s x SLOWDOWN."""
    timeout_s *= SLOWDOWN
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError("timed out after %ss waiting for %s" % (timeout_s, what))


def run(args, input=None, timeout=120, check=False):
    """Run the tracevault CLI; returns CompletedProcess with text stdout/stderr."""
    p = subprocess.run([binary("tracevault")] + list(args), input=input, capture_output=True,
                       text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError("tracevault %s exited %d: %s" % (" ".join(args), p.returncode,
                                                              p.stderr.strip()))
    return p


class Started:
    """A context manager over start() and cleanup(): `with X(...) as x:` starts x and always
    cleans up, also when start() itself fails (__exit__ does not run when __enter__ raises)."""

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc):
        self.cleanup()


class Server(Started):
    """A real tracevaultd on a temp data dir and an ephemeral port."""

    def __init__(self, data_dir=None, extra_args=(), listen="127.0.0.1:0", preexec_fn=None):
        self.listen = listen  # set it to self.addr to restart on the same port
        self.preexec_fn = preexec_fn  # e.g. a resource.setrlimit for the daemon only
        self.own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="tv-data-")
        self.extra_args = list(extra_args)
        self.proc = None
        self.addr = None
        self.prefix = []  # a command the daemon runs under (e.g. strace)
        # stderr goes to a file, not a pipe: a pipe nobody drains would block a chatty daemon
        fd, self.log_path = tempfile.mkstemp(prefix="tv-server-", suffix=".log")
        os.close(fd)

    def log(self):
        """Everything the daemon wrote to stderr so far (all its runs)."""
        with open(self.log_path) as f:
            return f.read()

    def start(self, timeout=20):
        """Start the daemon and wait (at most timeout seconds: a hung daemon fails the test
        instead of hanging it) for its first stdout line, the readiness signal."""
        import select
        timeout *= SLOWDOWN
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(
                self.prefix + server_command() + ["--data", self.data_dir, "--listen",
                                                  self.listen]
                + self.extra_args,
                stdout=subprocess.PIPE, stderr=log, preexec_fn=self.preexec_fn)
        deadline = time.monotonic() + timeout
        fd, line = self.proc.stdout.fileno(), b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready = select.select([fd], [], [], left)[0] if left > 0 else []
            chunk = os.read(fd, 256) if ready else b""
            if not chunk:  # deadline passed, or the daemon closed stdout (exited)
                break
            line += chunk
        line = line.decode(errors="replace")
        if not line.startswith("listening on ") or not line.endswith("\n"):
            self.stop(sig=signal.SIGKILL)
            raise AssertionError("tracevaultd did not start within %ss: %r %s"
                                 % (timeout, line, self.log()))
        self.addr = line.split()[-1]
        return self

    def stop(self, sig=signal.SIGTERM, timeout=20):
        timeout *= SLOWDOWN
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("tracevaultd did not exit within %ss of signal %d"
                                     % (timeout, sig))
        rc = self.proc.returncode if self.proc else 0
        return rc

    def cleanup(self):
        """Stop the daemon and remove everything this object created (log, own data dir),
        even when stopping it fails."""
        try:
            self.stop()
        finally:
            if self.proc and self.proc.stdout:
                self.proc.stdout.close()
            if os.path.exists(self.log_path):
                os.unlink(self.log_path)
            if self.own_dir:
                shutil.rmtree(self.data_dir, ignore_errors=True)

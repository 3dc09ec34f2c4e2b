"""Shared helpers for integration tests: start the real tracevaultd and nginx on 127.0.0.1
ephemeral ports, run the tracevault CLI, and always stop what was started."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BIN_DIR = os.environ.get("TV_BIN_DIR", os.path.join(os.path.dirname(__file__), "../../build"))
GEN_DIR = os.environ.get("TV_GEN_DIR", os.path.join(BIN_DIR, "gen"))
SKIP = 77  # ctest SKIP_RETURN_CODE

CAP_SYS_ADMIN = 21
CAP_BPF = 39
CAP_PERFMON = 38


def binary(name):
    return os.path.join(BIN_DIR, name)


def skip(reason):
    print("SKIP: " + reason)
    sys.exit(SKIP)


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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def curl(*args, data=None, timeout_s=60):
    """One curl run (its URLs share a keep-alive connection); returns the status codes.
    Arguments starting with http:// are URLs, each with its own -o /dev/null; -g so that an
    IPv6 literal like [::1] is not read as a glob. data (bytes) goes to curl's stdin."""
    argv = ["curl", "-s", "-S", "-g", "-w", "%{http_code}\\n"]
    for a in args:
        argv += ["-o", "/dev/null", a] if a.startswith("http://") else [a]
    p = subprocess.run(argv, input=data, capture_output=True, timeout=timeout_s)
    if p.returncode != 0:
        raise AssertionError("curl %s failed: %s" % (" ".join(args), p.stderr.decode().strip()))
    return p.stdout.decode().split()


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


def run(args, input=None, timeout=120, check=False):
    """Run the tracevault CLI; returns CompletedProcess with text stdout/stderr."""
    p = subprocess.run([binary("tracevault")] + list(args), input=input, capture_output=True,
                       text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError("tracevault %s exited %d: %s" % (" ".join(args), p.returncode,
                                                              p.stderr.strip()))
    return p


class Server:
    """A real tracevaultd on a temp data dir and an ephemeral port."""

    def __init__(self, data_dir=None, extra_args=(), listen="127.0.0.1:0", preexec_fn=None):
        self.listen = listen  # set it to self.addr to restart on the same port
        self.preexec_fn = preexec_fn  # e.g. a resource.setrlimit for the daemon only
        self.own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="tv-data-")
        self.extra_args = list(extra_args)
        self.proc = None
        self.addr = None
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
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(
                [binary("tracevaultd"), "--data", self.data_dir, "--listen", self.listen]
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

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.cleanup()  # __exit__ does not run when __enter__ raises
            raise

    def __exit__(self, *exc):
        self.cleanup()


NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
user root;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    default_type application/octet-stream;
    sendfile on;
    keepalive_timeout 30;
    log_format tv '$request_method $uri $status $body_bytes_sent $request_length';
    server {{
        listen 127.0.0.1:{port};{listen6}
        access_log {dir}/access.log tv;
        root {dir}/www;
        location / {{ }}
        location = /post {{ return 201 "created\\n"; }}
    }}
}}
"""


class HttpServer:
    """What the test HTTP servers share: a process serving a temp dir, stopped with the signal
    that makes it flush its log (STOP_SIGNAL), then killed if it does not exit in time."""
    STOP_SIGNAL = signal.SIGTERM

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(self.STOP_SIGNAL)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cleanup(self):
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.cleanup()  # __exit__ does not run when __enter__ raises
            raise

    def __exit__(self, *exc):
        self.cleanup()


class Nginx(HttpServer):
    """A real nginx on 127.0.0.1:port serving files from a temp www dir, logging each request as
    'METHOD URI STATUS BODY_BYTES_SENT REQUEST_LENGTH' to access.log. ipv6=True: also on
    [::1]:port (the same port)."""
    STOP_SIGNAL = signal.SIGQUIT  # graceful: flushes the access log

    def __init__(self, files=None, ipv6=False):
        self.ipv6 = ipv6
        self.dir = tempfile.mkdtemp(prefix="tv-nginx-")
        self.port = None
        self.proc = None
        os.makedirs(os.path.join(self.dir, "www"))
        for name, body in (files or {"index.html": b"hello tracevault\n"}).items():
            with open(os.path.join(self.dir, "www", name), "wb") as f:
                f.write(body)

    def start(self, timeout=10):
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        for _ in range(5):  # the free port can be taken between probe and bind: try again
            self.port = free_port()
            conf = os.path.join(self.dir, "nginx.conf")
            with open(conf, "w") as f:
                f.write(NGINX_CONF.format(dir=self.dir, port=self.port, listen6=(
                    "\n        listen [::1]:%d;" % self.port if self.ipv6 else "")))
            self.proc = subprocess.Popen([nginx, "-c", conf, "-e", os.path.join(self.dir, "error.log")],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if wait_accepting(self.proc, self.port, timeout):
                return self
            self.stop()
        raise AssertionError("nginx did not start")

    def access_log(self):
        path = os.path.join(self.dir, "access.log")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [line.split() for line in f if line.strip()]


class PyHttp(HttpServer):
    """A second, independent HTTP server: /usr/bin/python3 -m http.server serving a temp dir on
    bind:port (bind may be an IPv6 address such as "::1", or "::" for dual stack). Its comm is
    "python3". preexec_fn runs in the child before exec (e.g. to join a cgroup)."""

    def __init__(self, bind="127.0.0.1", files=None, preexec_fn=None):
        self.bind = bind
        self.dir = tempfile.mkdtemp(prefix="tv-pyhttp-")
        self.port = None
        self.proc = None
        self.preexec_fn = preexec_fn
        for name, body in (files or {"index.html": b"hello from python\n"}).items():
            with open(os.path.join(self.dir, name), "wb") as f:
                f.write(body)

    def start(self, timeout=10):
        family = socket.AF_INET6 if ":" in self.bind else socket.AF_INET
        probe = "::1" if self.bind == "::" else self.bind
        for _ in range(5):  # the free port can be taken between probe and bind: try again
            self.port = free_port()
            self.proc = subprocess.Popen(["/usr/bin/python3", "-m", "http.server", "--bind",
                                          self.bind, "--directory", self.dir, str(self.port)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         preexec_fn=self.preexec_fn)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with socket.socket(family) as s:
                        s.settimeout(0.2)
                        s.connect((probe, self.port))
                    return self
                except OSError:
                    time.sleep(0.05)
            self.stop()
        raise AssertionError("python http.server did not start on %s" % self.bind)


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


class Capture:
    """A running `tracevault capture`, started with --ready-fd: start() returns once the probes
    are attached (the process writes "ready" on the pipe), stop() sends SIGINT and waits."""

    def __init__(self, server_addr, extra_args=()):
        self.args = ["capture", "--server", server_addr] + list(extra_args)
        self.proc = None
        self.stderr = ""

    def start(self, timeout=30):
        import select
        r, w = os.pipe()
        try:
            self.proc = subprocess.Popen([binary("tracevault")] + self.args + ["--ready-fd", str(w)],
                                         pass_fds=(w,), stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True)
        finally:
            os.close(w)
        try:
            ready, _, _ = select.select([r], [], [], timeout)
            line = os.read(r, 64) if ready else b""
        finally:
            os.close(r)
        if line != b"ready\n":
            rc, err = self.stop()
            raise AssertionError("tracevault capture did not become ready (%r, exit %s): %s"
                                 % (line, rc, err.strip()))
        return self

    def stop(self, sig=signal.SIGINT, timeout=60):
        """Returns (exit code, stderr)."""
        if self.proc is None:
            return None, ""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            _, self.stderr = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, self.stderr = self.proc.communicate()
            raise AssertionError("tracevault capture did not exit within %ss of signal %d"
                                 % (timeout, sig))
        return self.proc.returncode, self.stderr

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# ---- the query output formats, written here from their description, not from the C code ----

RECORD_FIELDS = ["ts_ns", "end_ns", "latency_ns", "pid", "comm", "local", "remote", "method",
                 "path", "status", "req_body_bytes", "resp_body_bytes", "trace_id", "span_id",
                 "flags"]
# `--format table`: column widths; TIME, METHOD, PATH, COMM left-aligned, the numbers right
TABLE_WIDTHS = (("TIME", 24), ("METHOD", 7), ("PATH", 40), ("STATUS", 6), ("LATENCY_MS", 12),
                ("PID", 8), ("COMM", 16))
TABLE_HEADER = ("%-24s %-7s %-40s %6s %12s %8s %-16s %s"
                % tuple([n for n, _ in TABLE_WIDTHS] + ["REMOTE"]))


def _table_col(s, width, last=False):
    """A text column: its bytes, each outside printable ASCII shown as '?', cut to width with
    a '...' ending, padded to width plus one space unless it is the last column."""
    b = s.encode("utf-8")
    cut = width > 0 and len(b) > width
    out = "".join(chr(c) if 0x20 <= c < 0x7F else "?" for c in b[:width - 3 if cut else len(b)])
    if cut:
        out += "..."
    return out if last else out + " " * (width - len(out)) + " "


def rfc3339_ms(ts_ns):
    """2026-01-01T00:00:00.123Z: UTC, milliseconds truncated (not rounded)."""
    import datetime
    secs, ns = divmod(ts_ns, 10**9)
    dt = datetime.datetime.fromtimestamp(secs, datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + ".%03dZ" % (ns // 10**6)


def table_row(r):
    """The exact table line of record r (a dict of the jsonl fields), without the newline."""
    return (_table_col(rfc3339_ms(r["ts_ns"]), 24) + _table_col(r["method"], 7)
            + _table_col(r["path"], 40)
            + "%6d %12.3f %8d " % (r["status"], r["latency_ns"] / 1e6, r["pid"])
            + _table_col(r["comm"], 16) + _table_col(r["remote"], 0, last=True))


def check_table(out, records, what):
    """out (a `--format table` answer) is the header and exactly one line per record, every
    column of every row equal to the reference; raises naming the first different line."""
    want = [TABLE_HEADER] + [table_row(r) for r in records]
    got = out.split("\n")
    assert got[-1] == "", "%s: table does not end in a newline: %r" % (what, out[-200:])
    got = got[:-1]
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == w, "%s: table line %d differs\n got  %r\n want %r" % (what, i, g, w)
    assert len(got) == len(want), "%s: %d table lines, want %d" % (what, len(got), len(want))


# ---- tv_load: the test-only driver of the real client pipeline (tests/tools/tv_load.c) ----

FAIL_LINE_RE = (r"^tracevault: segment ([0-9a-f]{16}) failed: (.*); dropped (\d+) blocks, "
                r"(\d+) records, ts \[(\d+), (\d+)\]; cleanup: (.*)$")


class Loader:
    """A running tv_load. Each command waits for its one answer line on stdout (the readiness
    signal); stderr (the pipeline's failure lines) goes to a file read by stderr_text()."""

    def __init__(self, servers, records, extra_args=(), tag=0, ts_base_ns=None):
        import queue
        import threading
        self.tag = tag
        self.ts_base_ns = ts_base_ns if ts_base_ns is not None else 1767225600 * 10**9 + tag * 10**12
        fd, self.err_path = tempfile.mkstemp(prefix="tv-load-", suffix=".err")
        os.close(fd)
        with open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(
                [binary("tv_load"), "--server", servers, "--records", str(records),
                 "--tag", str(tag), "--ts-base", str(self.ts_base_ns)] + list(extra_args),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True, bufsize=1)
        self.lines = queue.Queue()
        # a reader thread turns stdout lines into a queue, so every wait has a timeout
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        try:
            first = self._line(60)
            if first != "ready":
                raise AssertionError("tv_load did not start: %r %s" % (first, self.stderr_text()))
        except BaseException:
            self.kill()
            os.unlink(self.err_path)  # the caller gets no object to clean up
            raise

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _line(self, timeout):
        import queue
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("tv_load gave no answer within %ss; stderr: %s"
                                 % (timeout, self.stderr_text()))
        if line is None:
            raise AssertionError("tv_load exited (%s): %s" % (self.proc.wait(), self.stderr_text()))
        return line

    def send(self, command):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def command(self, command, timeout=120):
        self.send(command)
        return self._line(timeout)

    def answer(self, timeout=120):
        """The answer to a command sent earlier with send()."""
        return self._line(timeout)

    def poll_answer(self):
        """An answer line if one is waiting, else None (never blocks)."""
        import queue
        try:
            line = self.lines.get_nowait()
        except queue.Empty:
            return None
        if line is None:
            raise AssertionError("tv_load exited (%s): %s" % (self.proc.wait(), self.stderr_text()))
        return line

    @staticmethod
    def parse_segment(line):
        """'segment ok first F count N refused K[ seqs A-B,...]' -> dict with the seqs stored
        if the segment committed (the range minus the refused runs)."""
        w = line.split()
        if len(w) < 8 or w[0] != "segment" or w[1] not in ("ok", "failed"):
            raise AssertionError("unexpected tv_load answer %r" % line)
        first, count, refused = int(w[3]), int(w[5]), int(w[7])
        refused_seqs = set()
        if len(w) > 8:
            for run in w[9].split(","):
                a, b = run.split("-")
                refused_seqs.update(range(int(a), int(b) + 1))
        assert len(refused_seqs) == refused, line
        return {"ok": w[1] == "ok", "first": first, "count": count, "refused": refused,
                "seqs": [s for s in range(first, first + count) if s not in refused_seqs]}

    def segment(self, n=None, timeout=120):
        return self.parse_segment(self.command("segment" + ("" if n is None else " %d" % n),
                                               timeout))

    def stats(self):
        import json
        return json.loads(self.command("stats", 30))

    def ts_of(self, seq):
        return self.ts_base_ns + seq

    def stderr_text(self):
        with open(self.err_path) as f:
            return f.read()

    def failure_lines(self):
        import re
        return [re.match(FAIL_LINE_RE, line).groups() for line in self.stderr_text().splitlines()
                if re.match(FAIL_LINE_RE, line)]

    def quit(self, timeout=60):
        if self.proc.poll() is None:
            self.send("quit")
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError("tv_load did not quit within %ss" % timeout)
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def cleanup(self):
        try:
            if self.proc.poll() is None:
                self.proc.stdin.close()  # EOF: the driver frees the pipeline and exits
                try:
                    self.proc.wait(30)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            self.kill()
            os.unlink(self.err_path)


def loader_path_key(path):
    """(tag, seq) from a tv_load record path /tvload/<tag>/<seq>/<pad>, or None."""
    parts = path.split("/")
    if len(parts) < 4 or parts[1] != "tvload":
        return None
    return int(parts[2]), int(parts[3])


def query_keys(servers, from_ns=0, to_ns=2**63, extra=()):
    """`tracevault query` over servers: the (tag, seq) keys in output order, and the ts_ns list."""
    import json
    p = run(["query", "--server", servers, "--from", str(from_ns), "--to", str(to_ns)]
            + list(extra), timeout=300, check=True)
    keys, ts = [], []
    for line in p.stdout.splitlines():
        obj = json.loads(line)
        keys.append(loader_path_key(obj["path"]))
        ts.append(obj["ts_ns"])
    return keys, ts


# ---- server data dir inspection ----

def catalog_blocks(data_dir):
    """{block_id: segment_id} from DATA/catalog.db (ids as unsigned 64-bit)."""
    import sqlite3
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(data_dir, "catalog.db"), uri=True,
                         timeout=10)
    try:
        rows = db.execute("SELECT block_id, segment_id FROM blocks").fetchall()
    finally:
        db.close()
    return {b & (2**64 - 1): s & (2**64 - 1) for b, s in rows}


def block_files(data_dir):
    """Block ids of the files in DATA/blocks (names are <16hex>.tvb)."""
    out = set()
    for name in os.listdir(os.path.join(data_dir, "blocks")):
        assert name.endswith(".tvb") and len(name) == 20, "unexpected file blocks/%s" % name
        out.add(int(name[:16], 16))
    return out


def tmp_files(data_dir):
    return sorted(os.listdir(os.path.join(data_dir, "tmp")))


def segment_log_lines(log, segment_id):
    """The server log lines about one segment ('segment <16hex> ...')."""
    tag = "segment %016x " % segment_id
    return [line for line in log.splitlines() if line.startswith(tag)]


def wait_for(pred, what, timeout_s=30, interval_s=0.01):
    """Bounded poll, for the few signals that only exist as file content (a server log line)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError("timed out after %ss waiting for %s" % (timeout_s, what))


def place_block(block_id, nservers):
    """tv_place_block (client/write/grpc_writer.c): jump consistent hash, computed independently."""
    if nservers <= 1:
        return 0
    b, j, key = -1, 0, block_id
    while j < nservers:
        b = j
        key = (key * 2862933555777941757 + 1) & (2**64 - 1)
        j = int(float(b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b


# ---- an independent grpcio client (interop): block encoder from proto/BLOCK.md ----

def grpc_modules():
    """(grpc, tracevault_pb2), or SKIP when python3-grpcio is missing."""
    try:
        import grpc
    except ImportError:
        skip("python3-grpcio is not installed for /usr/bin/python3")
    sys.path.insert(0, GEN_DIR)
    import tracevault_pb2
    return grpc, tracevault_pb2


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_T = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC_T[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def encode_block(block_id, records):
    """BLOCK.md: 64-byte little-endian header, then length-delimited TraceRecords sorted by
    ts_ns (stable), codec 0 (stored as is)."""
    import struct
    recs = sorted(records, key=lambda r: r.ts_ns)
    payload = b"".join(varint(len(b)) + b for b in (r.SerializeToString() for r in recs))
    head = struct.pack("<IHHQQQIIQQI", 0x4B425654, 1, 0, block_id, recs[0].ts_ns,
                       recs[-1].ts_ns, len(recs), 0, len(payload), len(payload),
                       crc32c(payload))
    assert len(head) == 60
    return head + struct.pack("<I", crc32c(head)) + payload


def encode_block_v2(block_id, records, loss=(0, 0, 0, 0, 0), empty_ts_ns=0, lost_requests=0):
    """BLOCK.md version 2: the v1 fields, 4 reserved bytes, the five u64 loss counters
    (ring_full, map_full, parser, cache, failed), u32 lost_requests, the CRC32C of [0, 108),
    then the payload (codec 0). With no records the range is [empty_ts_ns, empty_ts_ns]."""
    import struct
    recs = sorted(records, key=lambda r: r.ts_ns)
    payload = b"".join(varint(len(b)) + b for b in (r.SerializeToString() for r in recs))
    lo = recs[0].ts_ns if recs else empty_ts_ns
    hi = recs[-1].ts_ns if recs else empty_ts_ns
    head = struct.pack("<IHHQQQIIQQII5QI", 0x4B425654, 2, 0, block_id, lo, hi, len(recs), 0,
                       len(payload), len(payload), crc32c(payload), 0, *loss, lost_requests)
    assert len(head) == 108
    return head + struct.pack("<I", crc32c(head)) + payload


class GrpcClient:
    """Write/Query/Delete through grpcio and the generated messages only."""

    def __init__(self, addr, timeout_s=30):
        self.grpc, self.pb = grpc_modules()
        self.timeout_s = timeout_s
        self.ch = self.grpc.insecure_channel(addr, options=[
            ("grpc.max_receive_message_length", 16 << 20),
            ("grpc.max_send_message_length", 16 << 20)])
        ser = lambda m: m.SerializeToString()  # noqa: E731
        self.write = self.ch.stream_stream("/tracevault.v1.TraceStore/Write",
                                           request_serializer=ser,
                                           response_deserializer=self.pb.WriteResponse.FromString)
        self.query_rpc = self.ch.unary_stream(
            "/tracevault.v1.TraceStore/Query", request_serializer=ser,
            response_deserializer=self.pb.QueryResponse.FromString)

    def write_segment(self, segment_id, blocks, chunk_bytes=4096):
        """blocks: [(block_id, [TraceRecord])]; returns the last WriteResponse (committed)."""
        return self.write_encoded(segment_id,
                                  [(block_id, encode_block(block_id, recs))
                                   for block_id, recs in blocks], chunk_bytes)

    def write_encoded(self, segment_id, blocks, chunk_bytes=4096):
        """Like write_segment, for blocks already encoded: [(block_id, bytes)]."""
        pb = self.pb
        reqs = [pb.WriteRequest(command=pb.WriteCommand(type=pb.OPEN_SEGMENT,
                                                        segment_id=segment_id))]
        for block_id, data in blocks:
            reqs.append(pb.WriteRequest(command=pb.WriteCommand(type=pb.OPEN_BLOCK,
                                                                block_id=block_id,
                                                                length=len(data))))
            for off in range(0, len(data), chunk_bytes):
                piece = data[off:off + chunk_bytes]
                reqs.append(pb.WriteRequest(chunk=pb.Chunk(block_id=block_id, offset=off,
                                                           crc32c=crc32c(piece), data=piece)))
        reqs.append(pb.WriteRequest(command=pb.WriteCommand(type=pb.COMMIT,
                                                            segment_id=segment_id)))
        responses = list(self.write(iter(reqs), timeout=self.timeout_s))
        return responses[-1]

    def query(self, from_ns, to_ns, limit=0):
        recs = []
        for resp in self.query_rpc(self.pb.QueryRequest(from_ns=from_ns, to_ns=to_ns, limit=limit),
                                   timeout=self.timeout_s):
            recs.extend(resp.records)
        return recs

    def close(self):
        self.ch.close()


# ---- capture fidelity helpers: a raw HTTP/1.x client, lighttpd, wrk, one capture run ----

class RawHttp:
    """One TCP connection to 127.0.0.1:port for what curl cannot do on purpose: several requests
    in one send (pipelining), a request written byte by byte, a chunked or 100-continue upload.
    Every read has a timeout, so a test never hangs on a server that stops answering."""

    def __init__(self, port, timeout_s=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def send_bytewise(self, data, pause_s=0.001):
        """One send per byte (TCP_NODELAY): the server sees the request across many reads."""
        for i in range(len(data)):
            self.sock.sendall(data[i:i + 1])
            time.sleep(pause_s)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise AssertionError("server closed the connection mid-response")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _take(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_head(self):
        """(status, {lowercase name: value}) of the next response head, 1xx included."""
        status = int(self._line().split()[1])
        headers = {}
        while True:
            line = self._line()
            if not line:
                return status, headers
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()

    def read_response(self, head_request=False, close_delimited_ok=False):
        """(status, body bytes) of the next final response; 1xx interim heads are skipped."""
        while True:
            status, headers = self.read_head()
            if status >= 200:
                break
        if head_request or status in (204, 304):
            return status, 0
        if headers.get("transfer-encoding", "").lower() == "chunked":
            total = 0
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():  # trailers up to the empty line
                        pass
                    return status, total
                self._take(size)
                total += size
                assert self._take(2) == b"\r\n", "bad chunk framing"
        if "content-length" in headers:
            return status, len(self._take(int(headers["content-length"])))
        assert close_delimited_ok, "response without length: %s" % headers
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                data, self.buf = self.buf, b""
                return status, len(data)
            self.buf += chunk

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def http_request(method, path, headers=(), body=b"", version="HTTP/1.1"):
    """The bytes of one request; Host is always sent, Content-Length when body is non-empty
    and no Transfer-Encoding header is given."""
    lines = ["%s %s %s" % (method, path, version), "Host: 127.0.0.1"] + list(headers)
    if body and not any(h.lower().startswith("transfer-encoding:") for h in headers):
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


LIGHTTPD_CONF = """
server.document-root = "{dir}/www"
server.bind = "127.0.0.1"
server.port = {port}
server.pid-file = "{dir}/lighttpd.pid"
server.errorlog = "{dir}/error.log"
server.modules = ("mod_accesslog")
server.max-keep-alive-requests = 1000
server.network-backend = "sendfile"
accesslog.filename = "{dir}/access.log"
accesslog.format = "%m %U %>s %b"
mimetype.assign = ("" => "application/octet-stream")
"""


class Lighttpd(HttpServer):
    """A real lighttpd (Debian package lighttpd) in the foreground on 127.0.0.1:port serving a
    temp www dir, logging each request as 'METHOD PATH STATUS BODY_BYTES' (%b is '-' for 0)."""
    STOP_SIGNAL = signal.SIGINT  # graceful: closes and flushes the access log

    def __init__(self, files=None):
        self.dir = tempfile.mkdtemp(prefix="tv-lighttpd-")
        self.port = None
        self.proc = None
        os.makedirs(os.path.join(self.dir, "www"))
        for name, body in (files or {"index.html": b"hello from lighttpd\n"}).items():
            with open(os.path.join(self.dir, "www", name), "wb") as f:
                f.write(body)

    @staticmethod
    def binary():
        return shutil.which("lighttpd") or ("/usr/sbin/lighttpd"
                                            if os.path.exists("/usr/sbin/lighttpd") else None)

    def start(self, timeout=10):
        for _ in range(5):  # the free port can be taken between probe and bind: try again
            self.port = free_port()
            conf = os.path.join(self.dir, "lighttpd.conf")
            with open(conf, "w") as f:
                f.write(LIGHTTPD_CONF.format(dir=self.dir, port=self.port))
            self.proc = subprocess.Popen([self.binary(), "-D", "-f", conf],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if wait_accepting(self.proc, self.port, timeout):
                return self
            self.stop()
        raise AssertionError("lighttpd did not start")

    def access_log(self):
        """[(method, path, status, body bytes)]; the probe connection of start() sent nothing."""
        path = os.path.join(self.dir, "access.log")
        if not os.path.exists(path):
            return []
        out = []
        with open(path) as f:
            for line in f:
                if line.strip():
                    m, u, s, b = line.split()
                    out.append((m, u, int(s), 0 if b == "-" else int(b)))
        return out


WRK_RE = r"(\d+) requests in [0-9.]+\w+, [0-9.]+\w+ read"


def wrk(url, threads=1, conns=10, duration_s=2, extra=(), timeout_s=120):
    """Run wrk once: (completed requests, req/s, socket error text or '', full stdout)."""
    import re
    p = subprocess.run(["wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % duration_s]
                       + list(extra) + [url], capture_output=True, text=True, timeout=timeout_s)
    if p.returncode != 0:
        raise AssertionError("wrk failed (%d): %s" % (p.returncode, p.stderr.strip()))
    m = re.search(WRK_RE, p.stdout)
    r = re.search(r"Requests/sec:\s+([0-9.]+)", p.stdout)
    if not m or not r:
        raise AssertionError("unexpected wrk output: %s" % p.stdout)
    errs = re.search(r"Socket errors:.*", p.stdout)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", p.stdout)
    bad = (errs.group(0) if errs else "") + (" non-2xx %s" % non2xx.group(1) if non2xx else "")
    return int(m.group(1)), float(r.group(1)), bad.strip(), p.stdout


CAPTURE_SUMMARY_RE = (r"sent (\d+), lost (\d+) \(kernel (\d+), parser (\d+), cache full (\d+), "
                      r"failed segments (\d+)\); kernel events (\d+), lost: ring full (\d+), "
                      r"map full (\d+), truncated (\d+); requests in lost events (\d+), "
                      r"responses lost (\d+), parser resyncs (\d+)")
CAPTURE_SUMMARY_KEYS = ("sent", "lost", "kernel", "parser", "cache", "failed", "events",
                        "ring_full", "map_full", "truncated", "lost_requests", "responses_lost",
                        "resyncs")


def parse_capture_summary(err):
    """The numbers of `tracevault capture`'s exit summary line, by CAPTURE_SUMMARY_KEYS."""
    import re
    m = re.search(CAPTURE_SUMMARY_RE, err)
    assert m, "no capture summary in: %s" % err
    return dict(zip(CAPTURE_SUMMARY_KEYS, (int(g) for g in m.groups())))


def capture_records(srv, args, traffic):
    """Runs traffic() under one `tracevault capture` with args (plus --block-age-ms 200);
    returns (records read back with query, the summary's numbers (parse_capture_summary),
    capture stderr). Asserts the capture exited 0 and its summary's 'sent' equals the records
    read back."""
    import json
    from_ns = time.time_ns()
    cap = Capture(srv.addr, list(args) + ["--block-age-ms", "200"]).start()
    try:
        traffic()
    finally:
        rc, err = cap.stop()
    assert rc == 0, "capture %s exited %s: %s" % (args, rc, err)
    nums = parse_capture_summary(err)
    q = run(["query", "--server", srv.addr, "--from", str(from_ns),
             "--to", str(time.time_ns() + 1), "--format", "jsonl"], timeout=300, check=True)
    recs = [json.loads(line) for line in q.stdout.splitlines() if line.strip()]
    assert nums["sent"] == len(recs), (nums, len(recs))
    return recs, nums, err


def compare_exchanges(want, recs, what, err=""):
    """want: [(method, path, status, body bytes)] from a server's access log; every one must be
    exactly one record and there must be no other record. Raises with the differences."""
    import collections
    w = collections.Counter(want)
    g = collections.Counter((r["method"], r["path"], r["status"], r["resp_body_bytes"])
                            for r in recs)
    if w != g or len(want) != len(recs):
        raise AssertionError("%s: captured records differ from the server's access log\n"
                             "missing: %s\nextra: %s\ncapture: %s"
                             % (what, dict(w - g), dict(g - w), err.strip()))


def capture_old_connection(srv, ng, capture_args):
    """A keep-alive connection opened and used (GET /before-capture) before a capture with
    capture_args starts; under the capture two more requests on it, one on a new connection
    (curl), then it closes. Returns (records, summary numbers, capture stderr, nginx log as
    (method, uri, status, bytes) after ng.stop(), the old connection's client address, t0,
    t1) for the mode's own checks: the log's first line is the request before the capture."""
    old = RawHttp(ng.port)
    try:
        old.send(http_request("GET", "/before-capture"))
        assert old.read_response()[0] == 404
        old_client = "127.0.0.1:%d" % old.sock.getsockname()[1]

        def run():
            old.send(http_request("GET", "/old-conn-after-start"))
            assert old.read_response()[0] == 404
            old.send(http_request("GET", "/index.html"))
            assert old.read_response()[0] == 200
            assert curl("http://127.0.0.1:%d/index.html" % ng.port) == ["200"]
            old.close()  # the close of a connection joined mid-way is seen like any other
        t0 = time.time_ns()
        recs, nums, err = capture_records(srv, capture_args, run)
        t1 = time.time_ns()
    finally:
        old.close()
    ng.stop()  # flushes the access log
    log = [(m, u, int(st), int(b)) for m, u, st, b, _ in ng.access_log()]
    assert log[0][:2] == ("GET", "/before-capture") and len(log) == 4, log
    return recs, nums, err, log, old_client, t0, t1

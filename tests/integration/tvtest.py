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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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

    def __init__(self, data_dir=None, extra_args=()):
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
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(
                [binary("tracevaultd"), "--data", self.data_dir, "--listen", "127.0.0.1:0"]
                + self.extra_args,
                stdout=subprocess.PIPE, stderr=log, text=True)
        deadline = time.monotonic() + timeout
        line = self.proc.stdout.readline()  # the daemon's first stdout line is the readiness signal
        if not line.startswith("listening on ") or time.monotonic() > deadline:
            self.stop()
            raise AssertionError("tracevaultd did not start: %r %s" % (line, self.log()))
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
        self.stop()
        os.unlink(self.log_path)
        if self.own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

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
        listen 127.0.0.1:{port};
        access_log {dir}/access.log tv;
        root {dir}/www;
        location / {{ }}
        location = /post {{ return 201 "created\\n"; }}
    }}
}}
"""


class Nginx:
    """A real nginx on 127.0.0.1:port serving files from a temp www dir, logging each request as
    'METHOD URI STATUS BODY_BYTES_SENT REQUEST_LENGTH' to access.log."""

    def __init__(self, files=None):
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
                f.write(NGINX_CONF.format(dir=self.dir, port=self.port))
            self.proc = subprocess.Popen([nginx, "-c", conf, "-e", os.path.join(self.dir, "error.log")],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                    return self
                except OSError:
                    time.sleep(0.05)
            self.stop()
        raise AssertionError("nginx did not start")

    @property
    def pid(self):
        return self.proc.pid

    def access_log(self):
        path = os.path.join(self.dir, "access.log")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [line.split() for line in f if line.strip()]

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: flushes the access log
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()


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

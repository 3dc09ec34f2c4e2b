"""The HTTP servers whose traffic is captured, each serving a temp dir on an ephemeral port and
always stopped: nginx, lighttpd and Python's http.server (a second, independent server); and
RawTcpServer, the base of the tests' own servers that write HTTP bytes by hand."""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from .procs import Started, free_port, wait_accepting


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


class HttpServer(Started):
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


class RawTcpServer:
    """A TCP server on 127.0.0.1 (ephemeral port, self.port) for tests that answer with bytes
    they write by hand: each accepted connection is handed to self.serve(conn) on a thread of
    its own (subclasses define serve, and set their own state before calling __init__, which
    starts accepting). close() stops accepting; connections being served run to their end."""

    def __init__(self, backlog=8):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self.stop = False
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, conn):
        raise NotImplementedError

    def close(self):
        self.stop = True
        self.sock.close()

"""HTTP clients that make the traffic under test: curl, RawHttp (one raw HTTP/1.x connection for
what curl cannot do on purpose) with http_request to build its bytes, and the wrk load
generator."""
import socket
import subprocess
import time


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

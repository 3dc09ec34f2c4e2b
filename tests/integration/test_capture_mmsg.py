"""eBPF capture of a server that moves every byte with recvmmsg/sendmmsg (tests/tools/
tv_mmsg_http.c): each response leaves in one sendmmsg of 2-3 messages (head, body halves), so
the record's body count is exact only if the kernel side sums every message's msg_len. Every
request must be exactly one record with its method, path, status and body bytes, and no more.
A second run gives the server 16-byte receive slots, so every read spreads over both messages
of its recvmmsg and request heads lie across them: the payload must be copied from every
message, not only the first."""
import os
import select
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402
from tvtest import RawHttp, http_request as req  # noqa: E402

NOT_FOUND_BODY_BYTES = len(b"not found\n")  # tv_mmsg_http's 404 body
BODY_SIZES = (0, 1, 5000, 100000)  # 100000: far past the 4 KiB payload copy
START_TIMEOUT_S = 10
# the kernel keeps TASK_COMM_LEN - 1 = 15 bytes of the executable's name
COMM = os.path.basename(tvtest.binary("tv_mmsg_http"))[:15]


class MmsgHttp(tvtest.HttpServer):
    """tv_mmsg_http on 127.0.0.1, a free port it picks itself and reports on stdout as
    'port N' (the readiness signal); its stderr goes to a file in a temp dir."""

    def __init__(self, extra_args=()):
        self.dir = tempfile.mkdtemp(prefix="tv-mmsg-")
        self.extra_args = list(extra_args)
        self.port = None
        self.proc = None

    def start(self, timeout=START_TIMEOUT_S):
        with open(os.path.join(self.dir, "stderr.log"), "w") as err:
            self.proc = subprocess.Popen([tvtest.binary("tv_mmsg_http")] + self.extra_args,
                                         stdout=subprocess.PIPE, stderr=err, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("port "):
            self.stop()
            raise AssertionError("tv_mmsg_http did not start: %r %s" % (line, self.stderr()))
        self.port = int(line.split()[1])
        return self

    def stderr(self):
        path = os.path.join(self.dir, "stderr.log")
        return open(path).read() if os.path.exists(path) else ""


def traffic(port):
    """Sends the requests, checks each answer as the client saw it, and returns the exchanges
    the capture must record: [(method, path, status, body bytes)]."""
    want = []

    # keep-alive: one connection, bodies from empty to far beyond the payload copy
    with RawHttp(port) as c:
        for n in BODY_SIZES:
            c.send(req("GET", "/%d" % n))
            assert c.read_response() == (200, n), n
            want.append(("GET", "/%d" % n, 200, n))

    # pipelining: two requests in one send, answered in order
    with RawHttp(port) as c:
        c.send(req("GET", "/7") + req("GET", "/3000"))
        assert c.read_response() == (200, 7)
        assert c.read_response() == (200, 3000)
        want += [("GET", "/7", 200, 7), ("GET", "/3000", 200, 3000)]

    # split: one byte per send, so the server assembles the head over many recvmmsg calls
    with RawHttp(port) as c:
        c.send_bytewise(req("GET", "/42"))
        assert c.read_response() == (200, 42)
        want.append(("GET", "/42", 200, 42))

    # not found, then a GET on the same connection to show it stays in sync
    with RawHttp(port) as c:
        c.send(req("GET", "/nope"))
        assert c.read_response() == (404, NOT_FOUND_BODY_BYTES)
        c.send(req("GET", "/9"))
        assert c.read_response() == (200, 9)
        want += [("GET", "/nope", 404, NOT_FOUND_BODY_BYTES), ("GET", "/9", 200, 9)]
    return want


def capture_scenario(srv, what, server_args=()):
    """Runs traffic() against a fresh tv_mmsg_http under one capture and checks the records."""
    with MmsgHttp(server_args) as hs:
        got = {}

        def run():
            got["want"] = traffic(hs.port)
        recs, nums, err = tvtest.capture_records(srv, ["--pid", str(hs.pid)], run)
        hs.stop()
        assert hs.proc.returncode == 0, "tv_mmsg_http exited %s: %s" % (hs.proc.returncode,
                                                                       hs.stderr())
    want = got["want"]
    tvtest.compare_exchanges(want, recs, what, err)
    assert nums["lost"] == 0 and nums["ring_full"] == 0 and nums["map_full"] == 0, err
    assert nums["lost_requests"] == 0 and nums["responses_lost"] == 0, err
    assert nums["resyncs"] == 0, err
    for r in recs:
        assert r["flags"] == 0, r  # every exchange seen whole
        assert r["pid"] == hs.pid and r["comm"] == COMM, (r, COMM)
        assert r["local"] == "127.0.0.1:%d" % hs.port, r
        assert r["req_body_bytes"] == 0, r
    print("ok: %s: %d requests, each one record with its exact body bytes" % (what, len(recs)))


def main():
    reason = tvtest.bpf_unavailable_reason()
    if reason:
        tvtest.skip(reason)
    if not os.path.exists(tvtest.binary("tv_mmsg_http")):
        raise AssertionError("tv_mmsg_http not built in %s" % tvtest.BIN_DIR)
    with tvtest.Server() as srv:
        capture_scenario(srv, "mmsg server")
        # 16-byte message slots: every read spreads over both messages of its recvmmsg, so a
        # request head lies across them (the kernel side once copied only the first message:
        # 8 of 9 requests vanished without a count)
        capture_scenario(srv, "requests spread over recvmmsg messages",
                         ["--recv-slot-bytes", "16"])


if __name__ == "__main__":
    main()

"""`tracevault capture` runs: Capture (started with --ready-fd, stopped with SIGINT), its exit
summary line, one capture run read back with query, and the comparison of the captured
records with a server's access log."""
import os
import signal
import subprocess
import time

from .http_clients import RawHttp, curl, http_request
from .procs import binary, run


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


CAPTURE_SUMMARY_RE = (r"sent (\d+), lost (\d+) \(kernel (\d+), parser (\d+), cache full (\d+), "
                      r"failed segments (\d+)\); kernel events (\d+), lost: ring full (\d+), "
                      r"map full (\d+), truncated (\d+); requests in lost events (\d+), "
                      r"responses lost (\d+), parser resyncs (\d+)")
CAPTURE_SUMMARY_KEYS = ("sent", "lost", "kernel", "parser", "cache", "failed", "events",
                        "ring_full", "map_full", "truncated", "lost_requests", "responses_lost",
                        "resyncs")


CAPTURE_LIMITS_RE = (r"heads cut: limit (\d+), copy (\d+); unparsed heads: requests (\d+), "
                     r"responses (\d+)")
CAPTURE_LIMITS_KEYS = ("cut_limit", "cut_copy", "unparsed_requests", "unparsed_responses")


def parse_capture_limits(err):
    """The heads cut (by reason) and unparsed heads (by direction) of the exit summary."""
    import re
    m = re.search(CAPTURE_LIMITS_RE, err)
    assert m, "no heads-cut counters in the capture summary: %s" % err
    return dict(zip(CAPTURE_LIMITS_KEYS, (int(g) for g in m.groups())))


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
    exactly one record and there must be no other record. Raises with the differences. The logs
    (nginx $uri, lighttpd %U) carry no query: a record's ?query is left out of the comparison."""
    import collections
    w = collections.Counter(want)
    g = collections.Counter((r["method"], r["path"].split("?")[0], r["status"],
                             r["resp_body_bytes"]) for r in recs)
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

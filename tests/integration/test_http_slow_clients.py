"""tracevaultd's HTTP port (--http-addr) against slow clients (tryout bug 2): connections that
trickle their request one header line every second never finish it, and used to hold every
slot of libmicrohttpd's pool for as long as they kept trickling (the idle timeout restarts at
each byte), so /metrics, the Jaeger API and the page went unanswered.

- the server runs with --http-request-timeout DEADLINE_S (2s, a fifth of the 10s default,
  which also keeps the test short).
- a few slow connections (fewer than the pool): each is cut by the server at the deadline,
  not before it (the time from our connect to the server's close is at least DEADLINE_S) and
  not at the default 10 s (at most DEADLINE_S + SLACK_S: generous slack for a loaded machine,
  a bound on when the cut comes, not a speed assertion); beside them a request sent whole at
  once is answered (nothing else waits on them).
- SLOW connections (more than the pool, TV_METRICS_DEFAULT_MAX_CONNECTIONS) open from
  127.0.0.1 and trickle; then a plain GET /api/services from the same machine must be
  answered (200) within the deadline plus a margin: the server cuts each slow connection
  DEADLINE_S after its accept, whatever it sends, and queued connections get the freed
  slots. Before the deadline existed the GET was never answered (the test's own timeout,
  ANSWER_WITHIN_S, not a speed assertion). Every slow connection was closed by the server
  (EOF or reset), none answered.
- the descriptor plan (server/fd_plan.h) reserves the port's connections and its threads'
  descriptors: 'N reserved' grows by TV_METRICS_MAX_FDS(--http-max-connections) with
  --http-addr (64 + 10 by default, 8 + 10 with --http-max-connections 8), so a full pool
  cannot take the descriptors gRPC's listener needs.
- --http-idle-timeout 1s with --http-request-timeout 1h: a connection that sends nothing is
  closed by the idle timeout, well before the request deadline and the 10 s default.
Bounded: SLOW connections, a header line every 0.2 s each, for at most TRICKLE_S seconds.
Time budget: ~20 s."""
import os
import re
import socket
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def define(name):
    """An integer #define of common/metrics_http.h: the test follows the code's one value."""
    with open(os.path.join(ROOT, "common", "metrics_http.h")) as f:
        return int(re.search(r"#define %s (\d+)" % name, f.read()).group(1))


POOL = define("TV_METRICS_DEFAULT_MAX_CONNECTIONS")
DEFAULT_DEADLINE_S = define("TV_METRICS_DEFAULT_REQUEST_TIMEOUT_MS") / 1000
DEADLINE_S = 2              # --http-request-timeout 2s
SLACK_S = 5                 # a cut comes DEADLINE_S after the accept, up to this much later
assert DEADLINE_S + SLACK_S < DEFAULT_DEADLINE_S  # a cut at the default would fail the test
THREAD_FDS = 2 * (define("TV_HTTP_THREADS") + 1)  # TV_METRICS_MAX_FDS(0)
SLOW = POOL + 16            # more than the pool: a request of ours must queue behind them
TRICKLE_S = DEADLINE_S + 15  # each slow connection trickles at most this long
ANSWER_WITHIN_S = DEADLINE_S + 8


def trickler(addr, stop, outcome, i, after=None):
    """One slow client: a request line, then a header line every 0.2 s (the idle timeout,
    10 s, never fires) until the server closes the connection or stop is set. outcome[i]:
    'closed' (EOF or reset) or 'answered'/'open'; after[i] (when given): seconds from before
    our connect to the server's close."""
    host, port = addr.rsplit(":", 1)
    t0 = time.monotonic()
    s = socket.create_connection((host, int(port)), timeout=5)
    s.settimeout(0.2)

    def closed():
        outcome[i] = "closed"
        if after is not None:
            after[i] = time.monotonic() - t0
    try:
        s.sendall(b"GET /api/services HTTP/1.1\r\nHost: x\r\n")
        end = time.monotonic() + TRICKLE_S
        n = 0
        while time.monotonic() < end and not stop.is_set():
            try:
                data = s.recv(4096)
                if data:
                    outcome[i] = "answered"
                else:
                    closed()
                return
            except socket.timeout:
                pass
            except (ConnectionResetError, BrokenPipeError):
                closed()
                return
            n += 1
            try:
                s.sendall(b"X-Slow-%d: %d\r\n" % (n, n))
            except (ConnectionResetError, BrokenPipeError):
                closed()
                return
        outcome[i] = "open"
    finally:
        s.close()


def get(addr, path, timeout):
    with urllib.request.urlopen("http://%s%s" % (addr, path), timeout=timeout) as r:
        return r.status


def reserved(log):
    return int(re.search(r"descriptors open, (\d+) reserved", log).group(1))


def idle_timeout(without):
    """--http-idle-timeout 1s under a request deadline of 1h, and --http-max-connections 8:
    the plan reserves 8 + the threads' descriptors, and a connection that sends nothing is
    closed by the idle timeout (before DEADLINE_S + SLACK_S, far before the hour)."""
    srv = tvtest.Server(extra_args=["--http-addr", "127.0.0.1:0", "--http-max-connections", "8",
                                    "--http-idle-timeout", "1s", "--http-request-timeout", "1h"])
    srv.start()
    try:
        assert reserved(srv.log()) == without + 8 + THREAD_FDS, (without, srv.log())
        print("ok --http-max-connections 8: the descriptor plan reserves %d more" %
              (8 + THREAD_FDS))
        host, port = tvtest.metrics_addr(srv.log()).rsplit(":", 1)
        t0 = time.monotonic()
        s = socket.create_connection((host, int(port)), timeout=DEADLINE_S + SLACK_S)
        try:
            try:
                data = s.recv(4096)
            except ConnectionResetError:
                data = b""
            took = time.monotonic() - t0
        except socket.timeout:
            raise AssertionError("a silent connection still open after %d s under "
                                 "--http-idle-timeout 1s" % (DEADLINE_S + SLACK_S))
        finally:
            s.close()
        assert data == b"", data
        print("ok --http-idle-timeout 1s: a silent connection closed after %.1f s" % took)
    finally:
        srv.cleanup()


def main():
    with tvtest.Server() as plain:
        without = reserved(plain.log())
    srv = tvtest.Server(extra_args=["--http-addr", "127.0.0.1:0",
                                    "--http-request-timeout", "%ds" % DEADLINE_S])
    srv.start()
    try:
        fds = POOL + THREAD_FDS  # TV_METRICS_MAX_FDS(TV_METRICS_DEFAULT_MAX_CONNECTIONS)
        assert reserved(srv.log()) == without + fds, (without, srv.log())
        print("ok the descriptor plan reserves %d more for the HTTP port" % fds)
        addr = tvtest.metrics_addr(srv.log())
        assert addr and addr.startswith("127.0.0.1:"), srv.log()
        # a few slow ones: the others are served at once, and each is cut at the deadline
        stop = threading.Event()
        few = [None] * 4
        after = [None] * len(few)
        threads = [threading.Thread(target=trickler, args=(addr, stop, few, i, after))
                   for i in range(len(few))]
        for t in threads:
            t.start()
        time.sleep(0.5)
        assert get(addr, "/metrics", timeout=5) == 200
        for t in threads:
            t.join(TRICKLE_S + 10)
        assert few.count("closed") == len(few), few
        assert all(DEADLINE_S <= a <= DEADLINE_S + SLACK_S for a in after), \
            ("cut outside [%d, %d] s of the connect" % (DEADLINE_S, DEADLINE_S + SLACK_S),
             after)
        print("ok %d slow connections: /metrics answered beside them; each cut by "
              "--http-request-timeout %ds after %s s" % (
                  len(few), DEADLINE_S, ", ".join("%.1f" % a for a in after)))

        stop = threading.Event()
        outcome = [None] * SLOW
        threads = [threading.Thread(target=trickler, args=(addr, stop, outcome, i))
                   for i in range(SLOW)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        time.sleep(1.0)  # they connect and start trickling first
        try:
            status = get(addr, "/api/services", timeout=ANSWER_WITHIN_S)
        except OSError as e:
            raise AssertionError("GET /api/services beside %d slow connections: no answer in "
                                 "%d s (%s)" % (SLOW, ANSWER_WITHIN_S, e))
        waited = time.monotonic() - t0
        assert status == 200, status
        print("ok GET /api/services answered beside %d slow connections (pool %d) after "
              "%.1f s" % (SLOW, POOL, waited))
        for t in threads:
            t.join(TRICKLE_S + 10)
        stop.set()
        took = time.monotonic() - t0
        assert outcome.count("closed") == SLOW, outcome
        print("ok the server closed all %d slow connections (%.1f s)" % (SLOW, took))
    finally:
        srv.cleanup()
    idle_timeout(without)
    print("PASS")


if __name__ == "__main__":
    main()

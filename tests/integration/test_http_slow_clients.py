"""tracevaultd's HTTP port (--http-addr) against slow clients (tryout bug 2): connections that
trickle their request one header line every second never finish it, and used to hold every
slot of libmicrohttpd's pool for as long as they kept trickling (the idle timeout restarts at
each byte), so /metrics, the Jaeger API and the page went unanswered.

- SLOW connections (more than the pool, TV_METRICS_MAX_CONNECTIONS) open from 127.0.0.1 and
  trickle; then a plain GET /api/services from the same machine must be answered (200) within
  the request deadline plus a margin: the server cuts each slow connection
  TV_METRICS_REQUEST_TIMEOUT_S after its accept, whatever it sends, and queued connections
  get the freed slots. Before the deadline existed the GET was never answered (the test's
  own timeout, ANSWER_WITHIN_S, not a speed assertion).
- every slow connection was closed by the server (EOF or reset), none answered.
- a request sent whole at once on a fresh connection is answered at once while slow ones are
  fewer than the pool (nothing else waits on them).
- the descriptor plan (server/fd_plan.h) reserves the port's connections and its threads'
  descriptors: 'N reserved' grows by TV_METRICS_MAX_FDS with --http-addr, so a full pool
  cannot take the descriptors gRPC's listener needs.
Bounded: SLOW connections, one line per second each, for at most TRICKLE_S seconds.
Time budget: ~15 s."""
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


POOL = define("TV_METRICS_MAX_CONNECTIONS")
DEADLINE_S = define("TV_METRICS_REQUEST_TIMEOUT_S")
SLOW = POOL + 16            # more than the pool: a request of ours must queue behind them
TRICKLE_S = DEADLINE_S + 15  # each slow connection trickles at most this long
ANSWER_WITHIN_S = DEADLINE_S + 8


def trickler(addr, stop, outcome, i):
    """One slow client: a request line, then a header line a second until the server closes
    the connection or stop is set. outcome[i]: 'closed' (EOF or reset) or 'answered'/'open'."""
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=5)
    s.settimeout(0.2)
    try:
        s.sendall(b"GET /api/services HTTP/1.1\r\nHost: x\r\n")
        end = time.monotonic() + TRICKLE_S
        n = 0
        while time.monotonic() < end and not stop.is_set():
            try:
                data = s.recv(4096)
                outcome[i] = "answered" if data else "closed"
                return
            except socket.timeout:
                pass
            except (ConnectionResetError, BrokenPipeError):
                outcome[i] = "closed"
                return
            n += 1
            if n % 5 == 0:  # a header line every second
                try:
                    s.sendall(b"X-Slow-%d: %d\r\n" % (n, n))
                except (ConnectionResetError, BrokenPipeError):
                    outcome[i] = "closed"
                    return
        outcome[i] = "open"
    finally:
        s.close()


def get(addr, path, timeout):
    with urllib.request.urlopen("http://%s%s" % (addr, path), timeout=timeout) as r:
        return r.status


def reserved(log):
    return int(re.search(r"descriptors open, (\d+) reserved", log).group(1))


def main():
    with tvtest.Server() as plain:
        without = reserved(plain.log())
    srv = tvtest.Server(extra_args=["--http-addr", "127.0.0.1:0"])
    srv.start()
    try:
        fds = POOL + 2 * (define("TV_HTTP_THREADS") + 1)  # TV_METRICS_MAX_FDS
        assert reserved(srv.log()) == without + fds, (without, srv.log())
        print("ok the descriptor plan reserves %d more for the HTTP port" % fds)
        addr = tvtest.metrics_addr(srv.log())
        assert addr and addr.startswith("127.0.0.1:"), srv.log()
        # a few slow ones: the others are served at once
        stop = threading.Event()
        few = [None] * 4
        threads = [threading.Thread(target=trickler, args=(addr, stop, few, i))
                   for i in range(len(few))]
        for t in threads:
            t.start()
        time.sleep(0.5)
        assert get(addr, "/metrics", timeout=5) == 200
        stop.set()
        for t in threads:
            t.join(TRICKLE_S + 10)
        print("ok %d slow connections: /metrics answered beside them" % len(few))

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
    print("PASS")


if __name__ == "__main__":
    main()

"""Queries stream and share the server's one thread (PROTOCOL.md Query, "Streaming"): over an
archive of ~300k records in a dozen blocks (put from JSON Lines, so blocks are sealed at 4 MiB
as in real use), --limit 100 stops reading after the first block, forward and --reverse (the
server's log line counts blocks opened and records examined); reverse over blocks too large for
its window (several passes) is still forward reversed; the first match of a selective scan
arrives while the scan is still running, not when it ends (also on the CLI's stdout); and a
Write commits while several long filtered scans run, instead of waiting for them to end."""
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402

BASE = 1_700_000_000 * 10**9
RECORDS = 300_000
STEP_NS = 1000
RARE_PATH = "/rare/needle"      # every RARE_EVERY-th record, from record 7 on
RARE_EVERY = 100_000
SCANS = 4                       # concurrent long scans while a Write commits
WAIT_S = 120                    # bound of every wait on a thread or a message
LOG_LINE = re.compile(r"query: planned (\d+) blocks, opened (\d+), examined (\d+) records, "
                      r"sent (\d+), (forward|reverse), ([0-9.]+) ms")


def write_archive(srv, tmp):
    path = os.path.join(tmp, "records.jsonl")
    with open(path, "w") as f:
        for i in range(RECORDS):
            p = RARE_PATH if i % RARE_EVERY == 7 else "/api/v1/items/%d/details/%d" % (
                i % 977, i % 31)
            f.write('{"ts_ns":%d,"end_ns":%d,"latency_ns":250000,"pid":%d,"comm":"nginx",'
                    '"local":"127.0.0.1:8080","remote":"10.0.%d.%d:5123","method":"GET",'
                    '"path":"%s","status":%d,"role":"server","host":"shop.example"}\n' % (
                        BASE + i * STEP_NS, BASE + i * STEP_NS + 250000, 100 + i % 7,
                        i % 256, i % 199, p, 200 if i % 10 else 500))
    tvtest.run(["put", "--server", srv.addr, path], timeout=300, check=True)


def log_lines(srv):
    return [m.groups() for m in LOG_LINE.finditer(srv.log())]


def query_logged(srv, cl, req):
    """Run req to its end; returns (records, the server's log line of it)."""
    before = len(log_lines(srv))
    recs = []
    for resp in cl.query_rpc(req, timeout=WAIT_S):
        recs.extend(resp.records)
    lines = log_lines(srv)
    assert len(lines) == before + 1, (before, lines[before:])
    planned, opened, examined, sent, direction, _ = lines[-1]
    return recs, (int(planned), int(opened), int(examined), int(sent), direction)


def test_limit_stops_reading(srv, cl):
    pb = cl.pb
    end = BASE + RECORDS * STEP_NS
    recs, (planned, opened, examined, sent, d) = query_logged(
        srv, cl, pb.QueryRequest(from_ns=BASE, to_ns=end, limit=100))
    assert [r.ts_ns for r in recs] == [BASE + i * STEP_NS for i in range(100)]
    assert planned >= 8, planned  # many blocks, so that stopping early means something
    assert (opened, examined, sent, d) == (1, 100, 100, "forward"), (opened, examined, sent)
    recs, (planned, opened, examined, sent, d) = query_logged(
        srv, cl, pb.QueryRequest(from_ns=BASE, to_ns=end, limit=100, reverse=True))
    assert [r.ts_ns for r in recs] == [end - (i + 1) * STEP_NS for i in range(100)]
    # reverse reads the newest block once (from its start: today's blocks have no index)
    assert opened == 1 and sent == 100 and d == "reverse", (opened, sent, d)
    assert examined < RECORDS // 4, (examined, planned)
    # a filter: limit counts matches, and reading stops at the second one
    recs, (planned, opened, examined, sent, d) = query_logged(srv, cl, pb.QueryRequest(
        from_ns=BASE, to_ns=end, limit=2, filter=pb.QueryFilter(paths=[pb.StringMatch(
            kind=pb.MATCH_EXACT, value=RARE_PATH)])))
    assert [r.ts_ns for r in recs] == [BASE + 7 * STEP_NS, BASE + (RARE_EVERY + 7) * STEP_NS]
    assert examined == RARE_EVERY + 8 and opened < planned, (examined, opened, planned)


def test_first_batches_grow(srv, cl):
    """The first QueryResponse is small (a client prints nothing before a whole message is in:
    server/query.h TV_QUERY_FIRST_BATCH_*), each later one may hold twice the one before, up to
    the full batch, and the records are still every one in order."""
    pb = cl.pb
    first_records, first_bytes, full_records = 64, 16 << 10, 4096
    sizes, got = [], []
    for resp in cl.query_rpc(pb.QueryRequest(from_ns=BASE, to_ns=BASE + RECORDS * STEP_NS),
                             timeout=WAIT_S):
        if resp.records:
            sizes.append((len(resp.records), resp.ByteSize(),
                          max(len(r.SerializeToString()) for r in resp.records)))
        got.extend(r.ts_ns for r in resp.records)
    assert got == [BASE + i * STEP_NS for i in range(RECORDS)]
    for k, (n, size, largest) in enumerate(sizes):
        cap_records = min(first_records << k, full_records)
        cap_bytes = min(first_bytes << k, 1 << 20)
        assert n <= cap_records and size <= cap_bytes + largest + 8, (k, n, size, sizes[:8])
    # and they do grow: a long read is not left in first-size messages (how far they grow
    # also depends on the 2 ms slice, which ends a batch early on a slow or busy machine)
    assert max(n for n, _, _ in sizes) > 2 * first_records, sizes[:16]
    return sizes[0][:2]


def test_whole_reverse_is_forward_reversed(srv, cl):
    """Blocks of 4 MiB whose records all match do not fit one reverse window (4 MiB with 24
    bytes of bookkeeping per record): each is read in several passes, and the answer is still
    exactly the forward one reversed."""
    pb = cl.pb
    frm, to = BASE + 3 * STEP_NS, BASE + (RECORDS - 5) * STEP_NS
    fwd, (_, _, fwd_examined, _, _) = query_logged(srv, cl, pb.QueryRequest(from_ns=frm,
                                                                             to_ns=to))
    rev, (_, opened, examined, sent, d) = query_logged(
        srv, cl, pb.QueryRequest(from_ns=frm, to_ns=to, reverse=True))
    assert len(fwd) == RECORDS - 8 and sent == len(fwd) and d == "reverse", (len(fwd), sent)
    assert [r.SerializeToString() for r in rev] == [r.SerializeToString() for r in fwd[::-1]]
    # the re-read passes: more records examined than the forward scan needed
    assert examined > fwd_examined, (examined, fwd_examined)
    return examined / fwd_examined


def test_first_match_arrives_while_the_scan_runs(srv, cl):
    """The rare path's first match is record 7; the others come every 100k records. Its batch
    must leave after a slice, while the scan goes on (the query's log line, written when it
    ends, is not there yet), not with the end of the scan."""
    pb = cl.pb
    req = pb.QueryRequest(from_ns=BASE, to_ns=BASE + RECORDS * STEP_NS, filter=pb.QueryFilter(
        paths=[pb.StringMatch(kind=pb.MATCH_EXACT, value=RARE_PATH)]))
    before = len(log_lines(srv))
    t0 = time.monotonic()
    first_at, ended_at, lines_at_first, got = None, None, None, []
    for resp in cl.query_rpc(req, timeout=WAIT_S):
        if resp.records and first_at is None:
            first_at = time.monotonic() - t0
            lines_at_first = len(log_lines(srv))
        got.extend(resp.records)
    ended_at = time.monotonic() - t0
    assert [r.ts_ns for r in got] == [BASE + (k * RARE_EVERY + 7) * STEP_NS
                                      for k in range((RECORDS - 8) // RARE_EVERY + 1)], got
    assert lines_at_first == before, "the query had ended when its first record arrived"
    assert first_at < ended_at / 2, (first_at, ended_at)
    # the CLI prints it as it comes, not when its output buffer fills or the scan ends
    t0 = time.monotonic()
    p = subprocess.Popen([tvtest.binary("tracevault"), "query", "--server",
                          srv.addr, "--from", str(BASE), "--to", str(BASE + RECORDS * STEP_NS),
                          "--path", RARE_PATH], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = p.stdout.readline()
        cli_first = time.monotonic() - t0
        lines_at_cli_first = len(log_lines(srv))
        rest, err = p.communicate(timeout=WAIT_S)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    cli_end = time.monotonic() - t0
    assert p.returncode == 0, (p.returncode, err)
    assert lines_at_cli_first == before + 1, "the CLI's query had ended at its first line"
    assert cli_first < cli_end / 2, (cli_first, cli_end)
    assert b'"ts_ns":%d,' % (BASE + 7 * STEP_NS) in line, line
    assert len(rest.splitlines()) == len(got) - 1, rest
    return first_at, ended_at


def test_write_commits_during_long_scans(srv, cl):
    """SCANS queries with a filter nothing passes read the whole archive, taking turns with
    everything else on the server's thread. Once each has its first message (the features: it
    is running), a Write segment is sent: it must commit before any scan ends. Without slices
    the thread would be inside one scan until its end."""
    pb = cl.pb
    req = pb.QueryRequest(from_ns=BASE, to_ns=BASE + RECORDS * STEP_NS,
                          filter=pb.QueryFilter(pids=[1]))
    started = [threading.Event() for _ in range(SCANS)]
    ended = [None] * SCANS
    errors = []

    def scan(k):
        try:
            n = 0
            for resp in cl.query_rpc(req, timeout=WAIT_S):
                started[k].set()
                n += len(resp.records)
            ended[k] = (time.monotonic(), n)
        except Exception as e:  # reported by the main thread
            errors.append(repr(e))
            started[k].set()

    threads = [threading.Thread(target=scan, args=(k,)) for k in range(SCANS)]
    for t in threads:
        t.start()
    try:
        for e in started:
            assert e.wait(WAIT_S), "a scan sent no first message"
        t0 = time.monotonic()
        resp = cl.write_segment(0x5CA9, [(0x5CA91, [tvtest.trace_record(BASE - 10)])])
        committed = time.monotonic()
        assert resp.committed, resp
    finally:
        for t in threads:
            t.join(WAIT_S)
    assert not errors, errors
    assert all(e is not None and e[1] == 0 for e in ended), ended
    first_end = min(e[0] for e in ended)
    assert committed < first_end, ("the Write committed %.3f s after the first scan ended" %
                                   (committed - first_end))
    assert committed - t0 < 10, committed - t0  # generous: a bound, not a benchmark
    return committed - t0, first_end - t0


def summary_request(pb):
    """Every record, grouped by path: a Summary that reads the whole archive."""
    return pb.SummaryRequest(from_ns=BASE, to_ns=BASE + RECORDS * STEP_NS,
                             by=pb.GROUP_BY_PATH)


def test_write_commits_during_long_summaries(srv, cl):
    """Summary counts in the same slices as a Query, taking turns on the server's thread: a
    Write sent while SCANS Summaries of the whole archive run commits before the first of them
    answers. Before, a Summary ran to its end inside one step of the loop."""
    pb = cl.pb
    futures = [cl.summary.future(summary_request(pb), timeout=WAIT_S) for _ in range(SCANS)]
    ends = [None] * SCANS

    def note_end(k):
        return lambda f: ends.__setitem__(k, time.monotonic())

    for k, f in enumerate(futures):
        f.add_done_callback(note_end(k))
    time.sleep(0.3)  # the calls reach the server and start counting
    running = sum(not f.done() for f in futures)
    assert running, "every Summary ended within 0.3 s: the archive is too small to tell"
    t0 = time.monotonic()
    resp = cl.write_segment(0x5CAA, [(0x5CAA1, [tvtest.trace_record(BASE - 20)])])
    committed = time.monotonic()
    assert resp.committed, resp
    for f in futures:
        r = f.result(timeout=WAIT_S)
        assert r.records == RECORDS and not r.skipped, (r.records, len(r.skipped))
    first_end = min(e for e in ends if e is not None and e > t0) if any(
        e is not None and e > t0 for e in ends) else None
    assert first_end is not None and committed < first_end, (
        "the Write committed after a Summary that was running answered", committed, ends)
    return committed - t0, first_end - t0, running


def test_long_summary_is_not_idle(srv):
    """A Summary whose counting takes longer than --idle-timeout-ms still gets its answer:
    the client's idle clock starts when the reply is offered, not when the call began."""
    slow = tvtest.Server(data_dir=srv.data_dir, extra_args=["--idle-timeout-ms", "100"])
    slow.start()
    cl = tvtest.GrpcClient(slow.addr, timeout_s=WAIT_S)
    try:
        t0 = time.monotonic()
        r = cl.summary(summary_request(cl.pb), timeout=WAIT_S)
        took = time.monotonic() - t0
        assert r.records == RECORDS, r.records
        return took
    finally:
        cl.close()
        slow.stop()


def main():
    with tempfile.TemporaryDirectory() as tmp, tvtest.Server() as srv:
        cl = tvtest.GrpcClient(srv.addr, timeout_s=WAIT_S)
        try:
            write_archive(srv, tmp)
            print("ok put %d records" % RECORDS)
            test_limit_stops_reading(srv, cl)
            print("ok --limit 100 stops reading, forward and reverse")
            n, size = test_first_batches_grow(srv, cl)
            print("ok the first message holds %d records (%d bytes), later ones grow" % (n, size))
            ratio = test_whole_reverse_is_forward_reversed(srv, cl)
            print("ok the whole window reversed, reading %.2fx the records of forward" % ratio)
            first, end = test_first_match_arrives_while_the_scan_runs(srv, cl)
            print("ok first match after %.3f s of a %.3f s scan" % (first, end))
            commit, first_end = test_write_commits_during_long_scans(srv, cl)
            print("ok a Write committed in %.3f s; the first of %d scans ended after %.3f s" %
                  (commit, SCANS, first_end))
            commit, first_end, running = test_write_commits_during_long_summaries(srv, cl)
            print("ok a Write committed in %.3f s; the first of %d running Summaries answered "
                  "after %.3f s" % (commit, running, first_end))
            cl.close()
            srv.stop()
            took = test_long_summary_is_not_idle(srv)
            print("ok a Summary of %.3f s answered under --idle-timeout-ms 100" % took)
        finally:
            cl.close()


if __name__ == "__main__":
    main()

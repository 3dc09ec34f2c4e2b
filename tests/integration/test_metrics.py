"""tracevaultd --metrics-addr (issue 13, "Operating it"): the Prometheus endpoint scraped with
urllib and parsed with prometheus_client's text-format parser, its values moving exactly as
the operations done here imply.

- writes, queries, an aborted and a deleted segment: written records/blocks/bytes equal what
  was sent, committed segments and the commit histogram's _count equal the commits, the query
  histogram's _count the Query calls, aborted and deleted segments one each, the stored
  gauges follow (commits up, the Delete down), disk free is the data dir's statvfs; a Delete
  of the aborted segment (a writer's cleanup) removes nothing and counts as a no-op, not as
  a deleted segment; tracevault_build_info carries --version's version.
- retention and quarantine: removed segments/blocks/bytes equal what the retention log lines
  say and the stored gauges what is left; a block damaged on disk and met by a query is
  counted as quarantined.
- the endpoint itself: Content-Type of format 0.0.4, HELP and TYPE for every family, HEAD
  answers as GET without a body, 405 for a POST (Allow: GET, HEAD), 404 for another path;
  [::1]:0 serves (where the machine has IPv6); a port in use exits 1 with one line naming it
  (the reason once) before the data dir is made; a HOST that is not loopback is logged as
  reachable from the network, loopback is not; a bad address and --metrics-addr with --scrub
  are usage errors (exit 2, one line); --help shows it.
Time budget: ~10 s."""
import os
import re
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402

grpc, pb = tvtest.grpc_modules()
tvtest.metrics.parser()  # SKIP early when prometheus_client is absent

BASE = 1_790_000_000 * 10**9
S = "tracevault_server_"


def start_server(extra=()):
    srv = tvtest.Server(extra_args=["--metrics-addr", "127.0.0.1:0"] + list(extra))
    srv.start()
    addr = tvtest.metrics_addr(srv.log())
    assert addr and addr.startswith("127.0.0.1:"), srv.log()
    return srv, addr


def wait_value(addr, name, want, timeout_s=5):
    """The scrape where name's value is want (gauges refreshed by the server's loop, at most
    TV_RPC_IDLE_SCAN_MS behind); AssertionError with the last value otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        sc = tvtest.Scrape(addr)
        got = sc.value(name)
        if got == want or time.monotonic() > deadline:
            assert got == want, (name, got, want)
            return sc
        time.sleep(0.05)


def segment(sid, t0, nblocks, per_block):
    """[(block_id, encoded)] and the record count."""
    blocks = []
    for b in range(nblocks):
        bid = (sid << 8) | (b + 1)
        recs = [tvtest.trace_record(t0 + b * 1000 + i, pid=i + 1, path="/s%x" % sid)
                for i in range(per_block)]
        blocks.append((bid, tvtest.encode_block(bid, recs)))
    return blocks, nblocks * per_block


def test_writes_queries_aborts_and_deletes_move_the_counters():
    srv, addr = start_server()
    cl = tvtest.GrpcClient(srv.addr)
    try:
        sc = tvtest.Scrape(addr)
        assert sc.content_type == "text/plain; version=0.0.4; charset=utf-8", sc.content_type
        for fam, typ in (("written_bytes", "counter"), ("written_records", "counter"),
                         ("segments_committed", "counter"), ("segments_aborted", "counter"),
                         ("segments_deleted", "counter"), ("commit_duration_seconds",
                                                           "histogram"),
                         ("query_duration_seconds", "histogram"), ("stored_blocks", "gauge"),
                         ("stored_bytes", "gauge"), ("quarantined_blocks", "counter"),
                         ("retention_removed_segments", "counter"),
                         ("data_dir_free_bytes", "gauge")):
            assert sc.type_of(S + fam) == typ, (fam, sc.type_of(S + fam))
        # every family has its HELP and TYPE line (the parser takes a family without them; it
        # names a counter's family without the _total its samples have)
        for fam in sc.families.values():
            name = fam.name + ("_total" if fam.type == "counter" else "")
            assert "# HELP %s " % name in sc.text and "# TYPE %s " % name in sc.text, name
            assert fam.documentation, name
        assert sc.value(S + "written_records_total") == 0
        assert sc.value(S + "commit_duration_seconds_count") == 0
        version = subprocess.run([tvtest.binary("tracevaultd"), "--version"], check=True,
                                 capture_output=True, text=True).stdout.split()[1]
        assert sc.type_of("tracevault_build_info") == "gauge"
        assert sc.value("tracevault_build_info", version=version) == 1, (version, sc.text)

        sent_records = sent_bytes = sent_blocks = 0
        segs = []
        for k in range(5):
            sid = 0x100 + k
            blocks, nrec = segment(sid, BASE + k * 10**6, 1 + k % 3, 10 + 7 * k)
            cl.write_encoded(sid, blocks, writer_token=0x7000 + k)
            segs.append((sid, blocks))
            sent_records += nrec
            sent_blocks += len(blocks)
            sent_bytes += sum(len(data) for _, data in blocks)
        sc = tvtest.Scrape(addr)
        assert sc.value(S + "written_records_total") == sent_records
        assert sc.value(S + "written_blocks_total") == sent_blocks
        assert sc.value(S + "written_bytes_total") == sent_bytes
        assert sc.value(S + "segments_committed_total") == 5
        assert sc.value(S + "commit_duration_seconds_count") == 5
        assert sc.value(S + "commit_duration_seconds_bucket", le="+Inf") == 5
        assert 0 < sc.value(S + "commit_duration_seconds_sum") < 60
        assert sc.value(S + "stored_blocks") == sent_blocks
        assert sc.value(S + "stored_bytes") == sent_bytes
        # buckets are cumulative, in seconds
        les = sorted((float(k[1][0][1]), v) for k, v in sc.samples.items()
                     if k[0] == S + "commit_duration_seconds_bucket")
        assert les[0][0] == 0.0005 and les[-1][0] == float("inf"), les
        assert all(a[1] <= b[1] for a, b in zip(les, les[1:])), les

        for _ in range(3):
            got = cl.query(BASE, BASE + 10**9)
            assert len(got) == sent_records
        sc = tvtest.Scrape(addr)
        assert sc.value(S + "query_duration_seconds_count") == 3

        # an opened segment cancelled: one abort, nothing written
        _, code, _ = cl.write_requests([
            tvtest.write_cmd(pb.OPEN_SEGMENT, segment_id=0x999, writer_token=0x7999),
            tvtest.write_cmd(pb.OPEN_BLOCK, block_id=0x99901, length=100),
            tvtest.write_cmd(pb.CANCEL)])
        assert code == grpc.StatusCode.OK, code
        sc = tvtest.Scrape(addr)
        assert sc.value(S + "segments_aborted_total") == 1
        assert sc.value(S + "segments_committed_total") == 5
        assert sc.value(S + "segment_deletes_noop_total") == 0
        # its writer's cleanup Deletes it: nothing is left of it, so no segment was deleted
        code, details, resp = cl.delete_segment(0x999, writer_token=0x7999)
        assert code == grpc.StatusCode.OK and resp.deleted_blocks == 0 and \
            resp.deleted_temp_blocks == 0, (code, details, resp)
        sc = tvtest.Scrape(addr)
        assert sc.value(S + "segments_deleted_total") == 0, sc.text
        assert sc.value(S + "segment_deletes_noop_total") == 1, sc.text
        assert sc.value(S + "deleted_blocks_total") == 0

        sid, blocks = segs[2]
        code, details, resp = cl.delete_segment(sid, writer_token=0x7000 + 2)
        assert code == grpc.StatusCode.OK and resp.deleted_blocks == len(blocks), (code, details)
        sc = wait_value(addr, S + "stored_blocks", sent_blocks - len(blocks))
        assert sc.value(S + "segments_deleted_total") == 1
        assert sc.value(S + "segment_deletes_noop_total") == 1
        assert sc.value(S + "deleted_blocks_total") == len(blocks)
        # the same Delete again: nothing left, a no-op
        code, details, resp = cl.delete_segment(sid, writer_token=0x7000 + 2)
        assert code == grpc.StatusCode.OK and resp.deleted_blocks == 0, (code, details)
        sc = tvtest.Scrape(addr)
        assert sc.value(S + "segments_deleted_total") == 1, sc.text
        assert sc.value(S + "segment_deletes_noop_total") == 2, sc.text
        assert sc.value(S + "stored_bytes") == sent_bytes - sum(len(d) for _, d in blocks)
        # counters never go back
        assert sc.value(S + "written_records_total") == sent_records

        st = os.statvfs(srv.data_dir)
        free = st.f_bavail * st.f_frsize
        got = tvtest.Scrape(addr).value(S + "data_dir_free_bytes")
        assert abs(got - free) < 256 << 20, (got, free)  # other work shares the disk
    finally:
        cl.close()
        srv.cleanup()


def test_retention_and_quarantine_counters():
    # each segment ~2.5 KiB: a 16 KiB limit keeps a few and removes the oldest
    srv, addr = start_server(["--retain-bytes", "16K"])
    cl = tvtest.GrpcClient(srv.addr)
    try:
        total_bytes = total_blocks = 0
        for k in range(12):
            blocks, _ = segment(0x200 + k, BASE + k * 10**9, 2, 40)
            cl.write_encoded(0x200 + k, blocks)
            total_bytes += sum(len(d) for _, d in blocks)
            total_blocks += len(blocks)
        removed = [tuple(int(x) for x in m.groups()) for m in re.finditer(
            r"retention: removed (\d+) segments \((\d+) blocks, (\d+) bytes\)", srv.log())]
        assert removed, srv.log()
        segs, blks, byts = (sum(r[i] for r in removed) for i in range(3))
        sc = wait_value(addr, S + "stored_blocks", total_blocks - blks)
        assert sc.value(S + "retention_removed_segments_total") == segs
        assert sc.value(S + "retention_removed_blocks_total") == blks
        assert sc.value(S + "retention_removed_bytes_total") == byts
        assert sc.value(S + "stored_bytes") == total_bytes - byts <= 16 << 10
        assert sc.value(S + "quarantined_blocks_total") == 0

        # the newest segment's first block, damaged on disk: the query that meets it
        # quarantines it
        bid = (0x200 + 11) << 8 | 1
        path = tvtest.block_path(srv.data_dir, bid)
        with open(path, "r+b") as f:
            f.seek(-1, os.SEEK_END)
            last = f.read(1)[0]
            f.seek(-1, os.SEEK_END)
            f.write(bytes([last ^ 1]))
        _, skipped, code, _, _ = cl.query_all(BASE, BASE + 100 * 10**9)
        assert code == grpc.StatusCode.DATA_LOSS and skipped[0].quarantined, (code, skipped)
        sc = wait_value(addr, S + "stored_blocks", total_blocks - blks - 1)
        assert sc.value(S + "quarantined_blocks_total") == 1
    finally:
        cl.close()
        srv.cleanup()


def test_endpoint_methods_paths_and_errors():
    srv, addr = start_server()
    try:
        status, headers, body = tvtest.http_get("http://%s/metrics" % addr, method="HEAD")
        assert status == 200 and body == "" and headers.get("Content-Type") == \
            "text/plain; version=0.0.4; charset=utf-8", (status, dict(headers), body)
        status, headers, _ = tvtest.http_get("http://%s/metrics" % addr, method="POST")
        assert status == 405 and headers.get("Allow") == "GET, HEAD", (status, dict(headers))
        status, _, _ = tvtest.http_get("http://%s/metrics" % addr, method="DELETE")
        assert status == 405, status
        # "/" is the page (README "HTTP API"), tested by test_jaeger_api
        for path in ("/nothing", "/metricsx", "/metrics/x"):
            status, _, _ = tvtest.http_get("http://%s%s" % (addr, path))
            assert status == 404, (path, status)
        # the gRPC port is still served while scrapes come and go
        cl = tvtest.GrpcClient(srv.addr)
        try:
            assert cl.query(0, 1) == []
        finally:
            cl.close()

        # the same port again: exit 1, one line naming the address and the cause (once),
        # before the data dir is made (no recovery, no lock)
        p = subprocess.run([tvtest.binary("tracevaultd"), "--data", srv.data_dir + "-2",
                            "--listen", "127.0.0.1:0", "--metrics-addr", addr],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 1, (p.returncode, p.stderr)
        assert p.stderr == "tracevaultd: --metrics-addr %s: the port is in use\n" % addr, \
            p.stderr
        assert p.stdout == "", p.stdout  # never said it was listening
        assert not os.path.exists(srv.data_dir + "-2"), os.listdir(srv.data_dir + "-2")
    finally:
        srv.cleanup()
        subprocess.run(["rm", "-rf", srv.data_dir + "-2"])

    # IPv6 loopback, where the machine has it: bound and named in brackets
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        have_v6 = True
    except OSError:
        have_v6 = False
    if have_v6:
        srv = tvtest.Server(extra_args=["--metrics-addr", "[::1]:0"])
        try:
            srv.start()
            addr = tvtest.metrics_addr(srv.log())
            assert addr.startswith("[::1]:"), srv.log()
            assert tvtest.Scrape(addr).value(S + "written_records_total") == 0
        finally:
            srv.cleanup()

    # a HOST that is not loopback: served, with one line saying the network reaches it
    srv = tvtest.Server(extra_args=["--metrics-addr", "0.0.0.0:0"])
    try:
        srv.start()
        addr = tvtest.metrics_addr(srv.log())
        assert addr.startswith("0.0.0.0:"), srv.log()
        warn = [ln for ln in srv.log().splitlines() if "reachable from the network" in ln]
        assert warn == ["tracevaultd: warning: metrics on http://%s/metrics are reachable "
                        "from the network (not loopback; no TLS, no authentication)" % addr], \
            srv.log()
        port = addr.rsplit(":", 1)[1]
        assert tvtest.Scrape("127.0.0.1:" + port).value(S + "written_records_total") == 0
    finally:
        srv.cleanup()
    srv, addr = start_server()  # loopback: no such line
    try:
        assert "reachable from the network" not in srv.log(), srv.log()
    finally:
        srv.cleanup()

    for arg in ("nope", "127.0.0.1:65536", "127.0.0.1:", ":80", "::1:80"):
        p = subprocess.run([tvtest.binary("tracevaultd"), "--data", "/nonexistent/x",
                            "--metrics-addr", arg], capture_output=True, text=True, timeout=20)
        assert p.returncode == 2 and p.stderr.count("\n") == 1 and \
            ("invalid --metrics-addr: '%s'" % arg) in p.stderr, (arg, p.returncode, p.stderr)
    p = subprocess.run([tvtest.binary("tracevaultd"), "--data", "/nonexistent/x", "--scrub",
                        "--metrics-addr", "127.0.0.1:0"], capture_output=True, text=True,
                       timeout=20)
    assert p.returncode == 2 and "--metrics-addr serves" in p.stderr, p.stderr
    p = subprocess.run([tvtest.binary("tracevaultd"), "--help"], capture_output=True, text=True,
                       timeout=20)
    assert "--metrics-addr HOST:PORT" in p.stdout


def main():
    res = tvtest.Results(len(tvtest.cases(globals())))
    for t in tvtest.cases(globals()):
        res.run(t)
    return res.exit_code()


if __name__ == "__main__":
    sys.exit(main())

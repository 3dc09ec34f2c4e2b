"""`tracevault capture --mode sockfilter` against a real nginx: the traffic mix of
test_capture_mix.py seen as loopback packets (AF_PACKET + eBPF socket filter, TCP reassembly)
must give exactly one server record per access-log line (role "server", the server as local
end) and one client record (role "client", the client as local end: both ends of a loopback
connection are this host's), nothing else, pid 0 and the right addresses; the same over IPv6
([::1]); and a keep-alive connection opened before the capture starts is picked up at its next
request (--port names the server side), never before it; and test_capture_load's wrk run
(records == access log, nothing lost) in this mode with --role server."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_capture_load as load  # noqa: E402  (its wrk check, shared)
import test_capture_mix as mix  # noqa: E402  (its traffic(), shared, not copied)
import tvtest  # noqa: E402

CAP_NET_RAW = 13
SOCKFILTER = ["--mode", "sockfilter"]


def unavailable_reason():
    """None when this process can open a raw packet socket and load a socket filter."""
    caps = tvtest.effective_caps()
    if not caps >> CAP_NET_RAW & 1:
        return "CAP_NET_RAW absent from the effective capability set (raw AF_PACKET socket)"
    if not (caps >> tvtest.CAP_BPF & 1 or caps >> tvtest.CAP_SYS_ADMIN & 1):
        return "CAP_BPF (or CAP_SYS_ADMIN) absent from the effective capability set"
    return tvtest.bpf_unavailable_reason()


def access_log(ng):
    return [(m, u, int(s), int(b)) for m, u, s, b, _ in ng.access_log()]


def by_role(recs, log, what, err):
    """The server and the client records, each set matching the access log on its own, and the
    client records the mirror of the server ones (local and remote swapped)."""
    server = [r for r in recs if r["role"] == "server"]
    client = [r for r in recs if r["role"] == "client"]
    assert len(server) + len(client) == len(recs), [r["role"] for r in recs]
    tvtest.compare_exchanges(log, server, what + ", server's view", err)
    tvtest.compare_exchanges(log, client, what + ", client's view", err)
    ends = lambda rs, a, b: sorted((r[a], r[b], r["path"], r["status"]) for r in rs)  # noqa
    assert ends(server, "local", "remote") == ends(client, "remote", "local"), (server, client)
    return server, client


def check_common(recs, nums, err, ng, local, remote_prefix, t0_ns, t1_ns):
    """What holds for every record of this mode: no process, the server as local side of the
    server records (the client's records are their mirror: by_role), wall clock times inside
    the capture, and no loss of any kind."""
    assert nums["lost"] == 0 and nums["ring_full"] == 0 and nums["map_full"] == 0, err
    assert nums["resyncs"] == 0, err
    assert "sockfilter: stream gaps 0 (0 bytes)" in err, err
    for r in recs:
        assert r["pid"] == 0 and r["comm"] == "", r
        server_end, client_end = (r["local"], r["remote"]) if r["role"] == "server" \
            else (r["remote"], r["local"])
        assert server_end == local, (r, local)
        assert client_end.startswith(remote_prefix), r
        assert r["remote"] != r["local"], r
        assert t0_ns <= r["ts_ns"] <= r["end_ns"] <= t1_ns, (r, t0_ns, t1_ns)
        assert r["flags"] == 0, r  # every exchange seen whole


def test_mix(srv):
    with tvtest.Nginx(mix.FILES) as ng:
        counts = {}

        def run():
            counts["sent"], counts["posts"] = mix.traffic(ng.port)
        t0 = time.time_ns()
        # 32 KiB of payload per packet: a pipelined batch arrives as one segment
        recs, nums, err = tvtest.capture_records(
            srv, SOCKFILTER + ["--port", str(ng.port), "--payload-bytes", "32K"], run)
        t1 = time.time_ns()
        ng.stop()  # flushes the access log
        log = access_log(ng)
        assert len(log) == counts["sent"], "nginx logged %d requests, %d sent" % (
            len(log), counts["sent"])
        # as in test_capture_mix: the one raw 100-continue exchange logs the interim bytes too
        cont = ("POST", "/post", 201, mix.POST_REPLY + mix.CONTINUE_BYTES)
        assert log.count(cont) == 1, log
        log = [("POST", "/post", 201, mix.POST_REPLY) if x == cont else x for x in log]
        recs, _ = by_role(recs, log, "sockfilter nginx mix", err)
        check_common(recs, nums, err, ng, "127.0.0.1:%d" % ng.port, "127.0.0.1:", t0, t1)
        posts = sorted(r["req_body_bytes"] for r in recs if r["method"] == "POST")
        assert posts == sorted(counts["posts"]), (posts, sorted(counts["posts"]))
        huge = [r for r in recs if r["path"] == "/huge.bin" and r["method"] == "GET"]
        assert len(huge) == 5 and all(r["resp_body_bytes"] == len(mix.HUGE) for r in huge), huge
        print("ok: %d requests of the mix captured from packets, each matching one access-log "
              "line" % len(recs))


def test_ipv6(srv):
    with tvtest.Nginx(mix.FILES, ipv6=True) as ng:
        base = "http://[::1]:%d" % ng.port

        def run():
            assert tvtest.curl(base + "/index.html") == ["200"]
            assert tvtest.curl(base + "/nope", base + "/medium.bin", base + "/huge.bin") == [
                "404", "200", "200"]
            assert tvtest.curl("--data-binary", "@-", base + "/post",
                               data=b"v" * 1000) == ["201"]
        t0 = time.time_ns()
        recs, nums, err = tvtest.capture_records(srv, SOCKFILTER + ["--port", str(ng.port)],
                                                 run)
        t1 = time.time_ns()
        ng.stop()
        log = access_log(ng)
        # curl may get a 100 Continue before its POST body: nginx logs those bytes too
        log = [("POST", "/post", 201, mix.POST_REPLY) if x[:3] == ("POST", "/post", 201) else x
               for x in log]
        assert len(log) == 5, log
        by_role(recs, log, "sockfilter IPv6", err)
        check_common(recs, nums, err, ng, "[::1]:%d" % ng.port, "[::1]:", t0, t1)
        print("ok: %d IPv6 exchanges captured from packets, both ends" % (len(recs) // 2))


def test_connection_open_before_capture(srv):
    """Documented behaviour (bpf/README.md): with --port, a connection that exists when the
    capture starts is picked up at its first segment with payload, the side owning --port being
    the server; what it carried before is not seen. Its next request is therefore recorded
    whole, and the one before the capture is not."""
    with tvtest.Nginx() as ng:
        recs, nums, err, log, old_client, t0, t1 = tvtest.capture_old_connection(
            srv, ng, SOCKFILTER + ["--port", str(ng.port)])
        server, client = by_role(recs, log[1:], "sockfilter pre-existing connection", err)
        check_common(recs, nums, err, ng, "127.0.0.1:%d" % ng.port, "127.0.0.1:", t0, t1)
        on_old = [r["path"] for r in server if r["remote"] == old_client]
        assert on_old == ["/old-conn-after-start", "/index.html"], (on_old, recs)
        on_old = [r["path"] for r in client if r["local"] == old_client]
        assert on_old == ["/old-conn-after-start", "/index.html"], (on_old, recs)
        print("ok: a connection opened before the capture is picked up at its next request")


def main():
    reason = unavailable_reason()
    if reason:
        tvtest.skip(reason)
    with tvtest.Server() as srv:
        test_mix(srv)
        test_ipv6(srv)
        test_connection_open_before_capture(srv)
        # under load: records == access log, nothing lost (packet ring, reassembly)
        load.test_wrk(srv, lambda ng: SOCKFILTER + ["--port", str(ng.port), "--role", "server"],
                      "sockfilter, nginx under wrk")


if __name__ == "__main__":
    main()

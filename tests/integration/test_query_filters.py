"""Query filters evaluated on the server (PROTOCOL.md "Filters"): seeded random records in
overlapping blocks of several segments (equal ts_ns across blocks, paths with queries and glob
metacharacters, mixed-case hosts with ports, IPv4/IPv6/v4-mapped remotes, every flag, status
0, latency 0), then random windows x random filter combinations x forward or reverse x
limits, each answer compared exactly (the record bytes, in order) with a reference computed
here from the same records (reverse == reversed(forward), reverse with limit N == the last N
of forward, reversed): through grpcio and the .proto alone, through `tracevault query` with
its options, and through the CLI over two servers. The first message announces the features
a request needs (PROTOCOL.md "Features"), and a server that does not (a stand-in for an older
tracevaultd) makes the CLI fail rather than print unfiltered records. Bad filters end
INVALID_ARGUMENT naming the field; bad options are usage errors (exit 2)."""
import json
import os
import random
import sys
import threading
import time
from concurrent import futures

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402
from tvtest import FilterSpec  # noqa: E402

grpc = tvtest.grpc_modules()[0]

BASE = 1_800_000_000 * 10**9
SPAN = 2_000_000
ROUNDS_GRPC = 300
ROUNDS_CLI = 60
ROUNDS_TWO_SERVERS = 16
FEATURE_FILTER, FEATURE_REVERSE = 1, 2
TIME_BUDGET_S = 240

METHODS = ["GET", "POST", "PUT", "DELETE", "get", "PATCH"]
# 600 to 999: past the registered classes, but a status line may carry them (stored, selectable)
STATUSES = [0, 101, 200, 201, 204, 301, 404, 418, 499, 500, 503, 599, 600, 799, 999]
PATHS = ["/", "/api/v1/users", "/api/v1/users?id=3", "/api/v2/orders/17?x=/api/v1",
         "/static/a.png", "/static/b[1].png", "/x*y", "/caf\u00e9/menu", "/api", "/apix?q"]
HOSTS = ["Shop.Example", "shop.example:8080", "cdn.example", "", "[::1]:8080", "10.0.0.1:80",
         "API.shop.example"]
ROLES = ["server", "client", ""]
COMMS = ["nginx", "curl", "python3", "node", "ngin"]
REMOTES = ["10.1.2.3:5000", "10.200.0.9:80", "192.168.1.5:443", "[::1]:8080",
           "[2001:db8::5]:443", "[::ffff:10.1.2.7]:99", "", "[2001:db9::1]:1"]
TRACES = ["0af7651916cd43dd8448eb211c80319c", "4bf92f3577b34da6a3ce929d0e0e4736", ""]
FLAGS = [0, 0, 0, 1, 2, 4, 8 | 2, 32, 32 | 4, 1 | 32]


def random_record(rng, ts):
    latency = rng.choice([0, 1, 999, 1000, rng.randrange(1, 10**6),
                          int(rng.lognormvariate(16, 2))])
    return tvtest.trace_record(
        ts, pid=rng.randrange(1, 7), path=rng.choice(PATHS), latency_ns=latency,
        method=rng.choice(METHODS), status=rng.choice(STATUSES), host=rng.choice(HOSTS),
        role=rng.choice(ROLES), comm=rng.choice(COMMS), remote=rng.choice(REMOTES),
        trace_id=rng.choice(TRACES), flags=rng.choice(FLAGS))


def write_archive(cl, rng, shared_ts, segments=24, first_segment=0x700):
    """~6k records in 24 segments of 1-3 blocks from 3 'writers' whose time ranges overlap,
    a tenth of them at one of shared_ts (equal ts_ns across blocks and servers). Returns the
    records in the server's forward order: (ts_ns, block min_ts_ns, block_id, ordinal in the
    block)."""
    keyed = []
    block_id = 0x7000
    for seg in range(segments):
        blocks = []
        for _ in range(rng.randrange(1, 4)):
            start = BASE + rng.randrange(SPAN)
            width = rng.choice([1, 1000, SPAN // 8, SPAN // 2])
            n = rng.randrange(1, 400)
            ts = sorted(rng.choice(shared_ts) if rng.random() < 0.1 else
                        start + rng.randrange(width) for _ in range(n))
            recs = [random_record(rng, t) for t in ts]
            block_id += rng.randrange(1, 50)
            blocks.append((block_id, recs))
            for i, r in enumerate(recs):
                keyed.append(((r.ts_ns, ts[0], block_id, i), r))
        cl.write_segment(first_segment + seg, blocks)
    keyed.sort(key=lambda kv: kv[0])
    return [r for _, r in keyed]


def random_spec(rng, records):
    """0 to 5 filter fields, values drawn from present and absent ones."""
    s = FilterSpec()
    sample = rng.choice(records)
    fields = rng.sample(range(13), rng.randrange(0, 6))
    for f in fields:
        if f == 0:
            s.methods = rng.sample(METHODS + ["OPTIONS"], rng.randrange(1, 3))
        elif f == 1:
            s.status = rng.sample(["5xx", "4xx", "2xx", "1xx", "404", "500-503", "none", "200",
                                   "300-399", "6xx", "9xx", "599-799", "999"],
                                  rng.randrange(1, 3))
        elif f == 2:
            s.paths = [rng.choice([sample.path.split("?")[0], "/api/*", "/api/v?/*", "*.png",
                                   "/static/b[[]1].png", "/x[*]y", "/nothere", "/api",
                                   "*[!a-z]*", "/caf\u00e9*", "/a[pq]i*", "*?q"])
                       for _ in range(rng.randrange(1, 3))]
            s.path_with_query = rng.random() < 0.3
        elif f == 3:
            s.hosts = [rng.choice(["shop.example", "SHOP.EXAMPLE:8080", "*.example", "cdn*",
                                   "[::1]", "[::1]:80*", "[::1]:8?80", "10.0.0.1", "nohost",
                                   "api.shop.example"])]
        elif f == 4:
            s.role = rng.choice(["server", "client", "server,client"])
        elif f == 5:
            s.pids = rng.sample(range(1, 9), rng.randrange(1, 3))
        elif f == 6:
            s.comms = [rng.choice(["nginx", "ngin*", "ngin?", "curl", "py*", "absent"])]
        elif f == 7:
            s.remotes = rng.sample(["10.0.0.0/8", "10.1.2.3", "192.168.0.0/16", "::1",
                                    "2001:db8::/32", "::ffff:10.1.0.0/112", "0.0.0.0/0",
                                    "10.1.2.0/31", "172.16.0.0/12"], rng.randrange(1, 3))
        elif f == 8:
            s.trace_ids = [rng.choice([TRACES[0].upper(), TRACES[1],
                                       "ffffffffffffffffffffffffffffffff"])]
        elif f == 9:
            s.min_latency_ns = rng.choice([0, 1, 1000, sample.latency_ns, 10**7])
        elif f == 10:
            s.max_latency_ns = rng.choice([0, 999, sample.latency_ns, 10**9])
        elif f == 11:
            s.flags_any = rng.sample(["no_response", "partial", "lost", "cut", "unseen"],
                                     rng.randrange(1, 3))
        else:
            if rng.random() < 0.5:
                s.clean = True
            else:
                s.flags_all = rng.sample(["partial", "cut", "unseen", "lost"],
                                         rng.randrange(1, 3))
    if s.min_latency_ns is not None and s.max_latency_ns is not None and \
            s.min_latency_ns > s.max_latency_ns:
        s.min_latency_ns, s.max_latency_ns = s.max_latency_ns, s.min_latency_ns
    return s


def random_window(rng, records):
    kind = rng.randrange(5)
    if kind == 0:
        t = BASE + rng.randrange(SPAN)
        return t, t                                   # empty
    if kind == 1:
        t = rng.choice(records).ts_ns
        return t, t + 1                               # one ns, on a record
    if kind == 2:
        return BASE - 1, BASE + SPAN + 1              # all
    a, b = sorted(rng.choice(records).ts_ns for _ in range(2))
    return a, b                                       # edges on record ts


def expected(records, frm, to, spec, limit, reverse=False):
    """What a Query answers: the matches in forward order, or their exact reverse; then the
    first limit of those."""
    out = [r for r in records if frm <= r.ts_ns < to and spec.passes(r)]
    if reverse:
        out.reverse()
    return out[:limit] if limit else out


def pick_limit(rng, n):
    return rng.choice([0, 1, 7, max(n - 1, 0), n + 5])


def test_grpc_rounds(cl, rng, records, deadline):
    pb = cl.pb
    nonempty = reversed_rounds = 0
    for i in range(ROUNDS_GRPC):
        if time.monotonic() > deadline:
            raise AssertionError("time budget spent after %d grpc rounds" % i)
        frm, to = random_window(rng, records)
        spec = random_spec(rng, records)
        reverse = rng.random() < 0.5
        full = expected(records, frm, to, spec, 0)
        limit = pick_limit(rng, len(full))
        want = expected(records, frm, to, spec, limit, reverse)
        req = pb.QueryRequest(from_ns=frm, to_ns=to, limit=limit, reverse=reverse)
        if rng.random() < 0.9:  # else no filter field at all: no FILTER feature either
            req.filter.CopyFrom(spec.to_pb(pb))
        else:
            want = expected(records, frm, to, FilterSpec(), limit, reverse)
        features = (FEATURE_FILTER if req.HasField("filter") else 0) | \
            (FEATURE_REVERSE if reverse else 0)
        got, announced = [], []
        for resp in cl.query_rpc(req, timeout=cl.timeout_s):
            got.extend(resp.records)
            announced.append(resp.features)
        # the first message carries the features asked for, and only it; a request without
        # filter and reverse gets messages as before (no features field)
        if features:
            assert announced and announced[0] == features and not any(announced[1:]), \
                (i, features, announced[:3])
        else:
            assert not any(announced), (i, announced[:3])
        gb = [r.SerializeToString() for r in got]
        wb = [r.SerializeToString() for r in want]
        if gb != wb:
            raise AssertionError("round %d: [%d, %d) limit %d reverse %s %r: got %d records, "
                                 "want %d; first difference at %s" % (
                                     i, frm - BASE, to - BASE, limit, reverse, spec, len(gb),
                                     len(wb),
                                     next((k for k, (x, y) in enumerate(zip(gb, wb)) if x != y),
                                          min(len(gb), len(wb)))))
        if reverse and limit and want:
            # the mirror, stated directly: the last limit of forward, reversed
            fwd = expected(records, frm, to, spec if req.HasField("filter") else FilterSpec(),
                           0)
            assert wb == [r.SerializeToString() for r in fwd[::-1][:limit]]
        reversed_rounds += reverse and len(want) > 1
        nonempty += bool(want) and len(want) < len(
            [r for r in records if frm <= r.ts_ns < to])
    # the rounds must have exercised real selection, not only empty or unfiltered answers
    assert nonempty >= ROUNDS_GRPC // 5, nonempty
    assert reversed_rounds >= ROUNDS_GRPC // 10, reversed_rounds
    return nonempty


def cli_key(obj):
    return (obj["ts_ns"], obj.get("pid", 0), obj.get("path", ""), obj.get("status", 0),
            obj.get("remote", ""), obj.get("latency_ns", 0))


def cli_round(addrs, rng, records, deadline, i):
    """One random query through `tracevault query` against addrs (records: the answer of all
    of them merged, in forward order)."""
    if time.monotonic() > deadline:
        raise AssertionError("time budget spent after %d cli rounds" % i)
    frm, to = random_window(rng, records)
    spec = random_spec(rng, records)
    reverse = rng.random() < 0.5
    full = expected(records, frm, to, spec, 0)
    limit = pick_limit(rng, len(full))
    want = expected(records, frm, to, spec, limit, reverse)
    args = ["query", "--server", ",".join(addrs), "--from", str(frm), "--to", str(to),
            "--limit", str(limit)] + spec.to_args() + (["--reverse"] if reverse else [])
    p = tvtest.run(args, timeout=60)
    assert p.returncode == 0, (args, p.returncode, p.stderr)
    got = [cli_key(json.loads(line)) for line in p.stdout.splitlines()]
    exp = [(r.ts_ns, r.pid, r.path, r.status, r.remote, r.latency_ns) for r in want]
    assert got == exp, ("cli round %d" % i, args, len(got), len(exp))


def test_cli_rounds(srv, rng, records, deadline):
    for i in range(ROUNDS_CLI):
        cli_round([srv.addr], rng, records, deadline, i)


def test_two_servers(srv, rng, records, shared_ts, deadline):
    """A second server with its own archive: the CLI merges both, ties of ts_ns to the server
    listed first (forward) or last (reverse: the exact mirror)."""
    with tvtest.Server() as srv2:
        cl2 = tvtest.GrpcClient(srv2.addr)
        try:
            records2 = write_archive(cl2, rng, shared_ts, segments=8, first_segment=0x900)
        finally:
            cl2.close()
        keyed = [((r.ts_ns, 0, k), r) for k, r in enumerate(records)] + \
            [((r.ts_ns, 1, k), r) for k, r in enumerate(records2)]
        keyed.sort(key=lambda kv: kv[0])
        merged = [r for _, r in keyed]
        ties = sum(1 for a, b in zip(merged, merged[1:]) if a.ts_ns == b.ts_ns)
        assert ties, "the archives share no ts_ns: ties untested"
        for i in range(ROUNDS_TWO_SERVERS):
            cli_round([srv.addr, srv2.addr], rng, merged, deadline, i)


class OldServer:
    """A stand-in for a tracevaultd from before filters and reverse: its Query ignores fields 4
    and 5 and answers every record of the window, oldest first, without features."""

    def __init__(self, pb, records):
        grpc_ = grpc
        self.records = records
        self.server = grpc_.server(futures.ThreadPoolExecutor(max_workers=2))
        handler = grpc_.method_handlers_generic_handler("tracevault.v1.TraceStore", {
            "Query": grpc_.unary_stream_rpc_method_handler(
                self.query, request_deserializer=pb.QueryRequest.FromString,
                response_serializer=lambda m: m.SerializeToString())})
        self.server.add_generic_rpc_handlers((handler,))
        self.addr = "127.0.0.1:%d" % self.server.add_insecure_port("127.0.0.1:0")
        self.pb = pb
        self.server.start()

    def query(self, req, context):
        recs = [r for r in self.records if req.from_ns <= r.ts_ns < req.to_ns]
        if req.limit:
            recs = recs[:req.limit]
        if recs:
            yield self.pb.QueryResponse(records=recs)

    def stop(self):
        self.server.stop(None).wait(10)


def test_old_server_is_refused(pb, records):
    """The client needs the features it asked for: without them it exits 1 naming the server
    and what it does not evaluate, and prints nothing; a plain query still works."""
    old = OldServer(pb, records)
    try:
        base = ["query", "--server", old.addr, "--from", str(records[0].ts_ns), "--to",
                str(records[-1].ts_ns + 1)]
        for extra, what in ((["--status", "5xx"], "does not evaluate filters"),
                            (["--reverse"], "does not evaluate reverse"),
                            (["--pid", "1", "--reverse"], "does not evaluate filters or reverse")):
            p = tvtest.run(base + extra, timeout=60)
            assert p.returncode == 1, (extra, p.returncode, p.stderr)
            assert p.stdout == "", (extra, p.stdout[:200])
            lines = p.stderr.strip().splitlines()
            assert len(lines) == 1 and what in lines[0] and old.addr in lines[0] and \
                "upgrade tracevaultd" in lines[0], (extra, p.stderr)
        # a window the old server answers with no message at all: a new server always sends
        # one when asked for features, so an empty answer is refused too
        p = tvtest.run(["query", "--server", old.addr, "--from", "1", "--to", "2", "--status",
                        "5xx"], timeout=60)
        assert p.returncode == 1 and "does not evaluate filters" in p.stderr, \
            (p.returncode, p.stderr)
        p = tvtest.run(base, timeout=60)
        assert p.returncode == 0 and len(p.stdout.splitlines()) == len(records), \
            (p.returncode, p.stderr)
    finally:
        old.stop()


def test_cli_v6_host(srv, records):
    """--host '[::1]' is the IPv6 literal of RFC 3986, not a glob set of ':' and '1': written
    out here, not through the reference's match_kind, so a CLI that globs it fails."""
    want = sorted(cli_key_of(r) for r in records if r.host == "[::1]:8080")
    assert want, "the archive has no [::1]:8080 record"
    hi = max(r.ts_ns for r in records) + 1
    for pat in ("[::1]", "[::1]:8080", "[::1]:80*", "[::1]:80?0", "[::1]*"):
        p = tvtest.run(["query", "--server", srv.addr, "--from", "0", "--to", str(hi),
                        "--host", pat], timeout=60)
        assert p.returncode == 0, (pat, p.stderr)
        got = sorted(cli_key(json.loads(line)) for line in p.stdout.splitlines())
        assert got == want, (pat, len(got), len(want))


def test_cli_option_lists(srv, records):
    """Every filter option's values OR, given as a,b or as the option repeated (query --help
    says so): --role server --role client is both roles (not the last one, and not the
    records without a role); --comm and --host
    split at ',' (no comm or RFC 1123 host name worth a filter holds one); --path is taken
    whole (RFC 3986 allows ',' in a path), so several paths are several --path options.
    The expected sets are computed here from the records, not from FilterSpec."""
    hi = max(r.ts_ns for r in records) + 1

    def run(*opts):
        p = tvtest.run(["query", "--server", srv.addr, "--from", "0", "--to", str(hi)] +
                       list(opts), timeout=60)
        assert p.returncode == 0, (opts, p.returncode, p.stderr)
        return sorted(cli_key(json.loads(line)) for line in p.stdout.splitlines())

    def want(pred):
        got = sorted(cli_key_of(r) for r in records if pred(r))
        assert got, "no record for this case: the test proves nothing"
        return got

    both = want(lambda r: r.role in ("server", "client"))
    assert len(both) < len(records), "every record has a role: the test proves nothing"
    clients = want(lambda r: r.role == "client")
    assert run("--role", "server", "--role", "client") == both, "--role repeated"
    assert run("--role", "client,server") == both, "--role a,b"
    assert run("--role", "client", "--role", "client") == clients, "--role client twice"
    nginx_node = want(lambda r: r.comm in ("nginx", "node"))
    assert run("--comm", "nginx,node") == nginx_node, "--comm a,b"
    assert run("--comm", "nginx", "--comm", "node") == nginx_node, "--comm repeated"
    assert run("--comm", "ngin*,curl") == want(lambda r: r.comm.startswith("ngin") or
                                              r.comm == "curl"), "--comm glob,value"
    hosts = want(lambda r: r.host.lower().split(":")[0] in ("cdn.example", "shop.example"))
    assert run("--host", "cdn.example,SHOP.example") == hosts, "--host a,b"
    assert run("--host", "cdn.example", "--host", "shop.example") == hosts, "--host repeated"
    assert run("--host", "[::1],cdn.example") == want(
        lambda r: r.host in ("[::1]:8080", "cdn.example")), "--host [v6],name"
    paths = want(lambda r: r.path.split("?")[0] in ("/api", "/static/a.png"))
    assert run("--path", "/api", "--path", "/static/a.png") == paths, "--path repeated"
    assert run("--path", "/api,/static/a.png") == [], "--path a,b is one path, literal"
    h = tvtest.run(["query", "--help"])
    assert "repeat --path for several" in h.stdout, h.stdout
    p = tvtest.run(["query", "--server", srv.addr, "--from", "0", "--comm", "nginx,,node"])
    assert p.returncode == 2 and "nginx,,node" in p.stderr, (p.returncode, p.stderr)


def cli_key_of(r):
    return (r.ts_ns, r.pid, r.path, r.status, r.remote, r.latency_ns)


def test_invalid_filters(cl):
    pb = cl.pb
    bad = [
        (pb.QueryFilter(remotes=["::1", "10.0.0.0/33"]),
         "filter.remotes[1]: '10.0.0.0/33' is not an address or CIDR"),
        (pb.QueryFilter(trace_ids=["xyz"]), "filter.trace_ids[0]"),
        (pb.QueryFilter(status=[pb.Range(lo=500, hi=400)]), "filter.status[0]"),
        (pb.QueryFilter(latency_ns=pb.Range(lo=2, hi=1)), "filter.latency_ns"),
        (pb.QueryFilter(methods=["GET"] * 65), "filter.methods: 65 entries, at most 64"),
        (pb.QueryFilter(paths=[pb.StringMatch(value="x" * 1025)]), "filter.paths[0]"),
    ]
    for f, want in bad:
        try:
            list(cl.query_rpc(pb.QueryRequest(from_ns=0, to_ns=2**63, filter=f),
                              timeout=cl.timeout_s))
            raise AssertionError("accepted: %r" % f)
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, (f, e)
            assert want in e.details(), (e.details(), want)


def test_usage_errors(srv):
    for opt, val in (("--status", "0xx"), ("--status", "99"), ("--status", "500-400"),
                     ("--min-latency", "250"), ("--max-latency", "1.5parsecs"),
                     ("--remote", "10.0.0.0/33"), ("--trace-id", "abc"), ("--pid", "-1"),
                     ("--role", "proxy"), ("--flags", "weird"), ("--method", "GET,,PUT"),
                     ("--min-latency", "99999999999h")):
        p = tvtest.run(["query", "--server", srv.addr, "--from", "0", opt, val])
        assert p.returncode == 2, (opt, val, p.returncode, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1, (opt, val, p.stderr)
        assert val in p.stderr, (opt, val, p.stderr)
    p = tvtest.run(["query", "--server", srv.addr, "--from", "0", "--min-latency", "2s",
                    "--max-latency", "1s"])
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr


def main():
    seed = int(os.environ.get("TV_SEED", random.randrange(2**32)))
    print("seed %d (TV_SEED=%d reruns it)" % (seed, seed))
    rng = random.Random(seed)
    deadline = time.monotonic() + TIME_BUDGET_S
    with tvtest.Server() as srv:
        cl = tvtest.GrpcClient(srv.addr)
        try:
            shared_ts = [BASE + rng.randrange(SPAN) for _ in range(40)]
            records = write_archive(cl, rng, shared_ts)
            print("ok wrote %d records" % len(records))
            n = test_grpc_rounds(cl, rng, records, deadline)
            print("ok %d grpc rounds (%d selective)" % (ROUNDS_GRPC, n))
            test_cli_rounds(srv, rng, records, deadline)
            print("ok %d cli rounds" % ROUNDS_CLI)
            test_cli_v6_host(srv, records)
            print("ok --host [::1]")
            test_cli_option_lists(srv, records)
            print("ok option lists: a,b and repeated options OR")
            test_two_servers(srv, rng, records, shared_ts, deadline)
            print("ok %d cli rounds over two servers" % ROUNDS_TWO_SERVERS)
            test_old_server_is_refused(cl.pb, records)
            print("ok a server without features is refused")
            test_invalid_filters(cl)
            print("ok invalid filters")
            test_usage_errors(srv)
            print("ok usage errors")
        finally:
            cl.close()


if __name__ == "__main__":
    main()

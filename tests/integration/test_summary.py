"""Summary (PROTOCOL.md "Summary"): seeded random records in overlapping blocks of several
segments, written split over two servers A and B and whole to a third server U; then random
windows x random filters x group-bys x quantiles x max_groups, each answer compared with a
reference computed here from the same records: counts, error counts, latency min/max/sum and
the groups' order exact; each quantile within the documented bound (x = sorted[floor(q(n-1))],
|est - x| <= alpha*x*(1+1e-9)); A's and B's sketches added bucket for bucket equal U's.
Through grpcio and the .proto alone, and through `tracevault summary` (jsonl over A,B is
byte-identical to jsonl over U; csv holds the jsonl values). Malformed requests end
INVALID_ARGUMENT naming the field, bad options are usage errors, a damaged block is reported
in `skipped` with the others' records still counted."""
import csv
import io
import json
import math
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402
from test_query_filters import (BASE, SPAN, random_record, random_spec,  # noqa: E402
                                random_window)

grpc = tvtest.grpc_modules()[0]

ALPHA = (2 ** (1 / 64) - 1) / (2 ** (1 / 64) + 1)   # 0.5415 %
ROUNDS_GRPC = 200
ROUNDS_MERGE = 40
ROUNDS_CLI = 30
TIME_BUDGET_S = 240
BY = ["none", "path", "host", "method", "status", "comm", "remote", "role"]
DEFAULT_Q = [0.5, 0.9, 0.99]
MAX_GROUPS = 100000


def key_of(r, by):
    if by == "path":
        return r.path.split("?", 1)[0]
    if by == "host":
        return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in r.host)
    if by == "method":
        return r.method
    if by == "status":
        return str(r.status)
    if by == "comm":
        return r.comm
    if by == "remote":
        head, sep, port = r.remote.rpartition(":")
        if not sep or not port or not port.isdigit() or not head:
            return r.remote
        if r.remote.startswith("["):
            return head[1:-1] if len(head) >= 2 and head.endswith("]") else r.remote
        return r.remote if ":" in head else head
    if by == "role":
        return r.role
    return ""


class Ref:
    """A reference group: the records of one key."""

    def __init__(self, key):
        self.key = key
        self.recs = []

    @property
    def count(self):
        return len(self.recs)

    def lats(self):
        return sorted(r.latency_ns for r in self.recs if r.status != 0)


def reference(records, frm, to, spec, by):
    groups = {}
    for r in records:
        if frm <= r.ts_ns < to and spec.passes(r):
            k = key_of(r, by)
            groups.setdefault(k, Ref(k)).recs.append(r)
    return sorted(groups.values(), key=lambda g: (-g.count, g.key.encode()))


def bound_ok(est, x):
    return abs(est - x) <= ALPHA * x * (1 + 1e-9)


def exact_item(lats, q):
    return lats[math.floor(q * (len(lats) - 1))]


def check_group(where, got, recs, quantiles, key=None):
    """got: a SummaryGroup; recs: its reference records."""
    lats = sorted(r.latency_ns for r in recs if r.status != 0)
    if key is not None:
        assert got.key == key, (where, got.key, key)
    want = dict(count=len(recs),
                count_4xx=sum(400 <= r.status <= 499 for r in recs),
                count_5xx=sum(500 <= r.status <= 599 for r in recs),
                count_no_response=sum(r.status == 0 for r in recs),
                count_flagged=sum(r.flags != 0 for r in recs),
                latency_count=len(lats),
                latency_min_ns=lats[0] if lats else 0,
                latency_max_ns=lats[-1] if lats else 0,
                latency_sum_ns=min(sum(lats), 2**64 - 1))
    for f, v in want.items():
        assert getattr(got, f) == v, (where, got.key, f, getattr(got, f), v)
    sk = got.latency
    assert sk.scale == 6, (where, sk.scale)
    assert sk.zero_count == sum(x == 0 for x in lats), (where, "zero_count")
    assert sk.zero_count + sum(sk.bucket_counts) == len(lats), (where, "bucket total")
    assert len(got.quantile_ns) == len(quantiles), (where, len(got.quantile_ns))
    for q, est in zip(quantiles, got.quantile_ns):
        if not lats:
            assert est == 0, (where, q, est)
            continue
        x = exact_item(lats, q)
        assert bound_ok(est, x), (where, got.key, q, est, x, len(lats))


def write_archive(servers, union, rng):
    """~6k records in 24 segments of 1-3 overlapping blocks: each segment to one of servers
    (chosen at random) and to union. Returns every record."""
    records = []
    shared_ts = [BASE + rng.randrange(SPAN) for _ in range(40)]
    block_id = 0x9000
    for seg in range(24):
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
            records.extend(recs)
        rng.choice(servers).write_segment(0x900 + seg, blocks)
        union.write_segment(0x900 + seg, blocks)
    return records


def random_request(pb, rng, records):
    frm, to = random_window(rng, records)
    spec = random_spec(rng, records) if rng.random() < 0.7 else tvtest.FilterSpec()
    by = rng.choice(BY)
    quantiles = rng.choice([[], [0.5], [0, 1], [0.001, 0.25, 0.5, 0.75, 0.999],
                            [rng.random() for _ in range(rng.randrange(1, 17))]])
    max_groups = rng.choice([0, 1, 3, MAX_GROUPS])
    req = pb.SummaryRequest(from_ns=frm, to_ns=to, filter=spec.to_pb(pb),
                            by=getattr(pb, "GROUP_BY_" + by.upper()), max_groups=max_groups,
                            quantiles=quantiles)
    return req, frm, to, spec, by, quantiles or DEFAULT_Q, max_groups or 1000


def test_grpc_rounds(clients, rng, records, deadline):
    u = clients["U"]
    pb = u.pb
    cut = 0
    for i in range(ROUNDS_GRPC):
        if time.monotonic() > deadline:
            raise AssertionError("time budget spent after %d grpc rounds" % i)
        req, frm, to, spec, by, qs, mg = random_request(pb, rng, records)
        ref = reference(records, frm, to, spec, by)
        got = u.summary(req, timeout=u.timeout_s)
        where = "round %d [%d, %d) by %s %r" % (i, frm - BASE, to - BASE, by, spec)
        assert got.groups_total == len(ref), (where, got.groups_total, len(ref))
        assert got.records == sum(g.count for g in ref), (where, got.records)
        assert not got.skipped and not got.groups_overflowed, where
        kept, rest = ref[:mg], ref[mg:]
        assert [g.key for g in got.groups] == [g.key for g in kept], where
        for g, r in zip(got.groups, kept):
            check_group(where, g, r.recs, qs)
        if rest:
            cut += 1
            assert got.HasField("other"), where
            check_group(where + " other", got.other, [x for g in rest for x in g.recs], qs,
                        key="")
        else:
            assert not got.HasField("other"), where
    # the rounds must have cut groups into other now and then
    assert cut >= ROUNDS_GRPC // 20, cut


def buckets(sk):
    return {sk.offset + i: c for i, c in enumerate(sk.bucket_counts) if c}


def test_two_servers_merge_as_their_union(clients, rng, records, deadline):
    pb = clients["U"].pb
    for i in range(ROUNDS_MERGE):
        if time.monotonic() > deadline:
            raise AssertionError("time budget spent after %d merge rounds" % i)
        req, *_ = random_request(pb, rng, records)
        req.max_groups = MAX_GROUPS
        merged = {}
        for name in ("A", "B"):
            for g in clients[name].summary(req, timeout=60).groups:
                m = merged.setdefault(g.key, dict(count=0, count_4xx=0, count_5xx=0,
                                                  count_no_response=0, count_flagged=0,
                                                  latency_count=0, latency_sum_ns=0,
                                                  mins=[], maxs=[], zero=0, bins={}))
                for f in ("count", "count_4xx", "count_5xx", "count_no_response",
                          "count_flagged", "latency_count", "latency_sum_ns"):
                    m[f] += getattr(g, f)
                if g.latency_count:
                    m["mins"].append(g.latency_min_ns)
                    m["maxs"].append(g.latency_max_ns)
                m["zero"] += g.latency.zero_count
                for k, c in buckets(g.latency).items():
                    m["bins"][k] = m["bins"].get(k, 0) + c
        union = clients["U"].summary(req, timeout=60)
        assert sorted(merged) == sorted(g.key for g in union.groups), ("merge round %d" % i)
        for g in union.groups:
            m = merged[g.key]
            for f in ("count", "count_4xx", "count_5xx", "count_no_response", "count_flagged",
                      "latency_count", "latency_sum_ns"):
                assert m[f] == getattr(g, f), (i, g.key, f)
            assert min(m["mins"], default=0) == g.latency_min_ns, (i, g.key)
            assert max(m["maxs"], default=0) == g.latency_max_ns, (i, g.key)
            assert m["zero"] == g.latency.zero_count, (i, g.key)
            assert m["bins"] == buckets(g.latency), ("merge round %d: bins differ" % i, g.key)


def cli_args(srv_list, frm, to, spec, by, qs, top, fmt):
    return (["summary", "--server", srv_list, "--from", str(frm), "--to", str(to), "--by", by,
             "--format", fmt, "--quantiles", ",".join(repr(q) for q in qs)]
            + (["--top", str(top)] if top else []) + spec.to_args())


def test_cli_rounds(servers, rng, records, deadline):
    pb = tvtest.grpc_modules()[1]
    ab = servers["A"].addr + "," + servers["B"].addr
    for i in range(ROUNDS_CLI):
        if time.monotonic() > deadline:
            raise AssertionError("time budget spent after %d cli rounds" % i)
        _, frm, to, spec, by, qs, mg = random_request(pb, rng, records)
        qs = [round(q, 6) for q in qs]
        top = rng.choice([0, 1, 2, 50])
        ref = reference(records, frm, to, spec, by)
        pu = tvtest.run(cli_args(servers["U"].addr, frm, to, spec, by, qs, top, "jsonl"),
                        timeout=60)
        assert pu.returncode == 0, (pu.returncode, pu.stderr)
        pab = tvtest.run(cli_args(ab, frm, to, spec, by, qs, top, "jsonl"), timeout=60)
        assert pab.returncode == 0, (pab.returncode, pab.stderr)
        # several servers merge to exactly what one server holding them all answers
        assert pab.stdout == pu.stdout, ("cli round %d" % i, pab.stdout, pu.stdout)
        lines = [json.loads(x) for x in pu.stdout.splitlines()]
        n = top or 1000
        kept, rest = ref[:n], ref[n:]
        expect = [(g.key, False, g.recs) for g in kept]
        if rest:
            expect.append(("", True, [x for g in rest for x in g.recs]))
        assert [(o["key"], o["other"]) for o in lines] == [(k, o) for k, o, _ in expect], \
            ("cli round %d" % i, [o["key"] for o in lines], [k for k, _, _ in expect])
        window_s = (to - frm) / 1e9
        for o, (_, _, recs) in zip(lines, expect):
            lats = sorted(r.latency_ns for r in recs if r.status != 0)
            assert o["count"] == len(recs), (i, o)
            assert o["count_5xx"] == sum(500 <= r.status <= 599 for r in recs), (i, o)
            assert o["count_4xx"] == sum(400 <= r.status <= 499 for r in recs), (i, o)
            assert math.isclose(o["rate_per_s"], len(recs) / window_s, rel_tol=1e-8), (i, o)
            assert math.isclose(o["error_rate_5xx"], o["count_5xx"] / len(recs),
                                rel_tol=1e-8, abs_tol=1e-12), (i, o)
            assert o["latency_count"] == len(lats), (i, o)
            if not lats:
                assert o["latency_max_ns"] is None, (i, o)
                continue
            assert (o["latency_min_ns"], o["latency_max_ns"]) == (lats[0], lats[-1]), (i, o)
            for q in qs:
                name = "p%s_ns" % format(q * 100, ".10g")
                x = exact_item(lats, q)
                # printed with 3 decimals: 0.0005 ns of rounding on top of the bound
                assert abs(o[name] - x) <= ALPHA * x * (1 + 1e-9) + 0.0005, (i, name, o[name], x)
        if i % 5 == 0:
            pc = tvtest.run(cli_args(servers["U"].addr, frm, to, spec, by, qs, top, "csv"),
                            timeout=60)
            assert pc.returncode == 0, pc.stderr
            rows = list(csv.DictReader(io.StringIO(pc.stdout)))
            assert len(rows) == len(lines), (len(rows), len(lines))
            for row, o in zip(rows, lines):
                assert list(row) == list(o), (list(row), list(o))
                for k, v in o.items():
                    if isinstance(v, bool):
                        assert row[k] == ("true" if v else "false"), (k, row[k], v)
                    elif v is None:
                        assert row[k] == "", (k, row[k])
                    elif isinstance(v, str):
                        assert row[k] == v, (k, row[k], v)
                    else:
                        assert float(row[k]) == float(v), (k, row[k], v)
            pt = tvtest.run(cli_args(servers["U"].addr, frm, to, spec, by, qs, top, "table"),
                            timeout=60)
            assert pt.returncode == 0, pt.stderr
            assert len(pt.stdout.splitlines()) == len(lines) + 1, pt.stdout


def test_invalid_requests(clients):
    cl = clients["U"]
    pb = cl.pb
    bad = [
        (pb.SummaryRequest(from_ns=0, to_ns=10, by=9), "by: unknown GroupBy 9"),
        (pb.SummaryRequest(from_ns=0, to_ns=10, max_groups=MAX_GROUPS + 1),
         "max_groups: 100001 is above 100000"),
        (pb.SummaryRequest(from_ns=0, to_ns=10, quantiles=[0.5, 1.5]),
         "quantiles[1]: 1.5 is not in [0, 1]"),
        (pb.SummaryRequest(from_ns=0, to_ns=10, quantiles=[float("nan")]), "quantiles[0]"),
        (pb.SummaryRequest(from_ns=0, to_ns=10, quantiles=[0.5] * 17),
         "quantiles: 17 entries, at most 16"),
        (pb.SummaryRequest(from_ns=0, to_ns=10, filter=pb.QueryFilter(remotes=["10.0.0.0/33"])),
         "filter.remotes[0]: '10.0.0.0/33' is not an address or CIDR"),
        (pb.SummaryRequest(from_ns=11, to_ns=10), "from_ns 11 is after to_ns 10"),
    ]
    for req, want in bad:
        try:
            cl.summary(req, timeout=cl.timeout_s)
            raise AssertionError("accepted: %r" % req)
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, (req, e)
            assert want in e.details(), (e.details(), want)
    # bytes that are not a SummaryRequest
    raw = cl.ch.unary_unary(tvtest.grpc_client.SUMMARY, request_serializer=None,
                            response_deserializer=None)
    try:
        raw(b"\xff\xff\xff", timeout=cl.timeout_s)
        raise AssertionError("accepted garbage")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e


def test_usage_errors(servers):
    addr = servers["U"].addr
    for opt, val in (("--by", "url"), ("--top", "0"), ("--top", "100001"),
                     ("--quantiles", "1.5"), ("--quantiles", "0.5,,0.9"), ("--quantiles", "-1"),
                     ("--quantiles", ",".join(["0.5"] * 17)), ("--format", "xml"),
                     ("--status", "1000")):
        p = tvtest.run(["summary", "--server", addr, "--from", "0", opt, val])
        assert p.returncode == 2, (opt, val, p.returncode, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1, (opt, val, p.stderr)
        assert val in p.stderr, (opt, val, p.stderr)


def test_damaged_block_is_skipped_and_reported(rng):
    with tvtest.Server() as srv:
        cl = tvtest.GrpcClient(srv.addr)
        try:
            good = [tvtest.trace_record(BASE + i, path="/g", latency_ns=1000 + i)
                    for i in range(50)]
            bad = [tvtest.trace_record(BASE + i, path="/b", latency_ns=5) for i in range(20)]
            cl.write_segment(1, [(0xA1, good)])
            cl.write_segment(2, [(0xA2, bad)])
            path = tvtest.block_path(srv.data_dir, 0xA2)
            with open(path, "r+b") as f:
                f.seek(os.path.getsize(path) - 1)
                b = f.read(1)[0]
                f.seek(os.path.getsize(path) - 1)
                f.write(bytes([b ^ 1]))
            pb = cl.pb
            got = cl.summary(pb.SummaryRequest(from_ns=0, to_ns=BASE * 2,
                                               by=pb.GROUP_BY_PATH), timeout=30)
            assert [g.key for g in got.groups] == ["/g"], got.groups
            check_group("damaged", got.groups[0], good, DEFAULT_Q)
            assert [s.block_id for s in got.skipped] == [0xA2], got.skipped
            p = tvtest.run(["summary", "--server", srv.addr, "--from", "0", "--to",
                            str(BASE * 2), "--by", "path"])
            assert p.returncode == 0, (p.returncode, p.stderr)  # quarantined: gone now
            cl.write_segment(3, [(0xA3, bad)])
            path = tvtest.block_path(srv.data_dir, 0xA3)
            with open(path, "r+b") as f:
                f.seek(os.path.getsize(path) - 1)
                b = f.read(1)[0]
                f.seek(os.path.getsize(path) - 1)
                f.write(bytes([b ^ 1]))
            p = tvtest.run(["summary", "--server", srv.addr, "--from", "0", "--to",
                            str(BASE * 2), "--by", "path", "--format", "jsonl"])
            assert p.returncode == 3, (p.returncode, p.stderr)
            assert "00000000000000a3" in p.stderr, p.stderr
            assert [json.loads(x)["key"] for x in p.stdout.splitlines()] == ["/g"], p.stdout
        finally:
            cl.close()
        rc = srv.stop()
        assert rc == 0, "tracevaultd exit status %d: %s" % (rc, srv.log()[-3000:])


def test_group_table_at_the_memory_limit_sends_new_keys_to_other():
    """A server at the smallest --query-memory-bytes (16M) and ~100k distinct paths: the
    groups created before the limit keep exact counts, every later new key is counted in
    other, nothing is lost (the counts add up to the records), groups_overflowed is set and
    the CLI warns."""
    with tvtest.Server(extra_args=["--query-memory-bytes", "16M"]) as srv:
        cl = tvtest.GrpcClient(srv.addr, timeout_s=120)
        try:
            n = 100_000
            hot = ["/hot/%d" % i for i in range(5)]
            recs = [tvtest.trace_record(BASE + i, path=hot[i // 10 % 5] if i % 10 == 0 else
                                        "/u/%d" % i, latency_ns=1000 + i) for i in range(n)]
            for b in range(0, n, 20_000):
                cl.write_segment(0xC0 + b // 20_000, [(0xC000 + b, recs[b:b + 20_000])])
            pb = cl.pb
            got = cl.summary(pb.SummaryRequest(from_ns=0, to_ns=BASE * 2, by=pb.GROUP_BY_PATH,
                                               max_groups=MAX_GROUPS), timeout=120)
            assert got.groups_overflowed, (got.groups_total, len(got.groups))
            assert got.records == n, got.records
            assert 1000 < len(got.groups) < n - 1000, len(got.groups)
            assert got.groups_total == len(got.groups), (got.groups_total, len(got.groups))
            assert sum(g.count for g in got.groups) + got.other.count == n
            ref = {}
            for r in recs:
                ref.setdefault(r.path, []).append(r)
            for g in got.groups:
                check_group("overflow", g, ref[g.key], DEFAULT_Q)
            assert [g.key for g in got.groups[:5]] == sorted(hot), got.groups[:5]
            p = tvtest.run(["summary", "--server", srv.addr, "--from", "0", "--to",
                            str(BASE * 2), "--by", "path", "--top", "3"], timeout=120)
            assert p.returncode == 0, p.stderr
            assert "memory limit (--query-memory-bytes)" in p.stderr, p.stderr
        finally:
            cl.close()
        rc = srv.stop()
        assert rc == 0, "tracevaultd exit status %d: %s" % (rc, srv.log()[-3000:])


def main():
    seed = int(os.environ.get("TV_SEED", random.randrange(2**32)))
    print("seed %d (TV_SEED=%d reruns it)" % (seed, seed))
    rng = random.Random(seed)
    deadline = time.monotonic() + TIME_BUDGET_S
    with tvtest.Server() as a, tvtest.Server() as b, tvtest.Server() as u:
        servers = {"A": a, "B": b, "U": u}
        clients = {k: tvtest.GrpcClient(s.addr) for k, s in servers.items()}
        try:
            records = write_archive([clients["A"], clients["B"]], clients["U"], rng)
            print("ok wrote %d records" % len(records))
            test_grpc_rounds(clients, rng, records, deadline)
            print("ok %d grpc rounds" % ROUNDS_GRPC)
            test_two_servers_merge_as_their_union(clients, rng, records, deadline)
            print("ok %d merge rounds" % ROUNDS_MERGE)
            test_cli_rounds(servers, rng, records, deadline)
            print("ok %d cli rounds" % ROUNDS_CLI)
            test_invalid_requests(clients)
            print("ok invalid requests")
            test_usage_errors(servers)
            print("ok usage errors")
            test_damaged_block_is_skipped_and_reported(rng)
            print("ok damaged block")
            test_group_table_at_the_memory_limit_sends_new_keys_to_other()
            print("ok memory limit")
            for k, s in servers.items():  # a clean exit: no leak (ASan builds), no crash
                rc = s.stop()
                assert rc == 0, "tracevaultd %s exit status %d: %s" % (k, rc, s.log()[-3000:])
        except BaseException:
            for k, s in servers.items():
                if s.proc.poll() is not None or (time.sleep(1) or s.proc.poll() is not None):
                    print("tracevaultd %s exited %d: %s" % (k, s.proc.returncode, s.log()))
            raise
        finally:
            for c in clients.values():
                c.close()


if __name__ == "__main__":
    main()

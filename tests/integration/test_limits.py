"""Every limit of both binaries at both edges: the smallest and largest accepted values are
shown to be accepted (the run goes on to its next step: the client to reach its server, which
is refused, exit 1 naming it; tracevaultd to listen), one below and one above are usage errors
(exit 2, one stderr line naming the option and the owning module's bound). The bounds come from the table below, which
must agree with the --help texts (checked too): one owner per limit, one statement of it."""
import os
import sys
import tempfile
import re
import shutil
import subprocess

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402

UNREACHABLE = "127.0.0.1:1"  # nothing listens on port 1: connect is refused
REFUSED = "tracevault: cannot reach server %s: connection refused" % UNREACHABLE
K, M, G = 1 << 10, 1 << 20, 1 << 30
DAY_MS = 24 * 3600 * 1000
INT_MAX, LLONG_MAX = 2**31 - 1, 2**63 - 1

# (command, option, min, max, the bound the message and --help state, extra args, formatter)
# the extra args make the accepted edges valid on the other options' terms (two blocks in the
# cache, a chunk inside the message)
SIZE = str


def ms(v):
    return "%dms" % v


# the --metrics-* bounds of capture go with --metrics-addr (common/metrics_http.h)
METRICS = ["--metrics-addr", "127.0.0.1:0"]

LIMITS = [
    ("capture", "--block-bytes", K, 32 * M, "1K to 32M", [], SIZE),
    ("capture", "--cache-bytes", 2 * K, 1024 * G, "2K to 1024G", ["--block-bytes", "1K"], SIZE),
    ("capture", "--chunk-bytes", 1, G - 64, "1 to 1073741760", ["--max-message-bytes", "1G"],
     SIZE),
    ("capture", "--window-bytes", 1, 1024 * G, "1 to 1024G", [], SIZE),
    ("capture", "--max-message-bytes", 64 * K, G, "64K to 1G", [], SIZE),
    ("capture", "--payload-bytes", 1, 32 * K, "1 to 32K", [], SIZE),
    ("capture", "--ring-bytes", 4 * K, G, "a power of two, 4K to 1G", [], SIZE),
    ("capture", "--block-age", 1, DAY_MS, "1ms to 24h", [], ms),
    ("capture", "--block-age-ms", 1, DAY_MS, "1 to 86400000", [], str),
    ("capture", "--backpressure-ms", 1, DAY_MS, "1 to 86400000", [], str),
    ("capture", "--duration", 1, 365 * DAY_MS, "1ms to 365d", [], ms),
    ("capture", "--pid", 1, INT_MAX, "1 to 2147483647", [], str),
    ("capture", "--port", 1, 65535, "1 to 65535", [], str),
    ("capture", "--ready-fd", 0, INT_MAX, "0 to 2147483647", [], str),
    ("capture", "--test-corrupt-chunk", 1, LLONG_MAX, "1 to 9223372036854775807", [], str),
    ("put", "--test-corrupt-chunk", 1, LLONG_MAX, "1 to 9223372036854775807", [], str),
    ("query", "--limit", 0, LLONG_MAX, "0 to 9223372036854775807", [], str),
    ("put", "--chunk-bytes", 1, G - 64, "1 to 1073741760", ["--max-message-bytes", "1G"], SIZE),
    ("put", "--window-bytes", 1, 1024 * G, "1 to 1024G", [], SIZE),
    ("put", "--max-message-bytes", 64 * K, G, "64K to 1G", [], SIZE),
    ("query", "--max-message-bytes", 4 * M, G, "4M to 1G", [], SIZE),
    # the metrics port's connection bounds (common/metrics_http.h; tracevaultd's --http-*)
    ("capture", "--metrics-max-connections", 4, 1024, "4 to 1024", METRICS, str),
    ("capture", "--metrics-max-connections-per-ip", 0, 1024, "0 to 1024", METRICS, str),
    ("capture", "--metrics-request-timeout", 1000, 3600 * 1000, "1s to 1h", METRICS, ms),
    ("capture", "--metrics-idle-timeout", 1000, 3600 * 1000, "1s to 1h, a multiple of 1s",
     METRICS, ms),
]
# --comm and --interface bound a length: (min, max) bytes; --interface needs sockfilter
COMM = (1, 15, "1 to 15 bytes")
STRINGS = [("--comm", []), ("--interface", ["--mode", "sockfilter"])]


def argv(cmd, args, good_file):
    if cmd == "capture":
        return ["capture", "--server", UNREACHABLE] + args
    if cmd == "put":
        return ["put", "--server", UNREACHABLE] + args + [good_file]
    return ["query", "--server", UNREACHABLE, "--from", "-1m"] + args


def accepted(args):
    p = tvtest.run(args, timeout=60)
    assert p.returncode == 1 and p.stderr.strip() == REFUSED, \
        "want the run to go on to the server (exit 1, %r), got exit %d: %r  [%s]" % (
            REFUSED, p.returncode, p.stderr, " ".join(args))


def rejected(args, option, bound):
    p = tvtest.run(args, timeout=60)
    lines = p.stderr.splitlines()
    assert p.returncode == 2 and len(lines) == 1, (args, p.returncode, p.stderr)
    want = "tracevault: invalid %s: '" % option
    assert lines[0].startswith(want), (args, lines)
    assert lines[0].endswith("(%s)" % bound) or ("(%s, " % bound) in lines[0], (args, lines)


def check_client(good_file):
    helps = {cmd: tvtest.run([cmd, "--help"], check=True).stdout
             for cmd in ("capture", "put", "query")}
    for cmd, option, lo, hi, bound, extra, fmt in LIMITS:
        accepted(argv(cmd, extra + [option, fmt(lo)], good_file))
        accepted(argv(cmd, extra + [option, fmt(hi)], good_file))
        rejected(argv(cmd, extra + [option, fmt(lo - 1)], good_file), option, bound)
        rejected(argv(cmd, extra + [option, fmt(hi + 1)], good_file), option, bound)
        # what --help says is the bound the CLI applies
        assert bound in helps[cmd], \
            "%s --help does not state %s's bound %r" % (cmd, option, bound)
        print("ok %-8s %-20s [%s, %s] %s" % (cmd, option, fmt(lo), fmt(hi), bound))
    lo, hi, bound = COMM
    for option, extra in STRINGS:
        accepted(argv("capture", extra + [option, "a" * lo], good_file))
        accepted(argv("capture", extra + [option, "a" * hi], good_file))
        rejected(argv("capture", extra + [option, "a" * (lo - 1)], good_file), option, bound)
        rejected(argv("capture", extra + [option, "a" * (hi + 1)], good_file), option, bound)
        print("ok capture  %-20s [%d, %d] bytes" % (option, lo, hi))
    assert "1 to 15 bytes" in helps["capture"]
    # --duration in seconds, its plain form: the same edges, 0.001 and 365 days
    accepted(argv("capture", ["--duration", "0.001"], good_file))
    accepted(argv("capture", ["--duration", str(365 * 24 * 3600)], good_file))
    rejected(argv("capture", ["--duration", "0.000"], good_file), "--duration", "1ms to 365d")
    rejected(argv("capture", ["--duration", str(365 * 24 * 3600 + 1)], good_file),
             "--duration", "1ms to 365d")
    print("ok capture  --duration in seconds [0.001, 31536000]")
    # --ring-bytes with --mode sockfilter: capture's bound for the packet ring, 1M to 1G
    accepted(argv("capture", ["--mode", "sockfilter", "--ring-bytes", "1M"], good_file))
    accepted(argv("capture", ["--mode", "sockfilter", "--ring-bytes", "1G"], good_file))
    # 512K passes the table's bound and fails the mode's; 2G fails the table's (both 1G)
    for v, bound in (("512K", "(a power of two, 1M to 1G)"), ("2G", "(a power of two, 4K to 1G)")):
        p = tvtest.run(argv("capture", ["--mode", "sockfilter", "--ring-bytes", v], good_file))
        assert p.returncode == 2 and len(p.stderr.splitlines()) == 1 and \
            p.stderr.startswith("tracevault: ") and p.stderr.rstrip().endswith(bound), \
            (v, p.returncode, p.stderr)
    assert "a power of two, 1M to 1G" in helps["capture"]
    print("ok capture  --mode sockfilter --ring-bytes [1M, 1G]")
    # sizes take suffixes; a power of two inside the ring bounds is needed, not only the range
    accepted(argv("capture", ["--ring-bytes", "64K"], good_file))
    rejected(argv("capture", ["--ring-bytes", "48K"], good_file), "--ring-bytes",
             "a power of two, 4K to 1G")
    # the case: every value out of --block-bytes gives the same bound and exit 2
    for v in ("64M", "200M", "33M"):
        rejected(argv("capture", ["--block-bytes", v], good_file), "--block-bytes", "1K to 32M")
    print("ok ring power of two, --block-bytes 64M/200M/33M all '(1K to 32M)'")
    # libmicrohttpd counts the idle timeout in whole seconds: a fraction inside the bound is
    # refused too; the --metrics-* options need --metrics-addr
    accepted(argv("capture", METRICS + ["--metrics-idle-timeout", "2s"], good_file))
    for v in ("1500ms", "1.5s"):
        rejected(argv("capture", METRICS + ["--metrics-idle-timeout", v], good_file),
                 "--metrics-idle-timeout", "1s to 1h, a multiple of 1s")
    p = tvtest.run(argv("capture", ["--metrics-request-timeout", "2s"], good_file))
    assert p.returncode == 2 and p.stderr == (
        "tracevault: --metrics-max-connections, --metrics-max-connections-per-ip, "
        "--metrics-request-timeout and --metrics-idle-timeout need --metrics-addr\n"), \
        (p.returncode, p.stderr)
    print("ok capture --metrics-idle-timeout whole seconds; --metrics-* need --metrics-addr")


README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "README.md")


def synopsis(text, start):
    """The options of the usage lines that begin at start: its line and the lines after it
    that go on with "[" (what follows is description)."""
    lines = text[text.index(start):].splitlines()
    block = [lines[0]]
    for line in lines[1:]:
        if not line.strip().startswith("["):
            break
        block.append(line)
    return sorted(set(re.findall(r"--[a-z][a-z-]*", "\n".join(block))))


def check_readme():
    """README's CLI section states what --help does: the same options in each synopsis, and
    every bound of the table above."""
    with open(README) as f:
        readme = f.read()
    for cmd in ("capture", "put", "query"):
        helped = synopsis(tvtest.run([cmd, "--help"], check=True).stdout, "Usage: tracevault")
        documented = synopsis(readme, "tracevault %s [--server HOST:PORT" % cmd)
        assert helped == documented, (cmd, helped, documented)
    p = subprocess.run([tvtest.binary("tracevaultd"), "--help"], capture_output=True, text=True,
                       timeout=30)
    assert synopsis(p.stdout, "Usage: tracevaultd") == synopsis(readme, "tracevaultd --data DIR"), \
        p.stdout
    # every option tracevaultd takes is in its synopsis, but those of the other two forms and
    # --help/--version (the OTLP limits and --metrics-addr were missing once)
    listed = set(synopsis(p.stdout, "Usage: tracevaultd")) | {
        "--rebuild-catalog", "--scrub", "--help", "--version",
        "--test-retention-unlink-delay-ms"}
    taken = set(re.findall(r"^  (--[a-z][a-z-]*)", p.stdout, re.M))
    assert taken <= listed, "tracevaultd's synopsis lacks %s" % sorted(taken - listed)
    for option, bound in SERVER_BOUNDS:
        assert bound in p.stdout, (option, bound)
    bounds = [(option, bound) for cmd, option, lo, hi, bound, extra, fmt in LIMITS] + \
        [(option, bound) for option, lo, hi, bound in SERVER_LIMITS + SERVER_DURATIONS] + \
        SERVER_BOUNDS
    for option, bound in bounds:
        row = [line for line in readme.splitlines() if line.startswith("| `%s`" % option) or
               ("`%s`" % option in line and line.startswith("| `"))]
        # an option whose bound differs by command has a row per command
        assert any(bound in r for r in row), \
            "README's table lacks %s's bound %r" % (option, bound)
    print("ok README: synopses as in --help, every bound in its table")


# tracevaultd's counts and times: (option, min, max, the bound its message and --help state)
SERVER_LIMITS = [
    ("--max-write-streams", 1, 65536, "1 to 65536"),      # server/rpc_server.h
    ("--max-query-streams", 1, 65536, "1 to 65536"),
    ("--max-streams-per-connection", 1, 65536, "1 to 65536"),
    ("--max-write-streams-per-peer", 1, 65536, "1 to 65536"),  # server/peers.h
    ("--max-query-streams-per-peer", 1, 65536, "1 to 65536"),
    ("--max-open-files", 1, 1048576, "1 to 1048576"),     # server/store_uring.h
    ("--idle-timeout-ms", 100, 86400000, "100 to 86400000"),
    ("--http-max-spans", 1, 10000000, "1 to 10000000"),    # server/http_api.h
    ("--http-max-traces", 1, 100000, "1 to 100000"),
    ("--http-timeout-ms", 100, 600000, "100 to 600000"),
    ("--http-max-connections", 4, 1024, "4 to 1024"),     # common/metrics_http.h
    ("--http-max-connections-per-ip", 0, 1024, "0 to 1024"),
]
# tracevaultd's durations in ms: (option, min, max, the bound its message and --help state)
SERVER_DURATIONS = [
    ("--http-request-timeout", 1000, 3600 * 1000, "1s to 1h"),    # common/metrics_http.h
    ("--http-idle-timeout", 1000, 3600 * 1000, "1s to 1h, a multiple of 1s"),
]
# what an option needs beside it to be taken (the --http-* options go with --http-addr)
NEEDS = {o: ["--http-addr", "127.0.0.1:0"] for o in
         ("--http-max-spans", "--http-max-traces", "--http-timeout-ms",
          "--http-max-connections", "--http-max-connections-per-ip", "--http-request-timeout",
          "--http-idle-timeout")}
# bounds only checked against README's table and --help (sizes: the edges are the
# --max-message-bytes kind, checked above for the shared parser)
SERVER_BOUNDS = [
    ("--http-max-response-bytes", "4K to 1G"),              # server/http_api.h
]


def server_accepts(option, value):
    """The value passes option parsing: tracevaultd listens, or (a limit too large for this
    machine's RLIMIT_NOFILE) goes on to plan its descriptors and exits 1 saying why, with the
    value kept as given."""
    srv = tvtest.Server(extra_args=NEEDS.get(option, []) + [option, str(value)])
    try:
        try:
            srv.start()
            return "listening"
        except AssertionError:
            pass
        err = srv.log()
        # the failure is the last line; start-up's recovery summary may come before it
        last = err.splitlines()[-1] if err else ""
        assert srv.proc.wait(20) == 1 and last.startswith(
            "tracevaultd: descriptors: RLIMIT_NOFILE ") and "%s %s" % (option, value) in last, \
            (option, value, srv.proc.returncode, err)
        return "too many for RLIMIT_NOFILE"
    finally:
        srv.cleanup()


def check_server_limits(helped):
    d = tempfile.mkdtemp(prefix="tv-limits-")
    try:
        for option, lo, hi, bound in SERVER_LIMITS + SERVER_DURATIONS:
            fmt = ms if (option, lo, hi, bound) in SERVER_DURATIONS else str
            outcomes = [server_accepts(option, fmt(v)) for v in (lo, hi)]
            bad = [fmt(lo - 1), fmt(hi + 1), "12x", "-1", "1K", ""]
            if fmt is ms:  # a duration needs its unit (common/duration.h): no bare number
                bad += [str(lo)]
            if option == "--http-idle-timeout":  # whole seconds: libmicrohttpd's unit
                bad += ["1500ms"]
            for v in bad:
                p = subprocess.run(
                    [tvtest.binary("tracevaultd"), "--data", d, "--listen", "127.0.0.1:0"] +
                    NEEDS.get(option, []) + [option, str(v)],
                    capture_output=True, text=True, timeout=30)
                assert p.returncode == 2 and p.stderr == (
                    "tracevaultd: invalid %s: '%s' (%s)\n" % (option, v, bound)), \
                    (option, v, p.returncode, p.stderr)
            assert bound in helped, "tracevaultd --help does not state %s's bound %r" % (
                option, bound)
            print("ok tracevaultd %-30s [%s, %s] %s (%s)" % (option, fmt(lo), fmt(hi), bound,
                                                              ", ".join(outcomes)))
    finally:
        shutil.rmtree(d, ignore_errors=True)


def check_server():
    # tracevaultd takes the same sizes and the same message bounds as the client
    for v in ("64K", "65536", "16M", "1G", str(G)):
        srv = tvtest.Server(extra_args=["--max-message-bytes", v])
        try:
            srv.start()  # proceeds: listening on ...
        finally:
            srv.cleanup()
    d = tempfile.mkdtemp(prefix="tv-limits-")
    try:
        for v in (str(64 * K - 1), str(G + 1), "0", "12x", "-1", "16MB"):
            p = subprocess.run(
                [tvtest.binary("tracevaultd"), "--data", d, "--listen", "127.0.0.1:0",
                 "--max-message-bytes", v], capture_output=True, text=True, timeout=30)
            assert p.returncode == 2 and p.stderr == (
                "tracevaultd: invalid --max-message-bytes: '%s' (64K to 1G)\n" % v), \
                (v, p.returncode, p.stderr)
        p = subprocess.run([tvtest.binary("tracevaultd"), "--help"],
                                         capture_output=True, text=True, timeout=30)
        assert "64K to 1G" in p.stdout, p.stdout
    finally:
        shutil.rmtree(d, ignore_errors=True)
    print("ok tracevaultd --max-message-bytes [64K, 1G], suffixes accepted")
    check_server_limits(p.stdout)
    # the HTTP port's bounds go with --http-addr, as capture's --metrics-* with --metrics-addr
    for option, value in (("--http-max-connections", "8"), ("--http-max-connections-per-ip", "0"),
                          ("--http-request-timeout", "2s"), ("--http-idle-timeout", "2s")):
        p = subprocess.run([tvtest.binary("tracevaultd"), "--data", "/nonexistent", option,
                            value], capture_output=True, text=True, timeout=30)
        assert p.returncode == 2 and p.stderr == (
            "tracevaultd: --service-name and --http-* options need --http-addr\n"), \
            (option, p.returncode, p.stderr)
    print("ok tracevaultd --http-max-connections* and --http-*-timeout need --http-addr")
    # the query memory limits (server/query.h): bounds, suffixes, and total >= per query
    for args in (["--query-memory-bytes", "16M"],
                 ["--query-memory-bytes", "16M", "--query-total-memory-bytes", "16777216"],
                 ["--query-memory-bytes", "1024G", "--query-total-memory-bytes", "1024G"]):
        srv = tvtest.Server(extra_args=args)
        try:
            srv.start()
        finally:
            srv.cleanup()
    d = tempfile.mkdtemp(prefix="tv-limits-")
    try:
        for option in ("--query-memory-bytes", "--query-total-memory-bytes"):
            for v in (str(16 * M - 1), "1025G", "0", "16MB"):
                p = subprocess.run(
                    [tvtest.binary("tracevaultd"), "--data", d, "--listen", "127.0.0.1:0",
                     option, v], capture_output=True, text=True, timeout=30)
                assert p.returncode == 2 and p.stderr == (
                    "tracevaultd: invalid %s: '%s' (16M to 1024G)\n" % (option, v)), \
                    (option, v, p.returncode, p.stderr)
        p = subprocess.run([tvtest.binary("tracevaultd"), "--data", d, "--query-memory-bytes",
                            "2G"], capture_output=True, text=True, timeout=30)
        assert p.returncode == 2 and p.stderr == (
            "tracevaultd: --query-total-memory-bytes 1G is below --query-memory-bytes 2G: one "
            "query could never run\n"), (p.returncode, p.stderr)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    print("ok tracevaultd --query-memory-bytes, --query-total-memory-bytes [16M, 1024G]")


def check_read_floor(tmp):
    """query/summary's --max-message-bytes floor: tracevaultd's batches (server/query.h) do
    exceed 1M (a gRPC client limited to 1M fails RESOURCE_EXHAUSTED mid-way, as a query with
    --max-message-bytes 64K or 256K did), and the floor, 4M, reads the whole window."""
    def define(path, name):
        with open(os.path.join(os.path.dirname(README), path)) as f:
            return re.search(r"#define %s \((\d+)u << (\d+)\)" % name, f.read()).groups()
    assert define("server/query.h", "TV_QUERY_BATCH_BYTES") == \
        define("client/cli/cli.h", "TV_CLI_SERVER_BATCH_BYTES"), "batch bytes drifted apart"
    grpc, pb = tvtest.grpc_modules()
    base = 1767225600 * 10**9
    n = 400
    big = os.path.join(tmp, "big.jsonl")
    with open(big, "w") as f:  # 400 records of ~20 KB: 8 MB, batches full at 1M + a record
        for i in range(n):
            f.write('{"ts_ns": %d, "path": "/%s"}\n' % (base + i, "p%05d" % i * 3300))
    with tvtest.Server() as srv:
        tvtest.run(["put", "--server", srv.addr, big], check=True, timeout=120)
        ch = grpc.insecure_channel(srv.addr, options=[("grpc.max_receive_message_length",
                                                       1 << 20)])
        call = ch.unary_stream("/tracevault.v1.TraceStore/Query",
                               request_serializer=pb.QueryRequest.SerializeToString,
                               response_deserializer=pb.QueryResponse.FromString)
        try:
            list(call(pb.QueryRequest(from_ns=base, to_ns=base + n), timeout=60))
            raise AssertionError("no batch above 1M: the floor is not needed")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e
        finally:
            ch.close()
        p = tvtest.run(["query", "--server", srv.addr, "--from", str(base), "--to",
                        str(base + n), "--max-message-bytes", "4M"], timeout=120)
        assert p.returncode == 0 and len(p.stdout.splitlines()) == n, (p.returncode, p.stderr)
        p = tvtest.run(["summary", "--server", srv.addr, "--from", str(base), "--to",
                        str(base + n), "--max-message-bytes", "4M", "--format", "jsonl"],
                       timeout=120)
        assert p.returncode == 0 and '"count":%d' % n in p.stdout.replace(" ", ""), \
            (p.returncode, p.stdout[:300], p.stderr)
    p = tvtest.run(["summary", "--server", UNREACHABLE, "--from", "-1m",
                    "--max-message-bytes", "1M"])
    assert p.returncode == 2 and p.stderr == (
        "tracevault: invalid --max-message-bytes: '1M' (4M to 1G, a query batch holds up to "
        "1M of records plus one record of up to 1M)\n"), p
    print("ok query/summary --max-message-bytes 4M reads batches a 1M limit cannot")


def main():
    tmp = tempfile.mkdtemp(prefix="tv-limits-")
    try:
        good = os.path.join(tmp, "good.jsonl")
        with open(good, "w") as f:
            f.write('{"ts_ns": 1767225600000000000, "path": "/x"}\n')
        check_client(good)
        check_read_floor(tmp)
        check_server()
        check_readme()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("PASS")


if __name__ == "__main__":
    main()

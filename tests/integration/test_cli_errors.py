"""Every bad-input case of the tracevault CLI gives its exit code and one precise message:
usage errors exit 2 with one line `tracevault: <reason>`, runtime failures exit 1 naming what
failed, and a rejected or failed put leaves nothing on the (real) server."""
import json
import os
import random
import shutil
import socket
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402

UNREACHABLE = "127.0.0.1:1"  # port 1 on loopback: nothing listens, connect is refused
BASE_NS = 1767225600 * 10**9


def expect(args, rc, message, exact=False):
    p = tvtest.run(args, timeout=60)
    err_lines = p.stderr.splitlines()
    ok = p.returncode == rc and len(err_lines) == 1 and p.stdout == ""
    if ok:
        line = err_lines[0]
        ok = line == message if exact else (line.startswith("tracevault: ") and message in line)
    if not ok:
        raise AssertionError("tracevault %s: want exit %d and one stderr line %s %r, got exit %d"
                             "\nstdout: %r\nstderr: %r" % (" ".join(args), rc,
                                                           "==" if exact else "containing",
                                                           message, p.returncode, p.stdout[:300],
                                                           p.stderr))
    print("ok exit %d  %-60s %s" % (rc, " ".join(args)[:60], err_lines[0]))


def usage_cases(good_file):
    q = ["query", "--server", UNREACHABLE]
    return [
        ([], "missing command"),
        (["frobnicate"], "tracevault: unknown command 'frobnicate'"),
        (["--bogus"], "unknown option '--bogus'"),
        (["query", "--bogus", "--server", UNREACHABLE, "--from", "-1m"],
         "tracevault: unknown option '--bogus'"),
        (["put", "-x", "--server", UNREACHABLE, good_file], "tracevault: unknown option '-x'"),
        # an unknown letter inside a group of short options is named, not the option before it
        (["query", "--stats", "-zF", "table"], "tracevault: unknown option '-z'"),
        (["query", "--server=127.0.0.1:1", "-zn", "1"], "tracevault: unknown option '-z'"),
        (["capture", "--headers", "-xd", "1"], "tracevault: unknown option '-x'"),
        (["query", "--server"], "tracevault: option '--server' needs a value"),
        # a flag given a value: the option exists, it takes none
        (["capture", "--server", UNREACHABLE, "--headers=1"],
         "tracevault: option '--headers' takes no value"),
        (["query", "--server", UNREACHABLE, "--from", "-1m", "--stats=yes"],
         "tracevault: option '--stats' takes no value"),
        (["put", "--server", UNREACHABLE], "tracevault: put: missing FILE (or - for stdin)"),
        (q + ["--from", "banana"],
         "tracevault: invalid --from: 'banana': expected RFC 3339 (2026-03-01T12:00:00Z), "
         "unix ns, now, or -N with ms, s, m, h, d"),
        (q + ["--from", "-1m", "--to", "2026-13-01T00:00:00Z"],
         "tracevault: invalid --to: '2026-13-01T00:00:00Z': month 13: months are 01 to 12"),
        (q + ["--from", "-15x"],
         "tracevault: invalid --from: '-15x': unknown unit 'x': units are ms, s, m, h, d"),
        (q + ["--from", "2024-02-30T00:00:00Z"],
         "tracevault: invalid --from: '2024-02-30T00:00:00Z': no such day: "
         "February 2024 has 29 days"),
        (q + ["--from", "now", "--to", "-1h"], "tracevault: --from (now) is after --to (-1h)"),
        (q + ["--from", "2000", "--to", "1000"], "tracevault: --from (2000) is after --to (1000)"),
        (q + ["--from", "-1m", "--format", "xml"],
         "tracevault: invalid --format: 'xml' (jsonl, table, csv or otlp-json)"),
        (q + ["--from", "-1m", "--limit", "-3"],
         "tracevault: invalid --limit: '-3' (0 to 9223372036854775807, 0: all)"),
        (q + ["--from", "-1m", "extra"], "tracevault: query: unexpected argument 'extra'"),
        (["capture", "--server", UNREACHABLE, "--pid", "abc"],
         "tracevault: invalid --pid: 'abc' (1 to 2147483647)"),
        (["capture", "--server", UNREACHABLE, "--pid", "0"],
         "tracevault: invalid --pid: '0' (1 to 2147483647)"),
        (["capture", "--server", UNREACHABLE, "--port", "65536"],
         "tracevault: invalid --port: '65536' (1 to 65535)"),
        (["capture", "--server", UNREACHABLE, "--ready-fd", "-1"],
         "tracevault: invalid --ready-fd: '-1' (0 to 2147483647)"),
        (["capture", "--server", UNREACHABLE, "--mode", "sockfilter", "--interface", ""],
         "tracevault: invalid --interface: '' (1 to 15 bytes)"),
        (["capture", "--server", UNREACHABLE, "--test-corrupt-chunk", "0"],
         "tracevault: invalid --test-corrupt-chunk: '0' (1 to 9223372036854775807)"),
        (q + ["--from", "-1m", "--limit", "-1"],
         "tracevault: invalid --limit: '-1' (0 to 9223372036854775807, 0: all)"),
        # integers are digits only: no space, no sign, no base prefix
        (["capture", "--server", UNREACHABLE, "--pid", " 5"],
         "tracevault: invalid --pid: ' 5' (1 to 2147483647)"),
        (["capture", "--server", UNREACHABLE, "--pid", "+5"],
         "tracevault: invalid --pid: '+5' (1 to 2147483647)"),
        (["capture", "--server", UNREACHABLE, "--port", "0x50"],
         "tracevault: invalid --port: '0x50' (1 to 65535)"),
        (q + ["--from", "-1m", "--limit", " 1"],
         "tracevault: invalid --limit: ' 1' (0 to 9223372036854775807, 0: all)"),
        (q + ["--from", "-1m", "--limit", "+1"],
         "tracevault: invalid --limit: '+1' (0 to 9223372036854775807, 0: all)"),
        (q + ["--from", "-1m", "--limit", "18446744073709551616"],
         "tracevault: invalid --limit: '18446744073709551616' (0 to 9223372036854775807, "
         "0: all)"),
        # --duration: capture's bound, the duration syntax (a bare number is seconds), no
        # sign, exponent, hex float, nan; values past 64 bits are refused, not wrapped
        ] + [(["capture", "--server", UNREACHABLE, "--duration", v],
              "tracevault: invalid --duration: '%s' (1ms to 365d, e.g. 30 or 0.5 (seconds), "
              "250ms, 2m, 1d)" % v)
             for v in ("-1", "nan", "inf", "0", "0.0", "1e11", "18446744073", "1e300",
                       "18446744073709551616", "0x1p-3", "1e-9", "0.0005", "1.5ms", " 3",
                       "+3", "3 s", "3S", "1w", ".5", "1.", "366d", "31536001")] + [
        (["capture", "--server", UNREACHABLE, "--sample-ratio", "0"],
         "tracevault: invalid --sample-ratio: '0' (a decimal, 0 < R <= 1)"),
        (["capture", "--server", UNREACHABLE, "--sample-ratio", "1.5"],
         "tracevault: invalid --sample-ratio: '1.5' (a decimal, 0 < R <= 1)"),
        # ratios are plain decimals: strtod's spaces, signs, hex and exponents are refused
        ] + [(["capture", "--server", UNREACHABLE, "--sample-ratio", v],
              "tracevault: invalid --sample-ratio: '%s' (a decimal, 0 < R <= 1)" % v)
             for v in (" 0.5", "+0.5", "0x0.8", "5e-1", ".5", "0.5 ", "inf")] + [
        # one --server rule for every command: a usage error, the same line
        (["capture", "--server", ""],
         "tracevault: invalid --server: '' (HOST:PORT[,HOST:PORT...], no empty entry)"),
        (["put", "--server", "a:1,,b:2", good_file],
         "tracevault: invalid --server: 'a:1,,b:2' (HOST:PORT[,HOST:PORT...], no empty entry)"),
        (["query", "--server", "", "--from", "-1m"],
         "tracevault: invalid --server: '' (HOST:PORT[,HOST:PORT...], no empty entry)"),
        (["query", "--server", "a:1,,b:2", "--from", "-1m"],
         "tracevault: invalid --server: 'a:1,,b:2' (HOST:PORT[,HOST:PORT...], no empty entry)"),
        (["query", "--server", "a:1,", "--from", "-1m"],
         "tracevault: invalid --server: 'a:1,' (HOST:PORT[,HOST:PORT...], no empty entry)"),
        # a malformed entry is a usage error naming it, not gRPC's "transient failure"
        # (exit 1) after a connect attempt; an http(s):// URL gets a hint; a server listed
        # twice would double every record read (or written)
        ] + [([cmd, "--server", "127.0.0.1:1," + e] + rest,
              "tracevault: invalid --server: '%s' is not HOST:PORT (port 1 to 65535; an IPv6 "
              "address in brackets: [::1]:7070)" % e)
             for e in ("127.0.0.1", "127.0.0.1:99999", ":7070", "::1:7070", "127.0.0.1:0",
                       "garbage", "127.0.0.1:7070x", "[::1]7070")
             for cmd, rest in (("query", ["--from", "-1m"]), ("summary", ["--from", "-1m"]),
                               ("put", [good_file]))] + [
        (["query", "--server", e, "--from", "-1m"],
         "tracevault: invalid --server: '%s' is a URL, not HOST:PORT: drop the http:// or "
         "https:// (gRPC adds its own)" % e)
        for e in ("http://127.0.0.1:7070", "https://[::1]:7070")] + [
        (["query", "--server", "unix:", "--from", "-1m"],
         "tracevault: invalid --server: 'unix:' is a gRPC URI without its address"),
        (["summary", "--server", "127.0.0.1:1,[::1]:1,127.0.0.1:1", "--from", "-1m"],
         "tracevault: invalid --server: '127.0.0.1:1' is listed twice (every record would be "
         "read or written twice)"),
        (["put", "--server", "127.0.0.1:1,127.0.0.1:1", good_file],
         "tracevault: invalid --server: '127.0.0.1:1' is listed twice (every record would be "
         "read or written twice)"),
        # the sockfilter packet ring is whole 1M blocks: capture's bound for that mode
        (["capture", "--server", UNREACHABLE, "--mode", "sockfilter", "--ring-bytes", "4K"],
         "tracevault: --ring-bytes 4K is outside the bound of --mode sockfilter (a power of "
         "two, 1M to 1G)"),
        (["capture", "--server", UNREACHABLE, "--ring-bytes", "512K", "--mode", "sockfilter"],
         "tracevault: --ring-bytes 512K is outside the bound of --mode sockfilter (a power of "
         "two, 1M to 1G)"),
        # a chunk too large for the message: the sizes in the bounds' syntax and the largest
        # chunk that fits
        (["capture", "--server", UNREACHABLE, "--chunk-bytes", "67108864"],
         "tracevault: --chunk-bytes 64M does not fit in the default --max-message-bytes 16M "
         "(at most 16M - 64 = 16777152)"),
        (["put", "--server", UNREACHABLE, "--chunk-bytes", "1M", "--max-message-bytes", "1M",
          good_file],
         "tracevault: --chunk-bytes 1M does not fit in --max-message-bytes 1M "
         "(at most 1M - 64 = 1048512)"),
        (["capture", "--server", UNREACHABLE, "--mode", "pcap"],
         "tracevault: invalid --mode: 'pcap' (tracepoint or sockfilter)"),
        (["capture", "--server", UNREACHABLE, "--mode", "sockfilter", "--pid", "1"],
         "tracevault: --pid does not apply to --mode sockfilter (packets carry no process)"),
        (["capture", "--server", UNREACHABLE, "--mode", "sockfilter", "--comm", "nginx"],
         "tracevault: --comm does not apply to --mode sockfilter (packets carry no process)"),
        (["capture", "--server", UNREACHABLE, "--interface", "lo"],
         "tracevault: --interface needs --mode sockfilter"),
        (["put", "--server", UNREACHABLE, "--max-message-bytes", "10", good_file],
         "tracevault: invalid --max-message-bytes: '10' (64K to 1G)"),
        # put's cache must hold the block being sealed and one waiting for room
        (["put", "--server", UNREACHABLE, "--cache-bytes", "4M", good_file],
         "tracevault: --cache-bytes must hold at least two of put's blocks of 4M (at least 8M)"),
    ]


def check_help():
    for args in (["--help"], ["capture", "--help"], ["put", "--help"], ["query", "--help"]):
        p = tvtest.run(args)
        assert p.returncode == 0 and p.stderr == "", (args, p.returncode, p.stderr)
        assert p.stdout.startswith("Usage: tracevault"), p.stdout[:100]
        assert "Examples:" in p.stdout, p.stdout
    print("ok --help for every command")


def run_env(args, env_server):
    """tracevault args with TRACEVAULT_SERVER set to env_server (None: unset)."""
    import subprocess
    env = dict(os.environ)
    env.pop("TRACEVAULT_SERVER", None)
    if env_server is not None:
        env["TRACEVAULT_SERVER"] = env_server
    return subprocess.run([tvtest.binary("tracevault")] + args, capture_output=True, text=True,
                          timeout=60, env=env)


def check_version_and_default_server(good):
    """--version on both binaries; without --server the client uses TRACEVAULT_SERVER, else
    tracevaultd's default address; an empty or bad list from either says where it came from."""
    import re
    import subprocess
    for binary in ("tracevault", "tracevaultd"):
        p = subprocess.run([tvtest.binary(binary), "--version"], capture_output=True, text=True,
                           timeout=30)
        assert p.returncode == 0 and p.stderr == "" and \
            re.fullmatch(r"%s \d+\.\d+\.\d+\n" % binary, p.stdout), (binary, p)
    p = run_env(["--version", "x"], None)
    assert p.returncode == 2 and p.stderr == "tracevault: --version takes no arguments\n", p
    with tvtest.Server() as srv:
        p = run_env(["put", good], srv.addr)
        assert p.returncode == 0, p.stderr
        p = run_env(["query", "--from", "0", "--to", str(2**63)], srv.addr)
        assert p.returncode == 0 and len(p.stdout.splitlines()) == 5, (p.returncode, p.stderr)
        # --server wins over the environment
        p = run_env(["query", "--server", srv.addr, "--from", "0", "--to", str(2**63)],
                    UNREACHABLE)
        assert p.returncode == 0 and len(p.stdout.splitlines()) == 5, (p.returncode, p.stderr)
    p = run_env(["query", "--from", "-1m"], "a,,b")
    assert p.returncode == 2 and p.stderr == (
        "tracevault: invalid TRACEVAULT_SERVER: 'a,,b' (HOST:PORT[,HOST:PORT...], no empty "
        "entry)\n"), p
    p = run_env(["summary", "--from", "-1m"], "garbage")
    assert p.returncode == 2 and p.stderr == (
        "tracevault: invalid TRACEVAULT_SERVER: 'garbage' is not HOST:PORT (port 1 to 65535; "
        "an IPv6 address in brackets: [::1]:7070)\n"), p
    # a gRPC URI, as gRPC resolves it: not refused here, gRPC's word when nothing answers
    p = run_env(["query", "--from", "-1m"], "unix:/nonexistent/tracevault.sock")
    assert p.returncode == 1 and p.stderr == (
        "tracevault: cannot reach server unix:/nonexistent/tracevault.sock: transient "
        "failure (gRPC could not connect)\n"), p
    p = run_env(["query", "--from", "-1m"], UNREACHABLE)
    assert p.returncode == 1 and "cannot reach server 127.0.0.1:1" in p.stderr, p
    # neither: tracevaultd's default address (served or not on this machine)
    p = run_env(["query", "--stats", "--from", "-1m"], None)
    assert p.returncode == 0 or (p.returncode == 1 and "127.0.0.1:7070" in p.stderr), p
    # an empty TRACEVAULT_SERVER counts as unset (as `TRACEVAULT_SERVER= cmd` clears it in a
    # shell): the default address, as --help and README say
    p = run_env(["query", "--stats", "--from", "-1m"], "")
    assert p.returncode == 0 or (p.returncode == 1 and "127.0.0.1:7070" in p.stderr), p
    assert "TRACEVAULT_SERVER" not in p.stderr, p
    assert "an empty one counts as unset" in " ".join(run_env(["--help"], None).stdout.split())
    print("ok --version; TRACEVAULT_SERVER, then 127.0.0.1:7070, when --server is not given")


def write_lines(path, lines):
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def good_line(i):
    return json.dumps({"ts_ns": BASE_NS + i, "method": "GET", "path": "/%d" % i})


def everything(addr):
    p = tvtest.run(["query", "--server", addr, "--from", "0", "--to", str(2**63)], check=True)
    return p.stdout.splitlines()


def run_cases(tmp):
    good = os.path.join(tmp, "good.jsonl")
    write_lines(good, [good_line(i) for i in range(5)])

    check_help()
    check_version_and_default_server(good)
    for args, message in usage_cases(good):
        expect(args, 2, message, exact=message.startswith("tracevault: "))

    # runtime failures that need no server
    missing = os.path.join(tmp, "does-not-exist.jsonl")
    expect(["put", "--server", UNREACHABLE, missing], 1,
           "tracevault: open %s: No such file or directory" % missing, exact=True)
    expect(["put", "--server", UNREACHABLE, good], 1,
           "tracevault: cannot reach server 127.0.0.1:1: connection refused", exact=True)
    expect(["query", "--server", UNREACHABLE, "--from", "-1h"], 1,
           "tracevault: cannot reach server 127.0.0.1:1: connection refused", exact=True)

    # size suffixes K, M, G (KiB, MiB, GiB; "iB" optional) up to the 2^40 bound of
    # --cache-bytes and --window-bytes: accepted values get as far as the server (exit 1),
    # the others are usage errors. 1024G accepted and 1025G refused pin G to 2^30 bytes.
    refused = "tracevault: cannot reach server 127.0.0.1:1: connection refused"
    # a refusal names the bound of the module that owns the option
    for cmd, opt, bound, tail in (("capture", "--cache-bytes", "2K to 1024G", ["--duration", "1"]),
                                  ("put", "--window-bytes", "1 to 1024G", [good])):
        for v in ("1G", "1GiB", "1024G", "1048576M", str(2**40)):
            expect([cmd, "--server", UNREACHABLE, opt, v] + tail, 1, refused, exact=True)
        for v in ("1025G", "1048577M", str(2**40 + 1), "0", "1g", "1T", "1.5G", "G"):
            expect([cmd, "--server", UNREACHABLE, opt, v] + tail, 2,
                   "tracevault: invalid %s: '%s' (%s)" % (opt, v, bound), exact=True)
    # the sizes in the bounds' syntax, and the smallest cache the blocks need
    expect(["capture", "--server", UNREACHABLE, "--cache-bytes", "63M", "--block-bytes",
            "32M"], 2, "tracevault: --cache-bytes 63M must hold at least two blocks "
           "of --block-bytes 32M (at least 64M)", exact=True)
    expect(["capture", "--server", UNREACHABLE, "--cache-bytes", "7M"], 2,
           "tracevault: --cache-bytes 7M must hold at least two blocks of the default "
           "--block-bytes 4M (at least 8M)", exact=True)
    # every accepted form of --duration gets as far as the server
    for v in ("3", "0.5", "0.001", "1.500", "250ms", "30s", "1.5s", "2m", "1h", "1d", "365d",
              "31536000"):
        expect(["capture", "--server", UNREACHABLE, "--duration", v], 1, refused, exact=True)
    for v in ("0.25", "1", "1.0"):
        expect(["capture", "--server", UNREACHABLE, "--sample-ratio", v], 1, refused,
               exact=True)
    for v in ("1M", "2M", "1G"):
        expect(["capture", "--server", UNREACHABLE, "--mode", "sockfilter", "--ring-bytes", v],
               1, refused, exact=True)
    expect(["capture", "--server", UNREACHABLE, "--cache-bytes", "1G", "--block-bytes",
            "32M", "--duration", "1"], 1, refused, exact=True)

    # a port that accepts TCP and hangs up at once is not "connection refused"
    with socket.socket() as ls:
        ls.bind(("127.0.0.1", 0))
        ls.listen(16)
        ls.settimeout(30)
        closer_stop = threading.Event()

        def close_all():
            while not closer_stop.is_set():
                try:
                    ls.accept()[0].close()
                except OSError:
                    return

        t = threading.Thread(target=close_all, daemon=True)
        t.start()
        addr = "127.0.0.1:%d" % ls.getsockname()[1]
        expect(["query", "--server", addr, "--from", "-1h"], 1,
               "tracevault: cannot reach server %s: TCP connects but no gRPC server answers"
               % addr, exact=True)
        closer_stop.set()
    expect(["put", "--server", "no-such-host.invalid:7070", good], 1,
           "tracevault: cannot reach server no-such-host.invalid:7070: cannot resolve the host")

    srv = tvtest.Server().start()
    try:
        # a malformed line N: exit 1 naming FILE:N and why; nothing of the file is stored,
        # including the valid lines before it (line 2 is empty and skipped, but counted)
        bad_cases = [
            ('{"ts_ns": 1, "path": "/x"', "invalid JSON"),
            ('{"ts_ns": -4}', "field 'ts_ns' must not be negative"),
            ('{"ts_ns": 4, "colour": "red"}', "unknown field 'colour'"),
            ('{"ts_ns": 4, "status": "200"}', "field 'status' must be an integer"),
            ('{"path": "/no-ts"}', "missing required field 'ts_ns'"),
        ]
        for n, (line, reason) in enumerate(bad_cases):
            bad = os.path.join(tmp, "bad%d.jsonl" % n)
            lines = [good_line(i) for i in range(100 + n * 10, 110 + n * 10)]
            lines.insert(1, "")
            lines.insert(6, line)  # line number 7
            lines += [good_line(i) for i in range(1000, 1010)]
            write_lines(bad, lines)
            expect(["put", "--server", srv.addr, bad], 1,
                   "tracevault: %s:7: %s" % (bad, reason))
        assert everything(srv.addr) == [], "a rejected put left records on the server"
        print("ok rejected puts left nothing")

        # stdin works and names itself in errors
        p = tvtest.run(["put", "--server", srv.addr, "-"], input=good_line(1) + "\nnope\n")
        assert p.returncode == 1 and p.stderr.startswith("tracevault: <stdin>:2: invalid JSON"), \
            p.stderr
        assert everything(srv.addr) == []
        print("ok stdin put with a bad line")

        # --window-bytes below the block: 2 KiB unacknowledged in 512-byte chunks, every
        # record arrives (the window opens again on each ack)
        many = os.path.join(tmp, "many.jsonl")
        write_lines(many, [good_line(i) for i in range(300)])
        p = tvtest.run(["put", "--server", srv.addr, "--window-bytes", "2K", "--chunk-bytes",
                        "512", many], check=True)
        assert "put 300 records in 1 block\n" in p.stderr, p.stderr
        assert [(r["ts_ns"], r["path"]) for r in map(json.loads, everything(srv.addr))] == \
            [(BASE_NS + i, "/%d" % i) for i in range(300)]
        print("ok put --window-bytes 2K --chunk-bytes 512")
    finally:
        srv.cleanup()

    # a write the server refuses mid-stream (its message limit is below our chunk size):
    # exit 1 naming the gRPC status, the segment is deleted, nothing is visible
    srv = tvtest.Server(extra_args=["--max-message-bytes", "65536"]).start()
    try:
        rng = random.Random(7)
        big = os.path.join(tmp, "big.jsonl")
        write_lines(big, [json.dumps({"ts_ns": BASE_NS + i, "path": "/%032x" % rng.getrandbits(128)
                                      + "%032x" % rng.getrandbits(128)}) for i in range(4000)])
        p = tvtest.run(["put", "--server", srv.addr, big])
        assert p.returncode == 1, (p.returncode, p.stderr)
        assert len(p.stderr.splitlines()) == 1, p.stderr
        assert "RESOURCE_EXHAUSTED" in p.stderr and "segment deleted" in p.stderr, p.stderr
        assert everything(srv.addr) == [], "a failed put left records on the server"
        # a capture on an interface that does not exist: a runtime failure naming it (the
        # server is checked first, so this one must be reachable)
        expect(["capture", "--server", srv.addr, "--mode", "sockfilter", "--interface",
                "nosuch0"], 1, "tracevault: unknown interface nosuch0", exact=True)
        # the catalog, the owner's lock and the FORMAT marker are the server's own; no block or
        # temp file may stay
        leftovers = [os.path.join(d, f) for d, _, files in os.walk(srv.data_dir) for f in files
                     if not f.startswith("catalog.db") and
                     os.path.join(d, f) not in (os.path.join(srv.data_dir, "lock"),
                                                os.path.join(srv.data_dir, "FORMAT"))]
        assert leftovers == [], "a failed put left files: %r" % leftovers
        print("ok failed write: %s" % p.stderr.strip())
    finally:
        srv.cleanup()


def main():
    tmp = tempfile.mkdtemp(prefix="tv-cli-")
    try:
        run_cases(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("PASS")


if __name__ == "__main__":
    main()

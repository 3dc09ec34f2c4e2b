"""TLS and mutual TLS on the gRPC port, with certificates this test makes with the openssl CLI
(a CA, a server certificate for IP:127.0.0.1 and DNS:localhost, a client certificate of the
same CA, and one of another CA): put + query over mutual TLS give the exact records; a
plaintext client, a client without a certificate and one with the other CA's are refused, each
exit 1 with a line naming why (put, query, summary; capture too, whose refusal comes before
any eBPF is loaded); so is a name the server's certificate does not carry; the Python
grpcio client works with the same CA; tracevaultd refuses a plaintext non-loopback --listen
unless --insecure; the option checks of both binaries; a key file others may read is refused;
garbage sent to the TLS port is counted and its log lines rate-limited; no key ever appears in
any output.
Time budget: about 15 s (three servers, EC keys)."""
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402

BASE_NS = 1767225600 * 10**9  # 2026-01-01T00:00:00Z
# a line of gRPC C core's own log (gpr_log at ERROR, its default): E1201 06:10:05.330416479 ...
GRPC_LOG = re.compile(r"^[EWID]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\] ")
N_RECORDS = 2000


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, capture_output=True, timeout=30)


def make_certs(d):
    """The PEM files of the test in d: ca, server (IP:127.0.0.1, DNS:localhost), client (same
    CA), other-ca and other-client (signed by other-ca). EC P-256 keys: fast to make."""
    def key(name):
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-out", os.path.join(d, name + ".key"))

    def ca(name):
        key(name)
        openssl("req", "-x509", "-new", "-key", os.path.join(d, name + ".key"), "-days", "2",
                "-subj", "/CN=tracevault test " + name, "-out", os.path.join(d, name + ".pem"))

    def leaf(name, ca_name, ext):
        key(name)
        csr = os.path.join(d, name + ".csr")
        openssl("req", "-new", "-key", os.path.join(d, name + ".key"), "-subj",
                "/CN=tracevault test " + name, "-out", csr)
        extfile = os.path.join(d, name + ".ext")
        with open(extfile, "w") as f:
            f.write(ext + "\n")
        openssl("x509", "-req", "-in", csr, "-CA", os.path.join(d, ca_name + ".pem"),
                "-CAkey", os.path.join(d, ca_name + ".key"), "-CAcreateserial", "-days", "2",
                "-extfile", extfile, "-out", os.path.join(d, name + ".pem"))

    ca("ca")
    ca("other-ca")
    leaf("server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
         "extendedKeyUsage=serverAuth")
    leaf("client", "ca", "extendedKeyUsage=clientAuth")
    leaf("other-client", "other-ca", "extendedKeyUsage=clientAuth")
    for name in os.listdir(d):
        if name.endswith(".key"):
            os.chmod(os.path.join(d, name), 0o600)


class Env:
    """The certificates and the records every case shares."""

    def __init__(self, d):
        self.d = d
        make_certs(d)
        rng = random.Random(13)
        self.records = [{
            "ts_ns": BASE_NS + i * 1000003, "end_ns": BASE_NS + i * 1000003 + 5000,
            "latency_ns": 5000, "pid": rng.randrange(1, 2**32), "comm": "nginx",
            "local": "127.0.0.1:80", "remote": "127.0.0.1:%d" % rng.randrange(1, 65536),
            "method": rng.choice(["GET", "POST"]), "path": "/tls/%d" % i,
            "status": rng.choice([200, 404, 500]), "req_body_bytes": rng.randrange(10**6),
            "resp_body_bytes": rng.randrange(10**9), "trace_id": "%032x" % rng.getrandbits(128),
            "span_id": "%016x" % rng.getrandbits(64), "flags": 0, "role": "server",
            "host": "example.com", "http_version": "1.1"} for i in range(N_RECORDS)]
        self.jsonl = os.path.join(d, "records.jsonl")
        with open(self.jsonl, "w") as f:
            for r in self.records:
                f.write(json.dumps(r) + "\n")
        self.outputs = []  # every stderr/stdout/log seen: no key may be in any

    def p(self, name):
        return os.path.join(self.d, name)

    def client_args(self, ca="ca", cert="client"):
        args = ["--tls-ca", self.p(ca + ".pem")]
        if cert:
            args += ["--tls-cert", self.p(cert + ".pem"), "--tls-key", self.p(cert + ".key")]
        return args

    def server(self, *extra, require=True, listen="127.0.0.1:0"):
        args = ["--tls-cert", self.p("server.pem"), "--tls-key", self.p("server.key")]
        if require is not None:
            args += ["--tls-ca", self.p("ca.pem")]
        if require:
            args.append("--tls-require-client-cert")
        return tvtest.Server(extra_args=args + list(extra), listen=listen)

    def run(self, args, timeout=60):
        p = tvtest.run(args, timeout=timeout)
        self.outputs += [p.stdout, p.stderr]
        return p

    def refused(self, args, want):
        """args exit 1, print nothing on stdout and one line of ours naming the failure on
        stderr; any other stderr line is gRPC's own log (its handshake errors)."""
        p = self.run(args)
        ours = [ln for ln in p.stderr.splitlines() if not GRPC_LOG.match(ln)]
        assert p.returncode == 1 and p.stdout == "" and len(ours) == 1 and ours[0].startswith(
            "tracevault: cannot reach server") and want in ours[0], (args, p.returncode, p.stderr)
        return ours[0]

    def query(self, addr, tls_args):
        p = self.run(["query", "--server", addr, "--from", str(BASE_NS), "--to",
                      str(BASE_NS + 10**12)] + tls_args)
        assert p.returncode == 0, p.stderr
        return [json.loads(line) for line in p.stdout.splitlines()]


def test_mutual_tls_put_query_exact(env):
    """put over mutual TLS, then query, summary and query --stats over it: the exact records."""
    with env.server() as srv:
        p = env.run(["put", "--server", srv.addr] + env.client_args() + [env.jsonl])
        assert p.returncode == 0, p.stderr
        assert "put %d records" % N_RECORDS in p.stderr, p.stderr
        assert env.query(srv.addr, env.client_args()) == env.records
        p = env.run(["summary", "--server", srv.addr, "--from", str(BASE_NS), "--to",
                     str(BASE_NS + 10**12), "--format", "jsonl"] + env.client_args())
        assert p.returncode == 0 and '"count":%d' % N_RECORDS in p.stdout.replace(" ", ""), (
            p.stdout, p.stderr)
        p = env.run(["query", "--stats", "--server", srv.addr, "--from", str(BASE_NS)]
                    + env.client_args())
        assert p.returncode == 0 and json.loads(p.stdout)["records"] == N_RECORDS, p.stderr
        log = srv.log()
        env.outputs.append(log)
        assert "TLS on (certificate %s; client certificates required" % env.p("server.pem") \
            in log, log


def test_refused_clients(env):
    """Under --tls-require-client-cert: plaintext, no certificate, another CA's certificate,
    a CA that did not sign the server's, and a name the server's certificate lacks are each
    refused (exit 1, one line saying why); the Write of a refused put stored nothing."""
    with env.server() as srv:
        q = ["query", "--server", srv.addr, "--from", str(BASE_NS)]
        env.refused(q, "the server speaks TLS: connect with --tls-ca")
        env.refused(["put", "--server", srv.addr, env.jsonl],
                    "the server speaks TLS: connect with --tls-ca")
        env.refused(q + env.client_args(cert=None), "it requires a client certificate")
        env.refused(["put", "--server", srv.addr] + env.client_args(cert=None) + [env.jsonl],
                    "it requires a client certificate")
        # capture makes its write pipeline (and probes the server) before anything of eBPF:
        # these refusals check its channels without loading a probe
        cap = ["capture", "--server", srv.addr, "--duration", "1"]
        env.refused(cap, "the server speaks TLS: connect with --tls-ca")
        env.refused(cap + env.client_args(cert=None), "it requires a client certificate")
        env.refused(cap + env.client_args(cert="other-client"),
                    "does not accept the client certificate of --tls-cert")
        env.refused(q + env.client_args(cert="other-client"),
                    "does not accept the client certificate of --tls-cert")
        env.refused(q + env.client_args(ca="other-ca"), "TLS handshake failed: the server's "
                    "certificate:")
        env.refused(q + env.client_args() + ["--tls-server-name", "wrong.example"],
                    "hostname mismatch (checked against --tls-ca, as wrong.example)")
        env.refused(["summary", "--server", srv.addr, "--from", str(BASE_NS), "--tls-server-name",
                     "wrong.example"] + env.client_args(), "hostname mismatch")
        # the name the certificate does carry, given for the address it was reached by
        assert env.query(srv.addr, env.client_args() + ["--tls-server-name", "localhost"]) == []
        assert tvtest.catalog_blocks(srv.data_dir) == {}, "a refused put stored blocks"


def test_verify_optional_client_cert(env):
    """With --tls-ca but without --tls-require-client-cert, a client without a certificate is
    served, one with another CA's certificate is still refused."""
    with env.server(require=False) as srv:
        assert env.query(srv.addr, env.client_args(cert=None)) == []
        env.refused(["query", "--server", srv.addr, "--from", str(BASE_NS)]
                    + env.client_args(cert="other-client"), "the client certificate")


def test_tls_client_at_plaintext_server(env):
    with tvtest.Server() as srv:
        env.refused(["query", "--server", srv.addr, "--from", str(BASE_NS)]
                    + env.client_args(), "wrong version number (the server does not serve TLS?)")


def test_grpcio_client(env):
    """grpcio with grpc.ssl_channel_credentials and the same CA: Write and Query work, by IP
    and by DNS name (localhost); without a client certificate it is refused."""
    grpc, _ = tvtest.grpc_modules()

    def read(name):
        with open(env.p(name), "rb") as f:
            return f.read()

    creds = grpc.ssl_channel_credentials(root_certificates=read("ca.pem"),
                                         private_key=read("client.key"),
                                         certificate_chain=read("client.pem"))
    with env.server() as srv:
        port = srv.addr.rsplit(":", 1)[1]
        recs = [tvtest.trace_record(BASE_NS + i, pid=i + 1, path="/py/%d" % i) for i in range(50)]
        for target in ("127.0.0.1:" + port, "localhost:" + port):
            cli = tvtest.GrpcClient(target, credentials=creds, own_connection=True)
            try:
                if target.startswith("127"):
                    assert cli.write_segment(0x7151, [(0x7151, recs)]).committed
                got = cli.query(BASE_NS, BASE_NS + 50)
                assert [r.SerializeToString() for r in got] == \
                    [r.SerializeToString() for r in recs], target
            finally:
                cli.close()
        # the C client reads what grpcio wrote
        assert [r["path"] for r in env.query(srv.addr, env.client_args())] == \
            ["/py/%d" % i for i in range(50)]
        no_cert = grpc.ssl_channel_credentials(root_certificates=read("ca.pem"))
        cli = tvtest.GrpcClient("127.0.0.1:" + port, credentials=no_cert, timeout_s=5,
                                own_connection=True)
        try:
            _, _, code, _, _ = cli.query_all(BASE_NS, BASE_NS + 50)
            assert code == grpc.StatusCode.UNAVAILABLE, code
        finally:
            cli.close()


def daemon(args, timeout=30):
    p = subprocess.run([tvtest.binary("tracevaultd")] + args, capture_output=True, text=True,
                       timeout=timeout)
    return p


def test_listen_rules(env):
    """A non-loopback --listen without TLS is a usage error (exit 2, one line) unless
    --insecure, with which tracevaultd serves (and says so)."""
    data = tempfile.mkdtemp(prefix="tv-tls-")
    try:
        for listen in ("0.0.0.0:0", "[::]:0", "example.com:7070"):
            p = daemon(["--data", os.path.join(data, "d"), "--listen", listen])
            assert p.returncode == 2 and p.stderr == (
                "tracevaultd: --listen %s is not loopback: serve it with --tls-cert and "
                "--tls-key, or give --insecure to allow plaintext there\n" % listen), p.stderr
            assert not os.path.exists(os.path.join(data, "d"))
    finally:
        shutil.rmtree(data, ignore_errors=True)
    with tvtest.Server(listen="0.0.0.0:0", extra_args=["--insecure"]) as srv:
        port = srv.addr.rsplit(":", 1)[1]
        assert "tracevaultd: warning: --insecure: plaintext gRPC on 0.0.0.0:%s\n" % port \
            in srv.log(), srv.log()
        p = env.run(["query", "--server", "127.0.0.1:" + port, "--from", str(BASE_NS)])
        assert p.returncode == 0 and p.stdout == "", p.stderr
    # a non-loopback address with TLS needs no --insecure
    with env.server(listen="0.0.0.0:0") as srv:
        port = srv.addr.rsplit(":", 1)[1]
        assert env.query("127.0.0.1:" + port, env.client_args()) == []


def test_option_errors(env):
    """Both binaries: usage errors exit 2 with one line, bad files exit 1 naming the file."""
    data = tempfile.mkdtemp(prefix="tv-tls-")
    d = ["--data", os.path.join(data, "d")]
    cert, key, ca = env.p("server.pem"), env.p("server.key"), env.p("ca.pem")
    usage = [
        (["--tls-cert", cert], "--tls-cert needs --tls-key"),
        (["--tls-key", key], "--tls-key needs --tls-cert"),
        (["--tls-cert", cert, "--tls-key", key, "--tls-require-client-cert"],
         "--tls-require-client-cert needs --tls-ca"),
        (["--tls-ca", ca], "--tls-ca verifies client certificates over TLS"),
        (["--tls-cert", cert, "--tls-key", key, "--insecure"],
         "--insecure allows plaintext; it does not go with --tls-cert"),
        (["--scrub", "--tls-cert", cert, "--tls-key", key], "--tls-* and --insecure serve"),
    ]
    files = [
        (["--tls-cert", env.p("nope.pem"), "--tls-key", key],
         "cannot read --tls-cert %s: No such file or directory" % env.p("nope.pem")),
        (["--tls-cert", cert, "--tls-key", env.p("client.key")],
         "--tls-key %s does not match the certificate of --tls-cert %s"
         % (env.p("client.key"), cert)),
        (["--tls-cert", key, "--tls-key", key], "invalid --tls-cert %s: no PEM certificate" % key),
        (["--tls-cert", cert, "--tls-key", cert],
         "invalid --tls-key %s: not an unencrypted PEM private key" % cert),
        (["--tls-cert", cert, "--tls-key", key, "--tls-ca", env.jsonl],
         "invalid --tls-ca %s: no PEM certificate" % env.jsonl),
        (["--tls-cert", cert, "--tls-key", key, "--tls-ca", env.d],
         "cannot read --tls-ca %s: not a regular file" % env.d),
    ]
    try:
        for args, want in usage:
            p = daemon(d + args)
            assert p.returncode == 2 and p.stderr.startswith("tracevaultd: " + want) and \
                p.stderr.count("\n") == 1, (args, p.returncode, p.stderr)
        for args, want in files:
            p = daemon(d + ["--listen", "127.0.0.1:0"] + args)
            env.outputs += [p.stdout, p.stderr]
            assert p.returncode == 1 and ("tracevaultd: " + want + "\n") in p.stderr and \
                "listening" not in p.stdout, (args, p.returncode, p.stderr)
    finally:
        shutil.rmtree(data, ignore_errors=True)

    q = ["query", "--server", "127.0.0.1:1", "--from", "-1m"]
    for args, want in [
            (["--tls-ca", ca, "--tls-cert", env.p("client.pem")], "--tls-cert needs --tls-key"),
            (["--tls-ca", ca, "--tls-key", env.p("client.key")], "--tls-key needs --tls-cert"),
            (["--tls-cert", env.p("client.pem"), "--tls-key", env.p("client.key")],
             "--tls-cert is for TLS: give --tls-ca"),
            (["--tls-server-name", "x"], "--tls-server-name is for TLS: give --tls-ca")]:
        for cmd in (q, ["put", "--server", "127.0.0.1:1", env.jsonl],
                    ["summary", "--server", "127.0.0.1:1", "--from", "-1m"]):
            p = env.run(cmd + args)
            assert p.returncode == 2 and p.stderr == "tracevault: " + want + \
                p.stderr[len("tracevault: " + want):] and p.stderr.count("\n") == 1, \
                (cmd + args, p.returncode, p.stderr)
    for args, want in [
            (["--tls-ca", env.p("nope.pem")], "cannot read --tls-ca %s" % env.p("nope.pem")),
            (["--tls-ca", ca, "--tls-cert", env.p("client.pem"), "--tls-key",
              env.p("server.key")], "--tls-key %s does not match" % env.p("server.key"))]:
        p = env.run(q + args)
        assert p.returncode == 1 and p.stderr.startswith("tracevault: " + want) and \
            p.stderr.count("\n") == 1, (args, p.returncode, p.stderr)


GARBAGE_CONNECTIONS = 30


def garbage_connection(port):
    """One peer that sends bytes that are not TLS to the TLS port, then waits for the close."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        while s.recv(4096):
            pass


def test_garbage_on_the_tls_port_is_rate_limited_and_counted(env):
    """Peers sending garbage to the TLS port: every failed handshake is counted
    (tracevault_server_tls_handshake_failures_total), but gRPC's 'Handshake failed' line is
    printed for the first TV_GRPC_LOG_WINDOW_LINES of a window only, then one line counts the
    rest (at stop here: the window is 60 s); real clients are served meanwhile."""
    with env.server("--metrics-addr", "127.0.0.1:0") as srv:
        maddr = tvtest.metrics_addr(srv.log())
        assert tvtest.Scrape(maddr).value(
            "tracevault_server_tls_handshake_failures_total") == 0
        port = int(srv.addr.rsplit(":", 1)[1])
        for _ in range(GARBAGE_CONNECTIONS):
            garbage_connection(port)
        assert env.query(srv.addr, env.client_args()) == []
        deadline = time.monotonic() + 10
        while True:  # the count is bumped as gRPC logs, before it closes the connection
            got = tvtest.Scrape(maddr).value("tracevault_server_tls_handshake_failures_total")
            if got == GARBAGE_CONNECTIONS or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert got == GARBAGE_CONNECTIONS, got
        assert srv.stop() == 0
        log = srv.log()
    env.outputs.append(log)
    printed = [ln for ln in log.splitlines() if "Handshake failed" in ln]
    assert all(GRPC_LOG.match(ln) for ln in printed), printed
    m = re.findall(r"^tracevaultd: gRPC log: (\d+) more lines suppressed \(at most (\d+) per "
                   r"60 s\), (\d+) of them TLS handshake failures", log, re.M)
    assert len(m) == 1, log
    suppressed, at_most, tls = (int(x) for x in m[0])
    assert len(printed) == at_most < GARBAGE_CONNECTIONS, (len(printed), at_most, log)
    assert suppressed == tls == GARBAGE_CONNECTIONS - at_most, (m, log)


def test_private_key_open_to_others_is_refused(env):
    """A --tls-key file that others may read: exit 1, one line naming the file and its mode,
    on tracevaultd and on a client; as PostgreSQL allows, a root-owned key may be 0640 (the
    service's group reads it), one of another owner may not."""
    data = tempfile.mkdtemp(prefix="tv-tls-")
    loose = env.p("loose.key")
    shutil.copy(env.p("server.key"), loose)
    args = ["--data", os.path.join(data, "d"), "--listen", "127.0.0.1:0",
            "--tls-cert", env.p("server.pem"), "--tls-key", loose]
    try:
        for mode, who in ((0o644, "others"), (0o604, "others"), (0o660, "its group")):
            os.chmod(loose, mode)
            p = daemon(args)
            env.outputs += [p.stdout, p.stderr]
            assert p.returncode == 1 and p.stdout == "" and p.stderr == (
                "tracevaultd: --tls-key %s is mode %04o, open to %s: a private key must be at "
                "most 0600 (0640 when owned by root); chmod 600 %s\n" % (loose, mode, who,
                                                                         loose)), p.stderr
            assert not os.path.exists(os.path.join(data, "d"))  # before the data dir
        client_key = env.p("loose-client.key")
        shutil.copy(env.p("client.key"), client_key)
        os.chmod(client_key, 0o644)
        p = env.run(["query", "--server", "127.0.0.1:1", "--from", "-1m", "--tls-ca",
                     env.p("ca.pem"), "--tls-cert", env.p("client.pem"), "--tls-key",
                     client_key])
        assert p.returncode == 1 and p.stderr.startswith(
            "tracevault: --tls-key %s is mode 0644, open to others" % client_key) and \
            p.stderr.count("\n") == 1, p.stderr
        if os.geteuid() == 0:
            os.chmod(loose, 0o640)
            os.chown(loose, 0, 0)
            with tvtest.Server(extra_args=args[4:]) as srv:  # root's 0640: served
                assert env.query(srv.addr, ["--tls-ca", env.p("ca.pem")]) == []
            os.chown(loose, 65534, 0)  # another owner's 0640: refused
            p = daemon(args)
            assert p.returncode == 1 and "is mode 0640, open to its group" in p.stderr, \
                p.stderr
    finally:
        shutil.rmtree(data, ignore_errors=True)


def test_help_documents_tls(env):
    p = daemon(["--help"])
    for opt in ("--tls-cert FILE", "--tls-key FILE", "--tls-ca FILE",
                "--tls-require-client-cert", "--insecure"):
        assert opt in p.stdout, opt
    for cmd in ("capture", "put", "query", "summary"):
        out = env.run([cmd, "--help"]).stdout
        for opt in ("--tls-ca FILE", "--tls-cert FILE", "--tls-key FILE",
                    "--tls-server-name NAME"):
            assert opt in out, (cmd, opt)


def key_bodies(env):
    """The base64 lines of every private key the test made."""
    out = []
    for name in os.listdir(env.d):
        if name.endswith(".key"):
            with open(env.p(name)) as f:
                out += [line.strip() for line in f if line.strip() and "-----" not in line]
    return out


def main():
    if not shutil.which("openssl"):
        tvtest.skip("the openssl CLI is not installed (Debian package openssl)")
    d = tempfile.mkdtemp(prefix="tv-tls-certs-")
    try:
        env = Env(d)
        results = tvtest.Results(0)
        tests = tvtest.cases(globals())
        results.ntests = len(tests)
        for t in tests:
            results.run(t, env)
        bodies = key_bodies(env)
        leaked = [b for b in bodies if any(b in o for o in env.outputs)]
        if leaked:
            results.fail("a private key's text appeared in an output")
        else:
            print("ok   no key text in %d outputs" % len(env.outputs))
        return results.exit_code()
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

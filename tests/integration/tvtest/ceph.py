"""A real S3 server for the S3 under-store tests: Ceph (scripts/s3-ceph.sh's one-node cluster,
mon + OSD on memstore + RADOS Gateway) on 127.0.0.1 in a temp dir, always stopped on exit; and
Ceph.s3(), one SigV4-signed request by Debian's curl, to look into the bucket independently of
tracevaultd's own S3 client.

    with tvtest.Ceph() as ceph:           # Unavailable (the test's SKIP) without the packages
        env = dict(os.environ, **ceph.env)  # S3_ENDPOINT, S3_REGION, S3_BUCKET, AWS_* keys
        ceph.s3("PUT", "a/b", data=b"...").status == 200
        ceph.rgw_stop(); ...; ceph.rgw_start()  # the gateway alone, same endpoint"""
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import xml.etree.ElementTree as ET

from .caps import Unavailable
from .procs import SKIP, Started

SOURCE_DIR = os.environ.get("TV_SOURCE_DIR", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
SCRIPT = os.path.join(SOURCE_DIR, "scripts", "s3-ceph.sh")
DEPS_SCRIPT = os.path.join(SOURCE_DIR, "scripts", "deps.sh")
# the script bounds each of its steps (120 s); these bound a whole call of it and of deps.sh
SCRIPT_TIMEOUT_S = 240
DEPS_TIMEOUT_S = 240
CURL_TIMEOUT_S = 120
ENV_KEYS = ("S3_ENDPOINT", "S3_REGION", "S3_BUCKET", "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY")
DAEMONS = ("mon", "osd", "rgw")
S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
CURL_CONNREFUSED = 7  # curl's exit code when nothing listens on the port
LOG_TAIL_LINES = 30


def script(*args, env=None, timeout=SCRIPT_TIMEOUT_S):
    """scripts/s3-ceph.sh ARGS: CompletedProcess with text stdout/stderr."""
    return subprocess.run([SCRIPT] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def read_env(path):
    """The KEY=VALUE lines of an s3.env, as a dict (insertion order kept)."""
    out = {}
    with open(path) as f:
        for line in f:
            key, _, value = line.rstrip("\n").partition("=")
            out[key] = value
    return out


def install_packages():
    """Try scripts/deps.sh (root and a reachable Debian mirror needed); None if it worked,
    else why not."""
    try:
        p = subprocess.run(["bash", DEPS_SCRIPT], capture_output=True, text=True,
                           timeout=DEPS_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return "scripts/deps.sh did not finish within %d s" % DEPS_TIMEOUT_S
    if p.returncode != 0:
        lines = p.stderr.strip().splitlines()
        return "scripts/deps.sh exited %d: %s" % (p.returncode, lines[-1] if lines else "")
    return None


class S3Response:
    """status: the HTTP status, 0 when there was no answer (curl_exit says why, 7: refused);
    body: the response body (bytes); code: the <Code> of an S3 error body, else None."""

    def __init__(self, status, body, curl_exit):
        self.status = status
        self.body = body
        self.curl_exit = curl_exit
        self.code = None
        if body.startswith(b"<?xml") and b"<Error>" in body:
            self.code = ET.fromstring(body).findtext("Code")

    def __repr__(self):
        return "S3Response(status=%d, curl_exit=%d, code=%r, body=%r)" % (
            self.status, self.curl_exit, self.code, self.body[:200])


class Ceph(Started):
    """scripts/s3-ceph.sh's cluster in a temp dir. After start: dir, endpoint, region, bucket,
    access_key, secret_key, env (the s3.env dict), start_s (seconds the start took)."""

    def __init__(self, bucket="tracevault", memstore_mib=None, install=True):
        self.bucket_name = bucket
        self.memstore_mib = memstore_mib
        self.install = install  # try scripts/deps.sh when the packages are missing
        self.dir = None
        self.env = {}
        self.start_s = None

    def _start_script(self):
        args = ["start", self.dir, "--bucket", self.bucket_name, "--owner-pid", os.getpid()]
        if self.memstore_mib is not None:
            args += ["--memstore-mib", self.memstore_mib]
        return script(*args)

    def start(self):
        """Start the cluster; Unavailable when the packages are missing and cannot be
        installed, AssertionError with the script's message if it fails otherwise."""
        self.dir = tempfile.mkdtemp(prefix="tv-ceph-")
        t0 = time.monotonic()
        p = self._start_script()
        if p.returncode == SKIP and self.install:
            why_not = install_packages()
            if why_not is None:
                t0 = time.monotonic()
                p = self._start_script()
            else:
                raise Unavailable("%s; %s" % (p.stderr.strip(), why_not))
        if p.returncode == SKIP:
            raise Unavailable(p.stderr.strip())
        if p.returncode != 0:
            raise AssertionError("s3-ceph.sh start exited %d:\n%s" % (p.returncode, p.stderr))
        self.start_s = time.monotonic() - t0
        self.env = read_env(os.path.join(self.dir, "s3.env"))
        self.endpoint = self.env["S3_ENDPOINT"]
        self.region = self.env["S3_REGION"]
        self.bucket = self.env["S3_BUCKET"]
        self.access_key = self.env["AWS_ACCESS_KEY_ID"]
        self.secret_key = self.env["AWS_SECRET_ACCESS_KEY"]
        return self

    def _run(self, *args):
        p = script(*args)
        if p.returncode != 0:
            raise AssertionError("s3-ceph.sh %s exited %d:\n%s" % (" ".join(map(str, args)),
                                                                  p.returncode, p.stderr))
        return p

    def rgw_stop(self):
        """Stop the gateway alone: requests fail with connection refused until rgw_start."""
        self._run("rgw-stop", self.dir)

    def rgw_start(self):
        """Start the gateway again on the same endpoint; returns once it answers S3."""
        self._run("rgw-start", self.dir)

    def stop(self):
        """Stop every daemon (idempotent); the dir and its logs stay until cleanup."""
        if self.dir:
            self._run("stop", self.dir)

    def status(self):
        """CompletedProcess of `s3-ceph.sh status` (exit 0 all run, 3 not)."""
        return script("status", self.dir)

    def pids(self):
        """{daemon: pid} of the pid files the script keeps, for the daemons that have one."""
        out = {}
        for name in DAEMONS + ("watchdog",):
            try:
                with open(os.path.join(self.dir, "run", name + ".pid")) as f:
                    out[name] = int(f.read())
            except FileNotFoundError:
                pass
        return out

    def rss_mib(self):
        """{daemon: resident set size in MiB} of the running mon, osd and rgw."""
        out = {}
        for name, pid in self.pids().items():
            if name in DAEMONS:
                with open("/proc/%d/status" % pid) as f:
                    kib = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
                out[name] = kib / 1024
        return out

    def processes(self):
        """[(pid, command line)] of every process whose command line names this cluster's
        dir: after stop, none may be left."""
        out = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if self.dir in cmd:
                out.append((int(pid), cmd.strip()))
        return out

    def log_tail(self, daemon="rgw", lines=LOG_TAIL_LINES):
        """The last lines of a daemon's Ceph log (rgw: ceph-client.rgw.a.log)."""
        name = {"mon": "ceph-mon.a", "osd": "ceph-osd.0", "rgw": "ceph-client.rgw.a"}[daemon]
        try:
            with open(os.path.join(self.dir, "log", name + ".log"), errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except FileNotFoundError:
            return ""

    def key_url(self, key="", query=(), bucket=None):
        """http://127.0.0.1:PORT/BUCKET/KEY?QUERY, key and query values percent-encoded: RGW
        checks the SigV4 signature over the encoded form (prefix=a%2F, not prefix=a/)."""
        path = "/" + (self.bucket if bucket is None else bucket)
        if key:
            path += "/" + urllib.parse.quote(key, safe="/-_.~")
        if query:  # sorted: the order of SigV4's canonical query (curl 7.88 does not sort)
            path += "?" + "&".join("%s=%s" % (urllib.parse.quote(k, safe="-_.~"),
                                              urllib.parse.quote(str(v), safe="-_.~"))
                                   for k, v in sorted(query))
        return self.endpoint + path

    def s3(self, method, key="", query=(), data=None, headers=(), secret=None, bucket=None,
           region=None, timeout=CURL_TIMEOUT_S):
        """One request by Debian's curl, SigV4-signed (--aws-sigv4 aws:amz:REGION:s3) with
        the cluster's keys (secret: another secret key; region: another region to sign for):
        METHOD on /BUCKET/KEY?QUERY; data: bytes or a file path to upload. The keys go to
        curl on stdin, never on its command line. Returns an S3Response; no HTTP answer gives
        status 0."""
        secret = self.secret_key if secret is None else secret
        with tempfile.TemporaryDirectory(prefix="tv-s3-") as tmp:
            body = os.path.join(tmp, "body")
            args = ["curl", "-s", "-K", "-", "-X", method, "-o", body, "-w", "%{http_code}",
                    "--aws-sigv4", "aws:amz:%s:s3" % (region or self.region),
                    "-m", str(timeout),
                    # RGW refuses curl 7.88's SigV4 without it (NOTES.md)
                    "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"]
            for h in headers:
                args += ["-H", h]
            if data is not None:
                if isinstance(data, (bytes, bytearray)):
                    upload = os.path.join(tmp, "upload")
                    with open(upload, "wb") as f:
                        f.write(data)
                    data = upload
                args += ["-T", data]
            args.append(self.key_url(key, query, bucket))
            p = subprocess.run(args, input='user = "%s:%s"\n' % (self.access_key, secret),
                               capture_output=True, text=True, timeout=timeout + 10)
            status = int(p.stdout) if p.stdout.isdigit() else 0
            content = b""
            if os.path.exists(body):
                with open(body, "rb") as f:
                    content = f.read()
            return S3Response(status, content, p.returncode)

    def list_keys(self, prefix=""):
        """{key: size} of every object under prefix (ListObjectsV2, every page)."""
        out, token = {}, None
        while True:
            query = [("list-type", 2), ("prefix", prefix)]
            if token:
                query.append(("continuation-token", token))
            r = self.s3("GET", query=query)
            if r.status != 200:
                raise AssertionError("list %r: %r" % (prefix, r))
            root = ET.fromstring(r.body)
            for c in root.findall(S3_NS + "Contents"):
                out[c.findtext(S3_NS + "Key")] = int(c.findtext(S3_NS + "Size"))
            if root.findtext(S3_NS + "IsTruncated") != "true":
                return out
            token = root.findtext(S3_NS + "NextContinuationToken")

    def list_uploads(self, prefix=""):
        """[(key, upload id)] of the multipart uploads begun and neither completed nor aborted
        under prefix (one page: up to 1000). Written `?uploads=`: with curl 7.88 a bare
        `?uploads` is signed otherwise than RGW checks (403 SignatureDoesNotMatch)."""
        r = self.s3("GET", query=[("uploads", ""), ("prefix", prefix)])
        if r.status != 200:
            raise AssertionError("list uploads %r: %r" % (prefix, r))
        root = ET.fromstring(r.body)
        return [(u.findtext(S3_NS + "Key"), u.findtext(S3_NS + "UploadId"))
                for u in root.findall(S3_NS + "Upload")]

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and exc_type is not Unavailable and self.dir:
            print("--- the RADOS Gateway's last log lines (%s):\n%s"
                  % (self.dir, self.log_tail("rgw")))
        self.cleanup()

    def cleanup(self):
        """Stop everything the script started and remove the dir, even when stopping fails."""
        if not self.dir:
            return
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

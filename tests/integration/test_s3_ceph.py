"""The real S3 server the S3 under-store tests run (scripts/s3-ceph.sh through tvtest.Ceph): a
one-node Ceph cluster on loopback serves S3 to Debian's curl with SigV4 in s3.env's region —
PUT then GET byte-exact (64 MiB), a range GET, a listing by a percent-encoded prefix, DELETE,
a multipart upload completed and one aborted;
a wrong secret is refused with 403 SignatureDoesNotMatch; rgw-stop makes requests fail with
connection refused and rgw-start serves them again on the same endpoint; s3.env holds exactly
its five keys, mode 0600; stop ends every daemon with SIGTERM alone, leaves no process, and a
second stop is a no-op. Without a
cluster: --memstore-mib 64 refuses a PUT past the bucket's quota with 403 QuotaExceeded (not
a hang); a start that cannot finish in time names the daemon with its log and leaves nothing
running; the cluster stops itself when its --owner-pid exits; a missing package exits 77
naming it, and tvtest.Ceph turns that into the case's SKIP (Unavailable); usage errors exit 2
with one line.
Prints the start-up time, the daemons' RSS and the 64 MiB PUT's time.
Time budget: about 45 s (three clusters and a failed start)."""
import hashlib
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402
from tvtest import ceph as tvceph  # noqa: E402

BIG_BYTES = 64 << 20
STOP_WAIT_S = 60  # how long the owner-pid watchdog may take to stop a cluster


def test_s3_env_file(ceph):
    path = os.path.join(ceph.dir, "s3.env")
    assert os.stat(path).st_mode & 0o777 == 0o600, oct(os.stat(path).st_mode)
    assert tuple(ceph.env) == tvceph.ENV_KEYS, ceph.env
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", ceph.endpoint), ceph.endpoint
    assert ceph.bucket == "tracevault"
    assert re.fullmatch(r"[A-Z0-9]{20}", ceph.access_key)
    assert re.fullmatch(r"[A-Za-z0-9]{40}", ceph.secret_key)
    # the region curl signs with is s3.env's: the bucket answers to it
    r = ceph.s3("GET", query=[("list-type", 2), ("max-keys", 1)])
    assert r.status == 200 and b"<ListBucketResult" in r.body, r
    # RGW takes any region in SigV4's scope (README says so): another one is served too
    r = ceph.s3("GET", query=[("list-type", 2), ("max-keys", 1)], region="eu-west-3")
    assert r.status == 200 and b"<ListBucketResult" in r.body, r


def test_s3_multipart(ceph):
    """What the under-store's multipart path needs: begin, parts, list, complete, abort."""
    parts = [os.urandom(5 << 20), os.urandom(1000)]  # every part but the last >= 5 MiB
    uploads = []
    for key in ("mp/done", "mp/aborted"):
        r = ceph.s3("POST", key, query=[("uploads", "")])
        assert r.status == 200, r
        uploads.append(ET.fromstring(r.body).findtext(tvceph.S3_NS + "UploadId"))
    assert sorted(ceph.list_uploads("mp/")) == sorted(zip(("mp/done", "mp/aborted"), uploads))
    etags = []
    for n, part in enumerate(parts, 1):
        r = ceph.s3("PUT", "mp/done", query=[("partNumber", n), ("uploadId", uploads[0])],
                    data=part)
        assert r.status == 200, r
        etags.append('"%s"' % hashlib.md5(part).hexdigest())
    done = "<CompleteMultipartUpload>%s</CompleteMultipartUpload>" % "".join(
        "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>" % (n, e)
        for n, e in enumerate(etags, 1))
    r = ceph.s3("POST", "mp/done", query=[("uploadId", uploads[0])], data=done.encode())
    assert r.status == 200 and b"CompleteMultipartUploadResult" in r.body, r
    assert ceph.s3("GET", "mp/done").body == b"".join(parts)
    assert ceph.s3("DELETE", "mp/aborted", query=[("uploadId", uploads[1])]).status == 204
    assert ceph.list_uploads("mp/") == []
    assert ceph.list_keys("mp/") == {"mp/done": sum(map(len, parts))}


def test_s3_put_get_exact(ceph):
    rng = random.Random(14)
    small = bytes(rng.getrandbits(8) for _ in range(100003))
    r = ceph.s3("PUT", "exact/small.bin", data=small)
    assert r.status == 200, r
    r = ceph.s3("GET", "exact/small.bin")
    assert r.status == 200 and r.body == small, r

    with tempfile.NamedTemporaryFile(prefix="tv-s3-big-") as f:
        big = os.urandom(BIG_BYTES)
        f.write(big)
        f.flush()
        t0 = time.monotonic()
        r = ceph.s3("PUT", "exact/big.bin", data=f.name)
        put_s = time.monotonic() - t0
        assert r.status == 200, r
        t0 = time.monotonic()
        r = ceph.s3("GET", "exact/big.bin")
        get_s = time.monotonic() - t0
        assert r.status == 200 and len(r.body) == BIG_BYTES, r
        assert hashlib.sha256(r.body).digest() == hashlib.sha256(big).digest()
    print("     64 MiB PUT %.2f s (%.0f MiB/s), GET %.2f s (%.0f MiB/s) with curl"
          % (put_s, 64 / put_s, get_s, 64 / get_s))
    print("     RSS after it: %s" % rss_line(ceph))


def test_s3_range_get(ceph):
    data = bytes(range(256)) * 64
    assert ceph.s3("PUT", "range/obj", data=data).status == 200
    r = ceph.s3("GET", "range/obj", headers=["Range: bytes=1000-4999"])
    assert r.status == 206 and r.body == data[1000:5000], r
    r = ceph.s3("GET", "range/obj", headers=["Range: bytes=16000-"])
    assert r.status == 206 and r.body == data[16000:], r


def test_s3_list_by_encoded_prefix(ceph):
    keys = ["list/a/1", "list/a/2", "list/a/sub/3", "list/ab/4", "list/b/5"]
    for k in keys:
        assert ceph.s3("PUT", k, data=k.encode()).status == 200
    # prefix=list%2Fa%2F: the "/" percent-encoded, as RGW checks the signature over it
    assert ceph.key_url(query=[("prefix", "list/a/")]).endswith("?prefix=list%2Fa%2F")
    assert sorted(ceph.list_keys("list/a/")) == ["list/a/1", "list/a/2", "list/a/sub/3"]
    assert ceph.list_keys("list/a") == {k: len(k) for k in keys[:4]}
    assert ceph.list_keys("list/c/") == {}
    # the same listing with the prefix unencoded is refused, which is why s3() encodes it
    r = ceph.s3("GET", query=[("list-type", 2)])
    assert r.status == 200
    raw = subprocess.run(
        ["curl", "-s", "-K", "-", "-o", "/dev/null", "-w", "%{http_code}", "--aws-sigv4",
         "aws:amz:%s:s3" % ceph.region, "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD",
         "%s/%s?list-type=2&prefix=list/a/" % (ceph.endpoint, ceph.bucket)],
        input='user = "%s:%s"\n' % (ceph.access_key, ceph.secret_key), capture_output=True,
        text=True, timeout=60)
    assert raw.stdout == "403", raw


def test_s3_delete(ceph):
    assert ceph.s3("PUT", "del/x", data=b"gone soon").status == 200
    r = ceph.s3("DELETE", "del/x")
    assert r.status == 204, r
    r = ceph.s3("GET", "del/x")
    assert r.status == 404 and r.code == "NoSuchKey", r
    assert ceph.list_keys("del/") == {}


def test_s3_wrong_secret_refused(ceph):
    assert ceph.s3("PUT", "secret/x", data=b"x").status == 200
    wrong = "0" * len(ceph.secret_key)
    for method, data in (("GET", None), ("PUT", b"y")):
        r = ceph.s3(method, "secret/x", data=data, secret=wrong)
        assert r.status == 403 and r.code == "SignatureDoesNotMatch", r
    assert ceph.s3("GET", "secret/x").body == b"x"  # the refused PUT changed nothing


def test_s3_rgw_stop_start_same_endpoint(ceph):
    assert ceph.s3("PUT", "restart/x", data=b"survives").status == 200
    endpoint, pids = ceph.endpoint, ceph.pids()
    ceph.rgw_stop()
    r = ceph.s3("GET", "restart/x")
    assert r.status == 0 and r.curl_exit == tvceph.CURL_CONNREFUSED, r
    st = ceph.status()
    assert st.returncode == 3 and "rgw stopped" in st.stdout, st.stdout
    assert ceph.pids().keys() == pids.keys() - {"rgw"}
    t0 = time.monotonic()
    ceph.rgw_start()
    restart_s = time.monotonic() - t0
    assert tvceph.read_env(os.path.join(ceph.dir, "s3.env"))["S3_ENDPOINT"] == endpoint
    r = ceph.s3("GET", "restart/x")
    assert r.status == 200 and r.body == b"survives", r
    assert ceph.s3("PUT", "restart/y", data=b"after").status == 200
    assert ceph.status().returncode == 0
    assert ceph.pids()["rgw"] != pids["rgw"]
    print("     rgw-start answered again in %.1f s" % restart_s)


def rss_line(ceph):
    rss = ceph.rss_mib()
    return "%s, total %.0f MiB" % (", ".join("%s %.0f" % kv for kv in sorted(rss.items())),
                                   sum(rss.values()))


def check_stop_leaves_nothing(ceph):
    pids = ceph.pids()
    t0 = time.monotonic()
    p = tvceph.script("stop", ceph.dir)
    print("     stop took %.1f s" % (time.monotonic() - t0))
    # every daemon exits on SIGTERM: none needed SIGKILL (radosgw does, if stopped after the OSD)
    assert p.returncode == 0 and p.stderr == "", p
    assert p.stdout == "s3-ceph: stopped watchdog rgw osd mon\n", p.stdout
    left = ceph.processes()
    assert left == [], left
    for name, pid in pids.items():
        assert not os.path.exists("/proc/%d" % pid) or \
            open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()[0] == "Z", (name, pid)
    assert ceph.pids() == {}
    p = tvceph.script("stop", ceph.dir)  # idempotent: nothing to stop, nothing said
    assert p.returncode == 0 and p.stdout == "" and p.stderr == "", p
    assert tvceph.script("status", ceph.dir).returncode == 3


# ---- cases without the shared cluster -------------------------------------------------------

def test_script_usage_errors():
    d = tempfile.mkdtemp(prefix="tv-ceph-usage-")
    try:
        for args, what in (([], "missing command"), (["frob", d], "unknown command 'frob'"),
                           (["start"], "start: missing DIR"),
                           (["stop", d, "extra"], "unexpected argument 'extra'"),
                           (["start", d, "--bucket", "Bad_Name"], "invalid --bucket: 'Bad_Name'"),
                           (["start", d, "--bucket"], "--bucket needs a NAME"),
                           (["start", d, "--memstore-mib", "10"], "invalid --memstore-mib: '10'"),
                           (["start", d, "--owner-pid", "0x1"], "invalid --owner-pid"),
                           (["start", d, "--nope"], "unknown option '--nope'")):
            p = tvceph.script(*args)
            assert p.returncode == 2, (args, p)
            assert p.stderr.count("\n") == 1 and what in p.stderr, (args, p.stderr)
        assert os.listdir(d) == []
        p = tvceph.script("--help")
        assert p.returncode == 0 and "usage: s3-ceph.sh start DIR" in p.stdout
    finally:
        shutil.rmtree(d, ignore_errors=True)


def path_without(tmp, command):
    """A directory of links to every command of /usr/local/bin, /usr/bin and /usr/sbin but
    command: as PATH, a machine where its package is not installed."""
    bin_dir = os.path.join(tmp, "bin")
    os.mkdir(bin_dir)
    for src in ("/usr/local/bin", "/usr/bin", "/usr/sbin"):
        for name in os.listdir(src):
            if name != command and not os.path.exists(os.path.join(bin_dir, name)):
                os.symlink(os.path.join(src, name), os.path.join(bin_dir, name))
    return bin_dir


def test_script_missing_package_skips():
    """PATH holds every command but ceph-mon: exit 77, SKIP naming the package, nothing made."""
    tmp = tempfile.mkdtemp(prefix="tv-ceph-path-")
    try:
        d = os.path.join(tmp, "cluster")
        p = tvceph.script("start", d, env=dict(os.environ, PATH=path_without(tmp, "ceph-mon")))
        assert p.returncode == tvtest.SKIP, p
        assert p.stderr.startswith("SKIP: ") and "ceph-mon (ceph-mon)" in p.stderr, p.stderr
        assert not os.path.exists(d)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_script_fixture_skips_without_packages():
    """tvtest.Ceph where ceph-mon is missing raises Unavailable (the case's SKIP) naming it:
    at once with install=False; with install=True after scripts/deps.sh (here a no-op, dpkg
    has the package) and a second start still lacks it. Nothing is left behind."""
    tmp = tempfile.mkdtemp(prefix="tv-ceph-path-")
    old_path = os.environ["PATH"]
    os.environ["PATH"] = path_without(tmp, "ceph-mon")
    try:
        for install in (False, True):
            ceph = tvtest.Ceph(install=install)
            try:
                with ceph:
                    raise AssertionError("started without ceph-mon: %s" % ceph.endpoint)
            except tvtest.Unavailable as e:
                assert "ceph-mon (ceph-mon)" in str(e), e
            assert ceph.dir and not os.path.exists(ceph.dir), ceph.dir
    finally:
        os.environ["PATH"] = old_path
        shutil.rmtree(tmp, ignore_errors=True)


def test_script_failed_start_names_daemon():
    """S3_CEPH_START_TIMEOUT_S=1 and a radosgw on PATH that runs but never answers: a daemon
    is not ready in time (rgw for sure; mon or osd when the machine is slow), the error names it
    with its log, and the failed start stops what it had started. The fake radosgw makes the
    failure certain: on an idle machine every real daemon is ready within 1 s."""
    d = tempfile.mkdtemp(prefix="tv-ceph-fail-")
    tmp = tempfile.mkdtemp(prefix="tv-ceph-path-")
    bin_dir = path_without(tmp, "radosgw")
    with open(os.path.join(bin_dir, "radosgw"), "w") as f:
        f.write("#!/bin/bash\necho 'fake radosgw: runs, never answers' >&2\n"
                "while :; do sleep 0.2; done\n")
    os.chmod(os.path.join(bin_dir, "radosgw"), 0o755)
    try:
        p = tvceph.script("start", d, env=dict(os.environ, S3_CEPH_START_TIMEOUT_S="1",
                                               PATH=bin_dir))
        if p.returncode == tvtest.SKIP:
            raise tvtest.Unavailable(p.stderr.strip())
        assert p.returncode == 1, p
        m = re.search(r"^s3-ceph\.sh: (mon|osd|rgw) did not .* within 1 s \(pid \d+\)$",
                      p.stderr, re.M)
        assert m, p.stderr
        assert "--- " in p.stderr, p.stderr  # the daemon's log, or that it wrote none
        left = [pid for pid in os.listdir("/proc") if pid.isdigit() and d in cmdline(pid)]
        assert left == [], left
        assert not any(f.endswith(".pid") for f in os.listdir(os.path.join(d, "run")))
    finally:
        tvceph.script("stop", d)
        shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


def test_script_owner_pid_stops_cluster():
    """A cluster started with --owner-pid of a process stops itself once that process exits
    (a test killed by ctest's timeout leaves nothing behind)."""
    d = tempfile.mkdtemp(prefix="tv-ceph-owner-")
    owner = subprocess.Popen(["sleep", "600"])
    try:
        p = tvceph.script("start", d, "--bucket", "owned", "--owner-pid", owner.pid)
        if p.returncode == tvtest.SKIP:
            raise tvtest.Unavailable(p.stderr.strip())
        assert p.returncode == 0, p
        assert tvceph.script("status", d).returncode == 0
        owner.kill()
        owner.wait()
        tvtest.wait_for(lambda: not [pid for pid in os.listdir("/proc")
                                     if pid.isdigit() and d in cmdline(pid)],
                        "the cluster of a dead owner to stop", timeout_s=STOP_WAIT_S,
                        interval_s=0.2)
        assert tvceph.script("status", d).returncode == 3
    finally:
        owner.kill()
        owner.wait()
        tvceph.script("stop", d)
        shutil.rmtree(d, ignore_errors=True)


def test_script_quota_bounds_the_memstore():
    """--memstore-mib 64: the bucket's quota (75 %, 48 MiB) refuses a PUT past it at once with
    403 QuotaExceeded, where a full memstore would make every PUT wait; the cluster still
    serves what it holds, and a DELETE makes room again."""
    obj = os.urandom(16 << 20)
    with tvtest.Ceph(bucket="bounded", memstore_mib=64) as ceph:
        accepted = []
        for i in range(6):
            r = ceph.s3("PUT", "q/%d" % i, data=obj, timeout=30)
            if r.status != 200:
                break
            accepted.append(i)
        assert r.status == 403 and r.code == "QuotaExceeded", r
        assert 2 <= len(accepted) <= 3, accepted  # 48 MiB of quota: the 3rd or 4th is refused
        assert ceph.s3("GET", "q/0").body == obj
        assert ceph.s3("DELETE", "q/0").status == 204
        assert ceph.s3("PUT", "q/after", data=obj, timeout=30).status == 200
        print("     %d x 16 MiB accepted, then 403 QuotaExceeded; RSS %s"
              % (len(accepted), rss_line(ceph)))


def cmdline(pid):
    try:
        with open("/proc/%s/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def main():
    tests = tvtest.cases(globals())
    with_cluster = [t for t in tests if t.__code__.co_argcount == 1]
    alone = [t for t in tests if t.__code__.co_argcount == 0]
    results = tvtest.Results(len(tests) + 1)  # + the stop check
    try:
        with tvtest.Ceph() as ceph:
            print("     cluster up in %.1f s at %s; RSS %s"
                  % (ceph.start_s, ceph.endpoint, rss_line(ceph)))
            for t in with_cluster:
                results.run(t, ceph)
            results.run(check_stop_leaves_nothing, ceph)
    except tvtest.Unavailable as e:
        for t in with_cluster + [check_stop_leaves_nothing]:
            results.skipped.append("%s: %s" % (t.__name__, e))
            print("SKIP %s: %s" % (t.__name__, e))
    for t in alone:
        results.run(t)
    return results.exit_code()


if __name__ == "__main__":
    sys.exit(main())

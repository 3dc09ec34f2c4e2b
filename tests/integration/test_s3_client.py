"""The S3 client of the under-store (server/under/s3.c) against a real S3 server: a one-node Ceph
cluster with a RADOS Gateway on loopback, started here and always stopped, and the cmocka cases
of tests/unit/test_s3.c run against it (byte-exact put/get, ranges, streamed and multipart
puts, abort on a part's failure, list paging, idempotent deletes, wrong secret, missing bucket,
closed port). Alone, test_s3 SKIPs: it needs the server this test gives it.

The server comes from tvtest.Ceph when the tree has it (a context manager whose .env is a dict
of S3_ENDPOINT, S3_REGION, S3_BUCKET, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY; it raises
tvtest.Unavailable, this test's SKIP, when the packages are missing), else from
scripts/s3-ceph.sh: `start DIR --owner-pid PID` writes DIR/s3.env (KEY=VALUE lines, those five)
and exits 0, or 77 with "SKIP: reason" when a package is missing; `stop DIR` stops it. Without
either, or when the script says 77, this test SKIPs with the reason."""
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402

SRC = os.environ.get("TV_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))
SCRIPT = os.path.join(SRC, "scripts", "s3-ceph.sh")
TEST_S3 = os.path.join(tvtest.BIN_DIR, "tests", "test_s3")
S3_VARS = ("S3_ENDPOINT", "S3_REGION", "S3_BUCKET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
START_TIMEOUT_S = 300  # the script bounds each of its steps; this bounds the whole start
TEST_TIMEOUT_S = 240


def read_env(path):
    """The KEY=VALUE lines of an s3.env (optionally `export`ed, optionally quoted)."""
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            if line.startswith("export "):
                line = line[len("export "):]
            k, v = line.split("=", 1)
            if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
                v = v[1:-1]
            env[k.strip()] = v
    return env


def run_test_s3(s3env):
    missing = [k for k in S3_VARS if not s3env.get(k)]
    assert not missing, "the S3 server's environment lacks %s" % ", ".join(missing)
    env = dict(os.environ)
    env.update({k: s3env[k] for k in S3_VARS})
    p = subprocess.run([TEST_S3], env=env, capture_output=True, text=True,
                       timeout=TEST_TIMEOUT_S)
    out = p.stdout + p.stderr
    sys.stdout.write(out)
    assert p.returncode == 0, "test_s3 exited %d" % p.returncode
    # it ran (a SKIP would also exit nonzero, but say so plainly) and every case passed
    assert "[  PASSED  ]" in out and "FAILED" not in out, "test_s3 did not pass every case"
    for k in ("AWS_SECRET_ACCESS_KEY",):
        assert s3env[k] not in out, "the secret appears in test_s3's output"


def with_script():
    if not os.access(SCRIPT, os.X_OK):
        tvtest.skip("no scripts/s3-ceph.sh and no tvtest.Ceph in this tree: no S3 server")
    tmp = tempfile.mkdtemp(prefix="tv-s3c-")
    try:
        p = subprocess.run([SCRIPT, "start", tmp, "--owner-pid", str(os.getpid())],
                           capture_output=True, text=True, timeout=START_TIMEOUT_S)
        if p.returncode == tvtest.SKIP:
            reason = (p.stderr.strip() or p.stdout.strip()).splitlines()
            tvtest.skip(reason[-1].replace("SKIP: ", "") if reason else "s3-ceph.sh: 77")
        assert p.returncode == 0, "s3-ceph.sh start exited %d: %s" % (p.returncode,
                                                                      p.stderr.strip())
        run_test_s3(read_env(os.path.join(tmp, "s3.env")))
    finally:
        subprocess.run([SCRIPT, "stop", tmp], capture_output=True, timeout=120)
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    if not os.access(TEST_S3, os.X_OK):
        raise SystemExit("no %s: build the tests first" % TEST_S3)
    if hasattr(tvtest, "Ceph"):
        try:
            with tvtest.Ceph() as ceph:
                run_test_s3(ceph.env)
        except tvtest.Unavailable as e:
            tvtest.skip(str(e))
    else:
        with_script()
    print("test_s3_client: ok")


if __name__ == "__main__":
    main()

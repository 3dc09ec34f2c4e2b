"""scripts/check_includes.py (the ctest meta/check_includes) fails when it should: on a copy of
the source rooms, each include against an arrow is made in turn and must be reported (exit 1,
the file and line named), and the untouched copy must pass. Without this, a check that had
stopped matching anything would pass forever."""
import os
import shutil
import subprocess
import sys
import tempfile

SRC = os.environ.get("TV_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))
CHECK = os.path.join(SRC, "scripts", "check_includes.py")
ROOMS = ["common", "proto", "bpf", "server", "client"]

# (file to append to, the include line, what the report must say)
VIOLATIONS = [
    ("client/cli/cmd_put.c", '#include "bpf/tv_event.h"', "client/cli may not include bpf/"),
    ("client/write/pipeline.c", '#include "cli/cli.h"', "client/write may not include cli/"),
    ("client/rpc/rpc.c", '#include "write/sink.h"', "client/rpc may not include write/"),
    ("server/catalog.c", '#include "rpc/rpc.h"', "server may not include rpc/"),
    ("proto/block.c", '#include "server/catalog.h"', "proto may not include server/"),
    ("common/clock.c", '#include "proto/block.h"', "common may not include proto/"),
    ("client/capture/sampler.c", '#include "write/pipeline.h"',
     "client/capture may include only write/sink.h of write/"),
    ("client/cli/cmd_query.c", '#include <bpf/tv_event.h>', "a project header"),
    ("client/cli/cmd_query.c", '#include "../../bpf/tv_event.h"', "include by folder path"),
    ("client/cli/cmd_query.c", '#include "cli.h"', "include by folder path"),
    ("bpf/capture.bpf.c", '#include "capture/capture.h"', "bpf/ includes only"),
    # the under-store sits below the server and above common only
    ("server/under/s3.c", '#include "server/catalog.h"', "server/under may not include server/"),
    ("server/under/s3.c", '#include "proto/block.h"', "server/under may not include proto/"),
    ("common/clock.c", '#include "under/s3.h"', "common may not include under/"),
]


def run_check(tree):
    return subprocess.run([sys.executable, CHECK, tree], capture_output=True, text=True,
                          timeout=60)


def main():
    tmp = tempfile.mkdtemp(prefix="tv-incl-")
    try:
        tree = os.path.join(tmp, "tree")
        for room in ROOMS:
            shutil.copytree(os.path.join(SRC, room), os.path.join(tree, room))
        p = run_check(tree)
        assert p.returncode == 0, "the clean tree fails: %s" % p.stdout
        for path, line, want in VIOLATIONS:
            target = os.path.join(tree, path)
            with open(target) as f:
                original = f.read()
            with open(target, "a") as f:
                f.write(line + "\n")
            p = run_check(tree)
            with open(target, "w") as f:
                f.write(original)
            lineno = original.count("\n") + 1
            hit = [ln for ln in p.stdout.splitlines() if ln.startswith("%s:%d:" % (path, lineno))]
            assert p.returncode == 1 and hit and want in hit[0], \
                "%s + %r: want exit 1 and %r at line %d, got %d: %s" % (
                    path, line, want, lineno, p.returncode, p.stdout)
            print("ok   %s: %s" % (path, line))
        print("%d of %d tests passed" % (len(VIOLATIONS) + 1, len(VIOLATIONS) + 1))
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

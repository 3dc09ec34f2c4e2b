#!/usr/bin/env python3
"""The arrows between rooms, checked on the text of every C file (a test in `make test`).

Each room may include, with a quoted #include, only headers of the rooms its arrow reaches:

    client/cli -> client/capture -> client/write -> client/rpc -> proto -> common
    server -> proto -> common                only client/capture sees bpf/
    server -> server/under -> common         (the under-store: "under/s3.h"; no proto, no server)
    of client/write, client/capture sees only write/sink.h (the record sink it is handed)

Headers are included by folder path ("write/pipeline.h"); the generated ones (*.pb-c.h,
*.skel.h, the kernel's vmlinux.h) by their own name. A project header in angle brackets
(<bpf/tv_event.h>) is refused too: it would slip past the quoted-include rules. The build enforces the same arrows through
each library's include root (CMakeLists.txt, tv_room); this check also catches a file that
would compile only by accident, and names the line. Usage: check_includes.py [REPO_DIR]
Exit 0 when every include follows the arrows, 1 with one line per violation."""
import os
import re
import sys

# room (folder relative to the repo) -> the include prefixes it may use
ALLOWED = {
    "common": {"common"},
    "proto": {"proto", "common"},
    "client/rpc": {"rpc", "proto", "common"},
    "client/write": {"write", "rpc", "proto", "common"},
    "client/capture": {"capture", "write", "proto", "common", "bpf"},
    "client/cli": {"cli", "capture", "write", "rpc", "proto", "common"},
    "server": {"server", "under", "proto", "common"},
    "server/under": {"under", "common"},
}
# room -> {prefix: the only headers of that room it may include}, where an arrow is narrower
ONLY = {
    "client/capture": {"write": {"write/sink.h"}},
}
# bpf/ programs are compiled alone by clang -target bpf: they include their siblings by name
BPF_LOCAL = {"tv_event.h", "sockfilter.h", "vmlinux.h"}
GENERATED = re.compile(r"^[\w.-]+\.(pb-c|skel)\.h$")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
ANGLED = re.compile(r'^\s*#\s*include\s+<([^>]+)>')


def header_path(repo, inc):
    """Where a folder-path include points in the tree ("write/x.h" -> client/write/x.h,
    "under/s3.h" -> server/under/s3.h)."""
    prefix = inc.split("/")[0]
    if prefix in ("proto", "common", "bpf", "server"):
        return os.path.join(repo, inc)
    if prefix == "under":
        return os.path.join(repo, "server", inc)
    return os.path.join(repo, "client", inc)


def check(repo):
    errors = []
    nfiles = 0
    for room in list(ALLOWED) + ["bpf"]:
        folder = os.path.join(repo, room)
        if not os.path.isdir(folder):
            errors.append("%s: room missing" % room)
            continue
        for name in sorted(os.listdir(folder)):
            if not name.endswith((".c", ".h")):
                continue
            nfiles += 1
            path = os.path.join(room, name)
            with open(os.path.join(folder, name)) as f:
                for lineno, line in enumerate(f, 1):
                    a = ANGLED.match(line)
                    if a and "/" in a.group(1) and os.path.isfile(header_path(repo, a.group(1))):
                        errors.append("%s:%d: <%s>: a project header, include it with quotes"
                                      % (path, lineno, a.group(1)))
                        continue
                    m = INCLUDE.match(line)
                    if not m:
                        continue
                    inc = m.group(1)
                    where = "%s:%d: \"%s\"" % (path, lineno, inc)
                    if room == "bpf":
                        if inc not in BPF_LOCAL:
                            errors.append("%s: bpf/ includes only %s" % (where, sorted(BPF_LOCAL)))
                        continue
                    if GENERATED.match(inc):
                        continue
                    if "/" not in inc or ".." in inc.split("/"):
                        errors.append("%s: include by folder path (\"room/file.h\")" % where)
                        continue
                    prefix = inc.split("/")[0]
                    if prefix not in ALLOWED[room]:
                        errors.append("%s: %s may not include %s/ (allowed: %s)"
                                      % (where, room, prefix, ", ".join(sorted(ALLOWED[room]))))
                        continue
                    only = ONLY.get(room, {}).get(prefix)
                    if only is not None and inc not in only:
                        errors.append("%s: %s may include only %s of %s/"
                                      % (where, room, ", ".join(sorted(only)), prefix))
                        continue
                    if not os.path.exists(header_path(repo, inc)):
                        errors.append("%s: no such header" % where)
    return nfiles, errors


def main():
    repo = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    nfiles, errors = check(os.path.abspath(repo))
    for e in errors:
        print(e)
    print("check_includes: %d files, %d violations" % (nfiles, len(errors)))
    return 1 if errors or nfiles == 0 else 0


if __name__ == "__main__":
    sys.exit(main())

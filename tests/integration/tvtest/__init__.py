"""Shared helpers for integration tests: start the real tracevaultd and nginx on 127.0.0.1
ephemeral ports, run the tracevault CLI, and always stop what was started.

One module per concern; this package re-exports their public names, so tests use `tvtest.X`
(or `from tvtest import X`) without knowing which module X lives in:
  procs         BIN_DIR, binary(), run(), skip(), Server (tracevaultd), free ports, waits;
                the valgrind run: VALGRIND, SLOWDOWN (the factor of every wait on the
                daemon), rlimit_nofile(), daemon_fds()
  caps          effective capabilities, bpf_unavailable_reason(), Unavailable
  tmpfs         mount_tmpfs() / umount_tmpfs()
  cgroups       cgroup2_mount(), TempCgroup
  webservers    nginx, lighttpd, python http.server (HttpServer and its subclasses), and
                RawTcpServer for servers a test writes by hand
  http_clients  curl(), RawHttp, http_request(), wrk()
  capture       Capture (`tracevault capture`), its summary line, capture runs read back
  table         the reference for `query --format table`
  loader        Loader (tests/tools/tv_load), query_keys(), place_block()
  datadir       a server's data dir and log: catalog, block files, tmp, quarantine, segment
                log lines
  blocks        an encoder of trace blocks from proto/BLOCK.md (crc32c, varint, encode_block*,
                zstd_compress)
  grpc_client   GrpcClient, an independent grpcio client (Write, Query, Delete, raw bytes;
                query_all: a whole Query with its skipped blocks and status), WriteStream (a
                Write call step by step), grpc_modules(), and the message
                builders trace_record(), write_cmd(), write_chunk(), write_chunks();
                run_until_kill(): a kill -9 round of writer and querier threads
  filters       FilterSpec: a Query filter as CLI options, as a QueryFilter, and the
                reference predicate of PROTOCOL.md "Filters"; match_kind()
  relay         Relay: a TCP relay child that connects on from another loopback address
                (127.0.0.2), so a client is another peer to the server
  runner        cases() and Results: a test file's cases, their lines and its exit code
  metrics       the --metrics-addr endpoint: metrics_addr() from a log, Scrape (urllib +
                prometheus_client's parser), http_get()
  ceph          Ceph: a real S3 server (scripts/s3-ceph.sh's one-node Ceph cluster) in a temp
                dir, its s3.env, rgw_stop()/rgw_start(), s3() (a SigV4 request by curl),
                list_keys(), list_uploads(); S3Response
  systemd       (as tvtest.systemd) the units of contrib/: their keys, the system calls
                their SystemCallFilter allows, those a strace -f log shows

Run only under ctest's PYTHONDONTWRITEBYTECODE=1 (or with sys.dont_write_bytecode set before
the import), so that no __pycache__ is written into the source tree."""
from .blocks import (crc32c, encode_block, encode_block_as, encode_block_v2, encode_block_v3,
                     encode_block_zstd, varint, zstd_compress)
from .caps import (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN, Unavailable, bpf_unavailable_reason,
                   effective_caps)
from .capture import (CAPTURE_SUMMARY_KEYS, CAPTURE_SUMMARY_RE, Capture, capture_old_connection,
                      capture_records, compare_exchanges, parse_capture_limits,
                      parse_capture_summary)
from .ceph import Ceph, S3Response
from .cgroups import TempCgroup, cgroup2_mount
from .filters import FilterSpec, match_kind
from .metrics import METRICS_LINE_RE, Scrape, http_get, metrics_addr
from .datadir import (block_files, block_name, block_path, catalog_blocks, quarantined,
                      segment_log_lines, tmp_files)
from .grpc_client import (GrpcClient, WriteStream, grpc_modules, run_until_kill, trace_record,
                          write_chunk, write_chunks, write_cmd)
from .http_clients import WRK_RE, RawHttp, curl, http_request, wrk
from .loader import FAIL_LINE_RE, Loader, loader_path_key, place_block, query_keys
from .npm import npm_modules
from .relay import Relay
from .runner import Results, cases
from .procs import (BIN_DIR, GEN_DIR, SKIP, SLOWDOWN, VALGRIND, Server, binary, daemon_fds,
                    free_port, rlimit_nofile, run, skip, wait_accepting, wait_for)
from .table import RECORD_FIELDS, TABLE_HEADER, TABLE_WIDTHS, check_table, rfc3339_ms, table_row
from . import systemd
from .tmpfs import mount_tmpfs, umount_tmpfs
from .webservers import (LIGHTTPD_CONF, NGINX_CONF, HttpServer, Lighttpd, Nginx, PyHttp,
                         RawTcpServer)

__all__ = [
    "crc32c", "encode_block", "encode_block_as", "encode_block_v2", "encode_block_zstd", "varint",
    "zstd_compress",
    "CAP_BPF", "CAP_PERFMON", "CAP_SYS_ADMIN", "Unavailable", "bpf_unavailable_reason",
    "effective_caps", "npm_modules",
    "CAPTURE_SUMMARY_KEYS", "CAPTURE_SUMMARY_RE", "Capture", "capture_old_connection",
    "capture_records", "compare_exchanges", "parse_capture_summary",
    "Ceph", "S3Response",
    "TempCgroup", "cgroup2_mount",
    "block_files", "block_name", "block_path", "catalog_blocks", "quarantined",
    "segment_log_lines", "tmp_files",
    "FilterSpec", "match_kind",
    "METRICS_LINE_RE", "Scrape", "http_get", "metrics_addr",
    "GrpcClient", "WriteStream", "grpc_modules", "trace_record", "write_chunk", "write_chunks",
    "write_cmd",
    "WRK_RE", "RawHttp", "curl", "http_request", "wrk",
    "FAIL_LINE_RE", "Loader", "loader_path_key", "place_block", "query_keys",
    "Relay", "Results", "cases",
    "BIN_DIR", "GEN_DIR", "SKIP", "SLOWDOWN", "VALGRIND", "Server", "binary", "daemon_fds",
    "free_port", "rlimit_nofile", "run", "skip", "wait_accepting", "wait_for",
    "RECORD_FIELDS", "TABLE_HEADER", "TABLE_WIDTHS", "check_table", "rfc3339_ms", "table_row",
    "mount_tmpfs", "umount_tmpfs",
    "LIGHTTPD_CONF", "NGINX_CONF", "HttpServer", "Lighttpd", "Nginx", "PyHttp",
]

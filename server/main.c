/* tracevaultd: the storage server. Parses options, raises RLIMIT_NOFILE, reads the TLS files
 * and binds the metrics port (so that either fails before anything else), makes the data dir
 * its own (checked, locked, permissions enforced: data_dir.c), recovers from a crash or a lost
 * catalog (recovery.c), plans its descriptors (server/fd_plan.h), then serves TraceStore until
 * SIGTERM/SIGINT; or, with --rebuild-catalog or --scrub, does that one maintenance job and
 * exits. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <grpc/grpc.h>

#include "common/addr.h"
#include "common/duration.h"
#include "common/limit.h"
#include "common/metrics_http.h"
#include "server/http_api.h"
#include "server/local_rpc.h"
#include "common/size.h"
#include "common/tls.h"
#include "common/usage.h"
#include "server/bucket_rebuild.h"
#include "server/catalog.h"
#include "server/data_dir.h"
#include "server/fd_plan.h"
#include "server/grpc_log.h"
#include "server/otlp_export.h"
#include "server/otlp_http.h"
#include "server/raw_backfill.h"
#include "server/recovery.h"
#include "server/query.h"
#include "server/retention.h"
#include "server/peers.h"
#include "server/rpc_server.h"
#include "server/scrub.h"
#include "server/segment.h"
#include "server/store_uring.h"
#include "server/evict.h"
#include "under/persist.h"
#include "under/read.h"
#include "under/rebuild.h"
#include "proto/wire.h"

#define DEFAULT_LISTEN TV_DEFAULT_SERVER
#define ERR_LEN 512
/* glibc malloc tuning, see main(): keep up to this much free heap instead of returning it */
#define TRIM_THRESHOLD_BYTES (512 << 20)
/* allocations above this use mmap; fixed so that glibc does not adapt it per free */
#define MMAP_THRESHOLD_BYTES (32 << 20)

/* USAGE states these bounds and defaults in words */
_Static_assert(TV_WIRE_MIN_MESSAGE_BYTES == 64u << 10 && TV_WIRE_MAX_MESSAGE_BYTES == 1u << 30,
	       "update --help: 64K to 1G");
_Static_assert(TV_RPC_MAX_STREAMS == 65536 && TV_RPC_DEFAULT_MAX_WRITE_STREAMS == 256 &&
	       TV_RPC_DEFAULT_MAX_QUERY_STREAMS == 64 && TV_RPC_DEFAULT_STREAMS_PER_CONNECTION == 16,
	       "update --help: streams 1 to 65536, defaults 256, 64, 16");
_Static_assert(TV_PEERS_MAX_STREAMS == 65536, "update --help: per-peer streams 1 to 65536");
_Static_assert(TV_STORE_MAX_OPEN_FILES_MAX == 1048576 && TV_SEGMENT_MAX_OPEN_FILES == 8,
	       "update --help: block files 1 to 1048576, default 8 per Write stream");
_Static_assert(TV_RPC_MIN_IDLE_TIMEOUT_MS == 100 && TV_RPC_MAX_IDLE_TIMEOUT_MS == 86400000 &&
	       TV_RPC_DEFAULT_IDLE_TIMEOUT_MS == 60000, "update --help: 100 to 86400000 (60000)");

/* USAGE states the query memory bounds and defaults in words */
_Static_assert(TV_QUERY_MIN_MEMORY_BYTES == 16u << 20 && TV_QUERY_MAX_MEMORY_BYTES == 1ull << 40 &&
		       TV_QUERY_DEFAULT_MEMORY_BYTES == 256u << 20 &&
		       TV_QUERY_DEFAULT_TOTAL_MEMORY_BYTES == 1u << 30,
	       "update --help: 16M to 1024G, default 256M and 1G");

/* USAGE states the retention bounds and defaults in words */
_Static_assert(TV_RETENTION_MIN_TIME_NS == 1000000000ull &&
		       TV_RETENTION_MAX_TIME_NS == 36500ull * 86400 * 1000000000ull &&
		       TV_RETENTION_MAX_BYTES == 1ull << 50 &&
		       TV_RETENTION_DEFAULT_INTERVAL_NS == 10000000000ull &&
		       TV_RETENTION_MIN_INTERVAL_NS == 100000000ull &&
		       TV_RETENTION_MAX_INTERVAL_NS == 86400000000000ull &&
		       TV_RETENTION_DEFAULT_GRACE_NS == 600000000000ull &&
		       TV_RETENTION_MAX_GRACE_NS == 86400000000000ull &&
		       TV_RETENTION_MAX_TEST_DELAY_MS == 10000 && TV_RETENTION_LOW_WATER_DIV == 64,
	       "update --help: retain-time 1s to 36500d, bytes 1 to 1048576G, interval 100ms to "
	       "1d (10s), grace 0ms to 1d (10m), test delay 0 to 10000, low water 63/64");

static volatile sig_atomic_t stop_requested;

#ifdef __SANITIZE_ADDRESS__
/* Under ASan (TV_SANITIZE builds) a failed allocation returns NULL as it does in production,
 * instead of aborting: the server's out-of-memory paths (RESOURCE_EXHAUSTED with a readable
 * reason) are what the tests under RLIMIT_AS exercise. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	return "allocator_may_return_null=1";
}
#endif

/* long-only options (no letter left that reads well) */
enum {
	OPT_OTLP_MAX_MESSAGE = 256,
	OPT_OTLP_MAX_PENDING,
	OPT_OTLP_MAX_ATTRIBUTES,
	OPT_OTLP_MAX_FUTURE_SKEW,
	OPT_OTLP_MAX_ATTRIBUTE_BYTES,
	OPT_SERVICE_NAME,
	OPT_HTTP_MAX_SPANS,
	OPT_HTTP_MAX_TRACES,
	OPT_HTTP_TIMEOUT_MS,
	OPT_HTTP_MAX_RESPONSE_BYTES,
	OPT_HTTP_MAX_CONNECTIONS,
	OPT_HTTP_MAX_CONNECTIONS_PER_IP,
	OPT_HTTP_REQUEST_TIMEOUT,
	OPT_HTTP_IDLE_TIMEOUT,
};

static const struct option OPTIONS[] = {
	{ "data", required_argument, NULL, 'd' },
	{ "listen", required_argument, NULL, 'l' },
	{ "max-message-bytes", required_argument, NULL, 'm' },
	{ "max-write-streams", required_argument, NULL, 'W' },
	{ "max-query-streams", required_argument, NULL, 'Q' },
	{ "max-streams-per-connection", required_argument, NULL, 'C' },
	{ "max-write-streams-per-peer", required_argument, NULL, 'P' },
	{ "max-query-streams-per-peer", required_argument, NULL, 'G' },
	{ "max-open-files", required_argument, NULL, 'F' },
	{ "idle-timeout-ms", required_argument, NULL, 'I' },
	{ "rebuild-catalog", no_argument, NULL, 'R' },
	{ "scrub", no_argument, NULL, 'S' },
	{ "query-memory-bytes", required_argument, NULL, 'q' },
	{ "query-total-memory-bytes", required_argument, NULL, 'T' },
	{ "retain-time", required_argument, NULL, 'a' },
	{ "retain-bytes", required_argument, NULL, 'b' },
	{ "local-bytes", required_argument, NULL, 'L' },
	{ "recache", no_argument, NULL, 'K' },
	{ "retain-interval", required_argument, NULL, 'i' },
	{ "retain-query-grace", required_argument, NULL, 'g' },
	{ "test-retention-unlink-delay-ms", required_argument, NULL, 'u' },
	{ "tls-cert", required_argument, NULL, 'c' },
	{ "tls-key", required_argument, NULL, 'k' },
	{ "tls-ca", required_argument, NULL, 'A' },
	{ "tls-require-client-cert", no_argument, NULL, 'r' },
	{ "insecure", no_argument, NULL, 'N' },
	{ "http-addr", required_argument, NULL, 'M' },
	{ "metrics-addr", required_argument, NULL, 'M' }, /* the older name of --http-addr */
	{ "service-name", required_argument, NULL, OPT_SERVICE_NAME },
	{ "http-max-spans", required_argument, NULL, OPT_HTTP_MAX_SPANS },
	{ "http-max-traces", required_argument, NULL, OPT_HTTP_MAX_TRACES },
	{ "http-timeout-ms", required_argument, NULL, OPT_HTTP_TIMEOUT_MS },
	{ "http-max-response-bytes", required_argument, NULL, OPT_HTTP_MAX_RESPONSE_BYTES },
	{ "http-max-connections", required_argument, NULL, OPT_HTTP_MAX_CONNECTIONS },
	{ "http-max-connections-per-ip", required_argument, NULL, OPT_HTTP_MAX_CONNECTIONS_PER_IP },
	{ "http-request-timeout", required_argument, NULL, OPT_HTTP_REQUEST_TIMEOUT },
	{ "http-idle-timeout", required_argument, NULL, OPT_HTTP_IDLE_TIMEOUT },
	{ "under", required_argument, NULL, 'U' },
	{ "s3-endpoint", required_argument, NULL, 'E' },
	{ "s3-region", required_argument, NULL, 'Z' },
	{ "write-type", required_argument, NULL, 'w' },
	{ "s3-multipart-bytes", required_argument, NULL, 'x' },
	{ "s3-part-bytes", required_argument, NULL, 'y' },
	{ "s3-connections", required_argument, NULL, 'j' },
	{ "under-queue-segments", required_argument, NULL, 'J' },
	{ "under-queue-bytes", required_argument, NULL, 'O' },
	{ "otlp-max-message-bytes", required_argument, NULL, OPT_OTLP_MAX_MESSAGE },
	{ "otlp-max-pending-bytes", required_argument, NULL, OPT_OTLP_MAX_PENDING },
	{ "otlp-max-attributes", required_argument, NULL, OPT_OTLP_MAX_ATTRIBUTES },
	{ "otlp-max-future-skew", required_argument, NULL, OPT_OTLP_MAX_FUTURE_SKEW },
	{ "otlp-max-attribute-bytes", required_argument, NULL, OPT_OTLP_MAX_ATTRIBUTE_BYTES },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

static const char USAGE[] =
	"Usage: tracevaultd --data DIR [--listen HOST:PORT] [--max-message-bytes N]\n"
	"                   [--max-write-streams N] [--max-query-streams N]\n"
	"                   [--max-write-streams-per-peer N]\n"
	"                   [--max-query-streams-per-peer N]\n"
	"                   [--max-streams-per-connection N] [--max-open-files N]\n"
	"                   [--idle-timeout-ms MS]\n"
	"                   [--query-memory-bytes N] [--query-total-memory-bytes N]\n"
	"                   [--retain-time DURATION] [--retain-bytes SIZE]\n"
	"                   [--retain-interval DURATION] [--retain-query-grace DURATION]\n"
	"                   [--tls-cert FILE --tls-key FILE [--tls-ca FILE]\n"
	"                    [--tls-require-client-cert]] [--insecure]\n"
	"                   [--otlp-max-message-bytes N] [--otlp-max-pending-bytes N]\n"
	"                   [--otlp-max-attributes N] [--otlp-max-attribute-bytes N]\n"
	"                   [--otlp-max-future-skew DURATION]\n"
	"                   [--http-addr|--metrics-addr HOST:PORT\n"
	"                    [--service-name COMM=NAME]...\n"
	"                    [--http-max-spans N] [--http-max-traces N]\n"
	"                    [--http-timeout-ms MS] [--http-max-response-bytes SIZE]\n"
	"                    [--http-max-connections N] [--http-max-connections-per-ip N]\n"
	"                    [--http-request-timeout DURATION]\n"
	"                    [--http-idle-timeout DURATION]]\n"
	"                   [--write-type must-cache]\n"
	"                   [--under s3://BUCKET/PREFIX --s3-endpoint URL [--s3-region R]\n"
	"                    [--write-type cache-through|async-through|must-cache]\n"
	"                    [--under-queue-segments N] [--under-queue-bytes SIZE]\n"
	"                    [--s3-multipart-bytes SIZE] [--s3-part-bytes SIZE]\n"
	"                    [--s3-connections N] [--local-bytes SIZE] [--recache]]\n"
	"       tracevaultd --data DIR --rebuild-catalog | --scrub\n"
	"       tracevaultd --data DIR --rebuild-catalog --under s3://BUCKET/PREFIX\n"
	"                   --s3-endpoint URL [--s3-region R]\n"
	"\n"
	"Stores trace blocks written over gRPC (TraceStore Write) and serves time-range queries.\n"
	"Every block is checked whole before it is acknowledged (proto/BLOCK.md): at most 64M a\n"
	"block, 1M a record, an 8M zstd window.\n"
	"\n"
	"  --data DIR               data directory (created 0700): blocks/, tmp/, catalog.db,\n"
	"                           FORMAT, quarantine/, and lock, which one tracevaultd holds\n"
	"                           while it runs (a second one on DIR exits 1 naming the first\n"
	"                           one's pid). A non-empty DIR without FORMAT must hold only\n"
	"                           those names, else tracevaultd refuses it, as it refuses a DIR\n"
	"                           that is a symlink, or that it or a dir in it is writable by\n"
	"                           group or world. At start every file in it is made 0600 and\n"
	"                           every dir 0700 (a file of another owner: exit 1); block\n"
	"                           files the catalog does not list are checked and added, a\n"
	"                           lost or damaged catalog is rebuilt from them, and what does\n"
	"                           not verify goes to DIR/quarantine/ with a .reason file:\n"
	"                           start-up never deletes a block file\n"
	"  --rebuild-catalog        move catalog.db into quarantine/, rebuild it from the block\n"
	"                           files, print the count, exit 0 (1 on failure); with\n"
	"                           --under: keep catalog.db and add to it every complete\n"
	"                           segment of the bucket it lacks (below)\n"
	"  --scrub                  read every block completely (checksums, decompression,\n"
	"                           records) against its catalog row, quarantine what fails,\n"
	"                           exit 0 when nothing was damaged or missing (also at the\n"
	"                           start-up before it), else 1\n";
/* the serving options and the limits on what clients make the server hold; a second string because ISO C
 * guarantees string literals of 4095 bytes only */
static const char USAGE_LIMITS_HEAD[] =
	"  --listen HOST:PORT       address to serve on, port 0 to 65535 (default\n"
	"                           " DEFAULT_LISTEN "); port 0 picks a free port; the first\n"
	"                           stdout line is 'listening on HOST:PORT'\n"
	"  --max-message-bytes N    largest gRPC message either way, 64K to 1G (default 16M),\n"
	"                           but Query batches go out up to 4M; sizes take a K, M or\n"
	"                           G suffix (KiB, MiB, GiB)\n"
	"  --max-write-streams N    Write streams in progress at once, 1 to 65536 (default\n"
	"                           256); one more ends RESOURCE_EXHAUSTED\n"
	"  --max-query-streams N    Query streams in progress at once, 1 to 65536 (default 64)\n"
	"  --max-write-streams-per-peer N\n"
	"                           Write streams one peer (an IPv4 address, an IPv6 /64)\n"
	"                           holds at once, 1 to 65536, more counting as\n"
	"                           --max-write-streams (default half of it, at least 1):\n"
	"                           one more ends RESOURCE_EXHAUSTED, so that no one client\n"
	"                           takes them all\n"
	"  --max-query-streams-per-peer N\n"
	"                           the same for Query streams, 1 to 65536 (default half of\n"
	"                           --max-query-streams, at least 1)\n"
	"  --max-streams-per-connection N\n"
	"                           streams of one connection at once (HTTP/2; the client\n"
	"                           queues more), 1 to 65536 (default 16, or half of\n"
	"                           --max-write-streams when less)\n"
	"  --max-open-files N       temp block files holding a descriptor at once,\n"
	"                           1 to 1048576 (default 8 per Write stream); an\n"
	"                           OPEN_BLOCK beyond it ends RESOURCE_EXHAUSTED\n"
	"  --idle-timeout-ms MS     end what waits on its client this long, 100 to 86400000\n"
	"                           (default 60000): a Write stream without a message\n"
	"                           (DEADLINE_EXCEEDED, segment discarded), a call whose\n"
	"                           client takes no reply, a connection without calls\n"
	"  --query-memory-bytes N   memory one query may hold to read blocks (zstd windows,\n"
	"                           record buffers, its block list), 16M to 1024G (default\n"
	"                           256M); a query that needs more ends RESOURCE_EXHAUSTED\n"
	"  --query-total-memory-bytes N\n"
	"                           the same for all queries together, 16M to 1024G and at\n"
	"                           least --query-memory-bytes (default 1G); a query that\n"
	"                           finds it used up is refused (RESOURCE_EXHAUSTED)\n"
	"\n";
static const char USAGE_LIMITS_TAIL[] =
	"  --help                   this text\n"
	"  --version                the version, then exit\n"
	"\n"
	"At start the soft RLIMIT_NOFILE is raised to the hard limit and logged. The stream\n"
	"and block-file limits, one connection per stream and a reserve of 32 (with\n"
	"--http-addr, plus --http-max-connections and 10 for its threads: 106 by default)\n"
	"must fit in it: defaults are lowered to fit (and logged), given values that do not\n"
	"fit exit 1.\n"
	"\n"
	"Examples:\n"
	"  tracevaultd --data /var/lib/tracevault\n"
	"  tracevaultd --data /tmp/tv --listen 127.0.0.1:0\n"
	"  tracevaultd --data /var/lib/tracevault --listen 0.0.0.0:7070 \\\n"
	"      --tls-cert server.pem --tls-key server.key --tls-ca ca.pem --tls-require-client-cert\n"
	"  tracevaultd --data /var/lib/tracevault --scrub\n";

/* retention (server/retention.h); a third string for ISO C's 4095-byte literals */
static const char USAGE_RETENTION[] =
	"Retention removes the oldest whole segments (never part of one), oldest first by\n"
	"their newest record; checked after each commit and every --retain-interval. Durations\n"
	"take a unit: ms, s, m, h, d (30d, 12h).\n"
	"  --retain-time DURATION   remove a segment once its newest record is older than this\n"
	"                           (wall clock: a put of older data goes at its commit),\n"
	"                           1s to 36500d (default: kept for ever)\n"
	"  --retain-bytes SIZE      once the committed block files add up to more than this,\n"
	"                           remove the oldest segments down to 63/64 of it, 1 to\n"
	"                           1048576G (default: no limit)\n"
	"  --retain-interval DURATION\n"
	"                           how often --retain-time is checked, 100ms to 1d (default 10s)\n"
	"  --retain-query-grace DURATION\n"
	"                           a removed segment's files stay until the queries that began\n"
	"                           before its removal end, at most this long, 0ms to 1d\n"
	"                           (default 10m); past it such a query skips them (DATA_LOSS)\n"
	"  --test-retention-unlink-delay-ms MS\n"
	"                           tests only: sleep MS before each unlink of a removal, so\n"
	"                           that a kill lands inside it, 0 to 10000 (default 0)\n"
	"\n";

/* TLS on the gRPC port (a fourth string for ISO C's 4095-byte literals); README "TLS" */
static const char USAGE_TLS[] =
	"TLS (gRPC's own credentials; PEM files, at most 1M each, checked at start: a file\n"
	"that is missing, unreadable or not PEM, or a key not matching the certificate, exits 1\n"
	"naming it). Without --tls-cert the port is plaintext, allowed on a loopback --listen\n"
	"(127.0.0.0/8, ::1, localhost) only.\n"
	"  --tls-cert FILE          serve TLS with this certificate chain (leaf first); needs\n"
	"                           --tls-key\n"
	"  --tls-key FILE           the certificate's private key (unencrypted PEM, never\n"
	"                           logged): a file others may read (mode above 0600, or\n"
	"                           0640 when owned by root) exits 1 naming its mode\n"
	"  --tls-ca FILE            CA certificates for client certificates: a client that\n"
	"                           presents one must be signed by them (mutual TLS)\n"
	"  --tls-require-client-cert\n"
	"                           refuse clients without a certificate (needs --tls-ca)\n"
	"  --insecure               allow plaintext on a --listen that is not loopback (any\n"
	"                           client on the network can then read and write the archive)\n"
	"\n";

/* --metrics-addr (common/metrics_http.h, server/metrics.h); a fourth string for ISO C's
 * 4095-byte literals */
_Static_assert(TV_FD_PLAN_RESERVE == 32 && TV_METRICS_MAX_FDS(0) == 10 &&
	       TV_FD_PLAN_RESERVE + TV_METRICS_MAX_FDS(TV_METRICS_DEFAULT_MAX_CONNECTIONS) == 106,
	       "update --help: 32 reserved, + --http-max-connections + 10, 106 by default");
_Static_assert(TV_HTTP_THREADS == 4 && TV_METRICS_MAX_CONNECTIONS_MAX == 1024 &&
	       TV_METRICS_DEFAULT_MAX_CONNECTIONS == 64 &&
	       TV_METRICS_DEFAULT_MAX_CONNECTIONS_PER_IP == 16 && TV_METRICS_LISTEN_BACKLOG == 128 &&
	       TV_METRICS_MIN_TIMEOUT_MS == 1000 && TV_METRICS_MAX_TIMEOUT_MS == 3600000 &&
	       TV_METRICS_DEFAULT_REQUEST_TIMEOUT_MS == 10000 &&
	       TV_METRICS_DEFAULT_IDLE_TIMEOUT_MS == 10000,
	       "update --help and the messages: connections 4 to 1024 (64), per address 0 to "
	       "1024 (16), a queue of 128, timeouts 1s to 1h (10s)");
static const char USAGE_METRICS[] =
	"  --http-addr HOST:PORT    serve Prometheus metrics (text format 0.0.4) at\n"
	"                           http://HOST:PORT/metrics,\n"
	"                           the Jaeger query API (/api/services, /api/traces, ...),\n"
	"                           the page's routes (/api/tracevault/...) and the page at\n"
	"                           / (README \"HTTP API\"; GET and HEAD, else 405; other\n"
	"                           paths 404),\n"
	"                           and OTLP/HTTP ingest: POST /v1/traces (README \"OTLP\n"
	"                           ingest\"),\n"
	"                           from a thread of libmicrohttpd; port 0 picks a free port,\n"
	"                           named on stderr: 'tracevaultd: http on\n"
	"                           http://HOST:PORT (/metrics, /api, /, /v1/traces)'. Slow\n"
	"                           clients are bounded by --http-max-connections,\n"
	"                           --http-max-connections-per-ip, --http-request-timeout\n"
	"                           and --http-idle-timeout (below). No TLS, no auth: bind\n"
	"                           it to loopback or a trusted network (a HOST that is not\n"
	"                           loopback is logged as reachable from the network). The\n"
	"                           port is bound first: in use, it exits 1 before the data\n"
	"                           dir is touched. Default: no HTTP port\n"
	"  --metrics-addr HOST:PORT the older name of --http-addr, kept working\n"
	"  --service-name COMM=NAME an exchange of process COMM is a span of service NAME in\n"
	"                           the HTTP API (default: its comm); repeatable, 64 at most\n"
	"  --http-max-spans N       records one HTTP request reads, 1 to 10000000\n"
	"                           (default 100000); a search past it sees the newest N\n"
	"  --http-max-traces N      traces one search may ask for (limit), 1 to 100000\n"
	"                           (default 1000)\n"
	"  --http-timeout-ms MS     deadline of an HTTP request's calls, 100 to 600000\n"
	"                           (default 10000): past it 504\n"
	"  --http-max-response-bytes SIZE  largest HTTP answer, 4K to 1G (default 16M):\n"
	"                           past it 413\n"
	"  --http-max-connections N HTTP connections at once, 4 to 1024 (default 64; at least\n"
	"                           one per libmicrohttpd thread); more wait in a listen\n"
	"                           queue of 128. Each takes a descriptor of the plan below\n"
	"  --http-max-connections-per-ip N\n"
	"                           of those, at most N from one client address, 0 to 1024\n"
	"                           (default 16; 0: no cap), only when HOST is not loopback\n"
	"                           (there every client is 127.0.0.1 or ::1)\n"
	"  --http-request-timeout DURATION\n"
	"                           a request (headers and body) not received whole this\n"
	"                           long after its connection's accept or the previous\n"
	"                           request's end is cut, however slowly it keeps sending,\n"
	"                           1s to 1h (default 10s); not the server's own time\n"
	"                           (--http-timeout-ms)\n"
	"  --http-idle-timeout DURATION\n"
	"                           close a connection on which nothing moves this long,\n"
	"                           1s to 1h, a multiple of 1s (default 10s)\n"
	"\n";

/* OTLP ingest (proto/PROTOCOL.md "OTLP ingest"): the bounds are proto/otlp_span.h's and
 * server/otlp_export.h's */
_Static_assert(TV_OTLP_DEFAULT_MAX_MESSAGE_BYTES == 4u << 20 &&
	       TV_OTLP_DEFAULT_MAX_PENDING_BYTES == 64u << 20 &&
	       TV_OTLP_DEFAULT_MAX_ATTRIBUTES == 32 && TV_OTLP_DEFAULT_MAX_ATTRIBUTE_BYTES == 1024 &&
	       TV_OTLP_RETRY_DELAY_MS == 1000 &&
	       TV_OTLP_DEFAULT_MAX_FUTURE_SKEW_NS == 3600ull * 1000000000ull,
	       "update --help: the OTLP defaults");
static const char USAGE_OTLP[] =
	"OTLP ingest: the gRPC port also serves the OpenTelemetry trace service\n"
	"(opentelemetry.proto.collector.trace.v1.TraceService/Export); spans are stored\n"
	"beside the exchanges, durable before the reply (query --kind span)\n"
	"  --otlp-max-message-bytes N  largest Export request, 1K to 64M (default 4M; the\n"
	"                           smaller of it and --max-message-bytes applies); a larger\n"
	"                           one is RESOURCE_EXHAUSTED without a retry hint (OTLP/HTTP:\n"
	"                           413, also for a gzip body that inflates past it)\n"
	"  --otlp-max-pending-bytes N  Export request bytes in progress at once, 64K to 4G\n"
	"                           (default 64M); past it RESOURCE_EXHAUSTED with a\n"
	"                           RetryInfo of 1 s, which OTLP clients honour\n"
	"  --otlp-max-attributes N  attributes stored per span, 0 to 256 (default 32); the\n"
	"                           rest (and array, kvlist, bytes values) are counted in\n"
	"                           dropped_attributes_count\n"
	"  --otlp-max-attribute-bytes N  bytes kept of a string value (attribute, span name,\n"
	"                           status message), 16 to 16K (default 1K), cut at a UTF-8\n"
	"                           boundary\n"
	"  --otlp-max-future-skew DURATION  how far ahead of this server's clock a span may\n"
	"                           start, 1s to 36500d (default 1h); a later one is refused\n"
	"                           alone (partial success): it would hold its Export's block\n"
	"                           past --retain-time. Spans with a time beyond 2^63-1 ns or a\n"
	"                           NUL byte in a kept string are refused alone too\n"
	"\n";

/* --under (server/under/UNDERSTORE.md); a fifth string for ISO C's 4095-byte literals */
static const char USAGE_UNDER[] =
	"Under-store (server/under/UNDERSTORE.md): committed segments also go to an S3 bucket.\n"
	"Credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY only (never logged). At\n"
	"start the bucket is listed once: bad credentials, a missing bucket or an unreachable\n"
	"endpoint exit 1 naming the cause.\n"
	"  --under s3://BUCKET/PREFIX\n"
	"                           the bucket and key prefix (PREFIX at most 512 bytes);\n"
	"                           objects go under PREFIX/v1/YYYY/MM/DD/HH/SEGMENT/\n"
	"  --s3-endpoint URL        http(s)://HOST[:PORT] of the S3 service (needed)\n"
	"  --s3-region R            the SigV4 signing region (default us-east-1)\n"
	"  --write-type TYPE        must-cache: new segments local only (the default without\n"
	"                           --under; with it, what is in the bucket is still read\n"
	"                           and deleted with its segment);\n"
	"                           cache-through (the default with --under): a COMMIT is\n"
	"                           answered once the segment's blocks and manifest are in S3\n"
	"                           and in the local catalog; an S3 failure fails the segment\n"
	"                           (never retried) and deletes what of it reached S3; a\n"
	"                           segment whose manifest key is in the bucket already\n"
	"                           (another server's of that id, or it was written before)\n"
	"                           ends ALREADY_EXISTS and nothing in S3 is deleted;\n"
	"                           async-through: a COMMIT is answered once the segment is\n"
	"                           committed locally, and it is uploaded in the background\n"
	"                           (in commit order, retried with backoff while S3 fails;\n"
	"                           a restart queues again what was not uploaded)\n"
	"  --under-queue-segments N async-through: at most N committed segments wait for\n"
	"                           their upload (1 to 1000000, default 1024); a COMMIT past\n"
	"                           it waits unanswered until uploads make room\n"
	"  --under-queue-bytes SIZE the same bound for their block bytes (1M to 1024G,\n"
	"                           default 4G; a lone larger segment goes when the queue\n"
	"                           is empty)\n"
	"  --s3-multipart-bytes SIZE\n"
	"                           a block of at least SIZE goes as a multipart upload,\n"
	"                           aborted on failure (default 64M; at least the part size,\n"
	"                           at most 5G)\n"
	"  --s3-part-bytes SIZE     the parts of a multipart upload (default 16M; 5M to 5G)\n"
	"  --s3-connections N       a segment's blocks go up on at most N connections at once,\n"
	"                           then its manifest (default 4; 1 to 16)\n"
	"  --local-bytes SIZE       once the committed block files in blocks/ add up to more\n"
	"                           than this, evict persisted segments, oldest first, down to\n"
	"                           1/64 below it: their files are deleted, their catalog rows\n"
	"                           stay, and a query reads their blocks back from S3\n"
	"                           (1 to 1048576G, as --retain-bytes; off by default).\n"
	"                           Segments not yet in S3 are never evicted\n"
	"  --recache                a block read back from S3 is written to blocks/ again;\n"
	"                           once all of its segment is, the segment is local again\n"
	"                           (and may be evicted again by age)\n"
	"  --rebuild-catalog --under s3://BUCKET/PREFIX\n"
	"                           list PREFIX/v1/, check each manifest, its objects' sizes\n"
	"                           and each block's header, and add the segments the catalog\n"
	"                           lacks, evicted (read from S3); rows are never replaced or\n"
	"                           removed. Prints a summary (one line per kind of skipped\n"
	"                           segment); exit 0 when every segment with a manifest is in\n"
	"                           the catalog, 1 when one was skipped or S3 failed\n"
	"\n";

/* What this run does: serve, or one maintenance job on a data dir no server holds. */
enum mode { MODE_SERVE, MODE_REBUILD, MODE_SCRUB };

#define EXIT_USAGE 2

/* Every usage error of tracevaultd: one line "tracevaultd: <reason>" on stderr, exit 2. */
static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("tracevaultd: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return EXIT_USAGE;
}

/* A count or a time in ms: decimal digits only, within its owner's bound; a usage error naming
 * the bound otherwise (returns EXIT_USAGE, else 0). */
static int parse_count(const char *name, const char *arg, const struct tv_limit *l,
		       uint64_t *out)
{
	const char *p = arg;
	char bound[64];

	if (tv_parse_digits(&p, out) == 0 && *p == '\0' && tv_limit_check(l, *out) == 0)
		return 0;
	tv_limit_format(l, false, bound, sizeof(bound));
	return usage_error("invalid --%s: '%s' (%s)", name, arg, bound);
}

/* The TLS options together: cert and key go in pairs, a CA and the client-certificate rule
 * need TLS, and a --listen that is not loopback needs TLS or --insecure. listen_host is the
 * host of --listen listen_addr (listen_set 0: the loopback default). EXIT_USAGE after one line, or 0. */
static int check_tls_options(const char *listen_addr, const char *listen_host, int listen_set,
			     const char *cert,
			     const char *key, const char *ca, bool require_client_cert,
			     bool insecure)
{
	if (cert && !key)
		return usage_error("--tls-cert needs --tls-key (the certificate's private key)");
	if (key && !cert)
		return usage_error("--tls-key needs --tls-cert (the certificate it belongs to)");
	if (ca && !cert)
		return usage_error("--tls-ca verifies client certificates over TLS: give "
				   "--tls-cert and --tls-key too");
	if (require_client_cert && !ca)
		return usage_error("--tls-require-client-cert needs --tls-ca (the CA that "
				   "signs client certificates)");
	if (insecure && cert)
		return usage_error("--insecure allows plaintext; it does not go with --tls-cert");
	if (!cert && !insecure && listen_set && !tv_host_is_loopback(listen_host))
		return usage_error("--listen %s is not loopback: serve it with --tls-cert and "
				   "--tls-key, or give --insecure to allow plaintext there",
				   listen_addr);
	return 0;
}

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

/* --under's companions: each needs --under, --under needs an endpoint and the credentials in the
 * environment, and serves or rebuilds. 0 or a usage error's exit code. */
static int check_under_options(enum mode mode, const char *under, const char *endpoint,
			       const char *region, const char *write_type, int queue_set,
			       const struct tv_s3_put_limits *put_limits, bool put_limits_set,
			       char *bucket, size_t bucket_len, char *prefix, size_t prefix_len)
{
	char why[ERR_LEN];

	if (queue_set && (!write_type || strcmp(write_type, "async-through")))
		return usage_error("--under-queue-segments and --under-queue-bytes go with "
				   "--write-type async-through");
	if (!under && (endpoint || region))
		return usage_error("--s3-endpoint and --s3-region go with --under s3://BUCKET/PREFIX");
	if (!under && put_limits_set)
		return usage_error("--s3-multipart-bytes, --s3-part-bytes and --s3-connections go "
				   "with --under s3://BUCKET/PREFIX");
	if (tv_s3_put_limits_check(put_limits, why, sizeof(why)))
		return usage_error("invalid --s3-multipart-bytes / --s3-part-bytes: %s", why);
	if (!under && write_type && strcmp(write_type, "must-cache"))
		return usage_error("--write-type %s needs --under s3://BUCKET/PREFIX", write_type);
	if (!under)
		return 0;
	if (mode == MODE_SCRUB)
		return usage_error("--under serves or rebuilds (--rebuild-catalog); --scrub does "
				   "not use it");
	if (mode == MODE_REBUILD && (write_type || put_limits_set))
		return usage_error("--%s serves; --rebuild-catalog does not",
				   write_type ? "write-type" : "s3-multipart-bytes, --s3-part-bytes or "
				   "--s3-connections");
	if (tv_persist_parse_uri(under, bucket, bucket_len, prefix, prefix_len, why, sizeof(why)))
		return usage_error("%s", why);
	if (!endpoint)
		return usage_error("--under needs --s3-endpoint URL");
	if (tv_s3_check_endpoint(endpoint, region ? region : TV_PERSIST_DEFAULT_REGION, why,
				 sizeof(why)))
		return usage_error("invalid --s3-endpoint / --s3-region: %s", why);
	if (!getenv("AWS_ACCESS_KEY_ID") || !*getenv("AWS_ACCESS_KEY_ID") ||
	    !getenv("AWS_SECRET_ACCESS_KEY") || !*getenv("AWS_SECRET_ACCESS_KEY"))
		return usage_error("--under needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in "
				   "the environment");
	return 0;
}

/* The hint after a failed bucket check (RET, and WHY, what S3 said): the option to look at. */
static const char *under_hint(int ret, const char *why)
{
	if (strstr(why, "SignatureDoesNotMatch"))
		return " (check AWS_SECRET_ACCESS_KEY)";
	if (strstr(why, "InvalidAccessKeyId"))
		return " (check AWS_ACCESS_KEY_ID)";
	if (ret == -ENOENT)
		return " (no such bucket)";
	if (ret == -ECONNREFUSED || ret == -ETIMEDOUT || ret == -EHOSTUNREACH)
		return " (check --s3-endpoint)";
	return "";
}

/* The persister of --under (server/under/persist.h), after its start-up check of the bucket.
 * 0, or -1 with err one line "--under URI: what S3 said (hint)", never the secret. */
static int open_under(struct tv_persist **out, const char *under, const char *bucket,
		      const char *prefix, const char *endpoint, const char *region,
		      const char *write_type, uint64_t queue_segments, uint64_t queue_bytes,
		      const struct tv_s3_put_limits *put_limits, unsigned connections,
		      struct tv_persist_stats *stats, char *err, size_t errlen)
{
	char why[ERR_LEN - 128];
	struct tv_persist_opts po = {
		.endpoint = endpoint, .region = region ? region : TV_PERSIST_DEFAULT_REGION,
		.bucket = bucket, .prefix = prefix,
		.access_key = getenv("AWS_ACCESS_KEY_ID"),
		.secret_key = getenv("AWS_SECRET_ACCESS_KEY"),
		.put_limits = *put_limits, .connections = connections, .stats = stats,
		.async = write_type && !strcmp(write_type, "async-through"),
		.must_cache = write_type && !strcmp(write_type, "must-cache"),
		.queue_segments = queue_segments, .queue_bytes = queue_bytes,
	};
	int ret;

	ret = tv_persist_open(out, &po, why, sizeof(why));
	if (!ret) {
		fprintf(stderr, "tracevaultd: under-store s3://%s/%s at %s (%s), write type "
			"%s\n", bucket, prefix, endpoint, po.region,
			po.async ? "async-through" : po.must_cache ? "must-cache" : "cache-through");
		return 0;
	}
	snprintf(err, errlen, "--under %s: %s%s", under, why, under_hint(ret, why));
	return -1;
}

/* --rebuild-catalog --under: the bucket's client, checked (listed once) before the data dir
 * is touched. 0, or -1 with err as open_under's. */
static int open_rebuild(struct tv_rebuild **out, const char *under, const char *bucket,
			const char *prefix, const char *endpoint, const char *region, char *err,
			size_t errlen)
{
	char why[ERR_LEN - 128];
	struct tv_rebuild_opts ro = {
		.endpoint = endpoint, .region = region ? region : TV_PERSIST_DEFAULT_REGION,
		.bucket = bucket, .prefix = prefix,
		.access_key = getenv("AWS_ACCESS_KEY_ID"),
		.secret_key = getenv("AWS_SECRET_ACCESS_KEY"),
	};
	int ret = tv_rebuild_open(out, &ro, why, sizeof(why));

	if (!ret)
		return 0;
	snprintf(err, errlen, "--under %s: %s%s", under, why, under_hint(ret, why));
	return -1;
}

/* The read-back client of --under (server/under/read.h): its own S3 connection, for the
 * server's thread (the persister's is its worker's). 0, or -1 with err one line. */
static int open_reader(struct tv_under_reader **out, const char *under, const char *bucket,
		       const char *prefix, const char *endpoint, const char *region,
		       struct tv_under_read_stats *stats, char *err, size_t errlen)
{
	char why[ERR_LEN - 128];
	struct tv_persist_opts po = {
		.endpoint = endpoint, .region = region ? region : TV_PERSIST_DEFAULT_REGION,
		.bucket = bucket, .prefix = prefix,
		.access_key = getenv("AWS_ACCESS_KEY_ID"),
		.secret_key = getenv("AWS_SECRET_ACCESS_KEY"),
	};

	if (!tv_under_reader_open(out, &po, stats, why, sizeof(why)))
		return 0;
	snprintf(err, errlen, "--under %s: read-back client: %s", under, why);
	return -1;
}

/* Everything before serving: the data dir (checked, locked, permissions), the store, the
 * catalog (moved aside and rebuilt when unusable or when rebuild is set), recovery, and the
 * FORMAT marker once all of that succeeded. Returns 0 or -1 with a reason in err. */
static int open_data(const char *data_dir, int rebuild, struct tv_data_dir *dd,
		     struct tv_store **store, struct tv_catalog **catalog,
		     struct tv_recovery_report *rep, char *err, size_t errlen)
{
	char path[PATH_MAX], real[PATH_MAX];

	if (tv_data_dir_open(dd, data_dir, err, errlen))
		return -1;
	/* From here the dir goes by its resolved path: the catalog is opened without following
	 * symlinks (a catalog.db planted as one is not ours), and SQLite applies that to every
	 * component of the path, so a data dir reached through a parent that is a symlink (a
	 * mount's usual layout) would fail there, after the steps above had already run. */
	if (!realpath(data_dir, real)) {
		snprintf(err, errlen, "cannot resolve data dir %s: %s", data_dir, strerror(errno));
		return -1;
	}
	data_dir = real;
	if (snprintf(path, sizeof(path), "%s/%s", data_dir, TV_CATALOG_FILE) >= (int)sizeof(path)) {
		/* bounded: -O2's -Wformat-truncation weighs a PATH_MAX buffer against err */
		snprintf(err, errlen, "data dir path too long: %.200s...", data_dir);
		return -1;
	}
	if (!dd->blocks_present && !dd->is_new &&
	    tv_recovery_check_blocks_dir(data_dir, path, err, errlen))
		return -1;
	if (tv_store_open(store, data_dir, err, errlen) ||
	    tv_recovery_open_catalog(catalog, *store, path, rebuild, err, errlen) ||
	    tv_recover(*catalog, *store, rep, err, errlen) ||
	    tv_raw_backfill(*catalog, *store, NULL, NULL, err, errlen) ||
	    tv_data_dir_mark(dd, data_dir, err, errlen))
		return -1;
	if (rebuild)
		printf("catalog rebuilt: %llu blocks, %llu files quarantined\n",
		       (unsigned long long)rep->blocks, (unsigned long long)rep->quarantined);
	return 0;
}

static size_t min_size(size_t a, size_t b)
{
	return a < b ? a : b;
}

int main(int argc, char **argv)
{
	struct tv_rpc_server_opts o = {
		.listen_addr = DEFAULT_LISTEN,
		.max_message_bytes = TV_DEFAULT_MAX_MESSAGE_BYTES,
		.retention = { .interval_ns = TV_RETENTION_DEFAULT_INTERVAL_NS,
			       .grace_ns = TV_RETENTION_DEFAULT_GRACE_NS },
		.otlp_limits = { .max_attributes = TV_OTLP_DEFAULT_MAX_ATTRIBUTES,
				 .max_attribute_bytes = TV_OTLP_DEFAULT_MAX_ATTRIBUTE_BYTES,
				 .max_future_skew_ns = TV_OTLP_DEFAULT_MAX_FUTURE_SKEW_NS },
	};
	struct tv_rpc_server *srv = NULL;
	struct tv_catalog *catalog = NULL;
	struct tv_store *store = NULL;
	struct tv_data_dir dd = { .dir_fd = -1, .lock_fd = -1 };
	struct tv_recovery_report recovered;
	struct tv_scrub_report scrub;
	const char *data_dir = NULL, *metrics_addr = NULL;
	struct tv_metrics_http *metrics = NULL;
	char err[ERR_LEN], metrics_bound[NI_MAXHOST + 16];
	/* the HTTP API (server/http_api.h) on the --http-addr port, its own gRPC socket */
	static const char *service_names[TV_HTTP_MAX_SERVICE_NAMES];
	struct tv_http_api_opts http_o = { .service_names = service_names };
	struct tv_http_api *http_api = NULL;
	struct tv_otlp_http *otlp_http = NULL; /* POST /v1/traces on the same port */
	/* the port's connection bounds (--http-max-connections and the rest): each needs
	 * --http-addr */
	struct tv_metrics_http_limits http_limits = tv_metrics_http_limits_default();
	bool http_limits_set = false;
	const char *metrics_opt = "http-addr";
	struct tv_local_rpc_dir local_dir = { 0 };
	struct sigaction sa = { .sa_handler = on_signal };
	enum mode mode = MODE_SERVE;
	int opt, port = 0, rc = 1, listen_set = 0, retain_set = 0, longidx = 0;
	/* TLS: the file options, and the PEM read from them (wiped once the server has its copy) */
	const char *tls_cert = NULL, *tls_key = NULL, *tls_ca = NULL;
	bool require_client_cert = false, insecure = false;
	struct tv_tls_pem tls = { 0 };
	char listen_host[NI_MAXHOST];
	unsigned listen_port;
	struct tv_fd_plan plan = { 0 };
	uint64_t per_conn = 0, idle_ms = 0, write_per_peer = 0, query_per_peer = 0;
	/* --under: the URI, endpoint, region, write type; the persister and its counters */
	const char *under = NULL, *s3_endpoint = NULL, *s3_region = NULL, *write_type = NULL;
	char under_bucket[64], under_prefix[TV_PERSIST_PREFIX_MAX + 1];
	struct tv_persist *persist = NULL;
	static struct tv_persist_stats under_stats; /* read by the metrics thread until exit */
	/* --rebuild-catalog --under: the bucket's client and what the rebuild did */
	struct tv_rebuild *rebuild = NULL;
	struct tv_rebuild_report rebuilt = { 0 };
	struct tv_s3_put_limits put_limits = tv_s3_put_limits_default();
	/* --s3-multipart-bytes, --s3-part-bytes, --s3-connections: each needs --under */
	bool put_limits_set = false;
	uint64_t s3_connections = TV_PERSIST_CONNECTIONS_DEFAULT;
	/* --local-bytes: eviction, and the read-back of evicted blocks (server/evict.h) */
	uint64_t local_bytes = 0;
	bool recache = false;
	struct tv_under_reader *reader = NULL;
	struct tv_evict *evict = NULL;
	static struct tv_evict_stats evict_stats; /* read by the metrics thread until exit */
	uint64_t under_queue_segments = 0, under_queue_bytes = 0; /* async-through's; 0: default */

	opterr = 0;
	for (int before = optind; (opt = getopt_long(argc, argv, ":h", OPTIONS, &longidx)) != -1;
	     before = optind) {
		switch (opt) {
		case 'd':
			data_dir = optarg;
			break;
		case 'l':
			if (tv_hostport_parse(optarg, listen_host, sizeof(listen_host), &listen_port))
				return usage_error("invalid --listen: '%s' (HOST:PORT or [IPv6]:PORT, "
						   "port 0 to 65535)", optarg);
			o.listen_addr = optarg;
			listen_set = 1;
			break;
		case 'R':
		case 'S':
			if (mode != MODE_SERVE)
				return usage_error("--rebuild-catalog and --scrub exclude each other");
			mode = opt == 'R' ? MODE_REBUILD : MODE_SCRUB;
			break;
		case 'm': {
			/* the client's parser and bound (proto/wire.h): both sides accept the same */
			uint64_t v;
			char bound[64];

			if (tv_size_parse(optarg, &v) ||
			    tv_limit_check(&tv_wire_message_bytes_limit, v)) {
				tv_limit_format(&tv_wire_message_bytes_limit, true, bound,
						sizeof(bound));
				return usage_error("invalid --max-message-bytes: '%s' (%s)", optarg,
						   bound);
			}
			o.max_message_bytes = (size_t)v;
			break;
		}
		case 'W':
		case 'Q':
		case 'C':
		case 'P':
		case 'G':
		case 'F':
		case 'I': {
			const struct tv_limit *l = opt == 'F' ? &tv_store_max_files_limit :
						   opt == 'I' ? &tv_rpc_idle_timeout_ms_limit :
						   opt == 'P' || opt == 'G' ? &tv_peers_streams_limit :
								&tv_rpc_streams_limit;
			uint64_t *to = opt == 'W' ? &plan.write_streams :
				       opt == 'Q' ? &plan.query_streams :
				       opt == 'F' ? &plan.open_files :
				       opt == 'P' ? &write_per_peer :
				       opt == 'G' ? &query_per_peer :
				       opt == 'C' ? &per_conn : &idle_ms;

			if (parse_count(OPTIONS[longidx].name, optarg, l, to))
				return EXIT_USAGE;
			break;
		}
		case OPT_OTLP_MAX_MESSAGE:
		case OPT_OTLP_MAX_PENDING:
		case OPT_OTLP_MAX_ATTRIBUTE_BYTES: {
			const struct tv_limit *l = opt == OPT_OTLP_MAX_MESSAGE ?
							   &tv_otlp_max_message_bytes_limit :
						   opt == OPT_OTLP_MAX_PENDING ?
							   &tv_otlp_max_pending_bytes_limit :
							   &tv_otlp_max_attribute_bytes_limit;
			uint64_t v;
			char bound[64];

			if (tv_size_parse(optarg, &v) || tv_limit_check(l, v)) {
				tv_limit_format(l, true, bound, sizeof(bound));
				return usage_error("invalid --%s: '%s' (%s)", OPTIONS[longidx].name,
						   optarg, bound);
			}
			if (opt == OPT_OTLP_MAX_MESSAGE)
				o.otlp_max_message_bytes = (size_t)v;
			else if (opt == OPT_OTLP_MAX_PENDING)
				o.otlp_max_pending_bytes = (size_t)v;
			else
				o.otlp_limits.max_attribute_bytes = (size_t)v;
			break;
		}
		case OPT_OTLP_MAX_FUTURE_SKEW: {
			uint64_t v;

			if (tv_duration_parse(optarg, &v) ||
			    tv_limit_check(&tv_otlp_max_future_skew_limit, v))
				return usage_error("invalid --otlp-max-future-skew: '%s' (1s to "
						   "36500d)", optarg);
			o.otlp_limits.max_future_skew_ns = v;
			break;
		}
		case OPT_OTLP_MAX_ATTRIBUTES: {
			uint64_t v;

			if (parse_count(OPTIONS[longidx].name, optarg, &tv_otlp_max_attributes_limit,
					&v))
				return EXIT_USAGE;
			o.otlp_limits.max_attributes = (unsigned)v;
			break;
		}
		case 'q':
		case 'T': {
			/* server/query.h owns both bounds */
			const struct tv_limit *l = opt == 'q' ? &tv_query_memory_bytes_limit :
								&tv_query_total_memory_bytes_limit;
			uint64_t v;
			char bound[64];

			if (tv_size_parse(optarg, &v) || tv_limit_check(l, v)) {
				tv_limit_format(l, true, bound, sizeof(bound));
				return usage_error("invalid --%s: '%s' (%s)",
						   opt == 'q' ? "query-memory-bytes" :
								"query-total-memory-bytes",
						   optarg, bound);
			}
			*(opt == 'q' ? &o.query_memory_bytes : &o.query_total_memory_bytes) = (size_t)v;
			break;
		}
		case 'a':
		case 'i':
		case 'g': {
			const struct tv_limit *l = opt == 'a' ? &tv_retention_time_limit :
						   opt == 'i' ? &tv_retention_interval_limit :
								&tv_retention_grace_limit;
			uint64_t *to = opt == 'a' ? &o.retention.time_ns :
				       opt == 'i' ? &o.retention.interval_ns : &o.retention.grace_ns;

			if (tv_duration_parse(optarg, to) || tv_limit_check(l, *to))
				return usage_error("invalid --%s: '%s' (%s)", OPTIONS[longidx].name,
						   optarg, opt == 'a' ? "1s to 36500d" :
						   opt == 'i' ? "100ms to 1d" : "0ms to 1d");
			retain_set = 1;
			break;
		}
		case 'b': {
			char bound[64];

			if (tv_size_parse(optarg, &o.retention.bytes) ||
			    tv_limit_check(&tv_retention_bytes_limit, o.retention.bytes)) {
				tv_limit_format(&tv_retention_bytes_limit, true, bound, sizeof(bound));
				return usage_error("invalid --retain-bytes: '%s' (%s)", optarg, bound);
			}
			retain_set = 1;
			break;
		}
		case 'L': {
			char bound[64];

			if (tv_size_parse(optarg, &local_bytes) ||
			    tv_limit_check(&tv_evict_local_bytes_limit, local_bytes)) {
				tv_limit_format(&tv_evict_local_bytes_limit, true, bound,
						sizeof(bound));
				return usage_error("invalid --local-bytes: '%s' (%s)", optarg, bound);
			}
			break;
		}
		case 'K':
			recache = true;
			break;
		case 'u':
			if (parse_count(OPTIONS[longidx].name, optarg, &tv_retention_test_delay_limit,
					&o.retention.test_unlink_delay_ms))
				return EXIT_USAGE;
			retain_set = 1;
			break;
		case 'c':
			tls_cert = optarg;
			break;
		case 'k':
			tls_key = optarg;
			break;
		case 'A':
			tls_ca = optarg;
			break;
		case 'r':
			require_client_cert = true;
			break;
		case 'N':
			insecure = true;
			break;
		case 'M':
			if (tv_metrics_http_check_addr(optarg))
				return usage_error("invalid --%s: '%s' (HOST:PORT or "
						   "[IPv6]:PORT, port 0 to 65535)",
						   OPTIONS[longidx].name, optarg);
			metrics_addr = optarg;
			metrics_opt = OPTIONS[longidx].name; /* messages name it as given */
			break;
		case OPT_SERVICE_NAME:
			if (tv_http_check_service_name(optarg))
				return usage_error("invalid --service-name: '%s' (COMM=NAME, each 1 "
						   "to 255 bytes)", optarg);
			if (http_o.n_service_names == TV_HTTP_MAX_SERVICE_NAMES)
				return usage_error("--service-name: more than %d",
						   TV_HTTP_MAX_SERVICE_NAMES);
			service_names[http_o.n_service_names++] = optarg;
			break;
		case OPT_HTTP_MAX_SPANS:
		case OPT_HTTP_MAX_TRACES:
		case OPT_HTTP_TIMEOUT_MS: {
			uint64_t v;

			if (parse_count(OPTIONS[longidx].name, optarg,
					opt == OPT_HTTP_MAX_SPANS ? &tv_http_max_spans_limit :
					opt == OPT_HTTP_MAX_TRACES ? &tv_http_max_traces_limit :
								      &tv_http_timeout_ms_limit, &v))
				return EXIT_USAGE;
			if (opt == OPT_HTTP_MAX_SPANS)
				http_o.max_spans = v;
			else if (opt == OPT_HTTP_MAX_TRACES)
				http_o.max_traces = (unsigned)v;
			else
				http_o.timeout_ms = (unsigned)v;
			break;
		}
		case OPT_HTTP_MAX_CONNECTIONS:
		case OPT_HTTP_MAX_CONNECTIONS_PER_IP: {
			/* common/metrics_http.h owns both bounds */
			uint64_t v;

			if (parse_count(OPTIONS[longidx].name, optarg,
					opt == OPT_HTTP_MAX_CONNECTIONS ?
						&tv_metrics_max_connections_limit :
						&tv_metrics_max_connections_per_ip_limit, &v))
				return EXIT_USAGE;
			*(opt == OPT_HTTP_MAX_CONNECTIONS ? &http_limits.max_connections :
							    &http_limits.max_connections_per_ip) = (int)v;
			http_limits_set = true;
			break;
		}
		case OPT_HTTP_REQUEST_TIMEOUT:
		case OPT_HTTP_IDLE_TIMEOUT: {
			/* a DURATION as --retain-*'s; the bound (common/metrics_http.h) is in ms,
			 * which every unit of common/duration.h is a whole number of */
			const struct tv_limit *l = opt == OPT_HTTP_REQUEST_TIMEOUT ?
							   &tv_metrics_request_timeout_ms_limit :
							   &tv_metrics_idle_timeout_ms_limit;
			uint64_t ns;

			if (tv_duration_parse(optarg, &ns) || tv_limit_check(l, ns / 1000000u))
				return usage_error("invalid --%s: '%s' (%s)", OPTIONS[longidx].name,
						   optarg, opt == OPT_HTTP_REQUEST_TIMEOUT ?
						   "1s to 1h" : "1s to 1h, a multiple of 1s");
			*(opt == OPT_HTTP_REQUEST_TIMEOUT ? &http_limits.request_timeout_ms :
							    &http_limits.idle_timeout_ms) =
				(int)(ns / 1000000u);
			http_limits_set = true;
			break;
		}
		case OPT_HTTP_MAX_RESPONSE_BYTES: {
			uint64_t v;
			char bound[64];

			if (tv_size_parse(optarg, &v) ||
			    tv_limit_check(&tv_http_max_response_bytes_limit, v)) {
				tv_limit_format(&tv_http_max_response_bytes_limit, true, bound,
						sizeof(bound));
				return usage_error("invalid --%s: '%s' (%s)", OPTIONS[longidx].name,
						   optarg, bound);
			}
			http_o.max_response_bytes = (size_t)v;
			break;
		}
		case 'U':
			under = optarg;
			break;
		case 'E':
			s3_endpoint = optarg;
			break;
		case 'Z':
			s3_region = optarg;
			break;
		case 'w':
			if (strcmp(optarg, "must-cache") && strcmp(optarg, "cache-through") &&
			    strcmp(optarg, "async-through"))
				return usage_error("invalid --write-type: '%s' (must-cache, "
						   "cache-through or async-through)", optarg);
			write_type = optarg;
			break;
		case 'x':
		case 'y':
			/* the bounds need both values: checked in check_under_options */
			if (tv_size_parse(optarg, opt == 'x' ? &put_limits.multipart_bytes :
						  &put_limits.part_bytes))
				return usage_error("invalid --%s: '%s' (a size: 5M, 64M, 1G)",
						   OPTIONS[longidx].name, optarg);
			put_limits_set = true;
			break;
		case 'j':
			if (parse_count(OPTIONS[longidx].name, optarg, &tv_persist_connections_limit,
					&s3_connections))
				return EXIT_USAGE;
			put_limits_set = true;
			break;
		case 'J':
			if (parse_count(OPTIONS[longidx].name, optarg,
					&tv_persist_queue_segments_limit, &under_queue_segments))
				return EXIT_USAGE;
			break;
		case 'O': {
			char bound[64];

			if (tv_size_parse(optarg, &under_queue_bytes) ||
			    tv_limit_check(&tv_persist_queue_bytes_limit, under_queue_bytes)) {
				tv_limit_format(&tv_persist_queue_bytes_limit, true, bound,
						sizeof(bound));
				return usage_error("invalid --under-queue-bytes: '%s' (%s)", optarg,
						   bound);
			}
			break;
		}
		case 'V':
			puts("tracevaultd " TV_VERSION);
			return 0;
		case 'h':
			fputs(USAGE, stdout);
			fputs(USAGE_LIMITS_HEAD, stdout);
			fputs(USAGE_RETENTION, stdout);
			fputs(USAGE_TLS, stdout);
			fputs(USAGE_METRICS, stdout);
			fputs(USAGE_OTLP, stdout);
			fputs(USAGE_UNDER, stdout);
			fputs(USAGE_LIMITS_TAIL, stdout);
			return 0;
		default: /* '?' or ':': the client's words (common/usage.h) */
			tv_usage_getopt_reason(opt, tv_usage_getopt_arg(argv, before, optind), optopt,
					       err, sizeof(err));
			return usage_error("%s", err);
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	if (!data_dir)
		return usage_error("missing --data DIR");
	if (!*data_dir)
		return usage_error("invalid --data: '' (a directory path)");
	if (mode != MODE_SERVE && listen_set)
		return usage_error("--listen serves; --rebuild-catalog and --scrub do not");
	if (mode != MODE_SERVE && metrics_addr)
		return usage_error("--%s serves; --rebuild-catalog and --scrub do not",
				   metrics_opt);
	if (!metrics_addr && (http_o.n_service_names || http_o.max_spans || http_o.max_traces ||
			      http_o.timeout_ms || http_o.max_response_bytes || http_limits_set))
		return usage_error("--service-name and --http-* options need --http-addr");
	if (mode != MODE_SERVE && retain_set)
		return usage_error("--retain-* options serve; --rebuild-catalog and --scrub do "
				   "not");
	if (mode != MODE_SERVE && (tls_cert || tls_key || tls_ca || require_client_cert || insecure))
		return usage_error("--tls-* and --insecure serve; --rebuild-catalog and --scrub do "
				   "not");
	rc = check_under_options(mode, under, s3_endpoint, s3_region, write_type,
				 under_queue_segments || under_queue_bytes, &put_limits,
				 put_limits_set, under_bucket, sizeof(under_bucket), under_prefix,
				 sizeof(under_prefix));
	if (rc)
		return rc;
	if (recache && !under)
		return usage_error("--recache needs --under s3://BUCKET/PREFIX (it re-caches blocks "
				   "read back from it)");
	if (local_bytes && !under)
		return usage_error("--local-bytes needs --under s3://BUCKET/PREFIX (only segments "
				   "in the under-store are evicted)");
	if ((local_bytes || recache) && mode != MODE_SERVE)
		return usage_error("--%s serves; --rebuild-catalog does not",
				   local_bytes ? "local-bytes" : "recache");
	rc = check_tls_options(o.listen_addr, listen_host, listen_set, tls_cert, tls_key, tls_ca,
			       require_client_cert, insecure);
	if (rc)
		return rc;
	rc = 1;
	{
		size_t per = o.query_memory_bytes ? o.query_memory_bytes :
						    TV_QUERY_DEFAULT_MEMORY_BYTES;
		size_t all = o.query_total_memory_bytes ? o.query_total_memory_bytes :
							  TV_QUERY_DEFAULT_TOTAL_MEMORY_BYTES;
		char a[32], b[32];

		if (all < per) {
			tv_size_format(all, a, sizeof(a));
			tv_size_format(per, b, sizeof(b));
			return usage_error("--query-total-memory-bytes %s is below "
					   "--query-memory-bytes %s: one query could never run", a, b);
		}
	}

	/* Received message slices are malloc'd by gRPC and freed in bursts when their writes
	 * complete; by default glibc then shrinks the heap with brk and the next messages fault
	 * the pages back in. Measured (perf, bench/run.sh): the shrink's TLB shootdowns plus those
	 * faults were ~45% of the server's CPU. Keep freed memory for reuse instead: the heap
	 * stays at its high-water mark, which the per-stream in-flight bound already limits. */
	mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES);
	mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
	umask(077); /* every file and dir we create is ours alone */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* a file-size limit (RLIMIT_FSIZE) must fail one segment with EFBIG, not kill the server */
	signal(SIGXFSZ, SIG_IGN);

	tv_fd_plan_raise(&plan); /* before anything opens descriptors: recovery may need them */
	/* the TLS files before the data dir: a bad one fails the start at once, not after a
	 * recovery that may take minutes */
	if (mode == MODE_SERVE && tv_tls_pem_load(&tls, tls_ca, tls_cert, tls_key, err,
						  sizeof(err)))
		goto fail;
	/* the metrics port too, bound now and served once gRPC is up: a port in use (or no
	 * libmicrohttpd) is one line and exit 1 before the data dir is made, locked or
	 * recovered */
	if (metrics_addr && tv_metrics_http_bind(&metrics, metrics_addr, &http_limits,
						 metrics_bound, sizeof(metrics_bound), err,
						 sizeof(err)))
		goto fail;
	/* the bucket before the data dir too: bad credentials, a missing bucket or an unreachable
	 * endpoint are one line and exit 1 before anything local is touched */
	tv_persist_stats_init(&under_stats);
	if (under && mode == MODE_SERVE &&
	    open_under(&persist, under, under_bucket, under_prefix, s3_endpoint, s3_region,
		       write_type, under_queue_segments, under_queue_bytes, &put_limits,
		       (unsigned)s3_connections, &under_stats, err, sizeof(err)))
		goto fail;
	if (under && mode == MODE_REBUILD &&
	    open_rebuild(&rebuild, under, under_bucket, under_prefix, s3_endpoint, s3_region, err,
			 sizeof(err)))
		goto fail;
	o.under = persist;
	o.under_stats = &under_stats;
	if (under && mode == MODE_SERVE &&
	    open_reader(&reader, under, under_bucket, under_prefix, s3_endpoint, s3_region,
			&evict_stats.read, err, sizeof(err)))
		goto fail;
	o.evict_stats = &evict_stats;
	/* from the bucket, the catalog is kept and merged into (UNDERSTORE.md "Rebuild from the
	 * bucket"): only the local rebuild moves it aside */
	if (open_data(data_dir, mode == MODE_REBUILD && !under, &dd, &store, &catalog, &recovered,
		      err, sizeof(err)))
		goto fail;
	if (mode == MODE_REBUILD && rebuild) {
		if (tv_bucket_rebuild(catalog, rebuild, &rebuilt, err, sizeof(err))) {
			tv_rebuild_report_print(&rebuilt, stdout);
			goto fail;
		}
		tv_rebuild_report_print(&rebuilt, stdout);
		rc = tv_rebuild_report_complete(&rebuilt) ? 0 : 1;
		goto out;
	}
	if (mode == MODE_REBUILD) {
		rc = 0;
		goto out;
	}
	if (mode == MODE_SCRUB) {
		if (tv_scrub(catalog, store, &scrub, err, sizeof(err)))
			goto fail;
		printf("scrub: %llu blocks checked, %llu damaged (quarantined), %llu missing, "
		       "%llu rows repaired\n", (unsigned long long)scrub.blocks,
		       (unsigned long long)scrub.damaged, (unsigned long long)scrub.missing,
		       (unsigned long long)scrub.repaired);
		/* damage found by this run's start-up counts too: a file it quarantined, a row it
		 * dropped for a missing file */
		rc = scrub.damaged || scrub.missing || recovered.quarantined ||
			     recovered.dropped_rows ? 1 : 0;
		goto out;
	}
	{
		struct tv_evict_opts eo = { .local_bytes = local_bytes, .reader = reader,
					    .stats = &evict_stats, .recache = recache };

		if (tv_evict_new(&evict, &eo, catalog, store, err, sizeof(err)))
			goto fail;
		o.evict = evict;
		if (local_bytes)
			fprintf(stderr, "tracevaultd: --local-bytes %llu: persisted segments beyond "
				"it are evicted to the under-store\n",
				(unsigned long long)local_bytes);
		tv_evict_pass(evict); /* a lower --local-bytes than the last run's */
	}
	plan.http_connections = metrics ? (uint64_t)http_limits.max_connections : 0;
	if (tv_fd_plan_make(&plan, err, sizeof(err)))
		goto fail;
	tv_fd_plan_describe(&plan, err, sizeof(err));
	fprintf(stderr, "tracevaultd: %s\n", err);
	tv_store_set_max_files(store, (size_t)plan.open_files); /* within its bound: 0 or 1..max */
	o.max_write_streams = (unsigned)plan.write_streams;
	o.max_query_streams = (unsigned)plan.query_streams;
	o.max_streams_per_connection = (unsigned)per_conn;
	o.max_write_streams_per_peer = (unsigned)write_per_peer;
	o.max_query_streams_per_peer = (unsigned)query_per_peer;
	o.idle_timeout_ms = (unsigned)idle_ms;
	o.query_open_blocks = (size_t)plan.query_files;

	o.tls = &tls;
	o.require_client_cert = require_client_cert;
	grpc_init();
	tv_grpc_log_install(); /* gRPC's lines rate-limited, its TLS failures counted */
	if (metrics) {
		if (tv_local_rpc_dir_new(&local_dir, err, sizeof(err))) {
			grpc_shutdown();
			goto fail;
		}
		o.local_addr = local_dir.addr;
	}
	if (tv_rpc_server_start(&srv, &o, catalog, store, &port, err, sizeof(err))) {
		grpc_shutdown();
		goto fail;
	}
	if (metrics) {
		http_o.rpc_addr = local_dir.addr;
		http_o.max_message_bytes = o.max_message_bytes > TV_QUERY_MAX_MESSAGE_BYTES ?
						   o.max_message_bytes : TV_QUERY_MAX_MESSAGE_BYTES;
		if (tv_http_api_new(&http_api, &http_o, err, sizeof(err))) {
			tv_rpc_server_free(srv);
			grpc_shutdown();
			goto fail;
		}
		tv_metrics_http_set_handler(metrics, tv_http_api_handle, http_api);
		{
			struct tv_otlp_http_opts ox = {
				.rpc_addr = local_dir.addr,
				/* as the gRPC path: the smaller of the two applies */
				.max_message_bytes = min_size(o.otlp_max_message_bytes ?
					o.otlp_max_message_bytes : TV_OTLP_DEFAULT_MAX_MESSAGE_BYTES,
					o.max_message_bytes),
				.timeout_ms = http_o.timeout_ms ? http_o.timeout_ms :
					TV_HTTP_DEFAULT_TIMEOUT_MS,
			};

			if (tv_otlp_http_new(&otlp_http, &ox, err, sizeof(err))) {
				tv_rpc_server_free(srv);
				grpc_shutdown();
				goto fail;
			}
			tv_otlp_http_attach(otlp_http, metrics);
		}
	}
	tv_tls_pem_free(&tls); /* gRPC holds its own copy; ours (the key) is wiped */
	if (metrics) {
		/* before the readiness line: once it is read, the endpoint answers */
		if (tv_metrics_http_serve(metrics, tv_rpc_server_metrics(srv), err, sizeof(err))) {
			tv_rpc_server_free(srv);
			grpc_shutdown();
			goto fail;
		}
		/* one line naming everything the port serves (tests read the address from it) */
		fprintf(stderr, "tracevaultd: http on http://%s (" TV_METRICS_PATH ", /api, /, "
			"/v1/traces)\n", metrics_bound);
		if (tv_metrics_http_exposed(metrics_addr))
			fprintf(stderr, "tracevaultd: " TV_METRICS_EXPOSED_WARNING "\n",
				metrics_bound);
		/* the API serves records (paths, addresses, headers): more than metrics */
		if (tv_metrics_http_exposed(metrics_addr))
			fprintf(stderr, "tracevaultd: warning: the HTTP API on http://%s serves the "
				"archive's records to anyone who reaches it (no TLS, no "
				"authentication)\n", metrics_bound);
	}
	{
		/* name the bound port, not the requested one: with port 0 only the kernel knows it.
		 * The log lines go first so that they are there once the readiness line is read. */
		const char *colon = strrchr(o.listen_addr, ':');
		int host_len = (int)(colon - o.listen_addr);

		if (tls_cert)
			fprintf(stderr, "tracevaultd: TLS on (certificate %s; client certificates "
				"%s)\n", tls_cert, !tls_ca ? "not asked for" :
				require_client_cert ? "required, signed by --tls-ca" :
						      "verified against --tls-ca when given");
		else if (insecure)
			fprintf(stderr, "tracevaultd: warning: --insecure: plaintext gRPC on "
				"%.*s:%d\n", host_len, o.listen_addr, port);

		fprintf(stderr, "tracevaultd: serving %.*s:%d (data %s)\n", host_len, o.listen_addr,
			port, data_dir);
		printf("listening on %.*s:%d\n", host_len, o.listen_addr, port);
		fflush(stdout);
	}
	tv_rpc_server_run(srv, &stop_requested);
	tv_metrics_http_stop(metrics); /* before the counters it reads go */
	metrics = NULL;
	tv_http_api_free(http_api); /* its channel, before gRPC shuts down */
	http_api = NULL;
	tv_otlp_http_free(otlp_http);
	otlp_http = NULL;
	tv_rpc_server_free(srv);
	grpc_shutdown();
	tv_grpc_log_tick(1); /* what the last window suppressed */
	fprintf(stderr, "tracevaultd: stopped\n");
	rc = 0;
	goto out;
fail:
	fprintf(stderr, "tracevaultd: %s\n", err);
out:
	tv_metrics_http_stop(metrics); /* bound but never served: closes the port */
	tv_http_api_free(http_api);
	tv_otlp_http_free(otlp_http);
	tv_local_rpc_dir_free(&local_dir);
	tv_persist_close(persist);     /* after the server: its persists have drained */
	tv_evict_free(evict);
	tv_under_reader_close(reader);
	tv_rebuild_close(rebuild);
	tv_rebuild_report_free(&rebuilt);
	tv_tls_pem_free(&tls);
	tv_catalog_close(catalog);
	tv_store_close(store);
	if (dd.dir_fd >= 0)
		close(dd.dir_fd);
	if (dd.lock_fd >= 0)
		close(dd.lock_fd); /* the lock goes with the last descriptor */
	return rc;
}

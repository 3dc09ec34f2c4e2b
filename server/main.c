/* tracevaultd: the storage server. Parses options, prepares the data dir (0700, files 0600),
 * recovers from a crash (temp files, orphan block files), then serves TraceStore until
 * SIGTERM/SIGINT. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <grpc/grpc.h>

#include "common/addr.h"
#include "common/limit.h"
#include "common/size.h"
#include "common/usage.h"
#include "server/catalog.h"
#include "server/query.h"
#include "server/rpc_server.h"
#include "server/store_uring.h"
#include "proto/wire.h"

#define DEFAULT_LISTEN "127.0.0.1:7070"
#define ERR_LEN 512
/* glibc malloc tuning, see main(): keep up to this much free heap instead of returning it */
#define TRIM_THRESHOLD_BYTES (512 << 20)
/* allocations above this use mmap; fixed so that glibc does not adapt it per free */
#define MMAP_THRESHOLD_BYTES (32 << 20)

/* USAGE states the message-size bound in words */
_Static_assert(TV_WIRE_MIN_MESSAGE_BYTES == 64u << 10 && TV_WIRE_MAX_MESSAGE_BYTES == 1u << 30,
	       "update --help: 64K to 1G");

/* USAGE states the query memory bounds and defaults in words */
_Static_assert(TV_QUERY_MIN_MEMORY_BYTES == 16u << 20 && TV_QUERY_MAX_MEMORY_BYTES == 1ull << 40 &&
		       TV_QUERY_DEFAULT_MEMORY_BYTES == 256u << 20 &&
		       TV_QUERY_DEFAULT_TOTAL_MEMORY_BYTES == 1u << 30,
	       "update --help: 16M to 1024G, default 256M and 1G");

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

static const struct option OPTIONS[] = {
	{ "data", required_argument, NULL, 'd' },
	{ "listen", required_argument, NULL, 'l' },
	{ "max-message-bytes", required_argument, NULL, 'm' },
	{ "query-memory-bytes", required_argument, NULL, 'q' },
	{ "query-total-memory-bytes", required_argument, NULL, 'Q' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static const char USAGE[] =
	"Usage: tracevaultd --data DIR [--listen HOST:PORT] [--max-message-bytes N]\n"
	"                   [--query-memory-bytes N] [--query-total-memory-bytes N]\n"
	"\n"
	"Stores trace blocks written over gRPC (TraceStore Write) and serves time-range queries.\n"
	"\n"
	"  --data DIR               data directory (created 0700): blocks/, tmp/, catalog.db,\n"
	"                           and lock, which one tracevaultd holds while it runs (a\n"
	"                           second one on DIR exits 1 naming the first one's pid)\n"
	"  --listen HOST:PORT       address to serve on, port 0 to 65535 (default\n"
	"                           " DEFAULT_LISTEN "); port 0 picks a free port; the first\n"
	"                           stdout line is 'listening on HOST:PORT'\n"
	"  --max-message-bytes N    largest gRPC message either way, 64K to 1G (default 16M);\n"
	"                           sizes take a K, M or G suffix (KiB, MiB, GiB)\n"
	"  --query-memory-bytes N   memory one query may hold to read blocks (zstd windows,\n"
	"                           record buffers, its block list), 16M to 1024G (default\n"
	"                           256M); a query that needs more ends RESOURCE_EXHAUSTED\n"
	"  --query-total-memory-bytes N\n"
	"                           the same for all queries together, 16M to 1024G and at\n"
	"                           least --query-memory-bytes (default 1G); a query that\n"
	"                           finds it used up is refused (RESOURCE_EXHAUSTED)\n"
	"  --help                   this text\n"
	"\n"
	"Examples:\n"
	"  tracevaultd --data /var/lib/tracevault\n"
	"  tracevaultd --data /tmp/tv --listen 127.0.0.1:0\n";

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

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

/* Crash recovery: temp data is never committed, so it all goes; a block file the catalog does
 * not list was renamed but never committed (crash in between), so it goes too; a catalog row
 * whose file is missing cannot be served, so it is logged and dropped. */
struct recovery {
	struct tv_catalog *catalog;
	uint64_t *missing; /* catalog ids without a file */
	size_t nmissing, cap;
	uint64_t *orphans;
	size_t norphans, ocap;
	struct tv_store *store;
};

static int push(uint64_t **a, size_t *n, size_t *cap, uint64_t v)
{
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;
		uint64_t *p = realloc(*a, ncap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		*a = p;
		*cap = ncap;
	}
	(*a)[(*n)++] = v;
	return 0;
}

static int on_block_file(uint64_t id, int valid, const char *name, void *arg)
{
	struct recovery *r = arg;
	int ret;

	if (!valid) {
		fprintf(stderr, "recovery: ignoring unexpected file blocks/%s\n", name);
		return 0;
	}
	ret = tv_catalog_contains(r->catalog, id);
	if (ret < 0)
		return ret;
	return ret ? 0 : push(&r->orphans, &r->norphans, &r->ocap, id);
}

static int on_catalog_row(const struct tv_catalog_block *b, void *arg)
{
	struct recovery *r = arg;
	void *buf = NULL;
	size_t len = 0;
	int ret = tv_store_read_block(r->store, b->block_id, 0, &buf, &len);

	/* max_bytes 0: we only want to know whether it exists (-EFBIG means it does) */
	free(buf);
	if (ret == -ENOENT)
		return push(&r->missing, &r->nmissing, &r->cap, b->block_id);
	return 0;
}

static int recover(struct tv_catalog *c, struct tv_store *s, char *err, size_t errlen)
{
	struct recovery r = { .catalog = c, .store = s };
	uint64_t *ids = NULL;
	size_t n = 0;
	int ret;

	ret = tv_store_clear_temp(s);
	if (ret < 0) {
		snprintf(err, errlen, "recovery: cannot clear tmp/: %s", strerror(-ret));
		return ret;
	}
	if (ret > 0)
		fprintf(stderr, "recovery: removed %d uncommitted temp files\n", ret);
	ret = tv_store_list_blocks(s, on_block_file, &r);
	if (!ret)
		ret = tv_catalog_list(c, on_catalog_row, &r);
	if (ret) {
		snprintf(err, errlen, "recovery: cannot scan blocks/ and the catalog: %s",
			 strerror(-ret));
		goto out;
	}
	for (size_t i = 0; i < r.norphans; i++) {
		fprintf(stderr, "recovery: removing block %016llx: file without a catalog row\n",
			(unsigned long long)r.orphans[i]);
		tv_store_remove_block(s, r.orphans[i]);
	}
	if (r.norphans)
		tv_store_sync_blocks_dir(s);
	for (size_t i = 0; i < r.nmissing; i++)
		fprintf(stderr, "recovery: block %016llx is in the catalog but its file is missing: "
			"dropping the row\n", (unsigned long long)r.missing[i]);
	if (r.nmissing) {
		ret = tv_catalog_delete_ids(c, r.missing, r.nmissing, &ids, &n);
		free(ids);
		if (ret) {
			snprintf(err, errlen, "recovery: cannot drop missing blocks from the catalog");
			goto out;
		}
	}
out:
	free(r.orphans);
	free(r.missing);
	return ret;
}

static int prepare_data_dir(const char *dir, char *err, size_t errlen)
{
	if (mkdir(dir, 0700) && errno != EEXIST) {
		snprintf(err, errlen, "cannot create data dir %s: %s", dir, strerror(errno));
		return -1;
	}
	/* an existing dir may have been created with looser permissions: we hold data in it */
	if (chmod(dir, 0700)) {
		snprintf(err, errlen, "cannot chmod data dir %s: %s", dir, strerror(errno));
		return -1;
	}
	return 0;
}

/* One owner per data dir: an exclusive flock on DIR/lock (0600), taken before anything in the
 * dir is read or changed and held until exit (the kernel drops it when the process dies, so a
 * crash leaves no stale lock). A second tracevaultd would otherwise run crash recovery on the
 * first one's live temp files and block files. Our pid goes into the file, so the refusal can
 * name the owner. Returns the descriptor (kept open, never closed), or -1 with err set. */
static int lock_data_dir(const char *dir, char *err, size_t errlen)
{
	char path[PATH_MAX], owner[32] = "";
	int fd;
	ssize_t n;

	if (snprintf(path, sizeof(path), "%s/lock", dir) >= (int)sizeof(path)) {
		snprintf(err, errlen, "data dir path too long: %s", dir);
		return -1;
	}
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open %s/lock: %s", dir, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB)) {
		int e = errno;

		n = pread(fd, owner, sizeof(owner) - 1, 0);
		owner[n > 0 ? n : 0] = '\0';
		owner[strcspn(owner, "\n")] = '\0';
		if (e == EWOULDBLOCK)
			snprintf(err, errlen,
				 "data dir %s is in use: another tracevaultd%s%s%s holds %s/lock", dir,
				 owner[0] ? " (pid " : "", owner, owner[0] ? ")" : "", dir);
		else
			snprintf(err, errlen, "cannot lock %s/lock: %s", dir, strerror(e));
		close(fd);
		return -1;
	}
	if (ftruncate(fd, 0) || dprintf(fd, "%ld\n", (long)getpid()) < 0)
		fprintf(stderr, "tracevaultd: writing the pid into %s/lock: %s\n", dir,
			strerror(errno));
	return fd;
}

int main(int argc, char **argv)
{
	struct tv_rpc_server_opts o = { .listen_addr = DEFAULT_LISTEN,
					.max_message_bytes = TV_DEFAULT_MAX_MESSAGE_BYTES };
	struct tv_rpc_server *srv = NULL;
	struct tv_catalog *catalog = NULL;
	struct tv_store *store = NULL;
	const char *data_dir = NULL;
	char err[ERR_LEN], path[PATH_MAX];
	struct sigaction sa = { .sa_handler = on_signal };
	int opt, port = 0, rc = 1;
	char listen_host[NI_MAXHOST];
	unsigned listen_port;

	opterr = 0;
	for (int before = optind; (opt = getopt_long(argc, argv, ":h", OPTIONS, NULL)) != -1;
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
		case 'q':
		case 'Q': {
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
		case 'h':
			fputs(USAGE, stdout);
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

	if (prepare_data_dir(data_dir, err, sizeof(err)))
		goto fail;
	if (lock_data_dir(data_dir, err, sizeof(err)) < 0)
		goto fail;
	if (tv_store_open(&store, data_dir, err, sizeof(err)))
		goto fail;
	if (snprintf(path, sizeof(path), "%s/catalog.db", data_dir) >= (int)sizeof(path)) {
		snprintf(err, sizeof(err), "data dir path too long: %s", data_dir);
		goto fail;
	}
	if (tv_catalog_open(&catalog, path, err, sizeof(err)))
		goto fail;
	if (recover(catalog, store, err, sizeof(err)))
		goto fail;

	grpc_init();
	if (tv_rpc_server_start(&srv, &o, catalog, store, &port, err, sizeof(err))) {
		grpc_shutdown();
		goto fail;
	}
	{
		/* name the bound port, not the requested one: with port 0 only the kernel knows it.
		 * The log line goes first so that it is there once the readiness line is read. */
		const char *colon = strrchr(o.listen_addr, ':');
		int host_len = (int)(colon - o.listen_addr);

		fprintf(stderr, "tracevaultd: serving %.*s:%d (data %s)\n", host_len, o.listen_addr,
			port, data_dir);
		printf("listening on %.*s:%d\n", host_len, o.listen_addr, port);
		fflush(stdout);
	}
	tv_rpc_server_run(srv, &stop_requested);
	tv_rpc_server_free(srv);
	grpc_shutdown();
	fprintf(stderr, "tracevaultd: stopped\n");
	rc = 0;
	goto out;
fail:
	fprintf(stderr, "tracevaultd: %s\n", err);
out:
	tv_catalog_close(catalog);
	tv_store_close(store);
	return rc;
}

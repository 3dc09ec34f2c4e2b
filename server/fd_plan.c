/* server/fd_plan.h: raising RLIMIT_NOFILE and dividing it between streams (one connection
 * each at worst), block files and a reserve (fixed, plus the HTTP port's connections and
 * threads with --http-addr), lowering the defaults when they do not fit. */
#include "server/fd_plan.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "common/metrics_http.h"
#include "server/query.h"
#include "server/rpc_server.h"
#include "server/segment.h"
#include "server/store_uring.h"

/* The kernel's default fs.nr_open, when it cannot be read. */
#define NR_OPEN_DEFAULT (1u << 20)
/* Without /proc, descriptors are counted by probing this many at most. */
#define PROBE_FDS_MAX 65536

static uint64_t nr_open(void)
{
	unsigned long long v = 0;
	FILE *f = fopen("/proc/sys/fs/nr_open", "re");

	if (f) {
		if (fscanf(f, "%llu", &v) != 1)
			v = 0;
		fclose(f);
	}
	return v ? v : NR_OPEN_DEFAULT;
}

void tv_fd_plan_raise(struct tv_fd_plan *p)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl)) { /* cannot happen; plan with a small guess */
		p->nofile = p->nofile_before = p->nofile_hard = 1024;
		return;
	}
	p->nofile_before = rl.rlim_cur;
	p->nofile_hard = rl.rlim_max;
	if (rl.rlim_max == RLIM_INFINITY) /* the kernel refuses more than fs.nr_open */
		p->nofile_hard = nr_open();
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < p->nofile_hard) {
		struct rlimit up = { .rlim_cur = p->nofile_hard, .rlim_max = rl.rlim_max };

		if (setrlimit(RLIMIT_NOFILE, &up) == 0)
			rl.rlim_cur = up.rlim_cur;
	}
	p->nofile = rl.rlim_cur == RLIM_INFINITY ? p->nofile_hard : rl.rlim_cur;
}

/* Descriptors open now: /proc/self/fd without the one its listing uses, else a probe. */
static uint64_t count_open_fds(uint64_t nofile)
{
	uint64_t n = 0;
	struct dirent *de;
	DIR *d = opendir("/proc/self/fd");

	if (d) {
		while ((de = readdir(d)))
			if (de->d_name[0] != '.')
				n++;
		closedir(d);
		return n ? n - 1 : 0;
	}
	for (uint64_t fd = 0; fd < nofile && fd < PROBE_FDS_MAX; fd++)
		if (fcntl((int)fd, F_GETFD) >= 0)
			n++;
	return n;
}

uint64_t tv_fd_plan_reserved(const struct tv_fd_plan *p)
{
	return TV_FD_PLAN_RESERVE + (p->http_connections ? TV_METRICS_MAX_FDS(p->http_connections)
							 : 0);
}

int tv_fd_plan_make(struct tv_fd_plan *p, char *err, size_t errlen)
{
	uint64_t *v[4] = { &p->write_streams, &p->query_streams, &p->open_files,
			   &p->query_files };
	int given[4] = { p->write_streams != 0, p->query_streams != 0, p->open_files != 0, 0 };
	uint64_t avail = 0, fixed = 0, flex = 0, sum = 0, reserved = tv_fd_plan_reserved(p);
	int nflex = 0;

	p->scaled = 0;
	p->in_use = count_open_fds(p->nofile);
	if (p->nofile > p->in_use + reserved)
		avail = p->nofile - p->in_use - reserved;
	if (!p->write_streams)
		p->write_streams = TV_RPC_DEFAULT_MAX_WRITE_STREAMS;
	if (!p->query_streams)
		p->query_streams = TV_RPC_DEFAULT_MAX_QUERY_STREAMS;
	if (!p->open_files) /* every Write stream can hold its most without waiting */
		p->open_files = (uint64_t)TV_SEGMENT_MAX_OPEN_FILES * p->write_streams;
	if (p->open_files > TV_STORE_MAX_OPEN_FILES_MAX)
		p->open_files = TV_STORE_MAX_OPEN_FILES_MAX;
	p->query_files = TV_QUERY_MAX_OPEN_BLOCKS;
	for (int i = 0; i < 4; i++) {
		if (given[i]) {
			fixed += *v[i];
		} else {
			flex += *v[i];
			nflex++;
		}
	}
	if (fixed + flex <= avail)
		return 0;
	if (fixed + (uint64_t)nflex > avail) {
		static const char *const name[4] = { "--max-write-streams", "--max-query-streams",
						     "--max-open-files", "the block files of queries" };
		char term[4][48], http[96] = "";

		for (int i = 0; i < 4; i++)
			snprintf(term[i], sizeof(term[i]), given[i] ? "%s %llu" : "%s (at least 1)",
				 name[i], (unsigned long long)*v[i]);
		/* the HTTP port's share is an option too: name it */
		if (p->http_connections)
			snprintf(http, sizeof(http), " (%d + --http-max-connections %llu + %llu for "
				 "its threads)", TV_FD_PLAN_RESERVE,
				 (unsigned long long)p->http_connections,
				 (unsigned long long)TV_METRICS_MAX_FDS(0));
		snprintf(err, errlen, "descriptors: RLIMIT_NOFILE %llu (hard %llu) leaves %llu after "
			 "the %llu open and %llu reserved%s: too few for %s + %s (a connection per "
			 "stream) + %s + %s", (unsigned long long)p->nofile,
			 (unsigned long long)p->nofile_hard, (unsigned long long)avail,
			 (unsigned long long)p->in_use, (unsigned long long)reserved, http, term[0],
			 term[1], term[2], term[3]);
		return -EMFILE;
	}
	/* lower the defaults in proportion to what is left, each at least 1 */
	for (int i = 0; i < 4; i++) {
		if (given[i])
			continue;
		*v[i] = *v[i] * (avail - fixed) / flex;
		if (*v[i] == 0)
			*v[i] = 1;
		sum += *v[i];
	}
	/* the 1s may overshoot by at most one each: take them back from the largest */
	while (sum > avail - fixed) {
		uint64_t *big = NULL;

		for (int i = 0; i < 4; i++)
			if (!given[i] && *v[i] > 1 && (!big || *v[i] > *big))
				big = v[i];
		if (!big)
			break; /* cannot happen: fixed + nflex <= avail */
		(*big)--;
		sum--;
	}
	p->scaled = 1;
	return 0;
}

void tv_fd_plan_describe(const struct tv_fd_plan *p, char *buf, size_t len)
{
	char raised[64] = "";

	if (p->nofile != p->nofile_before)
		snprintf(raised, sizeof(raised), "raised from %llu, ",
			 (unsigned long long)p->nofile_before);
	snprintf(buf, len, "RLIMIT_NOFILE %llu (%shard %llu): %llu descriptors open, %llu reserved, "
		 "up to %llu Write + %llu Query streams, %llu block files and %llu in queries%s",
		 (unsigned long long)p->nofile, raised, (unsigned long long)p->nofile_hard,
		 (unsigned long long)p->in_use,
		 (unsigned long long)tv_fd_plan_reserved(p),
		 (unsigned long long)p->write_streams, (unsigned long long)p->query_streams,
		 (unsigned long long)p->open_files, (unsigned long long)p->query_files,
		 p->scaled ? " (defaults lowered to fit RLIMIT_NOFILE)" : "");
}

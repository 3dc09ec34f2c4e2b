/* gRPC's log in tracevaultd, rate-limited and counted (server/grpc_log.h).
 *
 * Why module state: gpr_set_log_function takes a bare function, no argument, and gRPC calls it
 * from any of its threads, so the window, the count and the "quiet" flag live here, behind one
 * mutex (a line is printed under it too: lines never interleave). The handshake counter is
 * also written under it and read by the metrics thread with a relaxed atomic load. */
#include "server/grpc_log.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <grpc/support/log.h>

#include "common/metrics.h"

#define WINDOW_NS ((uint64_t)TV_GRPC_LOG_WINDOW_MS * 1000000ull)

/* What gRPC 1.51 logs (ssl_transport_security.cc, at ERROR) when a TLS handshake fails. */
#define TLS_FILE "ssl_transport_security.cc"
#define TLS_FAILED "Handshake failed"
/* GPR_ASSERT's line before it aborts: always printed, it says why the process died */
#define ASSERT_FAILED "assertion failed"

static struct {
	pthread_mutex_t mu;
	struct tv_log_limit limit;
	int quiet; /* GRPC_VERBOSITY=NONE: count, print nothing */
	uint64_t tls_failures;
} g = { .mu = PTHREAD_MUTEX_INITIALIZER };

void tv_log_limit_expire(struct tv_log_limit *l, uint64_t now_ns, int force,
			 uint64_t *ended_suppressed, uint64_t *ended_tls)
{
	*ended_suppressed = *ended_tls = 0;
	if (!l->start_ns || (!force && now_ns - l->start_ns < WINDOW_NS))
		return;
	*ended_suppressed = l->suppressed;
	*ended_tls = l->suppressed_tls;
	*l = (struct tv_log_limit){ 0 };
}

int tv_log_limit_admit(struct tv_log_limit *l, uint64_t now_ns, int tls,
		       uint64_t *ended_suppressed, uint64_t *ended_tls)
{
	tv_log_limit_expire(l, now_ns, 0, ended_suppressed, ended_tls);
	if (!l->start_ns)
		l->start_ns = now_ns;
	if (l->printed < TV_GRPC_LOG_WINDOW_LINES) {
		l->printed++;
		return 1;
	}
	l->suppressed++;
	l->suppressed_tls += tls ? 1 : 0;
	return 0;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	/* never 0: 0 is "no window open" */
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec + 1;
}

/* The line for a window's suppressed lines; called with g.mu held. */
static void report(uint64_t suppressed, uint64_t tls)
{
	if (!suppressed || g.quiet)
		return;
	fprintf(stderr, "tracevaultd: gRPC log: %llu more lines suppressed (at most %d per %d s), "
		"%llu of them TLS handshake failures (tracevault_server_tls_handshake_failures_"
		"total counts every one)\n", (unsigned long long)suppressed,
		TV_GRPC_LOG_WINDOW_LINES, TV_GRPC_LOG_WINDOW_MS / 1000, (unsigned long long)tls);
}

static const char *base_name(const char *path)
{
	const char *slash = path ? strrchr(path, '/') : NULL;

	return slash ? slash + 1 : path ? path : "?";
}

/* gRPC's default format (gpr_default_log, not exported by 1.51): severity letter, local
 * date and time with ns, thread id, file:line] message. */
static void print_line(const gpr_log_func_args *a)
{
	struct timespec ts;
	struct tm tm;
	char when[32] = "";

	clock_gettime(CLOCK_REALTIME, &ts);
	if (localtime_r(&ts.tv_sec, &tm))
		strftime(when, sizeof(when), "%m%d %H:%M:%S", &tm);
	fprintf(stderr, "%c%s.%09ld %7ld %s:%d] %s\n", gpr_log_severity_string(a->severity)[0],
		when, ts.tv_nsec, (long)syscall(SYS_gettid), base_name(a->file), a->line,
		a->message ? a->message : "");
}

static void log_func(gpr_log_func_args *a)
{
	const char *msg = a->message ? a->message : "";
	int tls = !strcmp(base_name(a->file), TLS_FILE) &&
		  !strncmp(msg, TLS_FAILED, sizeof(TLS_FAILED) - 1);
	uint64_t ended, ended_tls;
	int print;

	pthread_mutex_lock(&g.mu);
	if (tls)
		tv_metric_add(&g.tls_failures, 1);
	/* INFO and DEBUG come only when the operator asked for them (GRPC_VERBOSITY): all of
	 * them; so does GPR_ASSERT's line. The window is for ERROR, gRPC's default level */
	if (a->severity != GPR_LOG_SEVERITY_ERROR ||
	    !strncmp(msg, ASSERT_FAILED, sizeof(ASSERT_FAILED) - 1)) {
		print = 1;
		ended = ended_tls = 0;
	} else {
		print = tv_log_limit_admit(&g.limit, now_ns(), tls, &ended, &ended_tls);
	}
	report(ended, ended_tls);
	if (print && !g.quiet)
		print_line(a);
	pthread_mutex_unlock(&g.mu);
}

void tv_grpc_log_install(void)
{
	int quiet;

	gpr_log_verbosity_init(); /* GRPC_VERBOSITY, when grpc_init has not read it yet */
	/* NONE: gRPC would not call us at all; have it pass errors, and print none of them */
	quiet = !gpr_should_log(GPR_LOG_SEVERITY_ERROR);
	pthread_mutex_lock(&g.mu);
	g.quiet = quiet;
	pthread_mutex_unlock(&g.mu);
	if (quiet)
		gpr_set_log_verbosity(GPR_LOG_SEVERITY_ERROR);
	gpr_set_log_function(log_func);
}

void tv_grpc_log_tick(int force)
{
	uint64_t ended, ended_tls;

	pthread_mutex_lock(&g.mu);
	tv_log_limit_expire(&g.limit, now_ns(), force, &ended, &ended_tls);
	report(ended, ended_tls);
	pthread_mutex_unlock(&g.mu);
}

const uint64_t *tv_grpc_log_tls_handshake_failures(void)
{
	return &g.tls_failures;
}

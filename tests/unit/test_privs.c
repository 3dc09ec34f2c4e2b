/* Unit tests for client/capture/privs.c's drop over threads: capabilities belong to each
 * thread, so the drop refuses to run while another thread exists (it would keep them), the
 * check reads every thread from /proc and names one that kept anything, and a thread started
 * after the drop inherits it. Each scenario changes this process's capabilities for good, so
 * each runs in a child process of its own. Holding no capabilities (non-root) the scenarios
 * still run: the refusal and no_new_privs do not need any. */
#define _GNU_SOURCE /* pthread_setname_np, gettid */
#include <setjmp.h>
#include <stdarg.h>
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "capture/capture.h"
#include "capture/privs.h"

/* A thread parked until released, named "tv-parked". */
struct parked {
	pthread_t thr;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int go, started;
	pid_t tid; /* its thread id, once started */
};

static void *parked_main(void *arg)
{
	struct parked *p = arg;

	pthread_mutex_lock(&p->mu);
	p->started = 1;
	p->tid = gettid();
	pthread_cond_broadcast(&p->cv);
	while (!p->go)
		pthread_cond_wait(&p->cv, &p->mu);
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static int park(struct parked *p)
{
	memset(p, 0, sizeof(*p));
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	if (pthread_create(&p->thr, NULL, parked_main, p))
		return -1;
	pthread_setname_np(p->thr, "tv-parked");
	pthread_mutex_lock(&p->mu);
	while (!p->started)
		pthread_cond_wait(&p->cv, &p->mu);
	pthread_mutex_unlock(&p->mu);
	return 0;
}

static void release(struct parked *p)
{
	pthread_mutex_lock(&p->mu);
	p->go = 1;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	pthread_join(p->thr, NULL);
}

/* A source whose loop needs no capability (probe NULL: reads only its own ring). */
static const struct tv_capture_source no_probe_source;

/* Runs fn in a child process; fn returns 0 or the line of its first failed check. */
static void in_child(int (*fn)(void))
{
	int status = 0;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(fn() ? 1 : 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

#define CHECK(c)                                                                 \
	do {                                                                     \
		if (!(c)) {                                                      \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,    \
				__LINE__, #c);                                   \
			return __LINE__;                                         \
		}                                                                \
	} while (0)

/* The capability sets of this thread, as cap_to_text writes them. */
static char *own_caps(void)
{
	cap_t c = cap_get_proc();
	char *t = c ? cap_to_text(c, NULL) : NULL;
	char *s = t ? strdup(t) : NULL;

	cap_free(t);
	cap_free(c);
	return s;
}

static int drop_refused_with_another_thread(void)
{
	struct tv_caps_dropped d = {0};
	struct parked p;
	char err[256] = "", *before, *after;
	int rc;

	before = own_caps();
	CHECK(before && park(&p) == 0);
	rc = tv_capture_drop_caps(TV_CAPTURE_MODE_TRACEPOINT, &no_probe_source, &d, err,
				  sizeof(err));
	release(&p);
	after = own_caps();
	CHECK(rc == -EBUSY);
	CHECK(strstr(err, "other threads exist") && strstr(err, "before any thread starts"));
	/* refused before it changed anything */
	CHECK(after && strcmp(before, after) == 0);
	CHECK(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 0);
	free(before);
	free(after);
	return 0;
}

static void test_drop_refused_while_another_thread_exists(void **state)
{
	(void)state;
	in_child(drop_refused_with_another_thread);
}

static int check_names_thread_that_kept(void)
{
	struct tv_caps_dropped d = {.kept_mask = 0, .bounding_cleared = false};
	struct parked p;
	char err[512] = "", tid[32];
	cap_t none = cap_init();
	int rc;

	CHECK(none && park(&p) == 0);
	/* this thread drops (what a drop made after threads started would do); the parked one
	 * keeps its sets and lacks no_new_privs */
	CHECK(cap_set_proc(none) == 0);
	CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0);
	rc = tv_capture_check_threads(&d, NULL, err, sizeof(err));
	snprintf(tid, sizeof(tid), "thread %d (tv-parked)", (int)p.tid);
	release(&p);
	cap_free(none);
	CHECK(rc == -EPERM);
	CHECK(strstr(err, tid) && strstr(err, "refusing to run"));
	return 0;
}

static void test_check_names_a_thread_that_kept_its_privileges(void **state)
{
	(void)state;
	in_child(check_names_thread_that_kept);
}

static int drop_then_threads_inherit(void)
{
	struct tv_caps_dropped d = {0};
	struct parked p;
	char err[512] = "";
	unsigned n = 0;

	CHECK(tv_capture_drop_caps(TV_CAPTURE_MODE_TRACEPOINT, &no_probe_source, &d, err,
				   sizeof(err)) == 0);
	CHECK(d.kept_mask == 0);
	CHECK(park(&p) == 0);
	/* the thread started after the drop holds what its creator held: nothing */
	CHECK(tv_capture_check_threads(&d, &n, err, sizeof(err)) == 0);
	release(&p);
	CHECK(n == 2);
	return 0;
}

static void test_threads_started_after_the_drop_inherit_it(void **state)
{
	(void)state;
	in_child(drop_then_threads_inherit);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_drop_refused_while_another_thread_exists),
		cmocka_unit_test(test_check_names_a_thread_that_kept_its_privileges),
		cmocka_unit_test(test_threads_started_after_the_drop_inherit_it),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

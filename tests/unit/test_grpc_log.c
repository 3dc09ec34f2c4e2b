/* The rate limit on gRPC's log lines in tracevaultd (server/grpc_log.h): a window prints its
 * first TV_GRPC_LOG_WINDOW_LINES lines and counts the rest, TLS handshake failures apart; the
 * window closes TV_GRPC_LOG_WINDOW_MS after its first line (by the next line or a tick),
 * handing its counts over once; a window that suppressed nothing reports nothing; a forced
 * close (at stop) reports the open one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "server/grpc_log.h"

#define MS 1000000ull
#define T0 (5000 * MS) /* any monotonic time but 0 */

static void test_a_burst_prints_the_first_lines_and_counts_the_rest(void **state)
{
	struct tv_log_limit l = { 0 };
	uint64_t ended, tls;
	int printed = 0;

	(void)state;
	for (int i = 0; i < 3 * TV_GRPC_LOG_WINDOW_LINES; i++) {
		printed += tv_log_limit_admit(&l, T0 + (uint64_t)i * MS, i % 2, &ended, &tls);
		assert_int_equal(ended, 0); /* all in one window: nothing handed over yet */
	}
	assert_int_equal(printed, TV_GRPC_LOG_WINDOW_LINES);
	assert_int_equal(l.suppressed, 2 * TV_GRPC_LOG_WINDOW_LINES);
	assert_int_equal(l.suppressed_tls, TV_GRPC_LOG_WINDOW_LINES); /* every other one */
	/* a tick inside the window changes nothing */
	tv_log_limit_expire(&l, T0 + (TV_GRPC_LOG_WINDOW_MS - 1) * MS, 0, &ended, &tls);
	assert_int_equal(ended, 0);
	assert_int_equal(l.suppressed, 2 * TV_GRPC_LOG_WINDOW_LINES);
	/* the tick at its end hands the counts over, once */
	tv_log_limit_expire(&l, T0 + TV_GRPC_LOG_WINDOW_MS * MS, 0, &ended, &tls);
	assert_int_equal(ended, 2 * TV_GRPC_LOG_WINDOW_LINES);
	assert_int_equal(tls, TV_GRPC_LOG_WINDOW_LINES);
	tv_log_limit_expire(&l, T0 + 2 * TV_GRPC_LOG_WINDOW_MS * MS, 0, &ended, &tls);
	assert_int_equal(ended, 0);
}

static void test_the_next_window_begins_at_the_next_line_and_reports_the_last(void **state)
{
	struct tv_log_limit l = { 0 };
	uint64_t ended, tls, later = T0 + 10 * TV_GRPC_LOG_WINDOW_MS * MS;

	(void)state;
	for (int i = 0; i <= TV_GRPC_LOG_WINDOW_LINES; i++)
		tv_log_limit_admit(&l, T0, 1, &ended, &tls);
	assert_int_equal(l.suppressed, 1);
	/* long after: the old window is handed over by the line that opens the new one, which
	 * prints */
	assert_int_equal(tv_log_limit_admit(&l, later, 0, &ended, &tls), 1);
	assert_int_equal(ended, 1);
	assert_int_equal(tls, 1);
	assert_int_equal(l.start_ns, later);
	assert_int_equal(l.printed, 1);
	/* the new window is full lines later, counted from its own first line */
	for (int i = 1; i < TV_GRPC_LOG_WINDOW_LINES; i++)
		assert_int_equal(tv_log_limit_admit(&l, later + TV_GRPC_LOG_WINDOW_MS * MS - 1, 0,
						    &ended, &tls), 1);
	assert_int_equal(tv_log_limit_admit(&l, later + TV_GRPC_LOG_WINDOW_MS * MS - 1, 0, &ended,
					    &tls), 0);
}

static void test_a_quiet_window_reports_nothing_and_force_reports_the_open_one(void **state)
{
	struct tv_log_limit l = { 0 };
	uint64_t ended = 99, tls = 99;

	(void)state;
	tv_log_limit_expire(&l, T0, 1, &ended, &tls); /* none open */
	assert_int_equal(ended, 0);
	assert_int_equal(tls, 0);
	tv_log_limit_admit(&l, T0, 1, &ended, &tls);
	tv_log_limit_expire(&l, T0 + TV_GRPC_LOG_WINDOW_MS * MS, 0, &ended, &tls);
	assert_int_equal(ended, 0); /* closed, with nothing to say */
	assert_int_equal(l.start_ns, 0);
	for (int i = 0; i < TV_GRPC_LOG_WINDOW_LINES + 4; i++)
		tv_log_limit_admit(&l, T0 + TV_GRPC_LOG_WINDOW_MS * MS + 1, 1, &ended, &tls);
	tv_log_limit_expire(&l, T0 + TV_GRPC_LOG_WINDOW_MS * MS + 2, 1, &ended, &tls);
	assert_int_equal(ended, 4);
	assert_int_equal(tls, 4);
	assert_int_equal(l.start_ns, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_burst_prints_the_first_lines_and_counts_the_rest),
		cmocka_unit_test(test_the_next_window_begins_at_the_next_line_and_reports_the_last),
		cmocka_unit_test(test_a_quiet_window_reports_nothing_and_force_reports_the_open_one),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

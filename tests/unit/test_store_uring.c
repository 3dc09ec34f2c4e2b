/* cmocka tests for the io_uring block store (server/store_uring.c): vectored writes land at their
 * offsets, publish renames without replacing, abort removes temp data, and a file-size limit
 * (RLIMIT_FSIZE) gives a short write followed by -EFBIG rather than silent truncation; temp
 * files open at once stay within the store's descriptor budget. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "server/store_uring.h"

struct fixture {
	char dir[64];
	struct tv_store *s;
};

static int count_entries(const char *dir, const char *sub)
{
	char cmd[256];
	FILE *p;
	int n = -1;

	snprintf(cmd, sizeof(cmd), "ls -A %s/%s | wc -l", dir, sub);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	if (fscanf(p, "%d", &n) != 1)
		n = -1;
	pclose(p);
	return n;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[256];

	assert_non_null(f);
	strcpy(f->dir, "/tmp/tv-store-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	assert_int_equal(tv_store_open(&f->s, f->dir, err, sizeof(err)), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	tv_store_close(f->s);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static void test_writev_publish_read_back(void **state)
{
	struct fixture *f = *state;
	struct tv_store_file *file;
	char a[] = "hello ", b[] = "block ", c[] = "world";
	struct iovec iov[] = { { a, 6 }, { b, 6 }, { NULL, 0 }, { c, 5 } };
	struct stat st;
	char path[128];
	void *buf = NULL;
	size_t len = 0;

	assert_int_equal(tv_store_create_temp(f->s, 1, 0xab, &file), 0);
	/* second half first: offsets are honoured, not appended */
	assert_int_equal(tv_store_writev(f->s, file, 12, &iov[3], 1), 0);
	assert_int_equal(tv_store_writev(f->s, file, 0, iov, 3), 0);
	assert_int_equal(tv_store_sync(f->s, &file, 1), 0);
	assert_int_equal(tv_store_publish(f->s, &file, 1), 0);
	assert_int_equal(count_entries(f->dir, "tmp"), 0);
	snprintf(path, sizeof(path), "%s/blocks/00000000000000ab.tvb", f->dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(tv_store_read_block(f->s, 0xab, 1024, &buf, &len), 0);
	assert_int_equal(len, 17);
	assert_memory_equal(buf, "hello block world", 17);
	free(buf);
	assert_int_equal(tv_store_read_block(f->s, 0xab, 10, &buf, &len), -EFBIG);
	assert_int_equal(tv_store_remove_block(f->s, 0xab), 0);
	assert_int_equal(tv_store_read_block(f->s, 0xab, 1024, &buf, &len), -ENOENT);
}

static void test_publish_never_replaces_a_block(void **state)
{
	struct fixture *f = *state;
	struct tv_store_file *one, *two;
	struct iovec iov = { "x", 1 };

	assert_int_equal(tv_store_create_temp(f->s, 1, 7, &one), 0);
	assert_int_equal(tv_store_writev(f->s, one, 0, &iov, 1), 0);
	assert_int_equal(tv_store_publish(f->s, &one, 1), 0);
	assert_int_equal(tv_store_create_temp(f->s, 2, 7, &two), 0);
	assert_int_equal(tv_store_publish(f->s, &two, 1), -EEXIST);
	tv_store_abort(f->s, two);
	assert_int_equal(count_entries(f->dir, "tmp"), 0);
	assert_int_equal(count_entries(f->dir, "blocks"), 1);
}

static void test_temp_names_are_exclusive_and_abort_removes(void **state)
{
	struct fixture *f = *state;
	struct tv_store_file *a, *b;

	assert_int_equal(tv_store_create_temp(f->s, 3, 4, &a), 0);
	assert_int_equal(tv_store_create_temp(f->s, 3, 4, &b), -EEXIST);
	assert_int_equal(count_entries(f->dir, "tmp"), 1);
	tv_store_abort(f->s, a);
	assert_int_equal(count_entries(f->dir, "tmp"), 0);
	assert_int_equal(tv_store_create_temp(f->s, 3, 5, &a), 0);
	assert_int_equal(tv_store_create_temp(f->s, 3, 6, &b), 0);
	assert_int_equal(tv_store_clear_temp(f->s), 2);
	assert_int_equal(count_entries(f->dir, "tmp"), 0);
	free(a); /* their files are gone already; only the handles remain */
	free(b);
}

/* The descriptor budget of temp files: at the limit create_temp is -EMFILE without opening
 * anything; closing a synced file's descriptor frees its slot, and the closed file still
 * publishes (by name) and reads back; aborting an open file frees its slot too. */
static void test_open_file_budget(void **state)
{
	struct fixture *f = *state;
	static char data[] = "budgeted block";
	struct iovec iov = { data, sizeof(data) };
	struct tv_store_file *a, *b, *c;
	void *buf = NULL;
	size_t len = 0;

	assert_int_equal(tv_store_set_max_files(f->s, 2), 0);
	assert_int_equal(tv_store_set_max_files(f->s, 0), -ERANGE);
	assert_int_equal(tv_store_max_files(f->s), 2);
	assert_int_equal(tv_store_create_temp(f->s, 1, 1, &a), 0);
	assert_int_equal(tv_store_create_temp(f->s, 1, 2, &b), 0);
	assert_int_equal(tv_store_open_files(f->s), 2);
	assert_int_equal(tv_store_create_temp(f->s, 1, 3, &c), -EMFILE);
	assert_int_equal(count_entries(f->dir, "tmp"), 2); /* nothing created for the refusal */
	assert_int_equal(tv_store_writev(f->s, a, 0, &iov, 1), 0);
	assert_int_equal(tv_store_sync(f->s, &a, 1), 0);
	tv_store_close_fd(f->s, a);
	assert_int_equal(tv_store_open_files(f->s), 1);
	assert_int_equal(tv_store_create_temp(f->s, 1, 3, &c), 0);
	assert_int_equal(tv_store_publish(f->s, &a, 1), 0);
	assert_int_equal(tv_store_read_block(f->s, 1, 1024, &buf, &len), 0);
	assert_int_equal(len, sizeof(data));
	assert_memory_equal(buf, data, len);
	free(buf);
	assert_int_equal(tv_store_open_files(f->s), 2);
	tv_store_abort(f->s, b);
	tv_store_abort(f->s, c);
	assert_int_equal(tv_store_open_files(f->s), 0);
	assert_int_equal(count_entries(f->dir, "tmp"), 0);
}

/* RLIMIT_FSIZE: the kernel takes what fits (a short write), then refuses with EFBIG. */
static void test_file_size_limit_is_efbig(void **state)
{
	struct fixture *f = *state;
	struct rlimit old, lim;
	static char big[2048];
	struct iovec iov[] = { { big, sizeof(big) }, { big, sizeof(big) } };
	struct tv_store_file *file;
	struct stat st;
	char path[128];

	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	/* only the soft limit: raising a hard limit back needs CAP_SYS_RESOURCE */
	lim.rlim_cur = 3000;
	lim.rlim_max = old.rlim_max;
	assert_int_equal(tv_store_create_temp(f->s, 9, 9, &file), 0);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	assert_int_equal(tv_store_writev(f->s, file, 0, iov, 2), -EFBIG);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	snprintf(path, sizeof(path), "%s/tmp/0000000000000009-0000000000000009.tmp", f->dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 3000); /* the short write happened, then the retry failed */
	tv_store_abort(f->s, file);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_writev_publish_read_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publish_never_replaces_a_block, setup, teardown),
		cmocka_unit_test_setup_teardown(test_temp_names_are_exclusive_and_abort_removes, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_file_size_limit_is_efbig, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_file_budget, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

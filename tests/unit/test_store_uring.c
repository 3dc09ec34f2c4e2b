/* cmocka tests for the io_uring block store (server/store_uring.c): vectored writes land at their
 * offsets, publish renames without replacing, abort removes temp data, and a file-size limit
 * (RLIMIT_FSIZE) gives a short write followed by -EFBIG rather than silent truncation. */
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

/* a committed block file id holding text */
static void publish_block(struct fixture *f, uint64_t id, const char *text)
{
	struct tv_store_file *file;
	struct iovec iov = { (void *)text, strlen(text) };

	assert_int_equal(tv_store_create_temp(f->s, 1, id, &file), 0);
	assert_int_equal(tv_store_writev(f->s, file, 0, &iov, 1), 0);
	assert_int_equal(tv_store_publish(f->s, &file, 1), 0);
}

/* Queries open block files through tv_store_open_block: a symlink is never followed, and a
 * FIFO or a directory in a block's place is refused at once (a FIFO must not block). */
static void test_open_block_refuses_what_is_not_a_block_file(void **state)
{
	struct fixture *f = *state;
	char path[128];
	uint64_t size = 0;
	int fd = 7;

	publish_block(f, 0xab, "0123456789");
	assert_int_equal(tv_store_open_block(f->s, 0xab, &fd, &size), 0);
	assert_true(fd >= 0);
	assert_int_equal(size, 10);
	close(fd);
	assert_int_equal(tv_store_open_block(f->s, 0xac, &fd, &size), -ENOENT);
	assert_int_equal(fd, -1);
	snprintf(path, sizeof(path), "%s/blocks/00000000000000ac.tvb", f->dir);
	assert_int_equal(symlink("/etc/passwd", path), 0);
	assert_int_equal(tv_store_open_block(f->s, 0xac, &fd, &size), -ELOOP);
	snprintf(path, sizeof(path), "%s/blocks/00000000000000ad.tvb", f->dir);
	assert_int_equal(mkfifo(path, 0600), 0);
	assert_int_equal(tv_store_open_block(f->s, 0xad, &fd, &size), -EMEDIUMTYPE);
	snprintf(path, sizeof(path), "%s/blocks/00000000000000ae.tvb", f->dir);
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(tv_store_open_block(f->s, 0xae, &fd, &size), -EMEDIUMTYPE);
	assert_int_equal(fd, -1);
}

/* Quarantine moves the file (a descriptor open on it still reads it), never replaces an earlier
 * quarantined file of the same id, moves a symlink without touching its target, and makes the
 * directory 0700 and a file 0600. */
static void test_quarantine_moves_without_replacing(void **state)
{
	struct fixture *f = *state;
	char path[160], moved[64], buf[16] = "";
	struct stat st, target;
	uint64_t size;
	int fd;

	publish_block(f, 0xab, "first");
	assert_int_equal(tv_store_open_block(f->s, 0xab, &fd, &size), 0);
	snprintf(path, sizeof(path), "%s/blocks/00000000000000ab.tvb", f->dir);
	assert_int_equal(chmod(path, 0644), 0);
	assert_int_equal(tv_store_quarantine_block(f->s, 0xab, moved, sizeof(moved)), 0);
	assert_string_equal(moved, "quarantine/00000000000000ab.tvb");
	assert_int_equal(pread(fd, buf, 5, 0), 5); /* the reader is not disturbed */
	assert_string_equal(buf, "first");
	close(fd);
	assert_int_equal(stat(path, &st), -1);
	snprintf(path, sizeof(path), "%s/quarantine", f->dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	snprintf(path, sizeof(path), "%s/quarantine/00000000000000ab.tvb", f->dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(st.st_size, 5);

	publish_block(f, 0xab, "second!");
	assert_int_equal(tv_store_quarantine_block(f->s, 0xab, moved, sizeof(moved)), 0);
	assert_string_equal(moved, "quarantine/00000000000000ab.1.tvb");
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 5); /* the first one is still there */

	assert_int_equal(tv_store_quarantine_block(f->s, 0xab, moved, sizeof(moved)), -ENOENT);
	assert_int_equal(stat("/etc/passwd", &target), 0);
	snprintf(path, sizeof(path), "%s/blocks/00000000000000ac.tvb", f->dir);
	assert_int_equal(symlink("/etc/passwd", path), 0);
	assert_int_equal(tv_store_quarantine_block(f->s, 0xac, moved, sizeof(moved)), 0);
	snprintf(path, sizeof(path), "%s/%s", f->dir, moved);
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	assert_int_equal(stat("/etc/passwd", &st), 0);
	assert_int_equal(st.st_mode, target.st_mode);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_writev_publish_read_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publish_never_replaces_a_block, setup, teardown),
		cmocka_unit_test_setup_teardown(test_temp_names_are_exclusive_and_abort_removes, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_file_size_limit_is_efbig, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_block_refuses_what_is_not_a_block_file,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_quarantine_moves_without_replacing, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

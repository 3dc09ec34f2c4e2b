/* cmocka tests for the io_uring block store (server/store_uring.c): vectored writes land at their
 * offsets, publish renames to blocks/<segment>-<block>.tvb without replacing, abort removes temp
 * data, a file-size limit (RLIMIT_FSIZE) gives a short write followed by -EFBIG rather than
 * silent truncation; temp files open at once stay within the store's descriptor budget; and
 * recovery's primitives: names are classified, legacy names renamed, an interrupted publish
 * finished, symlinks and fifos not read, and quarantine moves a file aside with its reason,
 * never replacing one already there. */
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
	snprintf(path, sizeof(path), "%s/blocks/0000000000000001-00000000000000ab.tvb", f->dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(tv_store_read_block(f->s, 1, 0xab, 1024, &buf, &len), 0);
	assert_int_equal(len, 17);
	assert_memory_equal(buf, "hello block world", 17);
	free(buf);
	assert_int_equal(tv_store_read_block(f->s, 1, 0xab, 10, &buf, &len), -EFBIG);
	/* the segment is part of the name: another segment's block of that id is another file */
	assert_int_equal(tv_store_read_block(f->s, 2, 0xab, 1024, &buf, &len), -ENOENT);
	assert_int_equal(tv_store_remove_block(f->s, 1, 0xab), 0);
	assert_int_equal(tv_store_read_block(f->s, 1, 0xab, 1024, &buf, &len), -ENOENT);
}

static void test_publish_never_replaces_a_block(void **state)
{
	struct fixture *f = *state;
	struct tv_store_file *one, *two;
	struct iovec iov = { "x", 1 };

	assert_int_equal(tv_store_create_temp(f->s, 1, 7, &one), 0);
	assert_int_equal(tv_store_writev(f->s, one, 0, &iov, 1), 0);
	assert_int_equal(tv_store_publish(f->s, &one, 1), 0);
	assert_int_equal(tv_store_create_temp(f->s, 1, 7, &two), 0);
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
	assert_int_equal(tv_store_read_block(f->s, 1, 1, 1024, &buf, &len), 0);
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

struct listed {
	char names[8][64];
	struct tv_store_entry e[8];
	int n;
};

static int collect(const struct tv_store_entry *e, void *arg)
{
	struct listed *l = arg;

	assert_true(l->n < 8);
	snprintf(l->names[l->n], sizeof(l->names[0]), "%s", e->name);
	l->e[l->n] = *e;
	l->e[l->n].name = l->names[l->n];
	l->n++;
	return 0;
}

static const struct tv_store_entry *find(const struct listed *l, const char *name)
{
	for (int i = 0; i < l->n; i++)
		if (!strcmp(l->names[i], name))
			return &l->e[i];
	fail_msg("%s not listed", name);
	return NULL;
}

static void put_file(const char *dir, const char *rel, const char *content)
{
	char path[256];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(content, fp);
	fclose(fp);
}

static int exists(const char *dir, const char *rel)
{
	char path[256];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	return lstat(path, &st) == 0;
}

static void test_names_are_classified(void **state)
{
	struct fixture *f = *state;
	struct listed l = { 0 };
	const struct tv_store_entry *e;
	char path[256];
	uint64_t id;

	put_file(f->dir, "blocks/00000000000000aa-00000000000000bb.tvb", "x");
	put_file(f->dir, "blocks/00000000000000cc.tvb", "x");
	put_file(f->dir, "blocks/00000000000000AA-00000000000000bb.tvb", "x"); /* not our case */
	put_file(f->dir, "blocks/notes.txt", "x");
	snprintf(path, sizeof(path), "%s/blocks/00000000000000dd.tvb", f->dir);
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(tv_store_list_blocks(f->s, collect, &l), 0);
	assert_int_equal(l.n, 5);
	e = find(&l, "00000000000000aa-00000000000000bb.tvb");
	assert_int_equal(e->kind, TV_STORE_BLOCK);
	assert_true(e->segment_id == 0xaa && e->block_id == 0xbb && e->regular);
	e = find(&l, "00000000000000cc.tvb");
	assert_int_equal(e->kind, TV_STORE_LEGACY);
	assert_true(e->segment_id == 0 && e->block_id == 0xcc && e->regular);
	assert_int_equal(find(&l, "00000000000000AA-00000000000000bb.tvb")->kind, TV_STORE_FOREIGN);
	assert_int_equal(find(&l, "notes.txt")->kind, TV_STORE_FOREIGN);
	assert_false(find(&l, "00000000000000dd.tvb")->regular);
	assert_int_equal(tv_store_block_name_kind("0000000000000001-0000000000000002.tvb", &id),
			 TV_STORE_BLOCK);
	assert_int_equal(id, 2);
	assert_int_equal(tv_store_block_name_kind("0000000000000001-0000000000000002.tmp", &id),
			 TV_STORE_FOREIGN);
}

static void test_recovery_primitives(void **state)
{
	struct fixture *f = *state;
	struct listed l = { 0 };
	char path[256];
	void *buf = NULL;
	size_t len = 0;
	int64_t mtime = 0;

	/* a legacy name gets its segment; never over an existing file */
	put_file(f->dir, "blocks/0000000000000010.tvb", "legacy");
	assert_int_equal(tv_store_rename_block(f->s, "0000000000000010.tvb", 5, 0x10), 0);
	assert_true(exists(f->dir, "blocks/0000000000000005-0000000000000010.tvb"));
	put_file(f->dir, "blocks/0000000000000010.tvb", "again");
	assert_int_equal(tv_store_rename_block(f->s, "0000000000000010.tvb", 5, 0x10), -EEXIST);
	assert_int_equal(tv_store_read_named(f->s, "0000000000000010.tvb", 64, &buf, &len, &mtime),
			 0);
	assert_int_equal(len, 5);
	assert_true(mtime > 0);
	free(buf);
	/* a publish a crash interrupted is finished from tmp/ */
	put_file(f->dir, "tmp/0000000000000006-0000000000000020.tmp", "temp");
	assert_int_equal(tv_store_list_temp(f->s, collect, &l), 0);
	assert_int_equal(l.n, 1);
	assert_int_equal(l.e[0].kind, TV_STORE_TEMP);
	assert_true(l.e[0].segment_id == 6 && l.e[0].block_id == 0x20);
	assert_int_equal(tv_store_publish_temp(f->s, 6, 0x20), 0);
	assert_int_equal(tv_store_read_block(f->s, 6, 0x20, 64, &buf, &len), 0);
	free(buf);
	assert_int_equal(count_entries(f->dir, "tmp"), 0);
	/* a symlink in blocks/ is not followed, a fifo not waited on */
	snprintf(path, sizeof(path), "%s/blocks/0000000000000001-0000000000000030.tvb", f->dir);
	assert_int_equal(symlink("/etc/hostname", path), 0);
	assert_int_equal(tv_store_read_block(f->s, 1, 0x30, 64, &buf, &len), -ELOOP);
	snprintf(path, sizeof(path), "%s/blocks/0000000000000001-0000000000000031.tvb", f->dir);
	assert_int_equal(mkfifo(path, 0600), 0);
	assert_int_equal(tv_store_read_block(f->s, 1, 0x31, 64, &buf, &len), -EINVAL);
}

static void read_text(const char *dir, const char *rel, char *buf, size_t len)
{
	char path[256];
	FILE *fp;
	size_t n;

	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	fp = fopen(path, "r");
	assert_non_null(fp);
	n = fread(buf, 1, len - 1, fp);
	buf[n] = '\0';
	fclose(fp);
}

static void test_quarantine_moves_aside_with_reason(void **state)
{
	struct fixture *f = *state;
	char q[64], text[256];
	struct stat st;

	put_file(f->dir, "blocks/0000000000000001-0000000000000002.tvb", "bad one");
	assert_int_equal(tv_store_quarantine(f->s, TV_STORE_AREA_BLOCKS,
					     "0000000000000001-0000000000000002.tvb",
					     "payload checksum mismatch", q, sizeof(q)), 0);
	assert_string_equal(q, "0000000000000001-0000000000000002.tvb");
	assert_false(exists(f->dir, "blocks/0000000000000001-0000000000000002.tvb"));
	read_text(f->dir, "quarantine/0000000000000001-0000000000000002.tvb", text, sizeof(text));
	assert_string_equal(text, "bad one");
	read_text(f->dir, "quarantine/0000000000000001-0000000000000002.tvb.reason", text,
		  sizeof(text));
	assert_non_null(strstr(text, "payload checksum mismatch\nfrom: blocks/0000000000000001-"
				     "0000000000000002.tvb\nat_unix_ns: "));
	/* the same name again: a suffix, the first copy untouched; a dir moves whole */
	put_file(f->dir, "blocks/0000000000000001-0000000000000002.tvb", "bad two");
	assert_int_equal(tv_store_quarantine(f->s, TV_STORE_AREA_BLOCKS,
					     "0000000000000001-0000000000000002.tvb", "again", q,
					     sizeof(q)), 0);
	assert_string_equal(q, "0000000000000001-0000000000000002.tvb.1");
	read_text(f->dir, "quarantine/0000000000000001-0000000000000002.tvb", text, sizeof(text));
	assert_string_equal(text, "bad one");
	put_file(f->dir, "catalog.db", "not sqlite");
	assert_int_equal(tv_store_quarantine(f->s, TV_STORE_AREA_DATA, "catalog.db", "garbage",
					     NULL, 0), 0);
	assert_true(exists(f->dir, "quarantine/catalog.db"));
	assert_int_equal(tv_store_quarantine(f->s, TV_STORE_AREA_TMP, "none", "x", NULL, 0),
			 -ENOENT);
	assert_int_equal(lstat(strcat(strcpy(text, f->dir), "/quarantine"), &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
}

/* a committed block file (segment 1, id) holding text */
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
	assert_int_equal(tv_store_open_block(f->s, 1, 0xab, &fd, &size), 0);
	assert_true(fd >= 0);
	assert_int_equal(size, 10);
	close(fd);
	assert_int_equal(tv_store_open_block(f->s, 1, 0xac, &fd, &size), -ENOENT);
	assert_int_equal(fd, -1);
	snprintf(path, sizeof(path), "%s/blocks/0000000000000001-00000000000000ac.tvb", f->dir);
	assert_int_equal(symlink("/etc/passwd", path), 0);
	assert_int_equal(tv_store_open_block(f->s, 1, 0xac, &fd, &size), -ELOOP);
	snprintf(path, sizeof(path), "%s/blocks/0000000000000001-00000000000000ad.tvb", f->dir);
	assert_int_equal(mkfifo(path, 0600), 0);
	assert_int_equal(tv_store_open_block(f->s, 1, 0xad, &fd, &size), -EMEDIUMTYPE);
	snprintf(path, sizeof(path), "%s/blocks/0000000000000001-00000000000000ae.tvb", f->dir);
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(tv_store_open_block(f->s, 1, 0xae, &fd, &size), -EMEDIUMTYPE);
	assert_int_equal(fd, -1);
}

/* A query reading a block through tv_store_open_block's descriptor reads on when the file is
 * quarantined meanwhile (a rename: the inode stays). */
static void test_open_block_survives_quarantine(void **state)
{
	struct fixture *f = *state;
	char buf[16] = "";
	uint64_t size = 0;
	int fd = -1;

	publish_block(f, 0xab, "first");
	assert_int_equal(tv_store_open_block(f->s, 1, 0xab, &fd, &size), 0);
	assert_int_equal(tv_store_quarantine(f->s, TV_STORE_AREA_BLOCKS,
					     "0000000000000001-00000000000000ab.tvb", "test", NULL, 0),
			 0);
	assert_int_equal(pread(fd, buf, 5, 0), 5);
	assert_string_equal(buf, "first");
	close(fd);
	assert_int_equal(tv_store_open_block(f->s, 1, 0xab, &fd, &size), -ENOENT);
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
		cmocka_unit_test_setup_teardown(test_names_are_classified, setup, teardown),
		cmocka_unit_test_setup_teardown(test_recovery_primitives, setup, teardown),
		cmocka_unit_test_setup_teardown(test_quarantine_moves_aside_with_reason, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_open_block_refuses_what_is_not_a_block_file,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_block_survives_quarantine, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Raw io_uring disk write ceilings for bench/run.sh, without any protocol, in two modes.
 *
 * --blocks (what run.sh's ingest step bounds ingest with): the server's own sync pattern
 * (server/store_uring.c, server/segment.c). Per block of BLOCK_SIZE (4 MiB; "1563K" for the
 * size a sealed block really has on disk: bench/run.sh passes it) a fresh file in DIR/tmp/,
 * written in 1 MiB writes (the last one shorter when the size is not whole MiB) through io_uring (at most QUEUE_DEPTH in flight, across
 * blocks), fdatasynced by one io_uring op as soon as its writes are done (overlapping the next
 * blocks' writes) and closed; per segment of BLOCKS_PER_SEGMENT (8) blocks, once every block is
 * synced: rename each into DIR/blocks/, fsync blocks/ and tmp/, and append one 4 KiB page to a
 * catalog file with an fdatasync (the catalog's WAL commit, synchronous=FULL).
 *
 * --one-file (the old ceiling, kept for comparison): 1 MiB writes into one file that is
 * rewritten in place, an fdatasync every SYNC_MIB (32). It does not bound the server's ingest:
 * see bench/README.md, "Why the old disk ceiling did not bound ingest". */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <liburing.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"

#define BUF_BYTES (1u << 20)       /* one write: 1 MiB */
#define QUEUE_DEPTH 8              /* writes in flight at most */
#define RING_ENTRIES 64            /* writes + one fdatasync per block of a segment */
#define DEFAULT_SYNC_MIB 32        /* --one-file: a segment's bytes per fdatasync */
#define DEFAULT_BLOCK_MIB 4        /* --blocks: the client's block size (raw records) */
#define DEFAULT_BLOCKS_PER_SEG 8   /* --blocks: the client's blocks per segment */
#define MAX_BLOCKS_PER_SEG 32      /* user_data keeps the block index in 8 bits; a sane bound */
#define MAX_BLOCK_MIB 1024
#define CATALOG_PAGE_BYTES 4096    /* one WAL page per commit */
#define NAME_BYTES 64
#define PATH_BYTES 4096
#define OP_WRITE 1u
#define OP_SYNC 2u

#define USAGE "usage: ceiling_uring --blocks DIR MIB [BLOCK_MIB|BLOCK_KIBK [BLOCKS_PER_SEGMENT]] | " \
	      "ceiling_uring [--one-file] DIR MIB [SYNC_MIB]\n"

static int fail(const char *what, int err)
{
	fprintf(stderr, "ceiling_uring: %s: %s\n", what, strerror(err));
	return 1;
}

static long parse_pos(const char *s, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v <= 0 || v > max)
		return -1;
	return v;
}

/* A write's user_data: OP_WRITE, the block index (bits 8-31), its length (bits 32-63), so that
 * a completion can be checked against the length it was submitted with. */
static uint64_t write_ud(uint64_t index, uint64_t len)
{
	return OP_WRITE | index << 8 | len << 32;
}

/* Waits for one completion; returns its user_data through *ud, or a negative errno (-EIO for
 * a write shorter than submitted). */
static int reap(struct io_uring *ring, uint64_t *ud)
{
	struct io_uring_cqe *cqe;
	int ret = io_uring_wait_cqe(ring, &cqe);

	if (ret)
		return ret;
	*ud = cqe->user_data;
	ret = cqe->res;
	io_uring_cqe_seen(ring, cqe);
	if (ret < 0)
		return ret;
	if ((*ud & 0xffu) == OP_WRITE && (uint64_t)ret != *ud >> 32)
		return -EIO; /* a short write: a full disk, in practice */
	return 0;
}

/* --blocks' BLOCK_SIZE: MiB ("4"), or KiB with a K suffix ("1563K"); bytes, or -1 when it is
 * not a size from 4 KiB to MAX_BLOCK_MIB MiB. */
static long parse_block_bytes(const char *s)
{
	size_t n = strlen(s);
	char num[32];
	long v;

	if (n > 1 && n < sizeof(num) && s[n - 1] == 'K') {
		memcpy(num, s, n - 1);
		num[n - 1] = 0;
		v = parse_pos(num, MAX_BLOCK_MIB * 1024L);
		return v < 4 ? -1 : v * 1024;
	}
	v = parse_pos(s, MAX_BLOCK_MIB);
	return v < 0 ? -1 : v * (long)BUF_BYTES;
}

static int one_file(const char *dir, long mib, long sync_mib)
{
	struct io_uring ring;
	char path[PATH_BYTES];
	long sync_at = sync_mib, submitted = 0, done = 0;
	uint64_t ud = 0;
	char *buf;
	double t0, dt;
	int fd, ret;

	snprintf(path, sizeof(path), "%s/ceiling_uring.dat", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return fail(path, errno);
	ret = io_uring_queue_init(QUEUE_DEPTH, &ring, 0);
	if (ret)
		return fail("io_uring_queue_init", -ret);
	buf = aligned_alloc(4096, BUF_BYTES);
	if (!buf)
		return fail("aligned_alloc", ENOMEM);
	memset(buf, 0xa5, BUF_BYTES);
	t0 = tv_monotonic_ns() / 1e9;
	while (done < mib) {
		/* never run ahead of the next sync point: each sync covers exactly sync_mib */
		while (submitted < mib && submitted < sync_at && submitted - done < QUEUE_DEPTH) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);

			io_uring_prep_write(sqe, fd, buf, BUF_BYTES, (off_t)submitted * BUF_BYTES);
			sqe->user_data = write_ud(0, BUF_BYTES);
			submitted++;
		}
		io_uring_submit(&ring);
		ret = reap(&ring, &ud);
		if (ret)
			return fail("write", -ret);
		done++;
		/* completions arrive in any order: sync once everything submitted so far is done */
		if (done == sync_at || done == mib) {
			if (fdatasync(fd))
				return fail("fdatasync", errno);
			sync_at += sync_mib;
		}
	}
	dt = tv_monotonic_ns() / 1e9 - t0;
	printf("uring_write_fdatasync_MBps %.1f\n", mib * (double)BUF_BYTES / dt / 1e6);
	io_uring_queue_exit(&ring);
	close(fd);
	unlink(path);
	free(buf);
	return 0;
}

struct blk {
	int fd;
	long written; /* writes (of 1 MiB, the last maybe shorter) completed */
	long submitted;
	int synced;
	char name[NAME_BYTES];
};

static int open_dir(const char *dir, const char *sub)
{
	char path[PATH_BYTES];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	if (mkdir(path, 0700) && errno != EEXIST)
		return -errno;
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* block_bytes per block file: writes of BUF_BYTES, the last one shorter if need be. */
static int blocks(const char *dir, long mib, long block_bytes, long per_seg)
{
	struct io_uring ring;
	struct blk b[MAX_BLOCKS_PER_SEG];
	char name[NAME_BYTES], *buf, *page;
	long nblocks = mib * (long)BUF_BYTES / block_bytes, blocks_done = 0, seg = 0, files = 0;
	long inflight, writes = (block_bytes + BUF_BYTES - 1) / BUF_BYTES; /* per block */
	int tmp_fd, blocks_fd, cat_fd, ret;
	off_t cat_off = 0;
	double t0, dt;
	uint64_t ud = 0;

	if (nblocks < 1)
		nblocks = 1;
	tmp_fd = open_dir(dir, "tmp");
	blocks_fd = open_dir(dir, "blocks");
	if (tmp_fd < 0 || blocks_fd < 0)
		return fail("mkdir tmp/ or blocks/", -(tmp_fd < 0 ? tmp_fd : blocks_fd));
	cat_fd = openat(tmp_fd, "../ceiling_catalog.wal", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
			0600);
	if (cat_fd < 0)
		return fail("catalog file", errno);
	ret = io_uring_queue_init(RING_ENTRIES, &ring, 0);
	if (ret)
		return fail("io_uring_queue_init", -ret);
	buf = aligned_alloc(4096, BUF_BYTES);
	page = aligned_alloc(4096, CATALOG_PAGE_BYTES);
	if (!buf || !page)
		return fail("aligned_alloc", ENOMEM);
	memset(buf, 0xa5, BUF_BYTES);
	memset(page, 0x5a, CATALOG_PAGE_BYTES);
	t0 = tv_monotonic_ns() / 1e9;
	while (blocks_done < nblocks) {
		long n = nblocks - blocks_done < per_seg ? nblocks - blocks_done : per_seg;
		long next = 0, synced = 0; /* next block to write into */

		for (long i = 0; i < n; i++) {
			snprintf(b[i].name, sizeof(b[i].name), "%016lx-%016lx.tvb", seg, i);
			b[i].fd = openat(tmp_fd, b[i].name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
					 0600);
			if (b[i].fd < 0)
				return fail(b[i].name, errno);
			b[i].written = b[i].submitted = b[i].synced = 0;
		}
		inflight = 0;
		while (synced < n) {
			/* writes in block order, QUEUE_DEPTH of them in flight at most */
			while (next < n && inflight < QUEUE_DEPTH) {
				struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
				off_t off = (off_t)b[next].submitted * BUF_BYTES;
				unsigned len = block_bytes - off < BUF_BYTES ? block_bytes - off
									     : BUF_BYTES;

				io_uring_prep_write(sqe, b[next].fd, buf, len, off);
				sqe->user_data = write_ud((uint64_t)next, len);
				inflight++;
				if (++b[next].submitted == writes)
					next++;
			}
			io_uring_submit(&ring);
			ret = reap(&ring, &ud);
			if (ret)
				return fail((ud & 0xffu) == OP_SYNC ? "fdatasync" : "write", -ret);
			long i = (long)(ud >> 8 & 0xffffffu);

			if ((ud & 0xffu) == OP_SYNC) {
				b[i].synced = 1;
				close(b[i].fd);
				synced++;
				continue;
			}
			inflight--;
			if (++b[i].written == writes) {
				/* the block's last write is done: fdatasync it now, one io_uring op */
				struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);

				io_uring_prep_fsync(sqe, b[i].fd, IORING_FSYNC_DATASYNC);
				sqe->user_data = OP_SYNC | (uint64_t)i << 8;
			}
		}
		/* commit: rename in, fsync both directories, one catalog WAL page made durable */
		for (long i = 0; i < n; i++)
			if (renameat(tmp_fd, b[i].name, blocks_fd, b[i].name))
				return fail("rename", errno);
		if (fsync(blocks_fd) || fsync(tmp_fd))
			return fail("fsync dir", errno);
		if (pwrite(cat_fd, page, CATALOG_PAGE_BYTES, cat_off) != CATALOG_PAGE_BYTES ||
		    fdatasync(cat_fd))
			return fail("catalog write", errno ? errno : EIO);
		cat_off += CATALOG_PAGE_BYTES;
		blocks_done += n;
		files += n;
		seg++;
	}
	dt = tv_monotonic_ns() / 1e9 - t0;
	printf("uring_blocks_fdatasync_MBps %.1f\n",
	       nblocks * (double)block_bytes / dt / 1e6);
	printf("uring_blocks_files %ld\n", files);
	printf("uring_blocks_segments %ld\n", seg);
	/* cleanup, untimed */
	for (long s = 0; s < seg; s++)
		for (long i = 0; i < per_seg; i++) {
			snprintf(name, sizeof(name), "%016lx-%016lx.tvb", s, i);
			unlinkat(blocks_fd, name, 0);
		}
	unlinkat(tmp_fd, "../ceiling_catalog.wal", 0);
	close(cat_fd);
	close(tmp_fd);
	close(blocks_fd);
	{
		char path[PATH_BYTES];

		snprintf(path, sizeof(path), "%s/tmp", dir);
		rmdir(path);
		snprintf(path, sizeof(path), "%s/blocks", dir);
		rmdir(path);
	}
	io_uring_queue_exit(&ring);
	free(buf);
	free(page);
	return 0;
}

int main(int argc, char **argv)
{
	int mode_blocks = 0, a = 1;
	long mib, x = 0, y = 0;

	if (argc > 1 && !strcmp(argv[1], "--blocks"))
		mode_blocks = 1, a = 2;
	else if (argc > 1 && !strcmp(argv[1], "--one-file"))
		a = 2;
	if (argc - a < 2 || argc - a > (mode_blocks ? 4 : 3) ||
	    (mib = parse_pos(argv[a + 1], LONG_MAX / BUF_BYTES)) < 0 ||
	    (argc - a > 2 && (x = mode_blocks ? parse_block_bytes(argv[a + 2])
					      : parse_pos(argv[a + 2], MAX_BLOCK_MIB)) < 0) ||
	    (argc - a > 3 && (y = parse_pos(argv[a + 3], MAX_BLOCKS_PER_SEG)) < 0)) {
		fputs(USAGE, stderr);
		return 2;
	}
	if (mode_blocks)
		return blocks(argv[a], mib, x ? x : DEFAULT_BLOCK_MIB * (long)BUF_BYTES,
			      y ? y : DEFAULT_BLOCKS_PER_SEG);
	return one_file(argv[a], mib, x ? x : DEFAULT_SYNC_MIB);
}

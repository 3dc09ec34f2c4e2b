/* Raw io_uring disk write ceiling for bench/run.sh: N MiB of 1 MiB writes through io_uring
 * (queue depth 8) to one file in DIR with an fdatasync every SYNC_MIB (run.sh: 32, a segment's
 * bytes), without any protocol. The server writes one file per block instead and syncs a
 * segment's files with one fdatasync each, all in flight together. */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"

#define BUF_BYTES (1u << 20)
#define QUEUE_DEPTH 8

int main(int argc, char **argv)
{
	struct io_uring ring;
	struct io_uring_cqe *cqe;
	char path[4096];
	long mib, sync_mib = 32, sync_at, submitted = 0, done = 0;
	char *buf;
	double t0, dt;
	int fd, ret;

	if ((argc != 3 && argc != 4) || (mib = strtol(argv[2], NULL, 10)) <= 0 ||
	    (argc == 4 && (sync_mib = strtol(argv[3], NULL, 10)) <= 0)) {
		fprintf(stderr, "usage: ceiling_uring DIR MIB [SYNC_MIB]\n");
		return 2;
	}
	snprintf(path, sizeof(path), "%s/ceiling_uring.dat", argv[1]);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0) {
		fprintf(stderr, "ceiling_uring: open %s: %s\n", path, strerror(errno));
		return 1;
	}
	ret = io_uring_queue_init(QUEUE_DEPTH, &ring, 0);
	if (ret) {
		fprintf(stderr, "ceiling_uring: io_uring_queue_init: %s\n", strerror(-ret));
		return 1;
	}
	sync_at = sync_mib;
	buf = aligned_alloc(4096, BUF_BYTES);
	if (!buf)
		return 1;
	memset(buf, 0xa5, BUF_BYTES);
	t0 = tv_monotonic_ns() / 1e9;
	while (done < mib) {
		/* never run ahead of the next sync point: each sync covers exactly sync_mib */
		while (submitted < mib && submitted < sync_at && submitted - done < QUEUE_DEPTH) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);

			io_uring_prep_write(sqe, fd, buf, BUF_BYTES, (off_t)submitted * BUF_BYTES);
			submitted++;
		}
		io_uring_submit(&ring);
		ret = io_uring_wait_cqe(&ring, &cqe);
		if (ret || cqe->res != (int)BUF_BYTES) {
			fprintf(stderr, "ceiling_uring: write: %s\n",
				strerror(ret ? -ret : cqe->res < 0 ? -cqe->res : EIO));
			return 1;
		}
		io_uring_cqe_seen(&ring, cqe);
		done++;
		/* completions arrive in any order: sync once everything submitted so far is done */
		if (done == sync_at || done == mib) {
			if (fdatasync(fd)) {
				fprintf(stderr, "ceiling_uring: fdatasync: %s\n", strerror(errno));
				return 1;
			}
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

/* Test-only: moves bytes on an inherited socket with io_uring (IORING_OP_SEND / IORING_OP_RECV),
 * which no syscall tracepoint of the capture sees, so test_capture_unhooked.py can check that
 * such bytes become a counted gap found from the kernel's TCP counters. */
#include <errno.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* What one run moves at most (a request or a response of the test). */
#define MAX_BYTES (1 << 20)
#define RING_ENTRIES 4

static const char usage[] =
	"Usage: tv_uring_io FD send   (send stdin's bytes on socket FD)\n"
	"       tv_uring_io FD recv N (receive exactly N bytes from socket FD to stdout)\n"
	"Moves the bytes with io_uring only (at most 1 MiB). Exit 0, 1 on a failure, 2 usage.\n";

/* One SEND or RECV of len bytes at buf on fd through ring: bytes moved or a negative errno. */
static int uring_op(struct io_uring *ring, int send, int fd, char *buf, size_t len)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	struct io_uring_cqe *cqe;
	int rc;

	if (!sqe)
		return -EBUSY;
	if (send)
		io_uring_prep_send(sqe, fd, buf, len, 0);
	else
		io_uring_prep_recv(sqe, fd, buf, len, 0);
	rc = io_uring_submit(ring);
	if (rc < 0)
		return rc;
	rc = io_uring_wait_cqe(ring, &cqe);
	if (rc < 0)
		return rc;
	rc = cqe->res;
	io_uring_cqe_seen(ring, cqe);
	return rc;
}

int main(int argc, char **argv)
{
	struct io_uring ring;
	size_t want, done = 0;
	char *buf;
	int fd, send, rc, ret = 1;

	if (argc < 3 || (strcmp(argv[2], "send") && strcmp(argv[2], "recv")) ||
	    (!strcmp(argv[2], "recv") && argc != 4)) {
		fputs(usage, stderr);
		return 2;
	}
	fd = atoi(argv[1]);
	send = !strcmp(argv[2], "send");
	buf = malloc(MAX_BYTES);
	if (!buf)
		return 1;
	if (send) {
		ssize_t n;

		while (done < MAX_BYTES && (n = read(0, buf + done, MAX_BYTES - done)) > 0)
			done += (size_t)n;
		want = done;
		done = 0;
	} else {
		want = strtoul(argv[3], NULL, 10);
		if (want > MAX_BYTES) {
			fputs(usage, stderr);
			free(buf);
			return 2;
		}
	}
	rc = io_uring_queue_init(RING_ENTRIES, &ring, 0);
	if (rc < 0) {
		fprintf(stderr, "tv_uring_io: io_uring_queue_init: %s\n", strerror(-rc));
		free(buf);
		return 1;
	}
	while (done < want) {
		rc = uring_op(&ring, send, fd, buf + done, want - done);
		if (rc <= 0) {
			fprintf(stderr, "tv_uring_io: %s on fd %d: %s\n", argv[2], fd,
				rc ? strerror(-rc) : "end of stream");
			goto out;
		}
		done += (size_t)rc;
	}
	if (!send && fwrite(buf, 1, done, stdout) != done) {
		fprintf(stderr, "tv_uring_io: writing stdout failed\n");
		goto out;
	}
	ret = 0;
out:
	io_uring_queue_exit(&ring);
	free(buf);
	return ret;
}

/* Raw loopback TCP ceiling for bench/run.sh: one sender and one receiver thread move N MiB in
 * 1 MiB writes over 127.0.0.1 with no framing; prints MB/s as the bound our ingest is held to. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/clock.h"

#define BUF_BYTES (1u << 20)

static void *drain(void *arg)
{
	int fd = *(int *)arg;
	char *buf = malloc(BUF_BYTES);
	ssize_t n;

	while (buf && (n = read(fd, buf, BUF_BYTES)) > 0)
		;
	free(buf);
	return NULL;
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	long mib = argc > 1 ? strtol(argv[1], NULL, 10) : 2048;
	int lfd, cfd, sfd;
	pthread_t th;
	char *buf;
	double t0, dt;

	if (mib <= 0) {
		fprintf(stderr, "usage: ceiling_tcp [MIB]\n");
		return 2;
	}
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (lfd < 0 || bind(lfd, (void *)&a, sizeof(a)) || listen(lfd, 1) ||
	    getsockname(lfd, (void *)&a, &alen)) {
		perror("ceiling_tcp: listen on 127.0.0.1");
		return 1;
	}
	cfd = socket(AF_INET, SOCK_STREAM, 0);
	if (cfd < 0 || connect(cfd, (void *)&a, sizeof(a))) {
		perror("ceiling_tcp: connect");
		return 1;
	}
	sfd = accept(lfd, NULL, NULL);
	if (sfd < 0 || pthread_create(&th, NULL, drain, &sfd)) {
		perror("ceiling_tcp: accept");
		return 1;
	}
	buf = malloc(BUF_BYTES);
	if (!buf)
		return 1;
	memset(buf, 0x5a, BUF_BYTES);
	t0 = tv_monotonic_ns() / 1e9;
	for (long i = 0; i < mib; i++) {
		size_t off = 0;

		while (off < BUF_BYTES) {
			ssize_t n = write(cfd, buf + off, BUF_BYTES - off);

			if (n < 0) {
				perror("ceiling_tcp: write");
				return 1;
			}
			off += (size_t)n;
		}
	}
	shutdown(cfd, SHUT_WR);
	pthread_join(th, NULL);
	dt = tv_monotonic_ns() / 1e9 - t0;
	printf("tcp_loopback_MBps %.1f\n", mib * (double)BUF_BYTES / dt / 1e6);
	free(buf);
	close(cfd);
	close(sfd);
	close(lfd);
	return 0;
}

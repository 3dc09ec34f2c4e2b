/* memcpy bandwidth ceiling for bench/run.sh: one thread copies MIB MiB, BUF_MIB at a time
 * between two buffers larger than the caches, and prints memcpy_MBps (bytes copied per
 * second). The bound of any path that copies each payload byte once in user space. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"

#define BUF_MIB 64              /* each buffer: well beyond the last-level cache */
#define MIB_BYTES (1ul << 20)
#define MAX_MIB (1l << 30)      /* a sane bound on the argument: 1 PiB */

int main(int argc, char **argv)
{
	size_t len = (size_t)BUF_MIB * MIB_BYTES;
	unsigned char *a, *b;
	volatile unsigned char sink;
	long mib, rounds;
	char *end;
	double t0, dt;

	if (argc != 2 || (mib = strtol(argv[1], &end, 10)) <= 0 || *end || mib > MAX_MIB) {
		fprintf(stderr, "usage: ceiling_memcpy MIB\n");
		return 2;
	}
	a = malloc(len);
	b = malloc(len);
	if (!a || !b) {
		fprintf(stderr, "ceiling_memcpy: malloc: out of memory\n");
		return 1;
	}
	/* touch both, so page faults are not timed */
	memset(a, 0xa5, len);
	memset(b, 0x5a, len);
	rounds = (mib + BUF_MIB - 1) / BUF_MIB;
	t0 = tv_monotonic_ns() / 1e9;
	for (long r = 0; r < rounds; r++) {
		if (r & 1)
			memcpy(a, b, len);
		else
			memcpy(b, a, len);
	}
	dt = tv_monotonic_ns() / 1e9 - t0;
	sink = a[len / 2] ^ b[len / 3]; /* the copies are used */
	(void)sink;
	printf("memcpy_MBps %.1f\n", rounds * (double)len / dt / 1e6);
	free(a);
	free(b);
	return 0;
}

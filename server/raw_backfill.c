/* raw_bytes of old catalog rows from their block headers (raw_backfill.h). */
#include "server/raw_backfill.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/block.h"
#include "server/recovery.h" /* TV_RECOVERY_LOG_LINES */

struct todo {
	struct tv_catalog_block *v;
	size_t n, cap;
};

static int collect(const struct tv_catalog_block *b, void *arg)
{
	struct todo *t = arg;

	if (t->n == t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 64;
		struct tv_catalog_block *v = realloc(t->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		t->v = v;
		t->cap = cap;
	}
	t->v[t->n++] = *b;
	return 0;
}

/* The raw_bytes of block b's header: 0, or a negative errno (no file, unreadable, a header that
 * does not verify or names another block). */
static int header_raw_bytes(struct tv_store *s, const struct tv_catalog_block *b, uint64_t *raw)
{
	uint8_t buf[TV_BLOCK_MAX_HEADER_BYTES];
	struct tv_block_header h;
	uint64_t size;
	ssize_t got;
	int fd, ret;

	ret = tv_store_open_block(s, b->segment_id, b->block_id, &fd, &size);
	if (ret)
		return ret;
	got = pread(fd, buf, sizeof(buf) < size ? sizeof(buf) : (size_t)size, 0);
	ret = got < 0 ? -errno : 0;
	close(fd);
	if (ret)
		return ret;
	ret = tv_block_header_parse(buf, (size_t)got, &h, NULL, 0);
	if (ret)
		return ret;
	if (h.block_id != b->block_id)
		return -EBADMSG;
	*raw = h.raw_bytes;
	return 0;
}

int tv_raw_backfill(struct tv_catalog *c, struct tv_store *s, uint64_t *filled,
		    uint64_t *unknown, char *err, size_t errlen)
{
	struct todo t = { 0 };
	struct tv_catalog_raw *set = NULL;
	size_t nset = 0;
	uint64_t missed = 0;
	int ret;

	ret = tv_catalog_raw_unknown(c, collect, &t);
	if (ret) {
		snprintf(err, errlen, "catalog: cannot list rows without raw_bytes: %s",
			 strerror(-ret));
		goto out;
	}
	if (t.n == 0)
		goto out;
	set = malloc(t.n * sizeof(*set));
	if (!set) {
		ret = -ENOMEM;
		snprintf(err, errlen, "catalog: raw_bytes fill-in: %s", strerror(-ret));
		goto out;
	}
	for (size_t i = 0; i < t.n; i++) {
		uint64_t raw;
		int r = header_raw_bytes(s, &t.v[i], &raw);

		if (r) {
			if (missed++ < TV_RECOVERY_LOG_LINES)
				fprintf(stderr, "recovery: block %016llx: cannot read raw_bytes from its "
					"header (%s): it stays unknown\n",
					(unsigned long long)t.v[i].block_id, strerror(-r));
			continue;
		}
		set[nset++] = (struct tv_catalog_raw){ t.v[i].block_id, raw };
	}
	ret = tv_catalog_set_raw_bytes(c, set, nset);
	if (ret) {
		snprintf(err, errlen, "catalog: cannot store raw_bytes: %s", strerror(-ret));
		goto out;
	}
	fprintf(stderr, "recovery: raw_bytes of %zu blocks read from their headers "
		"(%llu unreadable)\n", nset, (unsigned long long)missed);
out:
	if (filled)
		*filled = nset;
	if (unknown)
		*unknown = missed;
	free(set);
	free(t.v);
	return ret;
}

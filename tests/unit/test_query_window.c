/* The reverse Query's window (server/query_window.h) against a model: after any sequence of
 * pushes it holds exactly the newest records whose cost fits TV_QUERY_WINDOW_BYTES, hands
 * them back newest first byte for byte (also those wrapping the ring's end), within its
 * memory bound; a refused reservation leaves it as it
 * was, and everything reserved is given back. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "server/query_window.h"

#define ROUNDS 40
#define MAX_PUSHES 1500

struct budget {
	size_t used, limit;
};

static int reserve(void *arg, size_t bytes, char *why, size_t whylen)
{
	struct budget *b = arg;

	if (bytes > b->limit - b->used) {
		snprintf(why, whylen, "test budget of %zu bytes spent", b->limit);
		return -ENOBUFS;
	}
	b->used += bytes;
	return 0;
}

static void release(void *arg, size_t bytes)
{
	struct budget *b = arg;

	assert_true(bytes <= b->used);
	b->used -= bytes;
}

static uint64_t rng_state;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* The bytes of the record of ordinal o: a pattern that differs by ordinal and position. */
static void fill(uint8_t *p, size_t len, uint32_t o)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(o * 131u + i * 7u + (i >> 8));
}

static size_t draw_len(void)
{
	switch (rnd() % 40) {
	case 0:
		return 0;
	case 1:
		return TV_BLOCK_MAX_RECORD_BYTES - rnd() % 3; /* the largest records */
	case 2:
	case 3:
		return 100000 + rnd() % 400000;
	default:
		return 1 + rnd() % 9000;
	}
}

/* The window holds the longest run of newest records whose costs fit: check it against lens. */
static void check_kept(const struct tv_query_window *w, const size_t *lens, uint32_t n)
{
	size_t cost = 0;
	uint32_t first = n;

	while (first > 0 && cost + lens[first - 1] + TV_QUERY_WINDOW_ENTRY_BYTES <=
				    TV_QUERY_WINDOW_BYTES) {
		cost += lens[first - 1] + TV_QUERY_WINDOW_ENTRY_BYTES;
		first--;
	}
	assert_int_equal(w->cost, cost);
	assert_int_equal(w->n - w->first, n - first);
	assert_int_equal(tv_query_window_oldest(w)->ordinal, first);
	assert_int_equal(w->evicted, first > 0);
	assert_true(w->held <= 3 * (size_t)TV_QUERY_WINDOW_BYTES);
}

static void test_window_matches_its_model(void **state)
{
	static size_t lens[MAX_PUSHES];
	struct budget b = { .limit = SIZE_MAX };
	struct tv_block_budget bb = { .reserve = reserve, .release = release, .arg = &b };
	uint8_t *rec = malloc(TV_BLOCK_MAX_RECORD_BYTES), *got = malloc(TV_BLOCK_MAX_RECORD_BYTES);
	struct tv_query_window w;
	unsigned wrapped = 0;
	char why[128];

	(void)state;
	assert_non_null(rec);
	assert_non_null(got);
	rng_state = 0x9e3779b97f4a7c15ull;
	tv_query_window_init(&w, &bb);
	for (int round = 0; round < ROUNDS; round++) {
		uint32_t n = (uint32_t)(1 + rnd() % (round % 4 == 0 ? MAX_PUSHES : 60));

		tv_query_window_reset(&w);
		for (uint32_t o = 0; o < n; o++) {
			lens[o] = draw_len();
			fill(rec, lens[o], o);
			assert_int_equal(tv_query_window_push(&w, rec, lens[o], 1000 + o, o, why,
							      sizeof(why)), 0);
			check_kept(&w, lens, o + 1);
		}
		/* newest first, byte for byte, until empty */
		for (uint32_t o = n; !tv_query_window_empty(&w); o--) {
			const uint8_t *p1, *p2;
			size_t l1, l2;
			const struct tv_query_window_rec *r = tv_query_window_last(&w, &p1, &l1, &p2,
										   &l2);

			assert_int_equal(r->ordinal, o - 1);
			assert_int_equal(r->ts_ns, 1000 + o - 1);
			assert_int_equal(l1 + l2, lens[o - 1]);
			assert_true(l2 == 0 || p2 != NULL);
			wrapped += l2 > 0;
			fill(rec, lens[o - 1], o - 1);
			memcpy(got, p1, l1);
			if (l2)
				memcpy(got + l1, p2, l2);
			if (lens[o - 1])
				assert_memory_equal(got, rec, lens[o - 1]);
			tv_query_window_pop(&w);
		}
		assert_int_equal(w.cost, 0);
		assert_int_equal(w.used, 0);
	}
	assert_true(wrapped > 0); /* the two-piece path ran */
	assert_int_equal(b.used, w.held);
	tv_query_window_free(&w);
	assert_int_equal(b.used, 0);
	free(rec);
	free(got);
}

/* A budget that refuses part way: the push fails -ENOBUFS with the budget's reason, and the
 * window still holds and returns what it held. */
static void test_refused_growth_leaves_the_window_as_it_was(void **state)
{
	struct budget b = { .limit = 200 << 10 };
	struct tv_block_budget bb = { .reserve = reserve, .release = release, .arg = &b };
	uint8_t rec[50000];
	struct tv_query_window w;
	char why[128] = "";
	uint32_t o = 0;
	int ret;

	(void)state;
	tv_query_window_init(&w, &bb);
	for (;; o++) {
		fill(rec, sizeof(rec), o);
		ret = tv_query_window_push(&w, rec, sizeof(rec), o, o, why, sizeof(why));
		if (ret)
			break;
		assert_true(o < 100);
	}
	assert_int_equal(ret, -ENOBUFS);
	assert_non_null(strstr(why, "test budget"));
	assert_int_equal(w.n - w.first, o); /* all before the refused one, none dropped */
	assert_false(w.evicted);
	assert_true(b.used <= b.limit);
	while (!tv_query_window_empty(&w)) {
		const uint8_t *p1, *p2;
		size_t l1, l2;

		o--;
		assert_int_equal(tv_query_window_last(&w, &p1, &l1, &p2, &l2)->ordinal, o);
		fill(rec, sizeof(rec), o);
		assert_int_equal(l1, sizeof(rec)); /* nothing was dropped: the ring never wrapped */
		assert_int_equal(l2, 0);
		assert_memory_equal(p1, rec, l1);
		tv_query_window_pop(&w);
	}
	assert_int_equal(o, 0);
	tv_query_window_free(&w);
	assert_int_equal(b.used, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_window_matches_its_model),
		cmocka_unit_test(test_refused_growth_leaves_the_window_as_it_was),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Summary executor: a hash table of groups keyed by the request's GroupBy, fed record by
 * record from its block reader (server/summary_scan.h reads, checks and filters the blocks,
 * version 3 ones column by column), then sorted by count and packed with each group's latency
 * sketch and quantiles.
 *
 * Finding a record's group: a record read from columns comes with its key's page-dictionary
 * id, and each id's group is looked up once per page (s->ids, tagged with the page's
 * generation), not once per record; status keys are cached by value for the whole summary.
 * Other records hash their key as before.
 *
 * Memory: each group (its struct, key and sketch buckets) and the table are charged to the
 * query's limit (tv_query_reserve), like its block streams. A new key that finds the limit
 * reached is counted in `other` instead (groups_overflowed); a sketch that cannot grow ends
 * the call RESOURCE_EXHAUSTED, since its record cannot be counted anywhere else exactly. */
#include "server/summary.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/latency_sketch.h"
#include "proto/wire.h"
#include "server/filter.h"
#include "server/summary_scan.h"

#define TABLE_MIN_SLOTS 64u
/* A group keeps its first latencies as they are and takes sketch buckets only past this
 * many: with raw paths (ids in them) most groups hold a few records, and a dense run of
 * buckets over their spread (often hundreds) would cost far more memory and time. The
 * answer is the same: the buckets are filled from the kept values before they are read. */
#define SMALL_LATENCIES 8
/* Status codes whose groups are cached by value (BY_STATUS): the HTTP range and then some */
#define STATUS_CACHE 1000

struct group {
	char *key; /* the bytes after the struct (NULL for other) */
	size_t key_len;
	uint64_t hash;
	uint64_t count, n_4xx, n_5xx, n_no_response, n_flagged;
	uint64_t lat_count, lat_min_ns, lat_max_ns, lat_sum_ns;
	bool spilled; /* the latencies are in sk, no longer in small */
	uint8_t nsmall;
	uint64_t small[SMALL_LATENCIES];
	struct tv_sketch sk;
};

/* A table slot: the group's index + 1 (0: empty) and the top bits of its key's hash, so a
 * probe that meets another key rarely touches that group's memory. */
struct slot {
	struct group *g; /* NULL: empty */
	uint32_t tag;
};

/* The group of a key's page-dictionary id, valid while gen is the summary's */
struct id_slot {
	uint32_t gen;
	struct group *g;
};

struct tv_summary {
	struct tv_query *q; /* an empty query: a place in the pool and the memory limits */
	struct tv_summary_scan *scan;
	struct id_slot *ids; /* TV_SUMMARY_SCAN_IDS of them (key fields with an id only) */
	uint32_t gen;
	struct group *status_groups[STATUS_CACHE];
	int by; /* TRACEVAULT__V1__GROUP_BY__* */
	uint32_t max_groups;
	double quantiles[TV_SUMMARY_MAX_QUANTILES];
	size_t nq;
	struct group **groups;
	size_t ngroups, groups_cap;
	struct slot *table; /* open addressing, linear probing; a power of two, at most half full */
	size_t table_slots;
	struct group other; /* keys that met the memory limit, then the groups cut from the reply */
	bool overflowed;
	uint64_t records;
	size_t held; /* bytes reserved through the query */
	char *scratch; /* a key built from the record (HOST lowercased) */
	size_t scratch_cap;
	char status_key[24];
};

static int charge(struct tv_summary *s, size_t bytes, char *err, size_t errlen)
{
	int ret;

	if (!bytes)
		return 0;
	ret = tv_query_reserve(s->q, bytes, err, errlen);
	if (!ret)
		s->held += bytes;
	return ret;
}

static void uncharge(struct tv_summary *s, size_t bytes)
{
	tv_query_release(s->q, bytes);
	s->held -= bytes;
}

/* ---- keys ---- */

/* FNV-1a, then murmur3's fmix64: FNV's low bits (the table index) hardly depend on the
 * high bits of the bytes, and keys that differ in their last digits (paths with ids) then
 * cluster in a linearly probed table. */
static uint64_t hash_key(const char *k, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)k[i]) * 0x100000001b3ull;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return h;
}

/* "10.0.0.1:80" -> "10.0.0.1", "[::1]:80" -> "::1"; a remote without a port as it is. */
static void remote_address(const char *r, size_t n, const char **key, size_t *len)
{
	size_t i = n;

	*key = r;
	*len = n;
	while (i > 0 && r[i - 1] >= '0' && r[i - 1] <= '9')
		i--;
	if (i == n || i == 0 || r[i - 1] != ':')
		return;
	i--; /* the ':' before the port */
	if (r[0] == '[') {
		if (i >= 2 && r[i - 1] == ']') {
			*key = r + 1;
			*len = i - 2;
		}
		return;
	}
	if (!memchr(r, ':', i)) /* else a bare IPv6 address: no port */
		*len = i;
}

static int key_of(struct tv_summary *s, const struct tv_record_view *v, const char **key,
		  size_t *len)
{
	const char *q;

	switch (s->by) {
	case TRACEVAULT__V1__GROUP_BY__GROUP_BY_PATH:
		*key = v->path;
		q = memchr(v->path, '?', v->path_len);
		*len = q ? (size_t)(q - v->path) : v->path_len;
		return 0;
	case TRACEVAULT__V1__GROUP_BY__GROUP_BY_HOST:
		if (v->host_len > s->scratch_cap) {
			char *p = realloc(s->scratch, v->host_len);

			if (!p)
				return -ENOMEM;
			s->scratch = p;
			s->scratch_cap = v->host_len;
		}
		for (size_t i = 0; i < v->host_len; i++) {
			char c = v->host[i];

			s->scratch[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
		}
		*key = v->host_len ? s->scratch : ""; /* scratch is NULL before the first host */
		*len = v->host_len;
		return 0;
	case TRACEVAULT__V1__GROUP_BY__GROUP_BY_METHOD:
		*key = v->method;
		*len = v->method_len;
		return 0;
	case TRACEVAULT__V1__GROUP_BY__GROUP_BY_STATUS:
		*len = (size_t)snprintf(s->status_key, sizeof(s->status_key), "%llu",
					(unsigned long long)v->status);
		*key = s->status_key;
		return 0;
	case TRACEVAULT__V1__GROUP_BY__GROUP_BY_COMM:
		*key = v->comm;
		*len = v->comm_len;
		return 0;
	case TRACEVAULT__V1__GROUP_BY__GROUP_BY_REMOTE:
		remote_address(v->remote, v->remote_len, key, len);
		return 0;
	case TRACEVAULT__V1__GROUP_BY__GROUP_BY_ROLE:
		*key = v->role;
		*len = v->role_len;
		return 0;
	default:
		*key = "";
		*len = 0;
		return 0;
	}
}

/* ---- the table ---- */

static size_t slot_of(const struct tv_summary *s, uint64_t h, const char *k, size_t n)
{
	size_t mask = s->table_slots - 1, i = (size_t)h & mask;
	uint32_t tag = (uint32_t)(h >> 32);

	while (s->table[i].g) {
		if (s->table[i].tag == tag) {
			const struct group *g = s->table[i].g;

			if (g->hash == h && g->key_len == n && memcmp(g->key, k, n) == 0)
				break;
		}
		i = (i + 1) & mask;
	}
	return i;
}

/* Double the table (or make the first one). */
static int table_grow(struct tv_summary *s, char *err, size_t errlen)
{
	size_t slots = s->table_slots ? s->table_slots * 2 : TABLE_MIN_SLOTS;
	struct slot *t, *old = s->table;
	size_t old_slots = s->table_slots;
	int ret = charge(s, slots * sizeof(*t), err, errlen);

	if (ret)
		return ret;
	t = calloc(slots, sizeof(*t));
	if (!t) {
		uncharge(s, slots * sizeof(*t));
		return -ENOMEM;
	}
	s->table = t;
	s->table_slots = slots;
	for (size_t i = 0; i < s->ngroups; i++) {
		const struct group *g = s->groups[i];

		s->table[slot_of(s, g->hash, g->key, g->key_len)] =
			(struct slot){ .g = s->groups[i], .tag = (uint32_t)(g->hash >> 32) };
	}
	free(old);
	uncharge(s, old_slots * sizeof(*t));
	return 0;
}

/* The group of key k (created when new), &s->other when a new one does not fit the memory
 * limit, or NULL with *ret set (-ENOMEM). */
static struct group *group_of(struct tv_summary *s, const char *k, size_t n, int *ret,
			      char *err, size_t errlen)
{
	uint64_t h = hash_key(k, n);
	struct group *g;
	size_t i, cost;
	char why[256];

	*ret = 0;
	if (s->table_slots) {
		i = slot_of(s, h, k, n);
		if (s->table[i].g)
			return s->table[i].g;
	}
	if (s->overflowed)
		return &s->other; /* keys first seen past the limit all go there */
	/* a new group: the table stays at most half full */
	if ((s->ngroups + 1) * 2 > s->table_slots && (*ret = table_grow(s, why, sizeof(why))))
		goto full;
	if (s->ngroups == s->groups_cap) {
		size_t cap = s->groups_cap ? s->groups_cap * 2 : 64;
		struct group **p;

		if ((*ret = charge(s, (cap - s->groups_cap) * sizeof(*p), why, sizeof(why))))
			goto full;
		p = realloc(s->groups, cap * sizeof(*p));
		if (!p) {
			uncharge(s, (cap - s->groups_cap) * sizeof(*p));
			*ret = -ENOMEM;
			goto full;
		}
		s->groups = p;
		s->groups_cap = cap;
	}
	cost = sizeof(*g) + n + 1;
	if ((*ret = charge(s, cost, why, sizeof(why))))
		goto full;
	g = calloc(1, cost); /* the key follows the struct: one allocation, one cache line */
	if (!g) {
		uncharge(s, cost);
		*ret = -ENOMEM;
		goto full;
	}
	g->key = (char *)(g + 1);
	memcpy(g->key, k, n);
	g->key[n] = '\0';
	g->key_len = n;
	g->hash = h;
	s->groups[s->ngroups++] = g;
	s->table[slot_of(s, h, k, n)] = (struct slot){ .g = g, .tag = (uint32_t)(h >> 32) };
	return g;
full:
	if (*ret == -ENOBUFS) { /* the memory limit: this key and every later new one */
		*ret = 0;
		s->overflowed = true;
		return &s->other;
	}
	snprintf(err, errlen, "summary: out of memory for group %zu", s->ngroups + 1);
	return NULL;
}

/* Count x_ns in g's buckets, charged to the memory limit. */
static int sketch_add(struct tv_summary *s, struct group *g, uint64_t x_ns, char *err,
		      size_t errlen)
{
	int i, ret;
	size_t grow;

	if (x_ns == 0)
		return tv_sketch_add(&g->sk, 0, 1, NULL); /* a count, never grows */
	i = tv_sketch_index(x_ns);
	grow = tv_sketch_growth_bytes_index(&g->sk, i);
	if ((ret = charge(s, grow, err, errlen)))
		return ret;
	if (tv_sketch_add_index(&g->sk, i, 1, NULL)) {
		uncharge(s, grow);
		snprintf(err, errlen, "summary: out of memory for a latency sketch");
		return -ENOMEM;
	}
	return 0;
}

/* Move g's kept latencies into its buckets (before they are read, or when one more comes). */
static int spill(struct tv_summary *s, struct group *g, char *err, size_t errlen)
{
	int ret;

	for (; !g->spilled && g->nsmall; g->nsmall--)
		if ((ret = sketch_add(s, g, g->small[g->nsmall - 1], err, errlen)))
			return ret;
	g->spilled = true;
	return 0;
}

static int count(struct tv_summary *s, struct group *g, const struct tv_record_view *v,
		 char *err, size_t errlen)
{
	int ret;

	if (v->status) {
		if (!g->spilled && g->nsmall < SMALL_LATENCIES) {
			g->small[g->nsmall++] = v->latency_ns;
		} else if ((ret = spill(s, g, err, errlen)) ||
			   (ret = sketch_add(s, g, v->latency_ns, err, errlen))) {
			return ret;
		}
		if (g->lat_count == 0 || v->latency_ns < g->lat_min_ns)
			g->lat_min_ns = v->latency_ns;
		if (v->latency_ns > g->lat_max_ns)
			g->lat_max_ns = v->latency_ns;
		g->lat_sum_ns = g->lat_sum_ns > UINT64_MAX - v->latency_ns ? UINT64_MAX :
									   g->lat_sum_ns + v->latency_ns;
		g->lat_count++;
	} else {
		g->n_no_response++;
	}
	g->count++;
	g->n_4xx += v->status >= 400 && v->status <= 499;
	g->n_5xx += v->status >= 500 && v->status <= 599;
	g->n_flagged += v->flags != 0;
	s->records++;
	return 0;
}

/* The group of v's key, found by its bytes. NULL with *ret set. */
static struct group *group_by_key(struct tv_summary *s, const struct tv_record_view *v,
				  int *ret, char *err, size_t errlen)
{
	const char *key;
	size_t klen;

	if (key_of(s, v, &key, &klen)) {
		snprintf(err, errlen, "summary: out of memory for a key");
		*ret = -ENOMEM;
		return NULL;
	}
	return group_of(s, key, klen, ret, err, errlen);
}

/* The scan's sink: one record that passed the filter. A group found through an id or status
 * cache stays right: groups live until the summary is freed, and a key sent to other (the
 * memory limit) goes there every time. */
static int on_record(void *arg, const struct tv_record_view *v, uint32_t key_id, char *err,
		     size_t errlen)
{
	struct tv_summary *s = arg;
	struct group *g, **cached = NULL;
	int ret = 0;

	if (key_id != TV_SUMMARY_SCAN_NO_ID && s->ids) {
		struct id_slot *slot = &s->ids[key_id];

		if (slot->gen == s->gen)
			return count(s, slot->g, v, err, errlen);
		g = group_by_key(s, v, &ret, err, errlen);
		if (!g)
			return ret;
		*slot = (struct id_slot){ .gen = s->gen, .g = g };
		return count(s, g, v, err, errlen);
	}
	if (s->by == TRACEVAULT__V1__GROUP_BY__GROUP_BY_STATUS && v->status < STATUS_CACHE) {
		cached = &s->status_groups[v->status];
		if (*cached)
			return count(s, *cached, v, err, errlen);
	}
	g = group_by_key(s, v, &ret, err, errlen);
	if (!g)
		return ret;
	if (cached)
		*cached = g;
	return count(s, g, v, err, errlen);
}

static void on_ids_reset(void *arg)
{
	struct tv_summary *s = arg;

	if (++s->gen == 0) { /* wrapped: no slot may look current */
		memset(s->ids, 0, TV_SUMMARY_SCAN_IDS * sizeof(*s->ids));
		s->gen = 1;
	}
}

/* The string field whose dictionary id keys the groups (0: none, or the key is not the
 * field's bytes alone, as status) and the fields count() and key_of() read. */
static unsigned key_field_of(int by)
{
	switch (by) {
	case TRACEVAULT__V1__GROUP_BY__GROUP_BY_PATH: return 9;
	case TRACEVAULT__V1__GROUP_BY__GROUP_BY_HOST: return 19;
	case TRACEVAULT__V1__GROUP_BY__GROUP_BY_METHOD: return 8;
	case TRACEVAULT__V1__GROUP_BY__GROUP_BY_COMM: return 5;
	case TRACEVAULT__V1__GROUP_BY__GROUP_BY_REMOTE: return 7;
	case TRACEVAULT__V1__GROUP_BY__GROUP_BY_ROLE: return 18;
	default: return 0;
	}
}

/* ---- request ---- */

static int check_request(const Tracevault__V1__SummaryRequest *req, char *err, size_t errlen)
{
	if (req->from_ns > req->to_ns) {
		snprintf(err, errlen, "from_ns %llu is after to_ns %llu",
			 (unsigned long long)req->from_ns, (unsigned long long)req->to_ns);
		return -EINVAL;
	}
	if ((int)req->by < TRACEVAULT__V1__GROUP_BY__GROUP_BY_NONE ||
	    (int)req->by > TRACEVAULT__V1__GROUP_BY__GROUP_BY_ROLE) {
		snprintf(err, errlen, "by: unknown GroupBy %d", (int)req->by);
		return -EINVAL;
	}
	if (req->max_groups && tv_limit_check(&tv_summary_groups_limit, req->max_groups)) {
		snprintf(err, errlen, "max_groups: %u is above %d", req->max_groups,
			 TV_SUMMARY_MAX_GROUPS);
		return -EINVAL;
	}
	if (req->n_quantiles > TV_SUMMARY_MAX_QUANTILES) {
		snprintf(err, errlen, "quantiles: %zu entries, at most %d", req->n_quantiles,
			 TV_SUMMARY_MAX_QUANTILES);
		return -EINVAL;
	}
	for (size_t i = 0; i < req->n_quantiles; i++) {
		if (!(req->quantiles[i] >= 0 && req->quantiles[i] <= 1)) { /* NaN too */
			snprintf(err, errlen, "quantiles[%zu]: %g is not in [0, 1]", i,
				 req->quantiles[i]);
			return -EINVAL;
		}
	}
	return 0;
}

int tv_summary_new(struct tv_summary **out, struct tv_catalog *c, struct tv_store *st,
		   struct tv_query_pool *pool, const Tracevault__V1__SummaryRequest *req,
		   char *err, size_t errlen)
{
	static const double dflt[] = TV_SUMMARY_DEFAULT_QUANTILES;
	struct tv_summary_scan_params sp = { .from_ns = req->from_ns, .to_ns = req->to_ns };
	struct tv_summary_scan_sink sink = { .record = on_record, .ids_reset = on_ids_reset };
	struct tv_filter *filter = NULL;
	struct tv_summary *s;
	int ret;

	*out = NULL;
	if ((ret = check_request(req, err, errlen)))
		return ret;
	if ((ret = tv_filter_compile(req->filter, &filter, err, errlen)))
		return ret;
	s = calloc(1, sizeof(*s));
	if (!s) {
		tv_filter_free(filter);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	s->by = (int)req->by;
	s->max_groups = req->max_groups ? req->max_groups : TV_SUMMARY_DEFAULT_GROUPS;
	if (req->n_quantiles) {
		s->nq = req->n_quantiles;
		memcpy(s->quantiles, req->quantiles, s->nq * sizeof(double));
	} else {
		s->nq = sizeof(dflt) / sizeof(dflt[0]);
		memcpy(s->quantiles, dflt, sizeof(dflt));
	}
	/* An empty query ([0, 0) lists no block): it numbers the summary among the pool's
	 * running queries, so retention keeps the files the scan lists, and gives it the
	 * query's memory limits. The blocks are the scan's. */
	ret = tv_query_new(&s->q, c, st, pool, &(struct tv_query_params){ .silent = true }, NULL,
			   err, errlen);
	if (ret) {
		tv_filter_free(filter);
		free(s);
		return ret;
	}
	sp.key_field = key_field_of(s->by);
	/* count() reads latency, status and flags; key_of() the key field */
	sp.fields = 1u << 3 | 1u << 10 | 1u << 15 | (sp.key_field ? 1u << sp.key_field : 0);
	sp.filter = filter; /* the scan takes it, also on error */
	if (sp.key_field && (ret = charge(s, TV_SUMMARY_SCAN_IDS * sizeof(*s->ids), err, errlen)))
		goto fail;
	if (sp.key_field && !(s->ids = calloc(TV_SUMMARY_SCAN_IDS, sizeof(*s->ids)))) {
		snprintf(err, errlen, "out of memory");
		ret = -ENOMEM;
		goto fail;
	}
	s->gen = 1;
	sink.arg = s;
	ret = tv_summary_scan_new(&s->scan, c, st, pool, s->q, &sp, &sink, err, errlen);
	if (ret)
		goto fail_scan;
	*out = s;
	return 0;
fail:
	tv_filter_free(filter);
fail_scan:
	tv_summary_free(s);
	return ret;
}

int tv_summary_step(struct tv_summary *s, char *err, size_t errlen)
{
	return tv_summary_scan_step(s->scan, err, errlen);
}

/* ---- reply ---- */

static int by_count_then_key(const void *a, const void *b)
{
	const struct group *x = *(const struct group *const *)a, *y = *(const struct group *const *)b;
	size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
	int c;

	if (x->count != y->count)
		return x->count > y->count ? -1 : 1;
	c = memcmp(x->key, y->key, n);
	if (c)
		return c;
	return x->key_len < y->key_len ? -1 : x->key_len > y->key_len;
}

/* g as a message; m's pointers point into g and qbuf (nq doubles). */
static void group_pb(const struct tv_summary *s, const struct group *g,
		     Tracevault__V1__SummaryGroup *m, Tracevault__V1__LatencySketch *sk,
		     double *qbuf)
{
	tracevault__v1__summary_group__init(m);
	tracevault__v1__latency_sketch__init(sk);
	m->key = g->key ? g->key : (char *)"";
	m->count = g->count;
	m->count_4xx = g->n_4xx;
	m->count_5xx = g->n_5xx;
	m->count_no_response = g->n_no_response;
	m->count_flagged = g->n_flagged;
	m->latency_count = g->lat_count;
	m->latency_min_ns = g->lat_min_ns;
	m->latency_max_ns = g->lat_max_ns;
	m->latency_sum_ns = g->lat_sum_ns;
	tv_sketch_to_pb(&g->sk, sk);
	m->latency = sk;
	for (size_t i = 0; i < s->nq; i++)
		qbuf[i] = tv_sketch_quantile(&g->sk, s->quantiles[i], g->lat_min_ns, g->lat_max_ns);
	m->n_quantile_ns = s->nq;
	m->quantile_ns = qbuf;
}

/* Add g's counts into o (other, spilled). */
static int fold(struct group *o, const struct group *g)
{
	if (tv_sketch_merge(&o->sk, &g->sk, NULL))
		return -ENOMEM;
	for (uint8_t i = 0; i < g->nsmall; i++)
		if (tv_sketch_add(&o->sk, g->small[i], 1, NULL))
			return -ENOMEM;
	if (g->lat_count && (o->lat_count == 0 || g->lat_min_ns < o->lat_min_ns))
		o->lat_min_ns = g->lat_min_ns;
	if (g->lat_max_ns > o->lat_max_ns)
		o->lat_max_ns = g->lat_max_ns;
	o->lat_sum_ns = o->lat_sum_ns > UINT64_MAX - g->lat_sum_ns ? UINT64_MAX :
								    o->lat_sum_ns + g->lat_sum_ns;
	o->lat_count += g->lat_count;
	o->count += g->count;
	o->n_4xx += g->n_4xx;
	o->n_5xx += g->n_5xx;
	o->n_no_response += g->n_no_response;
	o->n_flagged += g->n_flagged;
	return 0;
}

int tv_summary_reply(struct tv_summary *s, size_t max_message_bytes, grpc_byte_buffer **out,
		     char *err, size_t errlen)
{
	Tracevault__V1__SummaryResponse r = TRACEVAULT__V1__SUMMARY_RESPONSE__INIT;
	Tracevault__V1__SummaryGroup *pg = NULL, **pgp = NULL, og;
	Tracevault__V1__LatencySketch *psk = NULL, osk;
	Tracevault__V1__SkippedBlock *const *skipped;
	size_t nout = 0, nskipped, used = 0, budget;
	double *qbuf = NULL;
	int ret = -ENOMEM;

	*out = NULL;
	err[0] = '\0';
	nskipped = tv_summary_scan_skipped(s->scan, &skipped);
	if (s->ngroups)
		qsort(s->groups, s->ngroups, sizeof(*s->groups), by_count_then_key);
	pg = calloc(s->ngroups + 1, sizeof(*pg));
	pgp = calloc(s->ngroups + 1, sizeof(*pgp));
	psk = calloc(s->ngroups + 1, sizeof(*psk));
	qbuf = calloc((s->ngroups + 1) * s->nq + 1, sizeof(*qbuf));
	if (!pg || !pgp || !psk || !qbuf || (ret = spill(s, &s->other, err, errlen)))
		goto out;
	ret = -ENOMEM;
	for (size_t i = 0; i < nskipped; i++)
		used += tracevault__v1__skipped_block__get_packed_size(skipped[i]) + 8;
	budget = max_message_bytes > TV_SUMMARY_REPLY_RESERVE_BYTES + used ?
			 max_message_bytes - TV_SUMMARY_REPLY_RESERVE_BYTES - used : 0;
	used = 0;
	for (size_t i = 0; i < s->ngroups; i++) {
		struct group *g = s->groups[i];

		/* once one group does not fit, neither does any smaller one: the reply keeps the
		 * largest groups, without gaps */
		if (nout < s->max_groups && nout == i) {
			size_t n;

			if ((ret = spill(s, g, err, errlen)))
				goto out;
			ret = -ENOMEM;
			group_pb(s, g, &pg[nout], &psk[nout], qbuf + nout * s->nq);
			n = tracevault__v1__summary_group__get_packed_size(&pg[nout]) + 8;
			if (used + n <= budget) {
				used += n;
				pgp[nout] = &pg[nout];
				nout++;
				continue;
			}
		}
		/* past max_groups or the message limit: counted in other */
		if (fold(&s->other, g))
			goto out;
	}
	r.n_groups = nout;
	r.groups = pgp;
	if (s->other.count) {
		group_pb(s, &s->other, &og, &osk, qbuf + s->ngroups * s->nq);
		r.other = &og;
	}
	r.groups_total = s->ngroups;
	r.records = s->records;
	r.n_skipped = nskipped;
	r.skipped = (Tracevault__V1__SkippedBlock **)skipped;
	r.groups_overflowed = s->overflowed;
	ret = tv_wire_pack(&r.base, out);
out:
	if (ret && !err[0])
		snprintf(err, errlen, "summary: out of memory packing the reply");
	free(pg);
	free(pgp);
	free(psk);
	free(qbuf);
	return ret;
}

void tv_summary_free(struct tv_summary *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->ngroups; i++) {
		tv_sketch_free(&s->groups[i]->sk);
		free(s->groups[i]);
	}
	tv_sketch_free(&s->other.sk);
	free(s->groups);
	free(s->table);
	free(s->ids);
	free(s->scratch);
	tv_summary_scan_free(s->scan);
	if (s->q) {
		tv_query_release(s->q, s->held);
		tv_query_free(s->q);
	}
	free(s);
}

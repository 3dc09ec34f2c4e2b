/* The Summary rpc on each server, and the exact merge of their answers (summary_client.h). */
#include "rpc/summary_client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc.h>

#include "common/addr.h"
#include "proto/wire.h"
#include "rpc/rpc.h"

/* Groups gathered from every server before the merge by key. */
struct gather {
	struct tv_summary_group *v;
	size_t n, cap;
};

static int add_group(struct tv_summary_group *dst, const Tracevault__V1__SummaryGroup *g)
{
	int ret;

	if (!g->latency)
		return -EBADMSG; /* every group carries its sketch */
	ret = tv_sketch_merge_pb(&dst->latency, g->latency);
	if (ret)
		return ret == -EINVAL ? -EBADMSG : ret;
	if (g->latency_count && (dst->latency_count == 0 || g->latency_min_ns < dst->latency_min_ns))
		dst->latency_min_ns = g->latency_min_ns;
	if (g->latency_max_ns > dst->latency_max_ns)
		dst->latency_max_ns = g->latency_max_ns;
	dst->latency_sum_ns = dst->latency_sum_ns > UINT64_MAX - g->latency_sum_ns ?
				      UINT64_MAX : dst->latency_sum_ns + g->latency_sum_ns;
	dst->latency_count += g->latency_count;
	dst->count += g->count;
	dst->count_4xx += g->count_4xx;
	dst->count_5xx += g->count_5xx;
	dst->count_no_response += g->count_no_response;
	dst->count_flagged += g->count_flagged;
	return 0;
}

/* Fold src (a merged group) into dst. */
static int fold(struct tv_summary_group *dst, const struct tv_summary_group *src)
{
	Tracevault__V1__LatencySketch sk = TRACEVAULT__V1__LATENCY_SKETCH__INIT;
	Tracevault__V1__SummaryGroup g = TRACEVAULT__V1__SUMMARY_GROUP__INIT;

	tv_sketch_to_pb(&src->latency, &sk);
	g.latency = &sk;
	g.count = src->count;
	g.count_4xx = src->count_4xx;
	g.count_5xx = src->count_5xx;
	g.count_no_response = src->count_no_response;
	g.count_flagged = src->count_flagged;
	g.latency_count = src->latency_count;
	g.latency_min_ns = src->latency_min_ns;
	g.latency_max_ns = src->latency_max_ns;
	g.latency_sum_ns = src->latency_sum_ns;
	return add_group(dst, &g);
}

static void group_free(struct tv_summary_group *g)
{
	free(g->key);
	tv_sketch_free(&g->latency);
}

/* One server's answer into the gathered groups and r's totals. */
static int take(const Tracevault__V1__SummaryResponse *resp, uint32_t asked,
		struct gather *all, struct tv_summary_result *r)
{
	int ret;

	for (size_t i = 0; i < resp->n_groups; i++) {
		struct tv_summary_group *g;

		if (all->n == all->cap) {
			size_t cap = all->cap ? all->cap * 2 : 256;
			struct tv_summary_group *p = realloc(all->v, cap * sizeof(*p));

			if (!p)
				return -ENOMEM;
			all->v = p;
			all->cap = cap;
		}
		g = &all->v[all->n];
		*g = (struct tv_summary_group){ .key = strdup(resp->groups[i]->key ?
								      resp->groups[i]->key : "") };
		if (!g->key)
			return -ENOMEM;
		all->n++;
		if ((ret = add_group(g, resp->groups[i])))
			return ret;
	}
	if (resp->other && (ret = add_group(&r->other, resp->other)))
		return ret;
	r->records += resp->records;
	r->overflowed |= resp->groups_overflowed;
	/* fewer groups than asked for and found: the message limit cut the rest */
	r->servers_cut += resp->n_groups < resp->groups_total && resp->n_groups < asked;
	return 0;
}

static int summary_one(const char *server, const struct tv_rpc_tls *tls,
		       const Tracevault__V1__SummaryRequest *req,
		       size_t max_message_bytes, tv_query_skip_cb skip_cb, void *arg,
		       struct gather *all, struct tv_summary_result *r, char *err, size_t errlen)
{
	Tracevault__V1__SummaryResponse *resp;
	ProtobufCMessage *m = NULL;
	char why[512];
	bool called;
	int ret;

	ret = tv_rpc_unary_to(server, tls, TV_METHOD_SUMMARY, &req->base,
			      &tracevault__v1__summary_response__descriptor, max_message_bytes,
			      TV_QUERY_CONNECT_TIMEOUT_MS, TV_QUERY_TIMEOUT_MS, &m, &called, why,
			      sizeof(why));
	if (ret && !called)
		snprintf(err, errlen, "%s", why);
	else if (ret == -ENOSYS) /* a tracevaultd from before the Summary rpc */
		snprintf(err, errlen, "summary failed on %s: the server does not serve Summary "
			 "(%s): upgrade tracevaultd", server, why);
	else if (ret)
		snprintf(err, errlen, "summary failed on %s: %s", server, why);
	if (ret)
		return ret;
	resp = (Tracevault__V1__SummaryResponse *)m;
	for (size_t i = 0; i < resp->n_skipped; i++) {
		r->skipped++;
		if (skip_cb)
			skip_cb(server, resp->skipped[i], arg);
	}
	ret = take(resp, req->max_groups, all, r);
	if (ret == -EBADMSG)
		snprintf(err, errlen, "summary from %s: a group's latency sketch is missing or not "
			 "of scale %d within the bucket range", server, TV_SKETCH_SCALE);
	else if (ret)
		snprintf(err, errlen, "out of memory merging the summary of %s", server);
	protobuf_c_message_free_unpacked(m, NULL);
	return ret;
}

static int by_key(const void *a, const void *b)
{
	return strcmp(((const struct tv_summary_group *)a)->key,
		      ((const struct tv_summary_group *)b)->key);
}

/* count descending, then key bytes ascending: the server's order */
static int by_count_then_key(const void *a, const void *b)
{
	const struct tv_summary_group *x = a, *y = b;

	if (x->count != y->count)
		return x->count > y->count ? -1 : 1;
	return strcmp(x->key, y->key);
}

/* Merge equal keys of all (from several servers), sort, keep want, fold the rest into other. */
static int merge(struct gather *all, uint32_t want, struct tv_summary_result *r)
{
	size_t n = 0;
	int ret;

	if (all->n)
		qsort(all->v, all->n, sizeof(*all->v), by_key);
	for (size_t i = 0; i < all->n; i++) {
		if (n && strcmp(all->v[n - 1].key, all->v[i].key) == 0) {
			ret = fold(&all->v[n - 1], &all->v[i]);
			group_free(&all->v[i]);
			if (ret)
				return ret;
			continue;
		}
		all->v[n++] = all->v[i];
	}
	all->n = n;
	if (n)
		qsort(all->v, n, sizeof(*all->v), by_count_then_key);
	while (all->n > want) {
		struct tv_summary_group *g = &all->v[--all->n];

		ret = fold(&r->other, g);
		group_free(g);
		if (ret)
			return ret;
	}
	return 0;
}

int tv_summary_fetch(const char *server, const struct tv_rpc_tls *tls,
		     const Tracevault__V1__SummaryRequest *req,
		     size_t max_message_bytes, tv_query_skip_cb skip_cb, void *arg,
		     struct tv_summary_result *out, char *err, size_t errlen)
{
	Tracevault__V1__SummaryRequest one = *req;
	struct tv_server_list list = { 0 };
	struct gather all = { 0 };
	uint32_t want = req->max_groups ? req->max_groups : TV_SUMMARY_DEFAULT_GROUPS;
	int ret;

	*out = (struct tv_summary_result){ .other.key = NULL };
	ret = tv_server_list_parse(server, 0, &list);
	if (ret) {
		snprintf(err, errlen, ret == -EINVAL ? "invalid server list '%s': empty address"
						     : "out of memory%.0s", server);
		return ret;
	}
	if (!max_message_bytes)
		max_message_bytes = TV_DEFAULT_MAX_MESSAGE_BYTES;
	/* several servers: every group of each, so that a key's counts on all of them meet */
	one.max_groups = list.n > 1 ? TV_SUMMARY_MAX_GROUPS : want;
	grpc_init();
	for (size_t i = 0; i < list.n && !ret; i++)
		ret = summary_one(list.v[i], tls, &one, max_message_bytes, skip_cb, arg, &all, out, err,
				  errlen);
	grpc_shutdown();
	if (!ret && (ret = merge(&all, want, out)))
		snprintf(err, errlen, "out of memory merging the summaries");
	out->groups = all.v;
	out->ngroups = all.n;
	if (ret)
		tv_summary_result_free(out);
	tv_server_list_free(&list);
	return ret;
}

void tv_summary_result_free(struct tv_summary_result *r)
{
	for (size_t i = 0; i < r->ngroups; i++)
		group_free(&r->groups[i]);
	free(r->groups);
	group_free(&r->other);
	*r = (struct tv_summary_result){ 0 };
}

/* The Delete rpc on the server, after the transport part: a segment is deleted only with its
 * writer's token (tv_delete_rpc_check), whole, by retention's steps (server/retention.h: the
 * rows and a durable retiring mark in one transaction, then the files): files first would let
 * a crash between two unlinks leave part of a multi-block segment, rows and all. Block ids are
 * removed one block at a time, files first, then the catalog rows of exactly the files that
 * are gone, in one transaction per request: a crash in between leaves rows without files,
 * which start-up drops, never a file without a row, which start-up would adopt again,
 * bringing back a block whose Delete was acknowledged (server/RECOVERY.md).
 * rpc_server.c unpacks the request, aborts in-flight streams and sends the answer. */
#include "server/delete_rpc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/wire.h"
#include "server/status.h"

/* The blocks a request names: (segment, block) of each catalog row, the store's file name. */
struct targets {
	struct tv_catalog_block *rows;
	size_t n, cap;
};

static int add_target(const struct tv_catalog_block *b, void *arg)
{
	struct targets *t = arg;

	if (t->n == t->cap) {
		size_t ncap = t->cap ? t->cap * 2 : 16;
		struct tv_catalog_block *p = realloc(t->rows, ncap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		t->rows = p;
		t->cap = ncap;
	}
	t->rows[t->n++] = *b;
	return 0;
}

/* The committed blocks of req: its segment's (segment_id != 0; none once the segment was
 * retired), then its block_ids that have a row (the others do not exist: not an error). */
static int find_targets(struct tv_catalog *c, const Tracevault__V1__DeleteRequest *req,
			struct targets *t)
{
	struct tv_catalog_block b;
	int ret = 0;

	if (req->segment_id)
		ret = tv_catalog_segment_blocks(c, req->segment_id, add_target, t);
	for (size_t i = 0; !ret && i < req->n_block_ids; i++) {
		ret = tv_catalog_get(c, req->block_ids[i], &b);
		if (ret > 0)
			ret = add_target(&b, t);
	}
	return ret;
}

/* Remove the files of t; a missing file is not an error (an earlier Delete got that far). The
 * ids of the files now gone go into ids[0..*n) (t->n entries allocated by the caller). Stops
 * at the first other failure: 0 or its negative errno, with the block named in msg. */
static int remove_files(struct tv_store *s, const struct targets *t, uint64_t *ids, size_t *n,
			char *msg, size_t msglen)
{
	int ret = 0;

	*n = 0;
	for (size_t i = 0; i < t->n; i++) {
		const struct tv_catalog_block *b = &t->rows[i];

		ret = tv_store_remove_block(s, b->segment_id, b->block_id);
		if (ret && ret != -ENOENT) {
			snprintf(msg, msglen, "cannot remove the file of block %016llx: %s",
				 (unsigned long long)b->block_id, strerror(-ret));
			break;
		}
		ret = 0;
		ids[(*n)++] = b->block_id;
	}
	if (*n)
		tv_store_sync_blocks_dir(s);
	return ret;
}

grpc_status_code tv_delete_rpc_check(struct tv_catalog *c,
				     const Tracevault__V1__DeleteRequest *req, char *msg,
				     size_t msglen)
{
	int ret;

	msg[0] = 0;
	if (!req->segment_id)
		return GRPC_STATUS_OK;
	ret = tv_catalog_segment_may_delete(c, req->segment_id, req->writer_token, msg, msglen);
	if (ret == 0)
		return GRPC_STATUS_OK;
	return ret == -EPERM ? GRPC_STATUS_PERMISSION_DENIED : tv_status_from_errno(ret);
}

grpc_status_code tv_delete_rpc_apply(struct tv_catalog *c, struct tv_store *s,
				     struct tv_server_metrics *metrics,
				     struct tv_retention *r,
				     const Tracevault__V1__DeleteRequest *req,
				     uint64_t aborted_streams, uint64_t deleted_temp_blocks,
				     grpc_byte_buffer **out, char *msg, size_t msglen)
{
	Tracevault__V1__DeleteResponse resp = TRACEVAULT__V1__DELETE_RESPONSE__INIT;
	struct targets t = { 0 };
	uint64_t *gone = NULL, *deleted = NULL;
	size_t ngone = 0, ndeleted = 0;
	uint64_t seg_blocks = 0;
	grpc_status_code code = GRPC_STATUS_OK;
	int ret, rm;

	*out = NULL;
	snprintf(msg, msglen, "%s", "");
	resp.deleted_temp_blocks = deleted_temp_blocks;
	if (req->segment_id && req->writer_token) {
		/* its id is marked 'deleted' in the same transaction, also when it had no blocks
		 * (it is then never opened later, catalog.h) */
		ret = tv_retention_delete_segment(r, req->segment_id, req->writer_token,
						  &seg_blocks, msg, msglen);
		resp.deleted_blocks = seg_blocks;
		if (ret) {
			code = tv_status_from_errno(ret);
			goto out;
		}
	}
	ret = find_targets(c, req, &t);
	if (ret) {
		snprintf(msg, msglen, "catalog lookup failed: %s", strerror(-ret));
		code = tv_status_from_errno(ret);
		goto out;
	}
	gone = calloc(t.n ? t.n : 1, sizeof(*gone));
	if (!gone) {
		snprintf(msg, msglen, "out of memory");
		code = GRPC_STATUS_RESOURCE_EXHAUSTED;
		goto out;
	}
	rm = remove_files(s, &t, gone, &ngone, msg, msglen);
	/* the rows of the files that are gone go now, even when a later file failed */
	ret = ngone ? tv_catalog_delete_ids(c, gone, ngone, &deleted, &ndeleted) : 0;
	if (ret) {
		snprintf(msg, msglen, "%zu block files removed but their catalog rows could not be "
			 "(%s): a restart drops them", ngone, strerror(-ret));
		code = tv_status_from_errno(ret);
		goto out;
	}
	resp.deleted_blocks = seg_blocks + ndeleted;
	if (rm) {
		code = tv_status_from_errno(rm);
		goto out;
	}
	if (req->segment_id)
		fprintf(stderr, "delete segment %016llx: removed %llu blocks, %llu temp files\n",
			(unsigned long long)req->segment_id,
			(unsigned long long)resp.deleted_blocks,
			(unsigned long long)resp.deleted_temp_blocks);
	else if (resp.deleted_blocks)
		fprintf(stderr, "delete %zu block ids: removed %llu blocks\n", req->n_block_ids,
			(unsigned long long)resp.deleted_blocks);
	/* removed whatever the reply's fate: the files and rows are gone. A segment Delete that
	 * found nothing (its segment aborted, deleted or never written: a writer's cleanup after
	 * a failure does that) is not a deleted segment */
	if (req->segment_id)
		tv_metric_add(seg_blocks || aborted_streams || deleted_temp_blocks ?
				      &metrics->segments_deleted : &metrics->segment_deletes_noop,
			      1);
	tv_metric_add(&metrics->deleted_blocks, resp.deleted_blocks);
	if (tv_wire_pack(&resp.base, out)) {
		snprintf(msg, msglen, "out of memory packing the response");
		code = GRPC_STATUS_RESOURCE_EXHAUSTED;
	}
out:
	if (code != GRPC_STATUS_OK)
		fprintf(stderr, "delete: %s\n", msg);
	free(t.rows);
	free(gone);
	free(deleted);
	return code;
}

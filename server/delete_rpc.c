/* The Delete rpc on the server, after the transport part: catalog rows go first, in one
 * transaction per request field, then exactly the block files whose rows were deleted.
 * rpc_server.c unpacks the request, aborts in-flight streams and sends the answer. */
#include "server/delete_rpc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/wire.h"
#include "server/status.h"

/* Remove the files of blocks whose catalog rows are gone; a missing file is not an error. */
static void remove_block_files(struct tv_store *s, const uint64_t *ids, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int ret = tv_store_remove_block(s, ids[i]);

		if (ret && ret != -ENOENT)
			fprintf(stderr, "delete: cannot remove block file %016llx: %s\n",
				(unsigned long long)ids[i], strerror(-ret));
	}
	if (n)
		tv_store_sync_blocks_dir(s);
}

grpc_status_code tv_delete_rpc_apply(struct tv_catalog *c, struct tv_store *s,
				     const Tracevault__V1__DeleteRequest *req,
				     uint64_t deleted_temp_blocks, grpc_byte_buffer **out, char *msg,
				     size_t msglen)
{
	Tracevault__V1__DeleteResponse resp = TRACEVAULT__V1__DELETE_RESPONSE__INIT;
	uint64_t *ids = NULL;
	size_t n = 0;
	int ret;

	*out = NULL;
	snprintf(msg, msglen, "%s", "");
	resp.deleted_temp_blocks = deleted_temp_blocks;
	if (req->segment_id) {
		ret = tv_catalog_delete_segment(c, req->segment_id, &ids, &n);
		if (ret)
			goto catalog_err;
		remove_block_files(s, ids, n);
		resp.deleted_blocks += n;
		free(ids);
		ids = NULL;
	}
	if (req->n_block_ids) {
		ret = tv_catalog_delete_ids(c, req->block_ids, req->n_block_ids, &ids, &n);
		if (ret)
			goto catalog_err;
		remove_block_files(s, ids, n);
		resp.deleted_blocks += n;
		free(ids);
	}
	if (req->segment_id)
		fprintf(stderr, "delete segment %016llx: removed %llu blocks, %llu temp files\n",
			(unsigned long long)req->segment_id,
			(unsigned long long)resp.deleted_blocks,
			(unsigned long long)resp.deleted_temp_blocks);
	else if (resp.deleted_blocks)
		fprintf(stderr, "delete %zu block ids: removed %llu blocks\n", req->n_block_ids,
			(unsigned long long)resp.deleted_blocks);
	if (tv_wire_pack(&resp.base, out)) {
		snprintf(msg, msglen, "out of memory packing the response");
		return GRPC_STATUS_RESOURCE_EXHAUSTED;
	}
	return GRPC_STATUS_OK;
catalog_err:
	snprintf(msg, msglen, "catalog delete failed: %s", strerror(-ret));
	return tv_status_from_errno(ret);
}

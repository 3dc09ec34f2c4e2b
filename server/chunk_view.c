/* The server's zero-copy receive: a Chunk's prefix is a few varints, parsed from a small stack
 * copy of the message's first bytes; the payload stays in gRPC's slices and goes to the disk as
 * an iovec list. Everything unusual is left to protobuf-c (the caller's fallback path). */
#include "server/chunk_view.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto/crc32c.h"
#include "proto/varint.h"
#include "proto/wire.h"

#define TAG_CHUNK ((2u << 3) | 2u)   /* WriteRequest.chunk, length-delimited */
#define WT_VARINT 0u
#define WT_LEN 2u

/* Read one varint at *pos below limit; 0 or -EBADMSG (cut off by the copied prefix). */
static int get(const uint8_t *buf, size_t limit, size_t *pos, uint64_t *v)
{
	size_t used;

	if (*pos >= limit || tv_varint_get(buf + *pos, limit - *pos, v, &used))
		return -EBADMSG;
	*pos += used;
	return 0;
}

/* Where the data field starts and how long it is, from the copied prefix; 0 or -EBADMSG. */
static int parse_prefix(const uint8_t *buf, size_t plen, size_t total, struct tv_chunk_view *v,
			size_t *data_start)
{
	uint64_t tag, len, x;
	size_t pos = 0;

	if (get(buf, plen, &pos, &tag) || tag != TAG_CHUNK || get(buf, plen, &pos, &len) ||
	    len != total - pos)
		return -EBADMSG; /* a command, or more than the one chunk field */
	while (pos < total) {
		if (get(buf, plen, &pos, &tag))
			return -EBADMSG;
		switch (tag) {
		case (1u << 3) | WT_VARINT:
		case (2u << 3) | WT_VARINT:
		case (3u << 3) | WT_VARINT:
			if (get(buf, plen, &pos, &x))
				return -EBADMSG;
			if (tag >> 3 == 1)
				v->block_id = x; /* a repeated scalar: the last one wins, as in protobuf */
			else if (tag >> 3 == 2)
				v->offset = x;
			else if (x > UINT32_MAX)
				return -EBADMSG;
			else
				v->crc32c = (uint32_t)x;
			break;
		case (4u << 3) | WT_LEN:
			if (get(buf, plen, &pos, &len) || len != total - pos)
				return -EBADMSG; /* data not last: let protobuf-c merge the fields */
			*data_start = pos;
			v->data_len = (size_t)len;
			return 0;
		default:
			return -EBADMSG;
		}
	}
	*data_start = total; /* proto3 omits an empty data field */
	v->data_len = 0;
	return 0;
}

int tv_chunk_view_parse(grpc_byte_buffer *bb, struct tv_chunk_view *v)
{
	const grpc_slice_buffer *sb;
	uint8_t prefix[TV_CHUNK_PREFIX_MAX];
	size_t total, plen = 0, skip, data_start = 0;
	int k = 0;

	memset(v, 0, sizeof(*v));
	if (bb->type != GRPC_BB_RAW || bb->data.raw.compression != GRPC_COMPRESS_NONE)
		return 0; /* the reader in tv_wire_flatten knows how to undo compression */
	sb = &bb->data.raw.slice_buffer;
	total = sb->length;
	/* the header copy: at most TV_CHUNK_PREFIX_MAX bytes of tags and varints */
	for (size_t i = 0; i < sb->count && plen < sizeof(prefix); i++) {
		size_t n = GRPC_SLICE_LENGTH(sb->slices[i]);

		if (n > sizeof(prefix) - plen)
			n = sizeof(prefix) - plen;
		memcpy(prefix + plen, GRPC_SLICE_START_PTR(sb->slices[i]), n);
		plen += n;
	}
	if (parse_prefix(prefix, plen, total, v, &data_start))
		return 0;
	v->slices = calloc(sb->count ? sb->count : 1, sizeof(*v->slices));
	v->iov = calloc(sb->count ? sb->count : 1, sizeof(*v->iov));
	if (!v->slices || !v->iov) {
		tv_chunk_view_release(v);
		return -ENOMEM;
	}
	skip = data_start;
	for (size_t i = 0; i < sb->count; i++) {
		size_t n = GRPC_SLICE_LENGTH(sb->slices[i]);

		if (skip >= n) {
			skip -= n;
			continue;
		}
		v->slices[v->nslices++] = grpc_slice_ref(sb->slices[i]);
		/* Point into OUR copy of the slice: a small slice keeps its bytes inline in the
		 * grpc_slice struct, so the message's own array dies with the message while the
		 * write is still in flight. v->slices is heap-allocated and outlives the write. */
		v->iov[k].iov_base = GRPC_SLICE_START_PTR(v->slices[v->nslices - 1]) + skip;
		v->iov[k].iov_len = n - skip;
		k++;
		skip = 0;
	}
	v->iovcnt = k;
	return 1;
}

static void free_unpacked(void *req)
{
	tracevault__v1__write_request__free_unpacked(req, NULL);
}

int tv_chunk_view_from_unpacked(Tracevault__V1__WriteRequest *req, struct tv_chunk_view *v)
{
	const Tracevault__V1__Chunk *c = req->chunk;

	memset(v, 0, sizeof(*v));
	v->block_id = c->block_id;
	v->offset = c->offset;
	v->crc32c = c->crc32c;
	v->data_len = c->data.len;
	v->slices = calloc(1, sizeof(*v->slices));
	v->iov = calloc(1, sizeof(*v->iov));
	if (!v->slices || !v->iov) {
		free(v->slices);
		free(v->iov);
		return -ENOMEM;
	}
	/* the slice's destroy callback frees req: the data lives exactly as long as the write */
	v->slices[0] = grpc_slice_new_with_user_data(c->data.len ? c->data.data : (void *)c,
						     c->data.len, free_unpacked, req);
	v->nslices = 1;
	v->iov[0].iov_base = c->data.data;
	v->iov[0].iov_len = c->data.len;
	v->iovcnt = c->data.len ? 1 : 0;
	return 0;
}

void tv_chunk_view_release(struct tv_chunk_view *v)
{
	for (size_t i = 0; i < v->nslices; i++)
		grpc_slice_unref(v->slices[i]);
	free(v->slices);
	free(v->iov);
	memset(v, 0, sizeof(*v));
}

uint32_t tv_iov_crc32c(uint32_t crc, const struct iovec *iov, int n, size_t skip)
{
	for (int i = 0; i < n; i++) {
		size_t len = iov[i].iov_len;

		if (skip >= len) {
			skip -= len;
			continue;
		}
		crc = tv_crc32c_extend(crc, (const uint8_t *)iov[i].iov_base + skip, len - skip);
		skip = 0;
	}
	return crc;
}

size_t tv_iov_copy_out(const struct iovec *iov, int n, size_t skip, void *dst, size_t len)
{
	size_t got = 0;

	for (int i = 0; i < n && got < len; i++) {
		size_t l = iov[i].iov_len, take;

		if (skip >= l) {
			skip -= l;
			continue;
		}
		take = l - skip < len - got ? l - skip : len - got;
		memcpy((uint8_t *)dst + got, (const uint8_t *)iov[i].iov_base + skip, take);
		got += take;
		skip = 0;
	}
	return got;
}

/* Glue between protobuf-c messages and grpc C-core byte buffers, shared by client and server,
 * including the zero-copy framing of a Chunk: a small packed prefix plus the payload slice. */
#ifndef TV_WIRE_H
#define TV_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include <grpc/byte_buffer.h>
#include <grpc/slice.h>
#include <protobuf-c/protobuf-c.h>

#include "common/limit.h"
#include "tracevault.pb-c.h"

#define TV_METHOD_WRITE "/tracevault.v1.TraceStore/Write"
#define TV_METHOD_QUERY "/tracevault.v1.TraceStore/Query"
#define TV_METHOD_DELETE "/tracevault.v1.TraceStore/Delete"
#define TV_METHOD_STATS "/tracevault.v1.TraceStore/Stats"
#define TV_METHOD_SUMMARY "/tracevault.v1.TraceStore/Summary"
/* The OTLP trace service tracevaultd also serves on its port (PROTOCOL.md "OTLP ingest") */
#define TV_METHOD_OTLP_EXPORT "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

/* Limit on one gRPC message, both directions: both binaries take it as --max-message-bytes
 * and check it against tv_wire_message_bytes_limit, so client and server accept the same
 * values. 64K is the smallest that still carries a useful chunk and a Query batch; 1G keeps
 * it well inside gRPC's int channel arguments (and 16 times the largest block). */
#define TV_DEFAULT_MAX_MESSAGE_BYTES (16u << 20)
#define TV_WIRE_MIN_MESSAGE_BYTES (64u << 10)
#define TV_WIRE_MAX_MESSAGE_BYTES (1u << 30)
extern const struct tv_limit tv_wire_message_bytes_limit;
/* Limits of one Write stream that both sides must agree on: the server refuses more
 * (RESOURCE_EXHAUSTED), so the client's pipeline never produces more. */
#define TV_WIRE_MAX_BLOCK_BYTES (64u << 20)   /* one encoded block */
#define TV_WIRE_MAX_SEGMENT_BLOCKS 65536      /* blocks in one segment on one server */
/* Largest chunk prefix: tags, lengths and three scalar fields, all varints. */
#define TV_CHUNK_PREFIX_MAX 64

/* QueryFilter (PROTOCOL.md "Filters"): entries of one repeated field, and bytes of one string
 * in it. Past either the server answers INVALID_ARGUMENT naming the field; the CLI refuses
 * the option first (usage error). */
#define TV_FILTER_MAX_ENTRIES 64
#define TV_FILTER_MAX_VALUE_BYTES 1024

/* QueryResponse.features (PROTOCOL.md "Features"): the request fields a server evaluates,
 * announced on the first message of a Query that set one. 4 is taken by Summary. */
#define TV_QUERY_FEATURE_FILTER 1u
#define TV_QUERY_FEATURE_REVERSE 2u
/* the filter's kind and services (span records), fields 15 and 16 of QueryFilter */
#define TV_QUERY_FEATURE_SPANS 8u

/* SummaryRequest (PROTOCOL.md "Summary"): max_groups when 0, and its bound; quantiles per
 * request. Past a bound the server answers INVALID_ARGUMENT naming the field; the CLI refuses
 * the option first (usage error). */
#define TV_SUMMARY_DEFAULT_GROUPS 1000
#define TV_SUMMARY_MAX_GROUPS 100000
#define TV_SUMMARY_MAX_QUANTILES 16
extern const struct tv_limit tv_summary_groups_limit; /* 1 to TV_SUMMARY_MAX_GROUPS */

/* Pack m into a new byte buffer (one copy: for small control messages). *out is owned by the
 * caller (grpc_byte_buffer_destroy). Returns 0 or -ENOMEM. */
int tv_wire_pack(const ProtobufCMessage *m, grpc_byte_buffer **out);

/* Copy the bytes of bb into one malloc'd buffer (caller frees) for unpacking. Returns 0, or
 * -ENOMEM, -EMSGSIZE when larger than max_bytes, or -EBADMSG when grpc cannot read bb. */
int tv_wire_flatten(grpc_byte_buffer *bb, size_t max_bytes, uint8_t **out, size_t *len);
/* The same into *buf, a malloc'd buffer of *cap bytes (NULL and 0 at first) that is grown
 * with realloc when bb is larger and kept for the next message, so a stream of messages
 * costs no allocation each; the caller frees *buf. Same returns; on failure *buf stays the
 * caller's. */
int tv_wire_flatten_into(grpc_byte_buffer *bb, size_t max_bytes, uint8_t **buf, size_t *cap,
			 size_t *len);

/* Write into prefix the bytes that, followed by data_len payload bytes, encode
 * WriteRequest{chunk{block_id, offset, crc32c, data}} (zero scalars omitted, as proto3 does;
 * layout in PROTOCOL.md). Returns the prefix length, at most TV_CHUNK_PREFIX_MAX. */
size_t tv_wire_chunk_prefix(uint8_t prefix[TV_CHUNK_PREFIX_MAX], uint64_t block_id,
			    uint64_t offset, uint32_t crc32c, size_t data_len);

#endif

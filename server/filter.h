/* The Query filter (QueryRequest.filter, PROTOCOL.md "Filters"): compiled once from the
 * request, then evaluated on each record's raw protobuf bytes as the merge reaches it, so a
 * record that does not pass never leaves the server and never counts against the limit. The
 * record is read by a single pass over its tags (no unpack, no allocation). */
#ifndef TV_SERVER_FILTER_H
#define TV_SERVER_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/wire.h" /* TV_FILTER_MAX_ENTRIES, TV_FILTER_MAX_VALUE_BYTES */
#include "tracevault.pb-c.h"

#define TV_FILTER_ERR_LEN 256

struct tv_filter;

/* Compile m (NULL: no filter, *out = NULL). Returns 0 with *out (free with tv_filter_free;
 * NULL when m constrains nothing), -EINVAL with a one-line reason naming the field in err
 * ("filter.remotes[1]: '10.0.0.0/33' is not an address or CIDR"), or -ENOMEM. */
int tv_filter_compile(const Tracevault__V1__QueryFilter *m, struct tv_filter **out, char *err,
		      size_t errlen);
void tv_filter_free(struct tv_filter *f);

/* The fields of a record the filter reads (and Summary groups by); strings point into the
 * record bytes and are not NUL-terminated; absent fields are 0 and "". */
struct tv_record_view {
	uint64_t latency_ns, pid, status, flags;
	const char *comm, *remote, *method, *path, *trace_id, *role, *host;
	size_t comm_len, remote_len, method_len, path_len, trace_id_len, role_len, host_len;
	bool is_span;          /* field 27 present: a span record (BLOCK.md "Record kinds") */
	const char *service;   /* its span.service */
	size_t service_len;
};

/* Read v from the serialized TraceRecord of len bytes at rec in one pass over its tags (no
 * unpack, no allocation). false when the bytes are not a well-formed message. */
bool tv_record_view_parse(const uint8_t *rec, size_t len, struct tv_record_view *v);

/* The trace ids f requires (one of them), lower case, 32 bytes each and
 * TV_FILTER_TRACE_ID_STRIDE bytes apart from *ids: their count, 0 when f has none (f NULL
 * included). Lets the query skip a block whose trace-id filter holds none of them. */
#define TV_FILTER_TRACE_ID_STRIDE 33
size_t tv_filter_trace_ids(const struct tv_filter *f, const char **ids);

/* Whether the serialized TraceRecord of len bytes at rec passes f (f NULL: every record).
 * A record whose bytes are not a well-formed message passes nothing. */
bool tv_filter_match(const struct tv_filter *f, const uint8_t *rec, size_t len);

/* Python fnmatch.fnmatchcase on bytes: '*' any run (also '/'), '?' one byte, '[abc]', '[a-z]',
 * '[!x]', ']' first in a set is a member, '-' first or last is literal, a range whose ends are
 * reversed matches nothing, no escapes, an unclosed '[' is literal. */
bool tv_glob_match(const char *pat, size_t plen, const char *s, size_t slen);

/* tv_filter_match on a record already read into v (tv_record_view_parse, or a reader that
 * fills the fields tv_filter_fields names; the others are not looked at). */
bool tv_filter_match_view(const struct tv_filter *f, const struct tv_record_view *v);

/* The TraceRecord fields f reads, as bits 1u << field number (latency_ns 3, pid 4, comm 5,
 * remote 7, method 8, path 9, status 10, trace_id 13, flags 15, role 18, host 19, span 27
 * for the record kind and service); 0 for
 * NULL. A reader that fills only these in a view gets the same answer from
 * tv_filter_match_view. */
uint32_t tv_filter_fields(const struct tv_filter *f);

/* tv_filter_match_view in two halves, true when both are: the numbers (latency, pid, status,
 * flags, and the record kind and service of field 27) and the strings (the fields of TV_FILTER_STRING_FIELDS). A reader that knows two
 * records have the same strings (a page dictionary's ids) may reuse the strings' answer. */
#define TV_FILTER_STRING_FIELDS                                                                \
	(1u << 5 | 1u << 7 | 1u << 8 | 1u << 9 | 1u << 13 | 1u << 18 | 1u << 19)
bool tv_filter_match_numbers(const struct tv_filter *f, const struct tv_record_view *v);
bool tv_filter_match_strings(const struct tv_filter *f, const struct tv_record_view *v);

#endif

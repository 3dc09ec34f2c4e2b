/* libFuzzer harness: tracevaultd's OTLP Export decoder (proto/otlp_span.c) on any bytes, the
 * request body an OTLP client sends. Input: byte 0 the limits (bits 0-2: max attributes 0, 1,
 * 2, 4, 8, 32, 256 or 3; bits 3-7: max attribute bytes 16 + 64 * value), then the request.
 * Properties beyond "no crash, no leak": the decoder refuses exactly what protobuf-c refuses
 * for our schema (it is that unpack); received = stored + rejected; every stored span record
 * honours the limits (attributes kept, bytes of each string), has 32/16-char lower-case
 * hex ids and end >= start; each packs into bytes that tv_record_wire_parse accepts with the
 * same span; and the records seal into a block that tv_block_validate (the check every Write
 * runs) accepts, as the Export handler does. */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "proto/block.h"
#include "proto/block_check.h"
#include "proto/otlp_span.h"
#include "proto/record_wire.h"

#include "fuzz_check.h"

static bool lower_hex(const char *s, size_t n)
{
	if (strlen(s) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* A stored string keeps the limit (the UTF-8 boundary rule is unit-tested on real text). */
static void within(const char *s, size_t max)
{
	FUZZ_CHECK(!s || strlen(s) <= max);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned attrs[8] = { 0, 1, 2, 4, 8, 32, 256, 3 };
	struct tv_otlp_limits lim;
	struct tv_otlp_spans s;
	struct tv_block_builder *b;
	Tracevault__Otlp__V1__ExportTraceServiceRequest *ref;
	uint8_t buf[1 << 16];
	int ret;

	if (size < 1)
		return 0;
	lim.max_attributes = attrs[data[0] & 7];
	lim.max_attribute_bytes = 16 + 64 * (size_t)(data[0] >> 3);
	lim.max_future_skew_ns = TV_OTLP_DEFAULT_MAX_FUTURE_SKEW_NS;
	data++, size--;
	/* a fixed clock (late 2023) so that a run is reproducible */
	ret = tv_otlp_spans_decode(data, size, &lim, 1700000000000000000ull, &s);
	ref = tracevault__otlp__v1__export_trace_service_request__unpack(NULL, size, data);
	FUZZ_CHECK((ret == -EBADMSG) == (ref == NULL));
	if (ref)
		tracevault__otlp__v1__export_trace_service_request__free_unpacked(ref, NULL);
	if (ret) {
		tv_otlp_spans_free(&s);
		return 0;
	}
	FUZZ_CHECK(s.received == s.n + s.rejected);
	FUZZ_CHECK((s.rejected == 0) == (s.reject_msg[0] == '\0'));
	b = tv_block_builder_new();
	FUZZ_CHECK(b != NULL);
	for (size_t i = 0; i < s.n; i++) {
		const Tracevault__V1__TraceRecord *r = &s.recs[i];
		const Tracevault__V1__Span *sp = r->span;
		struct tv_record_wire w;
		struct tv_span_wire sw;
		size_t len;

		FUZZ_CHECK(sp && lower_hex(r->trace_id, 32) && lower_hex(r->span_id, 16));
		FUZZ_CHECK(sp->parent_span_id[0] == '\0' || lower_hex(sp->parent_span_id, 16));
		FUZZ_CHECK(r->end_ns >= r->ts_ns && r->latency_ns == r->end_ns - r->ts_ns);
		FUZZ_CHECK(sp->n_attributes <= lim.max_attributes);
		within(sp->name, lim.max_attribute_bytes);
		within(sp->status_message, lim.max_attribute_bytes);
		within(sp->trace_state, lim.max_attribute_bytes);
		for (size_t k = 0; k < sp->n_attributes; k++) {
			within(sp->attributes[k]->key, lim.max_attribute_bytes);
			if (sp->attributes[k]->value_case ==
			    TRACEVAULT__V1__SPAN_ATTRIBUTE__VALUE_STRING_VALUE)
				within(sp->attributes[k]->string_value, lim.max_attribute_bytes);
		}
		len = tracevault__v1__trace_record__get_packed_size(r);
		if (len <= sizeof(buf)) {
			tracevault__v1__trace_record__pack(r, buf);
			FUZZ_CHECK(tv_record_wire_parse(buf, len, &w) == 0);
			FUZZ_CHECK(w.str[TV_REC_SPAN].p != NULL);
			FUZZ_CHECK(tv_span_wire_parse((const uint8_t *)w.str[TV_REC_SPAN].p,
						      w.str[TV_REC_SPAN].len, &sw) == 0);
			FUZZ_CHECK(sw.n_attributes == sp->n_attributes);
			FUZZ_CHECK(sw.num[TV_SPAN_KIND] == sp->kind);
		}
		ret = tv_block_builder_add(b, r);
		FUZZ_CHECK(ret == 0 || ret == -E2BIG);
	}
	if (tv_block_builder_count(b)) {
		void *blk = NULL;
		size_t blen = 0;
		char err[256];

		FUZZ_CHECK(tv_block_builder_seal(b, 1, TV_CODEC_ZSTD, 1, &blk, &blen) == 0);
		FUZZ_CHECK(tv_block_validate(blk, blen, err, sizeof(err)) == 0);
		free(blk);
	}
	tv_block_builder_free(b);
	tv_otlp_spans_free(&s);
	return 0;
}

/* libFuzzer harness: `tracevault put`'s JSON Lines importer, the fast yajl reader
 * (client/cli/record_reader.c) against the reference parser (client/cli/record_json.c).
 * Input: lines separated by '\n', read in turn by one reader (its buffers are reused from one
 * line to the next, as put reads a file) and each by the reference.
 * Properties beyond "no crash": the reader accepts exactly the lines the reference accepts,
 * with the same record (byte-identical packed) and refuses the others with the reference's
 * message; its fast path alone never accepts a line the reference refuses nor reads one to
 * another record; an accepted record written back as `query --format jsonl` writes it
 * (cli/record_out.c) reads back to the same record, and its table and csv rows render. */
#include <errno.h>
#include <string.h>

#include "cli/out_buf.h"
#include "cli/record_json.h"
#include "cli/record_out.h"
#include "cli/record_reader.h"
#include "proto/record_wire.h"

#include "fuzz_check.h"

static uint8_t *packed(const Tracevault__V1__TraceRecord *r, size_t *len)
{
	uint8_t *buf;

	*len = tracevault__v1__trace_record__get_packed_size(r);
	buf = malloc(*len + 1);
	if (!buf)
		abort();
	FUZZ_CHECK(tracevault__v1__trace_record__pack(r, buf) == *len);
	return buf;
}

static int same_record(const Tracevault__V1__TraceRecord *a, const Tracevault__V1__TraceRecord *b)
{
	size_t la, lb;
	uint8_t *pa = packed(a, &la), *pb = packed(b, &lb);
	int same = la == lb && memcmp(pa, pb, la) == 0;

	free(pa);
	free(pb);
	return same;
}

/* r out through the query writers: jsonl reads back to r (the writer's promise) */
static void check_written(const Tracevault__V1__TraceRecord *r)
{
	struct tv_out_buf b = { 0 };
	struct tv_record_wire w;
	struct tv_record_json back;
	char err[256] = "";
	size_t n;
	uint8_t *bytes = packed(r, &n);

	FUZZ_CHECK(tv_record_wire_parse(bytes, n, &w) == 0);
	tv_record_jsonl(&b, &w);
	FUZZ_CHECK(!b.failed && b.len > 0 && b.p[b.len - 1] == '\n');
	if (tv_record_json_parse(&back, b.p, b.len - 1, err, sizeof(err)) != 0) {
		fprintf(stderr, "jsonl line does not read back: %s\n%.*s", err, (int)b.len, b.p);
		FUZZ_CHECK(!"written line reads back");
	}
	FUZZ_CHECK(same_record(r, &back.rec));
	tv_record_json_release(&back);
	b.len = 0;
	tv_record_table_row(&b, &w);
	tv_record_csv_row(&b, &w);
	FUZZ_CHECK(!b.failed);
	tv_out_free(&b);
	free(bytes);
}

static void check_line(struct tv_record_reader *rd, struct tv_record_reader *fast_rd,
		       const char *line, size_t len)
{
	const Tracevault__V1__TraceRecord *rec = NULL, *frec = NULL;
	char ref_err[256] = "", rd_err[256] = "";
	struct tv_record_json rj;
	int ref, got, fast;

	ref = tv_record_json_parse(&rj, line, len, ref_err, sizeof(ref_err));
	FUZZ_CHECK(ref == 0 || ref == -EINVAL);
	FUZZ_CHECK(ref == 0 || ref_err[0]);
	got = tv_record_reader_parse(rd, line, len, &rec, rd_err, sizeof(rd_err));
	FUZZ_CHECK(got == ref);
	FUZZ_CHECK(strcmp(ref_err, rd_err) == 0);
	if (ref == 0)
		FUZZ_CHECK(same_record(&rj.rec, rec));

	fast = tv_record_reader_parse_fast(fast_rd, line, len, &frec);
	FUZZ_CHECK(fast == 0 || fast == 1);
	if (fast == 1) {
		FUZZ_CHECK(ref == 0);
		if (ref == 0)
			FUZZ_CHECK(same_record(&rj.rec, frec));
	}
	if (ref == 0) {
		check_written(&rj.rec);
		tv_record_json_release(&rj);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tv_record_reader *rd = tv_record_reader_new(), *fast_rd = tv_record_reader_new();
	const char *p = (const char *)data, *end = p + size;

	if (!rd || !fast_rd)
		abort();
	while (p <= end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);

		/* each line in its own allocation: ASan sees a read past its end */
		char *line = malloc(len ? len : 1);

		if (!line)
			abort();
		memcpy(line, p, len);
		check_line(rd, fast_rd, line, len);
		free(line);
		if (!nl)
			break;
		p = nl + 1;
	}
	tv_record_reader_free(rd);
	tv_record_reader_free(fast_rd);
	return 0;
}

/* Stored block checks for recovery and scrub (see verify.h; the rules are proto/BLOCK.md's). */
#include "server/verify.h"

#include <errno.h>
#include <stdio.h>

#include "proto/crc32c.h"

int tv_verify_block_bytes(const void *buf, size_t len, struct tv_block_header *h, char *err,
			  size_t errlen)
{
	uint32_t crc;
	int ret = tv_block_header_parse(buf, len, h, err, errlen);

	if (ret)
		return ret == -EINVAL ? -EBADMSG : ret; /* shorter than its header: truncated */
	if (len != tv_block_total_bytes(h)) {
		snprintf(err, errlen, "block size mismatch: have %zu bytes, header says %llu", len,
			 (unsigned long long)tv_block_total_bytes(h));
		return -EBADMSG;
	}
	crc = tv_crc32c((const char *)buf + h->header_bytes, h->payload_bytes);
	if (crc != h->payload_crc32c) {
		snprintf(err, errlen, "block payload checksum mismatch: stored 0x%08x, computed "
			 "0x%08x", h->payload_crc32c, crc);
		return -EBADMSG;
	}
	return 0;
}

int tv_verify_block_records(const void *buf, size_t len, struct tv_block_header *h, char *err,
			    size_t errlen)
{
	struct tv_block_reader *r = NULL;
	Tracevault__V1__TraceRecord *rec;
	uint64_t prev_ts = 0;
	uint32_t n = 0;
	int ret;

	if (errlen)
		err[0] = '\0';
	ret = tv_verify_block_bytes(buf, len, h, err, errlen);
	if (ret)
		return ret;
	ret = tv_block_reader_open(&r, buf, len, err, errlen);
	if (ret)
		return ret;
	while ((ret = tv_block_reader_next(r, &rec)) == 1) {
		uint64_t ts = rec->ts_ns;
		size_t bytes = tracevault__v1__trace_record__get_packed_size(rec);

		tracevault__v1__trace_record__free_unpacked(rec, NULL);
		n++;
		if (bytes > TV_BLOCK_MAX_RECORD_BYTES) {
			snprintf(err, errlen, "record %u is %zu bytes, above the %u-byte limit", n,
				 bytes, TV_BLOCK_MAX_RECORD_BYTES);
			ret = -EBADMSG;
			break;
		}
		if (ts < h->min_ts_ns || ts > h->max_ts_ns) {
			snprintf(err, errlen, "record %u: ts_ns %llu outside the header's range "
				 "[%llu, %llu]", n, (unsigned long long)ts,
				 (unsigned long long)h->min_ts_ns, (unsigned long long)h->max_ts_ns);
			ret = -EBADMSG;
			break;
		}
		if (ts < prev_ts) {
			snprintf(err, errlen, "record %u: ts_ns %llu before the previous record's %llu",
				 n, (unsigned long long)ts, (unsigned long long)prev_ts);
			ret = -EBADMSG;
			break;
		}
		prev_ts = ts;
	}
	if (ret < 0 && errlen && !err[0])
		snprintf(err, errlen, "record %u does not parse, or the block does not hold the "
			 "%u records its header says", n + 1, h->record_count);
	tv_block_reader_free(r);
	return ret < 0 ? ret : 0;
}

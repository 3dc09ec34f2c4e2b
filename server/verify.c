/* Stored block checks for recovery and scrub (see verify.h; the rules are proto/BLOCK.md's). */
#include "server/verify.h"

#include <errno.h>
#include <stdio.h>

#include "proto/block_check.h"
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
	int ret = tv_verify_block_bytes(buf, len, h, err, errlen);

	/* then every rule Write checks (proto/block_check.h), so that scrub finds in stored
	 * blocks exactly what Write would refuse today */
	return ret ? ret : tv_block_validate(buf, len, err, errlen);
}

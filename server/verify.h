/* Checks of a stored block file's bytes, as recovery (before adopting a file the catalog does
 * not list) and scrub (every block) need them, so that only a block a query can serve is ever
 * listed and anything else is quarantined with the reason. The checks are BLOCK.md's. */
#ifndef TV_SERVER_VERIFY_H
#define TV_SERVER_VERIFY_H

#include <stddef.h>

#include "proto/block.h"

/* What damaged bytes on disk fail, at CRC speed: the header (magic, version, header CRC32C,
 * codec, size bounds), the total length against the header, and the payload CRC32C. No
 * decompression: since Write checks a block completely before acknowledging it, a file that
 * passes holds the bytes that were checked then. Fills *h. Returns 0, -EBADMSG (damaged) or
 * -EPROTONOSUPPORT (a version or codec this build does not read), with a reason in err. */
int tv_verify_block_bytes(const void *buf, size_t len, struct tv_block_header *h, char *err,
			  size_t errlen);

/* tv_verify_block_bytes, then every rule of BLOCK.md's "What a writer promises" that Write
 * checks before it acknowledges a block (tv_block_validate, proto/block_check.h): the payload
 * decompresses to raw_bytes in one frame, exactly record_count records, each at most
 * TV_BLOCK_MAX_RECORD_BYTES and parsing as a TraceRecord, sorted, the first and last at the
 * header's min/max. Memory: one zstd window plus one record. Returns 0, -EBADMSG,
 * -EPROTONOSUPPORT, -EMSGSIZE (a record or window above its limit), with a reason in err, or
 * -ENOMEM. */
int tv_verify_block_records(const void *buf, size_t len, struct tv_block_header *h, char *err,
			    size_t errlen);

#endif
